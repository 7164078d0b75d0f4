//! Auth, rate limits, faults and latency, as a client sees them.

use super::*;

#[tokio::test]
async fn bearer_token_is_required_when_set() {
    let s = start(5, &[ObjectType::Deals], |c| {
        c.token = Some(Secret::new("pat-na1-secret"))
    })
    .await;
    let c = Client::new();
    let r = c.get(url(&s, "/objects/deals")).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        error_body(r).await.category.as_deref(),
        Some("INVALID_AUTHENTICATION")
    );
    let r = c
        .get(url(&s, "/objects/deals"))
        .bearer_auth("wrong")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c
        .get(url(&s, "/objects/deals"))
        .bearer_auth("pat-na1-secret")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let r = c.get(url(&s, "/_sim/stats")).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::OK, "/_sim needs no token");
    assert_eq!(s.stats().unauthorized, 2);
}

fn header(r: &reqwest::Response, name: &str) -> Option<u64> {
    r.headers().get(name)?.to_str().ok()?.parse().ok()
}

#[tokio::test]
async fn bursts_get_429_with_hubspot_body_and_headers() {
    let s = start(5, &[ObjectType::Deals], |c| {
        c.runtime.rate_limit = 5;
        c.runtime.search_rate = 2;
    })
    .await;
    let c = Client::new();
    for expected_remaining in (0..5).rev() {
        let r = c.get(url(&s, "/objects/deals")).send().await.expect("send");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, headers::RATE_MAX), Some(5));
        assert_eq!(header(&r, headers::RATE_REMAINING), Some(expected_remaining));
        assert_eq!(header(&r, headers::RATE_INTERVAL_MS), Some(10_000));
        assert!(
            header(&r, headers::RATE_DAILY).is_some() && header(&r, headers::RATE_DAILY_REMAINING).is_some()
        );
    }
    let r = c.get(url(&s, "/objects/deals")).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&r, headers::RATE_REMAINING), Some(0));
    let body: serde_json::Value = r.json().await.expect("body");
    assert_eq!(body["errorType"], "RATE_LIMIT");
    assert_eq!(body["policyName"], "TEN_SECONDLY_ROLLING");
    assert_eq!(
        body["message"],
        "You have reached your ten_secondly_rolling limit."
    );
    assert_eq!(body["status"], "error");
    assert!(body["correlationId"].as_str().is_some_and(|id| id.len() == 36));
    // Search has its own per-second window, and its responses carry no rate headers.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let r = search(&c, &s, "deals", &SearchRequest::default()).await;
        assert!(r.headers().get(headers::RATE_MAX).is_none());
        statuses.push(r.status());
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            let body: serde_json::Value = r.json().await.expect("body");
            assert_eq!(body["policyName"], "SECONDLY");
        }
    }
    assert_eq!(statuses[2], StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");
    let stats = s.stats();
    assert_eq!(
        (
            stats.rate_limited.general,
            stats.rate_limited.search,
            stats.rate_limited.total
        ),
        (1, 1, 2)
    );
    // Limits off at runtime: bursts pass.
    s.configure(&sim::ConfigPatch {
        rate_limit: Some(0),
        ..Default::default()
    })
    .expect("configure");
    for _ in 0..10 {
        assert_eq!(
            c.get(url(&s, "/objects/deals"))
                .send()
                .await
                .expect("send")
                .status(),
            StatusCode::OK
        );
    }
}

/// What a client sees of one list request.
#[derive(Debug, PartialEq)]
enum Seen {
    Ok,
    Status(u16),
    BadJson,
    Transport,
}

async fn observe(c: &Client, s: &SimServer) -> Seen {
    let Ok(r) = c
        .get(url(s, "/objects/deals"))
        .query(&[("limit", "50")])
        .send()
        .await
    else {
        return Seen::Transport;
    };
    let status = r.status();
    let Ok(bytes) = r.bytes().await else {
        return Seen::Transport;
    };
    if status != StatusCode::OK {
        return Seen::Status(status.as_u16());
    }
    match serde_json::from_slice::<ListResponse>(&bytes) {
        Ok(_) => Seen::Ok,
        Err(_) => Seen::BadJson,
    }
}

#[tokio::test]
async fn every_fault_kind_reaches_the_client() {
    let s = start(60, &[ObjectType::Deals], |_| {}).await;
    let c = Client::new();
    let force = |kind| ConfigPatch {
        fault_rate: Some(1.0),
        fault_kinds: Some(vec![kind]),
        ..Default::default()
    };
    s.configure(&force(FaultKind::ServerError)).expect("configure");
    let r = c.get(url(&s, "/objects/deals")).send().await.expect("send");
    assert!([502, 503, 504].contains(&r.status().as_u16()), "{}", r.status());
    error_body(r).await;
    for (kind, expected) in [
        (FaultKind::Truncated, Seen::BadJson),
        (FaultKind::Malformed, Seen::BadJson),
        (FaultKind::Dropped, Seen::Transport),
    ] {
        // Through /_sim/config, as chaos runs do.
        let r = c
            .post(url(&s, "/_sim/config"))
            .json(&force(kind))
            .send()
            .await
            .expect("config");
        assert_eq!(r.status(), StatusCode::OK);
        for _ in 0..3 {
            assert_eq!(observe(&c, &s).await, expected, "{kind:?}");
        }
    }
    let r = c
        .post(url(&s, "/_sim/config"))
        .json(&serde_json::json!({"fault_rate": 2.0}))
        .send()
        .await
        .expect("config");
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "fault_rate outside [0,1] is refused"
    );
    s.configure(&sim::ConfigPatch {
        fault_rate: Some(0.0),
        ..Default::default()
    })
    .expect("configure");
    assert_eq!(observe(&c, &s).await, Seen::Ok);
    let faults = s.stats().faults;
    assert_eq!(
        (
            faults.server_error,
            faults.truncated,
            faults.malformed,
            faults.dropped,
            faults.total
        ),
        (1, 3, 3, 3, 10)
    );
}

#[tokio::test]
async fn faults_by_rate_are_reproducible_by_seed() {
    let mut runs = Vec::new();
    for _ in 0..2 {
        let s = start(20, &[ObjectType::Deals], |c| {
            c.seed = 11;
            c.runtime.fault_rate = 0.5;
        })
        .await;
        let c = Client::new();
        let mut seen = Vec::new();
        for _ in 0..16 {
            seen.push(observe(&c, &s).await);
        }
        runs.push(seen);
    }
    assert!(
        runs[0].contains(&Seen::Ok) && runs[0].iter().any(|s| *s != Seen::Ok),
        "{:?}",
        runs[0]
    );
    assert_eq!(runs[0], runs[1]);
}

#[tokio::test]
async fn latency_delays_responses() {
    // A lower bound only: a sleep is never shorter than asked, however busy the machine.
    let s = start(5, &[ObjectType::Deals], |c| c.runtime.latency_ms = 200).await;
    let c = Client::new();
    let t0 = Instant::now();
    assert_eq!(observe(&c, &s).await, Seen::Ok);
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(150), "{took:?}");
    // With a ten-minute latency, /_sim answering at all (the client gives up after a minute)
    // shows it is never delayed.
    s.configure(&sim::ConfigPatch {
        latency_ms: Some(600_000),
        ..Default::default()
    })
    .expect("configure");
    let patient = Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    patient
        .get(url(&s, "/_sim/stats"))
        .send()
        .await
        .expect("/_sim is never delayed");
}
