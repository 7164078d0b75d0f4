//! The consumer: a stateless worker that fetches one HubSpot page per page job and stages it.
//!
//! # Layout
//!
//! - [`budget`]: heartbeats in the ledger that split the account's rate budget among the
//!   consumer processes.
//! - [`config`]: the consumer's settings (page size), flags with environment twins.
//! - [`fetch`]: one page of a slice (list, archived list or keyset search) under the shared
//!   rate budget.
//! - [`meet`]: a backfill on both read paths: the walk's end and the lanes' claims.
//! - [`stage`]: records → Arrow → one staged Parquet file per `dt`.
//! - [`worker`]: the step for one page job (drop stale, refuse a job its run did not send,
//!   skip done, fetch, stage, record in the ledger, enqueue the next page, and after the last
//!   page hand the run to the merger).
//!
//! Order of effects: see [`worker`].

pub mod budget;
pub mod config;
pub mod fetch;
pub mod links;
pub mod meet;
pub mod snapshot;
pub mod stage;
pub mod worker;

pub use worker::{process_job, JobOutcome, PageJobHandler};

use common::flow::FlowError;
use common::worker::{Disposition, Failure};
use hubspot::HubSpotError;

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// The job was not sent by its run, or names what the catalog does not hold.
    #[error("bad page job: {0}")]
    BadJob(String),
    /// HubSpot's page cannot be read on (the records themselves are quarantined, Q1).
    #[error("bad page from HubSpot: {0}")]
    BadRecord(String),
    #[error(transparent)]
    HubSpot(#[from] HubSpotError),
    #[error(transparent)]
    Ledger(#[from] common::ports::LedgerError),
    #[error(transparent)]
    Queue(#[from] common::ports::QueueError),
    #[error("staging failed: {0}")]
    Stage(String),
    #[error(transparent)]
    Schema(#[from] common::schema::SchemaError),
}

impl From<FlowError> for ConsumerError {
    fn from(e: FlowError) -> Self {
        match e {
            FlowError::Ledger(e) => ConsumerError::Ledger(e),
            FlowError::Queue(e) => ConsumerError::Queue(e),
            FlowError::Forged(m) => ConsumerError::BadJob(m),
        }
    }
}

impl ConsumerError {
    /// What the queue does with the job: retry what time can fix; dead-letter at once what no
    /// retry can (a forged job, a rejected token, a spent daily limit, a refused request).
    pub fn disposition(&self) -> Disposition {
        match self {
            ConsumerError::BadJob(_) | ConsumerError::BadRecord(_) => Disposition::DeadLetter,
            ConsumerError::HubSpot(
                HubSpotError::Unauthorized(_)
                | HubSpotError::DailyLimit { .. }
                | HubSpotError::Rejected { .. }
                | HubSpotError::Invalid(_),
            ) => Disposition::DeadLetter,
            ConsumerError::Ledger(e) if !e.is_retryable() => Disposition::DeadLetter,
            ConsumerError::Schema(e) if !e.is_retryable() => Disposition::DeadLetter,
            _ => Disposition::Retry,
        }
    }

    /// The failure reported to the worker loop, prefixed with `context`.
    pub fn failure(&self, context: String) -> Failure {
        Failure {
            disposition: self.disposition(),
            message: format!("{context}: {self}"),
        }
    }
}
