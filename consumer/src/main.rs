//! The `consumer` service: fetches HubSpot pages for page jobs and stages them in the lake.
//! Run as many as the rate limit allows; configured from flags or their environment twins
//! (`--help`); JSON logs; stops on SIGTERM after the jobs in hand.

use clap::Parser;
use common::worker::run_workers;
use hubsync_consumer::config::ConsumerConfig;
use service::{init_json_logs, shutdown_on_signals, HubSpotArgs, ServiceArgs, Telemetry};

/// mimalloc, as in the `hubsync` binary (see there): a 1M-record backfill ran 11 % faster.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Fetches one HubSpot page per page job and stages it as Parquet; as many as the limit allows.
#[derive(Debug, Parser)]
#[command(name = "consumer", version)]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
    #[command(flatten)]
    hubspot: HubSpotArgs,
    #[command(flatten)]
    consumer: ConsumerConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_json_logs();
    let shutdown = shutdown_on_signals();
    let telemetry = Telemetry::start("consumer", &args.service.metrics, shutdown.clone()).await?;
    let settings = args.consumer.apply(args.service.settings());
    let p = args.service.pipeline(settings).await?;
    let client = args.hubspot.client()?;
    let concurrency = args.service.concurrency;
    tracing::info!(lake = %p.lake.uri(), queue = p.pages.name(), concurrency, "consumer started");
    // R5: every consumer of the account takes its search send times from one schedule in the
    // ledger; the general window is split into shares by the heartbeats below.
    hubspot::share_search_schedule(&client, &p);
    let handler = hubsync_consumer::PageJobHandler::new(p.clone(), client.clone());
    let beat = tokio::spawn(hubsync_consumer::budget::share_budget(
        p.clone(),
        client,
        hubsync_consumer::budget::worker_id(),
        shutdown.clone(),
    ));
    run_workers(
        p.pages.clone(),
        handler,
        args.service.worker_options(),
        concurrency,
        shutdown,
    )
    .await;
    let _ = beat.await;
    telemetry.finish();
    tracing::info!("consumer stopped");
    Ok(())
}
