//! One rate budget per HubSpot account across consumer processes: each process announces itself
//! in the ledger every [`HEARTBEAT`] and keeps `limit / members` of each window. A process that
//! dies stops beating and drops out after three beats; one that stops cleanly leaves at once.

use std::time::Duration;

use common::pipeline::Pipeline;
use hubspot::HubSpotClient;
use tokio_util::sync::CancellationToken;

pub const HEARTBEAT: Duration = Duration::from_secs(3);

/// A worker id unique across hosts and restarts.
pub fn worker_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into());
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    format!("consumer-{host}-{}-{}", std::process::id(), &nonce[..8])
}

/// Beats until `shutdown`, adjusting the client's budget to the members seen; then leaves.
pub async fn share_budget(p: Pipeline, hubspot: HubSpotClient, worker: String, shutdown: CancellationToken) {
    // R6: the producer plans from a part of the general window of its own.
    hubspot.budget().general.leave_planning_part();
    let mut members = 0;
    loop {
        let now = p.now_ms();
        let lapse = 3 * HEARTBEAT.as_millis() as i64;
        match p.ledger.heartbeat(&worker, now, now + lapse).await {
            Ok(n) if n != members => {
                members = n;
                let budget = hubspot.budget();
                budget.set_members(n);
                tracing::info!(
                    consumers = n,
                    general_per_10s = budget.general.share(),
                    search_per_s = budget.search.share(),
                    "rate budget shared among the account's consumers"
                );
            }
            Ok(_) => {}
            // Keep the last share: a missed beat must not let this process take the whole limit.
            Err(e) => {
                tracing::warn!(error = %e, "heartbeat failed; keeping the current share of the rate budget")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(HEARTBEAT) => {}
        }
    }
    if let Err(e) = p.ledger.leave(&worker).await {
        tracing::warn!(error = %e, "could not leave the rate budget; the others take the share when it lapses");
    }
}
