//! One send schedule per HubSpot account and window, shared by every consumer process through
//! the ledger (R5).
//!
//! Splitting a window's limit into per-process shares works when the limit is large (190 per
//! 10 s) but not for search's 5 per second: four processes with a whole share each use four of
//! the five, and eight would send eight. A shared schedule instead hands out send times one
//! `spacing` apart (a generic cell rate algorithm: `spacing` = window / limit, lengthened by a
//! margin), whoever asks: every window then holds at most `limit` requests in sum, and the
//! account's whole limit is used whatever the number of processes.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use common::clock::SharedClock;
use common::ports::Ledger;

/// Slots in a row a process may find already passed before it gives the schedule up for
/// its share (the ledger is that slow).
const MAX_LATE_SLOTS: usize = 8;
/// The least a slot is reserved ahead of now, in ms (see [`LedgerSchedule::reserve`]).
const MIN_LEAD_MS: i64 = 10;

/// Where a window reserves its send times.
#[async_trait]
pub trait Schedule: Send + Sync + std::fmt::Debug {
    /// Reserves the next send time, `spacing` after the previous one across all processes, and
    /// returns how long to wait for it. A slot must not be used more than `tolerance` late:
    /// sent late, it would arrive closer than `spacing` to the next process's slot.
    async fn reserve(&self, spacing: Duration, tolerance: Duration) -> Result<Duration, String>;
}

/// A [`Schedule`] kept in the run ledger (DynamoDB in AWS mode), under one key per window.
#[derive(Clone)]
pub struct LedgerSchedule {
    ledger: Arc<dyn Ledger>,
    key: String,
    clock: SharedClock,
    /// A moving estimate of the ledger's round trip, in ms: slots are reserved that far ahead,
    /// so that one is still to come, not passed, when the ledger answers.
    round_trip_ms: Arc<AtomicI64>,
}

impl LedgerSchedule {
    pub fn new(ledger: Arc<dyn Ledger>, key: impl Into<String>, clock: SharedClock) -> Self {
        LedgerSchedule {
            ledger,
            key: key.into(),
            clock,
            round_trip_ms: Arc::new(AtomicI64::new(MIN_LEAD_MS)),
        }
    }
}

impl std::fmt::Debug for LedgerSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerSchedule").field("key", &self.key).finish()
    }
}

#[async_trait]
impl Schedule for LedgerSchedule {
    async fn reserve(&self, spacing: Duration, tolerance: Duration) -> Result<Duration, String> {
        let spacing_ms = i64::try_from(spacing.as_millis()).unwrap_or(i64::MAX).max(1);
        let tolerance_ms = i64::try_from(tolerance.as_millis()).unwrap_or(0);
        for _ in 0..MAX_LATE_SLOTS {
            let asked = self.clock.now_ms();
            let lead = (2 * self.round_trip_ms.load(Ordering::Relaxed)).max(MIN_LEAD_MS);
            let at = self
                .ledger
                .reserve_slot(&self.key, spacing_ms, asked + lead)
                .await
                .map_err(|e| e.to_string())?;
            let now = self.clock.now_ms();
            let rtt = self.round_trip_ms.load(Ordering::Relaxed);
            self.round_trip_ms
                .store((3 * rtt + (now - asked).max(0)) / 4, Ordering::Relaxed);
            // A slot that passed while the ledger answered is given up, not used late.
            if at >= now - tolerance_ms {
                return Ok(Duration::from_millis(u64::try_from(at - now).unwrap_or(0)));
            }
        }
        Err(format!(
            "the ledger answered too slowly to keep a {} ms schedule",
            spacing.as_millis()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded::{Db, EmbeddedLedger};

    #[tokio::test]
    async fn processes_reserving_from_one_ledger_are_spaced_r5() {
        let dir = tempfile::tempdir().unwrap();
        let ledger: Arc<dyn Ledger> = Arc::new(EmbeddedLedger::new(
            Db::open(&dir.path().join("l.db")).unwrap(),
            1000,
        ));
        let clock: SharedClock = Arc::new(common::clock::ManualClock::new(10_000));
        let a = LedgerSchedule::new(ledger.clone(), "search", clock.clone());
        let b = LedgerSchedule::new(ledger, "search", clock);
        let spacing = Duration::from_millis(250);
        let mut waits = Vec::new();
        for s in [&a, &b, &a, &b] {
            waits.push(s.reserve(spacing, Duration::ZERO).await.unwrap().as_millis());
        }
        // Reserved a little ahead (the lead), then one spacing apart whoever asks.
        assert_eq!(waits, [20, 270, 520, 770]);
    }
}
