//! The step for one merge task, and its handler for the service loop.

use std::sync::Arc;

use async_trait::async_trait;
use common::catalog::columns;
use common::failpoint;
use common::lake::writer_run_id;
use common::messages::{self, MergeTask};
use common::pipeline::Pipeline;
use common::ports::{MergeCompletion, Run, RunMode, RunStatus};
use common::worker::{Handled, Handler};
use object_store::path::Path;

use crate::commit::commit;
use crate::merge::{merge_files, MergeKeys};
use crate::MergerError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskOutcome {
    Merged {
        rows: u64,
        inputs: usize,
        deleted: usize,
        committed: bool,
    },
    /// Nothing staged and the partition already is this run's single file.
    NothingToDo {
        committed: bool,
    },
    /// The task's done-marker existed: a redelivery (L3).
    Duplicate {
        committed: bool,
    },
    Stale(String),
}

pub async fn process_task(p: &Pipeline, task: &MergeTask) -> Result<TaskOutcome, MergerError> {
    let Some(run) = p.ledger.get_run(&task.run_id).await? else {
        return Err(MergerError::BadTask(format!(
            "run `{}` is not in the ledger",
            task.run_id
        )));
    };
    let now = p.now_ms();
    if run.lease_expired(now) {
        p.ledger
            .finish(&run.run_id, RunStatus::Abandoned, Some("lease expired"), now)
            .await?;
        return Ok(TaskOutcome::Stale(format!(
            "run {} abandoned: lease expired",
            run.run_id
        )));
    }
    // P1: a partition's merge may come while the run still fetches other slices; the closing
    // task (no dt) only once fetching is over.
    let may_merge = matches!(
        (&task.dt, run.status),
        (_, RunStatus::Merging) | (Some(_), RunStatus::Fetching)
    );
    if !may_merge {
        return Ok(TaskOutcome::Stale(format!(
            "run {} is {}",
            run.run_id,
            run.status.as_str()
        )));
    }
    if run.table != task.table {
        return Err(MergerError::BadTask(format!(
            "task names table `{}` but run {} is of `{}`",
            task.table, run.run_id, run.table
        )));
    }
    let table = p
        .catalog
        .table(&task.table)
        .map_err(|e| MergerError::BadTask(e.to_string()))?;
    let task_id = task.task_id();
    if p.ledger.is_merge_done(&run.run_id, &task_id).await? {
        // Redelivered after its marker: the crash may have come before the commit.
        let committed = commit_if_last(p, &run.run_id).await?;
        return Ok(TaskOutcome::Duplicate { committed });
    }
    let outcome = match &task.dt {
        None => None,
        Some(dt) => Some(merge_partition(p, &run, table, dt).await?),
    };
    let completion = p.ledger.complete_merge(&run.run_id, &task_id, p.now_ms()).await?;
    failpoint::hit(failpoint::MERGER_AFTER_MERGE_DONE);
    let committed = match completion {
        MergeCompletion::Recorded {
            merges_outstanding: 0,
        }
        | MergeCompletion::AlreadyDone => commit_if_last(p, &run.run_id).await?,
        MergeCompletion::Recorded { .. } => false,
    };
    Ok(match outcome {
        Some(Some((rows, inputs, deleted))) => TaskOutcome::Merged {
            rows,
            inputs,
            deleted,
            committed,
        },
        _ => TaskOutcome::NothingToDo { committed },
    })
}

/// Merges one partition: returns (rows, inputs, deleted) or `None` when there was nothing to do.
async fn merge_partition(
    p: &Pipeline,
    run: &Run,
    table: &common::catalog::TableSpec,
    dt: &str,
) -> Result<Option<(u64, usize, usize)>, MergerError> {
    let lake = &p.lake;
    let staged: Vec<Path> = lake
        .list_parquet(&lake.staging_dir(&table.name, &run.run_id, dt))
        .await?
        .into_iter()
        .map(|m| m.location)
        .collect();
    let live: Vec<Path> = lake
        .list_parquet(&lake.partition_dir(&table.name, dt))
        .await?
        .into_iter()
        .map(|m| m.location)
        .collect();
    let (ours, older): (Vec<Path>, Vec<Path>) = live
        .into_iter()
        .partition(|f| writer_run_id(f) == Some(run.run_id.as_str()));
    // A full run replaces: it reads only its own live files and drops older ones (the M1
    // exception). An incremental run merges into everything live.
    let (live_inputs, replaced) = match run.mode {
        RunMode::Full => (ours, older),
        RunMode::Incremental => ([ours, older].concat(), Vec::new()),
    };
    if staged.is_empty() && replaced.is_empty() && live_inputs.len() <= 1 {
        // A redelivery after the staged files were deleted: the partition is already merged.
        return Ok(None);
    }
    let inputs: Vec<Path> = staged.iter().chain(live_inputs.iter()).cloned().collect();
    let output = lake.new_live_file(&table.name, dt, &run.run_id);
    let keys = MergeKeys {
        key: table.key_column.clone(),
        modified: columns::LAST_MODIFIED_AT.into(),
        column_order: table
            .arrow_schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect(),
        drop_archived: true,
        memory_limit: Some(p.settings.merge_memory_bytes),
    };
    // M2: the new file is complete in the store before anything is deleted.
    let stats = merge_files(lake.store().clone(), &inputs, &output, &keys).await?;
    if stats.rows_out == 0 {
        lake.delete(&output).await?;
    }
    failpoint::hit(failpoint::MERGER_AFTER_WRITE);
    // M1: delete exactly what was read (plus, for a full run, what it replaces).
    // Staged files go last: while any is left, a redelivered task merges again (see above).
    let old: Vec<&Path> = live_inputs.iter().chain(replaced.iter()).collect();
    futures::future::try_join_all(old.iter().map(|f| lake.delete(f))).await?;
    failpoint::hit(failpoint::MERGER_AFTER_DELETE_OLD);
    futures::future::try_join_all(staged.iter().map(|f| lake.delete(f))).await?;
    failpoint::hit(failpoint::MERGER_AFTER_DELETE_STAGED);
    let deleted = old.len() + staged.len();
    tracing::debug!(run_id = %run.run_id, table = %table.name, %dt, rows = stats.rows_out,
        inputs = inputs.len(), "partition merged");
    Ok(Some((stats.rows_out, inputs.len(), deleted)))
}

/// Commits the run when no merge is outstanding; true when this call found it committable.
async fn commit_if_last(p: &Pipeline, run_id: &str) -> Result<bool, MergerError> {
    let Some(run) = p.ledger.get_run(run_id).await? else {
        return Ok(false);
    };
    if run.status != RunStatus::Merging || run.merges_outstanding > 0 {
        return Ok(false);
    }
    failpoint::hit(failpoint::MERGER_BEFORE_COMMIT);
    commit(p, &run).await?;
    failpoint::hit(failpoint::MERGER_AFTER_COMMIT);
    Ok(true)
}

/// Handles merge tasks from the FIFO merge queue.
pub struct MergeTaskHandler {
    pub pipeline: Pipeline,
}

impl MergeTaskHandler {
    pub fn new(pipeline: Pipeline) -> Arc<Self> {
        Arc::new(MergeTaskHandler { pipeline })
    }
}

#[async_trait]
impl Handler for MergeTaskHandler {
    async fn handle(&self, body: &str) -> Result<Handled, String> {
        let task = messages::decode_merge_task(body).map_err(|e| e.to_string())?;
        match process_task(&self.pipeline, &task).await {
            Ok(TaskOutcome::Stale(why)) => Ok(Handled::Dropped(why)),
            Ok(o) => Ok(Handled::Done(format!("{}: {o:?}", task.task_id()))),
            Err(e) => Err(format!("{}: {e}", task.task_id())),
        }
    }
}
