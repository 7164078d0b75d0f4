//! The `merger` service: merges staged pages into live partitions (one partition at a time
//! per FIFO message group) and commits runs. Configured from flags or their environment twins
//! (`--help`); JSON logs; stops on SIGTERM after the merges in hand.

use clap::Parser;
use common::service::{init_json_logs, shutdown_on_signals, ServiceArgs};
use common::worker::run_workers;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = ServiceArgs::parse();
    init_json_logs();
    let p = args.pipeline().await?;
    tracing::info!(lake = %p.lake.uri(), queue = p.merges.name(), concurrency = args.concurrency, "merger started");
    let handler = hubsync_merger::MergeTaskHandler::new(p.clone());
    run_workers(
        p.merges.clone(),
        handler,
        args.worker_options(),
        args.concurrency,
        shutdown_on_signals(),
    )
    .await;
    tracing::info!("merger stopped");
    Ok(())
}
