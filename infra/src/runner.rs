//! Embedded mode's all-in-one run: one process hosts the producer, N consumers and the merger
//! over the lake's own database and queues, requests one sync per table (or resumes the
//! table's active run, e.g. after a kill -9), and waits until every run is finished.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::clock::EpochMs;
use common::messages::{self, Body, RequestedMode, SyncRequest};
use common::pipeline::Pipeline;
use common::ports::{Outgoing, Run, RunStatus};
use common::schema;
use common::worker::{run_workers, WorkerOptions};

use crate::progress::{Progress, ProgressMode};
use hubspot::HubSpotClient;
use tokio_util::sync::CancellationToken;

/// Partition merges `hubsync run` runs at once.
pub const DEFAULT_MERGERS: usize = 4;

/// How the all-in-one run is staffed.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub tables: Vec<String>,
    pub mode: RequestedMode,
    /// Concurrent page fetchers.
    pub consumers: usize,
    /// Concurrent partition merges (different partitions only: FIFO groups).
    pub mergers: usize,
    /// Give up waiting after this long (the runs stay active and resume next time).
    pub timeout: Option<Duration>,
    /// How the runs' progress is shown while waiting (on stderr).
    pub progress: ProgressMode,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            tables: vec![],
            mode: RequestedMode::Auto,
            consumers: 4,
            mergers: DEFAULT_MERGERS,
            timeout: None,
            progress: ProgressMode::Off,
        }
    }
}

/// What one table's run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub table: String,
    pub run: Option<Run>,
    /// Set when the run did not commit, with the reason.
    pub problem: Option<String>,
    pub resumed: bool,
}

impl RunReport {
    pub fn committed(&self) -> bool {
        self.problem.is_none()
            && self
                .run
                .as_ref()
                .is_some_and(|r| r.status == RunStatus::Committed)
    }
}

/// A request id: sortable by time, unique.
pub fn new_request_id(now: EpochMs) -> String {
    let t = chrono::DateTime::from_timestamp_millis(now)
        .map(|t| t.format("%Y%m%dT%H%M%S%3fZ").to_string())
        .unwrap_or_else(|| now.to_string());
    format!("{t}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// The run each table waits on, by table: its run id and whether it was resumed.
type Waiting = BTreeMap<String, (String, bool)>;

/// How waiting for the runs ended, when every read of the ledger and queues succeeded.
enum WaitEnd {
    /// Every run is over: one report per table.
    Finished(BTreeMap<String, RunReport>),
    /// Waiting stopped first (new dead letters, the timeout): returned once the workers stop.
    GaveUp(anyhow::Error),
}

/// Runs one sync of each table to the end (or resumes active runs) and reports.
pub async fn run_embedded(
    p: &Pipeline,
    hubspot: &HubSpotClient,
    options: &RunOptions,
) -> anyhow::Result<Vec<RunReport>> {
    let tables: Vec<String> = select_tables(p, hubspot, &options.tables)
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect();
    sweep_staging(p, &tables).await?;
    let (waiting, requests) = resume_or_request(p, &tables, options.mode).await?;
    ensure_resumed_runs_not_dead_lettered(p, &waiting).await?;
    p.requests.send(requests).await?;
    let dead_before = dead_letters(p).await?;

    let shutdown = CancellationToken::new();
    let workers = spawn_roles(p, hubspot, options, shutdown.clone());
    let mut progress = Progress::new(&tables, options.progress);
    let end = wait_for_runs(p, &waiting, dead_before, options.timeout, &mut progress).await;
    drop(progress);
    // However waiting ended (a failed read of the ledger too), the workers stop before this
    // returns: each finishes the message in hand, none is left running behind the caller.
    shutdown.cancel();
    for w in workers {
        let _ = w.await;
    }
    let mut reports = match end? {
        WaitEnd::Finished(reports) => reports,
        WaitEnd::GaveUp(e) => return Err(e),
    };
    Ok(tables.iter().filter_map(|t| reports.remove(t)).collect())
}

/// The tables to sync: those named, or every table. With a catalog that discovers custom
/// objects, the portal's are read first when every table is asked for or a name is not known
/// yet; a portal that will not list them (no custom objects scope) leaves the tables known.
async fn select_tables(
    p: &Pipeline,
    hubspot: &HubSpotClient,
    names: &[String],
) -> anyhow::Result<Vec<common::catalog::TableSpec>> {
    if p.catalog.discovers_custom_objects() {
        let mut discover = names.is_empty();
        for n in names {
            discover |= schema::table_spec(&p.lake, &p.catalog, n.trim()).await.is_err();
        }
        if discover {
            match hubspot.schemas().await {
                Ok(schemas) => {
                    schema::record_custom_tables(&p.lake, &p.catalog, &schemas, p.now_ms()).await?;
                }
                Err(e) => tracing::warn!(error = %e,
                    "could not read the portal's custom objects (GET /crm/v3/schemas); syncing the tables known"),
            }
        }
    }
    Ok(schema::select_tables(&p.lake, &p.catalog, names).await?)
}

/// Resumes what a previous process left active; prepares a sync request for each other table.
async fn resume_or_request(
    p: &Pipeline,
    tables: &[String],
    mode: RequestedMode,
) -> anyhow::Result<(Waiting, Vec<Outgoing>)> {
    let mut waiting = Waiting::new();
    let mut requests = Vec::new();
    for table in tables {
        if let Some(active) = p.ledger.active_run(table).await? {
            tracing::info!(table, run_id = %active.run_id, status = active.status.as_str(), "resuming the table's active run");
            waiting.insert(table.clone(), (active.run_id, true));
            continue;
        }
        let request = SyncRequest {
            request_id: new_request_id(p.now_ms()),
            table: table.clone(),
            mode,
            requested_at_ms: p.now_ms(),
        };
        waiting.insert(table.clone(), (producer::worker::run_id_for(&request), false));
        requests.push(Outgoing::standard(messages::encode(&Body::SyncRequest(request))));
    }
    Ok((waiting, requests))
}

/// Fails, saying what to do, if a resumed run waits on messages in the dead-letter queues.
async fn ensure_resumed_runs_not_dead_lettered(p: &Pipeline, waiting: &Waiting) -> anyhow::Result<()> {
    // E2: a resumed run that waits on a dead letter would wait for its lease (30 minutes)
    // and then be abandoned: say so now, with what to do.
    let dead = crate::dead::dead_letters(p).await?;
    let stuck: Vec<String> = waiting
        .iter()
        .filter(|(_, (_, resumed))| *resumed)
        .filter_map(|(table, (run_id, _))| {
            let counts = dead.by_run.get(run_id).filter(|c| c.total() > 0)?;
            Some(format!(
                "run {run_id} of {table} waits on {} in the dead-letter queues (the errors that put them \
                 there are in the log of the process that ran them); fix the cause, then {}, and `hubsync run` again",
                counts.describe(),
                counts.replay_commands(p.lake.uri()).join(" and ")
            ))
        })
        .collect();
    anyhow::ensure!(stuck.is_empty(), "{}", stuck.join("\n"));
    Ok(())
}

/// How often a run's end is looked for: a run's last commit is seen within this, and the
/// look is one read of the database.
const POLL: Duration = Duration::from_millis(25);

/// Looks per progress line update (every 100 ms: a rate over shorter spans only jitters).
const POLLS_PER_PROGRESS: u64 = 4;

/// Looks per count of the dead letters (once a second: counting scans the queues).
const POLLS_PER_DEAD_LETTER_COUNT: u64 = 40;

/// Polls every [`POLL`] until each table's run is over, new dead letters appear or time is up,
/// showing the reads on `progress`.
async fn wait_for_runs(
    p: &Pipeline,
    waiting: &Waiting,
    dead_before: u64,
    timeout: Option<Duration>,
    progress: &mut Progress,
) -> anyhow::Result<WaitEnd> {
    let started = tokio::time::Instant::now();
    let mut reports: BTreeMap<String, RunReport> = BTreeMap::new();
    let mut polls: u64 = 0;
    loop {
        polls += 1;
        for (table, (run_id, resumed)) in waiting {
            if reports.contains_key(table) {
                continue;
            }
            let run = p.ledger.get_run(run_id).await?;
            if let Some(run) = run.as_ref().filter(|_| polls.is_multiple_of(POLLS_PER_PROGRESS)) {
                progress.update(table, run);
            }
            if let Some(report) = report_if_over(p, table, run_id, run, *resumed).await? {
                progress.finish(table, report.run.as_ref(), report.problem.as_deref());
                reports.insert(table.clone(), report);
            }
        }
        if reports.len() == waiting.len() {
            return Ok(WaitEnd::Finished(reports));
        }
        if let Some(e) = reason_to_give_up(p, polls, dead_before, started, timeout).await? {
            return Ok(WaitEnd::GaveUp(e));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The report of `table`'s run if it is over: finished, or never created (request refused).
/// `run` is the run as just read.
async fn report_if_over(
    p: &Pipeline,
    table: &str,
    run_id: &str,
    run: Option<Run>,
    resumed: bool,
) -> anyhow::Result<Option<RunReport>> {
    match run {
        Some(run) if run.status.is_active() => Ok(None),
        Some(run) => Ok(Some(finished_report(table, run, resumed))),
        None => {
            // The request was handled (the queue is empty) and still no run exists: it was
            // refused. The run is read again after the queue because the producer may
            // create it and ack its request between our two reads.
            if requests_drained(p).await? && p.ledger.get_run(run_id).await?.is_none() {
                return Ok(Some(refused_report(p, table).await?));
            }
            Ok(None)
        }
    }
}

/// The report of a run that ended, with a problem unless it committed.
fn finished_report(table: &str, run: Run, resumed: bool) -> RunReport {
    let problem = (run.status != RunStatus::Committed).then(|| {
        format!(
            "run {} ended {}: {}",
            run.run_id,
            run.status.as_str(),
            run.note.clone().unwrap_or_default()
        )
    });
    RunReport {
        table: table.to_string(),
        run: Some(run),
        problem,
        resumed,
    }
}

/// The report of a request that made no run: refused for another active run, or dead-lettered.
async fn refused_report(p: &Pipeline, table: &str) -> anyhow::Result<RunReport> {
    let active = p.ledger.active_run(table).await?;
    Ok(RunReport {
        table: table.to_string(),
        run: None,
        problem: Some(match active {
            Some(a) => format!(
                "refused: run {} of {table} is active ({})",
                a.run_id,
                a.status.as_str()
            ),
            None => "the sync request was dead-lettered; see the log".into(),
        }),
        resumed: false,
    })
}

/// Why waiting must stop before every run is over: messages newly dead-lettered, or the timeout.
async fn reason_to_give_up(
    p: &Pipeline,
    polls: u64,
    dead_before: u64,
    started: tokio::time::Instant,
    timeout: Option<Duration>,
) -> anyhow::Result<Option<anyhow::Error>> {
    // Counting scans the queues, and a backfill's merge queue holds thousands of tasks.
    let dead_now = if polls.is_multiple_of(POLLS_PER_DEAD_LETTER_COUNT) {
        dead_letters(p).await?
    } else {
        dead_before
    };
    if dead_now > dead_before {
        return Ok(Some(anyhow::anyhow!(
            "{} message(s) were dead-lettered after their retries (see the errors above); \
             fix the cause, then `hubsync replay` and `hubsync run` again to finish the active runs",
            dead_now - dead_before
        )));
    }
    if timeout.is_some_and(|t| started.elapsed() > t) {
        return Ok(Some(anyhow::anyhow!(
            "timed out; the runs stay active and resume on the next `hubsync run`"
        )));
    }
    Ok(None)
}

/// Deletes the staged files of runs that are over: a copy of a page that lost (S1) and died
/// before deleting its files, after its run's commit swept staging, leaves them there.
async fn sweep_staging(p: &Pipeline, tables: &[String]) -> anyhow::Result<()> {
    for table in tables {
        let dir = p.lake.staging_table_dir(table);
        let listing = match p.lake.store().list_with_delimiter(Some(&dir)).await {
            Ok(l) => l,
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        for prefix in listing.common_prefixes {
            let Some(run_id) = prefix.filename().and_then(|f| f.strip_prefix("run=")) else {
                continue;
            };
            let over = p
                .ledger
                .get_run(run_id)
                .await?
                .is_none_or(|r| !r.status.is_active());
            if over {
                let n = p.lake.delete_dir(&p.lake.staging_run_dir(table, run_id)).await?;
                tracing::info!(
                    table,
                    run_id,
                    files = n,
                    "deleted staged files of a run that is over"
                );
            }
        }
    }
    Ok(())
}

async fn requests_drained(p: &Pipeline) -> anyhow::Result<bool> {
    let d = p.requests.depth().await?;
    Ok(d.visible + d.in_flight == 0)
}

async fn dead_letters(p: &Pipeline) -> anyhow::Result<u64> {
    Ok(p.requests.depth().await?.dead + p.pages.depth().await?.dead + p.merges.depth().await?.dead)
}

/// A queue, its handler and how many workers poll it.
type Role = (
    Arc<dyn common::ports::Queue>,
    Arc<dyn common::worker::Handler>,
    usize,
);

fn spawn_roles(
    p: &Pipeline,
    hubspot: &HubSpotClient,
    options: &RunOptions,
    shutdown: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let worker_options = WorkerOptions {
        wait: Duration::from_millis(200),
        visibility: p.settings.visibility_timeout,
        first_retry_delay: Duration::from_millis(200),
        max_retry_delay: p.settings.max_retry_delay,
        // The embedded queue's delete is a local statement: nothing to wait for.
        ack_linger: Duration::ZERO,
    };
    let roles: Vec<Role> = vec![
        (
            p.requests.clone(),
            producer::RequestHandler::new(p.clone(), hubspot.clone()),
            1,
        ),
        (
            p.pages.clone(),
            consumer::PageJobHandler::new(p.clone(), hubspot.clone()),
            options.consumers,
        ),
        (
            p.merges.clone(),
            merger::MergeTaskHandler::new(p.clone()),
            options.mergers,
        ),
    ];
    roles
        .into_iter()
        .map(|(queue, handler, n)| {
            tokio::spawn(run_workers(
                queue,
                handler,
                worker_options.clone(),
                n,
                shutdown.clone(),
            ))
        })
        .collect()
}
