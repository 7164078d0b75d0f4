//! Over-HTTP tests of the routes added beside list and search: the URL limit, batch read,
//! schemas, custom objects under both their names, and property archives. A bare HTTP/1.1
//! client over a TCP stream keeps the crate free of an HTTP client dependency.

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wire::{BatchReadResponse, ListResponse, PropertiesResponse, SchemasResponse};

use crate::config::{RuntimeConfig, SimConfig, TypeCount, DEFAULT_PORTAL_ID};
use crate::gate::URL_LIMIT_CHARS;
use crate::mutate::{MutateRequest, PropertyName};
use crate::server::{start, SimServer};
use crate::ObjectType;

async fn sim_for_test() -> SimServer {
    let config = SimConfig {
        records_per_type: 30,
        object_types: vec![ObjectType::Deals, ObjectType::Tickets],
        custom_objects: vec![TypeCount {
            object_type: ObjectType::Cars,
            count: 25,
        }],
        runtime: RuntimeConfig {
            rate_limit: 0,
            ..RuntimeConfig::default()
        },
        ..SimConfig::default()
    };
    start(config).await.expect("simulator starts")
}

/// One request; the status and the body.
async fn call(s: &SimServer, method: &str, target: &str, body: Option<Value>) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(s.addr()).await.expect("connect");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: sim\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(body.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (headers, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    (status, body)
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

#[tokio::test]
async fn urls_over_the_limit_are_414_and_at_it_are_served() {
    let s = sim_for_test().await;
    let base = "/crm/v3/objects/deals?properties=";
    let at = format!("{base}{}", "a".repeat(URL_LIMIT_CHARS - base.len()));
    assert_eq!(at.len(), URL_LIMIT_CHARS);
    let (status, _) = call(&s, "GET", &at, None).await;
    assert_eq!(status, 200, "at the limit");
    let over = format!("{at}b");
    let (status, body) = call(&s, "GET", &over, None).await;
    assert_eq!(status, 414);
    let err: wire::ErrorBody = serde_json::from_str(&body).expect("HubSpot error body");
    assert_eq!(err.category.as_deref(), Some("URI_TOO_LONG"));
    assert!(!err.correlation_id.is_empty());
    assert_eq!(s.stats().uri_too_long, 1);
}

#[tokio::test]
async fn custom_objects_are_listed_in_schemas_and_served_by_both_names() {
    let s = sim_for_test().await;
    let (status, body) = call(&s, "GET", "/crm/v3/schemas", None).await;
    assert_eq!(status, 200);
    let schemas: SchemasResponse = serde_json::from_str(&body).expect("schemas");
    let json: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(serde_json::to_value(&schemas).expect("json"), json, "round-trips");
    assert_eq!(schemas.results.len(), 1);
    let cars = &schemas.results[0];
    let fqn = format!("p{DEFAULT_PORTAL_ID}_cars");
    assert_eq!(
        (cars.name.as_str(), cars.object_type_id.as_str()),
        ("cars", "2-3508482")
    );
    assert_eq!(cars.fully_qualified_name, fqn);
    assert_eq!(cars.primary_display_property.as_deref(), Some("model"));
    assert!(cars.properties.iter().any(|p| p.name == "vin"));
    for raw in [cars.object_type_id.as_str(), fqn.as_str()] {
        let target = format!("/crm/v3/objects/{raw}?limit=100&properties=model,year,hs_createdate");
        let (status, body) = call(&s, "GET", &target, None).await;
        assert_eq!(status, 200, "{raw}");
        let page: ListResponse = serde_json::from_str(&body).expect("list");
        assert_eq!(page.results.len(), 25);
        assert!(page.results.iter().all(|r| r.properties["model"].is_some()));
        let (status, _) = call(&s, "GET", &format!("/crm/v3/properties/{raw}"), None).await;
        assert_eq!(status, 200);
        let search = json!({"limit": 5, "properties": ["model"]});
        let (status, _) = call(&s, "POST", &format!("/crm/v3/objects/{raw}/search"), Some(search)).await;
        assert_eq!(status, 200);
    }
    for not_served in ["cars", "p1_cars", "2-3508519"] {
        let (status, _) = call(&s, "GET", &format!("/crm/v3/objects/{not_served}"), None).await;
        assert_eq!(status, 404, "{not_served}");
    }
    assert_eq!(s.truth("cars").expect("truth").len(), 25);
    assert_eq!(s.truth(&fqn).expect("truth").len(), 25);
    assert!(s.truth("shipments").is_err(), "P4: not enabled");
    let out = s
        .mutate(&MutateRequest {
            object_type: "2-3508482".into(),
            updates: 2,
            creates: 1,
            ..Default::default()
        })
        .await
        .expect("mutate a custom object");
    assert_eq!((out.updated.len(), out.created.len()), (2, 1));
    assert_eq!(s.truth("cars").expect("truth").len(), 26);
}

#[tokio::test]
async fn batch_read_answers_207_over_http_and_counts_as_general() {
    let s = sim_for_test().await;
    let truth = s.truth("tickets").expect("truth");
    let body = json!({
        "properties": ["subject", "hs_ticket_category"],
        "inputs": [{"id": truth[0].id}, {"id": "1"}],
    });
    let (status, text) = call(&s, "POST", "/crm/v3/objects/tickets/batch/read", Some(body)).await;
    assert_eq!(status, 207);
    let out: BatchReadResponse = serde_json::from_str(&text).expect("batch read");
    assert_eq!((out.results.len(), out.num_errors), (1, Some(1)));
    assert_eq!(
        out.results[0].properties["subject"],
        truth[0].properties["subject"]
    );
    let inputs: Vec<Value> = (0..101).map(|i| json!({"id": i.to_string()})).collect();
    let too_many = json!({"properties": [], "inputs": inputs});
    let (status, _) = call(&s, "POST", "/crm/v3/objects/0-5/batch/read", Some(too_many)).await;
    assert_eq!(status, 400);
    assert_eq!(s.stats().by_endpoint.batch_read, 2);
}

#[tokio::test]
async fn archived_properties_are_listed_only_when_asked() {
    let s = sim_for_test().await;
    s.mutate(&MutateRequest {
        object_type: "deals".into(),
        archive_property: Some(PropertyName {
            name: "dealtype".into(),
        }),
        ..Default::default()
    })
    .await
    .expect("archive");
    let list = |archived: bool| {
        let s = &s;
        async move {
            let target = format!("/crm/v3/properties/deals?archived={archived}");
            let (_, body) = call(s, "GET", &target, None).await;
            serde_json::from_str::<PropertiesResponse>(&body).expect("properties")
        }
    };
    assert!(list(false).await.results.iter().all(|p| p.name != "dealtype"));
    let archived = list(true).await.results;
    assert!(archived.len() == 1 && archived[0].archived && archived[0].name == "dealtype");
    let truth = s.truth("deals").expect("truth");
    assert!(truth.iter().all(|r| !r.properties.contains_key("dealtype")));
    let bad = MutateRequest {
        object_type: "deals".into(),
        archive_property: Some(PropertyName { name: "nope".into() }),
        ..Default::default()
    };
    let (status, _) = call(
        &s,
        "POST",
        "/_sim/mutate",
        Some(serde_json::to_value(&bad).expect("json")),
    )
    .await;
    assert_eq!(status, 400);
}
