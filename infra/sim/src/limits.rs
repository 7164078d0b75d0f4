//! HubSpot's rate limits: a rolling 10-second window over ordinary CRM requests and a
//! rolling 1-second window over search. Time is passed in, so tests need no clock.
//!
//! - L1: a rejected request consumes no budget (it is not recorded in the window).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const GENERAL_WINDOW: Duration = Duration::from_secs(10);
pub const SEARCH_WINDOW: Duration = Duration::from_secs(1);
/// Reported in `X-HubSpot-RateLimit-Daily` (a Professional portal with the capacity pack);
/// the daily limit is reported, not enforced.
pub const DAILY_LIMIT: u64 = 1_000_000;

/// The requests accepted in the last `window`.
#[derive(Debug)]
pub struct RollingWindow {
    window: Duration,
    accepted: VecDeque<Instant>,
}

impl RollingWindow {
    pub fn new(window: Duration) -> Self {
        RollingWindow {
            window,
            accepted: VecDeque::new(),
        }
    }

    /// Accepts a request at `now` if fewer than `max` were accepted in the window; returns
    /// the budget left after it, or `None` when refused (L1: nothing recorded).
    pub fn try_acquire(&mut self, now: Instant, max: u32) -> Option<u32> {
        while let Some(first) = self.accepted.front() {
            if now.saturating_duration_since(*first) >= self.window {
                self.accepted.pop_front();
            } else {
                break;
            }
        }
        if self.accepted.len() >= max as usize {
            return None;
        }
        self.accepted.push_back(now);
        Some(max - self.accepted.len() as u32)
    }
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    TenSecondlyRolling,
    Secondly,
}

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Policy::TenSecondlyRolling => "TEN_SECONDLY_ROLLING",
            Policy::Secondly => "SECONDLY",
        }
    }
    pub fn message(self) -> &'static str {
        match self {
            Policy::TenSecondlyRolling => "You have reached your ten_secondly_rolling limit.",
            Policy::Secondly => "You have reached your secondly limit.",
        }
    }
}

/// Both windows of one portal.
#[derive(Debug)]
pub struct Limits {
    general: Mutex<RollingWindow>,
    search: Mutex<RollingWindow>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            general: Mutex::new(RollingWindow::new(GENERAL_WINDOW)),
            search: Mutex::new(RollingWindow::new(SEARCH_WINDOW)),
        }
    }
}

impl Limits {
    /// An ordinary request: the remaining budget, or the policy that refused it.
    pub fn acquire_general(&self, now: Instant, max: u32) -> Result<u32, Policy> {
        let mut w = self.general.lock().unwrap_or_else(|e| e.into_inner());
        w.try_acquire(now, max).ok_or(Policy::TenSecondlyRolling)
    }

    pub fn acquire_search(&self, now: Instant, max: u32) -> Result<u32, Policy> {
        let mut w = self.search.lock().unwrap_or_else(|e| e.into_inner());
        w.try_acquire(now, max).ok_or(Policy::Secondly)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_rolls_and_refusals_cost_nothing_l1() {
        let t0 = Instant::now();
        let mut w = RollingWindow::new(Duration::from_secs(10));
        assert_eq!(w.try_acquire(t0, 2), Some(1));
        assert_eq!(w.try_acquire(t0 + Duration::from_secs(5), 2), Some(0));
        for s in 6..10 {
            assert_eq!(w.try_acquire(t0 + Duration::from_secs(s), 2), None);
        }
        // The first request leaves the window at t0+10 s; the refusals did not extend it.
        assert_eq!(w.try_acquire(t0 + Duration::from_secs(10), 2), Some(0));
        assert_eq!(w.try_acquire(t0 + Duration::from_secs(15), 2), Some(0));
    }
}
