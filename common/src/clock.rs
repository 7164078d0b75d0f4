//! Injected time, so windows, leases and buffers are tested instantly and deterministically.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Milliseconds since the Unix epoch, UTC.
pub type EpochMs = i64;

pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ms(&self) -> EpochMs;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> EpochMs {
        chrono::Utc::now().timestamp_millis()
    }
}

/// A clock tests move by hand.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(start_ms: EpochMs) -> Self {
        ManualClock(Arc::new(AtomicI64::new(start_ms)))
    }

    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> EpochMs {
        self.0.load(Ordering::SeqCst)
    }
}

pub type SharedClock = Arc<dyn Clock>;

pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// `2024-05-01T12:00:00.123Z`, or the raw number when out of range.
pub fn iso(ms: EpochMs) -> String {
    wire::format_ms(ms)
}

/// The instant of an ISO-8601 timestamp or of epoch milliseconds as text (HubSpot writes both).
pub fn parse_iso(value: &str) -> Option<EpochMs> {
    wire::parse_ms(value)
}

/// Milliseconds in a UTC day.
pub const DAY_MS: i64 = 86_400_000;

/// Days since the epoch (UTC) of a timestamp: the `dt` partition as a number.
pub fn day_of(ms: EpochMs) -> i64 {
    ms.div_euclid(DAY_MS)
}

/// Days since the epoch of a `dt` partition value (`YYYY-MM-DD`).
pub fn day_of_dt(dt: &str) -> Option<i64> {
    let date = chrono::NaiveDate::parse_from_str(dt, "%Y-%m-%d").ok()?;
    Some(
        date.and_hms_opt(0, 0, 0)?
            .and_utc()
            .timestamp_millis()
            .div_euclid(DAY_MS),
    )
}

/// The `dt` partition value of a day number ([`day_of`]); `None` outside years 1 to 9999.
pub fn dt_of_day(day: i64) -> Option<String> {
    use chrono::Datelike;
    let t = chrono::DateTime::from_timestamp_millis(day.checked_mul(DAY_MS)?)?;
    (1..=9999)
        .contains(&t.year())
        .then(|| t.format("%Y-%m-%d").to_string())
}

/// The `dt` partition value (`YYYY-MM-DD`, UTC) of a timestamp.
pub fn dt_of(ms: EpochMs) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.format("%Y-%m-%d").to_string())
}
