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

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;
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
    /// Given back to the queue unhandled, visible again at once: it was received in a batch
    /// behind a message of its FIFO group that did not succeed (handling it would break the
    /// group's order), or the workers shut down before its turn.
    Released,
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
    /// How long [`run_workers`] holds a finished message's delete to send it with others in
    /// one batch request (SQS's DeleteMessageBatch, 10 at most). Zero sends whatever is
    /// waiting at once, batching only acks that pile up behind one in flight.
    pub ack_linger: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            wait: Duration::from_secs(1),
            visibility: Duration::from_secs(120),
            first_retry_delay: Duration::from_millis(500),
            max_retry_delay: Duration::from_secs(30),
            ack_linger: Duration::ZERO,
        }
    }
}

/// SQS's batch limit, for receives and deletes.
const BATCH: usize = 10;

/// Receives at most one message and handles it.
pub async fn process_one(
    queue: &dyn Queue,
    handler: &dyn Handler,
    options: &WorkerOptions,
) -> Result<StepOutcome, QueueError> {
    let Some(msg) = queue.receive(1, options.wait).await?.into_iter().next() else {
        return Ok(StepOutcome::EmptyQueue);
    };
    handle_received(
        queue,
        handler,
        options,
        Turn {
            msg,
            received_at: Instant::now(),
        },
        std::future::ready(Some(())),
        &Acks::Direct,
    )
    .await
}

/// A message in hand, and when its visibility started: when the receive that returned it
/// answered. Not when it was asked: a long poll may wait seconds before a message comes, and
/// the message's visibility starts only then (its answer's latency later is the heartbeat's
/// margin: a renewal every third of the visibility).
struct Turn {
    msg: Received,
    received_at: Instant,
}

async fn handle_received<P>(
    queue: &dyn Queue,
    handler: &dyn Handler,
    options: &WorkerOptions,
    turn: Turn,
    gate: impl Future<Output = Option<P>>,
    acks: &Acks,
) -> Result<StepOutcome, QueueError> {
    let outcome = settle(queue, handler, options, turn, gate, acks).await?;
    let label = match &outcome {
        StepOutcome::EmptyQueue => return Ok(outcome),
        StepOutcome::Handled(Handled::Done(_)) => "done",
        StepOutcome::Handled(Handled::Dropped(_)) => "dropped",
        StepOutcome::Failed { .. } => "retried",
        StepOutcome::DeadLettered { .. } => "dead_letter",
        StepOutcome::Lost => "lost",
        StepOutcome::Released => "released",
    };
    metrics::counter!(crate::metrics::MESSAGES, "queue" => queue.name().to_string(), "outcome" => label)
        .increment(1);
    Ok(outcome)
}

/// Handles one message and settles it on its queue: acked, retried later or dead-lettered.
/// The handler runs once `gate` yields its turn (a worker's permit, held while the handler
/// runs and given up before the ack); `None` from the gate releases the message unhandled.
/// The heartbeat covers the wait for the gate as well as the handler.
async fn settle<P>(
    queue: &dyn Queue,
    handler: &dyn Handler,
    options: &WorkerOptions,
    Turn { msg, received_at }: Turn,
    gate: impl Future<Output = Option<P>>,
    acks: &Acks,
) -> Result<StepOutcome, QueueError> {
    tracing::debug!(queue = queue.name(), message_id = %msg.message_id,
        receive_count = msg.receive_count, "received");
    let work = async {
        let permit = gate.await?;
        Some((handler.handle(&msg.body).await, permit))
    };
    let Some(worked) = work_with_heartbeat(queue, options, &msg, received_at, work).await else {
        return Ok(StepOutcome::Lost);
    };
    let Some((result, permit)) = worked else {
        tracing::debug!(queue = queue.name(), message_id = %msg.message_id, "released unhandled");
        if let Err(e) = queue.set_visibility(&msg.receipt, Duration::ZERO).await {
            // It reappears when its visibility runs out instead.
            tracing::warn!(queue = queue.name(), error = %e, "could not release a message");
        }
        return Ok(StepOutcome::Released);
    };
    // The handler's turn is over; the ack below no longer holds a worker.
    drop(permit);
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
            if let Err(e) = acks.ack(queue, &msg.receipt).await {
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
            if let Err(e) = acks.ack(queue, &msg.receipt).await {
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

/// Runs `work` while renewing the message's visibility every third of it, counted from
/// `received_at`; `None` when the visibility was lost and the work cancelled (W1).
async fn work_with_heartbeat<T>(
    queue: &dyn Queue,
    options: &WorkerOptions,
    msg: &Received,
    received_at: Instant,
    work: impl Future<Output = T>,
) -> Option<T> {
    let beat = options.visibility / 3;
    tokio::pin!(work);
    // When the last renewal was granted. Counted from its answer, not its request: a slow
    // queue (an emulator at full load) must not make healthy work look stalled, and a stall
    // that matters (a frozen process) lasts far longer than any answer.
    let mut renewed_at = received_at;
    let mut next_beat = received_at + beat;
    loop {
        tokio::select! {
            r = &mut work => return Some(r),
            _ = tokio::time::sleep_until(next_beat) => {
                let asked = Instant::now();
                next_beat = asked + beat;
                if asked.duration_since(renewed_at) >= options.visibility {
                    tracing::warn!(queue = queue.name(), message_id = %msg.message_id,
                        unrenewed_ms = asked.duration_since(renewed_at).as_millis() as u64,
                        "the message's visibility lapsed while in hand (the process stalled?); \
                         another worker may hold it: its handler is cancelled");
                    return None;
                }
                match queue.set_visibility(&msg.receipt, options.visibility).await {
                    Ok(()) => {
                        renewed_at = Instant::now();
                        tracing::debug!(queue = queue.name(), message_id = %msg.message_id,
                            in_hand_ms = received_at.elapsed().as_millis() as u64, "still working; visibility renewed");
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

/// Where acks go: straight to the queue, one request each, or to [`batch_acks`].
#[derive(Clone)]
enum Acks {
    Direct,
    Batched(mpsc::UnboundedSender<PendingAck>),
}

type PendingAck = (String, oneshot::Sender<Result<(), QueueError>>);

impl Acks {
    async fn ack(&self, queue: &dyn Queue, receipt: &str) -> Result<(), QueueError> {
        let Acks::Batched(pending) = self else {
            return queue.ack(receipt).await;
        };
        let (answer, answered) = oneshot::channel();
        if pending.send((receipt.to_string(), answer)).is_err() {
            return queue.ack(receipt).await;
        }
        answered.await.unwrap_or_else(|_| {
            Err(QueueError::Backend {
                queue: queue.name().to_string(),
                message: "the ack batcher stopped before answering".into(),
            })
        })
    }
}

/// Sends acks in batches of up to ten ([`Queue::ack_many`]), one batch in flight at a time:
/// the acks that arrive while one is in flight, or within `linger` of a batch's first, go
/// together. Ends once every sender is gone and what they sent is sent.
async fn batch_acks(
    queue: Arc<dyn Queue>,
    mut pending: mpsc::UnboundedReceiver<PendingAck>,
    linger: Duration,
) {
    while let Some(first) = pending.recv().await {
        let until = Instant::now() + linger;
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match pending.try_recv() {
                Ok(p) => batch.push(p),
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) if linger.is_zero() => break,
                Err(TryRecvError::Empty) => match tokio::time::timeout_at(until, pending.recv()).await {
                    Ok(Some(p)) => batch.push(p),
                    _ => break,
                },
            }
        }
        let receipts: Vec<String> = batch.iter().map(|(r, _)| r.clone()).collect();
        let results = queue.ack_many(&receipts).await;
        // A missing result drops its sender, which its waiter reads as an error.
        for ((_, answer), r) in batch.into_iter().zip(results) {
            let _ = answer.send(r);
        }
    }
}

/// Runs `concurrency` workers on `queue` until `shutdown` is cancelled.
///
/// One receiver feeds them, asking for up to `min(concurrency, 10)` messages at a time once
/// that many places are free among `concurrency + min(concurrency, 10)` messages in hand: the
/// next batch waits while the last is worked on, so a batch receive does not leave workers
/// idle, and an idle pool polls once per wait, not once per worker. A message's heartbeat
/// starts at its receive, so one waiting for a worker keeps its visibility too. Messages of
/// one FIFO group in a batch (SQS may return several) are handled one after another in
/// order; one that does not succeed releases those behind it, which the queue then delivers
/// after it again. Acks go out in batches ([`WorkerOptions::ack_linger`]).
///
/// Shutdown is checked only between messages: a handler that started is finished, one
/// still waiting for a worker is released, and every task and ack is awaited.
pub async fn run_workers(
    queue: Arc<dyn Queue>,
    handler: Arc<dyn Handler>,
    options: WorkerOptions,
    concurrency: usize,
    shutdown: CancellationToken,
) {
    let concurrency = concurrency.max(1);
    let batch = concurrency.min(BATCH);
    let in_hand = Arc::new(Semaphore::new(concurrency + batch));
    let workers = Arc::new(Semaphore::new(concurrency));
    let (ack_tx, ack_rx) = mpsc::unbounded_channel();
    let batcher = tokio::spawn(batch_acks(queue.clone(), ack_rx, options.ack_linger));
    let acks = Acks::Batched(ack_tx);
    let tracker = tokio_util::task::TaskTracker::new();
    loop {
        let mut places = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = in_hand.clone().acquire_many_owned(batch as u32) => p.expect("the semaphore is never closed"),
        };
        let received = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = queue.receive(batch, options.wait) => r,
        };
        let received_at = Instant::now();
        let msgs = match received {
            Ok(msgs) => msgs,
            Err(e) => {
                tracing::error!(queue = queue.name(), error = %e, "receive failed; backing off");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
        };
        // The handoff from each group's previous message in this batch: true once it succeeded.
        let mut behind: HashMap<String, oneshot::Receiver<bool>> = HashMap::new();
        for msg in msgs {
            let place = places.split(1);
            let ahead = msg.group_id.as_ref().and_then(|g| behind.remove(g));
            let (done, handoff) = oneshot::channel();
            if let Some(g) = &msg.group_id {
                behind.insert(g.clone(), handoff);
            }
            let (queue, handler, options, workers, shutdown, acks) = (
                queue.clone(),
                handler.clone(),
                options.clone(),
                workers.clone(),
                shutdown.clone(),
                acks.clone(),
            );
            tracker.spawn(async move {
                let gate = async {
                    if let Some(ahead) = ahead {
                        if !ahead.await.unwrap_or(false) {
                            return None;
                        }
                    }
                    tokio::select! {
                        biased;
                        p = workers.acquire_owned() => p.ok(),
                        _ = shutdown.cancelled() => None,
                    }
                };
                let turn = Turn { msg, received_at };
                let outcome =
                    handle_received(queue.as_ref(), handler.as_ref(), &options, turn, gate, &acks).await;
                let _ = done.send(matches!(outcome, Ok(StepOutcome::Handled(_))));
                drop(place);
            });
        }
    }
    tracker.close();
    tracker.wait().await;
    drop(acks);
    let _ = batcher.await;
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

    use crate::ports::queue::{Outgoing, QueueDepth};
    use std::collections::VecDeque;
    use std::sync::Mutex;

    /// A queue that hands out scripted batches, one per receive, and logs what is done to
    /// the messages: `ack <body>`, `batch <n>` (one `ack_many` of n), `visible <body> <ms>`.
    #[derive(Default)]
    struct Scripted {
        batches: Mutex<VecDeque<Vec<Received>>>,
        log: Mutex<Vec<String>>,
        /// How long a receive polls before a scripted batch comes.
        poll: Duration,
    }

    impl Scripted {
        fn new(batches: Vec<Vec<(&str, Option<&str>)>>) -> Arc<Self> {
            let batches = batches
                .into_iter()
                .map(|b| {
                    b.into_iter()
                        .map(|(body, group)| Received {
                            body: body.into(),
                            receipt: body.into(),
                            receive_count: 1,
                            message_id: body.into(),
                            group_id: group.map(str::to_string),
                        })
                        .collect()
                })
                .collect();
            Arc::new(Scripted {
                batches: Mutex::new(batches),
                log: Mutex::default(),
                poll: Duration::ZERO,
            })
        }
        fn log(&self) -> Vec<String> {
            self.log.lock().unwrap().clone()
        }
        fn note(&self, line: String) {
            self.log.lock().unwrap().push(line);
        }
    }

    #[async_trait]
    impl Queue for Scripted {
        fn name(&self) -> &str {
            "scripted"
        }
        async fn send(&self, _: Vec<Outgoing>) -> Result<(), QueueError> {
            Ok(())
        }
        async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Received>, QueueError> {
            let next = self.batches.lock().unwrap().pop_front();
            match next {
                Some(batch) => {
                    tokio::time::sleep(self.poll).await;
                    assert!(batch.len() <= max, "the script gives more than was asked for");
                    Ok(batch)
                }
                None => {
                    tokio::time::sleep(wait).await;
                    Ok(vec![])
                }
            }
        }
        async fn ack(&self, receipt: &str) -> Result<(), QueueError> {
            self.note(format!("ack {receipt}"));
            Ok(())
        }
        async fn ack_many(&self, receipts: &[String]) -> Vec<Result<(), QueueError>> {
            self.note(format!("batch {}", receipts.len()));
            let mut results = Vec::new();
            for r in receipts {
                results.push(self.ack(r).await);
            }
            results
        }
        async fn set_visibility(&self, receipt: &str, visibility: Duration) -> Result<(), QueueError> {
            self.note(format!("visible {receipt} {}", visibility.as_millis()));
            Ok(())
        }
        async fn dead_letter(&self, _: &Received, _: &str) -> Result<(), QueueError> {
            Ok(())
        }
        async fn depth(&self) -> Result<QueueDepth, QueueError> {
            Ok(QueueDepth::default())
        }
        async fn replay_dead_letters(&self, _: Option<usize>, _: bool) -> Result<Vec<String>, QueueError> {
            Ok(vec![])
        }
    }

    /// Handles `fail…` with a retryable failure, `slow…` after five seconds, anything else at
    /// once; logs `start <body>` and `end <body>` on the queue's log.
    struct Scripts(Arc<Scripted>);

    #[async_trait]
    impl Handler for Scripts {
        async fn handle(&self, body: &str) -> Result<Handled, Failure> {
            self.0.note(format!("start {body}"));
            if body.starts_with("slow") {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            self.0.note(format!("end {body}"));
            if body.starts_with("fail") {
                return Err(Failure::retry("scripted failure"));
            }
            Ok(Handled::Done(body.into()))
        }
    }

    /// Runs the workers until `done` holds for the log (ten virtual minutes at most).
    async fn run_until(
        queue: Arc<Scripted>,
        concurrency: usize,
        options: WorkerOptions,
        done: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        let shutdown = CancellationToken::new();
        let workers = tokio::spawn(run_workers(
            queue.clone(),
            Arc::new(Scripts(queue.clone())),
            options,
            concurrency,
            shutdown.clone(),
        ));
        for _ in 0..6_000 {
            if done(&queue.log()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        shutdown.cancel();
        workers.await.unwrap();
        queue.log()
    }

    fn count(log: &[String], prefix: &str) -> usize {
        log.iter().filter(|l| l.starts_with(prefix)).count()
    }

    /// Where `line` is in the log (it must be there).
    fn at(log: &[String], line: &str) -> usize {
        log.iter()
            .position(|l| l == line)
            .unwrap_or_else(|| panic!("no `{line}` in {log:?}"))
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_is_handled_once_each_and_its_acks_go_in_one_request() {
        let bodies = ["a", "b", "c", "d", "e"];
        let queue = Scripted::new(vec![bodies.iter().map(|b| (*b, None)).collect()]);
        let options = WorkerOptions {
            ack_linger: Duration::from_millis(50),
            ..Default::default()
        };
        let log = run_until(queue, 8, options, |l| count(l, "ack ") == 5).await;
        for b in bodies {
            assert_eq!(count(&log, &format!("start {b}")), 1, "{log:?}");
            assert_eq!(count(&log, &format!("ack {b}")), 1, "{log:?}");
        }
        assert_eq!(
            log.iter().filter(|l| l.starts_with("batch")).collect::<Vec<_>>(),
            ["batch 5"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn messages_of_one_group_in_a_batch_are_handled_in_their_order() {
        let queue = Scripted::new(vec![vec![
            ("slow-1", Some("g")),
            ("2", Some("g")),
            ("3", Some("h")),
        ]]);
        let log = run_until(queue, 4, WorkerOptions::default(), |l| count(l, "ack ") == 3).await;
        assert!(at(&log, "end slow-1") < at(&log, "start 2"), "{log:?}");
        // Another group does not wait.
        assert!(at(&log, "end 3") < at(&log, "end slow-1"), "{log:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_releases_the_messages_behind_it_in_its_group() {
        let queue = Scripted::new(vec![vec![
            ("fail-1", Some("g")),
            ("2", Some("g")),
            ("3", Some("g")),
            ("4", Some("h")),
        ]]);
        let log = run_until(queue, 4, WorkerOptions::default(), |l| {
            count(l, "ack 4") == 1 && count(l, "visible 3 0") == 1
        })
        .await;
        // The failure is retried later; those behind it are given back unhandled, at once,
        // so the queue delivers them after it again; the other group is done.
        assert_eq!(count(&log, "visible fail-1 500"), 1, "{log:?}");
        assert_eq!(count(&log, "visible 2 0"), 1, "{log:?}");
        assert_eq!(count(&log, "start 2"), 0, "{log:?}");
        assert_eq!(count(&log, "start 3"), 0, "{log:?}");
        assert_eq!(count(&log, "ack "), 1, "{log:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_waiting_for_a_worker_keeps_its_visibility() {
        // One worker: the second message is received while the first (five seconds) is
        // worked on, and waits longer than its three seconds of visibility.
        let queue = Scripted::new(vec![vec![("slow-1", None)], vec![("2", None)]]);
        let options = WorkerOptions {
            visibility: Duration::from_secs(3),
            ..Default::default()
        };
        let log = run_until(queue, 1, options, |l| count(l, "ack ") == 2).await;
        assert!(at(&log, "visible 2 3000") < at(&log, "start 2"), "{log:?}");
        assert!(at(&log, "end slow-1") < at(&log, "start 2"), "{log:?}");
        assert_eq!(count(&log, "ack 2"), 1, "{log:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_that_ends_a_long_poll_is_not_taken_for_lapsed() {
        // The poll waited longer than the visibility before the message came: its visibility
        // starts at the answer.
        let mut queue = Scripted::new(vec![vec![("slow-1", None)]]);
        Arc::get_mut(&mut queue).unwrap().poll = Duration::from_secs(8);
        let options = WorkerOptions {
            visibility: Duration::from_secs(3),
            wait: Duration::from_secs(10),
            ..Default::default()
        };
        let log = run_until(queue, 2, options, |l| count(l, "ack ") == 1).await;
        assert_eq!(count(&log, "ack slow-1"), 1, "{log:?}");
        assert!(
            count(&log, "visible slow-1 3000") >= 1,
            "renewed while worked on: {log:?}"
        );
    }
}
