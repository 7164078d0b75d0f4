//! The client side of HubSpot's rate limits: a rolling-window budget per limit, shared by
//! every task of a process that holds the same [`RateBudget`] (general and search apart).
//! HubSpot counts per account, not per process: consumer processes find each other through
//! heartbeats in the ledger and each keeps `limit / members` of every window
//! ([`RateBudget::set_members`]), so their sum never exceeds the account's limit.
//!
//! A window's limit and pauses can also change at run time, because the configured limit can
//! be wrong (a Starter account configured as Professional) and because traffic outside hubsync
//! spends the same account budget; `adapt` decides when from HubSpot's answers, this module
//! keeps the guarantees:
//!
//! - R1: a window's limit never exceeds the configured one; an advertised
//!   `X-HubSpot-RateLimit-Max` can only lower it, and every share follows at once.
//! - R2: a share is `limit / members`, so the members' shares sum to at most the limit; it is
//!   never below 1, the least that still makes progress, which overshoots only when members
//!   outnumber the limit.
//! - R3: a pause only ever extends; while it lasts no task of the process acquires from that
//!   window, and the other window is untouched (HubSpot counts general and search apart).
//! - R6: planning has a part of its own: the producer reads property definitions (and lists)
//!   from the general window as well. Consumers sharing the account leave it
//!   [`PLANNING_PART`] of the limit ([`RollingWindow::leave_planning_part`]) and the producer
//!   keeps to that part ([`RollingWindow::keep_to_planning_part`]), so the two never sum past
//!   the limit.
//! - R5: a window given a shared [`Schedule`] takes its send times from it, one
//!   `interval / limit` apart across every process of the account, instead of from its share;
//!   if the schedule cannot be reached it falls back to its share for that request.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::schedule::Schedule;

/// Which of the account's windows a request draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Every ordinary CRM request (list, properties): HubSpot's rolling 10 seconds.
    General,
    /// `POST .../search`: HubSpot's per-second search limit, counted apart.
    Search,
}

impl Window {
    pub fn name(self) -> &'static str {
        match self {
            Window::General => "general",
            Window::Search => "search",
        }
    }
}

/// The part of a window's limit planning keeps (R6): a tenth.
pub const PLANNING_PART: usize = 10;

/// Which part of the limit this process's members share (R6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// All of it (a process that runs every role, tools).
    Whole,
    /// All but the planning part (consumers sharing the account).
    AllButPlanning,
    /// The planning part (the producer).
    Planning,
}

/// What can change while the process runs; one lock, so a share is always computed from a
/// limit and a member count that belong together.
#[derive(Debug)]
struct Shape {
    /// HubSpot's advertised limit, converted to this window (R1: used only when lower).
    learned: Option<usize>,
    /// Processes sharing the account, at least 1.
    members: usize,
    part: Part,
    /// No acquisition before this instant (R3).
    paused_until: Option<Instant>,
}

/// A rolling window: at most `share` acquisitions in any `interval`, where `share` is this
/// process's part of the account's limit.
#[derive(Debug)]
pub struct RollingWindow {
    /// What the operator configured; 0 means uncounted (benchmarks, one-off tools).
    configured: usize,
    interval: Duration,
    shape: std::sync::Mutex<Shape>,
    sent: Mutex<VecDeque<Instant>>,
    /// The account-wide schedule, when processes share one (R5).
    schedule: std::sync::Mutex<Option<Arc<dyn Schedule>>>,
    /// The `window` label of its wait metrics.
    label: &'static str,
}

impl RollingWindow {
    /// `max == 0` means unlimited: nothing is counted, but HubSpot's pauses still hold.
    pub fn new(max: usize, interval: Duration) -> Self {
        RollingWindow {
            configured: max,
            interval,
            shape: std::sync::Mutex::new(Shape {
                learned: None,
                members: 1,
                part: Part::Whole,
                paused_until: None,
            }),
            sent: Mutex::new(VecDeque::with_capacity(max)),
            schedule: std::sync::Mutex::new(None),
            label: "window",
        }
    }

    /// This window with `label` as its metrics' `window` label.
    pub fn named(mut self, label: &'static str) -> Self {
        self.label = label;
        self
    }

    /// Takes send times from `schedule`, shared by every process of the account (R5).
    pub fn share_schedule(&self, schedule: Arc<dyn Schedule>) {
        *self.schedule.lock().unwrap_or_else(|e| e.into_inner()) = Some(schedule);
    }

    fn schedule(&self) -> Option<Arc<dyn Schedule>> {
        self.schedule.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn shape(&self) -> std::sync::MutexGuard<'_, Shape> {
        // Nothing in the critical sections can panic halfway; a poisoned lock holds a whole Shape.
        self.shape.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn limit_of(&self, shape: &Shape) -> usize {
        match shape.learned {
            Some(learned) if self.configured > 0 => learned.min(self.configured),
            _ => self.configured,
        }
    }

    /// The account's limit as this window applies it (R1); 0 when unlimited.
    pub fn limit(&self) -> usize {
        self.limit_of(&self.shape())
    }

    /// This process's part when `members` processes share the account (at least 1).
    pub fn set_members(&self, members: usize) {
        self.shape().members = members.max(1);
    }

    /// Consumers: share all of the limit but the planning part (R6).
    pub fn leave_planning_part(&self) {
        self.shape().part = Part::AllButPlanning;
    }

    /// The producer: keep to the planning part of the limit (R6).
    pub fn keep_to_planning_part(&self) {
        self.shape().part = Part::Planning;
    }

    /// This process's part of the limit (R2, R6); 0 when unlimited.
    pub fn share(&self) -> usize {
        let shape = self.shape();
        match self.limit_of(&shape) {
            0 => 0,
            limit => {
                let planning = (limit / PLANNING_PART).max(1);
                let shared = match shape.part {
                    Part::Whole => limit,
                    Part::AllButPlanning => limit.saturating_sub(planning),
                    Part::Planning => planning,
                };
                (shared / shape.members).max(1)
            }
        }
    }

    /// What the operator configured (0: uncounted).
    pub fn configured(&self) -> usize {
        self.configured
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Takes HubSpot's advertised `max` per `advertised` interval as the account's limit for
    /// this window (R1: only ever below the configured one). Returns the new limit when it
    /// changed.
    pub fn learn_limit(&self, max: u64, advertised: Option<Duration>) -> Option<usize> {
        if self.configured == 0 {
            return None;
        }
        let learned = limit_per_window(max, advertised.unwrap_or(self.interval), self.interval);
        let mut shape = self.shape();
        let before = self.limit_of(&shape);
        shape.learned = Some(learned);
        let after = self.limit_of(&shape);
        (after != before).then_some(after)
    }

    /// Holds every acquisition for `duration` from now (R3: extends a pause, never shortens
    /// it). Returns whether no pause was running, so callers log a pause once, not per task.
    pub fn pause(&self, duration: Duration) -> bool {
        if duration.is_zero() {
            return false;
        }
        let now = Instant::now();
        let until = now + duration;
        let mut shape = self.shape();
        let running = shape.paused_until.is_some_and(|t| t > now);
        if shape.paused_until.is_none_or(|t| t < until) {
            shape.paused_until = Some(until);
        }
        !running
    }

    /// How long the current pause has left, if one runs.
    pub fn paused_for(&self) -> Option<Duration> {
        let now = Instant::now();
        self.shape().paused_until.filter(|t| *t > now).map(|t| t - now)
    }

    /// Waits until no pause runs and one more request fits in the window, then records it.
    pub async fn acquire(&self) {
        let started = Instant::now();
        self.acquire_slot().await;
        let waited = started.elapsed();
        // A wait under a millisecond is only the bookkeeping.
        if waited >= Duration::from_millis(1) {
            metrics::counter!(common::metrics::RATE_WAITS, "window" => self.label).increment(1);
            metrics::histogram!(common::metrics::RATE_WAIT_SECONDS, "window" => self.label)
                .record(waited.as_secs_f64());
        }
    }

    async fn acquire_slot(&self) {
        loop {
            if let Some(left) = self.paused_for() {
                tokio::time::sleep(left).await;
                continue;
            }
            let limit = self.limit();
            let Some(schedule) = self.schedule().filter(|_| limit > 0) else {
                break;
            };
            // The window's interval is HubSpot's plus a margin (see SEARCH_INTERVAL); a slot
            // used late eats into it, so at most half of it goes to lateness, the rest to the
            // network's jitter.
            let tolerance = self.interval / 52;
            match schedule.reserve(self.interval / limit as u32, tolerance).await {
                Ok(wait) => {
                    tokio::time::sleep(wait).await;
                    // R3: a pause that began while this task waited forfeits its slot.
                    if self.paused_for().is_none() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the account's shared send schedule failed; this request waits for this process's share instead");
                    break;
                }
            }
        }
        self.acquire_share().await
    }

    /// [`RollingWindow::acquire`] from this process's share of the window.
    async fn acquire_share(&self) {
        loop {
            let wait = match (self.paused_for(), self.share()) {
                (Some(left), _) => left,
                (None, 0) => return,
                (None, _) => match self.try_record().await {
                    Some(wait) => wait,
                    None => return,
                },
            };
            // A pause set while sleeping is seen on waking: the loop asks again.
            tokio::time::sleep(wait).await;
        }
    }

    /// Records one request now, or says how long to wait for room (or for a pause set while
    /// this task queued for the lock).
    async fn try_record(&self) -> Option<Duration> {
        let mut sent = self.sent.lock().await;
        if let Some(left) = self.paused_for() {
            return Some(left);
        }
        let share = self.share();
        let now = Instant::now();
        while sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.interval)
        {
            sent.pop_front();
        }
        if sent.len() < share {
            sent.push_back(now);
            return None;
        }
        // Requests leave the window oldest first; with a share just lowered, wait for as many
        // as it is over.
        let over = sent.len() + 1 - share;
        Some(
            sent.get(over - 1)
                .map(|t| *t + self.interval - now)
                .unwrap_or_default(),
        )
    }
}

/// HubSpot's `max` per `advertised` interval as a count for a window of `window`: the same
/// `max` when the window is at least as long (any advertised interval then lies inside one of
/// ours), otherwise split over the windows it takes to cover the advertised interval, so
/// no advertised interval ever sees more than `max`. At least 1: a header never unlimits.
pub fn limit_per_window(max: u64, advertised: Duration, window: Duration) -> usize {
    let max = usize::try_from(max).unwrap_or(usize::MAX).max(1);
    if advertised <= window || window.is_zero() {
        return max;
    }
    let windows = advertised.as_nanos().div_ceil(window.as_nanos());
    (max / usize::try_from(windows).unwrap_or(usize::MAX)).max(1)
}

/// The general window: HubSpot's 10 s and 2 % (network jitter over a long window).
pub const GENERAL_INTERVAL: Duration = Duration::from_millis(10_200);
/// The search window: HubSpot's second and 4 %, so a schedule of 5 per second still sends 4.8.
/// (HubSpot counts a request when it arrives; its arrivals are spaced as our sends, give or
/// take the network's jitter, which this margin covers; a 429 pauses the window, R3.)
pub const SEARCH_INTERVAL: Duration = Duration::from_millis(1_040);

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
            general: Arc::new(
                RollingWindow::new(general_per_10s, GENERAL_INTERVAL).named(Window::General.name()),
            ),
            search: Arc::new(
                RollingWindow::new(search_per_sec, SEARCH_INTERVAL).named(Window::Search.name()),
            ),
        }
    }

    pub fn unlimited() -> Self {
        RateBudget::new(0, 0)
    }

    pub fn window(&self, window: Window) -> &RollingWindow {
        match window {
            Window::General => &self.general,
            Window::Search => &self.search,
        }
    }

    /// Splits both windows among `members` processes of one account.
    pub fn set_members(&self, members: usize) {
        self.general.set_members(members);
        self.search.set_members(members);
    }
}

#[cfg(test)]
mod planning_part_tests {
    use super::*;

    #[test]
    fn consumers_leave_the_planning_part_and_the_producer_keeps_to_it_r6() {
        let consumers = RollingWindow::new(190, Duration::from_secs(10));
        consumers.leave_planning_part();
        consumers.set_members(4);
        let producer = RollingWindow::new(190, Duration::from_secs(10));
        producer.keep_to_planning_part();
        assert_eq!((consumers.share(), producer.share()), (42, 19));
        assert!(4 * consumers.share() + producer.share() <= 190);
        let whole = RollingWindow::new(190, Duration::from_secs(10));
        assert_eq!(whole.share(), 190, "one process running every role keeps it all");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Acquires `n` times in a row, noting in which `tick` since the start each one passed.
    async fn ticks(w: &RollingWindow, n: usize, tick: Duration) -> Vec<u128> {
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..n {
            w.acquire().await;
            times.push(start.elapsed().as_millis() / tick.as_millis());
        }
        times
    }

    /// A schedule handing out slots `spacing` apart from a start, or failing.
    #[derive(Debug)]
    struct FakeSchedule {
        next: std::sync::Mutex<Option<Instant>>,
        fail: bool,
    }

    #[async_trait::async_trait]
    impl Schedule for FakeSchedule {
        async fn reserve(&self, spacing: Duration, _tolerance: Duration) -> Result<Duration, String> {
            if self.fail {
                return Err("ledger down".into());
            }
            let mut next = self.next.lock().unwrap();
            let now = Instant::now();
            let at = next.map_or(now, |n| n.max(now));
            *next = Some(at + spacing);
            Ok(at - now)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_shared_schedule_spaces_requests_and_a_failing_one_falls_back_to_the_share_r5() {
        let w = RollingWindow::new(5, Duration::from_millis(1000));
        w.set_members(8);
        assert_eq!(w.share(), 1, "a share alone would allow 8 in sum");
        w.share_schedule(Arc::new(FakeSchedule {
            next: std::sync::Mutex::new(None),
            fail: false,
        }));
        assert_eq!(ticks(&w, 6, Duration::from_millis(200)).await, [0, 1, 2, 3, 4, 5]);
        let broken = RollingWindow::new(5, Duration::from_millis(1000));
        broken.share_schedule(Arc::new(FakeSchedule {
            next: std::sync::Mutex::new(None),
            fail: true,
        }));
        assert_eq!(
            ticks(&broken, 6, Duration::from_millis(1000)).await,
            [0, 0, 0, 0, 0, 1]
        );
    }

    #[tokio::test(start_paused = true)]
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

    #[tokio::test(start_paused = true)]
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

    #[tokio::test(start_paused = true)]
    async fn a_learned_lower_limit_lowers_every_share_r1_r2() {
        let w = RollingWindow::new(190, Duration::from_millis(10_200));
        w.set_members(3);
        assert_eq!(w.share(), 63);
        assert_eq!(w.learn_limit(100, Some(Duration::from_secs(10))), Some(100));
        assert_eq!(w.share(), 33, "recomputed with the current members");
        assert_eq!(
            w.learn_limit(100, Some(Duration::from_secs(10))),
            None,
            "no change, no news"
        );
        w.set_members(1);
        assert_eq!(w.share(), 100);
        assert_eq!(
            w.learn_limit(500, None),
            Some(190),
            "never above the configured limit"
        );
        assert_eq!(w.share(), 190);

        let uncounted = RollingWindow::new(0, Duration::from_secs(1));
        assert_eq!(
            uncounted.learn_limit(100, None),
            None,
            "an unlimited window stays so"
        );
        assert_eq!(uncounted.share(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn acquisitions_follow_a_limit_learned_mid_window() {
        let tick = Duration::from_millis(300);
        let w = RollingWindow::new(6, tick);
        assert_eq!(ticks(&w, 2, tick).await, [0, 0]);
        w.learn_limit(3, None);
        assert_eq!(
            ticks(&w, 3, tick).await,
            [0, 1, 1],
            "two already sent count against three"
        );
    }

    #[test]
    fn an_advertised_interval_never_sees_more_than_max() {
        let ours = Duration::from_millis(10_200);
        assert_eq!(limit_per_window(100, Duration::from_secs(10), ours), 100);
        assert_eq!(limit_per_window(100, Duration::from_secs(1), ours), 100);
        assert_eq!(limit_per_window(100, Duration::from_secs(20), ours), 50);
        assert_eq!(limit_per_window(100, Duration::from_secs(30), ours), 33);
        assert_eq!(
            limit_per_window(0, Duration::from_secs(10), ours),
            1,
            "never unlimits"
        );
        assert_eq!(
            limit_per_window(u64::MAX, Duration::from_secs(10), ours),
            usize::MAX
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_concurrent_acquirers_of_its_window_only_r3() {
        let budget = RateBudget::new(100, 5);
        assert!(budget.general.pause(Duration::from_secs(2)), "a new pause");
        assert!(!budget.general.pause(Duration::from_secs(1)), "already running");
        assert_eq!(
            budget.general.paused_for(),
            Some(Duration::from_secs(2)),
            "never shortened"
        );
        let start = Instant::now();
        let mut tasks = Vec::new();
        for window in [Window::General, Window::General, Window::Search, Window::General] {
            let budget = budget.clone();
            tasks.push(tokio::spawn(async move {
                budget.window(window).acquire().await;
                (window, start.elapsed())
            }));
        }
        for task in tasks {
            let (window, waited) = task.await.unwrap();
            let expected = match window {
                Window::General => Duration::from_secs(2),
                Window::Search => Duration::ZERO,
            };
            assert_eq!(waited, expected, "{window:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_set_while_waiting_for_room_still_holds_r3() {
        let w = Arc::new(RollingWindow::new(1, Duration::from_secs(1)));
        w.acquire().await;
        let start = Instant::now();
        let waiter = {
            let w = w.clone();
            tokio::spawn(async move {
                w.acquire().await;
                start.elapsed()
            })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        w.pause(Duration::from_secs(2));
        assert_eq!(waiter.await.unwrap(), Duration::from_millis(2500));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unlimited_window_still_honours_a_pause() {
        let w = RollingWindow::new(0, Duration::from_secs(1));
        w.acquire().await;
        assert!(!w.pause(Duration::ZERO), "nothing to pause");
        w.pause(Duration::from_millis(750));
        let start = Instant::now();
        w.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_millis(750));
    }
}
