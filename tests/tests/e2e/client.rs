//! The HubSpot client against the simulator: retries through faults and 429s, gives up
//! clearly on what retrying cannot fix.

use std::collections::BTreeSet;
use std::time::Duration;

use hubspot::{ClientConfig, HubSpotClient, HubSpotError, RateBudget, Secret};
use hubsync_tests::harness::sim_config;
use sim::{ObjectType, Secret as SimSecret};
use wire::Paging;

fn client(base: &str, token: &str, budget: RateBudget) -> HubSpotClient {
    HubSpotClient::new(
        ClientConfig {
            base_url: base.into(),
            token: Secret::new(token),
            max_retries: 8,
            min_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(3),
            ..Default::default()
        },
        budget,
    )
    .unwrap()
}

async fn list_all(c: &HubSpotClient) -> Result<Vec<String>, HubSpotError> {
    let mut ids = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = c
            .list_page("deals", &["dealname".into()], after.as_deref(), false, 100)
            .await?;
        ids.extend(page.results.iter().map(|r| r.id.clone()));
        match Paging::next_after(&page.paging) {
            Some(a) => after = Some(a.to_string()),
            None => return Ok(ids),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_through_every_fault_kind_and_rate_limits() -> anyhow::Result<()> {
    let mut config = sim_config(1500, &[ObjectType::Deals]);
    config.runtime.fault_rate = 0.3;
    config.token = Some(SimSecret::new("pat-test"));
    let server = sim::start(config).await?;
    let c = client(&server.base_url(), "pat-test", RateBudget::unlimited());
    let ids = list_all(&c).await?;
    let unique: BTreeSet<_> = ids.iter().collect();
    assert_eq!(ids.len(), 1500, "every record exactly once through 30% faults");
    assert_eq!(unique.len(), 1500);
    let stats = server.stats();
    assert!(stats.faults.total > 0, "{stats:?}");

    // Rate limits: a burst against a limit of 6 per 10 s is answered 429 and retried (the
    // client's own budget is unlimited here, so the 429s really happen).
    server.configure(&sim::ConfigPatch {
        rate_limit: Some(6),
        fault_rate: Some(0.0),
        ..Default::default()
    })?;
    server.reset_stats();
    let quick = client(&server.base_url(), "pat-test", RateBudget::unlimited());
    let mut handles = Vec::new();
    for _ in 0..8 {
        let c = quick.clone();
        handles.push(tokio::spawn(async move {
            c.list_page("deals", &[], None, false, 1)
                .await
                .map(|p| p.results.len())
        }));
    }
    for h in handles {
        assert_eq!(h.await??, 1);
    }
    assert!(server.stats().rate_limited.total > 0, "the burst met the limit");
    server.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_wrong_token_fails_at_once_with_a_clear_error() -> anyhow::Result<()> {
    let mut config = sim_config(5, &[ObjectType::Deals]);
    config.token = Some(SimSecret::new("right"));
    let server = sim::start(config).await?;
    let c = client(&server.base_url(), "wrong", RateBudget::unlimited());
    let err = list_all(&c).await.unwrap_err();
    assert!(matches!(err, HubSpotError::Unauthorized(_)), "{err:?}");
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("HUBSPOT_TOKEN"), "{err}");
    assert!(!format!("{c:?}").contains("wrong"), "the token never prints");
    assert_eq!(server.stats().requests, 1, "401 is not retried");
    server.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn past_the_search_cap_is_rejected_not_retried() -> anyhow::Result<()> {
    let server = sim::start(sim_config(10, &[ObjectType::Deals])).await?;
    let c = client(&server.base_url(), "", RateBudget::unlimited());
    let req = wire::SearchRequest {
        limit: Some(200),
        after: Some("9900".into()),
        ..Default::default()
    };
    let err = c.search_page("deals", &req).await.unwrap_err();
    assert!(
        matches!(err, HubSpotError::Rejected { status: 400, .. }),
        "{err:?}"
    );
    server.shutdown().await?;
    Ok(())
}
