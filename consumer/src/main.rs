//! The `consumer` service: fetches HubSpot pages for page jobs and stages them in the lake.
//! Run as many as the rate limit allows; configured from flags or their environment twins
//! (`--help`); JSON logs; stops on SIGTERM after the jobs in hand.

use clap::Parser;
use common::service::{init_json_logs, shutdown_on_signals, ServiceArgs};
use common::worker::run_workers;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = ServiceArgs::parse();
    init_json_logs();
    let p = args.pipeline().await?;
    tracing::info!(lake = %p.lake.uri(), queue = p.pages.name(), concurrency = args.concurrency, "consumer started");
    // R5: every consumer of the account takes its search send times from one schedule in the
    // ledger; the general window is split into shares by the heartbeats below.
    p.share_search_schedule();
    let handler = hubsync_consumer::PageJobHandler::new(p.clone());
    let shutdown = shutdown_on_signals();
    let beat = tokio::spawn(hubsync_consumer::budget::share_budget(
        p.clone(),
        hubsync_consumer::budget::worker_id(),
        shutdown.clone(),
    ));
    run_workers(
        p.pages.clone(),
        handler,
        args.worker_options(),
        args.concurrency,
        shutdown,
    )
    .await;
    let _ = beat.await;
    tracing::info!("consumer stopped");
    Ok(())
}
