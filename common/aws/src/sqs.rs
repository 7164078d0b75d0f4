//! A [`Queue`] on SQS: long polling, batch send and receive, visibility changes, and a
//! dead-letter queue by redrive policy. Replay moves dead letters back itself (receive from the
//! DLQ, send to the queue, delete from the DLQ) because not every SQS-compatible service has
//! StartMessageMoveTask.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};

use crate::AwsError;
use common::ports::queue::{Outgoing, Queue, QueueDepth, QueueError, Received};

/// SQS's batch limit.
const BATCH: usize = 10;

#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    name: String,
    url: String,
    dlq_url: String,
    fifo: bool,
    /// Receives before the redrive policy moves a message (for logs; SQS applies it).
    pub max_receive_count: u32,
    /// Visibility of a received message; `None` leaves the queue's default. A message held by a
    /// killed worker reappears after this.
    visibility: Option<Duration>,
}

impl SqsQueue {
    /// Resolves the queue and its DLQ by name.
    pub async fn connect(
        client: aws_sdk_sqs::Client,
        name: &str,
        dlq: &str,
        max_receive_count: u32,
    ) -> Result<Self, AwsError> {
        let url = |n: &str| {
            let client = client.clone();
            let n = n.to_string();
            async move {
                client
                    .get_queue_url()
                    .queue_name(&n)
                    .send()
                    .await
                    .map_err(|e| {
                        AwsError(format!(
                            "queue `{n}` not found ({}); create the resources with `hubsync infra up`",
                            DisplayErrorContext(&e)
                        ))
                    })?
                    .queue_url()
                    .map(str::to_string)
                    .ok_or_else(|| AwsError(format!("queue `{n}` has no URL")))
            }
        };
        Ok(SqsQueue {
            url: url(name).await?,
            dlq_url: url(dlq).await?,
            client,
            name: name.into(),
            fifo: name.ends_with(".fifo"),
            max_receive_count,
            visibility: None,
        })
    }

    /// Receives with this visibility instead of the queue's default (the heartbeat renews it
    /// while a message is worked on).
    pub fn with_visibility(mut self, visibility: Duration) -> Self {
        self.visibility = Some(visibility);
        self
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> QueueError {
        QueueError::Backend {
            queue: self.name.clone(),
            message: format!("{what}: {e}"),
        }
    }

    async fn send_to(&self, url: &str, messages: Vec<Outgoing>) -> Result<(), QueueError> {
        for chunk in messages.chunks(BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    let mut e = SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(&m.body);
                    if self.fifo {
                        e = e
                            .set_message_group_id(m.group_id.clone())
                            .set_message_deduplication_id(m.dedup_id.clone());
                    }
                    e.build().map_err(|e| self.err("building a batch entry", e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| self.err("SendMessageBatch", DisplayErrorContext(&e)))?;
            if let Some(f) = out.failed().first() {
                return Err(self.err(
                    "SendMessageBatch",
                    format!(
                        "{} of {} failed, first: {:?}",
                        out.failed().len(),
                        chunk.len(),
                        f.message()
                    ),
                ));
            }
        }
        Ok(())
    }

    async fn receive_from(&self, url: &str, max: usize, wait: Duration) -> Result<Vec<Received>, QueueError> {
        let out = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(max.clamp(1, BATCH) as i32)
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .set_visibility_timeout(self.visibility.map(|v| visibility_seconds(v).max(1)))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .send()
            .await
            .map_err(|e| self.err("ReceiveMessage", DisplayErrorContext(&e)))?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| {
                Some(Received {
                    body: m.body()?.to_string(),
                    receipt: m.receipt_handle()?.to_string(),
                    receive_count: m
                        .attributes()
                        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(1),
                    message_id: m.message_id().unwrap_or_default().to_string(),
                    group_id: m
                        .attributes()
                        .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                        .cloned(),
                })
            })
            .collect())
    }

    /// One DeleteMessageBatch of at most ten receipts: a result per receipt, in order. An
    /// entry SQS refuses for its receipt is [`QueueError::StaleReceipt`], as DeleteMessage's
    /// error is; an entry it neither deleted nor refused is an error too.
    async fn delete_batch(&self, receipts: &[String]) -> Vec<Result<(), QueueError>> {
        let entries = receipts
            .iter()
            .enumerate()
            .map(|(i, r)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(r)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>();
        let sent = match entries {
            Ok(entries) => self
                .client
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| DisplayErrorContext(e).to_string()),
            Err(e) => Err(format!("building a batch entry: {e}")),
        };
        let out = match sent {
            Ok(out) => out,
            Err(e) => {
                return receipts
                    .iter()
                    .map(|_| Err(self.err("DeleteMessageBatch", &e)))
                    .collect()
            }
        };
        let mut results: Vec<Result<(), QueueError>> = receipts
            .iter()
            .map(|_| {
                Err(self.err(
                    "DeleteMessageBatch",
                    "the answer named neither success nor failure",
                ))
            })
            .collect();
        for ok in out.successful() {
            if let Some(r) = ok.id().parse::<usize>().ok().and_then(|i| results.get_mut(i)) {
                *r = Ok(());
            }
        }
        for failed in out.failed() {
            if let Some(r) = failed.id().parse::<usize>().ok().and_then(|i| results.get_mut(i)) {
                *r = Err(if failed.code().contains("ReceiptHandleIsInvalid") {
                    QueueError::StaleReceipt {
                        queue: self.name.clone(),
                    }
                } else {
                    self.err(
                        "DeleteMessageBatch",
                        format!("{}: {}", failed.code(), failed.message().unwrap_or_default()),
                    )
                });
            }
        }
        results
    }

    async fn count(&self, url: &str) -> Result<(u64, u64), QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| self.err("GetQueueAttributes", DisplayErrorContext(&e)))?;
        let empty = HashMap::new();
        let attrs = out.attributes().unwrap_or(&empty);
        let n = |k: QueueAttributeName| attrs.get(&k).and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok((
            n(QueueAttributeName::ApproximateNumberOfMessages),
            n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        ))
    }
}

#[async_trait]
impl Queue for SqsQueue {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, messages: Vec<Outgoing>) -> Result<(), QueueError> {
        self.send_to(&self.url, messages).await
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Received>, QueueError> {
        self.receive_from(&self.url, max, wait).await
    }

    async fn ack(&self, receipt: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| match e.into_service_error() {
                e if e.is_receipt_handle_is_invalid() => QueueError::StaleReceipt {
                    queue: self.name.clone(),
                },
                e => self.err("DeleteMessage", DisplayErrorContext(&e)),
            })?;
        Ok(())
    }

    async fn ack_many(&self, receipts: &[String]) -> Vec<Result<(), QueueError>> {
        let mut results = Vec::with_capacity(receipts.len());
        for chunk in receipts.chunks(BATCH) {
            if let [receipt] = chunk {
                results.push(self.ack(receipt).await);
                continue;
            }
            results.extend(self.delete_batch(chunk).await);
        }
        results
    }

    async fn set_visibility(&self, receipt: &str, visibility: Duration) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(visibility_seconds(visibility))
            .send()
            .await
            .map_err(|e| match e.into_service_error() {
                e if e.is_receipt_handle_is_invalid() || e.is_message_not_inflight() => {
                    QueueError::StaleReceipt {
                        queue: self.name.clone(),
                    }
                }
                e => self.err("ChangeMessageVisibility", DisplayErrorContext(&e)),
            })?;
        Ok(())
    }

    async fn dead_letter(&self, message: &Received, reason: &str) -> Result<(), QueueError> {
        // SQS moves a message only through its redrive policy: send a copy to the dead-letter
        // queue, then delete the original (a crash between leaves both; a replay of the copy
        // is then a redelivery the protocol absorbs).
        let copy = Outgoing {
            body: message.body.clone(),
            group_id: self
                .fifo
                .then(|| message.group_id.clone().unwrap_or_else(|| "dead-letters".into())),
            dedup_id: self.fifo.then(|| format!("dl-{}", uuid::Uuid::new_v4().simple())),
        };
        self.send_to(&self.dlq_url, vec![copy]).await?;
        self.ack(&message.receipt).await?;
        tracing::warn!(queue = %self.name, message_id = %message.message_id, %reason,
            "message moved to the dead-letter queue without retries");
        Ok(())
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        let (visible, in_flight) = self.count(&self.url).await?;
        let (dead_visible, dead_in_flight) = self.count(&self.dlq_url).await?;
        Ok(QueueDepth {
            visible,
            in_flight,
            dead: dead_visible + dead_in_flight,
        })
    }

    async fn replay_dead_letters(
        &self,
        max: Option<usize>,
        dry_run: bool,
    ) -> Result<Vec<String>, QueueError> {
        let mut moved = Vec::new();
        let limit = max.unwrap_or(usize::MAX);
        let mut receipts = Vec::new();
        while moved.len() < limit {
            let want = (limit - moved.len()).min(BATCH);
            let got = self
                .receive_from(&self.dlq_url, want, Duration::from_secs(1))
                .await?;
            if got.is_empty() {
                break;
            }
            for m in got {
                if !dry_run {
                    // FIFO: the message's own group (a partition's merges stay serialized), and
                    // a fresh deduplication id, or the five-minute window would drop it.
                    let group = self
                        .fifo
                        .then(|| m.group_id.clone().unwrap_or_else(|| "replay".to_string()));
                    let dedup = self
                        .fifo
                        .then(|| format!("replay-{}", uuid::Uuid::new_v4().simple()));
                    self.send_to(
                        &self.url,
                        vec![Outgoing {
                            body: m.body.clone(),
                            group_id: group,
                            dedup_id: dedup,
                        }],
                    )
                    .await?;
                    self.client
                        .delete_message()
                        .queue_url(&self.dlq_url)
                        .receipt_handle(&m.receipt)
                        .send()
                        .await
                        .map_err(|e| self.err("DeleteMessage (DLQ)", DisplayErrorContext(&e)))?;
                } else {
                    receipts.push(m.receipt.clone());
                }
                moved.push(m.body);
            }
        }
        // A dry run leaves every message where it was, visible again at once.
        for r in receipts {
            let _ = self
                .client
                .change_message_visibility()
                .queue_url(&self.dlq_url)
                .receipt_handle(&r)
                .visibility_timeout(0)
                .send()
                .await;
        }
        Ok(moved)
    }
}

/// SQS takes whole seconds, at most 12 hours: a visibility is rounded up, so a retry asked for
/// in 500 ms waits a second rather than none, and a heartbeat never shortens what it asked.
fn visibility_seconds(visibility: Duration) -> i32 {
    visibility.as_millis().div_ceil(1000).min(43_200) as i32
}

#[cfg(test)]
mod visibility_tests {
    use super::*;

    #[test]
    fn visibilities_round_up_to_whole_seconds_within_twelve_hours() {
        assert_eq!(visibility_seconds(Duration::ZERO), 0);
        assert_eq!(visibility_seconds(Duration::from_millis(1)), 1);
        assert_eq!(visibility_seconds(Duration::from_millis(500)), 1);
        assert_eq!(visibility_seconds(Duration::from_millis(1000)), 1);
        assert_eq!(visibility_seconds(Duration::from_millis(1001)), 2);
        assert_eq!(visibility_seconds(Duration::from_secs(13 * 3600)), 43_200);
    }
}
