//! The consumer: a stateless worker that fetches one HubSpot page per page job and stages it.
//!
//! # Layout
//!
//! - [`budget`]: heartbeats in the ledger that split the account's rate budget among the
//!   consumer processes.
//! - [`fetch`]: one page of a slice (list, archived list or keyset search) under the shared
//!   rate budget.
//! - [`stage`]: records → Arrow → one staged Parquet file per `dt`.
//! - [`worker`]: the step for one page job (drop stale, refuse a job its run did not send,
//!   skip done, fetch, stage, record in the ledger, enqueue the next page, and after the last
//!   page hand the run to the merger).
//!
//! Order of effects (each safe to repeat): staged files → done-marker with the next cursor and
//! counters → next page job → merge tasks. The message is acked only after all of them; a
//! redelivery finding the marker repeats the last two from it.

pub mod budget;
pub mod fetch;
pub mod stage;
pub mod worker;

pub use worker::{process_job, JobOutcome, PageJobHandler};

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("bad page job: {0}")]
    BadJob(String),
    #[error("bad record from HubSpot: {0}")]
    BadRecord(String),
    #[error(transparent)]
    HubSpot(#[from] common::hubspot::HubSpotError),
    #[error(transparent)]
    Ledger(#[from] common::ports::LedgerError),
    #[error(transparent)]
    Queue(#[from] common::ports::QueueError),
    #[error("staging failed: {0}")]
    Stage(String),
}
