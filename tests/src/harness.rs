//! A simulator plus an embedded pipeline over a temporary lake.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use common::catalog::Catalog;
use common::clock;
use common::messages::RequestedMode;
use common::pipeline::{Pipeline, Settings};
use common::ports::{Outgoing, Queue, Run};
use common::worker::{process_one, Handled, Handler, StepOutcome, WorkerOptions};
use hubspot::{ClientConfig, HubSpotClient, RateBudget};
use infra::audit::{compare, expected_rows, read_lake_table, Diff, LakeTable};
use infra::runner::{run_embedded, RunOptions, RunReport};
use sim::{MutateRequest, MutateResponse, ObjectType, RuntimeConfig, SimConfig, SimServer};

/// Settings that keep tests fast: quick retries, few receives before dead-lettering.
pub fn fast_settings() -> Settings {
    Settings {
        max_receive_count: 3,
        max_retry_delay: Duration::from_millis(300),
        visibility_timeout: Duration::from_secs(30),
        ..Settings::default()
    }
}

/// A simulator config with limits off (tests of limits set them explicitly).
pub fn sim_config(records: u64, types: &[ObjectType]) -> SimConfig {
    SimConfig {
        records_per_type: records,
        object_types: if types.is_empty() {
            ObjectType::ALL.to_vec()
        } else {
            types.to_vec()
        },
        runtime: RuntimeConfig {
            rate_limit: 0,
            search_rate: 0,
            ..RuntimeConfig::default()
        },
        ..SimConfig::default()
    }
}

/// A pipeline with the HubSpot client its fetching roles are given beside it; derefs to the
/// pipeline, so `&wired` is a `&Pipeline`.
#[derive(Clone)]
pub struct Wired {
    pub pipeline: Pipeline,
    pub hubspot: HubSpotClient,
}

impl std::ops::Deref for Wired {
    type Target = Pipeline;
    fn deref(&self) -> &Pipeline {
        &self.pipeline
    }
}

impl std::ops::DerefMut for Wired {
    fn deref_mut(&mut self) -> &mut Pipeline {
        &mut self.pipeline
    }
}

pub struct Harness {
    pub sim: SimServer,
    pub dir: tempfile::TempDir,
    pub pipeline: Wired,
}

impl Harness {
    pub async fn start(config: SimConfig) -> anyhow::Result<Harness> {
        Harness::start_with(config, fast_settings()).await
    }

    pub async fn start_with(config: SimConfig, settings: Settings) -> anyhow::Result<Harness> {
        let sim = sim::start(config).await?;
        let dir = tempfile::tempdir()?;
        let pipeline = pipeline_for(&sim.base_url(), dir.path(), settings)?;
        Ok(Harness { sim, dir, pipeline })
    }

    pub fn lake_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// One sync of `tables` (all when empty) to the end.
    pub async fn sync(&self, tables: &[&str], mode: RequestedMode) -> anyhow::Result<Vec<RunReport>> {
        let options = RunOptions {
            tables: tables.iter().map(|t| t.to_string()).collect(),
            mode,
            consumers: 4,
            mergers: 2,
            timeout: Some(Duration::from_secs(240)),
            ..Default::default()
        };
        let reports = run_embedded(&self.pipeline, &self.pipeline.hubspot, &options).await?;
        for r in &reports {
            anyhow::ensure!(
                r.committed(),
                "run of {} did not commit: {:?}",
                r.table,
                r.problem
            );
        }
        Ok(reports)
    }

    pub async fn mutate(&self, req: MutateRequest) -> anyhow::Result<MutateResponse> {
        Ok(self.sim.mutate(&req).await?)
    }

    /// The lake's table and its differences from the simulator's truth.
    pub async fn diff(&self, table: &str) -> anyhow::Result<(LakeTable, Diff)> {
        diff_lake(&self.sim, &self.pipeline, table).await
    }

    /// Asserts every table of `tables` (all when empty) equals truth; returns rows compared.
    pub async fn assert_equals_truth(&self, tables: &[&str]) -> anyhow::Result<u64> {
        let names: Vec<String> = if tables.is_empty() {
            common::schema::all_tables(&self.pipeline.lake, &self.pipeline.catalog)
                .await?
                .into_iter()
                .map(|t| t.name)
                .collect()
        } else {
            tables.iter().map(|t| t.to_string()).collect()
        };
        let mut compared = 0;
        for t in names {
            let (lake, diff) = self.diff(&t).await?;
            anyhow::ensure!(diff.is_clean(), "{t}: {}", diff.summary());
            anyhow::ensure!(lake.row_count() == diff.rows_compared, "{t}: row count");
            compared += diff.rows_compared;
        }
        Ok(compared)
    }
}

pub fn pipeline_for(base_url: &str, lake: &std::path::Path, settings: Settings) -> anyhow::Result<Wired> {
    pipeline_with_clock(base_url, lake, settings, clock::system())
}

/// [`pipeline_for`] with an injected clock (leases are tested by moving it).
pub fn pipeline_with_clock(
    base_url: &str,
    lake: &std::path::Path,
    settings: Settings,
    clock: clock::SharedClock,
) -> anyhow::Result<Wired> {
    let hubspot = test_client(base_url)?;
    let pipeline = embedded::pipeline(lake, Catalog::default(), clock, settings)?;
    Ok(Wired { pipeline, hubspot })
}

/// [`test_client`] with a search limit (1,000 a second, far from binding): a full sync plans
/// a backfill on both read paths only where search is limited, as HubSpot's is.
pub fn search_limited_client(base_url: &str) -> anyhow::Result<HubSpotClient> {
    client_with(base_url, RateBudget::new(0, 1_000))
}

/// A client of the simulator at `base_url` with quick retries and no rate limit.
pub fn test_client(base_url: &str) -> anyhow::Result<HubSpotClient> {
    client_with(base_url, RateBudget::unlimited())
}

fn client_with(base_url: &str, budget: RateBudget) -> anyhow::Result<HubSpotClient> {
    Ok(HubSpotClient::new(
        ClientConfig {
            base_url: base_url.to_string(),
            max_retries: 4,
            min_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(500),
            ..Default::default()
        },
        budget,
    )?)
}

pub async fn diff_lake(sim: &SimServer, p: &Pipeline, table: &str) -> anyhow::Result<(LakeTable, Diff)> {
    let spec = &common::schema::table_spec(&p.lake, &p.catalog, table).await?;
    if let Some(kind) = spec.snapshot {
        let audit = infra::audit::audit_snapshot(&p.lake, &test_client(&sim.base_url())?, spec, kind).await?;
        let lake = LakeTable {
            rows: BTreeMap::new(),
            rows_per_dt: BTreeMap::from([(common::catalog::SNAPSHOT_DT.to_string(), audit.lake_rows)]),
            files: 0,
            duplicate_keys: Vec::new(),
            misplaced: Vec::new(),
            schema: common::schema::TableSchema::of_catalog(spec),
        };
        return Ok((lake, audit.diff));
    }
    if spec.is_links() {
        let lake = read_lake_table(&p.lake, spec).await.context("reading the lake")?;
        let expected = infra::audit::expected_links(&test_client(&sim.base_url())?, spec).await?;
        let diff = compare(&lake, &expected);
        return Ok((lake, diff));
    }
    let mut truth = BTreeMap::new();
    for s in &spec.sources {
        truth.insert(s.object_type.clone(), sim.truth(&s.object_type)?);
    }
    let lake = read_lake_table(&p.lake, spec).await.context("reading the lake")?;
    let diff = compare(&lake, &expected_rows(spec, &lake.schema, &truth)?);
    Ok((lake, diff))
}

/// The partitions a run's recorded pages staged into (L6: read back from their markers).
pub async fn touched(p: &Pipeline, run_id: &str) -> anyhow::Result<std::collections::BTreeSet<String>> {
    Ok(common::flow::run_partitions(p.ledger.as_ref(), run_id).await?)
}

/// A run's plan.
pub async fn plan(p: &Pipeline, run: &Run) -> anyhow::Result<Vec<common::messages::Slice>> {
    Ok(p.ledger.slices(&run.run_id, run.slices).await?)
}

/// The table's latest run in the ledger.
pub async fn latest_run(p: &Pipeline, table: &str) -> anyhow::Result<Run> {
    p.ledger
        .list_runs(Some(table), 1)
        .await?
        .pop()
        .ok_or_else(|| anyhow::anyhow!("{table} has no run"))
}

/// Live files per partition: `dt -> file names`.
pub async fn live_files(p: &Pipeline, table: &str) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let mut out = BTreeMap::new();
    for dt in p.lake.partitions(table).await? {
        let files = p
            .lake
            .list_parquet(&p.lake.partition_dir(table, &dt))
            .await?
            .into_iter()
            .filter_map(|m| m.location.filename().map(str::to_string))
            .collect();
        out.insert(dt, files);
    }
    Ok(out)
}

/// Polls `check` every 50 ms until it holds or `timeout` passes.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await? {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A state store whose writes fail (the seed: a failed state write warns, the run commits).
pub struct FailingWrites(pub Arc<dyn common::ports::StateStore>);

#[async_trait::async_trait]
impl common::ports::StateStore for FailingWrites {
    async fn get(&self, t: &str) -> Result<Option<common::ports::SyncState>, common::ports::StateError> {
        self.0.get(t).await
    }
    async fn list(&self) -> Result<Vec<common::ports::SyncState>, common::ports::StateError> {
        self.0.list().await
    }
    async fn put_forward(&self, _: &common::ports::SyncState) -> Result<bool, common::ports::StateError> {
        Err(common::ports::StateError("injected: DynamoDB unavailable".into()))
    }
    async fn delete(&self, t: &str) -> Result<(), common::ports::StateError> {
        self.0.delete(t).await
    }
    async fn delete_all(&self) -> Result<usize, common::ports::StateError> {
        self.0.delete_all().await
    }
}

/// Worker options for stepping roles in-process: short polls, quick retries.
pub fn step_options() -> WorkerOptions {
    WorkerOptions {
        wait: Duration::from_millis(20),
        visibility: Duration::from_secs(30),
        first_retry_delay: Duration::from_millis(10),
        max_retry_delay: Duration::from_millis(40),
        ack_linger: Duration::ZERO,
    }
}

/// What stepping the roles to empty queues saw.
#[derive(Debug, Default)]
pub struct Drained {
    /// Errors of failed attempts (each retried until dead-lettered).
    pub errors: Vec<String>,
    /// Reasons of messages dropped as stale.
    pub dropped: Vec<String>,
    /// Errors of messages dead-lettered at once (no retry could help).
    pub dead_lettered: Vec<String>,
}

/// Steps every role in-process until all queues are empty (failed messages are retried until
/// dead-lettered).
pub async fn drain(p: &Wired) -> anyhow::Result<Drained> {
    drain_with(p, None).await
}

/// [`drain`], sending `extra` to its queue after the first round (when the requests are in).
pub async fn drain_with(p: &Wired, mut extra: Option<(Arc<dyn Queue>, Outgoing)>) -> anyhow::Result<Drained> {
    let roles: Vec<(Arc<dyn Queue>, Arc<dyn Handler>)> = vec![
        (
            p.requests.clone(),
            producer::RequestHandler::new(p.pipeline.clone(), p.hubspot.clone()),
        ),
        (
            p.pages.clone(),
            consumer::PageJobHandler::new(p.pipeline.clone(), p.hubspot.clone()),
        ),
        (
            p.merges.clone(),
            merger::MergeTaskHandler::new(p.pipeline.clone()),
        ),
    ];
    let mut out = Drained::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let mut busy = false;
        for (q, handler) in &roles {
            match process_one(q.as_ref(), handler.as_ref(), &step_options()).await? {
                StepOutcome::EmptyQueue => {
                    let d = q.depth().await?;
                    busy |= d.visible + d.in_flight > 0;
                }
                StepOutcome::Failed { error, .. } => {
                    out.errors.push(error);
                    busy = true;
                }
                StepOutcome::DeadLettered { error } => {
                    out.errors.push(error.clone());
                    out.dead_lettered.push(error);
                    busy = true;
                }
                StepOutcome::Lost | StepOutcome::Released => busy = true,
                StepOutcome::Handled(Handled::Dropped(why)) => {
                    out.dropped.push(why);
                    busy = true;
                }
                StepOutcome::Handled(_) => busy = true,
            }
        }
        if let Some((q, message)) = extra.take() {
            q.send(vec![message]).await?;
            busy = true;
        }
        if !busy {
            break;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "queues did not drain");
    }
    Ok(out)
}
