//! The client side of HubSpot's rate limits: a rolling-window budget per limit, shared by
//! every task of a process that holds the same [`RateBudget`] (general and search apart).
//! HubSpot counts per account, not per process: consumer processes find each other through
//! heartbeats in the ledger and each keeps `limit / members` of every window
//! ([`RateBudget::set_members`]), so their sum never exceeds the account's limit.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// A rolling window: at most `share` acquisitions in any `interval`, where `share` is this
/// process's part of the account's `limit`.
#[derive(Debug)]
pub struct RollingWindow {
    limit: usize,
    share: AtomicUsize,
    interval: Duration,
    sent: Mutex<VecDeque<Instant>>,
}

impl RollingWindow {
    /// `max == 0` means unlimited.
    pub fn new(max: usize, interval: Duration) -> Self {
        RollingWindow {
            limit: max,
            share: AtomicUsize::new(max),
            interval,
            sent: Mutex::new(VecDeque::with_capacity(max)),
        }
    }

    /// This process's part when `members` processes share the account (at least 1).
    pub fn set_members(&self, members: usize) {
        self.share
            .store((self.limit / members.max(1)).max(1), Ordering::Relaxed);
    }

    pub fn share(&self) -> usize {
        if self.limit == 0 {
            0
        } else {
            self.share.load(Ordering::Relaxed)
        }
    }

    /// Waits until one more request fits in the window, then records it.
    pub async fn acquire(&self) {
        if self.limit == 0 {
            return;
        }
        loop {
            let wait = {
                let mut sent = self.sent.lock().await;
                let now = Instant::now();
                while sent
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.interval)
                {
                    sent.pop_front();
                }
                if sent.len() < self.share.load(Ordering::Relaxed) {
                    sent.push_back(now);
                    return;
                }
                // Requests leave the window oldest first; with a share just lowered, wait for
                // as many as it is over.
                let over = sent.len() + 1 - self.share.load(Ordering::Relaxed);
                sent.get(over - 1)
                    .map(|t| *t + self.interval - now)
                    .unwrap_or_default()
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// One HubSpot account's budget as this process sees it.
#[derive(Debug, Clone)]
pub struct RateBudget {
    pub general: Arc<RollingWindow>,
    pub search: Arc<RollingWindow>,
}

impl RateBudget {
    /// `general_per_10s` list/properties requests per rolling 10 s and `search_per_sec` search
    /// requests per rolling second; 0 disables a limit.
    pub fn new(general_per_10s: usize, search_per_sec: usize) -> Self {
        // Windows a little longer than HubSpot's (10 s, 1 s): a request leaves ours only after
        // it surely left the account's, whatever the network jitter, so processes that each
        // fill their share never sum past the limit.
        RateBudget {
            general: Arc::new(RollingWindow::new(general_per_10s, Duration::from_millis(10_200))),
            search: Arc::new(RollingWindow::new(search_per_sec, Duration::from_millis(1100))),
        }
    }

    pub fn unlimited() -> Self {
        RateBudget::new(0, 0)
    }

    /// Splits both windows among `members` processes of one account.
    pub fn set_members(&self, members: usize) {
        self.general.set_members(members);
        self.search.set_members(members);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn never_more_than_max_in_any_window() {
        let w = Arc::new(RollingWindow::new(3, Duration::from_millis(300)));
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..7 {
            w.acquire().await;
            times.push(start.elapsed().as_millis() / 300);
        }
        assert_eq!(times, [0, 0, 0, 1, 1, 1, 2]);
    }

    #[tokio::test]
    async fn members_split_the_window() {
        let w = RollingWindow::new(10, Duration::from_millis(300));
        w.set_members(3);
        assert_eq!(w.share(), 3);
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..4 {
            w.acquire().await;
            times.push(start.elapsed().as_millis() / 300);
        }
        assert_eq!(times, [0, 0, 0, 1]);
        w.set_members(100);
        assert_eq!(w.share(), 1, "never below one");
        assert_eq!(
            RollingWindow::new(0, Duration::from_secs(1)).share(),
            0,
            "unlimited"
        );
    }
}
