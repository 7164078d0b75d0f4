//! Names of hubsync's AWS resources; every one overridable, defaults matching
//! `infra/cloudformation.yaml`.

use common::ports::flag::FLAG_PARAMETER;
use common::ports::state::STATE_TABLE;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsNames {
    /// Prefix of queue and run-table names (`hubsync` → `hubsync-pages`, ...).
    pub prefix: String,
    /// The seed's DynamoDB table.
    pub state_table: String,
    /// The seed's SSM parameter.
    pub flag_parameter: String,
}

impl Default for AwsNames {
    fn default() -> Self {
        AwsNames {
            prefix: "hubsync".into(),
            state_table: STATE_TABLE.into(),
            flag_parameter: FLAG_PARAMETER.into(),
        }
    }
}

impl AwsNames {
    pub fn requests(&self) -> String {
        format!("{}-requests", self.prefix)
    }
    pub fn requests_dlq(&self) -> String {
        format!("{}-requests-dlq", self.prefix)
    }
    pub fn pages(&self) -> String {
        format!("{}-pages", self.prefix)
    }
    pub fn pages_dlq(&self) -> String {
        format!("{}-pages-dlq", self.prefix)
    }
    pub fn merges(&self) -> String {
        format!("{}-merges.fifo", self.prefix)
    }
    pub fn merges_dlq(&self) -> String {
        format!("{}-merges-dlq.fifo", self.prefix)
    }
    /// The Glue database of the lake's tables: the prefix, lowercased, `-` as `_` (Athena's
    /// identifiers take no `-`).
    pub fn glue_database(&self) -> String {
        self.prefix.to_lowercase().replace('-', "_")
    }
    pub fn runs_table(&self) -> String {
        format!("{}-runs", self.prefix)
    }
    /// (queue, its dead-letter queue, FIFO?) for every queue.
    pub fn queues(&self) -> [(String, String, bool); 3] {
        [
            (self.requests(), self.requests_dlq(), false),
            (self.pages(), self.pages_dlq(), false),
            (self.merges(), self.merges_dlq(), true),
        ]
    }
}
