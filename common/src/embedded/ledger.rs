//! The run ledger in the embedded database. Each method is one IMMEDIATE transaction, so a
//! done-marker and the counter it guards change together or not at all (L2, L3).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Transaction};

use super::db::{Db, DbError};
use crate::clock::EpochMs;
use crate::messages::Slice;
use crate::ports::ledger::{
    BeginRun, Ledger, LedgerError, MergeCompletion, PageCompletion, PageDone, PageEffects, PageOutcome, Run,
    RunStatus,
};

#[derive(Debug, Clone)]
pub struct EmbeddedLedger {
    db: Db,
    lease_ms: i64,
    runs: RunCache,
}

impl EmbeddedLedger {
    pub fn new(db: Db, lease_ms: i64) -> Self {
        EmbeddedLedger {
            db,
            lease_ms,
            runs: RunCache::default(),
        }
    }
}

/// Runs last parsed or stored, with the body text they came from. A run is read far more
/// often than it changes (each merge reads its run twice) and a backfill's body lists thousands
/// of partitions, so parsing it dominated merging small partitions. An entry serves a read only
/// when the body just read from the database is the very text it holds: the database stays
/// the only truth, and a transaction rolled back after [`store`] merely leaves a dead entry.
#[derive(Debug, Clone, Default)]
struct RunCache(Arc<Mutex<HashMap<String, (String, Run)>>>);

/// Runs the cache holds (one process drives a few runs at a time).
const CACHED_RUNS: usize = 16;

impl RunCache {
    fn parse(&self, run_id: &str, body: String) -> Result<Run, DbError> {
        if let Some((text, run)) = self.entries().get(run_id) {
            if *text == body {
                return Ok(run.clone());
            }
        }
        let run: Run =
            serde_json::from_str(&body).map_err(|e| DbError::Other(format!("run {run_id}: {e}")))?;
        self.put(body, run.clone());
        Ok(run)
    }

    fn put(&self, body: String, run: Run) {
        let mut entries = self.entries();
        if entries.len() >= CACHED_RUNS && !entries.contains_key(&run.run_id) {
            entries.clear();
        }
        entries.insert(run.run_id.clone(), (body, run));
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Run)>> {
        // A panic while holding the lock leaves entries that are each still whole.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn load(tx: &Transaction<'_>, cache: &RunCache, run_id: &str) -> Result<Option<Run>, DbError> {
    let body: Option<String> = tx
        .query_row("SELECT body FROM runs WHERE run_id = ?1", [run_id], |r| r.get(0))
        .optional()?;
    body.map(|b| cache.parse(run_id, b)).transpose()
}

fn must_load(tx: &Transaction<'_>, cache: &RunCache, run_id: &str) -> Result<Run, DbError> {
    load(tx, cache, run_id)?.ok_or_else(|| DbError::Other(format!("run `{run_id}` not found")))
}

fn store(tx: &Transaction<'_>, cache: &RunCache, run: &Run) -> Result<(), DbError> {
    let body = serde_json::to_string(run).map_err(|e| DbError::Other(e.to_string()))?;
    tx.execute(
        "INSERT INTO runs (run_id, tbl, started_at, body) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (run_id) DO UPDATE SET body = excluded.body",
        params![run.run_id, run.table, run.started_at_ms, body],
    )?;
    cache.put(body, run.clone());
    Ok(())
}

/// Inserts a done-marker (with a page's next cursor and effects); false when it already existed.
fn mark(
    tx: &Transaction<'_>,
    run_id: &str,
    marker: &str,
    next_cursor: Option<&str>,
    effects: Option<&PageEffects>,
) -> Result<bool, DbError> {
    let effects = effects
        .filter(|e| !e.is_empty())
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| DbError::Other(e.to_string()))?;
    Ok(tx.execute(
        "INSERT OR IGNORE INTO markers (run_id, marker, next_cursor, effects) VALUES (?1, ?2, ?3, ?4)",
        params![run_id, marker, next_cursor, effects],
    )? > 0)
}

fn has_mark(tx: &Transaction<'_>, run_id: &str, marker: &str) -> Result<bool, DbError> {
    Ok(tx
        .query_row(
            "SELECT 1 FROM markers WHERE run_id = ?1 AND marker = ?2",
            [run_id, marker],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

fn release_table(tx: &Transaction<'_>, run: &Run) -> Result<(), DbError> {
    tx.execute(
        "DELETE FROM active_runs WHERE tbl = ?1 AND run_id = ?2",
        [&run.table, &run.run_id],
    )?;
    Ok(())
}

fn ledger_err(e: DbError) -> LedgerError {
    match e {
        DbError::Other(m) if m.ends_with("not found") => LedgerError::UnknownRun(m),
        e => LedgerError::Backend(e.to_string()),
    }
}

#[async_trait]
impl Ledger for EmbeddedLedger {
    async fn begin_run(&self, run: &Run, now: EpochMs) -> Result<BeginRun, LedgerError> {
        let run = run.clone();
        let runs = self.runs.clone();
        self.db
            .tx(move |tx| {
                if let Some(existing) = load(tx, &runs, &run.run_id)? {
                    return Ok(BeginRun::Existing(existing));
                }
                let active: Option<String> = tx
                    .query_row("SELECT run_id FROM active_runs WHERE tbl = ?1", [&run.table], |r| r.get(0))
                    .optional()?;
                if let Some(active_id) = active {
                    let mut other = must_load(tx, &runs, &active_id)?;
                    if !other.lease_expired(now) && other.status.is_active() {
                        return Ok(BeginRun::Refused(other));
                    }
                    // L4: an expired run is abandoned before the table is given to a new one.
                    if other.status.is_active() {
                        other.status = RunStatus::Abandoned;
                        other.note = Some(format!("lease expired at {}", crate::clock::iso(other.lease_until_ms)));
                        other.updated_at_ms = now;
                        store(tx, &runs, &other)?;
                        tracing::warn!(run_id = %other.run_id, table = %other.table, "abandoned run whose lease expired");
                    }
                    release_table(tx, &other)?;
                }
                tx.execute(
                    "INSERT INTO active_runs (tbl, run_id) VALUES (?1, ?2)",
                    [&run.table, &run.run_id],
                )?;
                store(tx, &runs, &run)?;
                Ok(BeginRun::Started(run))
            })
            .await
            .map_err(ledger_err)
    }

    async fn get_run(&self, run_id: &str) -> Result<Option<Run>, LedgerError> {
        let run_id = run_id.to_string();
        let runs = self.runs.clone();
        self.db
            .tx(move |tx| load(tx, &runs, &run_id))
            .await
            .map_err(ledger_err)
    }

    async fn active_run(&self, table: &str) -> Result<Option<Run>, LedgerError> {
        let table = table.to_string();
        let runs = self.runs.clone();
        self.db
            .tx(move |tx| {
                let id: Option<String> = tx
                    .query_row("SELECT run_id FROM active_runs WHERE tbl = ?1", [&table], |r| {
                        r.get(0)
                    })
                    .optional()?;
                match id {
                    Some(id) => load(tx, &runs, &id),
                    None => Ok(None),
                }
            })
            .await
            .map_err(ledger_err)
    }

    async fn list_runs(&self, table: Option<&str>, limit: usize) -> Result<Vec<Run>, LedgerError> {
        let table = table.map(str::to_string);
        let runs = self.runs.clone();
        self.db
            .tx(move |tx| {
                let mut stmt = tx.prepare(
                    "SELECT run_id, body FROM runs WHERE (?1 IS NULL OR tbl = ?1)
                     ORDER BY started_at DESC, run_id DESC LIMIT ?2",
                )?;
                let rows = stmt
                    .query_map(params![table, limit as i64], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                rows.into_iter()
                    .map(|(run_id, body)| runs.parse(&run_id, body))
                    .collect()
            })
            .await
            .map_err(ledger_err)
    }

    async fn start_fetching(
        &self,
        run_id: &str,
        plan: &[Slice],
        in_flight: usize,
        now: EpochMs,
    ) -> Result<bool, LedgerError> {
        let (run_id, plan, lease) = (run_id.to_string(), plan.to_vec(), self.lease_ms);
        let runs = self.runs.clone();
        self.db
            .tx(move |tx| {
                let mut run = must_load(tx, &runs, &run_id)?;
                if !run.start_fetching(&plan, in_flight, now, lease) {
                    return Ok(false);
                }
                store(tx, &runs, &run)?;
                Ok(true)
            })
            .await
            .map_err(ledger_err)
    }

    async fn page_done(&self, run_id: &str, job_id: &str) -> Result<Option<PageDone>, LedgerError> {
        let (run_id, marker) = (run_id.to_string(), format!("page:{job_id}"));
        self.db
            .tx(move |tx| {
                let row = tx
                    .query_row(
                        "SELECT next_cursor, effects FROM markers WHERE run_id = ?1 AND marker = ?2",
                        [&run_id, &marker],
                        |r| Ok((r.get::<_, Option<String>>(0)?, r.get::<_, Option<String>>(1)?)),
                    )
                    .optional()?;
                row.map(|(next_cursor, effects)| {
                    let effects = effects
                        .map(|e| serde_json::from_str(&e))
                        .transpose()
                        .map_err(|e| DbError::Other(format!("marker {marker} of run {run_id}: {e}")))?
                        .unwrap_or_default();
                    Ok(PageDone { next_cursor, effects })
                })
                .transpose()
            })
            .await
            .map_err(ledger_err)
    }

    async fn complete_page(
        &self,
        run_id: &str,
        job_id: &str,
        outcome: &PageOutcome,
        now: EpochMs,
    ) -> Result<PageCompletion, LedgerError> {
        let (run_id, marker, o, lease) = (
            run_id.to_string(),
            format!("page:{job_id}"),
            outcome.clone(),
            self.lease_ms,
        );
        let runs = self.runs.clone();
        self.db
            .tx(move |tx| {
                let mut run = must_load(tx, &runs, &run_id)?;
                let (pages_outstanding, effects) = run.apply_page(&o, now, lease);
                if !mark(tx, &run_id, &marker, o.next_cursor.as_deref(), Some(&effects))? {
                    return Ok(PageCompletion::AlreadyDone);
                }
                store(tx, &runs, &run)?;
                Ok(PageCompletion::Recorded {
                    pages_outstanding,
                    effects,
                })
            })
            .await
            .map_err(ledger_err)
    }

    async fn heartbeat(
        &self,
        worker: &str,
        now_ms: EpochMs,
        until_ms: EpochMs,
    ) -> Result<usize, LedgerError> {
        let worker = worker.to_string();
        self.db
            .tx(move |tx| {
                tx.execute(
                    "INSERT INTO workers (id, until) VALUES (?1, ?2) ON CONFLICT (id) DO UPDATE SET until = excluded.until",
                    params![worker, until_ms],
                )?;
                tx.execute("DELETE FROM workers WHERE until < ?1", [now_ms])?;
                let n: i64 = tx.query_row("SELECT COUNT(*) FROM workers", [], |r| r.get(0))?;
                Ok(n.max(1) as usize)
            })
            .await
            .map_err(ledger_err)
    }

    async fn leave(&self, worker: &str) -> Result<(), LedgerError> {
        let worker = worker.to_string();
        self.db
            .tx(move |tx| {
                tx.execute("DELETE FROM workers WHERE id = ?1", [worker])?;
                Ok(())
            })
            .await
            .map_err(ledger_err)
    }

    async fn reserve_slot(
        &self,
        key: &str,
        spacing_ms: i64,
        now_ms: EpochMs,
    ) -> Result<EpochMs, LedgerError> {
        let key = key.to_string();
        self.db
            .tx(move |tx| {
                let next: Option<i64> = tx
                    .query_row("SELECT next_free FROM schedules WHERE key = ?1", [&key], |r| {
                        r.get(0)
                    })
                    .optional()?;
                let at = next.unwrap_or(now_ms).max(now_ms);
                tx.execute(
                    "INSERT INTO schedules (key, next_free) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET next_free = excluded.next_free",
                    params![key, at + spacing_ms],
                )?;
                Ok(at)
            })
            .await
            .map_err(ledger_err)
    }

    async fn begin_merging(
        &self,
        run_id: &str,
        closing_job: &str,
        now: EpochMs,
    ) -> Result<bool, LedgerError> {
        let (run_id, closing_job) = (run_id.to_string(), closing_job.to_string());
        let runs = self.runs.clone();
        self.db
            .tx(move |tx| {
                let mut run = must_load(tx, &runs, &run_id)?;
                if !run.begin_merging(&closing_job, now) {
                    return Ok(false);
                }
                store(tx, &runs, &run)?;
                Ok(true)
            })
            .await
            .map_err(ledger_err)
    }

    async fn is_merge_done(&self, run_id: &str, task_id: &str) -> Result<bool, LedgerError> {
        let (run_id, marker) = (run_id.to_string(), format!("merge:{task_id}"));
        self.db
            .tx(move |tx| has_mark(tx, &run_id, &marker))
            .await
            .map_err(ledger_err)
    }

    async fn done_merges(&self, run_id: &str) -> Result<HashSet<String>, LedgerError> {
        let run_id = run_id.to_string();
        self.db
            .tx(move |tx| {
                let mut stmt = tx.prepare_cached(
                    "SELECT substr(marker, 7) FROM markers WHERE run_id = ?1 AND marker LIKE 'merge:%'",
                )?;
                let ids = stmt
                    .query_map([&run_id], |row| row.get::<_, String>(0))?
                    .collect::<Result<HashSet<String>, _>>()?;
                Ok(ids)
            })
            .await
            .map_err(ledger_err)
    }

    async fn complete_merge(
        &self,
        run_id: &str,
        task_id: &str,
        now: EpochMs,
    ) -> Result<MergeCompletion, LedgerError> {
        let (run_id, marker, lease) = (run_id.to_string(), format!("merge:{task_id}"), self.lease_ms);
        let runs = self.runs.clone();
        self.db
            .tx(move |tx| {
                let mut run = must_load(tx, &runs, &run_id)?;
                if !mark(tx, &run_id, &marker, None, None)? {
                    return Ok(MergeCompletion::AlreadyDone);
                }
                let merges_outstanding = run.apply_merge(now, lease);
                store(tx, &runs, &run)?;
                Ok(MergeCompletion::Recorded { merges_outstanding })
            })
            .await
            .map_err(ledger_err)
    }

    async fn finish(
        &self,
        run_id: &str,
        status: RunStatus,
        note: Option<&str>,
        now: EpochMs,
    ) -> Result<bool, LedgerError> {
        let (run_id, note) = (run_id.to_string(), note.map(str::to_string));
        let runs = self.runs.clone();
        self.db
            .tx(move |tx| {
                let mut run = must_load(tx, &runs, &run_id)?;
                if !run.finish(status, note.as_deref(), now) {
                    return Ok(false);
                }
                store(tx, &runs, &run)?;
                release_table(tx, &run)?;
                Ok(true)
            })
            .await
            .map_err(ledger_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) use crate::ports::run::tests::run_for_test;

    #[test]
    fn the_run_cache_serves_only_the_text_it_parsed() {
        let cache = RunCache::default();
        let mut run = run_for_test("r1", "deals", 0);
        let old = serde_json::to_string(&run).unwrap();
        assert_eq!(cache.parse("r1", old.clone()).unwrap(), run);
        run.records = 7;
        let new = serde_json::to_string(&run).unwrap();
        assert_eq!(
            cache.parse("r1", new).unwrap().records,
            7,
            "a changed body is parsed again"
        );
        assert_eq!(cache.parse("r1", old).unwrap().records, 0);
    }

    #[tokio::test]
    async fn counters_are_guarded_by_markers_and_one_run_per_table() {
        let dir = tempfile::tempdir().unwrap();
        let l = EmbeddedLedger::new(Db::open(&dir.path().join("l.db")).unwrap(), 1000);
        let r1 = run_for_test("r1", "deals", 0);
        assert!(matches!(l.begin_run(&r1, 0).await.unwrap(), BeginRun::Started(_)));
        assert!(matches!(
            l.begin_run(&r1, 0).await.unwrap(),
            BeginRun::Existing(_)
        ));
        let r2 = run_for_test("r2", "deals", 0);
        assert!(
            matches!(l.begin_run(&r2, 10).await.unwrap(), BeginRun::Refused(_)),
            "L1"
        );
        let slice = Slice::List {
            object_type: "deals".into(),
        };
        assert!(l
            .start_fetching("r1", &[slice.clone(), slice], 1, 5)
            .await
            .unwrap());
        assert!(!l.start_fetching("r1", &[], 1, 5).await.unwrap());
        let out = |slice_no: u32, next: bool, dt: &str| PageOutcome {
            slice_no,
            dts: [dt.to_string()].into(),
            max_created_ms: Some(1),
            max_modified_ms: Some(2),
            records: 10,
            next_cursor: next.then(|| "c".to_string()),
        };
        assert_eq!(
            l.complete_page("r1", "a", &out(0, true, "2024-01-01"), 6)
                .await
                .unwrap(),
            PageCompletion::Recorded {
                pages_outstanding: 2,
                effects: PageEffects::default()
            }
        );
        assert_eq!(
            l.complete_page("r1", "a", &out(0, true, "2024-01-01"), 6)
                .await
                .unwrap(),
            PageCompletion::AlreadyDone
        );
        // Slice 0 ends: slice 1 starts (L5); the list walk of slice 1 holds every merge (P1).
        let launched = PageEffects {
            launch: vec![1],
            merges: vec![],
        };
        assert_eq!(
            l.complete_page("r1", "b", &out(0, false, "2024-01-02"), 7)
                .await
                .unwrap(),
            PageCompletion::Recorded {
                pages_outstanding: 1,
                effects: launched.clone()
            }
        );
        let done = l.page_done("r1", "b").await.unwrap().unwrap();
        assert_eq!(
            (done.next_cursor, done.effects),
            (None, launched),
            "kept for a redelivery"
        );
        assert!(
            !l.begin_merging("r1", "b", 7).await.unwrap(),
            "one slice still open"
        );
        let PageCompletion::Recorded { effects, .. } = l
            .complete_page("r1", "c", &out(1, false, "2024-01-02"), 8)
            .await
            .unwrap()
        else {
            panic!("c is new")
        };
        assert_eq!(effects.merges.len(), 2, "both partitions are due");
        assert!(l.begin_merging("r1", "c", 8).await.unwrap());
        let run = l.get_run("r1").await.unwrap().unwrap();
        assert_eq!((run.merges_outstanding, run.records), (3, 30));
        assert_eq!(
            l.complete_merge("r1", "d1", 9).await.unwrap(),
            MergeCompletion::Recorded {
                merges_outstanding: 2
            }
        );
        assert_eq!(
            l.complete_merge("r1", "d1", 9).await.unwrap(),
            MergeCompletion::AlreadyDone
        );
        assert_eq!(
            l.done_merges("r1").await.unwrap(),
            HashSet::from(["d1".to_string()]),
            "merge markers only, not the pages'"
        );
        assert!(l.done_merges("r2").await.unwrap().is_empty());
        assert!(l.finish("r1", RunStatus::Committed, None, 10).await.unwrap());
        assert!(!l.finish("r1", RunStatus::Abandoned, None, 10).await.unwrap());
        assert!(matches!(
            l.begin_run(&r2, 11).await.unwrap(),
            BeginRun::Started(_)
        ));
    }

    #[tokio::test]
    async fn slots_are_spaced_on_one_schedule_r5() {
        let dir = tempfile::tempdir().unwrap();
        let l = EmbeddedLedger::new(Db::open(&dir.path().join("l.db")).unwrap(), 1000);
        let mut at = Vec::new();
        for now in [100, 100, 100, 450, 2000] {
            at.push(l.reserve_slot("search", 200, now).await.unwrap());
        }
        assert_eq!(
            at,
            [100, 300, 500, 700, 2000],
            "queued behind each other, then idle"
        );
        assert_eq!(
            l.reserve_slot("general", 50, 100).await.unwrap(),
            100,
            "schedules apart"
        );
    }

    #[tokio::test]
    async fn an_expired_lease_abandons_the_run_and_frees_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let l = EmbeddedLedger::new(Db::open(&dir.path().join("l.db")).unwrap(), 1000);
        l.begin_run(&run_for_test("r1", "deals", 0), 0).await.unwrap();
        let r2 = run_for_test("r2", "deals", 5000);
        assert!(
            matches!(l.begin_run(&r2, 5000).await.unwrap(), BeginRun::Started(_)),
            "L4"
        );
        assert_eq!(
            l.get_run("r1").await.unwrap().unwrap().status,
            RunStatus::Abandoned
        );
        assert_eq!(l.active_run("deals").await.unwrap().unwrap().run_id, "r2");
        assert_eq!(l.list_runs(Some("deals"), 10).await.unwrap().len(), 2);
    }
}
