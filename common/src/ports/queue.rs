//! A message queue with SQS semantics: at-least-once delivery, a visibility timeout, a receive
//! count, a dead-letter queue after `max_receive_count` receives, and (FIFO queues) message
//! groups whose messages are delivered one at a time, in order.

use std::time::Duration;

use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue `{queue}`: {message}")]
    Backend { queue: String, message: String },
    /// The receipt is no longer valid (the message was received again by someone else after
    /// its visibility expired, or already deleted).
    #[error("queue `{queue}`: receipt is stale; the message was redelivered or deleted")]
    StaleReceipt { queue: String },
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub body: String,
    /// FIFO message group (required on FIFO queues, ignored on standard ones).
    pub group_id: Option<String>,
    /// FIFO deduplication id: a second send with the same id within five minutes is dropped.
    pub dedup_id: Option<String>,
}

impl Outgoing {
    pub fn standard(body: String) -> Self {
        Outgoing {
            body,
            group_id: None,
            dedup_id: None,
        }
    }

    pub fn fifo(body: String, group_id: String, dedup_id: String) -> Self {
        Outgoing {
            body,
            group_id: Some(group_id),
            dedup_id: Some(dedup_id),
        }
    }
}

/// A received message; invisible to others until acked, released or its visibility expires.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: String,
    /// Opaque handle for ack / extend / release.
    pub receipt: String,
    /// How many times it has been received, this time included (1 on first delivery).
    pub receive_count: u32,
    pub message_id: String,
    /// Its FIFO message group (FIFO queues only).
    pub group_id: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    pub visible: u64,
    pub in_flight: u64,
    pub dead: u64,
}

#[async_trait]
pub trait Queue: Send + Sync {
    /// The queue's name, for logs.
    fn name(&self) -> &str;

    /// Sends messages (any number; adapters batch as their service requires). All or an error.
    async fn send(&self, messages: Vec<Outgoing>) -> Result<(), QueueError>;

    /// Up to `max` messages (1..=10), waiting up to `wait` for the first (long polling). May
    /// return fewer, or none. A message whose receive count would exceed the queue's
    /// `max_receive_count` is moved to the dead-letter queue instead of being returned.
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Received>, QueueError>;

    /// Deletes a message after its durable effect. Call only once the work is done.
    async fn ack(&self, receipt: &str) -> Result<(), QueueError>;

    /// Deletes several messages, in as few requests as the service allows (SQS's
    /// DeleteMessageBatch takes ten): one result per receipt, in order, each as [`Queue::ack`]
    /// would give it.
    async fn ack_many(&self, receipts: &[String]) -> Vec<Result<(), QueueError>> {
        let mut results = Vec::with_capacity(receipts.len());
        for receipt in receipts {
            results.push(self.ack(receipt).await);
        }
        results
    }

    /// Sets the remaining visibility of a message in hand: a heartbeat for long work
    /// (`Duration::ZERO` releases it for immediate redelivery). A receipt whose message was
    /// redelivered to someone else is [`QueueError::StaleReceipt`] where the service tells.
    async fn set_visibility(&self, receipt: &str, visibility: Duration) -> Result<(), QueueError>;

    /// Gives a message that failed back to the queue after `delay` (its receive counted): the
    /// message is no longer in hand.
    async fn retry_later(&self, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        self.set_visibility(receipt, delay).await
    }

    /// Moves a message in hand to the dead-letter queue now, without its remaining retries
    /// (a message no retry can fix: forged, or refused until an operator acts). `reason` is
    /// logged.
    async fn dead_letter(&self, message: &Received, reason: &str) -> Result<(), QueueError>;

    async fn depth(&self) -> Result<QueueDepth, QueueError>;

    /// Moves up to `max` dead-lettered messages back to the queue (all when `None`), oldest
    /// first, with a fresh receive count. With `dry_run` nothing moves. Returns their bodies.
    async fn replay_dead_letters(&self, max: Option<usize>, dry_run: bool)
        -> Result<Vec<String>, QueueError>;
}
