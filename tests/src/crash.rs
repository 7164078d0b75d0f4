//! What must hold after a process dies at any moment (checked before anything restarts), and
//! after the restarted processes finish. Shared by the crash tests of both modes.

use std::collections::BTreeSet;

use common::failpoint;
use common::pipeline::Pipeline;
use common::ports::RunStatus;
use futures::TryStreamExt;
use sim::SimServer;

use crate::harness::{diff_lake, latest_run};

/// What a table looked like when a run began.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Keys at rest in the lake.
    pub keys: BTreeSet<i64>,
    pub watermark: Option<i64>,
}

pub async fn snapshot(sim: &SimServer, p: &Pipeline, table: &str) -> anyhow::Result<Snapshot> {
    let (lake, _) = diff_lake(sim, p, table).await?;
    Ok(Snapshot {
        keys: lake.rows.keys().copied().collect(),
        watermark: p.state.get(table).await?.and_then(|s| s.watermark()),
    })
}

/// Right after a crash, with no process running:
/// - W2: the watermark did not move backwards;
/// - W1: if it moved, every merge of the run is done, so the lake already equals the source
///   (nothing changes in the source while a crash test's run is under way);
/// - M2: no record that was at rest before the run and still lives in the source is missing.
pub async fn check_after_crash(
    sim: &SimServer,
    p: &Pipeline,
    table: &str,
    before: &Snapshot,
) -> anyhow::Result<()> {
    let watermark = p.state.get(table).await?.and_then(|s| s.watermark());
    anyhow::ensure!(
        watermark >= before.watermark,
        "W2: the watermark of {table} moved backwards: {:?} -> {watermark:?}",
        before.watermark
    );
    let (_, diff) = diff_lake(sim, p, table).await?;
    if watermark > before.watermark {
        anyhow::ensure!(
            diff.missing.is_empty() && diff.stale.is_empty() && diff.different.is_empty(),
            "W1: the watermark of {table} moved to {watermark:?} past unmerged data: {}",
            diff.summary()
        );
    }
    let lost: Vec<&i64> = before
        .keys
        .iter()
        .filter(|k| diff.missing.contains(k))
        .take(5)
        .collect();
    anyhow::ensure!(
        lost.is_empty(),
        "M2: records of {table} at rest before the crash are gone: {lost:?}"
    );
    Ok(())
}

/// After the restarted processes finished: the table equals the source with no duplicate key,
/// staging is empty, the watermark did not move backwards and is not past the last run's T0.
pub async fn check_finished(
    sim: &SimServer,
    p: &Pipeline,
    table: &str,
    before: &Snapshot,
) -> anyhow::Result<Snapshot> {
    let (lake, diff) = diff_lake(sim, p, table).await?;
    anyhow::ensure!(
        diff.is_clean(),
        "{table} differs from the source: {}",
        diff.summary()
    );
    anyhow::ensure!(diff.rows_compared == lake.row_count(), "{table}: row count");
    let run = latest_run(p, table).await?;
    anyhow::ensure!(
        run.status == RunStatus::Committed,
        "{table}: the last run {} is {}",
        run.run_id,
        run.status.as_str()
    );
    let staged: Vec<_> = p
        .lake
        .store()
        .list(Some(&p.lake.staging_run_dir(table, &run.run_id)))
        .try_collect()
        .await?;
    anyhow::ensure!(
        staged.is_empty(),
        "{table}: {} staged files left after commit",
        staged.len()
    );
    let watermark = p.state.get(table).await?.and_then(|s| s.watermark());
    anyhow::ensure!(
        watermark >= before.watermark,
        "W2: {table} watermark {:?} -> {watermark:?}",
        before.watermark
    );
    anyhow::ensure!(
        watermark.is_some_and(|w| w <= run.window_to_ms),
        "W1: {table} watermark {watermark:?} is past the run's T0 {}",
        run.window_to_ms
    );
    Ok(Snapshot {
        keys: lake.rows.keys().copied().collect(),
        watermark,
    })
}

/// Which hit of a failpoint a crash test dies on: the later ones die mid-stream, with work done
/// on both sides (runs of a few pages and tens of partitions).
pub fn hit_for(point: &str) -> u64 {
    match point {
        failpoint::CONSUMER_AFTER_STAGE | failpoint::CONSUMER_AFTER_PAGE_DONE => 2,
        failpoint::MERGER_AFTER_WRITE
        | failpoint::MERGER_AFTER_DELETE_OLD
        | failpoint::MERGER_AFTER_DELETE_STAGED
        | failpoint::MERGER_AFTER_MERGE_DONE => 3,
        _ => 1,
    }
}
