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
    let handler = hubsync_consumer::PageJobHandler::new(p.clone());
    run_workers(
        p.pages.clone(),
        handler,
        args.worker_options(),
        args.concurrency,
        shutdown_on_signals(),
    )
    .await;
    tracing::info!("consumer stopped");
    Ok(())
}
