//! How the rate budget listens to HubSpot: what an answer's `X-HubSpot-RateLimit-*` headers,
//! `Retry-After` and a 429's `policyName` say, and what the budget does about it
//! ([`RateBudget::observe`]). The mechanism (limits, shares, pauses) is `rate`'s; this module
//! is the policy:
//!
//! - an advertised `Max` lower than configured lowers the general limit (R1);
//! - an account `Remaining` of [`HOLD_AT_REMAINING`] holds general requests briefly;
//! - a 429 pauses the whole window of the policy that refused, for the back-off (R3);
//! - R4: a DAILY refusal pauses nothing and is never retried: nothing helps before the day
//!   rolls over at midnight in the account's time zone (`HubSpotError::DailyLimit`).

use std::time::Duration;

use reqwest::header::HeaderMap;

use crate::rate::{RateBudget, Window};
use wire::headers;

/// The account's `Remaining` at or below which the general window holds. Zero: the value is
/// counted after the request that carries it, so 0 means the next one is refused. Anything
/// higher would throttle a lone process that merely fills its own share, since its window
/// (a little longer than HubSpot's) leaves the account only a few requests in steady state.
pub const HOLD_AT_REMAINING: u64 = 0;

/// A hold on an exhausted account lasts this fraction of the interval (1 s of HubSpot's 10 s):
/// a rolling window frees about a tenth of its budget in a tenth of its length, and the next
/// answer says again how much is left. A refusal backs off longer ([`BACK_OFF_FRACTION`]).
pub const HOLD_FRACTION_OF_INTERVAL: u32 = 10;

/// Without `Retry-After`, a 429 backs off this fraction of the interval HubSpot reports
/// (2.5 s of 10 s): a few tries span the whole window.
pub const BACK_OFF_FRACTION: u32 = 4;

/// The back-off of a 429 that names neither `Retry-After` nor an interval: a whole search
/// window, a tenth of a general one.
pub const DEFAULT_BACK_OFF: Duration = Duration::from_secs(1);

/// What one answer's headers say about the account's budget; absent or unreadable headers
/// are `None` (they are network data: never trusted to parse).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateSignals {
    /// `X-HubSpot-RateLimit-Max`: the account's requests per `interval`.
    pub max: Option<u64>,
    /// `X-HubSpot-RateLimit-Remaining`: what the whole account has left in the interval.
    pub remaining: Option<u64>,
    /// `X-HubSpot-RateLimit-Interval-Milliseconds`, never zero.
    pub interval: Option<Duration>,
    /// `X-HubSpot-RateLimit-Daily`.
    pub daily: Option<u64>,
    /// `X-HubSpot-RateLimit-Daily-Remaining`.
    pub daily_remaining: Option<u64>,
    /// `Retry-After` in seconds (the HTTP-date form is not sent by HubSpot).
    pub retry_after: Option<Duration>,
}

impl RateSignals {
    pub fn from_headers(h: &HeaderMap) -> Self {
        let num = |name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        RateSignals {
            max: num(headers::RATE_MAX),
            remaining: num(headers::RATE_REMAINING),
            interval: num(headers::RATE_INTERVAL_MS)
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis),
            daily: num(headers::RATE_DAILY),
            daily_remaining: num(headers::RATE_DAILY_REMAINING),
            retry_after: num("retry-after").map(Duration::from_secs),
        }
    }

    /// How long to back off after a 429: `Retry-After` when sent, since HubSpot does not
    /// always send it, a share of the interval it reports, else [`DEFAULT_BACK_OFF`].
    pub fn back_off(&self) -> Duration {
        match (self.retry_after, self.interval) {
            (Some(after), _) => after,
            (None, Some(interval)) => interval / BACK_OFF_FRACTION,
            (None, None) => DEFAULT_BACK_OFF,
        }
    }
}

/// The limit a 429 names in `policyName`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// The account's rolling 10 seconds: the general window.
    TenSecondlyRolling,
    /// The per-second search limit.
    Secondly,
    /// The day's requests (R4).
    Daily,
    /// Missing or not one HubSpot documents: charged to the window of the refused request.
    Other(String),
}

impl Policy {
    pub fn from_name(name: Option<&str>) -> Self {
        match name.map(str::trim) {
            Some(n) if n.eq_ignore_ascii_case("TEN_SECONDLY_ROLLING") => Policy::TenSecondlyRolling,
            Some(n) if n.eq_ignore_ascii_case("SECONDLY") => Policy::Secondly,
            Some(n) if n.eq_ignore_ascii_case("DAILY") => Policy::Daily,
            Some(n) if !n.is_empty() => Policy::Other(n.to_string()),
            _ => Policy::Other("unknown".into()),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Policy::TenSecondlyRolling => "TEN_SECONDLY_ROLLING",
            Policy::Secondly => "SECONDLY",
            Policy::Daily => "DAILY",
            Policy::Other(name) => name,
        }
    }

    /// The window a refusal under this policy pauses, for a request drawn from `endpoint`;
    /// `None` for DAILY (R4).
    pub fn window(&self, endpoint: Window) -> Option<Window> {
        match self {
            Policy::TenSecondlyRolling => Some(Window::General),
            Policy::Secondly => Some(Window::Search),
            Policy::Daily => None,
            Policy::Other(_) => Some(endpoint),
        }
    }
}

impl RateBudget {
    /// Adapts to one HubSpot answer to a request drawn from `endpoint`: `refused` is the policy
    /// of a 429, `None` for any other answer.
    pub fn observe(&self, endpoint: Window, signals: &RateSignals, refused: Option<&Policy>) {
        // The headers describe the general window; search answers carry none (HUBSPOT.md), so
        // whatever one might carry is not taken for the search limit.
        if endpoint == Window::General {
            if let Some(max) = signals.max {
                self.learn(max, signals.interval);
            }
        }
        match refused {
            None if endpoint == Window::General => self.hold_if_exhausted(signals),
            None => {}
            Some(policy) => self.pause_for_refusal(endpoint, signals, policy),
        }
    }

    fn learn(&self, max: u64, interval: Option<Duration>) {
        if let Some(limit) = self.general.learn_limit(max, interval) {
            tracing::info!(
                advertised_max = max,
                interval_ms = interval.map(|i| i.as_millis() as u64),
                configured = self.general.configured(),
                limit,
                share = self.general.share(),
                "HubSpot advertises the account's rate limit; the general budget follows it \
                 (never above the configured limit)"
            );
        }
    }

    /// Others on the account spent it: wait a little instead of sending into a 429.
    fn hold_if_exhausted(&self, signals: &RateSignals) {
        if signals.remaining.is_none_or(|r| r > HOLD_AT_REMAINING) {
            return;
        }
        let interval = signals.interval.unwrap_or(self.general.interval());
        let hold = interval / HOLD_FRACTION_OF_INTERVAL;
        if self.general.pause(hold) {
            tracing::info!(
                remaining = signals.remaining,
                hold_ms = hold.as_millis() as u64,
                "the account's general rate budget is spent (X-HubSpot-RateLimit-Remaining); \
                 holding this process's general requests"
            );
        }
    }

    fn pause_for_refusal(&self, endpoint: Window, signals: &RateSignals, policy: &Policy) {
        let Some(window) = policy.window(endpoint) else {
            return; // R4: the client fails the request and says why.
        };
        let back_off = signals.back_off();
        if self.window(window).pause(back_off) {
            tracing::warn!(
                policy = policy.name(),
                window = window.name(),
                pause_ms = back_off.as_millis() as u64,
                "HubSpot refused a request (429); pausing this window for every task of the process"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_map(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            if let Ok(v) = value.parse() {
                h.insert(*name, v);
            }
        }
        h
    }

    #[test]
    fn retry_after_prefers_the_header() {
        let mut h = HeaderMap::new();
        assert_eq!(RateSignals::from_headers(&h).back_off(), Duration::from_secs(1));
        h.insert(headers::RATE_INTERVAL_MS, "10000".parse().unwrap());
        assert_eq!(
            RateSignals::from_headers(&h).back_off(),
            Duration::from_millis(2500)
        );
        h.insert("retry-after", "3".parse().unwrap());
        assert_eq!(RateSignals::from_headers(&h).back_off(), Duration::from_secs(3));
    }

    #[test]
    fn headers_parse_leniently_and_garbage_is_absent() {
        let s = RateSignals::from_headers(&header_map(&[
            (headers::RATE_MAX, " 100 "),
            (headers::RATE_REMAINING, "0"),
            (headers::RATE_INTERVAL_MS, "10000"),
            (headers::RATE_DAILY, "250000"),
            (headers::RATE_DAILY_REMAINING, "-3"),
        ]));
        assert_eq!(
            s,
            RateSignals {
                max: Some(100),
                remaining: Some(0),
                interval: Some(Duration::from_secs(10)),
                daily: Some(250_000),
                daily_remaining: None,
                retry_after: None,
            }
        );
        let zero = RateSignals::from_headers(&header_map(&[(headers::RATE_INTERVAL_MS, "0")]));
        assert_eq!(
            zero.interval, None,
            "a zero interval would mean no back-off at all"
        );
        assert_eq!(
            RateSignals::from_headers(&header_map(&[(headers::RATE_MAX, "lots")])).max,
            None
        );
    }

    #[test]
    fn each_policy_pauses_its_own_window() {
        use Window::{General, Search};
        let p = |name| Policy::from_name(name);
        assert_eq!(p(Some("TEN_SECONDLY_ROLLING")).window(Search), Some(General));
        assert_eq!(p(Some("SECONDLY")).window(General), Some(Search));
        assert_eq!(p(Some("DAILY")).window(General), None, "R4");
        assert_eq!(p(Some("BURST")).window(Search), Some(Search));
        assert_eq!(p(None).window(General), Some(General));
        assert_eq!(p(None).name(), "unknown");
        assert_eq!(p(Some("ten_secondly_rolling")), Policy::TenSecondlyRolling);
    }

    fn advertised(max: u64, remaining: u64) -> RateSignals {
        RateSignals {
            max: Some(max),
            remaining: Some(remaining),
            interval: Some(Duration::from_secs(10)),
            ..Default::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lower_advertised_max_lowers_the_share_r1() {
        let budget = RateBudget::new(190, 5);
        budget.set_members(2);
        assert_eq!(budget.general.share(), 95);
        budget.observe(Window::General, &advertised(100, 60), None);
        assert_eq!(budget.general.limit(), 100);
        assert_eq!(budget.general.share(), 50);
        budget.observe(Window::General, &advertised(250, 60), None);
        assert_eq!(budget.general.limit(), 190, "never above the configured limit");
        budget.observe(Window::Search, &advertised(3, 60), None);
        assert_eq!(
            budget.general.limit(),
            190,
            "headers on a search answer are not learned"
        );
        assert_eq!(budget.search.limit(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn an_exhausted_account_holds_the_next_general_acquire() {
        let budget = RateBudget::new(190, 5);
        budget.observe(Window::General, &advertised(190, 1), None);
        assert_eq!(budget.general.paused_for(), None, "only at {HOLD_AT_REMAINING}");
        budget.observe(Window::General, &advertised(190, 0), None);
        assert_eq!(budget.general.paused_for(), Some(Duration::from_secs(1)));
        assert_eq!(budget.search.paused_for(), None);
        let start = tokio::time::Instant::now();
        budget.search.acquire().await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        budget.general.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_pauses_the_refusing_window_only() {
        let back_off = RateSignals {
            interval: Some(Duration::from_secs(10)),
            ..Default::default()
        };
        let budget = RateBudget::new(190, 5);
        budget.observe(Window::Search, &back_off, Some(&Policy::TenSecondlyRolling));
        assert_eq!(budget.general.paused_for(), Some(Duration::from_millis(2500)));
        assert_eq!(budget.search.paused_for(), None);

        let budget = RateBudget::new(190, 5);
        budget.observe(Window::General, &RateSignals::default(), Some(&Policy::Secondly));
        assert_eq!(budget.search.paused_for(), Some(DEFAULT_BACK_OFF));
        assert_eq!(budget.general.paused_for(), None);

        let budget = RateBudget::new(190, 5);
        budget.observe(Window::General, &back_off, Some(&Policy::Daily));
        assert_eq!(budget.general.paused_for(), None, "R4: waiting cannot help");
        assert_eq!(budget.search.paused_for(), None);
    }
}
