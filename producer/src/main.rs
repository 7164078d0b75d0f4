//! The `producer` service: turns sync requests from the requests queue into runs and page jobs.
//! Configured from flags or their environment twins (`--help`); JSON logs; stops on SIGTERM
//! after the request in hand.

use clap::Parser;
use common::worker::run_workers;
use hubsync_producer::config::ProducerConfig;
use service::{init_json_logs, shutdown_on_signals, HubSpotArgs, ServiceArgs, Telemetry};

/// mimalloc, as in the `hubsync` binary (see there): a 1M-record backfill ran 11 % faster.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns sync requests into runs: decides full or incremental, plans slices, sends page jobs.
#[derive(Debug, Parser)]
#[command(name = "producer", version)]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
    #[command(flatten)]
    hubspot: HubSpotArgs,
    #[command(flatten)]
    producer: ProducerConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_json_logs();
    let shutdown = shutdown_on_signals();
    let telemetry = Telemetry::start("producer", &args.service.metrics, shutdown.clone()).await?;
    let settings = args.producer.apply(args.service.settings())?;
    let p = args.service.pipeline(settings).await?;
    let client = args.hubspot.client()?;
    tracing::info!(lake = %p.lake.uri(), queue = p.requests.name(), "producer started");
    // R5: planning counts through search, on the schedule the consumers fetch by. R6: its
    // general requests (property definitions) keep to the part the consumers leave it.
    hubspot::share_search_schedule(&client, &p);
    client.budget().general.keep_to_planning_part();
    // The alarms' inputs: time since each table's last commit, runs past their lease.
    let watch_every = std::time::Duration::from_secs(args.service.metrics.emf_interval_secs.clamp(1, 60));
    service::watch_commits(p.clone(), watch_every, shutdown.clone());
    let handler = hubsync_producer::RequestHandler::new(p.clone(), client);
    run_workers(
        p.requests.clone(),
        handler,
        args.service.worker_options(),
        1,
        shutdown,
    )
    .await;
    telemetry.finish();
    tracing::info!("producer stopped");
    Ok(())
}
