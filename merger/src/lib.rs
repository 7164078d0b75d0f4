//! The merger: applies a run's staged files to the live lake, one partition at a time, and
//! commits the run when its last partition is merged.
//!
//! # Layout
//!
//! - [`merge`]: keep-latest-per-key over Parquet files (union by column name) into one new
//!   file, sorted by key; also behind `hubsync merge-files`. Runs `keep_latest` and falls back
//!   to a DataFusion query that spills when that declines.
//! - `keep_latest`: the fast path: decide the survivors from the key and version columns, then
//!   stream every column of the inputs into the output, columns encoded in parallel; declines
//!   what does not fit the memory limit or what it does not handle.
//! - [`commit`]: the end of a run, fenced (G2): drop partitions a full run did not touch,
//!   write the table's key index (K1), clear staging, advance the seed's sync state (W1, W2),
//!   mark the run committed.
//! - [`config`]: the merger's settings (merge memory), flags with environment twins.
//! - [`index`]: building a table's key index from its partitions' published files.
//! - [`worker`]: the step for one merge task: the recorded staged files (S1) and the
//!   published file into a new one, published on its generation (G1), then delete what that
//!   made dead (M1, M2), then the done-marker; the last one commits.

pub mod commit;
pub mod config;
pub mod index;
mod keep_latest;
pub mod merge;
pub mod patch;
pub mod worker;

pub use worker::{process_task, MergeTaskHandler, TaskOutcome};

use common::flow::FlowError;
use common::worker::{Disposition, Failure};

#[derive(Debug, thiserror::Error)]
pub enum MergerError {
    /// The task was not sent by its run, or names what the catalog does not hold.
    #[error("bad merge task: {0}")]
    BadTask(String),
    /// An input cannot be read, or the merge itself failed.
    #[error("merge failed: {0}")]
    Merge(String),
    /// Other merges of the partition kept publishing first (G1).
    #[error("merge lost its publish: {0}")]
    Conflict(String),
    #[error(transparent)]
    Lake(#[from] common::lake::LakeError),
    #[error(transparent)]
    Ledger(#[from] common::ports::LedgerError),
    #[error(transparent)]
    Index(#[from] common::keyindex::IndexError),
    #[error(transparent)]
    Schema(#[from] common::schema::SchemaError),
}

impl From<FlowError> for MergerError {
    fn from(e: FlowError) -> Self {
        match e {
            FlowError::Ledger(e) => MergerError::Ledger(e),
            FlowError::Queue(e) => MergerError::Merge(e.to_string()),
            FlowError::Forged(m) => MergerError::BadTask(m),
        }
    }
}

/// The table `name`: the catalog's, or a custom object's recorded in the lake.
pub(crate) async fn table_spec(
    p: &common::pipeline::Pipeline,
    name: &str,
) -> Result<common::catalog::TableSpec, MergerError> {
    match common::schema::table_spec(&p.lake, &p.catalog, name).await {
        Err(common::schema::SchemaError::UnknownTable(e)) => Err(MergerError::BadTask(e.to_string())),
        found => Ok(found?),
    }
}

impl MergerError {
    /// What the queue does with the task: a forged task is dead-lettered at once; an input
    /// that cannot be read keeps its retries (a store hiccup looks the same) and then its dead
    /// letter, to be replayed after the file is moved away or restored.
    pub fn disposition(&self) -> Disposition {
        match self {
            MergerError::BadTask(_) => Disposition::DeadLetter,
            MergerError::Ledger(e) if !e.is_retryable() => Disposition::DeadLetter,
            _ => Disposition::Retry,
        }
    }

    pub fn failure(&self, context: String) -> Failure {
        Failure {
            disposition: self.disposition(),
            message: format!("{context}: {self}"),
        }
    }
}

impl From<datafusion::error::DataFusionError> for MergerError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        MergerError::Merge(e.to_string())
    }
}
