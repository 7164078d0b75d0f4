//! The client side of HubSpot's rate limits: a rolling-window budget per limit, shared by
//! every task of a process that holds the same [`RateBudget`] (general and search apart).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// A rolling window: at most `max` acquisitions in any `interval`.
#[derive(Debug)]
pub struct RollingWindow {
    max: usize,
    interval: Duration,
    sent: Mutex<VecDeque<Instant>>,
}

impl RollingWindow {
    /// `max == 0` means unlimited.
    pub fn new(max: usize, interval: Duration) -> Self {
        RollingWindow {
            max,
            interval,
            sent: Mutex::new(VecDeque::with_capacity(max)),
        }
    }

    /// Waits until one more request fits in the window, then records it.
    pub async fn acquire(&self) {
        if self.max == 0 {
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
                if sent.len() < self.max {
                    sent.push_back(now);
                    return;
                }
                // The oldest request leaves the window at front + interval.
                sent.front().map(|t| *t + self.interval - now).unwrap_or_default()
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
        RateBudget {
            general: Arc::new(RollingWindow::new(general_per_10s, Duration::from_secs(10))),
            search: Arc::new(RollingWindow::new(search_per_sec, Duration::from_millis(1100))),
        }
    }

    pub fn unlimited() -> Self {
        RateBudget::new(0, 0)
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
}
