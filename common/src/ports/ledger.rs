//! The run ledger: one entry per run (one sync of one table), with atomic counters,
//! done-markers and conditional status transitions. Every method is safe to call twice,
//! because SQS delivers at least once and any process can die between any two lines.
//!
//! Protocol invariants (cited by id in the roles):
//! - L1: at most one run per table is active (planning, fetching or merging) at a time.
//! - L2: `pages_outstanding` counts slices whose last page is not yet recorded; each page job
//!   is counted once, guarded by its done-marker written in the same atomic step. The marker
//!   keeps the page's next cursor, and the next page job is sent only after it: so a page is
//!   never recorded before its predecessor (the count cannot reach 0 while an earlier page of
//!   a slice is unrecorded), and a redelivered page re-sends its successor from the marker.
//! - L3: `merges_outstanding` counts merge tasks queued and not yet done. A task is counted in
//!   the same atomic step that makes it due (a page's marker, or the run leaving fetching for
//!   its closing task), and each task decrements it once, guarded by its done-marker. The run
//!   commits when it is merging and the count is 0.
//! - L4: a run whose lease expired is abandoned; its late messages are dropped, never applied.
//! - L5: slices start in plan order, at most `slices_in_flight` at first, then one more each
//!   time one finishes; the start is recorded with the finishing page's marker, so a page 0
//!   is legitimate only for a slice the run started.
//! - P1: a partition's merge is queued once every slice that can stage into it is done
//!   ([`Slice::days`](crate::messages::Slice::days)), so a backfill's partitions become
//!   visible while it goes on; a page that still stages into it afterwards queues one more
//!   pass of the same partition (passes of one partition never overlap, FIFO group; in
//!   whatever order they run, each merges what is staged when it lists).
//!
//! Upgrading: runs recorded before P1 and L5 finish under the new rules, but processes of both
//! builds must not serve one ledger at once: stop every service, then start the new build.

use std::collections::HashSet;

use async_trait::async_trait;

use crate::clock::EpochMs;
use crate::messages::Slice;

pub use super::run::{
    PageCompletion, PageDone, PageEffects, PageOutcome, QueuedMerge, Run, RunMode, RunStatus,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeCompletion {
    AlreadyDone,
    Recorded { merges_outstanding: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeginRun {
    Started(Run),
    /// This request's run already exists (a redelivered request): continue it.
    Existing(Run),
    /// Another run of the table is active (L1).
    Refused(Run),
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("run ledger: {0}")]
    Backend(String),
    #[error("run ledger: run `{0}` not found")]
    UnknownRun(String),
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

    /// planning → fetching with the plan, `pages_outstanding = plan.len()` and the first
    /// `in_flight` slices started (L5). Returns false when the run was not planning (already
    /// started: a redelivered request).
    async fn start_fetching(
        &self,
        run_id: &str,
        plan: &[Slice],
        in_flight: usize,
        now: EpochMs,
    ) -> Result<bool, LedgerError>;

    /// The page's done-marker, if written.
    async fn page_done(&self, run_id: &str, job_id: &str) -> Result<Option<PageDone>, LedgerError>;

    /// Writes the page's done-marker (with the next cursor and the effects) and applies its
    /// outcome in one atomic step (L2, L3, L5, P1).
    async fn complete_page(
        &self,
        run_id: &str,
        job_id: &str,
        outcome: &PageOutcome,
        now: EpochMs,
    ) -> Result<PageCompletion, LedgerError>;

    /// fetching → merging when `pages_outstanding == 0`, counting the closing task in
    /// `merges_outstanding` (L3). Returns false when the run was not in that state.
    async fn begin_merging(&self, run_id: &str, closing_job: &str, now: EpochMs)
        -> Result<bool, LedgerError>;

    async fn is_merge_done(&self, run_id: &str, task_id: &str) -> Result<bool, LedgerError>;

    /// The task ids of every merge task of the run whose done-marker is written, in one read
    /// however many there are (the adapter pages): a closing page re-sending thousands of
    /// partition merges must not pay one round trip per partition while its message is in hand.
    async fn done_merges(&self, run_id: &str) -> Result<HashSet<String>, LedgerError>;

    async fn complete_merge(
        &self,
        run_id: &str,
        task_id: &str,
        now: EpochMs,
    ) -> Result<MergeCompletion, LedgerError>;

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

    /// Moves an active run to `committed` or `abandoned` (with a note) and frees its table.
    /// Returns false when the run was not active.
    async fn finish(
        &self,
        run_id: &str,
        status: RunStatus,
        note: Option<&str>,
        now: EpochMs,
    ) -> Result<bool, LedgerError>;
}
