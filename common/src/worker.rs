//! The shape every queue worker shares: a loop that owns polling and back-off, and one public
//! step, [`process_one`], that tests drive. A message is acked only after its handler returned
//! (its durable effect is done). A failure says what to do with the message
//! ([`Disposition`]): retry it after a delay that grows with its receive count (the queue
//! dead-letters it after its retries), dead-letter it at once (no retry can help), or drop it.
//!
//! W1: a handler whose message's visibility lapsed (the process stalled past it: a GC or VM
//! pause, SIGSTOP) or whose renewal the queue refuses (the message went to another worker) is
//! cancelled, not left running beside the worker that now holds the message. The protocol's
//! fences make a handler that still slips a step through harmless; cancelling keeps it short.

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

/// What to do with a message its handler could not finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Another attempt may succeed (a timeout, a throttled store, a 5xx): retry after a
    /// back-off; the queue dead-letters it after its maximum receive count.
    Retry,
    /// No retry can succeed until someone acts (a forged or malformed message, a rejected
    /// token, a spent daily limit): dead-letter it now, to be replayed after the fix.
    DeadLetter,
    /// The message has nothing left to do (stale): acknowledge it, logged.
    Drop,
}

/// A handler's failure: what went wrong and what to do with the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub disposition: Disposition,
    pub message: String,
}

impl Failure {
    pub fn retry(message: impl Into<String>) -> Self {
        Failure {
            disposition: Disposition::Retry,
            message: message.into(),
        }
    }

    pub fn dead_letter(message: impl Into<String>) -> Self {
        Failure {
            disposition: Disposition::DeadLetter,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

#[async_trait]
pub trait Handler: Send + Sync {
    /// Handles one message body. `Err` means "not done", with what to do about it.
    async fn handle(&self, body: &str) -> Result<Handled, Failure>;
}

/// The outcome of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    EmptyQueue,
    Handled(Handled),
    Failed {
        error: String,
        receive_count: u32,
    },
    /// Moved to the dead-letter queue without its remaining retries.
    DeadLettered {
        error: String,
    },
    /// The message's visibility was lost while in hand (W1): its handler was cancelled and
    /// the message left to the worker that holds it now.
    Lost,
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
    let outcome = settle(queue, handler, options, msg).await?;
    let label = match &outcome {
        StepOutcome::EmptyQueue => return Ok(outcome),
        StepOutcome::Handled(Handled::Done(_)) => "done",
        StepOutcome::Handled(Handled::Dropped(_)) => "dropped",
        StepOutcome::Failed { .. } => "retried",
        StepOutcome::DeadLettered { .. } => "dead_letter",
        StepOutcome::Lost => "lost",
    };
    metrics::counter!(crate::metrics::MESSAGES, "queue" => queue.name().to_string(), "outcome" => label)
        .increment(1);
    Ok(outcome)
}

/// Handles one message and settles it on its queue: acked, retried later or dead-lettered.
async fn settle(
    queue: &dyn Queue,
    handler: &dyn Handler,
    options: &WorkerOptions,
    msg: Received,
) -> Result<StepOutcome, QueueError> {
    tracing::debug!(queue = queue.name(), message_id = %msg.message_id,
        receive_count = msg.receive_count, "received");
    let Some(result) = work_with_heartbeat(queue, handler, options, &msg).await else {
        return Ok(StepOutcome::Lost);
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
        Err(Failure {
            disposition: Disposition::Drop,
            message,
        }) => {
            tracing::warn!(queue = queue.name(), message_id = %msg.message_id, reason = %message, "dropped message");
            if let Err(e) = queue.ack(&msg.receipt).await {
                tracing::warn!(queue = queue.name(), error = %e, "ack of a dropped message failed");
            }
            Ok(StepOutcome::Handled(Handled::Dropped(message)))
        }
        Err(Failure {
            disposition: Disposition::DeadLetter,
            message,
        }) => {
            tracing::error!(
                queue = queue.name(),
                message_id = %msg.message_id,
                receive_count = msg.receive_count,
                error = %message,
                "message cannot succeed as it is; dead-lettered now (replay it after the fix)"
            );
            if let Err(e) = queue.dead_letter(&msg, &message).await {
                tracing::warn!(queue = queue.name(), error = %e,
                    "could not dead-letter the message; it is retried and dead-lettered after its retries");
                let _ = queue
                    .retry_later(&msg.receipt, retry_delay(options, msg.receive_count))
                    .await;
            }
            Ok(StepOutcome::DeadLettered { error: message })
        }
        Err(Failure { message: error, .. }) => {
            let delay = retry_delay(options, msg.receive_count);
            tracing::error!(
                queue = queue.name(),
                message_id = %msg.message_id,
                receive_count = msg.receive_count,
                retry_in_ms = delay.as_millis() as u64,
                error = %error,
                "message failed; it will be retried and dead-lettered after its retries"
            );
            if let Err(e) = queue.retry_later(&msg.receipt, delay).await {
                tracing::warn!(queue = queue.name(), error = %e, "could not schedule the retry");
            }
            Ok(StepOutcome::Failed {
                error,
                receive_count: msg.receive_count,
            })
        }
    }
}

/// Runs the handler while renewing the message's visibility every third of it; `None` when
/// the visibility was lost and the handler cancelled (W1).
async fn work_with_heartbeat(
    queue: &dyn Queue,
    handler: &dyn Handler,
    options: &WorkerOptions,
    msg: &Received,
) -> Option<Result<Handled, Failure>> {
    let beat = options.visibility / 3;
    let work = handler.handle(&msg.body);
    tokio::pin!(work);
    let started = tokio::time::Instant::now();
    // When the last renewal was granted. Counted from its answer, not its request: a slow
    // queue (an emulator at full load) must not make healthy work look stalled, and a stall
    // that matters (a frozen process) lasts far longer than any answer.
    let mut renewed_at = started;
    loop {
        tokio::select! {
            r = &mut work => return Some(r),
            _ = tokio::time::sleep(beat) => {
                let asked = tokio::time::Instant::now();
                if asked.duration_since(renewed_at) >= options.visibility {
                    tracing::warn!(queue = queue.name(), message_id = %msg.message_id,
                        unrenewed_ms = asked.duration_since(renewed_at).as_millis() as u64,
                        "the message's visibility lapsed while in hand (the process stalled?); \
                         another worker may hold it: its handler is cancelled");
                    return None;
                }
                match queue.set_visibility(&msg.receipt, options.visibility).await {
                    Ok(()) => {
                        renewed_at = tokio::time::Instant::now();
                        tracing::debug!(queue = queue.name(), message_id = %msg.message_id,
                            in_hand_ms = started.elapsed().as_millis() as u64, "still working; visibility renewed");
                    }
                    Err(QueueError::StaleReceipt { .. }) => {
                        tracing::warn!(queue = queue.name(), message_id = %msg.message_id,
                            "the queue refused to renew the message (it went to another worker): its handler is cancelled");
                        return None;
                    }
                    Err(e) => tracing::warn!(queue = queue.name(), error = %e, "visibility heartbeat failed"),
                }
            }
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
