//! The HubSpot simulator over real HTTP: every behaviour hubsync's client depends on
//! (`shared/HUBSPOT.md`), checked against the simulator's own truth. Helpers here, tests by
//! endpoint in `sim/`.

mod chaos;
mod list;
mod portal;
mod search;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use sim::{
    self, ConfigPatch, FaultKind, MutateRequest, MutateResponse, ObjectType, RuntimeConfig, Secret,
    SimConfig, SimServer, SimStats,
};
use wire::{
    headers, parse_ms, Direction, ErrorBody, Filter, FilterGroup, ListResponse, ObjectRecord, Operator,
    Paging, PropertiesResponse, SearchRequest, SearchResponse, Sort,
};

/// A simulator with every limit off (tests that need limits turn them on).
async fn start(records: u64, types: &[ObjectType], tweak: impl FnOnce(&mut SimConfig)) -> SimServer {
    let mut config = SimConfig {
        records_per_type: records,
        object_types: types.to_vec(),
        runtime: RuntimeConfig {
            rate_limit: 0,
            ..RuntimeConfig::default()
        },
        ..SimConfig::default()
    };
    tweak(&mut config);
    sim::start(config).await.expect("simulator starts")
}

fn url(server: &SimServer, path: &str) -> String {
    format!(
        "{}{}{path}",
        server.base_url(),
        if path.starts_with("/_sim") {
            ""
        } else {
            sim::CRM_BASE_PATH
        }
    )
}

async fn get_list(c: &Client, s: &SimServer, t: &str, query: &[(&str, &str)]) -> ListResponse {
    let r = c
        .get(url(s, &format!("/objects/{t}")))
        .query(query)
        .send()
        .await
        .expect("list request");
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.expect("list body")
}

/// Pages the list endpoint to the end, 100 at a time.
async fn list_all(c: &Client, s: &SimServer, t: &str, extra: &[(&str, &str)]) -> Vec<ObjectRecord> {
    let (mut out, mut after) = (Vec::new(), None::<String>);
    loop {
        let mut q = vec![("limit", "100")];
        q.extend_from_slice(extra);
        if let Some(a) = &after {
            q.push(("after", a.as_str()));
        }
        let page = get_list(c, s, t, &q).await;
        out.extend(page.results);
        match Paging::next_after(&page.paging) {
            Some(a) => after = Some(a.to_string()),
            None => return out,
        }
    }
}

async fn search(c: &Client, s: &SimServer, t: &str, req: &SearchRequest) -> reqwest::Response {
    c.post(url(s, &format!("/objects/{t}/search")))
        .json(req)
        .send()
        .await
        .expect("search request")
}

/// Pages a search to the end (200 at a time); returns the total and the ids in order.
async fn search_ids(c: &Client, s: &SimServer, t: &str, mut req: SearchRequest) -> (u64, Vec<String>) {
    req.limit = Some(200);
    let mut ids = Vec::new();
    loop {
        let r = search(c, s, t, &req).await;
        assert_eq!(r.status(), StatusCode::OK);
        let page: SearchResponse = r.json().await.expect("search body");
        ids.extend(page.results.into_iter().map(|r| r.id));
        match Paging::next_after(&page.paging) {
            Some(a) => req.after = Some(a.to_string()),
            None => return (page.total, ids),
        }
    }
}

fn filters(filters: Vec<Filter>) -> SearchRequest {
    SearchRequest {
        filter_groups: vec![FilterGroup { filters }],
        ..SearchRequest::default()
    }
}

async fn error_body(r: reqwest::Response) -> ErrorBody {
    let body: ErrorBody = r.json().await.expect("a HubSpot error body");
    assert_eq!(body.status, "error");
    assert_eq!(body.correlation_id.len(), 36, "correlationId is a UUID");
    assert!(!body.message.is_empty());
    body
}

async fn mutate(c: &Client, s: &SimServer, req: MutateRequest) -> MutateResponse {
    let r = c
        .post(url(s, "/_sim/mutate"))
        .json(&req)
        .send()
        .await
        .expect("mutate");
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.expect("mutate body")
}

fn ms(record: &ObjectRecord, property: &str) -> i64 {
    let raw = record
        .properties
        .get(property)
        .cloned()
        .flatten()
        .unwrap_or_default();
    parse_ms(&raw).unwrap_or_else(|| panic!("{property} of {} is not a timestamp: {raw:?}", record.id))
}

/// Waits for a condition, polling, up to `timeout`.
async fn eventually<F: std::future::Future<Output = bool>>(
    timeout: Duration,
    mut check: impl FnMut() -> F,
) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
