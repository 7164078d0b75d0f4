//! The step for one page job, and its handler for the service loop.
//!
//! Order of effects (each safe to repeat): staged files and the quarantine file under this
//! attempt's own names (S1, `stage_page`) → done-marker with the attempt, the partitions, the
//! next cursor and the counters (L2, `record_page`) → successors (next page, the slice it
//! started, the merges of a finished slice) → the close, after the last slice
//! (`send_successors`). The message is acked only after all of them; a redelivery finding the
//! marker repeats the successors and the close from it (`resend_from_marker`).

use hubspot::HubSpotClient;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use common::catalog::{SourceSpec, TableSpec};
use common::clock::dt_of_day;
use common::failpoint;
use common::flow::{self, Resend, Step};
use common::keyindex::KeyIndex;
use common::lake::new_attempt;
use common::messages::Slice;
use common::messages::{self, PageJob};
use common::pipeline::Pipeline;
use common::pipeline::Settings;
use common::ports::{PageCompletion, PageDone, PageEffects, PageOutcome, Run, RunMode, RunStatus};
use common::schema::{self, TableSchema};
use common::worker::{Failure, Handled, Handler};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::ObjectStoreExt;

use crate::fetch::{fetch_page, Page};
use crate::stage::{batches_by_dt, rejected_jsonl, to_parquet, validate, Row, Staged};
use crate::ConsumerError;

/// Staged files of one page written at once (a page of 100 records can touch 100 days).
const STAGE_UPLOAD_CONCURRENCY: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    Staged {
        records: usize,
        rejected: usize,
        partitions: usize,
        last_page: bool,
    },
    /// The job's done-marker existed: a redelivery or a second live copy; nothing counted
    /// (L2), and this copy's own files were deleted (S1).
    Duplicate,
    /// The run is finished, abandoned or unknown: the job is dropped, logged (L4).
    Stale(String),
}

/// Works one page job: fetches its page through `hubspot`, stages it and records it (the order
/// of effects is in the module's documentation).
pub async fn process_job(
    p: &Pipeline,
    hubspot: &HubSpotClient,
    job: &PageJob,
) -> Result<JobOutcome, ConsumerError> {
    let run = match run_to_stage(p, job).await? {
        ControlFlow::Continue(run) => run,
        ControlFlow::Break(outcome) => return Ok(outcome),
    };
    let table = &table_spec(p, job).await?;
    if let (Some(kind), Slice::Snapshot { .. }) = (table.snapshot, &job.slice) {
        let encoded = crate::snapshot::fetch(hubspot, kind, &run.run_id, p.now_ms()).await?;
        let mut staged = store_encoded(p, &run, job, table, encoded, None).await?;
        let Some((pages_outstanding, effects)) = record_page(p, &run, job, &mut staged).await? else {
            return Ok(JobOutcome::Duplicate);
        };
        return send_successors(p, &run, job, staged, pages_outstanding, effects).await;
    }
    let source = source_of(table, job)?;
    if let Some(note) = walk_outpaced(&run, job, &p.settings) {
        return abandon(p, &run, note).await;
    }
    let mut columns = run_schema(p, &run).await?;
    if matches!(job.slice, Slice::Backfill { .. }) {
        // E2: a column backfill reads and stages only the columns waiting for it.
        columns = Arc::new(columns.patch_schema());
    }
    let page = fetch(p, hubspot, &run, job, table, source, &columns).await?;
    metrics::counter!(common::metrics::PAGES_FETCHED, "table" => table.name.clone()).increment(1);
    metrics::counter!(common::metrics::RECORDS_FETCHED, "table" => table.name.clone())
        .increment(page.records.len() as u64);
    let mut staged = stage_page(p, &run, job, table, &columns, source, page).await?;
    let Some((pages_outstanding, effects)) = record_page(p, &run, job, &mut staged).await? else {
        return Ok(JobOutcome::Duplicate);
    };
    send_successors(p, &run, job, staged, pages_outstanding, effects).await
}

/// The job's live run, checked lineage and all, or its outcome if there is nothing to stage.
async fn run_to_stage(p: &Pipeline, job: &PageJob) -> Result<ControlFlow<JobOutcome, Run>, ConsumerError> {
    // A job of a finished, abandoned or unknown run is dropped (L4).
    let run = match flow::live_run(p.ledger.as_ref(), &job.run_id, &job.table, Step::Page, p.now_ms()).await?
    {
        Ok(run) => run,
        Err(why) => return Ok(ControlFlow::Break(JobOutcome::Stale(why))),
    };
    let job_id = job.job_id();
    check_lineage(p, &run, job).await?;
    // A job whose marker exists was recorded before: nothing is staged or counted again (L2).
    if let Some(done) = p.ledger.page_done(&run.run_id, &job_id).await? {
        resend_from_marker(p, &run, job, &done).await?;
        return Ok(ControlFlow::Break(JobOutcome::Duplicate));
    }
    Ok(ControlFlow::Continue(run))
}

/// Repeats, for a redelivered job, the successors and the close its recorded marker names.
async fn resend_from_marker(
    p: &Pipeline,
    run: &Run,
    job: &PageJob,
    done: &PageDone,
) -> Result<(), ConsumerError> {
    // Redelivered after its marker was written: the crash may have come before the next
    // page, the started slice or the due merges were sent, or before the close. Each is
    // repeated from the marker (pages already recorded excepted); the receivers' own
    // markers (and FIFO deduplication) absorb the repeats.
    let due = flow::page_due(p.ledger.as_ref(), run, job, done).await?;
    flow::send_page_due(p, &due, Resend::Unrecorded).await?;
    flow::hand_over(p, &run.run_id, &job.job_id()).await?;
    Ok(())
}

/// The job's table: the catalog's, or a custom object's recorded in the lake.
async fn table_spec(p: &Pipeline, job: &PageJob) -> Result<TableSpec, ConsumerError> {
    match common::schema::table_spec(&p.lake, &p.catalog, &job.table).await {
        Err(common::schema::SchemaError::UnknownTable(e)) => Err(ConsumerError::BadJob(e.to_string())),
        found => Ok(found?),
    }
}

/// The source `table` reads the job's object type from.
fn source_of<'t>(table: &'t TableSpec, job: &PageJob) -> Result<&'t SourceSpec, ConsumerError> {
    table.source(job.slice.object_type()).ok_or_else(|| {
        ConsumerError::BadJob(format!(
            "table `{}` does not read object type `{}`",
            table.name,
            job.slice.object_type()
        ))
    })
}

/// Abandons a run whose list walk was outpaced (C2); the job is dropped with the note.
async fn abandon(p: &Pipeline, run: &Run, note: String) -> Result<JobOutcome, ConsumerError> {
    // Nothing of the run is committed: the lake and the watermark stay as they were.
    tracing::error!(run_id = %run.run_id, table = %run.table, %note, "run abandoned");
    if p.ledger
        .finish(&run.run_id, RunStatus::Abandoned, Some(&note), None, p.now_ms())
        .await?
    {
        metrics::counter!(common::metrics::RUNS_FAILED, "table" => run.table.clone()).increment(1);
    }
    Ok(JobOutcome::Stale(note))
}

/// The schema the run began with: its columns and their types.
async fn run_schema(p: &Pipeline, run: &Run) -> Result<Arc<TableSchema>, ConsumerError> {
    Ok(schema::for_run(&p.lake, &run.table, &run.run_id).await?)
}

/// Fetches the job's page with the run's columns, then lets the pipeline's hooks act before
/// anything is staged.
async fn fetch(
    p: &Pipeline,
    hubspot: &HubSpotClient,
    run: &Run,
    job: &PageJob,
    table: &TableSpec,
    source: &SourceSpec,
    columns: &TableSchema,
) -> Result<Page, ConsumerError> {
    let properties = match &table.links {
        Some(_) => crate::links::request_properties(source),
        // The merged ids too (K2), whether the table takes them as a column or not.
        None => {
            let mut asked: Vec<&str> = columns.fetched_from(&source.object_type).collect();
            asked.extend(crate::links::merged_properties(&source.object_type));
            source.request_properties(asked)
        }
    };
    if let (
        Some(links),
        Slice::Merged {
            merged_type,
            from_ms,
            to_ms,
            ..
        },
    ) = (&table.links, &job.slice)
    {
        let window = (merged_type.as_str(), *from_ms, *to_ms);
        let page =
            crate::links::relinked_page(hubspot, source, links, window, job.cursor.as_deref(), &p.settings)
                .await?;
        if let Some(hooks) = &p.hooks {
            hooks.after_fetch(&run.run_id, &job.job_id()).await;
        }
        return Ok(page);
    }
    let page = match &job.slice {
        // A backfill on both paths (J1-J4): the lane claims its range, the walk meets the lanes.
        Slice::Lane { .. } => crate::meet::lane_page(p, hubspot, run, job, source, properties).await?,
        Slice::Walk { .. } => crate::meet::walk_pages(p, hubspot, run, job, source, properties).await?,
        slice => {
            fetch_page(
                hubspot,
                source,
                slice,
                job.cursor.as_deref(),
                properties,
                &p.settings,
            )
            .await?
        }
    };
    let page = match &table.links {
        Some(links) if !matches!(job.slice, Slice::Backfill { .. }) => {
            crate::links::link_rows(hubspot, source, links, page).await?
        }
        _ => page,
    };
    if let Some(hooks) = &p.hooks {
        hooks.after_fetch(&run.run_id, &job.job_id()).await;
    }
    Ok(page)
}

/// What one attempt staged: the outcome its marker will record and the files it wrote.
struct StagedPage {
    outcome: PageOutcome,
    /// This attempt's files, deleted if another copy records the page first (S1).
    written: Vec<Path>,
    records: usize,
    rejected: usize,
}

/// Stages the page under this attempt's own names (S1): a file per partition, and a quarantine file (Q1).
async fn stage_page(
    p: &Pipeline,
    run: &Run,
    job: &PageJob,
    table: &TableSpec,
    columns: &Arc<TableSchema>,
    source: &SourceSpec,
    page: Page,
) -> Result<StagedPage, ConsumerError> {
    let job_id = job.job_id();
    let index = key_index(p, run, &table.name).await?;
    // Encoded off the async threads.
    let synced_at = p.now_ms();
    let patch = matches!(job.slice, Slice::Backfill { .. });
    let encoded = encode_off_thread(
        table,
        columns,
        patch,
        source,
        page.records,
        index,
        &run.run_id,
        synced_at,
    )
    .await?;
    if !encoded.uncast.is_empty() {
        tracing::warn!(run_id = %run.run_id, job = %job_id, uncast = ?encoded.uncast,
            "values that do not cast to their column's type were kept raw in `_uncast` (their columns hold null)");
    }
    store_encoded(p, run, job, table, encoded, page.next_cursor).await
}

/// Writes an encoded page under this attempt's own names (S1): its partition files and its
/// quarantine file, if any.
async fn store_encoded(
    p: &Pipeline,
    run: &Run,
    job: &PageJob,
    table: &TableSpec,
    encoded: Encoded,
    next_cursor: Option<String>,
) -> Result<StagedPage, ConsumerError> {
    let job_id = job.job_id();
    let attempt = new_attempt();
    let mut staged = StagedPage {
        outcome: PageOutcome {
            slice_no: job.slice_no,
            attempt: attempt.clone(),
            records: encoded.records as i64,
            rejected: encoded.rejected_count as i64,
            max_created_ms: encoded.max_created_ms,
            max_modified_ms: encoded.max_modified_ms,
            next_cursor,
            fingerprint: job.slice.fingerprint(),
            uncast: encoded
                .uncast
                .iter()
                .map(|(p, n)| (p.clone(), i64::try_from(*n).unwrap_or(i64::MAX)))
                .collect(),
            ..Default::default()
        },
        written: Vec::new(),
        records: encoded.records,
        rejected: encoded.rejected_count,
    };
    if let Some(lines) = encoded.rejected {
        let path = p.lake.rejected_file(&table.name, &run.run_id, &job_id, &attempt);
        put(p, &path, lines).await?;
        tracing::warn!(run_id = %run.run_id, job = %job_id, rejected = encoded.rejected_count, file = %path,
            "records that cannot be staged were quarantined (Q1); the run goes on");
        staged.written.push(path);
    }
    let files = upload_partitions(p, &table.name, &run.run_id, &job_id, &attempt, encoded.files).await?;
    staged.outcome.dts.extend(files.iter().map(|(dt, _)| dt.clone()));
    staged.written.extend(files.into_iter().map(|(_, path)| path));
    failpoint::hit(failpoint::CONSUMER_AFTER_STAGE);
    match job.slice {
        Slice::Walk { .. } => failpoint::hit(failpoint::CONSUMER_WALK_AFTER_STAGE),
        Slice::Lane { .. } => failpoint::hit(failpoint::CONSUMER_LANE_AFTER_STAGE),
        _ => {}
    }
    Ok(staged)
}

/// The table's key index for an incremental run's tombstones (K1); none for a full run.
async fn key_index(p: &Pipeline, run: &Run, table: &str) -> Result<Option<Arc<KeyIndex>>, ConsumerError> {
    // K1: an incremental run stages a tombstone where the index places a key elsewhere.
    match run.mode {
        RunMode::Incremental => p
            .indexes
            .for_run(p.ledger.as_ref(), &p.lake, table, &run.run_id)
            .await
            .map_err(|e| ConsumerError::Stage(e.to_string())),
        RunMode::Full => Ok(None),
    }
}

/// Validates and encodes the page's records off the async threads (see [`encode_page`]).
#[allow(clippy::too_many_arguments)]
async fn encode_off_thread(
    table: &TableSpec,
    columns: &Arc<TableSchema>,
    patch: bool,
    source: &SourceSpec,
    records: Vec<wire::ObjectRecord>,
    index: Option<Arc<KeyIndex>>,
    run_id: &str,
    synced_at: i64,
) -> Result<Encoded, ConsumerError> {
    let (table, columns, source, run_id) =
        (table.clone(), columns.clone(), source.clone(), run_id.to_string());
    tokio::task::spawn_blocking(move || {
        encode_page(
            &table, &columns, patch, &source, &records, index, &run_id, synced_at,
        )
    })
    .await
    .map_err(|e| ConsumerError::Stage(format!("encoding task: {e}")))?
}

/// Writes the page's partition files, a few at once; returns each file's partition and path.
async fn upload_partitions(
    p: &Pipeline,
    table: &str,
    run_id: &str,
    job_id: &str,
    attempt: &str,
    files: Vec<(String, Vec<u8>)>,
) -> Result<Vec<(String, Path)>, ConsumerError> {
    let uploads = files.into_iter().map(|(dt, bytes)| {
        let path = p.lake.staged_file(table, run_id, &dt, job_id, attempt);
        async move {
            put(p, &path, bytes).await?;
            Ok::<_, ConsumerError>((dt, path))
        }
    });
    futures::stream::iter(uploads)
        .buffer_unordered(STAGE_UPLOAD_CONCURRENCY)
        .try_collect()
        .await
}

/// Records the page's marker, counters and what it made due, atomically (L2, L3, L5); `None`: a copy did.
async fn record_page(
    p: &Pipeline,
    run: &Run,
    job: &PageJob,
    staged: &mut StagedPage,
) -> Result<Option<(i64, PageEffects)>, ConsumerError> {
    let job_id = job.job_id();
    // A page that finishes a slice owning its partitions counts one merge for each partition
    // the slice staged into: its recorded pages' and its own (L6: read back from the markers).
    let outcome = &mut staged.outcome;
    if outcome.next_cursor.is_none() && job.slice.owns_its_days() {
        let mut dts: BTreeSet<String> =
            flow::slice_partitions(p.ledger.as_ref(), &run.run_id, job.slice_no).await?;
        dts.extend(outcome.dts.iter().cloned());
        outcome.slice_merges = dts.len() as i64;
    }
    let completion = p
        .ledger
        .complete_page(&run.run_id, &job_id, outcome, p.now_ms())
        .await?;
    failpoint::hit(failpoint::CONSUMER_AFTER_PAGE_DONE);
    match completion {
        PageCompletion::Recorded {
            pages_outstanding,
            effects,
        } => Ok(Some((pages_outstanding, effects))),
        // Another copy of this job recorded it first (SQS delivered it twice, or this copy
        // stalled past its visibility). Its marker names its own attempt: this copy's files
        // are never read (S1), so they go now; the winner sends the successors.
        PageCompletion::AlreadyDone => {
            discard(p, &run.run_id, &job_id, &staged.written).await?;
            Ok(None)
        }
    }
}

/// Sends what the recorded page made due and, after the last slice, hands the run over (L3).
async fn send_successors(
    p: &Pipeline,
    run: &Run,
    job: &PageJob,
    staged: StagedPage,
    pages_outstanding: i64,
    effects: PageEffects,
) -> Result<JobOutcome, ConsumerError> {
    // Successors only after the marker: a page cannot be recorded before this one (which
    // would let the count reach 0 with this page's partitions unknown). A crash before the
    // sends is repaired by the redelivery, which reads them back from the marker.
    let outcome = staged.outcome;
    let done = PageDone {
        attempt: outcome.attempt,
        dts: outcome.dts.clone(),
        next_cursor: outcome.next_cursor,
        fingerprint: outcome.fingerprint,
        effects,
    };
    let due = flow::page_due(p.ledger.as_ref(), run, job, &done).await?;
    flow::send_page_due(p, &due, Resend::All).await?;

    // The last slice hands the run to the merger (L3).
    let last_page = pages_outstanding == 0;
    if last_page {
        flow::hand_over(p, &run.run_id, &job.job_id()).await?;
    }
    Ok(JobOutcome::Staged {
        records: staged.records,
        rejected: staged.rejected,
        partitions: outcome.dts.len(),
        last_page,
    })
}

async fn put(p: &Pipeline, path: &Path, bytes: Vec<u8>) -> Result<(), ConsumerError> {
    p.lake
        .store()
        .put(path, Bytes::from(bytes).into())
        .await
        .map_err(|e| ConsumerError::Stage(format!("writing {path}: {e}")))?;
    Ok(())
}

/// Deletes the files of a losing attempt (S1). If this copy dies first, the merges of their
/// partitions (which find another attempt recorded) or the run's commit delete them.
async fn discard(p: &Pipeline, run_id: &str, job_id: &str, files: &[Path]) -> Result<(), ConsumerError> {
    for path in files {
        p.lake
            .delete(path)
            .await
            .map_err(|e| ConsumerError::Stage(format!("deleting {path}: {e}")))?;
    }
    tracing::info!(
        run_id,
        job = job_id,
        files = files.len(),
        "another copy of this page recorded it first; this copy's files were deleted"
    );
    Ok(())
}

/// A page, validated and encoded.
pub(crate) struct Encoded {
    /// One Parquet file per partition.
    pub(crate) files: Vec<(String, Vec<u8>)>,
    /// The quarantine file's lines, if any record could not be staged.
    pub(crate) rejected: Option<Vec<u8>>,
    pub(crate) rejected_count: usize,
    pub(crate) records: usize,
    pub(crate) max_created_ms: Option<i64>,
    pub(crate) max_modified_ms: Option<i64>,
    /// Values per property that did not cast (kept in `_uncast`).
    pub(crate) uncast: BTreeMap<String, u64>,
}

#[allow(clippy::too_many_arguments)]
fn encode_page(
    table: &TableSpec,
    columns: &TableSchema,
    patch: bool,
    source: &SourceSpec,
    records: &[wire::ObjectRecord],
    index: Option<Arc<KeyIndex>>,
    run_id: &str,
    synced_at: i64,
) -> Result<Encoded, ConsumerError> {
    let (rows, rejected) = validate(source, records);
    let mut staged: Vec<Staged<'_>> = rows.iter().map(Staged::Record).collect();
    // A patch names the columns it patches; it moves no record, so it leaves no tombstone.
    let patch: Option<Vec<String>> = patch.then(|| columns.columns.iter().map(|c| c.name.clone()).collect());
    if let (Some(index), None) = (&index, &patch) {
        staged.extend(tombstones(index, &rows));
    }
    let batches = batches_by_dt(table, columns, source, &staged, run_id, synced_at)?;
    let files = batches
        .by_dt
        .into_iter()
        .map(|(dt, b)| Ok((dt, to_parquet(&b, patch.as_deref())?)))
        .collect::<Result<Vec<(String, Vec<u8>)>, ConsumerError>>()?;
    Ok(Encoded {
        files,
        rejected: (!rejected.is_empty()).then(|| rejected_jsonl(&rejected)),
        rejected_count: rejected.len(),
        records: rows.len(),
        max_created_ms: rows.iter().filter_map(|r| r.created_ms).max(),
        max_modified_ms: rows.iter().map(|r| r.modified_ms).max(),
        uncast: batches.uncast,
    })
}

/// K1: a tombstone in the old partition of every row whose key the index places elsewhere.
/// K2: a tombstone in the partition of every id the index knows that a row's merged ids name
/// (HubSpot merged that record into this one: it is gone), at the survivor's version. Each
/// key and partition once (a link table has several rows per record).
fn tombstones<'a>(index: &KeyIndex, rows: &'a [Row<'a>]) -> Vec<Staged<'a>> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for r in rows {
        let new_dt = r.dt();
        if let Some(old_dt) = index.get(r.key).and_then(dt_of_day).filter(|old| *old != new_dt) {
            if seen.insert((r.key, old_dt.clone())) {
                tracing::debug!(key = r.key, from = %old_dt, to = %new_dt, "created date moved; the old row gets a tombstone");
                out.push(Staged::Tombstone {
                    key: r.key,
                    modified_ms: r.modified_ms,
                    dt: old_dt,
                });
            }
        }
        for loser in merged_ids(r.record) {
            let Some(dt) = index.get(loser).and_then(dt_of_day) else {
                continue;
            };
            if loser != r.key && seen.insert((loser, dt.clone())) {
                tracing::info!(survivor = r.key, merged = loser, %dt, "merged away in HubSpot; its row gets a tombstone");
                out.push(Staged::Tombstone {
                    key: loser,
                    modified_ms: r.modified_ms,
                    dt,
                });
            }
        }
    }
    out
}

/// The ids a record's merged-ids properties name (K2).
fn merged_ids(record: &wire::ObjectRecord) -> Vec<i64> {
    [wire::MERGED_IDS_PROPERTY, wire::MERGED_VIDS_PROPERTY]
        .iter()
        .filter_map(|p| record.properties.get(*p).and_then(|v| v.as_deref()))
        .flat_map(wire::merged_ids)
        .filter_map(|id| i64::try_from(id).ok())
        .collect()
}

/// C2: a full sync's list walk reads to the end of the list: ids are not in creation order,
/// so no page, however new its records, says that the rest are newer still. Records created
/// after T0 are read too when the walk meets them (or by the next incremental window). If
/// records are created faster than the walk reads them it never ends: past
/// `list_walk_max_pages` the run is abandoned (nothing of it committed, nothing lost) with a
/// note saying what to do.
fn walk_outpaced(run: &Run, job: &PageJob, settings: &Settings) -> Option<String> {
    let walk = matches!(job.slice, Slice::List { .. } | Slice::Walk { .. }) && run.mode == RunMode::Full;
    (walk && job.page_no >= settings.list_walk_max_pages).then(|| {
        format!(
            "the list walk of {} reached page {} (HUBSYNC_LIST_WALK_MAX_PAGES): records are created \
             faster than it reads them. Nothing was committed; sync again with search slices \
             (lower HUBSYNC_LIST_WALK_MAX) or raise the bound",
            job.slice.object_type(),
            job.page_no
        )
    })
}

/// A page job must be one its run sent: page 0 of a started slice whose recorded content it
/// carries, or the successor a recorded page named (its marker holds the cursor and the
/// slice's fingerprint). Anything else (a forged, corrupted or foreign job) is refused before
/// it can stage a file or move a counter.
async fn check_lineage(p: &Pipeline, run: &Run, job: &PageJob) -> Result<(), ConsumerError> {
    let refuse = |why: String| {
        Err(ConsumerError::BadJob(format!(
            "page job {} was not sent by run {}: {why}",
            job.job_id(),
            run.run_id
        )))
    };
    if job.page_no == 0 {
        if job.cursor.is_some() {
            return refuse("page 0 carries a cursor".into());
        }
        // L5: the run starts slices in plan order and records each start first.
        if job.slice_no >= run.slices_started {
            return refuse(format!(
                "slice {} is not started ({} of {} are)",
                job.slice_no, run.slices_started, run.slices
            ));
        }
        return match p.ledger.slice(&run.run_id, job.slice_no).await? {
            Some(slice) if slice == job.slice => Ok(()),
            Some(_) => refuse(format!("slice {} of the plan is another query", job.slice_no)),
            None => refuse(format!("slice {} is not in the run's plan", job.slice_no)),
        };
    }
    let previous = PageJob {
        page_no: job.page_no - 1,
        ..job.clone()
    }
    .job_id();
    match p.ledger.page_done(&run.run_id, &previous).await? {
        Some(done) if done.next_cursor == job.cursor && done.fingerprint == job.slice.fingerprint() => Ok(()),
        Some(done) if done.next_cursor != job.cursor => {
            refuse(format!("page {previous} recorded another next cursor"))
        }
        Some(_) => refuse(format!("page {previous} was of another slice")),
        None => refuse(format!("its predecessor {previous} is not recorded")),
    }
}

/// Handles page jobs from the pages queue.
pub struct PageJobHandler {
    pub pipeline: Pipeline,
    pub hubspot: HubSpotClient,
}

impl PageJobHandler {
    pub fn new(pipeline: Pipeline, hubspot: HubSpotClient) -> Arc<Self> {
        Arc::new(PageJobHandler { pipeline, hubspot })
    }
}

#[async_trait]
impl Handler for PageJobHandler {
    async fn handle(&self, body: &str) -> Result<Handled, Failure> {
        let job = messages::decode_page_job(body).map_err(|e| Failure::dead_letter(e.to_string()))?;
        match process_job(&self.pipeline, &self.hubspot, &job).await {
            Ok(JobOutcome::Stale(why)) => Ok(Handled::Dropped(why)),
            Ok(o) => Ok(Handled::Done(format!("{} {}: {o:?}", job.run_id, job.job_id()))),
            Err(e) => Err(e.failure(format!("{} {}", job.run_id, job.job_id()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::catalog::Catalog;
    use wire::ObjectRecord;

    fn record(id: &str, created: &str) -> ObjectRecord {
        ObjectRecord {
            id: id.into(),
            properties: [
                ("createdate".to_string(), Some(created.to_string())),
                (
                    "hs_lastmodifieddate".to_string(),
                    Some("2024-05-01T00:00:00Z".to_string()),
                ),
            ]
            .into(),
            created_at: created.into(),
            updated_at: "2024-05-01T00:00:00Z".into(),
            archived: false,
            archived_at: None,
        }
    }

    #[test]
    fn only_a_full_list_walk_past_its_bound_is_outpaced_c2() {
        let settings = Settings {
            list_walk_max_pages: 10,
            ..Settings::default()
        };
        let list = Slice::List {
            object_type: "deals".into(),
        };
        let job = |page_no: u32, slice: Slice| PageJob {
            run_id: "r".into(),
            table: "deals".into(),
            slice_no: 0,
            page_no,
            slice,
            cursor: Some("c".into()),
        };
        let mut run = Run {
            mode: RunMode::Full,
            ..Default::default()
        };
        assert!(walk_outpaced(&run, &job(9, list.clone()), &settings).is_none());
        assert!(walk_outpaced(&run, &job(10, list.clone()), &settings).is_some_and(|n| n.contains("page 10")));
        let archived = Slice::ListArchived {
            object_type: "deals".into(),
            since_ms: 0,
        };
        assert!(walk_outpaced(&run, &job(50, archived), &settings).is_none());
        run.mode = RunMode::Incremental;
        assert!(walk_outpaced(&run, &job(50, list), &settings).is_none());
    }

    #[test]
    fn a_moved_key_gets_a_tombstone_in_its_old_partition_k1() {
        use common::clock::day_of;
        let cat = Catalog::default();
        let t = cat.table("deals").unwrap();
        let moved_from = day_of(1_700_000_000_000);
        let index = Arc::new(KeyIndex::from_pairs(vec![
            (1, moved_from),
            (2, day_of(1_704_067_200_000)),
        ]));
        let recs = [
            record("1", "2024-01-01T00:00:00Z"),
            record("2", "2024-01-01T10:00:00Z"),
            record("3", "2024-01-01T00:00:00Z"),
        ];
        let cols = TableSchema::of_catalog(t);
        let e = encode_page(t, &cols, false, &t.sources[0], &recs, Some(index), "r", 9).unwrap();
        let dts: Vec<&str> = e.files.iter().map(|(d, _)| d.as_str()).collect();
        assert_eq!(dts, ["2023-11-14", "2024-01-01"], "only key 1 moved");
        assert_eq!((e.records, e.rejected_count), (3, 0));
        let plain = encode_page(t, &cols, false, &t.sources[0], &recs, None, "r", 9).unwrap();
        assert_eq!(plain.files.len(), 1);
    }
}
