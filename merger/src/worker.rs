//! The step for one merge task, and its handler for the service loop.
//!
//! A partition merge, every step safe to repeat and to race with a stalled copy of itself:
//! 1. read the partition's generation `g` and its published file (G1);
//! 2. take the staged files the task names, the recorded attempts its sender read from the
//!    pages' markers (S1), leaving out those gone (merged already, M1); a task that names none
//!    lists the run's staged files of the partition and keeps those whose page's marker names
//!    their attempt (losers' files are deleted, pages not recorded yet are left alone);
//! 3. merge the published file (an incremental run; a full run only when it wrote it) and the
//!    staged inputs into a new file named for generation `g + 1` (M2: written first);
//! 4. publish it if the partition is still at `g`, else delete it and start again;
//! 5. delete what generation `g + 1` made dead: every file of the partition named for a
//!    generation up to `g + 1` but the published one (a file named for `g + 1` that lost can
//!    never be published now), then the staged inputs and losers (M1);
//! 6. the task's done-marker; the run's last commits it.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use common::catalog::{columns, TableSpec};
use common::failpoint;
use common::flow::{self, Step};
use common::lake::{parse_live_name, parse_staged_name};
use common::messages::{self, MergeTask};
use common::pipeline::Pipeline;
use common::ports::{MergeCompletion, Partition, Run, RunMode, RunStatus};
use common::schema;
use common::worker::{Failure, Handled, Handler};
use object_store::path::Path;

use crate::commit::commit;
use crate::merge::{check_inputs, check_staged, merge_checked_files, CheckedInput, MergeKeys};
use crate::MergerError;

/// Publishes a merge tries before its task is retried through the queue (each lost race
/// means another merge of the partition published meanwhile).
const PUBLISH_ATTEMPTS: u32 = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskOutcome {
    Merged {
        rows: u64,
        inputs: usize,
        deleted: usize,
        committed: bool,
    },
    /// Nothing recorded was staged and nothing is replaced: the partition is merged already.
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
    let step = match task.dt {
        Some(_) => Step::PartitionMerge,
        None => Step::Close,
    };
    let task_id = task.task_id();
    // The head, the task's marker and the partition's generation: one read.
    let view = p
        .ledger
        .merge_view(&task.run_id, &task_id, &task.table, task.dt.as_deref())
        .await?;
    let now = p.now_ms();
    let run =
        match flow::judge_loaded(p.ledger.as_ref(), view.run, &task.run_id, &task.table, step, now).await? {
            Ok(run) => run,
            Err(why) => return Ok(TaskOutcome::Stale(why)),
        };
    let table = &crate::table_spec(p, &task.table).await?;
    if view.done {
        // Redelivered after its marker: the crash may have come before the commit.
        let committed = commit_if_last(p, &run.run_id).await?;
        return Ok(TaskOutcome::Duplicate { committed });
    }
    let outcome = match &task.dt {
        None => None,
        Some(dt) => merge_partition(p, &run, table, dt, task.inputs.as_deref(), view.partition).await?,
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
        Some(m) => TaskOutcome::Merged {
            rows: m.rows,
            inputs: m.inputs,
            deleted: m.deleted,
            committed,
        },
        None => TaskOutcome::NothingToDo { committed },
    })
}

/// What one partition merge did.
#[derive(Debug, Clone, Copy)]
struct Merged {
    rows: u64,
    inputs: usize,
    deleted: usize,
}

/// Merges one partition (see the module doc); `None` when there was nothing to merge.
async fn merge_partition(
    p: &Pipeline,
    run: &Run,
    table: &TableSpec,
    dt: &str,
    named: Option<&[String]>,
    head: Option<Partition>,
) -> Result<Option<Merged>, MergerError> {
    // The first attempt merges on the generation the task read with its marker; a lost
    // publish reads it again.
    let mut first_read = Some(head);
    for attempt in 1..=PUBLISH_ATTEMPTS {
        let head = match first_read.take() {
            Some(read) => read,
            None => p.ledger.partition(&table.name, dt).await?,
        };
        match try_merge(p, run, table, dt, named, head).await? {
            Some(done) => return Ok(done),
            None => tracing::info!(run_id = %run.run_id, table = %table.name, %dt, attempt,
                "another merge of the partition published first (G1); merging again on its result"),
        }
    }
    Err(MergerError::Conflict(format!(
        "partition {}/{dt}: {PUBLISH_ATTEMPTS} publishes in a row lost to other merges",
        table.name
    )))
}

/// The staged files of a partition, by what their page's marker says (S1).
struct StagedFiles {
    /// Recorded attempts: the merge's inputs.
    inputs: Vec<Path>,
    /// Attempts that lost to another copy of their page (found only by a listing; those a
    /// task that names its inputs does not see go with the run's staging at the commit).
    losers: Vec<Path>,
}

/// The staged files the task names (`<job>.<attempt>` of recorded pages, read from their
/// markers when the task was made due) or, for a task that names none, those a listing of the
/// partition's staging finds and the markers name.
async fn staged_files(
    p: &Pipeline,
    run: &Run,
    table: &str,
    dt: &str,
    named: Option<&[String]>,
) -> Result<StagedFiles, MergerError> {
    let Some(named) = named else {
        return listed_staged_files(p, run, table, dt).await;
    };
    let inputs = named
        .iter()
        .map(|name| {
            let (job, attempt) = name
                .rsplit_once('.')
                .filter(|(job, attempt)| !job.is_empty() && !attempt.is_empty() && !job.contains('/'))
                .ok_or_else(|| {
                    MergerError::BadTask(format!("input `{name}` is not a staged file's `<job>.<attempt>`"))
                })?;
            Ok(p.lake.staged_file(table, &run.run_id, dt, job, attempt))
        })
        .collect::<Result<Vec<_>, MergerError>>()?;
    Ok(StagedFiles {
        inputs,
        losers: Vec::new(),
    })
}

async fn listed_staged_files(
    p: &Pipeline,
    run: &Run,
    table: &str,
    dt: &str,
) -> Result<StagedFiles, MergerError> {
    let listed = p
        .lake
        .list_parquet(&p.lake.staging_dir(table, &run.run_id, dt))
        .await?;
    let mut by_job: HashMap<String, Vec<(String, Path)>> = HashMap::new();
    for meta in listed {
        let Some((job, attempt)) = meta.location.filename().and_then(parse_staged_name) else {
            tracing::warn!(file = %meta.location, "a staged file not named <job>.<attempt>.parquet is ignored");
            continue;
        };
        by_job
            .entry(job.to_string())
            .or_default()
            .push((attempt.to_string(), meta.location.clone()));
    }
    let jobs: Vec<String> = by_job.keys().cloned().collect();
    let recorded = p.ledger.page_attempts(&run.run_id, &jobs).await?;
    let mut out = StagedFiles {
        inputs: Vec::new(),
        losers: Vec::new(),
    };
    for (job, files) in by_job {
        // No marker yet: the page is still in progress (or died before it); its own marker,
        // or the commit, decides.
        let Some(winner) = recorded.get(&job) else {
            continue;
        };
        for (attempt, path) in files {
            if attempt == *winner {
                out.inputs.push(path);
            } else {
                out.losers.push(path);
            }
        }
    }
    out.inputs.sort();
    Ok(out)
}

/// Staged files told apart: column backfill patches (their footer says so), then versions.
fn split_patches(checked: Vec<CheckedInput>) -> (Vec<Path>, Vec<CheckedInput>) {
    let (mut patches, mut versions) = (Vec::new(), Vec::new());
    for c in checked {
        let is_patch = c
            .metadata
            .file_metadata()
            .key_value_metadata()
            .is_some_and(|kv| kv.iter().any(|e| e.key == schema::PATCH_METADATA_KEY));
        if is_patch {
            patches.push(c.path);
        } else {
            versions.push(c);
        }
    }
    (patches, versions)
}

/// The ordinary merge of `inputs` into a scratch file of the run, then `patches` applied to it
/// into `output` (E2); returns the rows written.
#[allow(clippy::too_many_arguments)]
async fn merge_and_patch(
    p: &Pipeline,
    run: &Run,
    table: &TableSpec,
    inputs: &[CheckedInput],
    patches: &[Path],
    output: &Path,
    keys: &MergeKeys,
) -> Result<u64, MergerError> {
    let store = p.lake.store().clone();
    // Beside the run's partitions (not under a `dt=`), so no merge takes it for a staged file;
    // the commit deletes whatever a crash left.
    let scratch = p
        .lake
        .staging_run_dir(&table.name, &run.run_id)
        .join(format!("merge-{}.parquet", uuid::Uuid::new_v4().simple()));
    let merged = merge_checked_files(store.clone(), inputs, &scratch, keys).await?;
    if merged.rows_out == 0 {
        p.lake.delete(&scratch).await?;
        return Ok(0);
    }
    let applied = crate::patch::apply(store, &scratch, patches, output, keys).await;
    p.lake.delete(&scratch).await?;
    let (rows, patched) = applied?;
    tracing::debug!(run_id = %run.run_id, table = %table.name, rows, patched, "column backfill applied");
    Ok(rows)
}

/// One attempt at a partition merge: `Some` when done, `None` when another merge published
/// first (G1).
async fn try_merge(
    p: &Pipeline,
    run: &Run,
    table: &TableSpec,
    dt: &str,
    named: Option<&[String]>,
    head: Option<Partition>,
) -> Result<Option<Option<Merged>>, MergerError> {
    let lake = &p.lake;
    let gen = head.as_ref().map_or(0, |h| h.gen);
    // The live data the partition holds now: the file its generation record names (none
    // before its first publish).
    let live: Vec<Path> = head
        .iter()
        .flat_map(|h| &h.file)
        .map(|f| lake.live_file(&table.name, dt, f))
        .collect();
    // A full run replaces: it reads only what it published itself and drops the rest (the M1
    // exception). An incremental run merges into everything live.
    let ours = head.as_ref().is_some_and(|h| h.writer_run == run.run_id);
    let live_inputs: Vec<Path> = match run.mode {
        RunMode::Incremental => live.clone(),
        RunMode::Full if ours => live.clone(),
        RunMode::Full => Vec::new(),
    };
    let replaces = run.mode == RunMode::Full && !ours && !live.is_empty();
    let mut staged = staged_files(p, run, &table.name, dt, named).await?;
    if staged.inputs.is_empty() && !replaces {
        delete_all(p, &staged.losers).await?;
        return Ok(Some(None));
    }
    let run_columns = schema::for_run(&p.lake, &table.name, &run.run_id).await?;
    let target = run_columns.arrow_schema(table);
    let keys = MergeKeys {
        key: table.key_column.clone(),
        modified: columns::LAST_MODIFIED_AT.into(),
        column_order: target.fields().iter().map(|f| f.name().clone()).collect(),
        // A snapshot keeps archived owners and stages: HubSpot lists them, records name them.
        drop_archived: table.snapshot.is_none(),
        set_columns: set_columns(table),
        memory_limit: Some(p.settings.merge_memory_bytes),
        schema: Some(target),
    };
    // One read of each staged file's footer (a small file's whole body) serves the merge.
    let present = check_staged(lake.store(), &staged.inputs, &keys).await?;
    if present.is_empty() && !replaces {
        delete_all(p, &staged.losers).await?;
        return Ok(Some(None));
    }
    staged.inputs = present.iter().map(|c| c.path.clone()).collect();
    // E2: only a run with a column backfill stages patches, told apart by their footers.
    let (patches, versions) =
        if run.mode == RunMode::Incremental && !run_columns.backfill_columns().is_empty() {
            split_patches(present)
        } else {
            (Vec::new(), present)
        };
    let live_checked = check_inputs(lake.store(), &live_inputs, &keys).await?;
    let inputs: Vec<CheckedInput> = versions.into_iter().chain(live_checked).collect();
    let output = lake.new_live_file(&table.name, dt, &run.run_id, gen + 1);
    let mut rows = 0;
    let mut published_file = None;
    if !inputs.is_empty() {
        let started = std::time::Instant::now();
        // M2: the new file is complete in the store before anything is deleted.
        rows = if patches.is_empty() {
            let stats = merge_checked_files(lake.store().clone(), &inputs, &output, &keys).await?;
            metrics::counter!(common::metrics::MERGE_BYTES, "table" => table.name.clone())
                .increment(stats.bytes_in);
            stats.rows_out
        } else {
            merge_and_patch(p, run, table, &inputs, &patches, &output, &keys).await?
        };
        metrics::histogram!(common::metrics::MERGE_SECONDS, "table" => table.name.clone())
            .record(started.elapsed().as_secs_f64());
        metrics::counter!(common::metrics::MERGE_ROWS, "table" => table.name.clone()).increment(rows);
        if rows == 0 {
            lake.delete(&output).await?;
        } else {
            published_file = output.filename().map(str::to_string);
        }
    }
    failpoint::hit(failpoint::MERGER_AFTER_WRITE);
    let next = Partition {
        gen: gen + 1,
        file: published_file.clone(),
        writer_run: run.run_id.clone(),
        writer_started_ms: run.started_at_ms,
    };
    if !p.ledger.publish(&table.name, dt, gen, &next).await? {
        // G1: someone published generation `gen + 1` first (a stalled copy of this task, or a
        // later task): this output can never be published; it goes, and the merge starts over.
        lake.delete(&output).await?;
        return Ok(None);
    }
    // M1: what generation `gen + 1` made dead, then the staged inputs (while any is left, a
    // redelivered task merges again, on the published file), then the losing attempts.
    let dead = dead_files(p, &table.name, dt, gen + 1, published_file.as_deref()).await?;
    delete_all(p, &dead).await?;
    failpoint::hit(failpoint::MERGER_AFTER_DELETE_OLD);
    delete_all(p, &staged.inputs).await?;
    failpoint::hit(failpoint::MERGER_AFTER_DELETE_STAGED);
    delete_all(p, &staged.losers).await?;
    let deleted = dead.len() + staged.inputs.len() + staged.losers.len();
    tracing::debug!(run_id = %run.run_id, table = %table.name, %dt, rows, gen = gen + 1,
        inputs = inputs.len(), "partition merged");
    Ok(Some(Some(Merged {
        rows,
        inputs: inputs.len(),
        deleted,
    })))
}

/// The live files of a partition that generation `gen` made dead (G1): named for a generation
/// up to `gen`, and not `published`. Files named for a later
/// generation belong to merges still under way and are kept.
pub(crate) async fn dead_files(
    p: &Pipeline,
    table: &str,
    dt: &str,
    gen: u64,
    published: Option<&str>,
) -> Result<Vec<Path>, MergerError> {
    Ok(p.lake
        .list_parquet(&p.lake.partition_dir(table, dt))
        .await?
        .into_iter()
        .map(|m| m.location)
        .filter(|f| {
            let name = f.filename().unwrap_or_default();
            Some(name) != published && parse_live_name(name).is_some_and(|n| n.gen <= gen)
        })
        .collect())
}

async fn delete_all(p: &Pipeline, files: &[Path]) -> Result<(), MergerError> {
    futures::future::try_join_all(files.iter().map(|f| p.lake.delete(f))).await?;
    Ok(())
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
    async fn handle(&self, body: &str) -> Result<Handled, Failure> {
        let task = messages::decode_merge_task(body).map_err(|e| Failure::dead_letter(e.to_string()))?;
        match process_task(&self.pipeline, &task).await {
            Ok(TaskOutcome::Stale(why)) => Ok(Handled::Dropped(why)),
            Ok(o) => Ok(Handled::Done(format!("{}: {o:?}", task.task_id()))),
            Err(e) => Err(e.failure(task.task_id())),
        }
    }
}

/// The columns that tell a key's rows apart where a key has several (see `MergeKeys`): a
/// link's linked id and type; a pipeline stage's object type and pipeline (a stage id is
/// unique in its pipeline, not necessarily across deals and tickets).
fn set_columns(table: &TableSpec) -> Vec<String> {
    if let Some(links) = &table.links {
        return vec![
            links.to_column.clone(),
            common::catalog::link_columns::TYPE_ID.to_string(),
        ];
    }
    match table.snapshot {
        Some(common::catalog::SnapshotKind::Pipelines) => vec!["object_type".into(), "pipeline_id".into()],
        _ => Vec::new(),
    }
}
