//! A run's ledger entry and its state transitions, shared by every ledger adapter: an adapter
//! only makes each transition atomic (with its done-marker, where it has one). The invariants
//! cited here (L2, L3, L5, P1) are defined in [`super::ledger`].

use std::collections::{BTreeMap, BTreeSet};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::clock::{day_of_dt, EpochMs};
use crate::messages::Slice;

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

/// A run's collections that grow with its size (a backfill has thousands of partitions):
/// shared between clones and copied only when one is changed, so reading a run (a merge
/// checks its run's status) does not copy them. Serialized as the value itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shared<T: Clone>(Arc<T>);

impl<T: Clone> Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Clone> DerefMut for Shared<T> {
    fn deref_mut(&mut self) -> &mut T {
        Arc::make_mut(&mut self.0)
    }
}

impl<'a, T: Clone> IntoIterator for &'a Shared<T>
where
    &'a T: IntoIterator,
{
    type Item = <&'a T as IntoIterator>::Item;
    type IntoIter = <&'a T as IntoIterator>::IntoIter;
    fn into_iter(self) -> Self::IntoIter {
        self.0.as_ref().into_iter()
    }
}

impl<T: Clone> From<T> for Shared<T> {
    fn from(value: T) -> Self {
        Shared(Arc::new(value))
    }
}

impl<T: Clone + Serialize> Serialize for Shared<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de, T: Clone + Deserialize<'de>> Deserialize<'de> for Shared<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(Shared::from)
    }
}

/// One run's ledger entry. The default is a run in planning with nothing recorded: set the
/// identity, window and times.
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
    pub pages_outstanding: i64,
    pub merges_outstanding: i64,
    pub dts: Shared<BTreeSet<String>>,
    pub max_created_ms: Option<EpochMs>,
    pub max_modified_ms: Option<EpochMs>,
    pub records: i64,
    pub lease_until_ms: EpochMs,
    pub started_at_ms: EpochMs,
    pub updated_at_ms: EpochMs,
    /// The slices planned (set when fetching starts, so a re-planned request reuses them).
    pub plan: Shared<Vec<Slice>>,
    /// The page job whose completion closed fetching (its redelivery re-sends merge tasks).
    pub closing_job: Option<String>,
    pub note: Option<String>,
    /// Slices (plan indexes) whose last page is recorded (L2).
    #[serde(default)]
    pub slices_done: Shared<BTreeSet<u32>>,
    /// How many slices, in plan order, have been started (L5). `None` in runs recorded before
    /// slices started in waves: all of them were.
    #[serde(default)]
    pub slices_started: Option<u32>,
    /// Merge tasks queued per partition (P1): 1 once its merge is due, more if pages staged
    /// into it after that.
    #[serde(default)]
    pub merges_queued: Shared<BTreeMap<String, u32>>,
}

/// A merge task queued by a run: its partition and pass (0 first, then extra passes, P1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedMerge {
    pub dt: String,
    pub pass: u32,
}

/// What recording a page made due besides its next page. The roles send it after the marker;
/// a redelivery that finds the marker sends it again from there (L2, L5, P1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageEffects {
    /// Slices to start (send page 0): the next in plan order, one per finished slice (L5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub launch: Vec<u32>,
    /// Partition merges that became due (P1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merges: Vec<QueuedMerge>,
}

impl PageEffects {
    pub fn is_empty(&self) -> bool {
        self.launch.is_empty() && self.merges.is_empty()
    }
}

/// What a page contributed to its run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageOutcome {
    /// The slice the page belongs to (its plan index).
    pub slice_no: u32,
    pub dts: BTreeSet<String>,
    pub max_created_ms: Option<EpochMs>,
    pub max_modified_ms: Option<EpochMs>,
    pub records: i64,
    /// The cursor of the slice's next page; `None` when this page finished the slice (L2).
    pub next_cursor: Option<String>,
}

/// A page's done-marker, as a redelivery reads it back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageDone {
    /// The next page's cursor recorded with the marker (re-sent on redelivery).
    pub next_cursor: Option<String>,
    /// What else the page made due (re-sent on redelivery).
    pub effects: PageEffects,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageCompletion {
    /// The done-marker existed: a redelivery; nothing was counted.
    AlreadyDone,
    Recorded {
        pages_outstanding: i64,
        effects: PageEffects,
    },
}

impl Run {
    pub fn lease_expired(&self, now: EpochMs) -> bool {
        self.status.is_active() && now > self.lease_until_ms
    }

    fn touch(&mut self, now: EpochMs, lease_ms: i64) {
        self.updated_at_ms = now;
        self.lease_until_ms = self.lease_until_ms.max(now + lease_ms);
    }

    /// planning → fetching with `pages_outstanding = plan.len()`, the first `in_flight` slices
    /// started (L5); false when not planning.
    pub fn start_fetching(&mut self, plan: &[Slice], in_flight: usize, now: EpochMs, lease_ms: i64) -> bool {
        if self.status != RunStatus::Planning {
            return false;
        }
        self.status = RunStatus::Fetching;
        self.pages_outstanding = plan.len() as i64;
        self.plan = plan.to_vec().into();
        self.slices_started = Some(plan.len().min(in_flight.max(1)) as u32);
        self.touch(now, lease_ms);
        true
    }

    /// The slices started so far (L5).
    pub fn started(&self) -> u32 {
        self.slices_started.unwrap_or(self.plan.len() as u32)
    }

    /// Applies one page (L2: the caller guarantees once per page); returns the pages
    /// outstanding and what the page made due.
    pub fn apply_page(&mut self, o: &PageOutcome, now: EpochMs, lease_ms: i64) -> (i64, PageEffects) {
        let mut effects = PageEffects::default();
        for dt in &o.dts {
            if let Some(passes) = self.merges_queued.get_mut(dt) {
                // P1: staged after the partition's merge was queued (a record outside its
                // slice's days): one more pass, after the first in the partition's FIFO group.
                effects.merges.push(QueuedMerge {
                    dt: dt.clone(),
                    pass: *passes,
                });
                *passes += 1;
                self.merges_outstanding += 1;
            }
        }
        self.dts.extend(o.dts.iter().cloned());
        self.max_created_ms = self.max_created_ms.max(o.max_created_ms);
        self.max_modified_ms = self.max_modified_ms.max(o.max_modified_ms);
        self.records += o.records;
        if o.next_cursor.is_none() && self.slices_done.insert(o.slice_no) {
            self.pages_outstanding -= 1;
            if let Some(started) = self.slices_started.as_mut() {
                if (*started as usize) < self.plan.len() {
                    effects.launch.push(*started);
                    *started += 1;
                }
            }
            effects.merges.extend(self.queue_due_merges());
        }
        self.touch(now, lease_ms);
        (self.pages_outstanding, effects)
    }

    /// Queues (and counts, L3) the merge of every touched partition that no unfinished slice
    /// can stage into any more (P1).
    fn queue_due_merges(&mut self) -> Vec<QueuedMerge> {
        let mut undone = Vec::new();
        for (i, slice) in self.plan.iter().enumerate() {
            if !self.slices_done.contains(&(i as u32)) {
                match slice.days() {
                    Some(days) => undone.push(days),
                    // An unfinished slice that can touch any partition: nothing is due yet.
                    None => return Vec::new(),
                }
            }
        }
        let due: Vec<String> = self
            .dts
            .iter()
            .filter(|dt| !self.merges_queued.contains_key(*dt))
            .filter(|dt| {
                day_of_dt(dt).is_some_and(|day| !undone.iter().any(|(lo, hi)| (*lo..=*hi).contains(&day)))
            })
            .cloned()
            .collect();
        self.merges_outstanding += due.len() as i64;
        due.into_iter()
            .map(|dt| {
                self.merges_queued.insert(dt.clone(), 1);
                QueuedMerge { dt, pass: 0 }
            })
            .collect()
    }

    /// Every merge task the run has queued (the closing job re-sends those not done).
    pub fn queued_merges(&self) -> impl Iterator<Item = QueuedMerge> + '_ {
        self.merges_queued
            .iter()
            .flat_map(|(dt, passes)| (0..*passes).map(move |pass| QueuedMerge { dt: dt.clone(), pass }))
    }

    /// fetching → merging once no page is outstanding (L3): counts the closing task (and the
    /// merge of any touched partition not queued yet); false otherwise.
    pub fn begin_merging(&mut self, closing_job: &str, now: EpochMs) -> bool {
        if self.status != RunStatus::Fetching || self.pages_outstanding != 0 {
            return false;
        }
        self.status = RunStatus::Merging;
        let unqueued: Vec<String> = self
            .dts
            .iter()
            .filter(|dt| !self.merges_queued.contains_key(*dt))
            .cloned()
            .collect();
        self.merges_outstanding += unqueued.len() as i64 + 1;
        for dt in unqueued {
            self.merges_queued.insert(dt, 1);
        }
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::clock::DAY_MS;

    /// A run in planning, for tests.
    pub(crate) fn run_for_test(run_id: &str, table: &str, now: EpochMs) -> Run {
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

    /// A created-window slice over whole days `[from_day, to_day]`.
    fn days(from_day: i64, to_day: i64) -> Slice {
        Slice::Created {
            object_type: "deals".into(),
            from_ms: from_day * DAY_MS,
            to_ms: (to_day + 1) * DAY_MS - 1,
            id_min: 0,
            id_max: u64::MAX,
        }
    }

    fn page(slice_no: u32, dts: &[&str], last: bool) -> PageOutcome {
        PageOutcome {
            slice_no,
            dts: dts.iter().map(|d| d.to_string()).collect(),
            records: 1,
            next_cursor: (!last).then(|| "c".to_string()),
            ..Default::default()
        }
    }

    fn merges(e: &PageEffects) -> Vec<(&str, u32)> {
        e.merges.iter().map(|m| (m.dt.as_str(), m.pass)).collect()
    }

    #[test]
    fn slices_start_in_waves_and_partitions_merge_when_their_slices_are_done_l5_p1() {
        // 1970-01-01..03 are days 0..2; slice 1 shares day 1 with slice 0.
        let plan = vec![days(0, 1), days(1, 1), days(2, 2)];
        let mut run = run_for_test("r", "deals", 0);
        assert!(run.start_fetching(&plan, 2, 0, 10));
        assert_eq!(run.started(), 2);
        let (left, e) = run.apply_page(&page(0, &["1970-01-01", "1970-01-02"], false), 1, 10);
        assert_eq!((left, e.is_empty()), (3, true));
        // Slice 0 ends: day 0 is due, day 1 waits for slice 1; slice 2 starts.
        let (left, e) = run.apply_page(&page(0, &[], true), 2, 10);
        assert_eq!(
            (left, e.launch.clone(), merges(&e)),
            (2, vec![2], vec![("1970-01-01", 0)])
        );
        let (_, e) = run.apply_page(&page(1, &["1970-01-02"], true), 3, 10);
        assert_eq!((e.launch.is_empty(), merges(&e)), (true, vec![("1970-01-02", 0)]));
        // A stray record of slice 2 in day 0, whose merge is queued: a second pass.
        let (left, e) = run.apply_page(&page(2, &["1970-01-03", "1970-01-01"], true), 4, 10);
        assert_eq!(left, 0);
        assert_eq!(merges(&e), vec![("1970-01-01", 1), ("1970-01-03", 0)]);
        assert_eq!(run.merges_outstanding, 4);
        // Leaving fetching counts only the closing task.
        assert!(run.begin_merging("s00002-p000000", 5));
        assert_eq!(run.merges_outstanding, 5);
        assert_eq!(run.queued_merges().count(), 4);
    }

    #[test]
    fn a_slice_that_can_touch_any_partition_holds_every_merge_until_it_is_done() {
        let list = Slice::List {
            object_type: "calls".into(),
        };
        let mut run = run_for_test("r", "activities", 0);
        assert!(run.start_fetching(&[days(0, 0), list], 8, 0, 10));
        let (_, e) = run.apply_page(&page(0, &["1970-01-01"], true), 1, 10);
        assert!(e.is_empty(), "the list walk may still stage into day 0");
        let (left, e) = run.apply_page(&page(1, &["1970-01-01", "1999-12-31"], true), 2, 10);
        assert_eq!(left, 0);
        assert_eq!(merges(&e), vec![("1970-01-01", 0), ("1999-12-31", 0)]);
    }

    #[test]
    fn runs_recorded_before_waves_started_every_slice_and_merge_at_the_end() {
        let mut run = run_for_test("r", "deals", 0);
        run.status = RunStatus::Fetching;
        run.plan = vec![days(0, 0)].into();
        run.pages_outstanding = 1;
        let old: Run = serde_json::from_str(&serde_json::to_string(&run).unwrap().replace(
            ",\"slices_done\":[],\"slices_started\":null,\"merges_queued\":{}",
            "",
        ))
        .unwrap();
        assert_eq!(old, run, "the new fields default");
        assert_eq!(old.started(), 1);
        run.dts.insert("1970-01-01".into());
        assert!(!run.begin_merging("x", 1), "a page is outstanding");
        run.pages_outstanding = 0;
        assert!(run.begin_merging("x", 1));
        assert_eq!(run.merges_outstanding, 2, "the partition and the closing task");
    }
}
