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
//! - L3: `merges_outstanding` is set once, when the run leaves fetching, and each merge task
//!   decrements it once, guarded by its done-marker.
//! - L4: a run whose lease expired is abandoned; its late messages are dropped, never applied.

use std::collections::BTreeSet;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::clock::EpochMs;
use crate::messages::Slice;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    Full,
    Incremental,
}

impl RunMode {
    pub fn as_str(&self) -> &'static str {
        match self {
            RunMode::Full => "full",
            RunMode::Incremental => "incremental",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Planning,
    Fetching,
    Merging,
    Committed,
    Abandoned,
}

impl RunStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            RunStatus::Planning => "planning",
            RunStatus::Fetching => "fetching",
            RunStatus::Merging => "merging",
            RunStatus::Committed => "committed",
            RunStatus::Abandoned => "abandoned",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "planning" => RunStatus::Planning,
            "fetching" => RunStatus::Fetching,
            "merging" => RunStatus::Merging,
            "committed" => RunStatus::Committed,
            "abandoned" => RunStatus::Abandoned,
            _ => return None,
        })
    }

    pub fn is_active(&self) -> bool {
        matches!(
            self,
            RunStatus::Planning | RunStatus::Fetching | RunStatus::Merging
        )
    }
}

/// One run's ledger entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub run_id: String,
    pub table: String,
    pub request_id: String,
    pub mode: RunMode,
    /// Incremental window start (already minus the overlap buffer); `None` for full runs.
    pub window_from_ms: Option<EpochMs>,
    /// The run's start time T0: the window's end and the watermark's cap (W1).
    pub window_to_ms: EpochMs,
    pub status: RunStatus,
    pub pages_outstanding: i64,
    pub merges_outstanding: i64,
    pub dts: BTreeSet<String>,
    pub max_created_ms: Option<EpochMs>,
    pub max_modified_ms: Option<EpochMs>,
    pub records: i64,
    pub lease_until_ms: EpochMs,
    pub started_at_ms: EpochMs,
    pub updated_at_ms: EpochMs,
    /// The slices planned (set when fetching starts, so a re-planned request reuses them).
    pub plan: Vec<Slice>,
    /// The page job whose completion closed fetching (its redelivery re-sends merge tasks).
    pub closing_job: Option<String>,
    pub note: Option<String>,
}

/// The run's state transitions, shared by every ledger adapter: an adapter only makes each one
/// atomic (with its done-marker, where it has one).
impl Run {
    pub fn lease_expired(&self, now: EpochMs) -> bool {
        self.status.is_active() && now > self.lease_until_ms
    }

    fn touch(&mut self, now: EpochMs, lease_ms: i64) {
        self.updated_at_ms = now;
        self.lease_until_ms = self.lease_until_ms.max(now + lease_ms);
    }

    /// planning → fetching with `pages_outstanding = plan.len()`; false when not planning.
    pub fn start_fetching(&mut self, plan: &[Slice], now: EpochMs, lease_ms: i64) -> bool {
        if self.status != RunStatus::Planning {
            return false;
        }
        self.status = RunStatus::Fetching;
        self.pages_outstanding = plan.len() as i64;
        self.plan = plan.to_vec();
        self.touch(now, lease_ms);
        true
    }

    /// Applies one page (L2: the caller guarantees once per page); returns the pages outstanding.
    pub fn apply_page(&mut self, o: &PageOutcome, now: EpochMs, lease_ms: i64) -> i64 {
        self.dts.extend(o.dts.iter().cloned());
        self.max_created_ms = self.max_created_ms.max(o.max_created_ms);
        self.max_modified_ms = self.max_modified_ms.max(o.max_modified_ms);
        self.records += o.records;
        if o.next_cursor.is_none() {
            self.pages_outstanding -= 1;
        }
        self.touch(now, lease_ms);
        self.pages_outstanding
    }

    /// fetching → merging once no page is outstanding (L3); false otherwise.
    pub fn begin_merging(&mut self, closing_job: &str, now: EpochMs) -> bool {
        if self.status != RunStatus::Fetching || self.pages_outstanding != 0 {
            return false;
        }
        self.status = RunStatus::Merging;
        self.merges_outstanding = self.dts.len().max(1) as i64;
        self.closing_job = Some(closing_job.to_string());
        self.updated_at_ms = now;
        true
    }

    /// Applies one merge (L3: once per task); returns the merges outstanding.
    pub fn apply_merge(&mut self, now: EpochMs, lease_ms: i64) -> i64 {
        self.merges_outstanding -= 1;
        self.touch(now, lease_ms);
        self.merges_outstanding
    }

    /// An active run ends as `status`; false when it had already ended.
    pub fn finish(&mut self, status: RunStatus, note: Option<&str>, now: EpochMs) -> bool {
        if !self.status.is_active() {
            return false;
        }
        self.status = status;
        if let Some(n) = note {
            self.note = Some(n.to_string());
        }
        self.updated_at_ms = now;
        true
    }
}

/// What a page contributed to its run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageOutcome {
    pub dts: BTreeSet<String>,
    pub max_created_ms: Option<EpochMs>,
    pub max_modified_ms: Option<EpochMs>,
    pub records: i64,
    /// The cursor of the slice's next page; `None` when this page finished the slice (L2).
    pub next_cursor: Option<String>,
}

/// A page's done-marker, as a redelivery reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageDone {
    /// The next page's cursor recorded with the marker (re-sent on redelivery).
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageCompletion {
    /// The done-marker existed: a redelivery; nothing was counted.
    AlreadyDone,
    Recorded {
        pages_outstanding: i64,
    },
}

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

    /// planning → fetching with the plan and `pages_outstanding = plan.len()`. Returns false
    /// when the run was not planning (already started: a redelivered request).
    async fn start_fetching(&self, run_id: &str, plan: &[Slice], now: EpochMs) -> Result<bool, LedgerError>;

    /// The page's done-marker, if written.
    async fn page_done(&self, run_id: &str, job_id: &str) -> Result<Option<PageDone>, LedgerError>;

    /// Writes the page's done-marker and applies its outcome in one atomic step (L2).
    async fn complete_page(
        &self,
        run_id: &str,
        job_id: &str,
        outcome: &PageOutcome,
        now: EpochMs,
    ) -> Result<PageCompletion, LedgerError>;

    /// fetching → merging when `pages_outstanding == 0`, setting `merges_outstanding` to the
    /// number of merge tasks (one per dt, or one commit-only task) (L3). Returns false when the
    /// run was not in that state.
    async fn begin_merging(&self, run_id: &str, closing_job: &str, now: EpochMs)
        -> Result<bool, LedgerError>;

    async fn is_merge_done(&self, run_id: &str, task_id: &str) -> Result<bool, LedgerError>;

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
