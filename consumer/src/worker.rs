//! The step for one page job, and its handler for the service loop.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use common::failpoint;
use common::messages::Slice;
use common::messages::{self, Body, MergeTask, PageJob};
use common::pipeline::Pipeline;
use common::ports::{Outgoing, PageCompletion, PageEffects, PageOutcome, Run, RunMode, RunStatus};
use common::worker::{Handled, Handler};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;

use crate::fetch::fetch_page;
use crate::stage::{batches_by_dt, row, to_parquet};
use crate::ConsumerError;

/// Staged files of one page written at once (a page of 100 records can touch 100 days).
const STAGE_UPLOAD_CONCURRENCY: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    Staged {
        records: usize,
        partitions: usize,
        last_page: bool,
    },
    /// The job's done-marker existed: a redelivery, nothing refetched (L2).
    Duplicate,
    /// The run is finished, abandoned or unknown: the job is dropped, logged (L4).
    Stale(String),
}

/// Loads the job's run and decides whether it may still act on the lake.
async fn live_run(p: &Pipeline, job: &PageJob) -> Result<Result<Run, String>, ConsumerError> {
    let Some(run) = p.ledger.get_run(&job.run_id).await? else {
        return Err(ConsumerError::BadJob(format!(
            "run `{}` is not in the ledger (was the lake's database reset?)",
            job.run_id
        )));
    };
    let now = p.now_ms();
    if run.lease_expired(now) {
        // L4: nobody made progress within the lease; give the table back.
        p.ledger
            .finish(&run.run_id, RunStatus::Abandoned, Some("lease expired"), now)
            .await?;
        return Ok(Err(format!("run {} abandoned: lease expired", run.run_id)));
    }
    if !matches!(run.status, RunStatus::Fetching | RunStatus::Merging) {
        return Ok(Err(format!("run {} is {}", run.run_id, run.status.as_str())));
    }
    if run.table != job.table {
        return Err(ConsumerError::BadJob(format!(
            "job names table `{}` but run {} is of `{}`",
            job.table, run.run_id, run.table
        )));
    }
    Ok(Ok(run))
}

pub async fn process_job(p: &Pipeline, job: &PageJob) -> Result<JobOutcome, ConsumerError> {
    let run = match live_run(p, job).await? {
        Ok(run) => run,
        Err(why) => return Ok(JobOutcome::Stale(why)),
    };
    let job_id = job.job_id();
    check_lineage(p, &run, job).await?;
    if let Some(done) = p.ledger.page_done(&run.run_id, &job_id).await? {
        // Redelivered after its marker was written: the crash may have come before the next
        // page, the started slices or the due merges were sent, before the run was handed to
        // the merger, or before its closing task was sent. Each is repeated from the marker
        // (pages already recorded excepted: re-sent, they would run their chain twice);
        // the receivers' own markers (and FIFO deduplication) absorb the repeats.
        send_effects(p, &run, job, done.next_cursor, &done.effects, Resend::Unrecorded).await?;
        hand_over(p, &run, &job_id).await?;
        return Ok(JobOutcome::Duplicate);
    }
    let table = p
        .catalog
        .table(&job.table)
        .map_err(|e| ConsumerError::BadJob(e.to_string()))?;
    let source = table.source(job.slice.object_type()).ok_or_else(|| {
        ConsumerError::BadJob(format!(
            "table `{}` does not read object type `{}`",
            table.name,
            job.slice.object_type()
        ))
    })?;

    let page = fetch_page(&p.hubspot, source, &job.slice, job.cursor.as_deref(), &p.settings).await?;

    // 1. Stage: deterministic names, so a redelivery overwrites instead of duplicating.
    //    Records are validated and encoded once, off the async threads.
    let synced_at = p.now_ms();
    let (table_c, source_c, run_id) = (table.clone(), source.clone(), run.run_id.clone());
    let records = page.records;
    let (files, seen) = tokio::task::spawn_blocking(move || -> Result<_, ConsumerError> {
        let rows = records
            .iter()
            .map(|r| row(&source_c, r))
            .collect::<Result<Vec<_>, _>>()?;
        let seen = Seen {
            records: rows.len(),
            min_created_ms: rows.iter().map(|r| r.created_ms).min(),
            max_created_ms: rows.iter().map(|r| r.created_ms).max(),
            max_modified_ms: rows.iter().map(|r| r.modified_ms).max(),
        };
        let files = batches_by_dt(&table_c, &source_c, &rows, &run_id, synced_at)?
            .into_iter()
            .map(|(dt, b)| Ok((dt, to_parquet(&b)?)))
            .collect::<Result<Vec<(String, Vec<u8>)>, ConsumerError>>()?;
        Ok((files, seen))
    })
    .await
    .map_err(|e| ConsumerError::Stage(format!("encoding task: {e}")))??;
    let mut outcome = PageOutcome {
        records: seen.records as i64,
        max_created_ms: seen.max_created_ms,
        max_modified_ms: seen.max_modified_ms,
        next_cursor: next_cursor(&run, job, seen.min_created_ms, page.next_cursor),
        slice_no: job.slice_no,
        ..Default::default()
    };
    let partitions = files.len();
    // A page spans many partitions (dt is the creation day): upload them concurrently.
    let uploads = files.into_iter().map(|(dt, bytes)| {
        let path = p.lake.staged_file(&table.name, &run.run_id, &dt, &job_id);
        async move {
            p.lake
                .store()
                .put(&path, Bytes::from(bytes).into())
                .await
                .map_err(|e| ConsumerError::Stage(format!("writing {path}: {e}")))?;
            Ok::<_, ConsumerError>((dt, path))
        }
    });
    let staged: Vec<(String, object_store::path::Path)> = futures::stream::iter(uploads)
        .buffer_unordered(STAGE_UPLOAD_CONCURRENCY)
        .try_collect()
        .await?;
    outcome.dts.extend(staged.iter().map(|(dt, _)| dt.clone()));
    failpoint::hit(failpoint::CONSUMER_AFTER_STAGE);

    // 2. Marker, next cursor, counters and what the page made due, atomically (L2, L3, L5, P1).
    let completion = p
        .ledger
        .complete_page(&run.run_id, &job_id, &outcome, p.now_ms())
        .await?;
    failpoint::hit(failpoint::CONSUMER_AFTER_PAGE_DONE);
    let (last_page, next, effects) = match completion {
        PageCompletion::Recorded {
            pages_outstanding,
            effects,
        } => (pages_outstanding == 0, outcome.next_cursor.clone(), effects),
        // A copy of this job recorded it first (SQS delivered it twice). That copy holds its
        // message until it has sent the successors (or its redelivery sends them): sending
        // them here too would run the rest of the chain twice.
        PageCompletion::AlreadyDone => {
            discard_late_files(p, &run.run_id, &staged).await?;
            return Ok(JobOutcome::Duplicate);
        }
    };

    // 3. Successors only after the marker: a page cannot be recorded before this one (which
    //    would let the count reach 0 with this page's partitions unknown). A crash before the
    //    sends is repaired by the redelivery, which reads them back from the marker.
    send_effects(p, &run, job, next, &effects, Resend::All).await?;

    // 4. The last page hands the run to the merger (L3).
    if last_page {
        if let Some(run) = p.ledger.get_run(&run.run_id).await? {
            hand_over(p, &run, &job_id).await?;
        }
    }
    Ok(JobOutcome::Staged {
        records: seen.records,
        partitions,
        last_page,
    })
}

/// Files a copy of a page staged after another copy recorded the page (SQS delivers at least
/// once, and a redelivered page re-sends its successors, so a chain can run twice). While the
/// run is active they are harmless: they hold the same records (or versions changed after T0,
/// which the next window reads), and a merge or the commit removes them. Once the run has
/// ended nothing would, so they are deleted here.
async fn discard_late_files(
    p: &Pipeline,
    run_id: &str,
    staged: &[(String, object_store::path::Path)],
) -> Result<(), ConsumerError> {
    let active = p
        .ledger
        .get_run(run_id)
        .await?
        .is_some_and(|r| r.status.is_active());
    if !active {
        for (_, path) in staged {
            p.lake
                .delete(path)
                .await
                .map_err(|e| ConsumerError::Stage(format!("deleting {path}: {e}")))?;
        }
        tracing::info!(
            run_id,
            files = staged.len(),
            "deleted files a duplicate page staged after its run ended"
        );
    }
    Ok(())
}

/// What a page's validated records held.
struct Seen {
    records: usize,
    min_created_ms: Option<i64>,
    max_created_ms: Option<i64>,
    max_modified_ms: Option<i64>,
}

/// Where a slice goes on. A full run's list walk ends at the first page whose records were all
/// created after the run began (T0): ids grow with creation, so every later page is newer
/// still, and a portal creating records faster than the walk reads them would otherwise keep
/// the run fetching forever. Those records are the next incremental sync's: its window opens
/// at or before T0 (W1), and their modified time is past their creation.
fn next_cursor(
    run: &Run,
    job: &PageJob,
    min_created_ms: Option<i64>,
    cursor: Option<String>,
) -> Option<String> {
    let past_t0 = run.mode == RunMode::Full
        && matches!(job.slice, Slice::List { .. })
        && min_created_ms.is_some_and(|c| c > run.window_to_ms);
    if past_t0 && cursor.is_some() {
        tracing::info!(run_id = %run.run_id, job = %job.job_id(),
            "the list walk reached records created after the run began; the next incremental sync reads them");
        return None;
    }
    cursor
}

/// A page job must be one its run sent: page 0 of a planned slice, or the successor a recorded
/// page named (its marker holds the cursor). Anything else (a forged, corrupted or foreign
/// job) is refused before it can stage a file or move a counter.
async fn check_lineage(p: &Pipeline, run: &Run, job: &PageJob) -> Result<(), ConsumerError> {
    let refuse = |why: String| {
        Err(ConsumerError::BadJob(format!(
            "page job {} was not sent by run {}: {why}",
            job.job_id(),
            run.run_id
        )))
    };
    if run.plan.get(job.slice_no as usize) != Some(&job.slice) {
        return refuse(format!("slice {} is not in the run's plan", job.slice_no));
    }
    if job.page_no == 0 {
        return match &job.cursor {
            Some(_) => refuse("page 0 carries a cursor".into()),
            // L5: the run starts slices in plan order and records each start first.
            None if job.slice_no >= run.started() => refuse(format!(
                "slice {} is not started yet ({} of {} are)",
                job.slice_no,
                run.started(),
                run.plan.len()
            )),
            None => Ok(()),
        };
    }
    let previous = PageJob {
        page_no: job.page_no - 1,
        ..job.clone()
    }
    .job_id();
    match p.ledger.page_done(&run.run_id, &previous).await? {
        Some(done) if done.next_cursor == job.cursor => Ok(()),
        Some(_) => refuse(format!("page {previous} recorded another next cursor")),
        None => refuse(format!("its predecessor {previous} is not recorded")),
    }
}

/// Sends what recording a page made due: the slice's next page, page 0 of the slices it
/// started (L5) and the partition merges it made due (P1), in that order.
async fn send_effects(
    p: &Pipeline,
    run: &Run,
    job: &PageJob,
    next_cursor: Option<String>,
    effects: &PageEffects,
    resend: Resend,
) -> Result<(), ConsumerError> {
    let recorded = |job: PageJob| async move {
        Ok::<_, ConsumerError>(
            resend == Resend::Unrecorded && p.ledger.page_done(&job.run_id, &job.job_id()).await?.is_some(),
        )
    };
    if let Some(cursor) = next_cursor {
        let next = job.next(cursor);
        if !recorded(next.clone()).await? {
            p.pages
                .send(vec![Outgoing::standard(messages::encode(&Body::PageJob(next)))])
                .await?;
            failpoint::hit(failpoint::CONSUMER_AFTER_NEXT_PAGE);
        }
    }
    let mut launch = Vec::new();
    for &slice_no in &effects.launch {
        let first = PageJob {
            slice_no,
            page_no: 0,
            cursor: None,
            ..job.clone()
        };
        if !recorded(first).await? {
            launch.push(slice_no);
        }
    }
    if !launch.is_empty() {
        let first_pages = launch
            .iter()
            .map(|&slice_no| {
                let slice = run.plan.get(slice_no as usize).cloned().ok_or_else(|| {
                    ConsumerError::BadJob(format!(
                        "run {} started slice {slice_no}, which its plan of {} does not hold",
                        run.run_id,
                        run.plan.len()
                    ))
                })?;
                Ok(Outgoing::standard(messages::encode(&Body::PageJob(
                    PageJob::first(run, slice_no, slice),
                ))))
            })
            .collect::<Result<Vec<_>, ConsumerError>>()?;
        p.pages.send(first_pages).await?;
        failpoint::hit(failpoint::CONSUMER_AFTER_LAUNCH);
    }
    if !effects.merges.is_empty() {
        let tasks = effects
            .merges
            .iter()
            .map(|m| merge_task(run, Some(m.dt.clone()), m.pass))
            .collect();
        p.merges.send(tasks).await?;
        failpoint::hit(failpoint::CONSUMER_AFTER_PARTITION_MERGES);
        tracing::debug!(run_id = %run.run_id, partitions = effects.merges.len(), "partition merges queued during the fetch");
    }
    Ok(())
}

/// Which successors [`send_effects`] sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resend {
    /// All of them: the page was just recorded.
    All,
    /// Those not recorded yet: a redelivery, long after some may have run.
    Unrecorded,
}

fn merge_task(run: &Run, dt: Option<String>, pass: u32) -> Outgoing {
    let task = MergeTask {
        run_id: run.run_id.clone(),
        table: run.table.clone(),
        dt,
        pass,
    };
    Outgoing::fifo(
        messages::encode(&Body::MergeTask(task.clone())),
        task.group_id(),
        task.task_id(),
    )
}

/// Hands a run whose pages are all done to the merger (L3): fetching → merging, then its
/// merge tasks. Called by the job that finished the last page, and again by any redelivered
/// job whose marker exists, so a crash between the marker, the status change and the sends
/// never strands a run: the conditional status change lets one job win, and the winner (or its
/// redelivery) sends the tasks.
async fn hand_over(p: &Pipeline, run: &Run, job_id: &str) -> Result<(), ConsumerError> {
    let closing = match run.status {
        RunStatus::Fetching if run.pages_outstanding == 0 => {
            if !p.ledger.begin_merging(&run.run_id, job_id, p.now_ms()).await? {
                return Ok(());
            }
            failpoint::hit(failpoint::CONSUMER_AFTER_BEGIN_MERGING);
            true
        }
        RunStatus::Merging => run.closing_job.as_deref() == Some(job_id),
        _ => false,
    };
    if closing {
        if let Some(run) = p.ledger.get_run(&run.run_id).await? {
            send_merge_tasks(p, &run).await?;
            failpoint::hit(failpoint::CONSUMER_AFTER_MERGE_TASKS);
        }
    }
    Ok(())
}

/// The closing task, and every partition merge the run queued that is not done yet (a crash
/// may have come before one was sent). FIFO deduplication and the merger's done-markers absorb
/// repeats.
pub async fn send_merge_tasks(p: &Pipeline, run: &Run) -> Result<usize, ConsumerError> {
    // One read of the run's done-markers, not one per partition: a run can queue thousands.
    let done = p.ledger.done_merges(&run.run_id).await?;
    let mut out = Vec::new();
    if run.slices_started.is_none() && run.merges_queued.is_empty() && !run.dts.is_empty() {
        // A run that left fetching under a build before progressive merges: it counted one
        // task per partition and no closing task.
        for dt in &run.dts {
            if !done.contains(&format!("{}:{dt}", run.run_id)) {
                out.push(merge_task(run, Some(dt.clone()), 0));
            }
        }
        let n = out.len();
        p.merges.send(out).await?;
        return Ok(n);
    }
    for m in run.queued_merges() {
        let task = MergeTask {
            run_id: run.run_id.clone(),
            table: run.table.clone(),
            dt: Some(m.dt.clone()),
            pass: m.pass,
        };
        if !done.contains(&task.task_id()) {
            out.push(merge_task(run, task.dt, task.pass));
        }
    }
    out.push(merge_task(run, None, 0));
    let n = out.len();
    p.merges.send(out).await?;
    tracing::info!(run_id = %run.run_id, table = %run.table, merge_tasks = n, records = run.records, "fetching done; merges queued");
    Ok(n)
}

/// Handles page jobs from the pages queue.
pub struct PageJobHandler {
    pub pipeline: Pipeline,
}

impl PageJobHandler {
    pub fn new(pipeline: Pipeline) -> Arc<Self> {
        Arc::new(PageJobHandler { pipeline })
    }
}

#[async_trait]
impl Handler for PageJobHandler {
    async fn handle(&self, body: &str) -> Result<Handled, String> {
        let job = messages::decode_page_job(body).map_err(|e| e.to_string())?;
        match process_job(&self.pipeline, &job).await {
            Ok(JobOutcome::Stale(why)) => Ok(Handled::Dropped(why)),
            Ok(o) => Ok(Handled::Done(format!("{} {}: {o:?}", job.run_id, job.job_id()))),
            Err(e) => Err(format!("{} {}: {e}", job.run_id, job.job_id())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mode: RunMode, t0: i64) -> Run {
        Run {
            run_id: "r".into(),
            table: "deals".into(),
            request_id: "q".into(),
            mode,
            window_from_ms: None,
            window_to_ms: t0,
            status: RunStatus::Fetching,
            pages_outstanding: 1,
            ..Default::default()
        }
    }

    fn job(slice: Slice) -> PageJob {
        PageJob {
            run_id: "r".into(),
            table: "deals".into(),
            slice_no: 0,
            page_no: 3,
            slice,
            cursor: Some("c".into()),
        }
    }

    #[test]
    fn a_full_list_walk_ends_at_a_page_created_entirely_after_t0() {
        let list = job(Slice::List {
            object_type: "deals".into(),
        });
        let next = || Some("n".to_string());
        let full = run(RunMode::Full, 100);
        assert_eq!(next_cursor(&full, &list, Some(101), next()), None, "all after T0");
        assert_eq!(next_cursor(&full, &list, Some(100), next()), next(), "one at T0");
        assert_eq!(next_cursor(&full, &list, None, next()), next(), "an empty page");
        let incremental = run(RunMode::Incremental, 100);
        assert_eq!(next_cursor(&incremental, &list, Some(101), next()), next());
        let archived = job(Slice::ListArchived {
            object_type: "deals".into(),
            since_ms: 0,
        });
        assert_eq!(next_cursor(&full, &archived, Some(101), next()), next());
    }
}
