//! The run ledger in the embedded database. Each method is one IMMEDIATE transaction, so a
//! done-marker and the counter it guards change together or not at all (L2, L3), and a
//! partition's publish compares its generation and writes in one step (G1).
//!
//! Tables: `runs` (heads), `slices` (the plan, one row per slice), `page_marks` and
//! `merge_marks` (done-markers), `partitions` (generations), `index_versions`, `active_runs`,
//! `workers`, `schedules`. See `db.rs` for the schema.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Transaction};

use super::db::{Db, DbError};
use common::clock::EpochMs;
use common::meet::{MeetStep, Meeting};
use common::messages::Slice;
use common::ports::ledger::{
    BeginRun, IndexVersion, Ledger, LedgerError, MergeCompletion, PageCompletion, PageDone, PageEffects,
    PageOutcome, Partition, Run, RunStatus,
};
use common::ports::run::{decode_dts, encode_dts};

#[derive(Debug, Clone)]
pub struct EmbeddedLedger {
    db: Db,
    lease_ms: i64,
}

impl EmbeddedLedger {
    pub fn new(db: Db, lease_ms: i64) -> Self {
        EmbeddedLedger { db, lease_ms }
    }
}

fn parse_run(run_id: &str, body: &str) -> Result<Run, DbError> {
    serde_json::from_str(body).map_err(|e| DbError::Other(format!("run {run_id}: {e}")))
}

fn load(tx: &Transaction<'_>, run_id: &str) -> Result<Option<Run>, DbError> {
    let body: Option<String> = tx
        .prepare_cached("SELECT body FROM runs WHERE run_id = ?1")?
        .query_row([run_id], |r| r.get(0))
        .optional()?;
    body.map(|b| parse_run(run_id, &b)).transpose()
}

fn must_load(tx: &Transaction<'_>, run_id: &str) -> Result<Run, DbError> {
    load(tx, run_id)?.ok_or_else(|| DbError::Other(format!("run `{run_id}` not found")))
}

fn store(tx: &Transaction<'_>, run: &Run) -> Result<(), DbError> {
    let body = serde_json::to_string(run).map_err(|e| DbError::Other(e.to_string()))?;
    tx.prepare_cached(
        "INSERT INTO runs (run_id, tbl, started_at, body) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (run_id) DO UPDATE SET body = excluded.body",
    )?
    .execute(params![run.run_id, run.table, run.started_at_ms, body])?;
    Ok(())
}

fn release_table(tx: &Transaction<'_>, run: &Run) -> Result<(), DbError> {
    tx.execute(
        "DELETE FROM active_runs WHERE tbl = ?1 AND run_id = ?2",
        [&run.table, &run.run_id],
    )?;
    Ok(())
}

fn parse_slice(body: &str) -> Result<Slice, DbError> {
    serde_json::from_str(body).map_err(|e| DbError::Other(format!("slice: {e}")))
}

fn page_done_row(
    job: &str,
    (attempt, dts, next_cursor, fingerprint, effects): (
        String,
        String,
        Option<String>,
        String,
        Option<String>,
    ),
) -> Result<PageDone, DbError> {
    let bad = |what: &str, e: String| DbError::Other(format!("marker of page {job}: {what}: {e}"));
    Ok(PageDone {
        attempt,
        dts: decode_dts(&dts).map_err(|e| bad("partitions", e))?,
        next_cursor,
        fingerprint,
        effects: effects
            .map(|e| serde_json::from_str(&e))
            .transpose()
            .map_err(|e| bad("effects", e.to_string()))?
            .unwrap_or_default(),
    })
}

type PageRow = (String, String, Option<String>, String, Option<String>);

fn page_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PageRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn ledger_err(e: DbError) -> LedgerError {
    match e {
        DbError::Other(m) if m.ends_with("not found") => LedgerError::UnknownRun(m),
        e => LedgerError::Backend(e.to_string()),
    }
}

fn partition_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Partition> {
    Ok(Partition {
        gen: r.get::<_, i64>(0)? as u64,
        file: r.get(1)?,
        writer_run: r.get(2)?,
        writer_started_ms: r.get(3)?,
    })
}

#[async_trait]
impl Ledger for EmbeddedLedger {
    async fn begin_run(&self, run: &Run, now: EpochMs) -> Result<BeginRun, LedgerError> {
        let run = run.clone();
        self.db
            .tx(move |tx| {
                if let Some(existing) = load(tx, &run.run_id)? {
                    return Ok(BeginRun::Existing(existing));
                }
                let active: Option<String> = tx
                    .query_row("SELECT run_id FROM active_runs WHERE tbl = ?1", [&run.table], |r| r.get(0))
                    .optional()?;
                if let Some(active_id) = active {
                    let mut other = must_load(tx, &active_id)?;
                    if !other.lease_expired(now) && other.status.is_active() {
                        return Ok(BeginRun::Refused(other));
                    }
                    // L4: an expired run is abandoned before the table is given to a new one.
                    if other.status.is_active() {
                        let note = format!("lease expired at {}", common::clock::iso(other.lease_until_ms));
                        other.finish(RunStatus::Abandoned, Some(&note), now);
                        store(tx, &other)?;
                        tracing::warn!(run_id = %other.run_id, table = %other.table, "abandoned run whose lease expired");
                    }
                    release_table(tx, &other)?;
                }
                tx.execute(
                    "INSERT INTO active_runs (tbl, run_id) VALUES (?1, ?2)",
                    [&run.table, &run.run_id],
                )?;
                store(tx, &run)?;
                Ok(BeginRun::Started(run))
            })
            .await
            .map_err(ledger_err)
    }

    async fn get_run(&self, run_id: &str) -> Result<Option<Run>, LedgerError> {
        let run_id = run_id.to_string();
        self.db.tx(move |tx| load(tx, &run_id)).await.map_err(ledger_err)
    }

    async fn active_run(&self, table: &str) -> Result<Option<Run>, LedgerError> {
        let table = table.to_string();
        self.db
            .tx(move |tx| {
                let id: Option<String> = tx
                    .query_row("SELECT run_id FROM active_runs WHERE tbl = ?1", [&table], |r| {
                        r.get(0)
                    })
                    .optional()?;
                match id {
                    Some(id) => Ok(load(tx, &id)?.filter(|r| r.status.is_active())),
                    None => Ok(None),
                }
            })
            .await
            .map_err(ledger_err)
    }

    async fn list_runs(&self, table: Option<&str>, limit: usize) -> Result<Vec<Run>, LedgerError> {
        let table = table.map(str::to_string);
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
                rows.iter().map(|(id, body)| parse_run(id, body)).collect()
            })
            .await
            .map_err(ledger_err)
    }

    async fn start_fetching(
        &self,
        run_id: &str,
        plan: &[Slice],
        expected_records: Option<u64>,
        in_flight: usize,
        now: EpochMs,
    ) -> Result<bool, LedgerError> {
        let (run_id, lease) = (run_id.to_string(), self.lease_ms);
        let bodies = plan
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| LedgerError::Backend(e.to_string()))?;
        self.db
            .tx(move |tx| {
                let mut run = must_load(tx, &run_id)?;
                if !run.start_fetching(bodies.len() as u32, in_flight, now, lease) {
                    return Ok(false);
                }
                run.expected_records = expected_records;
                tx.execute("DELETE FROM slices WHERE run_id = ?1", [&run_id])?;
                let mut insert =
                    tx.prepare_cached("INSERT INTO slices (run_id, slice_no, body) VALUES (?1, ?2, ?3)")?;
                for (i, body) in bodies.iter().enumerate() {
                    insert.execute(params![run_id, i as i64, body])?;
                }
                store(tx, &run)?;
                Ok(true)
            })
            .await
            .map_err(ledger_err)
    }

    async fn slice(&self, run_id: &str, slice_no: u32) -> Result<Option<Slice>, LedgerError> {
        let run_id = run_id.to_string();
        self.db
            .tx(move |tx| {
                let body: Option<String> = tx
                    .prepare_cached("SELECT body FROM slices WHERE run_id = ?1 AND slice_no = ?2")?
                    .query_row(params![run_id, slice_no], |r| r.get(0))
                    .optional()?;
                body.map(|b| parse_slice(&b)).transpose()
            })
            .await
            .map_err(ledger_err)
    }

    async fn slices(&self, run_id: &str, count: u32) -> Result<Vec<Slice>, LedgerError> {
        let run_id = run_id.to_string();
        self.db
            .tx(move |tx| {
                let mut stmt = tx.prepare_cached(
                    "SELECT body FROM slices WHERE run_id = ?1 AND slice_no < ?2 ORDER BY slice_no",
                )?;
                let bodies = stmt
                    .query_map(params![run_id, count], |r| r.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()?;
                bodies.iter().map(|b| parse_slice(b)).collect()
            })
            .await
            .map_err(ledger_err)
    }

    async fn page_done(&self, run_id: &str, job_id: &str) -> Result<Option<PageDone>, LedgerError> {
        let (run_id, job) = (run_id.to_string(), job_id.to_string());
        self.db
            .tx(move |tx| {
                let row = tx
                    .prepare_cached(
                        "SELECT attempt, dts, next_cursor, fingerprint, effects FROM page_marks
                         WHERE run_id = ?1 AND job = ?2",
                    )?
                    .query_row([&run_id, &job], page_row)
                    .optional()?;
                row.map(|r| page_done_row(&job, r)).transpose()
            })
            .await
            .map_err(ledger_err)
    }

    async fn page_attempts(
        &self,
        run_id: &str,
        job_ids: &[String],
    ) -> Result<HashMap<String, String>, LedgerError> {
        let (run_id, jobs) = (run_id.to_string(), job_ids.to_vec());
        self.db
            .tx(move |tx| {
                let mut stmt =
                    tx.prepare_cached("SELECT attempt FROM page_marks WHERE run_id = ?1 AND job = ?2")?;
                let mut out = HashMap::new();
                for job in jobs {
                    if let Some(attempt) = stmt
                        .query_row([&run_id, &job], |r| r.get::<_, String>(0))
                        .optional()?
                    {
                        out.insert(job, attempt);
                    }
                }
                Ok(out)
            })
            .await
            .map_err(ledger_err)
    }

    async fn page_markers(
        &self,
        run_id: &str,
        slice_no: Option<u32>,
    ) -> Result<Vec<(String, PageDone)>, LedgerError> {
        let run_id = run_id.to_string();
        self.db
            .tx(move |tx| {
                let mut stmt = tx.prepare_cached(
                    "SELECT job, attempt, dts, next_cursor, fingerprint, effects FROM page_marks
                     WHERE run_id = ?1 AND (?2 IS NULL OR slice_no = ?2) ORDER BY job",
                )?;
                let rows = stmt
                    .query_map(params![run_id, slice_no], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?),
                        ))
                    })?
                    .collect::<Result<Vec<(String, PageRow)>, _>>()?;
                rows.into_iter()
                    .map(|(job, row)| Ok((job.clone(), page_done_row(&job, row)?)))
                    .collect()
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
        let (run_id, job, o, lease) = (
            run_id.to_string(),
            job_id.to_string(),
            outcome.clone(),
            self.lease_ms,
        );
        self.db
            .tx(move |tx| {
                let mut run = must_load(tx, &run_id)?;
                let (pages_outstanding, effects) = run.apply_page(&o, now, lease);
                let effects_json = (effects != PageEffects::default())
                    .then(|| serde_json::to_string(&effects))
                    .transpose()
                    .map_err(|e| DbError::Other(e.to_string()))?;
                let fresh =
                    tx.prepare_cached(
                        "INSERT OR IGNORE INTO page_marks
                         (run_id, job, slice_no, attempt, dts, next_cursor, fingerprint, effects)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    )?
                    .execute(params![
                        run_id,
                        job,
                        o.slice_no,
                        o.attempt,
                        encode_dts(&o.dts),
                        o.next_cursor,
                        o.fingerprint,
                        effects_json
                    ])? > 0;
                if !fresh {
                    return Ok(PageCompletion::AlreadyDone);
                }
                store(tx, &run)?;
                Ok(PageCompletion::Recorded {
                    pages_outstanding,
                    effects,
                })
            })
            .await
            .map_err(ledger_err)
    }

    async fn begin_merging(
        &self,
        run_id: &str,
        closing_job: &str,
        close_merges: i64,
        now: EpochMs,
    ) -> Result<bool, LedgerError> {
        let (run_id, closing_job) = (run_id.to_string(), closing_job.to_string());
        self.db
            .tx(move |tx| {
                let mut run = must_load(tx, &run_id)?;
                if !run.begin_merging(&closing_job, close_merges, now) {
                    return Ok(false);
                }
                store(tx, &run)?;
                Ok(true)
            })
            .await
            .map_err(ledger_err)
    }

    async fn is_merge_done(&self, run_id: &str, task_id: &str) -> Result<bool, LedgerError> {
        let (run_id, task) = (run_id.to_string(), task_id.to_string());
        self.db
            .tx(move |tx| {
                Ok(tx
                    .prepare_cached("SELECT 1 FROM merge_marks WHERE run_id = ?1 AND task = ?2")?
                    .query_row([&run_id, &task], |_| Ok(()))
                    .optional()?
                    .is_some())
            })
            .await
            .map_err(ledger_err)
    }

    async fn done_merges(&self, run_id: &str) -> Result<HashSet<String>, LedgerError> {
        let run_id = run_id.to_string();
        self.db
            .tx(move |tx| {
                let mut stmt = tx.prepare_cached("SELECT task FROM merge_marks WHERE run_id = ?1")?;
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
        let (run_id, task, lease) = (run_id.to_string(), task_id.to_string(), self.lease_ms);
        self.db
            .tx(move |tx| {
                let mut run = must_load(tx, &run_id)?;
                let fresh = tx
                    .prepare_cached("INSERT OR IGNORE INTO merge_marks (run_id, task) VALUES (?1, ?2)")?
                    .execute([&run_id, &task])?
                    > 0;
                if !fresh {
                    return Ok(MergeCompletion::AlreadyDone);
                }
                let merges_outstanding = run.apply_merge(now, lease);
                store(tx, &run)?;
                Ok(MergeCompletion::Recorded { merges_outstanding })
            })
            .await
            .map_err(ledger_err)
    }

    async fn partition(&self, table: &str, dt: &str) -> Result<Option<Partition>, LedgerError> {
        let (table, dt) = (table.to_string(), dt.to_string());
        self.db
            .tx(move |tx| {
                Ok(tx
                    .prepare_cached(
                        "SELECT gen, file, writer_run, writer_started FROM partitions WHERE tbl = ?1 AND dt = ?2",
                    )?
                    .query_row([&table, &dt], partition_row)
                    .optional()?)
            })
            .await
            .map_err(ledger_err)
    }

    async fn partitions(
        &self,
        table: &str,
        dts: &[String],
    ) -> Result<HashMap<String, Partition>, LedgerError> {
        let (table, dts) = (table.to_string(), dts.to_vec());
        self.db
            .tx(move |tx| {
                let mut stmt = tx.prepare_cached(
                    "SELECT gen, file, writer_run, writer_started FROM partitions WHERE tbl = ?1 AND dt = ?2",
                )?;
                let mut out = HashMap::new();
                for dt in dts {
                    if let Some(p) = stmt.query_row([&table, &dt], partition_row).optional()? {
                        out.insert(dt, p);
                    }
                }
                Ok(out)
            })
            .await
            .map_err(ledger_err)
    }

    async fn publish(
        &self,
        table: &str,
        dt: &str,
        expected: u64,
        next: &Partition,
    ) -> Result<bool, LedgerError> {
        let (table, dt, next) = (table.to_string(), dt.to_string(), next.clone());
        self.db
            .tx(move |tx| {
                let current: Option<i64> = tx
                    .prepare_cached("SELECT gen FROM partitions WHERE tbl = ?1 AND dt = ?2")?
                    .query_row([&table, &dt], |r| r.get(0))
                    .optional()?;
                if current.unwrap_or(0) as u64 != expected {
                    return Ok(false);
                }
                tx.prepare_cached(
                    "INSERT INTO partitions (tbl, dt, gen, file, writer_run, writer_started)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (tbl, dt) DO UPDATE SET gen = excluded.gen, file = excluded.file,
                       writer_run = excluded.writer_run, writer_started = excluded.writer_started",
                )?
                .execute(params![
                    table,
                    dt,
                    (expected + 1) as i64,
                    next.file,
                    next.writer_run,
                    next.writer_started_ms
                ])?;
                Ok(true)
            })
            .await
            .map_err(ledger_err)
    }

    async fn index_version(&self, table: &str) -> Result<Option<IndexVersion>, LedgerError> {
        let table = table.to_string();
        self.db
            .tx(move |tx| {
                Ok(tx
                    .prepare_cached("SELECT run_id, started_at FROM index_versions WHERE tbl = ?1")?
                    .query_row([&table], |r| {
                        Ok(IndexVersion {
                            run_id: r.get(0)?,
                            started_at_ms: r.get(1)?,
                        })
                    })
                    .optional()?)
            })
            .await
            .map_err(ledger_err)
    }

    async fn set_index_version(&self, table: &str, version: &IndexVersion) -> Result<bool, LedgerError> {
        let (table, v) = (table.to_string(), version.clone());
        self.db
            .tx(move |tx| {
                Ok(tx.execute(
                    "INSERT INTO index_versions (tbl, run_id, started_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (tbl) DO UPDATE SET run_id = excluded.run_id, started_at = excluded.started_at
                     WHERE excluded.started_at > index_versions.started_at",
                    params![table, v.run_id, v.started_at_ms],
                )? > 0)
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

    async fn meet(&self, run_id: &str, object_type: &str, step: &MeetStep) -> Result<Meeting, LedgerError> {
        let (run_id, object_type, step) = (run_id.to_string(), object_type.to_string(), step.clone());
        self.db
            .tx(move |tx| {
                let body: Option<String> = tx
                    .query_row(
                        "SELECT body FROM meetings WHERE run_id = ?1 AND object_type = ?2",
                        params![run_id, object_type],
                        |r| r.get(0),
                    )
                    .optional()?;
                let mut meeting: Meeting = match body {
                    Some(b) => serde_json::from_str(&b)
                        .map_err(|e| DbError::Other(format!("meeting of {run_id}/{object_type}: {e}")))?,
                    None => Meeting::default(),
                };
                meeting.apply(&step);
                let body = serde_json::to_string(&meeting).map_err(|e| DbError::Other(e.to_string()))?;
                tx.execute(
                    "INSERT INTO meetings (run_id, object_type, body) VALUES (?1, ?2, ?3)
                     ON CONFLICT (run_id, object_type) DO UPDATE SET body = excluded.body",
                    params![run_id, object_type, body],
                )?;
                Ok(meeting)
            })
            .await
            .map_err(ledger_err)
    }

    async fn finish(
        &self,
        run_id: &str,
        status: RunStatus,
        note: Option<&str>,
        partitions: Option<u64>,
        now: EpochMs,
    ) -> Result<bool, LedgerError> {
        let (run_id, note) = (run_id.to_string(), note.map(str::to_string));
        self.db
            .tx(move |tx| {
                let mut run = must_load(tx, &run_id)?;
                if !run.finish(status, note.as_deref(), now) {
                    release_table(tx, &run)?;
                    return Ok(false);
                }
                run.partitions = partitions.or(run.partitions);
                store(tx, &run)?;
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
        l.begin_run(&Run::sample("r1", "deals", 0), 0).await.unwrap();
        let r2 = Run::sample("r2", "deals", 5000);
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

    /// K1's cache: the first pages of an incremental run ask for the index at once and share
    /// one read (the same `Arc`), and the commit in that process finds the version it read.
    #[tokio::test]
    async fn concurrent_first_asks_of_a_run_share_one_index_read_k1() {
        use common::keyindex::{IndexCache, KeyIndex};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let l = EmbeddedLedger::new(Db::open(&dir.path().join("l.db")).unwrap(), 1000);
        let lake = common::lake::Lake::local(&dir.path().join("lake")).unwrap();
        let written = KeyIndex::from_pairs(vec![(1, 10), (2, 11)]);
        written.write(&lake, "deals", "r0").await.unwrap();
        let version = IndexVersion {
            run_id: "r0".into(),
            started_at_ms: 1,
        };
        assert!(l.set_index_version("deals", &version).await.unwrap());
        let cache = IndexCache::default();
        let ask = || cache.for_run(&l, &lake, "deals", "r1");
        let (a, b, c, d) = tokio::join!(ask(), ask(), ask(), ask());
        let [a, b, c, d] = [a, b, c, d].map(|r| r.unwrap().expect("the table has an index"));
        assert_eq!(*a, written);
        for other in [&b, &c, &d] {
            assert!(Arc::ptr_eq(&a, other), "one read for every concurrent ask");
        }
        let cached = cache.cached("r1", "r0").expect("the version r1 read");
        assert!(Arc::ptr_eq(&a, &cached));
        assert!(
            cache.cached("r1", "r9").is_none(),
            "another version is not served"
        );
        assert!(cache.cached("r2", "r0").is_none(), "nor another run's ask");
    }
}
