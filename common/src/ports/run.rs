//! A run's head (its ledger entry) and its state transitions, shared by every ledger adapter:
//! an adapter only makes each transition atomic with its done-marker. The invariants cited
//! here (L2, L3, L5, L6) are defined in [`super::ledger`].
//!
//! The head holds only counters and fixed-size fields, so a page's or a merge's update writes
//! the same few hundred bytes whatever the run's size (L6). What grows with the run lives in
//! items of its own: one per slice of the plan, one done-marker per page (with the partitions
//! it staged into) and per merge task, one generation record per partition.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::clock::EpochMs;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    #[default]
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

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// A new run's state (and so the default).
    #[default]
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

/// One run's head. The default is a run in planning with nothing recorded: set the identity,
/// window and times.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Slices whose last page is not recorded yet (L2).
    pub pages_outstanding: i64,
    /// Merge tasks counted and not yet done (L3).
    pub merges_outstanding: i64,
    /// Merge tasks counted so far, done or not.
    #[serde(default)]
    pub merges_counted: i64,
    pub max_created_ms: Option<EpochMs>,
    pub max_modified_ms: Option<EpochMs>,
    pub records: i64,
    /// Records that could not be staged and were quarantined under `_rejected/` (Q1).
    #[serde(default)]
    pub rejected: i64,
    /// Per property, values that did not cast to their column's type (kept in `_uncast`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub uncast: BTreeMap<String, i64>,
    pub lease_until_ms: EpochMs,
    pub started_at_ms: EpochMs,
    pub updated_at_ms: EpochMs,
    /// Slices in the plan (set when fetching starts; the slices are items of their own).
    #[serde(default)]
    pub slices: u32,
    /// Records the plan counted (search totals of its slices), for progress: `None` when the
    /// plan could not count (a list walk chosen without counting, a snapshot). A run may fetch
    /// more (archived records, column backfills, records created while it runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_records: Option<u64>,
    /// How many slices, in plan order, have been started (L5).
    #[serde(default)]
    pub slices_started: u32,
    /// Which planning attempt's slices are the plan (adapters that cannot write the plan and
    /// the head in one step keep each attempt's slices apart).
    #[serde(default)]
    pub plan_id: String,
    /// The page job whose completion closed fetching (its redelivery re-sends the close).
    pub closing_job: Option<String>,
    /// Partitions the run touched, counted at commit.
    #[serde(default)]
    pub partitions: Option<u64>,
    pub note: Option<String>,
}

/// What recording a page made due besides its next page; the roles send it after the marker
/// and a redelivery that finds the marker sends it again (L2, L5).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageEffects {
    /// The slice this page started, the next in plan order (L5), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch: Option<u32>,
}

/// What a page contributed to its run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageOutcome {
    /// The slice the page belongs to (its plan index).
    pub slice_no: u32,
    /// The page's attempt: the suffix of every file it staged (S1).
    pub attempt: String,
    /// The partitions it staged into (its files are `<job>.<attempt>.parquet` under each).
    pub dts: BTreeSet<String>,
    pub max_created_ms: Option<EpochMs>,
    pub max_modified_ms: Option<EpochMs>,
    pub records: i64,
    /// Records quarantined instead of staged (Q1).
    pub rejected: i64,
    /// Per property, values that did not cast (kept in `_uncast`).
    pub uncast: BTreeMap<String, i64>,
    /// The cursor of the slice's next page; `None` when this page finished the slice (L2).
    pub next_cursor: Option<String>,
    /// [`crate::messages::Slice::fingerprint`] of the page's slice: its successor must carry
    /// the same slice (a forged or corrupted job is refused).
    pub fingerprint: String,
    /// When the page finished a slice that owns its partitions: the merge tasks that finishing
    /// made due (one per partition the slice staged into, L3).
    pub slice_merges: i64,
}

/// A page's done-marker, as a redelivery or a merge reads it back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageDone {
    pub attempt: String,
    pub dts: BTreeSet<String>,
    /// The next page's cursor recorded with the marker (re-sent on redelivery).
    pub next_cursor: Option<String>,
    pub fingerprint: String,
    /// What else the page made due (re-sent on redelivery).
    pub effects: PageEffects,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageCompletion {
    /// The done-marker existed: another copy recorded the page first; nothing was counted.
    AlreadyDone,
    Recorded {
        pages_outstanding: i64,
        effects: PageEffects,
    },
}

impl Run {
    /// A full run of `table` in planning, started at `now` with a one-second lease: the
    /// smallest valid run, for tests of the ledger and its adapters.
    pub fn sample(run_id: &str, table: &str, now: EpochMs) -> Run {
        Run {
            run_id: run_id.into(),
            table: table.into(),
            request_id: "q".into(),
            mode: RunMode::Full,
            window_from_ms: None,
            window_to_ms: now,
            lease_until_ms: now + 1_000,
            started_at_ms: now,
            updated_at_ms: now,
            ..Default::default()
        }
    }

    pub fn lease_expired(&self, now: EpochMs) -> bool {
        self.status.is_active() && now > self.lease_until_ms
    }

    fn touch(&mut self, now: EpochMs, lease_ms: i64) {
        self.updated_at_ms = now;
        self.lease_until_ms = self.lease_until_ms.max(now + lease_ms);
    }

    /// planning → fetching with a plan of `slices`, the first `in_flight` started (L5); false
    /// when not planning.
    pub fn start_fetching(&mut self, slices: u32, in_flight: usize, now: EpochMs, lease_ms: i64) -> bool {
        if self.status != RunStatus::Planning {
            return false;
        }
        self.status = RunStatus::Fetching;
        self.slices = slices;
        self.pages_outstanding = i64::from(slices);
        self.slices_started = slices.min(in_flight.max(1) as u32);
        self.touch(now, lease_ms);
        true
    }

    /// Applies one page (L2: the caller guarantees once per page, with its marker); returns
    /// the pages outstanding and what the page made due.
    pub fn apply_page(&mut self, o: &PageOutcome, now: EpochMs, lease_ms: i64) -> (i64, PageEffects) {
        let mut effects = PageEffects::default();
        self.max_created_ms = self.max_created_ms.max(o.max_created_ms);
        self.max_modified_ms = self.max_modified_ms.max(o.max_modified_ms);
        self.records += o.records;
        self.rejected += o.rejected;
        for (property, n) in &o.uncast {
            *self.uncast.entry(property.clone()).or_default() += n;
        }
        if o.next_cursor.is_none() {
            self.pages_outstanding -= 1;
            if self.slices_started < self.slices {
                effects.launch = Some(self.slices_started);
                self.slices_started += 1;
            }
            self.count_merges(o.slice_merges);
        }
        self.touch(now, lease_ms);
        (self.pages_outstanding, effects)
    }

    fn count_merges(&mut self, n: i64) {
        self.merges_outstanding += n;
        self.merges_counted += n;
    }

    /// fetching → merging once no page is outstanding (L3): counts the close's partition
    /// merges and the closing task; false otherwise.
    pub fn begin_merging(&mut self, closing_job: &str, close_merges: i64, now: EpochMs) -> bool {
        if self.status != RunStatus::Fetching || self.pages_outstanding != 0 {
            return false;
        }
        self.status = RunStatus::Merging;
        self.count_merges(close_merges + 1);
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

/// A partition's published state (G1): the live file readers and merges see, and the
/// generation that fences every change to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    /// Bumped by every publish; a publish names the generation it read (G1).
    pub gen: u64,
    /// The published live file's name in the partition directory; `None`: the partition is
    /// empty (every record merged away, or dropped by a full run).
    pub file: Option<String>,
    /// The run that published it, and when that run started (a full run's commit never drops
    /// a partition a later run wrote, G2).
    pub writer_run: String,
    pub writer_started_ms: EpochMs,
}

/// Which run's key index a table's readers use (K1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexVersion {
    pub run_id: String,
    pub started_at_ms: EpochMs,
}

/// The partitions of a page in a done-marker, compactly (L6): the sorted days since the epoch,
/// the first in decimal and each next as its distance from the previous in base 36, separated
/// by commas (`19723,1,1,3`). A page of 200 records on 200 different days takes ~600 bytes.
pub fn encode_dts(dts: &BTreeSet<String>) -> String {
    let mut days: Vec<i64> = dts.iter().filter_map(|d| crate::clock::day_of_dt(d)).collect();
    days.sort_unstable();
    days.dedup();
    let mut out = String::with_capacity(days.len() * 3);
    let mut previous = None;
    for day in days {
        if !out.is_empty() {
            out.push(',');
        }
        match previous {
            None => out.push_str(&day.to_string()),
            Some(p) => out.push_str(&base36((day - p) as u64)),
        }
        previous = Some(day);
    }
    out
}

/// The inverse of [`encode_dts`].
pub fn decode_dts(raw: &str) -> Result<BTreeSet<String>, String> {
    let mut out = BTreeSet::new();
    let mut day: Option<i64> = None;
    for part in raw.split(',').filter(|p| !p.is_empty()) {
        let next = match day {
            None => part.parse::<i64>().map_err(|e| format!("`{part}`: {e}"))?,
            Some(d) => {
                let delta = i64::from_str_radix(part, 36).map_err(|e| format!("`{part}`: {e}"))?;
                d.checked_add(delta)
                    .ok_or_else(|| format!("day overflow at `{part}`"))?
            }
        };
        let dt = crate::clock::dt_of_day(next).ok_or_else(|| format!("day {next} is out of range"))?;
        out.insert(dt);
        day = Some(next);
    }
    Ok(out)
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut buf = Vec::new();
    loop {
        buf.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    buf.reverse();
    String::from_utf8(buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_for_test(run_id: &str, table: &str, now: EpochMs) -> Run {
        Run::sample(run_id, table, now)
    }

    fn page(slice_no: u32, last: bool, slice_merges: i64) -> PageOutcome {
        PageOutcome {
            slice_no,
            records: 2,
            next_cursor: (!last).then(|| "c".to_string()),
            slice_merges,
            ..Default::default()
        }
    }

    #[test]
    fn slices_start_in_waves_and_count_their_merges_when_done_l3_l5() {
        let mut run = run_for_test("r", "deals", 0);
        assert!(run.start_fetching(3, 2, 0, 10));
        assert!(!run.start_fetching(3, 2, 0, 10), "only from planning");
        assert_eq!((run.slices_started, run.pages_outstanding), (2, 3));
        let (left, e) = run.apply_page(&page(0, false, 0), 1, 10);
        assert_eq!((left, e), (3, PageEffects::default()));
        // Slice 0 ends having staged into 4 partitions: they are due, slice 2 starts.
        let (left, e) = run.apply_page(&page(0, true, 4), 2, 10);
        assert_eq!((left, e.launch, run.merges_outstanding), (2, Some(2), 4));
        let (_, e) = run.apply_page(&page(1, true, 1), 3, 10);
        assert_eq!(e.launch, None, "every slice is started");
        assert!(!run.begin_merging("x", 0, 4), "slice 2 is outstanding");
        let (left, _) = run.apply_page(&page(2, true, 0), 4, 10);
        assert_eq!(left, 0);
        // The close counts its own partition merges and the closing task.
        assert!(run.begin_merging("s00002-p000000", 2, 5));
        assert_eq!((run.merges_outstanding, run.merges_counted), (8, 8));
        assert_eq!(run.records, 8);
        for i in 0..8 {
            assert_eq!(run.apply_merge(6, 10), 7 - i);
        }
        assert!(run.finish(RunStatus::Committed, None, 7));
        assert!(!run.finish(RunStatus::Abandoned, None, 8));
    }

    #[test]
    fn partition_sets_encode_compactly_and_round_trip() {
        let dts: BTreeSet<String> = [
            "1900-01-01",
            "1969-12-31",
            "2024-01-02",
            "2024-01-03",
            "9999-12-31",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let raw = encode_dts(&dts);
        assert_eq!(decode_dts(&raw).unwrap(), dts, "{raw}");
        assert_eq!(encode_dts(&BTreeSet::new()), "");
        assert!(decode_dts("").unwrap().is_empty());
        assert!(decode_dts("x").is_err());
        // 200 partitions spread over six years stay far below a kilobyte.
        let spread: BTreeSet<String> = (0..200)
            .map(|i| crate::clock::dt_of_day(18_000 + i * 11).unwrap())
            .collect();
        assert!(encode_dts(&spread).len() < 700, "{}", encode_dts(&spread).len());
    }
}
