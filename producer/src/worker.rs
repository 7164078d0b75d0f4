//! The producer's request handler and service loop.

use std::sync::Arc;

use async_trait::async_trait;
use common::failpoint;
use common::messages::{self, Body, PageJob, SyncRequest};
use common::pipeline::Pipeline;
use common::ports::ledger::BeginRun;
use common::ports::{Outgoing, Run, RunStatus};
use common::worker::{Failure, Handled, Handler};
use hubspot::HubSpotClient;

use crate::decide::decide;
use crate::plan::{plan, PlanOptions};
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
    let table = p.catalog.table(&request.table)?;
    let run_id = run_id_for(request);
    let now = p.now_ms();
    let run = match p.ledger.get_run(&run_id).await? {
        Some(existing) => existing,
        None => {
            let decision = decide(p, &table.name, request.mode, now).await;
            let run = Run {
                run_id: run_id.clone(),
                table: table.name.clone(),
                request_id: request.request_id.clone(),
                mode: decision.mode,
                window_from_ms: decision.window_from_ms,
                window_to_ms: decision.window_to_ms,
                status: RunStatus::Planning,
                lease_until_ms: now + p.settings.lease_ms,
                started_at_ms: now,
                updated_at_ms: now,
                ..Default::default()
            };
            match p.ledger.begin_run(&run, now).await? {
                BeginRun::Started(r) => {
                    failpoint::hit(failpoint::PRODUCER_AFTER_BEGIN_RUN);
                    r
                }
                BeginRun::Existing(r) => r,
                BeginRun::Refused(active) => {
                    tracing::warn!(
                        table = %table.name,
                        active_run = %active.run_id,
                        status = active.status.as_str(),
                        "sync refused: a run of this table is already active; wait for it to commit \
                         (or for its lease to expire) and request again"
                    );
                    return Ok(RequestOutcome::Refused {
                        active_run_id: active.run_id,
                        status: active.status,
                    });
                }
            }
        }
    };
    if !run.status.is_active() {
        return Ok(RequestOutcome::AlreadyFinished { run_id });
    }
    if run.status == RunStatus::Planning {
        let decision = crate::decide::Decision {
            mode: run.mode,
            window_from_ms: run.window_from_ms,
            window_to_ms: run.window_to_ms,
        };
        let slices = plan(hubspot, table, &decision, PlanOptions::from_settings(&p.settings)).await?;
        // Record the plan before sending anything: a redelivery reuses it.
        let started = p
            .ledger
            .start_fetching(&run_id, &slices, p.settings.slices_in_flight, p.now_ms())
            .await?;
        if started {
            failpoint::hit(failpoint::PRODUCER_AFTER_PLAN);
        }
    }
    // The run as recorded: a redelivered request, or a concurrent one, sends the same slices.
    let run = p
        .ledger
        .get_run(&run_id)
        .await?
        .ok_or_else(|| common::ports::LedgerError::UnknownRun(run_id.clone()))?;
    // Page 0 of the slices started so far (L5); each finished slice starts the next.
    let first_pages: Vec<Outgoing> = p
        .ledger
        .slices(&run_id, run.slices_started)
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
    tracing::info!(run_id = %run_id, table = %table.name, mode = run.mode.as_str(), slices = run.slices,
        started = run.slices_started, "run planned");
    Ok(RequestOutcome::Started {
        run_id,
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
