//! What a HubSpot request can end in, grouped by what the caller does next: retry (429 on a
//! rolling window, 5xx, transport, an unreadable body) or give up and say why.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum HubSpotError {
    /// A 4xx other than 429: the request itself is wrong; retrying will not help.
    #[error("HubSpot answered {status} ({category}): {message} [correlationId {correlation_id}]")]
    Rejected {
        status: u16,
        category: String,
        message: String,
        correlation_id: String,
    },
    #[error("HubSpot rejected the token (401): {0}. Set HUBSPOT_TOKEN to a valid private-app token")]
    Unauthorized(String),
    #[error("HubSpot rate limit ({policy}); backing off {retry_after:?}")]
    RateLimited { policy: String, retry_after: Duration },
    /// A 429 under the DAILY policy (R4): no retry can succeed before the day rolls over.
    #[error(
        "HubSpot's daily request limit ({}) is spent: {message}. It resets at midnight in the \
         account's time zone; nothing is retried before then",
        daily_text(.daily_limit)
    )]
    DailyLimit {
        /// `X-HubSpot-RateLimit-Daily` when the refusal carried it.
        daily_limit: Option<u64>,
        message: String,
    },
    #[error("HubSpot server error {status}: {message}")]
    Server { status: u16, message: String },
    #[error("HubSpot request failed in transport: {0}")]
    Transport(String),
    #[error("HubSpot returned an unreadable body (status {status}): {message}")]
    Decode { status: u16, message: String },
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A page whose records could not all be read whole (their properties span requests).
    #[error("incomplete page: {0}")]
    Incomplete(String),
}

fn daily_text(daily_limit: &Option<u64>) -> String {
    match daily_limit {
        Some(n) => format!("{n} requests a day"),
        None => "size not reported".into(),
    }
}

impl HubSpotError {
    /// Whether another attempt may succeed (a 429 on a rolling window, 5xx, transport, a
    /// truncated or garbled body); DAILY is not (R4).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            HubSpotError::RateLimited { .. }
                | HubSpotError::Server { .. }
                | HubSpotError::Transport(_)
                | HubSpotError::Decode { .. }
                | HubSpotError::Incomplete(_)
        )
    }

    /// The outcome label of [`common::metrics::HUBSPOT_REQUESTS`].
    pub fn outcome(&self) -> &'static str {
        match self {
            HubSpotError::Rejected { .. } => "rejected",
            HubSpotError::Unauthorized(_) => "unauthorized",
            HubSpotError::RateLimited { .. } => "rate_limited",
            HubSpotError::DailyLimit { .. } => "daily_limit",
            HubSpotError::Server { .. } => "server_error",
            HubSpotError::Transport(_) => "transport",
            HubSpotError::Decode { .. } | HubSpotError::Incomplete(_) => "decode",
            HubSpotError::Invalid(_) => "invalid",
        }
    }
}
