//! The shape every queue worker shares: a loop that owns polling and back-off, and one public
//! step, [`process_one`], that tests drive. A message is acked only after its handler returned
//! (its durable effect is done); a failure leaves it on the queue to be retried after a delay
//! that grows with its receive count, and the queue dead-letters it after its retries.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::ports::queue::{Queue, QueueError, Received};

/// What a handler did with a message. Both acknowledge it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// The work is done (or was already done: a redelivery).
    Done(String),
    /// The message is stale (e.g. its run was abandoned) and is dropped, logged.
    Dropped(String),
}

#[async_trait]
pub trait Handler: Send + Sync {
    /// Handles one message body. `Err` means "not done": the message will be retried and,
    /// after the queue's maximum receive count, dead-lettered.
    async fn handle(&self, body: &str) -> Result<Handled, String>;
}

/// The outcome of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    EmptyQueue,
    Handled(Handled),
    Failed { error: String, receive_count: u32 },
}

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Long-poll wait of one receive.
    pub wait: Duration,
    /// Visibility of a message in hand; a heartbeat renews it every third of this.
    pub visibility: Duration,
    /// Retry delay after the first failure; doubles per receive, capped at `max_retry_delay`.
    pub first_retry_delay: Duration,
    pub max_retry_delay: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            wait: Duration::from_secs(1),
            visibility: Duration::from_secs(120),
            first_retry_delay: Duration::from_millis(500),
            max_retry_delay: Duration::from_secs(30),
        }
    }
}

/// Receives at most one message and handles it.
pub async fn process_one(
    queue: &dyn Queue,
    handler: &dyn Handler,
    options: &WorkerOptions,
) -> Result<StepOutcome, QueueError> {
    let Some(msg) = queue.receive(1, options.wait).await?.into_iter().next() else {
        return Ok(StepOutcome::EmptyQueue);
    };
    handle_received(queue, handler, options, msg).await
}

async fn handle_received(
    queue: &dyn Queue,
    handler: &dyn Handler,
    options: &WorkerOptions,
    msg: Received,
) -> Result<StepOutcome, QueueError> {
    tracing::debug!(queue = queue.name(), message_id = %msg.message_id,
        receive_count = msg.receive_count, "received");
    let result = {
        // Heartbeat: long work (a big merge) must not let the message reappear mid-way.
        let beat = options.visibility / 3;
        let work = handler.handle(&msg.body);
        tokio::pin!(work);
        let started = tokio::time::Instant::now();
        loop {
            tokio::select! {
                r = &mut work => break r,
                _ = tokio::time::sleep(beat) => {
                    tracing::debug!(queue = queue.name(), message_id = %msg.message_id,
                        in_hand_ms = started.elapsed().as_millis() as u64, "still working; visibility renewed");
                    if let Err(e) = queue.set_visibility(&msg.receipt, options.visibility).await {
                        tracing::warn!(queue = queue.name(), error = %e, "visibility heartbeat failed");
                    }
                }
            }
        }
    };
    match result {
        Ok(handled) => {
            match &handled {
                Handled::Done(what) => {
                    tracing::debug!(queue = queue.name(), message_id = %msg.message_id, %what, "done")
                }
                Handled::Dropped(why) => {
                    tracing::warn!(queue = queue.name(), reason = %why, "dropped stale message")
                }
            }
            if let Err(e) = queue.ack(&msg.receipt).await {
                // The work is done and idempotent; a redelivery will find its done-marker.
                tracing::warn!(queue = queue.name(), error = %e, "ack failed after the work was done");
            }
            Ok(StepOutcome::Handled(handled))
        }
        Err(error) => {
            let delay = retry_delay(options, msg.receive_count);
            tracing::error!(
                queue = queue.name(),
                message_id = %msg.message_id,
                receive_count = msg.receive_count,
                retry_in_ms = delay.as_millis() as u64,
                error = %error,
                "message failed; it will be retried and dead-lettered after its retries"
            );
            if let Err(e) = queue.set_visibility(&msg.receipt, delay).await {
                tracing::warn!(queue = queue.name(), error = %e, "could not schedule the retry");
            }
            Ok(StepOutcome::Failed {
                error,
                receive_count: msg.receive_count,
            })
        }
    }
}

fn retry_delay(options: &WorkerOptions, receive_count: u32) -> Duration {
    let factor = 2u32.saturating_pow(receive_count.saturating_sub(1).min(16));
    (options.first_retry_delay * factor).min(options.max_retry_delay)
}

/// Runs `concurrency` workers on `queue` until `shutdown` is cancelled. Shutdown is checked
/// only between messages, never mid-message; every worker is awaited.
pub async fn run_workers(
    queue: Arc<dyn Queue>,
    handler: Arc<dyn Handler>,
    options: WorkerOptions,
    concurrency: usize,
    shutdown: CancellationToken,
) {
    let tracker = tokio_util::task::TaskTracker::new();
    for _ in 0..concurrency.max(1) {
        let (queue, handler, options, shutdown) =
            (queue.clone(), handler.clone(), options.clone(), shutdown.clone());
        tracker.spawn(async move {
            while !shutdown.is_cancelled() {
                let step = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    r = queue.receive(1, options.wait) => r,
                };
                match step {
                    Ok(msgs) => {
                        for msg in msgs {
                            // Never abandon a message in hand: finish it even if shutting down.
                            let _ = handle_received(queue.as_ref(), handler.as_ref(), &options, msg).await;
                        }
                    }
                    Err(e) => {
                        tracing::error!(queue = queue.name(), error = %e, "receive failed; backing off");
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                }
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_and_cap() {
        let o = WorkerOptions {
            first_retry_delay: Duration::from_millis(100),
            max_retry_delay: Duration::from_millis(500),
            ..Default::default()
        };
        let d: Vec<u128> = (1..6).map(|n| retry_delay(&o, n).as_millis()).collect();
        assert_eq!(d, [100, 200, 400, 500, 500]);
    }
}
