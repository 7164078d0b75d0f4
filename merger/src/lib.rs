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
//! - [`commit`]: the end of a run: drop partitions a full run did not touch, clear staging,
//!   advance the seed's sync state (W1, W2), mark the run committed.
//! - [`worker`]: the step for one merge task: new file first, then delete what it read (M1,
//!   M2), then the done-marker; the last one commits.

pub mod commit;
mod keep_latest;
pub mod merge;
pub mod worker;

pub use worker::{process_task, MergeTaskHandler, TaskOutcome};

#[derive(Debug, thiserror::Error)]
pub enum MergerError {
    #[error("bad merge task: {0}")]
    BadTask(String),
    #[error("merge failed: {0}")]
    Merge(String),
    #[error(transparent)]
    Lake(#[from] common::lake::LakeError),
    #[error(transparent)]
    Ledger(#[from] common::ports::LedgerError),
}

impl From<datafusion::error::DataFusionError> for MergerError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        MergerError::Merge(e.to_string())
    }
}
