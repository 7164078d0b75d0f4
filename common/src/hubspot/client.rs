//! The HubSpot CRM v3 client the consumer and producer use: list and search pages, property
//! definitions, timeouts, and retries with exponential backoff and jitter (`backon`) on 429,
//! 5xx, connection errors and unreadable bodies, honouring HubSpot's rate-limit headers.
//! The token lives in a [`Secret`] and is never logged.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::{header, StatusCode};
use serde::de::DeserializeOwned;

use super::rate::RateBudget;
use super::wire::{self, ErrorBody, ListResponse, PropertiesResponse, SearchRequest, SearchResponse};

/// HubSpot's own API host.
pub const DEFAULT_BASE_URL: &str = "https://api.hubapi.com";
/// The objects path; HubSpot also serves date-versioned paths (`/crm/objects/2026-03`).
pub const DEFAULT_OBJECTS_PATH: &str = "/crm/v3/objects";
/// Longest `properties=` value sent in one list URL (HubSpot answers 414 near 15k characters).
const MAX_PROPERTIES_CHARS: usize = 12_000;

/// A string that never prints.
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Scheme and host, e.g. `https://api.hubapi.com` or a simulator's `http://127.0.0.1:PORT`.
    pub base_url: String,
    pub objects_path: String,
    pub token: Secret,
    pub request_timeout: Duration,
    /// Retries after the first attempt for a retryable failure.
    pub max_retries: usize,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            base_url: DEFAULT_BASE_URL.into(),
            objects_path: DEFAULT_OBJECTS_PATH.into(),
            token: Secret::default(),
            request_timeout: Duration::from_secs(30),
            max_retries: 6,
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(20),
        }
    }
}

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
    #[error("HubSpot server error {status}: {message}")]
    Server { status: u16, message: String },
    #[error("HubSpot request failed in transport: {0}")]
    Transport(String),
    #[error("HubSpot returned an unreadable body (status {status}): {message}")]
    Decode { status: u16, message: String },
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl HubSpotError {
    /// Whether another attempt may succeed (429, 5xx, transport, a truncated/garbled body).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            HubSpotError::RateLimited { .. }
                | HubSpotError::Server { .. }
                | HubSpotError::Transport(_)
                | HubSpotError::Decode { .. }
        )
    }
}

#[derive(Debug, Clone)]
pub struct HubSpotClient {
    http: reqwest::Client,
    config: ClientConfig,
    budget: RateBudget,
}

impl HubSpotClient {
    pub fn new(config: ClientConfig, budget: RateBudget) -> Result<Self, HubSpotError> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(32)
            .build()
            .map_err(|e| HubSpotError::Invalid(format!("HTTP client: {e}")))?;
        Ok(HubSpotClient { http, config, budget })
    }

    /// The rate budget this client draws from (shared by its clones).
    pub fn budget(&self) -> &RateBudget {
        &self.budget
    }

    pub fn base_url(&self) -> &str {
        &self.config.base_url
    }

    fn objects_url(&self, object_type: &str) -> String {
        format!(
            "{}{}/{}",
            self.config.base_url.trim_end_matches('/'),
            self.config.objects_path,
            object_type
        )
    }

    /// One page of `GET /crm/v3/objects/{type}`.
    pub async fn list_page(
        &self,
        object_type: &str,
        properties: &[String],
        after: Option<&str>,
        archived: bool,
        limit: u32,
    ) -> Result<ListResponse, HubSpotError> {
        let props = properties.join(",");
        if props.len() > MAX_PROPERTIES_CHARS {
            return Err(HubSpotError::Invalid(format!(
                "{} properties make a {}-character URL (HubSpot's limit is about 15k); trim the catalog",
                properties.len(),
                props.len()
            )));
        }
        let url = self.objects_url(object_type);
        let limit = limit.clamp(1, wire::LIST_PAGE_MAX).to_string();
        let archived = archived.to_string();
        self.with_retries(|| async {
            self.budget.general.acquire().await;
            let mut query: Vec<(&str, &str)> =
                vec![("limit", &limit), ("properties", &props), ("archived", &archived)];
            if let Some(a) = after {
                query.push(("after", a));
            }
            let req = self.http.get(&url).query(&query);
            self.send(req).await
        })
        .await
    }

    /// One page of `POST /crm/v3/objects/{type}/search`.
    pub async fn search_page(
        &self,
        object_type: &str,
        request: &SearchRequest,
    ) -> Result<SearchResponse, HubSpotError> {
        let url = format!("{}/search", self.objects_url(object_type));
        self.with_retries(|| async {
            self.budget.search.acquire().await;
            self.send(self.http.post(&url).json(request)).await
        })
        .await
    }

    /// `GET /crm/v3/properties/{type}`.
    pub async fn properties(&self, object_type: &str) -> Result<PropertiesResponse, HubSpotError> {
        let url = format!(
            "{}/crm/v3/properties/{object_type}",
            self.config.base_url.trim_end_matches('/')
        );
        self.with_retries(|| async {
            self.budget.general.acquire().await;
            self.send(self.http.get(&url)).await
        })
        .await
    }

    async fn with_retries<T, F, Fut>(&self, attempt: F) -> Result<T, HubSpotError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, HubSpotError>>,
    {
        let policy = ExponentialBuilder::default()
            .with_min_delay(self.config.min_backoff)
            .with_max_delay(self.config.max_backoff)
            .with_max_times(self.config.max_retries)
            .with_jitter();
        attempt
            .retry(policy)
            .when(HubSpotError::is_retryable)
            // On 429 wait at least what HubSpot asked for, not just the exponential step.
            .adjust(|e, dur| match e {
                HubSpotError::RateLimited { retry_after, .. } => dur.map(|d| d.max(*retry_after)),
                _ => dur,
            })
            .notify(|e, dur| {
                tracing::debug!(error = %e, retry_in_ms = dur.as_millis() as u64, "retrying HubSpot request");
            })
            .await
    }

    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T, HubSpotError> {
        let mut req = req.header(header::ACCEPT, "application/json");
        if !self.config.token.is_empty() {
            req = req.bearer_auth(self.config.token.expose());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| HubSpotError::Transport(e.without_url().to_string()))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| HubSpotError::Transport(format!("reading the body: {}", e.without_url())))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| HubSpotError::Decode {
                status: status.as_u16(),
                message: format!("{e}; body starts {:?}", preview(&bytes)),
            });
        }
        let body: Option<ErrorBody> = serde_json::from_slice(&bytes).ok();
        let message = body
            .as_ref()
            .map(|b| b.message.clone())
            .unwrap_or_else(|| preview(&bytes));
        Err(match status {
            StatusCode::TOO_MANY_REQUESTS => HubSpotError::RateLimited {
                policy: body
                    .as_ref()
                    .and_then(|b| b.policy_name.clone())
                    .unwrap_or_else(|| "unknown".into()),
                retry_after: retry_after(&headers),
            },
            StatusCode::UNAUTHORIZED => HubSpotError::Unauthorized(message),
            s if s.is_server_error() => HubSpotError::Server {
                status: s.as_u16(),
                message,
            },
            s => HubSpotError::Rejected {
                status: s.as_u16(),
                category: body
                    .as_ref()
                    .and_then(|b| b.category.clone())
                    .unwrap_or_else(|| "UNKNOWN".into()),
                message,
                correlation_id: body.map(|b| b.correlation_id).unwrap_or_default(),
            },
        })
    }
}

/// `Retry-After` when sent; otherwise a share of the rolling interval HubSpot reports.
fn retry_after(headers: &header::HeaderMap) -> Duration {
    let num = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    if let Some(secs) = num("retry-after") {
        return Duration::from_secs(secs);
    }
    match num(wire::headers::RATE_INTERVAL_MS) {
        // A quarter of the rolling window: a few tries span the whole window.
        Some(ms) => Duration::from_millis(ms / 4),
        None => Duration::from_secs(1),
    }
}

fn preview(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(120)]);
    text.into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let c = ClientConfig {
            token: Secret::new("pat-na1-very-secret"),
            ..Default::default()
        };
        assert!(!format!("{c:?}").contains("very-secret"));
    }

    #[test]
    fn retry_after_prefers_the_header() {
        let mut h = header::HeaderMap::new();
        assert_eq!(retry_after(&h), Duration::from_secs(1));
        h.insert(wire::headers::RATE_INTERVAL_MS, "10000".parse().unwrap());
        assert_eq!(retry_after(&h), Duration::from_millis(2500));
        h.insert("retry-after", "3".parse().unwrap());
        assert_eq!(retry_after(&h), Duration::from_secs(3));
    }
}
