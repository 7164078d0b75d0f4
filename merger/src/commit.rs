//! Committing a run, after its last merge. Every step is idempotent, and fenced against a
//! commit that stalled and resumes after a later run began (G2): it re-reads its run first,
//! drops a partition only by a conditional write on the generation it read and never one a
//! later run published, moves the key index and the watermark only forwards.

use common::failpoint;
use common::flow;
use common::pipeline::Pipeline;
use common::ports::{Partition, Run, RunMode, RunStatus, SyncState};
use common::schema;

use crate::worker::dead_files;
use crate::MergerError;

/// The state a committed run leaves: W1 caps each timestamp at T0 (a record changed behind a
/// full sync's cursor after T0 must fall in the next window); W2 never moves it backwards.
pub fn next_state(run: &Run, previous: Option<&SyncState>) -> SyncState {
    let t0 = run.window_to_ms;
    let cap = |seen: Option<i64>| seen.map(|s| s.min(t0));
    let keep_max = |new: Option<i64>, old: Option<i64>| new.max(old);
    SyncState {
        object_type: run.table.clone(),
        last_sync_at: t0,
        last_created_at: keep_max(cap(run.max_created_ms), previous.and_then(|s| s.last_created_at)),
        last_modified_at: keep_max(
            cap(run.max_modified_ms),
            previous.and_then(|s| s.last_modified_at),
        ),
        records_processed: run.records,
    }
}

/// E2: the columns the run backfilled (every column, for a full run) wait no more. The run
/// holds its table (L1), so nothing else writes the table's schema meanwhile; a repeated commit
/// finds nothing left to mark.
async fn mark_backfilled(p: &Pipeline, run: &Run) -> Result<(), MergerError> {
    let done = schema::for_run(&p.lake, &run.table, &run.run_id)
        .await?
        .backfill_columns();
    if done.is_empty() {
        return Ok(());
    }
    let Some(mut table) = schema::load(&p.lake, &run.table).await? else {
        return Ok(());
    };
    if schema::mark_backfilled(&mut table, &done, &run.run_id, p.now_ms()) {
        schema::save(&p.lake, &table).await?;
        tracing::info!(table = %run.table, run_id = %run.run_id, columns = ?done, "schema: column backfill done");
    }
    Ok(())
}

/// A link table's full run read every record's links: the refresh clock restarts (see
/// `TableSchema::links_refreshed_ms`).
async fn mark_links_refreshed(p: &Pipeline, run: &Run) -> Result<(), MergerError> {
    let table = crate::table_spec(p, &run.table).await?;
    if !table.is_links() {
        return Ok(());
    }
    let Some(mut recorded) = schema::load(&p.lake, &run.table).await? else {
        return Ok(());
    };
    if recorded.links_refreshed_ms >= Some(run.started_at_ms) {
        return Ok(());
    }
    recorded.links_refreshed_ms = Some(run.started_at_ms);
    schema::save(&p.lake, &recorded).await?;
    tracing::info!(table = %run.table, run_id = %run.run_id, "links refreshed: every record's links were read");
    Ok(())
}

/// Brings the table's definition in the query engines' catalog (Glue) in step with the files
/// this run wrote: their columns (a property's column is in the table once the commit that
/// first wrote it ends) and a `dt` range that takes in every partition it touched. A catalog
/// that cannot be reached warns and does not fail the run: the lake is complete without it, and
/// the next commit publishes again.
async fn publish_definition(p: &Pipeline, run: &Run, touched: &[String]) -> Result<(), MergerError> {
    let Some(metastore) = &p.metastore else {
        return Ok(());
    };
    let table = crate::table_spec(p, &run.table).await?;
    let files = schema::for_run(&p.lake, &run.table, &run.run_id)
        .await?
        .arrow_schema(&table);
    match metastore.publish(&run.table, &files, touched).await {
        Ok(true) => tracing::info!(table = %run.table, run_id = %run.run_id, columns = files.fields().len(),
            "table definition published to the catalog"),
        Ok(false) => {}
        Err(e) => tracing::warn!(table = %run.table, run_id = %run.run_id, error = %e,
            "could not publish the table's definition; the next commit tries again (check the merger's glue: permissions and that `hubsync infra up` or the stack created the database)"),
    }
    Ok(())
}

pub async fn commit(p: &Pipeline, run: &Run) -> Result<(), MergerError> {
    // G2: act on the run as the ledger has it now, not as this process last read it.
    let Some(run) = p.ledger.get_run(&run.run_id).await? else {
        return Ok(());
    };
    if run.status != RunStatus::Merging || run.merges_outstanding > 0 {
        tracing::info!(run_id = %run.run_id, status = run.status.as_str(), "not committing: the run moved on");
        return Ok(());
    }
    let touched = flow::run_partitions(p.ledger.as_ref(), &run.run_id).await?;
    if run.mode == RunMode::Full {
        // A full run replaces the table: partitions it did not touch hold only records that
        // are gone from HubSpot.
        for dt in p.lake.partitions(&run.table).await? {
            if !touched.contains(&dt) {
                drop_partition(p, &run, &dt).await?;
            }
        }
    }
    crate::index::update(p, &run, &touched).await?;
    mark_backfilled(p, &run).await?;
    if run.mode == RunMode::Full {
        mark_links_refreshed(p, &run).await?;
    }
    publish_definition(p, &run, &touched.iter().cloned().collect::<Vec<_>>()).await?;
    p.lake
        .delete_dir(&p.lake.staging_run_dir(&run.table, &run.run_id))
        .await?;
    let previous = match p.state.get(&run.table).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(table = %run.table, error = %e, "could not read the sync state before writing it");
            None
        }
    };
    let state = next_state(&run, previous.as_ref());
    match p.state.put_forward(&state).await {
        Ok(true) => {}
        Ok(false) => tracing::warn!(table = %run.table, "sync state already later; kept it (W2)"),
        // The seed's rule: a failed state write warns and does not fail the run.
        Err(e) => tracing::warn!(table = %run.table, error = %e,
            "could not write the sync state; the run still commits and the next sync re-reads the window"),
    }
    failpoint::hit(failpoint::MERGER_AFTER_STATE);
    let committed = p
        .ledger
        .finish(
            &run.run_id,
            RunStatus::Committed,
            None,
            Some(touched.len() as u64),
            p.now_ms(),
        )
        .await?;
    // Again, now that the run has ended: a late copy of a page (SQS delivers at least once)
    // may have staged files since the first sweep; one that uploads after this one finds its
    // marker taken (or the run ended) and deletes its own (S1).
    p.lake
        .delete_dir(&p.lake.staging_run_dir(&run.table, &run.run_id))
        .await?;
    if committed {
        metrics::counter!(common::metrics::RUNS_COMMITTED, "table" => run.table.clone()).increment(1);
        tracing::info!(
            run_id = %run.run_id,
            table = %run.table,
            mode = run.mode.as_str(),
            records = run.records,
            rejected = run.rejected,
            uncast = run.uncast.values().sum::<i64>(),
            uncast_by_property = ?run.uncast,
            partitions = touched.len(),
            watermark = ?state.watermark().map(common::clock::iso),
            "run committed"
        );
    }
    Ok(())
}

/// Drops a partition a full run did not touch (G2): publishes it empty on the generation read,
/// unless a run that started after this one published it, then deletes its files.
async fn drop_partition(p: &Pipeline, run: &Run, dt: &str) -> Result<(), MergerError> {
    let head = p.ledger.partition(&run.table, dt).await?;
    if let Some(h) = &head {
        if h.writer_started_ms > run.started_at_ms {
            tracing::warn!(run_id = %run.run_id, table = %run.table, %dt, writer = %h.writer_run,
                "kept a partition a later run published (this commit resumed late)");
            return Ok(());
        }
    }
    let gen = head.as_ref().map_or(0, |h| h.gen);
    let empty = Partition {
        gen: gen + 1,
        file: None,
        writer_run: run.run_id.clone(),
        writer_started_ms: run.started_at_ms,
    };
    if !p.ledger.publish(&run.table, dt, gen, &empty).await? {
        tracing::warn!(run_id = %run.run_id, table = %run.table, %dt,
            "kept a partition another merge published meanwhile");
        return Ok(());
    }
    let dead = dead_files(p, &run.table, dt, gen + 1, None).await?;
    for f in &dead {
        p.lake.delete(f).await?;
    }
    tracing::info!(run_id = %run.run_id, table = %run.table, %dt, files = dead.len(),
        "dropped partition absent from the full sync");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::ports::RunStatus;

    fn run(max_modified: Option<i64>, t0: i64) -> Run {
        Run {
            run_id: "r".into(),
            table: "deals".into(),
            request_id: "q".into(),
            mode: RunMode::Incremental,
            window_from_ms: Some(0),
            window_to_ms: t0,
            status: RunStatus::Merging,
            max_created_ms: max_modified.map(|m| m - 5),
            max_modified_ms: max_modified,
            records: 3,
            ..Default::default()
        }
    }

    #[test]
    fn watermark_is_capped_at_t0_and_never_goes_back() {
        let s = next_state(&run(Some(500), 100), None);
        assert_eq!(s.last_modified_at, Some(100), "W1: capped at T0");
        let prev = SyncState {
            object_type: "deals".into(),
            last_sync_at: 50,
            last_created_at: Some(40),
            last_modified_at: Some(90),
            records_processed: 1,
        };
        let s = next_state(&run(Some(60), 100), Some(&prev));
        assert_eq!(
            (s.last_created_at, s.last_modified_at),
            (Some(55), Some(90)),
            "W2"
        );
        let s = next_state(&run(None, 100), Some(&prev));
        assert_eq!(s.watermark(), Some(90), "an empty run keeps the watermark");
        assert_eq!(s.last_sync_at, 100);
    }
}
