//! The run ledger: one head per run (one sync of one table) with atomic counters, a
//! done-marker per page and per merge task, the run's slices, the published generation of
//! every partition and the version of every table's key index. Every method is safe to call
//! twice, because SQS delivers at least once and any process can die (or stall) between any
//! two lines.
//!
//! Protocol invariants (cited by id in the roles):
//! - L1: at most one run per table is active (planning, fetching or merging) at a time.
//! - L2: `pages_outstanding` counts slices whose last page is not yet recorded; each page is
//!   counted once, guarded by its done-marker written in the same atomic step. The marker
//!   keeps the page's next cursor and its slice's fingerprint, and the next page job is sent
//!   only after it: a page is never recorded before its predecessor, and a redelivered page
//!   re-sends its successor from the marker.
//! - L3: `merges_outstanding` counts merge tasks made due and not yet done. A slice that owns
//!   its days (a created window) makes one merge due per partition its pages staged into when
//!   its last page is recorded, counted in that page's atomic step; the run leaving fetching
//!   counts one per partition staged into by the other slices, plus the closing task. Each
//!   task decrements it once, guarded by its done-marker. The run commits when it is merging
//!   and the count is 0.
//! - L4: a run whose lease expired is abandoned; its late messages are dropped, never applied.
//! - L5: slices start in plan order, at most `slices_in_flight` at first, then one more each
//!   time one finishes; the start is recorded with the finishing page's marker, so a page 0
//!   is legitimate only for a slice the run started.
//! - L6: no item grows with the run: the head holds counters only, the plan is one item per
//!   slice, and the partitions a run touched are read back from its page markers (each names
//!   the partitions of its own page). A page's update writes its marker and the head, a
//!   merge's its marker and the head: a bounded number of bytes whatever the run's size.
//! - S1: each attempt at a page stages under names of its own (`<job>.<attempt>.parquet`) and
//!   its marker records the attempt: a merge reads exactly the files that recorded markers
//!   name and deletes those of losing attempts, so two live copies of one page job never
//!   overwrite each other's files.
//! - G1: a partition's live file is the one its generation record names. A merge publishes
//!   its new file with a conditional write on the generation it read, and deletes only what
//!   that generation made dead, so a merger that stalled past its visibility and resumes can
//!   change nothing a newer merge owns.
//! - G2: a full run's commit drops a partition it did not touch only by a conditional write on
//!   the generation it read, and never one published by a run that started after it.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;

use crate::clock::EpochMs;
use crate::meet::{MeetStep, Meeting};
use crate::messages::Slice;

pub use super::run::{
    IndexVersion, PageCompletion, PageDone, PageEffects, PageOutcome, Partition, Run, RunMode, RunStatus,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeCompletion {
    AlreadyDone,
    Recorded { merges_outstanding: i64 },
}

/// What a merge task reads before it merges ([`Ledger::merge_view`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeView {
    /// The run's head (`None`: no such run).
    pub run: Option<Run>,
    /// Whether the task's done-marker is written (L3).
    pub done: bool,
    /// The partition's published generation (G1); `None` before its first publish, and for
    /// a task of no partition (the closing task).
    pub partition: Option<Partition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeginRun {
    Started(Run),
    /// This request's run already exists (a redelivered request): continue it.
    Existing(Run),
    /// Another run of the table is active (L1).
    Refused(Run),
}

/// What went wrong, by what the caller does about it.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The store answered too slowly or asked to slow down: retrying later helps.
    #[error("run ledger is throttled or unavailable: {0}")]
    Unavailable(String),
    /// Optimistic writes kept conflicting with concurrent ones after backing off.
    #[error("run ledger: {0}")]
    Contention(String),
    /// A write the store refuses whatever the timing (an item over its size limit, a value
    /// it does not accept): retrying the same message cannot help.
    #[error("run ledger refused a write: {0}")]
    Rejected(String),
    #[error("run ledger: {0}")]
    Backend(String),
    #[error("run ledger: run `{0}` not found")]
    UnknownRun(String),
}

impl LedgerError {
    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, LedgerError::Rejected(_))
    }
}

#[async_trait]
pub trait Ledger: Send + Sync {
    /// Creates `run` (status planning) unless another run of its table is active (L1). An
    /// active run whose lease expired is abandoned first (L4).
    async fn begin_run(&self, run: &Run, now: EpochMs) -> Result<BeginRun, LedgerError>;

    async fn get_run(&self, run_id: &str) -> Result<Option<Run>, LedgerError>;

    /// The table's active run, if any (expired leases included; callers check).
    async fn active_run(&self, table: &str) -> Result<Option<Run>, LedgerError>;

    /// Most recent runs first, at most `limit`.
    async fn list_runs(&self, table: Option<&str>, limit: usize) -> Result<Vec<Run>, LedgerError>;

    /// Records `plan` (one item per slice) and the records it counted (`expected_records`,
    /// shown as progress), and moves the run planning → fetching with
    /// `pages_outstanding = plan.len()` and the first `in_flight` slices started (L5). Returns
    /// false when the run was not planning (already started: a redelivered request); the plan
    /// recorded first then stands.
    async fn start_fetching(
        &self,
        run_id: &str,
        plan: &[Slice],
        expected_records: Option<u64>,
        in_flight: usize,
        now: EpochMs,
    ) -> Result<bool, LedgerError>;

    /// One slice of the run's plan (`None` past its end or before it was recorded).
    async fn slice(&self, run_id: &str, slice_no: u32) -> Result<Option<Slice>, LedgerError>;

    /// The first `count` slices of the run's plan, in plan order.
    async fn slices(&self, run_id: &str, count: u32) -> Result<Vec<Slice>, LedgerError>;

    /// The page's done-marker, if written.
    async fn page_done(&self, run_id: &str, job_id: &str) -> Result<Option<PageDone>, LedgerError>;

    /// The recorded attempt of each of `job_ids` that has a done-marker (S1), in one read per
    /// batch however many there are.
    async fn page_attempts(
        &self,
        run_id: &str,
        job_ids: &[String],
    ) -> Result<HashMap<String, String>, LedgerError>;

    /// The done-markers of every recorded page of the run (of one slice when `slice_no` is
    /// given), by job id: the partitions a run or a slice touched are their union (L6).
    async fn page_markers(
        &self,
        run_id: &str,
        slice_no: Option<u32>,
    ) -> Result<Vec<(String, PageDone)>, LedgerError>;

    /// Writes the page's done-marker (attempt, partitions, next cursor, effects) and applies
    /// its outcome to the head in one atomic step (L2, L3, L5).
    async fn complete_page(
        &self,
        run_id: &str,
        job_id: &str,
        outcome: &PageOutcome,
        now: EpochMs,
    ) -> Result<PageCompletion, LedgerError>;

    /// fetching → merging when `pages_outstanding == 0`, counting `close_merges` partition
    /// merges and the closing task (L3). Returns false when the run was not in that state.
    async fn begin_merging(
        &self,
        run_id: &str,
        closing_job: &str,
        close_merges: i64,
        now: EpochMs,
    ) -> Result<bool, LedgerError>;

    async fn is_merge_done(&self, run_id: &str, task_id: &str) -> Result<bool, LedgerError>;

    /// The task ids of every merge task of the run whose done-marker is written, in one read
    /// however many there are (the adapter pages).
    async fn done_merges(&self, run_id: &str) -> Result<HashSet<String>, LedgerError>;

    /// The run's head, the task's done-marker and (with `dt`) the partition's generation, in
    /// one strongly consistent read where the store has one: a merge task's first reads.
    /// Each part is as fresh as its own read would be, so the caller judges them as it would
    /// three reads (a generation read early only makes a publish lose a race it would lose
    /// anyway, G1).
    async fn merge_view(
        &self,
        run_id: &str,
        task_id: &str,
        table: &str,
        dt: Option<&str>,
    ) -> Result<MergeView, LedgerError> {
        let run = self.get_run(run_id).await?;
        let done = self.is_merge_done(run_id, task_id).await?;
        let partition = match dt {
            Some(dt) => self.partition(table, dt).await?,
            None => None,
        };
        Ok(MergeView { run, done, partition })
    }

    async fn complete_merge(
        &self,
        run_id: &str,
        task_id: &str,
        now: EpochMs,
    ) -> Result<MergeCompletion, LedgerError>;

    /// A partition's published generation (G1); `None` before its first publish.
    async fn partition(&self, table: &str, dt: &str) -> Result<Option<Partition>, LedgerError>;

    /// Several partitions' generations, in batched reads.
    async fn partitions(
        &self,
        table: &str,
        dts: &[String],
    ) -> Result<HashMap<String, Partition>, LedgerError>;

    /// Publishes `next` (generation `expected + 1`) if the partition is still at generation
    /// `expected` (0: never published). False when another publish came first (G1).
    async fn publish(
        &self,
        table: &str,
        dt: &str,
        expected: u64,
        next: &Partition,
    ) -> Result<bool, LedgerError>;

    /// The table's key index version (K1), if one was written.
    async fn index_version(&self, table: &str) -> Result<Option<IndexVersion>, LedgerError>;

    /// Sets the table's key index version if it moves forward (a run started later than the
    /// current one's); false otherwise (a stalled commit of an older run, G2).
    async fn set_index_version(&self, table: &str, version: &IndexVersion) -> Result<bool, LedgerError>;

    /// Announces that `worker` fetches from HubSpot until `until_ms`, forgets workers whose
    /// announcement lapsed, and returns how many are alive at `now_ms` (this one included):
    /// they split the account's rate budget.
    async fn heartbeat(&self, worker: &str, now_ms: EpochMs, until_ms: EpochMs)
        -> Result<usize, LedgerError>;

    /// Withdraws `worker` (a clean shutdown), so the others take its share at their next beat.
    async fn leave(&self, worker: &str) -> Result<(), LedgerError>;

    /// Reserves the next send time on the account-wide schedule `key` (R5): the later of
    /// `now_ms` and the schedule's next free time, which then moves on by `spacing_ms`. Every
    /// process of an account reserves from the same schedule, so together they send at most
    /// one request per spacing, however many they are.
    async fn reserve_slot(&self, key: &str, spacing_ms: i64, now_ms: EpochMs)
        -> Result<EpochMs, LedgerError>;

    /// Applies `step` to the meeting of `run_id`'s list walk and search lanes over
    /// `object_type` (an empty one on first use) in one atomic change, and returns the meeting
    /// as it left it (J1-J4, [`crate::meet`]).
    async fn meet(&self, run_id: &str, object_type: &str, step: &MeetStep) -> Result<Meeting, LedgerError>;

    /// Moves an active run to `committed` or `abandoned` (with a note) and frees its table.
    /// With `partitions`, records how many partitions it touched. Returns false when the run
    /// was not active.
    async fn finish(
        &self,
        run_id: &str,
        status: RunStatus,
        note: Option<&str>,
        partitions: Option<u64>,
        now: EpochMs,
    ) -> Result<bool, LedgerError>;
}
