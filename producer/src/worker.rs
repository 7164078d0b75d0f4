//! The producer's request handler and service loop.

use std::ops::ControlFlow;
use std::sync::Arc;

use async_trait::async_trait;
use common::catalog::TableSpec;
use common::clock::EpochMs;
use common::failpoint;
use common::messages::Slice;
use common::messages::{self, Body, PageJob, SyncRequest};
use common::pipeline::Pipeline;
use common::ports::ledger::BeginRun;
use common::ports::{Outgoing, Run, RunMode, RunStatus};
use common::schema;
use common::worker::{Failure, Handled, Handler};
use hubspot::HubSpotClient;

use crate::decide::{decide, Decision};
use crate::plan::{plan, Plan, PlanOptions};
use crate::ProducerError;

/// What became of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestOutcome {
    /// The run is fetching; page 0 of each slice was sent.
    Started { run_id: String, slices: usize },
    /// Another run of the table is active (L1); the request is refused, not retried.
    Refused {
        active_run_id: String,
        status: RunStatus,
    },
    /// The request's run already finished (a late redelivery).
    AlreadyFinished { run_id: String },
}

/// The run id of a request: deterministic, so a redelivered request continues its own run.
pub fn run_id_for(request: &SyncRequest) -> String {
    format!("{}-{}", request.table, request.request_id)
}

/// Handles one sync request: begins its run (or finds it), plans it through `hubspot`, records
/// the plan and sends page 0 of the slices it starts.
pub async fn handle_request(
    p: &Pipeline,
    hubspot: &HubSpotClient,
    request: &SyncRequest,
) -> Result<RequestOutcome, ProducerError> {
    let table = &resolve_table(p, hubspot, &request.table).await?;
    let run_id = run_id_for(request);
    let run = match begin_or_find_run(p, table, request, &run_id).await? {
        ControlFlow::Continue(run) => run,
        ControlFlow::Break(refused) => return Ok(refused),
    };
    if !run.status.is_active() {
        return Ok(RequestOutcome::AlreadyFinished { run_id });
    }
    if run.status == RunStatus::Planning {
        plan_and_record(p, hubspot, table, &run, &run_id).await?;
    }
    send_first_pages(p, &table.name, &run_id).await
}

/// The request's table: the catalog's or a recorded custom object's; a name neither knows is
/// looked for among the portal's custom objects (when the catalog discovers them) before the
/// request is refused.
async fn resolve_table(
    p: &Pipeline,
    hubspot: &HubSpotClient,
    name: &str,
) -> Result<TableSpec, ProducerError> {
    match schema::table_spec(&p.lake, &p.catalog, name).await {
        Err(unknown @ schema::SchemaError::UnknownTable(_)) if p.catalog.discovers_custom_objects() => {
            let schemas = match hubspot.schemas().await {
                Ok(schemas) => schemas,
                Err(e) if e.is_retryable() => return Err(e.into()),
                // A token without the custom objects scope: the name stays unknown (dead-lettered
                // at once, saying so), not retried for an answer that will not change.
                Err(e) => {
                    tracing::warn!(table = name, error = %e, "could not read the portal's custom objects");
                    return Err(unknown.into());
                }
            };
            schema::record_custom_tables(&p.lake, &p.catalog, &schemas, p.now_ms()).await?;
            Ok(schema::table_spec(&p.lake, &p.catalog, name).await?)
        }
        found => Ok(found?),
    }
}

/// The request's run, found under `run_id` or begun; or the refusal if another of the table is active (L1).
async fn begin_or_find_run(
    p: &Pipeline,
    table: &TableSpec,
    request: &SyncRequest,
    run_id: &str,
) -> Result<ControlFlow<RequestOutcome, Run>, ProducerError> {
    let now = p.now_ms();
    if let Some(existing) = p.ledger.get_run(run_id).await? {
        return Ok(ControlFlow::Continue(existing));
    }
    let run = new_run(p, &table.name, request, run_id, now).await;
    match p.ledger.begin_run(&run, now).await? {
        BeginRun::Started(r) => {
            failpoint::hit(failpoint::PRODUCER_AFTER_BEGIN_RUN);
            Ok(ControlFlow::Continue(r))
        }
        BeginRun::Existing(r) => Ok(ControlFlow::Continue(r)),
        BeginRun::Refused(active) => {
            tracing::warn!(
                table = %table.name,
                active_run = %active.run_id,
                status = active.status.as_str(),
                "sync refused: a run of this table is already active; wait for it to commit \
                 (or for its lease to expire) and request again"
            );
            Ok(ControlFlow::Break(RequestOutcome::Refused {
                active_run_id: active.run_id,
                status: active.status,
            }))
        }
    }
}

/// A new run of `table` in planning, with the mode and window `decide` chose at `now`.
async fn new_run(p: &Pipeline, table: &str, request: &SyncRequest, run_id: &str, now: EpochMs) -> Run {
    let decision = decide(p, table, request.mode, now).await;
    Run {
        run_id: run_id.to_string(),
        table: table.to_string(),
        request_id: request.request_id.clone(),
        mode: decision.mode,
        window_from_ms: decision.window_from_ms,
        window_to_ms: decision.window_to_ms,
        status: RunStatus::Planning,
        lease_until_ms: now + p.settings.lease_ms,
        started_at_ms: now,
        updated_at_ms: now,
        ..Default::default()
    }
}

/// Plans the slices of the run's recorded mode and window through `hubspot`; records them under `run_id`.
async fn plan_and_record(
    p: &Pipeline,
    hubspot: &HubSpotClient,
    table: &TableSpec,
    run: &Run,
    run_id: &str,
) -> Result<(), ProducerError> {
    let columns = discover_schema(p, hubspot, table, run_id).await?;
    let decision = Decision {
        mode: run.mode,
        window_from_ms: run.window_from_ms,
        window_to_ms: run.window_to_ms,
    };
    let Plan {
        mut slices,
        expected_records,
    } = match table.snapshot {
        Some(kind) => Plan {
            slices: vec![Slice::Snapshot {
                object_type: kind.name().to_string(),
            }],
            expected_records: None,
        },
        None => plan(hubspot, table, &decision, PlanOptions::from_settings(&p.settings)).await?,
    };
    // K2: an incremental run of a link table also reads again the links of records linked to
    // the window's merge survivors on its `to` side (a loser's links moved to its survivor).
    if let (RunMode::Incremental, Some(links), Some(from_ms)) = (run.mode, &table.links, run.window_from_ms) {
        if wire::merges_records(&links.to_object_type) {
            for source in &table.sources {
                slices.push(Slice::Merged {
                    object_type: source.object_type.clone(),
                    merged_type: links.to_object_type.clone(),
                    from_ms,
                    to_ms: run.window_to_ms,
                });
            }
        }
    }
    // E2: an incremental run also backfills the columns that appeared since the table's data
    // was written (a full run reads every column of every record anyway).
    if run.mode == RunMode::Incremental {
        let backfill = columns.backfill_columns();
        for source in &table.sources {
            if columns
                .columns
                .iter()
                .any(|c| backfill.contains(&c.name) && c.sources.contains(&source.object_type))
            {
                tracing::info!(table = %table.name, run_id, object_type = %source.object_type,
                    columns = ?backfill, "column backfill planned: a list walk of only these columns");
                slices.push(Slice::Backfill {
                    object_type: source.object_type.clone(),
                });
            }
        }
    }
    // Record the plan before sending anything: a redelivery reuses it.
    let started = p
        .ledger
        .start_fetching(
            run_id,
            &slices,
            expected_records,
            p.settings.slices_in_flight,
            p.now_ms(),
        )
        .await?;
    if started {
        failpoint::hit(failpoint::PRODUCER_AFTER_PLAN);
    }
    Ok(())
}

/// Reads the properties of the table's object types, evolves the table's recorded schema by
/// them (E1–E5, logging each change) and records the result as the run's schema, before any
/// page job of the run exists. A redelivered request evolves to the same schema.
async fn discover_schema(
    p: &Pipeline,
    hubspot: &HubSpotClient,
    table: &TableSpec,
    run_id: &str,
) -> Result<schema::TableSchema, ProducerError> {
    if table.snapshot.is_some() {
        // A snapshot's columns are fixed (`schema::snapshot`); it records none of its own.
        let fixed = schema::TableSchema {
            columns: Vec::new(),
            ..schema::TableSchema::of_catalog(table)
        };
        schema::save_for_run(&p.lake, run_id, &fixed).await?;
        return Ok(fixed);
    }
    if let Some(fixed) = schema::TableSchema::of_links(table) {
        // A link table's columns are the link's, whatever the portal's properties.
        if schema::load(&p.lake, &table.name).await?.is_none() {
            schema::save(&p.lake, &fixed).await?;
        }
        schema::save_for_run(&p.lake, run_id, &fixed).await?;
        return Ok(fixed);
    }
    let previous = schema::load(&p.lake, &table.name).await?;
    let mut discovered = Vec::with_capacity(table.sources.len());
    for source in &table.sources {
        match hubspot.properties(&source.object_type).await {
            Ok(found) => discovered.push(schema::Discovered {
                object_type: source.object_type.clone(),
                properties: found.results,
            }),
            // HubSpot is down or refusing for now: a table that has a schema syncs with the
            // columns it has (the next run picks up what changed); a first run must wait.
            Err(e) if e.is_retryable() && previous.is_some() => {
                let kept = previous.unwrap_or_else(|| schema::TableSchema::of_catalog(table));
                tracing::warn!(table = %table.name, run_id, error = %e,
                    "could not read the properties of {}; this run keeps the recorded schema (version {})",
                    source.object_type, kept.version);
                schema::save_for_run(&p.lake, run_id, &kept).await?;
                return Ok(kept);
            }
            Err(e) => return Err(e.into()),
        }
    }
    let evolved = schema::evolve(previous.as_ref(), table, &discovered, run_id, p.now_ms());
    for change in &evolved.changes {
        tracing::info!(table = %table.name, run_id, column = %change.column, "schema: {}", change.describe());
    }
    if !evolved.changes.is_empty() {
        schema::save(&p.lake, &evolved.schema).await?;
    }
    schema::save_for_run(&p.lake, run_id, &evolved.schema).await?;
    tracing::info!(table = %table.name, run_id, version = evolved.schema.version,
        columns = evolved.schema.columns.len(),
        fetched = evolved.schema.columns.iter().filter(|c| c.fetched).count(),
        backfill = ?evolved.schema.backfill_columns(), "run schema recorded");
    Ok(evolved.schema)
}

/// Sends page 0 of each slice the recorded run has started (L5).
async fn send_first_pages(p: &Pipeline, table: &str, run_id: &str) -> Result<RequestOutcome, ProducerError> {
    // The run as recorded: a redelivered request, or a concurrent one, sends the same slices.
    let run = p
        .ledger
        .get_run(run_id)
        .await?
        .ok_or_else(|| common::ports::LedgerError::UnknownRun(run_id.to_string()))?;
    // Page 0 of the slices started so far (L5); each finished slice starts the next.
    let first_pages: Vec<Outgoing> = p
        .ledger
        .slices(run_id, run.slices_started)
        .await?
        .into_iter()
        .enumerate()
        .map(|(i, slice)| {
            let job = PageJob::first_of(&run.run_id, &run.table, i as u32, slice);
            Outgoing::standard(messages::encode(&Body::PageJob(job)))
        })
        .collect();
    p.pages.send(first_pages).await?;
    failpoint::hit(failpoint::PRODUCER_AFTER_FIRST_PAGES);
    tracing::info!(run_id = %run_id, table = %table, mode = run.mode.as_str(), slices = run.slices,
        started = run.slices_started, "run planned");
    Ok(RequestOutcome::Started {
        run_id: run_id.to_string(),
        slices: run.slices as usize,
    })
}

/// Handles sync requests from the requests queue.
pub struct RequestHandler {
    pub pipeline: Pipeline,
    pub hubspot: HubSpotClient,
}

impl RequestHandler {
    pub fn new(pipeline: Pipeline, hubspot: HubSpotClient) -> Arc<Self> {
        Arc::new(RequestHandler { pipeline, hubspot })
    }
}

#[async_trait]
impl Handler for RequestHandler {
    async fn handle(&self, body: &str) -> Result<Handled, Failure> {
        let request = messages::decode_sync_request(body).map_err(|e| Failure::dead_letter(e.to_string()))?;
        match handle_request(&self.pipeline, &self.hubspot, &request).await {
            Ok(RequestOutcome::Started { run_id, slices }) => Ok(Handled::Done(format!(
                "run {run_id} started with {slices} slices"
            ))),
            Ok(RequestOutcome::Refused { active_run_id, .. }) => Ok(Handled::Dropped(format!(
                "refused: run {active_run_id} of table {} is active",
                request.table
            ))),
            Ok(RequestOutcome::AlreadyFinished { run_id }) => {
                Ok(Handled::Dropped(format!("run {run_id} already finished")))
            }
            Err(e) => Err(e.failure()),
        }
    }
}
