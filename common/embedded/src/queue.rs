//! SQS semantics over the `messages` table: visibility timeout, receive counts, a dead-letter
//! state after `max_receive_count` receives, FIFO groups (only a group's oldest message is
//! deliverable, and not while it is in flight) and five-minute deduplication ids.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::params;
use tokio::sync::Notify;

use super::db::{Db, DbError};
use common::clock::{EpochMs, SharedClock};
use common::ports::queue::{Outgoing, Queue, QueueDepth, QueueError, Received};

/// SQS's deduplication interval.
const DEDUP_WINDOW_MS: i64 = 5 * 60 * 1000;
/// How often a long poll looks again when no in-process send woke it (other processes).
const POLL_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct QueueOptions {
    /// How long a received message stays invisible before it is redelivered.
    pub visibility_timeout: Duration,
    /// Receives after which a message moves to the dead-letter queue (SQS redrive policy).
    pub max_receive_count: u32,
    /// FIFO queue: message groups and deduplication ids.
    pub fifo: bool,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            visibility_timeout: Duration::from_secs(60),
            max_receive_count: 5,
            fifo: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct EmbeddedQueue {
    db: Db,
    name: String,
    options: QueueOptions,
    clock: SharedClock,
    /// Wakes one of this queue's waiting receivers per message that may have become
    /// deliverable: waking every receiver of every queue on each send had eleven idle workers
    /// query on every page sent, and those queries were half of a backfill's CPU.
    waker: Arc<Notify>,
}

impl EmbeddedQueue {
    pub fn new(db: Db, name: &str, options: QueueOptions, clock: SharedClock) -> Self {
        EmbeddedQueue {
            waker: db.waker(name),
            db,
            name: name.to_string(),
            options,
            clock,
        }
    }

    /// Wakes up to `n` waiting receivers (one stored permit when none waits).
    fn wake(&self, n: usize) {
        for _ in 0..n {
            self.waker.notify_one();
        }
    }

    fn err(&self, e: DbError) -> QueueError {
        QueueError::Backend {
            queue: self.name.clone(),
            message: e.to_string(),
        }
    }

    async fn receive_once(&self, max: usize) -> Result<Vec<Received>, QueueError> {
        let name = self.name.clone();
        let now = self.clock.now_ms();
        let visibility = self.options.visibility_timeout.as_millis() as i64;
        let max_receives = i64::from(self.options.max_receive_count);
        self.db
            .tx(move |tx| {
                let mut out = Vec::new();
                // Oldest first, along (queue, dead, id), stopping at the limit: a FIFO queue
                // holding thousands of partition merges is not sorted on every receive. The
                // visibility test is kept off the index (`+`), so SQLite's STAT4 does not
                // prepare the statement again for every new `now`.
                let mut stmt = tx.prepare_cached(
                    "SELECT id, body, receive_count, group_id FROM messages m INDEXED BY messages_order
                     WHERE queue = ?1 AND dead = 0 AND +visible_at <= ?2
                       AND (group_id IS NULL OR NOT EXISTS (
                            SELECT 1 FROM messages o WHERE o.queue = m.queue
                              AND o.group_id = m.group_id AND o.dead = 0 AND o.id < m.id))
                     ORDER BY id LIMIT ?3",
                )?;
                let rows: Vec<(i64, String, i64, Option<String>)> = stmt
                    .query_map(params![name, now, max as i64 * 2 + 10], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })?
                    .collect::<Result<_, _>>()?;
                for (id, body, count, group_id) in rows {
                    if out.len() >= max {
                        break;
                    }
                    if count >= max_receives {
                        // Redrive: this would be receive number max+1.
                        tx.prepare_cached("UPDATE messages SET dead = 1, receipt = NULL WHERE id = ?1")?
                            .execute([id])?;
                        tracing::warn!(queue = %name, message_id = id, receives = count,
                            "message moved to the dead-letter queue after its retries");
                        continue;
                    }
                    let receipt = format!("{id}:{}", uuid::Uuid::new_v4().simple());
                    tx.prepare_cached(
                        "UPDATE messages SET receive_count = receive_count + 1, receipt = ?2,
                         visible_at = ?3 WHERE id = ?1",
                    )?
                    .execute(params![id, receipt, now + visibility])?;
                    out.push(Received {
                        body,
                        receipt,
                        receive_count: (count + 1) as u32,
                        message_id: id.to_string(),
                        group_id,
                    });
                }
                Ok(out)
            })
            .await
            .map_err(|e| self.err(e))
    }
}

#[async_trait]
impl Queue for EmbeddedQueue {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, messages: Vec<Outgoing>) -> Result<(), QueueError> {
        if messages.is_empty() {
            return Ok(());
        }
        if self.options.fifo && messages.iter().any(|m| m.group_id.is_none()) {
            return Err(QueueError::Backend {
                queue: self.name.clone(),
                message: "a FIFO queue needs a message group id on every message".into(),
            });
        }
        let name = self.name.clone();
        let fifo = self.options.fifo;
        let now = self.clock.now_ms();
        let count = self
            .db
            .tx(move |tx| {
                tx.prepare_cached("DELETE FROM dedup WHERE queue = ?1 AND sent_at < ?2")?
                    .execute(params![name, now - DEDUP_WINDOW_MS])?;
                let mut count = 0;
                for m in messages {
                    if let (true, Some(dedup)) = (fifo, &m.dedup_id) {
                        let fresh = tx
                            .prepare_cached(
                                "INSERT OR IGNORE INTO dedup (queue, dedup_id, sent_at) VALUES (?1, ?2, ?3)",
                            )?
                            .execute(params![name, dedup, now])?;
                        if fresh == 0 {
                            continue;
                        }
                    }
                    let group = if fifo { m.group_id } else { None };
                    tx.prepare_cached(
                        "INSERT INTO messages (queue, body, group_id, visible_at, sent_at)
                         VALUES (?1, ?2, ?3, ?4, ?4)",
                    )?
                    .execute(params![name, m.body, group, now])?;
                    count += 1;
                }
                Ok(count)
            })
            .await
            .map_err(|e| self.err(e))?;
        self.wake(count);
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Received>, QueueError> {
        let max = max.clamp(1, 10);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before looking, so a message sent after the look still wakes us.
            let notified = self.waker.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let got = self.receive_once(max).await?;
            if !got.is_empty() {
                return Ok(got);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(got);
            }
            let nap = POLL_INTERVAL.min(deadline - now);
            let _ = tokio::time::timeout(nap, notified).await;
        }
    }

    async fn ack(&self, receipt: &str) -> Result<(), QueueError> {
        self.ack_many(&[receipt.to_string()])
            .await
            .pop()
            .unwrap_or_else(|| Err(self.err(DbError::Other("a delete of one receipt gave no result".into()))))
    }

    async fn ack_many(&self, receipts: &[String]) -> Vec<Result<(), QueueError>> {
        let name = &self.name;
        let deleted = self
            .db
            .tx(|tx| {
                let mut stmt = tx.prepare_cached(
                    "DELETE FROM messages WHERE id = ?3 AND queue = ?1 AND receipt = ?2 AND dead = 0",
                )?;
                receipts
                    .iter()
                    .map(|r| Ok(stmt.execute(params![name, r, receipt_id(r)])? > 0))
                    .collect::<Result<Vec<bool>, DbError>>()
            })
            .await;
        let deleted = match deleted {
            Ok(d) => d,
            Err(e) => {
                let message = e.to_string();
                return receipts
                    .iter()
                    .map(|_| {
                        Err(QueueError::Backend {
                            queue: self.name.clone(),
                            message: message.clone(),
                        })
                    })
                    .collect();
            }
        };
        if self.options.fifo {
            // Each group whose message went has its next one deliverable now.
            self.wake(deleted.iter().filter(|d| **d).count());
        }
        deleted
            .into_iter()
            .map(|d| {
                if d {
                    Ok(())
                } else {
                    Err(QueueError::StaleReceipt {
                        queue: self.name.clone(),
                    })
                }
            })
            .collect()
    }

    async fn set_visibility(&self, receipt: &str, visibility: Duration) -> Result<(), QueueError> {
        let name = self.name.clone();
        let (id, receipt) = (receipt_id(receipt), receipt.to_string());
        let until: EpochMs = self.clock.now_ms() + visibility.as_millis() as i64;
        let changed = self
            .db
            .tx(move |tx| {
                Ok(tx
                    .prepare_cached(
                        "UPDATE messages SET visible_at = ?3 WHERE id = ?4 AND queue = ?1 AND receipt = ?2 AND dead = 0",
                    )?
                    .execute(params![name, receipt, until, id])?)
            })
            .await
            .map_err(|e| self.err(e))?;
        if changed == 0 {
            return Err(QueueError::StaleReceipt {
                queue: self.name.clone(),
            });
        }
        if visibility.is_zero() {
            self.wake(1);
        }
        Ok(())
    }

    async fn retry_later(&self, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        let name = self.name.clone();
        let (id, receipt) = (receipt_id(receipt), receipt.to_string());
        let until: EpochMs = self.clock.now_ms() + delay.as_millis() as i64;
        // No longer in hand: a crash release (E1) does not forgive this receive.
        let changed = self
            .db
            .tx(move |tx| {
                Ok(tx
                    .prepare_cached(
                        "UPDATE messages SET visible_at = ?3, receipt = NULL
                         WHERE id = ?4 AND queue = ?1 AND receipt = ?2 AND dead = 0",
                    )?
                    .execute(params![name, receipt, until, id])?)
            })
            .await
            .map_err(|e| self.err(e))?;
        // Redelivered to someone else (or deleted) meanwhile: its retry is the holder's now.
        if changed == 0 {
            return Err(QueueError::StaleReceipt {
                queue: self.name.clone(),
            });
        }
        if delay.is_zero() {
            self.wake(1);
        }
        Ok(())
    }

    async fn dead_letter(&self, message: &Received, reason: &str) -> Result<(), QueueError> {
        let name = self.name.clone();
        let (id, receipt) = (receipt_id(&message.receipt), message.receipt.clone());
        let moved = self
            .db
            .tx(move |tx| {
                Ok(tx
                    .prepare_cached(
                        "UPDATE messages SET dead = 1, receipt = NULL
                         WHERE id = ?3 AND queue = ?1 AND receipt = ?2 AND dead = 0",
                    )?
                    .execute(params![name, receipt, id])?)
            })
            .await
            .map_err(|e| self.err(e))?;
        if moved == 0 {
            return Err(QueueError::StaleReceipt {
                queue: self.name.clone(),
            });
        }
        tracing::warn!(queue = %self.name, message_id = %message.message_id, %reason,
            "message moved to the dead-letter queue without retries");
        if self.options.fifo {
            self.wake(1);
        }
        Ok(())
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        let name = self.name.clone();
        let now = self.clock.now_ms();
        self.db
            .tx(move |tx| {
                // One pass over the queue's rows for all three counts.
                let (visible, in_flight, dead) = tx
                    .prepare_cached(
                        "SELECT COALESCE(SUM(dead = 0 AND visible_at <= ?2), 0),
                                COALESCE(SUM(dead = 0 AND visible_at > ?2), 0),
                                COALESCE(SUM(dead = 1), 0)
                         FROM messages WHERE queue = ?1",
                    )?
                    .query_row(params![name, now], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                    })?;
                Ok(QueueDepth {
                    visible: visible as u64,
                    in_flight: in_flight as u64,
                    dead: dead as u64,
                })
            })
            .await
            .map_err(|e| self.err(e))
    }

    async fn replay_dead_letters(
        &self,
        max: Option<usize>,
        dry_run: bool,
    ) -> Result<Vec<String>, QueueError> {
        let name = self.name.clone();
        let now = self.clock.now_ms();
        let limit = max.map(|m| m as i64).unwrap_or(-1);
        let bodies = self
            .db
            .tx(move |tx| {
                let mut stmt = tx.prepare(
                    "SELECT id, body FROM messages WHERE queue=?1 AND dead=1 ORDER BY id LIMIT ?2",
                )?;
                let rows: Vec<(i64, String)> = stmt
                    .query_map(params![name, limit], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()?;
                if !dry_run {
                    for (id, _) in &rows {
                        tx.execute(
                            "UPDATE messages SET dead=0, receive_count=0, receipt=NULL, visible_at=?2
                             WHERE id=?1",
                            params![id, now],
                        )?;
                    }
                }
                Ok(rows.into_iter().map(|(_, b)| b).collect::<Vec<_>>())
            })
            .await
            .map_err(|e| self.err(e))?;
        if !dry_run && !bodies.is_empty() {
            self.waker.notify_waiters();
        }
        Ok(bodies)
    }
}

/// The message id a receipt (`{id}:{nonce}`) was issued for, so acknowledging one finds its
/// row by key instead of scanning the queue; -1 (no row) for a receipt not of that form.
fn receipt_id(receipt: &str) -> i64 {
    receipt
        .split_once(':')
        .and_then(|(id, _)| id.parse().ok())
        .unwrap_or(-1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_names_its_message() {
        assert_eq!(receipt_id("42:5f0c"), 42);
        assert_eq!(receipt_id("not-a-receipt"), -1);
        assert_eq!(receipt_id("x:1"), -1);
    }
    use common::clock::ManualClock;
    use std::sync::Arc;

    fn queue(fifo: bool) -> (tempfile::TempDir, EmbeddedQueue, ManualClock) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("q.db")).unwrap();
        let clock = ManualClock::new(1_000_000);
        let q = EmbeddedQueue::new(
            db,
            "q",
            QueueOptions {
                visibility_timeout: Duration::from_secs(10),
                max_receive_count: 2,
                fifo,
            },
            Arc::new(clock.clone()),
        );
        (dir, q, clock)
    }

    #[tokio::test]
    async fn redelivers_after_visibility_and_dead_letters_after_max_receives() {
        let (_d, q, clock) = queue(false);
        q.send(vec![Outgoing::standard("a".into())]).await.unwrap();
        let first = q.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].receive_count, 1);
        assert!(
            q.receive(10, Duration::ZERO).await.unwrap().is_empty(),
            "invisible"
        );
        clock.advance_ms(10_001);
        let second = q.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(second[0].receive_count, 2);
        assert!(matches!(
            q.ack(&first[0].receipt).await,
            Err(QueueError::StaleReceipt { .. })
        ));
        clock.advance_ms(10_001);
        assert!(q.receive(10, Duration::ZERO).await.unwrap().is_empty());
        assert_eq!(q.depth().await.unwrap().dead, 1);
        assert_eq!(q.replay_dead_letters(None, true).await.unwrap(), ["a"]);
        assert_eq!(q.depth().await.unwrap().dead, 1, "dry run moves nothing");
        assert_eq!(q.replay_dead_letters(Some(5), false).await.unwrap(), ["a"]);
        let back = q.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(back[0].receive_count, 1);
        q.ack(&back[0].receipt).await.unwrap();
        assert_eq!(q.depth().await.unwrap(), QueueDepth::default());
    }

    #[tokio::test]
    async fn fifo_groups_deliver_one_at_a_time_in_order_and_dedup() {
        let (_d, q, _clock) = queue(true);
        let m = |b: &str, g: &str| Outgoing::fifo(b.into(), g.into(), b.into());
        q.send(vec![m("a1", "a"), m("b1", "b"), m("a2", "a"), m("a1", "a")])
            .await
            .unwrap();
        let got = q.receive(10, Duration::ZERO).await.unwrap();
        let bodies: Vec<_> = got.iter().map(|r| r.body.as_str()).collect();
        assert_eq!(
            bodies,
            ["a1", "b1"],
            "one per group; the duplicate a1 was dropped"
        );
        assert!(q.receive(10, Duration::ZERO).await.unwrap().is_empty());
        q.ack(&got[0].receipt).await.unwrap();
        let next = q.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(next[0].body, "a2");
        assert!(q.send(vec![Outgoing::standard("x".into())]).await.is_err());
    }

    #[tokio::test]
    async fn release_makes_a_message_visible_now() {
        let (_d, q, _clock) = queue(false);
        q.send(vec![Outgoing::standard("a".into())]).await.unwrap();
        let got = q.receive(1, Duration::ZERO).await.unwrap();
        q.set_visibility(&got[0].receipt, Duration::ZERO).await.unwrap();
        assert_eq!(q.receive(1, Duration::ZERO).await.unwrap().len(), 1);
    }
}
