//! The HubSpot CRM v3 client the consumer and producer use: list and search pages, property
//! definitions, timeouts, and retries with exponential backoff and jitter (`backon`) on 429,
//! 5xx, connection errors and unreadable bodies. Every answer goes through the rate budget
//! first (`adapt`): a 429 pauses its window for every task of the process, not only the
//! request that met it, which retries as any other; a DAILY 429 fails at once (R4).
//! The token lives in a [`Secret`] and is never logged.

use std::collections::BTreeMap;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::{header, StatusCode};
use serde::de::DeserializeOwned;

use crate::adapt::{Policy, RateSignals};
use crate::error::HubSpotError;
use crate::rate::{RateBudget, Window};
pub use wire::Secret;
use wire::{self, ErrorBody, ListResponse, Paging, PropertiesResponse, SearchRequest, SearchResponse};

/// HubSpot's own API host.
pub const DEFAULT_BASE_URL: &str = "https://api.hubapi.com";
/// The objects path; HubSpot also serves date-versioned paths (`/crm/objects/2026-03`).
pub const DEFAULT_OBJECTS_PATH: &str = "/crm/v3/objects";
/// Longest `properties=` value sent in one list URL, as encoded (HubSpot answers 414 near 15k
/// characters); the properties past it are read by batch read, in the body.
const MAX_PROPERTIES_CHARS: usize = 12_000;

/// The length of `properties` joined by commas in a query string (a comma encodes as `%2C`).
fn encoded_len(properties: &[String]) -> usize {
    properties.iter().map(String::len).sum::<usize>() + 3 * properties.len().saturating_sub(1)
}

/// Splits `properties` into those one list URL carries (from the front, so the created and
/// modified properties the caller puts first are always among them) and the rest.
fn split_for_url(properties: &[String]) -> (&[String], &[String]) {
    let mut len = 0;
    for (i, p) in properties.iter().enumerate() {
        len += p.len() + if i == 0 { 0 } else { 3 };
        if len > MAX_PROPERTIES_CHARS {
            return properties.split_at(i.max(1));
        }
    }
    (properties, &[])
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

    /// One page of `GET /crm/v3/objects/{type}`, every record whole: when `properties` do not
    /// fit one URL (hundreds of them), the page is listed with those that fit and the rest are
    /// read for its ids with [`HubSpotClient::batch_read`], joined by id. A record the batch read
    /// does not return (archived in between) fails the page, which is retried: no record is
    /// staged with part of its properties.
    pub async fn list_page(
        &self,
        object_type: &str,
        properties: &[String],
        after: Option<&str>,
        archived: bool,
        limit: u32,
    ) -> Result<ListResponse, HubSpotError> {
        let (first, rest) = split_for_url(properties);
        let mut page = self
            .list_page_in_url(object_type, first, after, archived, limit)
            .await?;
        if rest.is_empty() || page.results.is_empty() {
            return Ok(page);
        }
        let ids: Vec<String> = page.results.iter().map(|r| r.id.clone()).collect();
        let mut more: std::collections::HashMap<String, wire::ObjectRecord> =
            std::collections::HashMap::new();
        for chunk in ids.chunks(wire::BATCH_READ_MAX) {
            let got = self.batch_read(object_type, chunk, rest, archived).await?;
            more.extend(got.results.into_iter().map(|r| (r.id.clone(), r)));
        }
        for record in &mut page.results {
            let Some(extra) = more.remove(&record.id) else {
                return Err(HubSpotError::Incomplete(format!(
                    "{object_type} {} was listed and then not returned by the batch read of its                      other {} properties; retrying the page",
                    record.id,
                    rest.len()
                )));
            };
            for name in rest {
                let value = extra.properties.get(name).cloned().flatten();
                record.properties.insert(name.clone(), value);
            }
        }
        Ok(page)
    }

    /// `POST /crm/v3/objects/{type}/batch/read`: `properties` of up to 100 `ids`, in the body
    /// (no URL limit). Ids HubSpot does not find are missing from the results (its 207).
    pub async fn batch_read(
        &self,
        object_type: &str,
        ids: &[String],
        properties: &[String],
        archived: bool,
    ) -> Result<wire::BatchReadResponse, HubSpotError> {
        let url = format!("{}/batch/read", self.objects_url(object_type));
        let body = wire::BatchReadRequest {
            properties: properties.to_vec(),
            properties_with_history: Vec::new(),
            inputs: ids.iter().map(|id| wire::BatchId { id: id.clone() }).collect(),
        };
        let archived = archived.to_string();
        self.with_retries(|| async {
            self.budget.general.acquire().await;
            let req = self.http.post(&url).query(&[("archived", &archived)]).json(&body);
            self.send(req, Window::General).await
        })
        .await
    }

    /// One list request, its properties in the URL.
    async fn list_page_in_url(
        &self,
        object_type: &str,
        properties: &[String],
        after: Option<&str>,
        archived: bool,
        limit: u32,
    ) -> Result<ListResponse, HubSpotError> {
        let props = properties.join(",");
        if encoded_len(properties) > MAX_PROPERTIES_CHARS {
            return Err(HubSpotError::Invalid(format!(
                "property `{}` alone makes a {}-character URL (HubSpot's limit is about 15k)",
                properties.first().map(String::as_str).unwrap_or_default(),
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
            self.send(req, Window::General).await
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
            self.send(self.http.post(&url).json(request), Window::Search)
                .await
        })
        .await
    }

    /// The links of each of `ids` (of `from`) to `to`, every page of them:
    /// `POST /crm/v4/associations/{from}/{to}/batch/read`, [`wire::ASSOCIATIONS_BATCH_MAX`]
    /// ids a request, then the ids whose answer had more links (`paging.next.after`) again
    /// with their cursors. An id with no links (HubSpot answers it among a 207's errors, not
    /// in `results`) maps to an empty list; every id asked for is in the answer.
    pub async fn associations(
        &self,
        from: &str,
        to: &str,
        ids: &[String],
    ) -> Result<BTreeMap<String, Vec<wire::AssociationTo>>, HubSpotError> {
        let url = format!(
            "{}/crm/v4/associations/{from}/{to}/batch/read",
            self.config.base_url.trim_end_matches('/')
        );
        let mut out: BTreeMap<String, Vec<wire::AssociationTo>> =
            ids.iter().map(|id| (id.trim().to_string(), Vec::new())).collect();
        let mut pending: Vec<wire::AssociationInput> = out
            .keys()
            .map(|id| wire::AssociationInput {
                id: id.clone(),
                after: None,
            })
            .collect();
        while !pending.is_empty() {
            let take = pending.len().min(wire::ASSOCIATIONS_BATCH_MAX);
            let body = wire::AssociationsRequest {
                inputs: pending.drain(..take).collect(),
            };
            let asked: std::collections::BTreeSet<String> =
                body.inputs.iter().map(|i| i.id.clone()).collect();
            let resp: wire::AssociationsResponse = self
                .with_retries(|| async {
                    self.budget.general.acquire().await;
                    self.send(self.http.post(&url).json(&body), Window::General).await
                })
                .await?;
            for result in resp.results {
                let id = result.from.id.trim().to_string();
                if !asked.contains(&id) {
                    return Err(HubSpotError::Incomplete(format!(
                        "association batch read of {from}→{to} answered id {id}, which was not asked for"
                    )));
                }
                if let Some(after) = Paging::next_after(&result.paging) {
                    pending.push(wire::AssociationInput {
                        id: id.clone(),
                        after: Some(after.to_string()),
                    });
                }
                out.entry(id).or_default().extend(result.to);
            }
        }
        Ok(out)
    }

    /// Every owner, `GET /crm/v3/owners` paged: the active ones, then (`archived=true`) the
    /// archived ones (HubSpot lists each set on its own).
    pub async fn owners(&self) -> Result<Vec<wire::Owner>, HubSpotError> {
        let url = format!("{}/crm/v3/owners", self.config.base_url.trim_end_matches('/'));
        let mut owners = Vec::new();
        for archived in ["false", "true"] {
            let mut after: Option<String> = None;
            loop {
                let limit = wire::OWNERS_PAGE_MAX.to_string();
                let page: wire::OwnersResponse = self
                    .with_retries(|| async {
                        self.budget.general.acquire().await;
                        let mut query = vec![("limit", limit.as_str()), ("archived", archived)];
                        if let Some(a) = &after {
                            query.push(("after", a.as_str()));
                        }
                        self.send(self.http.get(&url).query(&query), Window::General)
                            .await
                    })
                    .await?;
                owners.extend(page.results);
                match Paging::next_after(&page.paging) {
                    Some(next) => after = Some(next.to_string()),
                    None => break,
                }
            }
        }
        Ok(owners)
    }

    /// `GET /crm/v3/pipelines/{type}`: the type's pipelines with their stages.
    pub async fn pipelines(&self, object_type: &str) -> Result<Vec<wire::Pipeline>, HubSpotError> {
        let url = format!(
            "{}/crm/v3/pipelines/{object_type}",
            self.config.base_url.trim_end_matches('/')
        );
        let resp: wire::PipelinesResponse = self
            .with_retries(|| async {
                self.budget.general.acquire().await;
                self.send(self.http.get(&url), Window::General).await
            })
            .await?;
        Ok(resp.results)
    }

    /// `GET /crm/v3/schemas`: the portal's custom object types.
    pub async fn schemas(&self) -> Result<wire::SchemasResponse, HubSpotError> {
        let url = format!("{}/crm/v3/schemas", self.config.base_url.trim_end_matches('/'));
        self.with_retries(|| async {
            self.budget.general.acquire().await;
            self.send(self.http.get(&url), Window::General).await
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
            self.send(self.http.get(&url), Window::General).await
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

    /// Sends a request drawn from `endpoint`'s window and reads its answer.
    async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        endpoint: Window,
    ) -> Result<T, HubSpotError> {
        let started = std::time::Instant::now();
        let answer = self.exchange(req, endpoint).await;
        let window = endpoint.name();
        metrics::histogram!(common::metrics::HUBSPOT_REQUEST_SECONDS, "window" => window)
            .record(started.elapsed().as_secs_f64());
        let outcome = match &answer {
            Ok(_) => "ok",
            Err(e) => e.outcome(),
        };
        metrics::counter!(common::metrics::HUBSPOT_REQUESTS, "window" => window, "outcome" => outcome)
            .increment(1);
        answer
    }

    async fn exchange<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        endpoint: Window,
    ) -> Result<T, HubSpotError> {
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
        self.answer(endpoint, status, &headers, &bytes)
    }

    /// Teaches the budget what the answer says about the account's limits, then decodes it.
    fn answer<T: DeserializeOwned>(
        &self,
        endpoint: Window,
        status: StatusCode,
        headers: &header::HeaderMap,
        bytes: &[u8],
    ) -> Result<T, HubSpotError> {
        let signals = RateSignals::from_headers(headers);
        if status.is_success() {
            self.budget.observe(endpoint, &signals, None);
            return serde_json::from_slice(bytes).map_err(|e| HubSpotError::Decode {
                status: status.as_u16(),
                message: format!("{e}; body starts {:?}", preview(bytes)),
            });
        }
        let body: Option<ErrorBody> = serde_json::from_slice(bytes).ok();
        let message = body
            .as_ref()
            .map(|b| b.message.clone())
            .unwrap_or_else(|| preview(bytes));
        if status == StatusCode::TOO_MANY_REQUESTS {
            let policy = Policy::from_name(body.as_ref().and_then(|b| b.policy_name.as_deref()));
            self.budget.observe(endpoint, &signals, Some(&policy));
            if policy == Policy::Daily {
                tracing::error!(
                    daily_limit = signals.daily,
                    "HubSpot's daily request limit is spent; failing the request without retrying \
                     (it resets at midnight in the account's time zone)"
                );
                return Err(HubSpotError::DailyLimit {
                    daily_limit: signals.daily,
                    message,
                });
            }
            return Err(HubSpotError::RateLimited {
                policy: policy.name().to_string(),
                retry_after: signals.back_off(),
            });
        }
        self.budget.observe(endpoint, &signals, None);
        Err(match status {
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

fn preview(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(120)]);
    text.into_owned()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::time::Instant;

    use super::*;
    use wire::headers;

    #[test]
    fn long_property_lists_split_at_the_url_budget() {
        let props: Vec<String> = (0..700).map(|i| format!("custom_property_{i:04}")).collect();
        let (first, rest) = split_for_url(&props);
        assert!(encoded_len(first) <= MAX_PROPERTIES_CHARS);
        assert!(!rest.is_empty());
        assert_eq!(first.len() + rest.len(), 700);
        assert_eq!(first[0], "custom_property_0000", "the front stays first");
        let few = &props[..10];
        assert_eq!(split_for_url(few), (few, &[][..]));
    }

    #[test]
    fn secrets_never_print() {
        let c = ClientConfig {
            token: Secret::new("pat-na1-very-secret"),
            ..Default::default()
        };
        assert!(!format!("{c:?}").contains("very-secret"));
    }

    fn client_for_test() -> HubSpotClient {
        let config = ClientConfig {
            max_retries: 4,
            min_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(5),
            ..Default::default()
        };
        HubSpotClient::new(config, RateBudget::new(190, 5)).unwrap()
    }

    fn header_map(pairs: &[(&'static str, &'static str)]) -> header::HeaderMap {
        let mut h = header::HeaderMap::new();
        for (name, value) in pairs {
            h.insert(*name, header::HeaderValue::from_static(value));
        }
        h
    }

    /// A 429 with these headers and HubSpot's body naming `policy` (none: an empty body).
    fn refused<T: DeserializeOwned>(
        c: &HubSpotClient,
        endpoint: Window,
        pairs: &[(&'static str, &'static str)],
        policy: Option<&str>,
    ) -> Result<T, HubSpotError> {
        let body = policy.map(|p| {
            serde_json::json!({"status": "error", "message": "limit reached",
            "errorType": "RATE_LIMIT", "correlationId": "c0ffee", "policyName": p})
        });
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        c.answer(
            endpoint,
            StatusCode::TOO_MANY_REQUESTS,
            &header_map(pairs),
            bytes.as_bytes(),
        )
    }

    const EMPTY_PAGE: &[u8] = br#"{"results":[]}"#;
    const TEN_SECONDS: (&str, &str) = (headers::RATE_INTERVAL_MS, "10000");

    #[tokio::test(start_paused = true)]
    async fn ordinary_answers_teach_the_general_budget() {
        let c = client_for_test();
        let h = header_map(&[
            (headers::RATE_MAX, "100"),
            (headers::RATE_REMAINING, "0"),
            TEN_SECONDS,
        ]);
        let page: ListResponse = c.answer(Window::General, StatusCode::OK, &h, EMPTY_PAGE).unwrap();
        assert!(page.results.is_empty());
        assert_eq!(
            c.budget().general.share(),
            100,
            "a Starter account configured at 190"
        );
        assert_eq!(c.budget().general.paused_for(), Some(Duration::from_secs(1)));
        assert_eq!(c.budget().search.paused_for(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_pauses_every_task_of_its_window_and_the_request_retries() {
        let c = client_for_test();
        let attempts = AtomicUsize::new(0);
        let start = Instant::now();
        let sibling = |window: Window| {
            let budget = c.budget().clone();
            tokio::spawn(async move {
                // Asks after the refusal, as another task of the process would.
                tokio::time::sleep(Duration::from_millis(100)).await;
                budget.window(window).acquire().await;
                start.elapsed()
            })
        };
        let (general, search) = (sibling(Window::General), sibling(Window::Search));
        let page: ListResponse = c
            .with_retries(|| async {
                c.budget().general.acquire().await;
                match attempts.fetch_add(1, Ordering::Relaxed) {
                    0 => refused(&c, Window::General, &[TEN_SECONDS], Some("TEN_SECONDLY_ROLLING")),
                    _ => c.answer(Window::General, StatusCode::OK, &header_map(&[]), EMPTY_PAGE),
                }
            })
            .await
            .unwrap();
        assert!(page.results.is_empty());
        assert_eq!(attempts.load(Ordering::Relaxed), 2, "retried as before");
        assert!(
            start.elapsed() >= Duration::from_millis(2500),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(
            general.await.unwrap(),
            Duration::from_millis(2500),
            "held by the pause"
        );
        assert_eq!(search.await.unwrap(), Duration::from_millis(100), "counted apart");
    }

    #[tokio::test(start_paused = true)]
    async fn a_search_refusal_without_a_policy_pauses_search_only() {
        let c = client_for_test();
        let err = refused::<SearchResponse>(&c, Window::Search, &[], None).unwrap_err();
        assert!(
            matches!(&err, HubSpotError::RateLimited { policy, .. } if policy == "unknown"),
            "{err:?}"
        );
        assert!(err.is_retryable());
        assert_eq!(c.budget().search.paused_for(), Some(Duration::from_secs(1)));
        assert_eq!(c.budget().general.paused_for(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_daily_limit_fails_at_once_without_retrying_r4() {
        let c = client_for_test();
        let attempts = AtomicUsize::new(0);
        let start = Instant::now();
        let daily = [
            (headers::RATE_DAILY, "250000"),
            (headers::RATE_DAILY_REMAINING, "0"),
        ];
        let err = c
            .with_retries(|| async {
                attempts.fetch_add(1, Ordering::Relaxed);
                refused::<ListResponse>(&c, Window::General, &daily, Some("DAILY"))
            })
            .await
            .unwrap_err();
        let limit = match &err {
            HubSpotError::DailyLimit { daily_limit, .. } => *daily_limit,
            other => panic!("{other:?}"),
        };
        assert_eq!(limit, Some(250_000));
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("250000 requests a day"), "{err}");
        assert_eq!(attempts.load(Ordering::Relaxed), 1, "not retried");
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(c.budget().general.paused_for(), None);
    }
}
