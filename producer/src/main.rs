//! The `producer` service: turns sync requests from the requests queue into runs and page jobs.
//! Configured from flags or their environment twins (`--help`); JSON logs; stops on SIGTERM
//! after the request in hand.

use clap::Parser;
use common::service::{init_json_logs, shutdown_on_signals, ServiceArgs};
use common::worker::run_workers;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = ServiceArgs::parse();
    init_json_logs();
    let p = args.pipeline().await?;
    tracing::info!(lake = %p.lake.uri(), queue = p.requests.name(), "producer started");
    // R5: planning counts through search, on the schedule the consumers fetch by.
    p.share_search_schedule();
    let handler = hubsync_producer::RequestHandler::new(p.clone());
    run_workers(
        p.requests.clone(),
        handler,
        args.worker_options(),
        1,
        shutdown_on_signals(),
    )
    .await;
    tracing::info!("producer stopped");
    Ok(())
}
