//! Orchestration, in one place for every role: whether a run may still act on the lake (L4),
//! and what a recorded page or merge makes due (L2, L3, L5) and who sends it.
//!
//! - [`judge`] (pure) and [`live_run`] decide whether a message's run is live for the step it
//!   asks for; a stale message is dropped, logged, never applied.
//! - [`page_due`] turns a page's done-marker into its successors: the slice's next page, the
//!   slice it started, and, when it finished a slice that owns its partitions, one merge per
//!   partition that slice staged into. [`send_page_due`] sends them; a redelivery computes and
//!   sends the same again, and FIFO deduplication and the receivers' markers absorb repeats.
//! - [`hand_over`] moves a run whose slices are all done to merging and sends the close: one
//!   merge per partition the other slices staged into, then the closing task.
//! - [`run_partitions`] is the set of partitions a run touched, read back from its markers.

use std::collections::{BTreeMap, BTreeSet};

use crate::clock::EpochMs;
use crate::messages::{self, Body, MergeTask, PageJob};
use crate::pipeline::Pipeline;
use crate::ports::{Ledger, LedgerError, Outgoing, PageDone, QueueError, Run, RunStatus};

#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The message names a run, slice or table that does not match the ledger: it was not
    /// sent by hubsync (or is corrupted); retrying cannot help.
    #[error("{0}")]
    Forged(String),
}

/// The step a message asks its run to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Fetch and stage a page (the run must be fetching; a late copy of a page while merging
    /// still re-sends its successors).
    Page,
    /// Merge one partition: while fetching (a slice that owns it is done) or merging.
    PartitionMerge,
    /// The closing task: only while merging.
    Close,
}

/// What [`judge`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Live,
    /// Nobody made progress within the lease: abandon the run (with this note) and drop the message (L4).
    Abandon(String),
    /// The run is finished or not at this step: drop the message, logged.
    Stale(String),
}

/// Whether `run` may take `step` at `now` (L4). Pure: every role calls it through
/// [`live_run`], and it is tested without a ledger.
pub fn judge(run: &Run, now: EpochMs, step: Step) -> Verdict {
    if run.lease_expired(now) {
        return Verdict::Abandon(format!(
            "lease expired at {}",
            crate::clock::iso(run.lease_until_ms)
        ));
    }
    let allowed = match step {
        Step::Page | Step::PartitionMerge => {
            matches!(run.status, RunStatus::Fetching | RunStatus::Merging)
        }
        Step::Close => run.status == RunStatus::Merging,
    };
    if allowed {
        Verdict::Live
    } else {
        Verdict::Stale(format!("run {} is {}", run.run_id, run.status.as_str()))
    }
}

/// Loads the run a message names and [`judge`]s it: `Ok(Err(why))` when the message is stale
/// (an expired run is abandoned on the way).
pub async fn live_run(
    ledger: &dyn Ledger,
    run_id: &str,
    table: &str,
    step: Step,
    now: EpochMs,
) -> Result<Result<Run, String>, FlowError> {
    let run = ledger.get_run(run_id).await?;
    judge_loaded(ledger, run, run_id, table, step, now).await
}

/// [`live_run`] of a head already read (`None`: not in the ledger).
pub async fn judge_loaded(
    ledger: &dyn Ledger,
    run: Option<Run>,
    run_id: &str,
    table: &str,
    step: Step,
    now: EpochMs,
) -> Result<Result<Run, String>, FlowError> {
    let Some(run) = run else {
        return Err(FlowError::Forged(format!(
            "run `{run_id}` is not in the ledger (was the lake's database reset?)"
        )));
    };
    if run.table != table {
        return Err(FlowError::Forged(format!(
            "the message names table `{table}` but run {run_id} is of `{}`",
            run.table
        )));
    }
    match judge(&run, now, step) {
        Verdict::Live => Ok(Ok(run)),
        Verdict::Stale(why) => Ok(Err(why)),
        Verdict::Abandon(note) => {
            if ledger
                .finish(&run.run_id, RunStatus::Abandoned, Some(&note), None, now)
                .await?
            {
                metrics::counter!(crate::metrics::RUNS_FAILED, "table" => run.table.clone()).increment(1);
            }
            tracing::warn!(run_id, table, %note, "run abandoned");
            Ok(Err(format!("run {run_id} abandoned: {note}")))
        }
    }
}

/// A page's successors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageDue {
    /// The slice's next page.
    pub next: Option<PageJob>,
    /// Page 0 of the slice this page started (L5).
    pub launch: Option<PageJob>,
    /// One merge per partition of a slice that owns its days and that this page finished (L3).
    pub merges: Vec<MergeTask>,
}

/// The partitions a slice's recorded pages staged into (L6: each marker names its own).
pub async fn slice_partitions(
    ledger: &dyn Ledger,
    run_id: &str,
    slice_no: u32,
) -> Result<BTreeSet<String>, LedgerError> {
    Ok(union(ledger.page_markers(run_id, Some(slice_no)).await?))
}

/// The partitions every recorded page of a run staged into.
pub async fn run_partitions(ledger: &dyn Ledger, run_id: &str) -> Result<BTreeSet<String>, LedgerError> {
    Ok(union(ledger.page_markers(run_id, None).await?))
}

fn union(markers: Vec<(String, PageDone)>) -> BTreeSet<String> {
    markers.into_iter().flat_map(|(_, m)| m.dts).collect()
}

/// The staged files of each partition the `markers` name, as `<job>.<attempt>` of the
/// recorded attempts (S1): a merge task's inputs.
pub fn staged_inputs<'a>(
    markers: impl IntoIterator<Item = (&'a str, &'a PageDone)>,
) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (job, done) in markers {
        for dt in &done.dts {
            out.entry(dt.clone())
                .or_default()
                .push(format!("{job}.{}", done.attempt));
        }
    }
    out
}

/// A partition merge of `run` made due by the end of `slice` (or, `None`, by the close), naming
/// its `inputs` (from [`staged_inputs`]) unless they are more than a task names.
pub fn partition_merge(run: &Run, dt: &str, slice: Option<u32>, mut inputs: Vec<String>) -> MergeTask {
    inputs.sort();
    inputs.dedup();
    MergeTask {
        run_id: run.run_id.clone(),
        table: run.table.clone(),
        dt: Some(dt.to_string()),
        slice,
        inputs: (inputs.len() <= messages::MAX_NAMED_INPUTS).then_some(inputs),
    }
}

/// The closing task of `run`: done last, it commits the run.
pub fn closing_task(run: &Run) -> MergeTask {
    MergeTask {
        run_id: run.run_id.clone(),
        table: run.table.clone(),
        dt: None,
        slice: None,
        inputs: None,
    }
}

/// What recording `job` (whose marker is `done`) made due.
pub async fn page_due(
    ledger: &dyn Ledger,
    run: &Run,
    job: &PageJob,
    done: &PageDone,
) -> Result<PageDue, FlowError> {
    let next = done.next_cursor.clone().map(|c| job.next(c));
    let launch = match done.effects.launch {
        None => None,
        Some(k) => {
            let slice = ledger.slice(&run.run_id, k).await?.ok_or_else(|| {
                FlowError::Forged(format!(
                    "run {} started slice {k}, which its plan of {} does not hold",
                    run.run_id, run.slices
                ))
            })?;
            Some(PageJob::first_of(&run.run_id, &run.table, k, slice))
        }
    };
    let merges = if done.next_cursor.is_none() && job.slice.owns_its_days() {
        // The slice's markers, this page's among them (the query reads its own write; it is
        // added anyway, so the task never depends on that).
        let job_id = job.job_id();
        let markers = ledger.page_markers(&run.run_id, Some(job.slice_no)).await?;
        let pages = markers
            .iter()
            .filter(|(j, _)| *j != job_id)
            .map(|(j, m)| (j.as_str(), m))
            .chain([(job_id.as_str(), done)]);
        staged_inputs(pages)
            .into_iter()
            .map(|(dt, inputs)| partition_merge(run, &dt, Some(job.slice_no), inputs))
            .collect()
    } else {
        Vec::new()
    };
    Ok(PageDue { next, launch, merges })
}

/// Which successors [`send_page_due`] sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resend {
    /// All of them: the page was just recorded.
    All,
    /// Those pages not recorded yet: a redelivery, long after some may have run (sent again,
    /// a recorded page would run the rest of its chain twice).
    Unrecorded,
}

/// The FIFO message of a merge task.
pub fn merge_message(task: &MergeTask) -> Outgoing {
    Outgoing::fifo(
        messages::encode(&Body::MergeTask(task.clone())),
        task.group_id(),
        task.dedup_id(),
    )
}

fn page_message(job: &PageJob) -> Outgoing {
    Outgoing::standard(messages::encode(&Body::PageJob(job.clone())))
}

/// Sends a page's successors in order: next page, started slice, partition merges.
pub async fn send_page_due(p: &Pipeline, due: &PageDue, resend: Resend) -> Result<(), FlowError> {
    let recorded = |job: &PageJob| {
        let (run_id, job_id) = (job.run_id.clone(), job.job_id());
        async move {
            Ok::<_, FlowError>(
                resend == Resend::Unrecorded && p.ledger.page_done(&run_id, &job_id).await?.is_some(),
            )
        }
    };
    if let Some(next) = &due.next {
        if !recorded(next).await? {
            p.pages.send(vec![page_message(next)]).await?;
            crate::failpoint::hit(crate::failpoint::CONSUMER_AFTER_NEXT_PAGE);
        }
    }
    if let Some(first) = &due.launch {
        if !recorded(first).await? {
            p.pages.send(vec![page_message(first)]).await?;
            crate::failpoint::hit(crate::failpoint::CONSUMER_AFTER_LAUNCH);
        }
    }
    if !due.merges.is_empty() {
        p.merges
            .send(due.merges.iter().map(merge_message).collect())
            .await?;
        crate::failpoint::hit(crate::failpoint::CONSUMER_AFTER_PARTITION_MERGES);
        tracing::debug!(
            partitions = due.merges.len(),
            "partition merges of a finished slice queued"
        );
    }
    Ok(())
}

/// The partitions the close merges, with the staged files of each: those staged into by slices
/// that do not own their days (list walks, modified windows), whose partitions are due only once
/// fetching is over (L3).
pub async fn close_partitions(
    ledger: &dyn Ledger,
    run: &Run,
) -> Result<BTreeMap<String, Vec<String>>, LedgerError> {
    let slices = ledger.slices(&run.run_id, run.slices).await?;
    let open: BTreeSet<u32> = slices
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.owns_its_days())
        .map(|(i, _)| i as u32)
        .collect();
    if open.is_empty() {
        return Ok(BTreeMap::new());
    }
    let markers = ledger.page_markers(&run.run_id, None).await?;
    Ok(staged_inputs(
        markers
            .iter()
            .filter(|(job, _)| slice_of_job(job).is_some_and(|s| open.contains(&s)))
            .map(|(j, m)| (j.as_str(), m)),
    ))
}

/// The slice number of a job id (`s00012-p000003` → 12).
pub fn slice_of_job(job_id: &str) -> Option<u32> {
    job_id.strip_prefix('s')?.split('-').next()?.parse().ok()
}

/// Hands a run whose slices are all done to the merger (L3): fetching → merging, then the
/// close. Called by the page that finished the last slice, and again by any redelivered page
/// whose marker exists, so a crash between the marker, the status change and the sends never
/// strands a run: the conditional status change lets one page win, and the winner (or its
/// redelivery) sends the close.
pub async fn hand_over(p: &Pipeline, run_id: &str, job_id: &str) -> Result<(), FlowError> {
    let Some(run) = p.ledger.get_run(run_id).await? else {
        return Ok(());
    };
    let closing = match run.status {
        RunStatus::Fetching if run.pages_outstanding == 0 => {
            let partitions = close_partitions(p.ledger.as_ref(), &run).await?;
            if !p
                .ledger
                .begin_merging(run_id, job_id, partitions.len() as i64, p.now_ms())
                .await?
            {
                return Ok(());
            }
            crate::failpoint::hit(crate::failpoint::CONSUMER_AFTER_BEGIN_MERGING);
            true
        }
        RunStatus::Merging => run.closing_job.as_deref() == Some(job_id),
        _ => false,
    };
    if closing {
        if let Some(run) = p.ledger.get_run(run_id).await? {
            send_close(p, &run).await?;
            crate::failpoint::hit(crate::failpoint::CONSUMER_AFTER_MERGE_TASKS);
        }
    }
    Ok(())
}

/// The close's partition merges not done yet (a crash may have come before one was sent),
/// then the closing task. FIFO deduplication and the merger's markers absorb repeats.
pub async fn send_close(p: &Pipeline, run: &Run) -> Result<usize, FlowError> {
    let done = p.ledger.done_merges(&run.run_id).await?;
    let mut out: Vec<Outgoing> = close_partitions(p.ledger.as_ref(), run)
        .await?
        .into_iter()
        .map(|(dt, inputs)| partition_merge(run, &dt, None, inputs))
        .filter(|t| !done.contains(&t.task_id()))
        .map(|t| merge_message(&t))
        .collect();
    out.push(merge_message(&closing_task(run)));
    let n = out.len();
    p.merges.send(out).await?;
    tracing::info!(run_id = %run.run_id, table = %run.table, merge_tasks = n, records = run.records,
        "fetching done; the close is queued");
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::PageEffects;

    #[test]
    fn judge_drops_what_a_run_no_longer_accepts_l4() {
        let mut run = Run::sample("r", "deals", 0);
        run.status = RunStatus::Fetching;
        assert_eq!(judge(&run, 10, Step::Page), Verdict::Live);
        assert_eq!(judge(&run, 10, Step::PartitionMerge), Verdict::Live);
        assert!(matches!(judge(&run, 10, Step::Close), Verdict::Stale(_)));
        run.status = RunStatus::Merging;
        assert_eq!(judge(&run, 10, Step::Close), Verdict::Live);
        assert!(matches!(judge(&run, 5_000, Step::Page), Verdict::Abandon(n) if n.contains("lease")));
        run.status = RunStatus::Committed;
        assert!(matches!(judge(&run, 5_000, Step::Page), Verdict::Stale(w) if w.contains("committed")));
    }

    fn done(attempt: &str, dts: &[&str]) -> PageDone {
        PageDone {
            attempt: attempt.into(),
            dts: dts.iter().map(|d| d.to_string()).collect(),
            next_cursor: None,
            fingerprint: String::new(),
            effects: PageEffects::default(),
        }
    }

    #[test]
    fn a_merge_task_names_the_recorded_attempt_of_each_page_that_staged_into_it() {
        let (a, b) = (
            done("3", &["2024-01-01", "2024-01-02"]),
            done("1", &["2024-01-02"]),
        );
        let inputs = staged_inputs([("s00001-p000001", &b), ("s00001-p000000", &a)]);
        assert_eq!(
            inputs,
            BTreeMap::from([
                ("2024-01-01".to_string(), vec!["s00001-p000000.3".to_string()]),
                (
                    "2024-01-02".to_string(),
                    vec!["s00001-p000001.1".to_string(), "s00001-p000000.3".to_string()]
                ),
            ])
        );
        let run = Run::sample("r", "deals", 0);
        let task = partition_merge(&run, "2024-01-02", Some(1), inputs["2024-01-02"].clone());
        assert_eq!(
            task.inputs.as_deref(),
            Some(&["s00001-p000000.3".to_string(), "s00001-p000001.1".to_string()][..]),
            "sorted, so every sender of the task sends the same body"
        );
        let many: Vec<String> = (0..=messages::MAX_NAMED_INPUTS)
            .map(|p| format!("s00001-p{p:06}.1"))
            .collect();
        assert_eq!(
            partition_merge(&run, "2024-01-02", None, many).inputs,
            None,
            "past the most a task names, the merger lists"
        );
    }

    #[test]
    fn job_ids_name_their_slice() {
        assert_eq!(slice_of_job("s00012-p000003"), Some(12));
        assert_eq!(slice_of_job("x"), None);
    }
}
