//! What stands between a CRM request and its handler, in HubSpot's order: count it, refuse
//! an over-long URL, check the bearer token, charge the rate limit, wait the latency, then
//! maybe fault. `/_sim/*` never passes through here.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use wire::headers;

use super::config::{FaultKind, FaultKinds};
use super::errors::ApiError;
use super::faults;
use super::limits::{DAILY_LIMIT, GENERAL_WINDOW};
use super::server::{AppState, CRM_BASE_PATH, CRM_V4_BASE_PATH};
use super::stats::Endpoint;

/// The longest CRM request target (path plus `?` and query string, as sent, percent-encoding
/// included) served; a longer one is answered `414 URI Too Long` before auth and limits, as
/// HubSpot's edge does (users measured about 15-16k characters; `properties=` lists of
/// hundreds of custom properties reach it). A client must chunk its property lists or use
/// batch read, whose properties travel in the body.
pub const URL_LIMIT_CHARS: usize = 15_000;

/// The length of a request target as the limit counts it.
fn target_len(uri: &axum::http::Uri) -> usize {
    uri.path_and_query()
        .map(|pq| pq.as_str().len())
        .unwrap_or_else(|| uri.path().len())
}

/// Which endpoint a request is for, from its method and path.
fn classify(method: &Method, path: &str) -> Endpoint {
    if let Some(rest) = path.strip_prefix(CRM_V4_BASE_PATH) {
        let segments: Vec<&str> = rest.trim_matches('/').split('/').collect();
        return match (method, segments.as_slice()) {
            (&Method::POST, ["associations", _, _, "batch", "read"]) => Endpoint::Associations,
            _ => Endpoint::Other,
        };
    }
    let Some(rest) = path.strip_prefix(CRM_BASE_PATH) else {
        return Endpoint::Other;
    };
    let segments: Vec<&str> = rest.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (&Method::GET, ["objects", _]) => Endpoint::List,
        (&Method::POST, ["objects", _, "search"]) => Endpoint::Search,
        (&Method::POST, ["objects", _, "batch", "read"]) => Endpoint::BatchRead,
        (&Method::GET, ["properties", _]) => Endpoint::Properties,
        (&Method::GET, ["schemas"] | ["schemas", _]) => Endpoint::Schemas,
        (&Method::GET, ["owners"]) => Endpoint::Owners,
        (&Method::GET, ["pipelines", _]) => Endpoint::Pipelines,
        _ => Endpoint::Other,
    }
}

fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    match value.split_once(' ') {
        Some((scheme, given)) => scheme.eq_ignore_ascii_case("bearer") && given.trim() == token,
        None => false,
    }
}

/// The `X-HubSpot-RateLimit-*` headers of an ordinary response.
fn rate_headers(response: &mut Response, max: u32, remaining: u32, daily_used: u64) {
    let h = response.headers_mut();
    let mut put = |name: &'static str, value: u64| {
        h.insert(name, HeaderValue::from(value));
    };
    put(headers::RATE_MAX, u64::from(max));
    put(headers::RATE_REMAINING, u64::from(remaining));
    put(headers::RATE_INTERVAL_MS, GENERAL_WINDOW.as_millis() as u64);
    put(headers::RATE_DAILY, DAILY_LIMIT);
    put(
        headers::RATE_DAILY_REMAINING,
        DAILY_LIMIT.saturating_sub(daily_used),
    );
}

/// The middleware over every CRM route.
pub async fn gate(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let endpoint = classify(request.method(), request.uri().path());
    state.stats.request(endpoint);
    if target_len(request.uri()) > URL_LIMIT_CHARS {
        state.stats.uri_too_long();
        return ApiError::uri_too_long(target_len(request.uri())).into_response();
    }
    if let Some(token) = &state.token {
        if !authorized(request.headers(), token.expose()) {
            state.stats.unauthorized();
            return ApiError::unauthorized().into_response();
        }
    }
    let cfg = state.runtime();
    let now = Instant::now();
    // Limits are off altogether at rate_limit 0 (benchmarks); search has its own window.
    let mut budget = None;
    if cfg.rate_limit > 0 && endpoint == Endpoint::Search && cfg.search_rate > 0 {
        if let Err(policy) = state.limits.acquire_search(now, cfg.search_rate) {
            state.stats.rate_limited(policy);
            return ApiError::rate_limited(policy).into_response();
        }
    } else if cfg.rate_limit > 0 && endpoint != Endpoint::Search {
        match state.limits.acquire_general(now, cfg.rate_limit) {
            Ok(remaining) => budget = Some(remaining),
            Err(policy) => {
                state.stats.rate_limited(policy);
                let mut response = ApiError::rate_limited(policy).into_response();
                rate_headers(&mut response, cfg.rate_limit, 0, state.daily_used.load(Relaxed));
                return response;
            }
        }
        state.daily_used.fetch_add(1, Relaxed);
    }
    if cfg.latency_ms > 0 {
        tokio::time::sleep(state.jittered(Duration::from_millis(cfg.latency_ms))).await;
    }
    let fault = state.faults.draw(cfg.fault_rate, cfg.fault_kinds).or_else(|| {
        state.faults.draw(
            cfg.malformed_rate,
            FaultKinds::from_kinds(&[FaultKind::Malformed]),
        )
    });
    let mut response = match fault {
        Some(fault) => {
            state.stats.fault(fault.kind());
            if fault.replaces_handler() {
                faults::replacement(fault)
            } else {
                faults::mangle(fault, next.run(request).await).await
            }
        }
        None => next.run(request).await,
    };
    if let Some(remaining) = budget {
        rate_headers(
            &mut response,
            cfg.rate_limit,
            remaining,
            state.daily_used.load(Relaxed),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_endpoints_and_checks_bearer_tokens() {
        assert_eq!(classify(&Method::GET, "/crm/v3/objects/deals"), Endpoint::List);
        assert_eq!(
            classify(&Method::POST, "/crm/v3/objects/0-3/search"),
            Endpoint::Search
        );
        assert_eq!(
            classify(&Method::GET, "/crm/v3/properties/deals"),
            Endpoint::Properties
        );
        assert_eq!(
            classify(&Method::GET, "/crm/v3/objects/deals/12"),
            Endpoint::Other
        );
        assert_eq!(
            classify(&Method::POST, "/crm/v3/objects/2-3508482/batch/read"),
            Endpoint::BatchRead
        );
        assert_eq!(classify(&Method::GET, "/crm/v3/schemas"), Endpoint::Schemas);
        let mut h = HeaderMap::new();
        assert!(!authorized(&h, "t"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        assert!(authorized(&h, "t"));
        assert!(!authorized(&h, "u"));
    }

    #[test]
    fn target_length_counts_path_and_query() {
        let uri: axum::http::Uri = "/crm/v3/objects/deals?properties=a,b".parse().unwrap();
        assert_eq!(target_len(&uri), "/crm/v3/objects/deals?properties=a,b".len());
    }
}
