//! The portal itself: mutations, seeds, truth and stats.

use super::*;

#[tokio::test]
async fn mutations_move_time_as_hubspot_does() {
    let s = start(
        40,
        &[ObjectType::Deals, ObjectType::Calls, ObjectType::Notes],
        |_| {},
    )
    .await;
    let c = Client::new();
    let before = s.truth("deals").expect("truth");
    let wall = chrono::Utc::now().timestamp_millis();
    let m = mutate(
        &c,
        &s,
        MutateRequest {
            object_type: "deals".into(),
            updates: 5,
            creates: 2,
            archives: 3,
            same_timestamp: false,
            ..Default::default()
        },
    )
    .await;
    let after = s.truth("deals").expect("truth");
    let find = |set: &[ObjectRecord], id: &str| set.iter().find(|r| r.id == id).cloned();
    let mut stamps = BTreeSet::new();
    let mut values_changed = false;
    for id in &m.updated {
        let (old, new) = (find(&before, id).expect("old"), find(&after, id).expect("new"));
        let modified = ms(&new, "hs_lastmodifieddate");
        assert_eq!(
            new.properties["hs_lastmodifieddate"].as_deref(),
            Some(new.updated_at.as_str())
        );
        assert!(
            modified > ms(&old, "hs_lastmodifieddate") && modified <= m.timestamp_ms && modified >= wall - 10
        );
        stamps.insert(modified);
        let strip = |r: &ObjectRecord| {
            let mut p = r.properties.clone();
            p.remove("hs_lastmodifieddate");
            p
        };
        values_changed |= strip(&old) != strip(&new);
    }
    assert_eq!(stamps.len(), 5, "each update its own millisecond");
    assert!(values_changed, "updates change property values");
    for id in &m.archived {
        assert!(find(&after, id).is_none(), "archived records leave the truth");
    }
    let archived = list_all(&c, &s, "deals", &[("archived", "true")]).await;
    let archived_ids: Vec<&str> = archived.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        archived_ids,
        m.archived.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert!(archived
        .iter()
        .all(|r| r.archived && r.archived_at.as_deref() == Some(m.timestamp.as_str())));
    assert!(
        archived
            .iter()
            .all(|r| find(&before, &r.id).is_some_and(|o| o.updated_at == r.updated_at)),
        "archiving keeps modified"
    );
    let live = list_all(&c, &s, "deals", &[]).await;
    assert!(live.iter().all(|r| !m.archived.contains(&r.id)));
    let (_, searched) = search_ids(&c, &s, "deals", SearchRequest::default()).await;
    assert!(
        searched.iter().all(|id| !m.archived.contains(id)),
        "search never returns archived records"
    );
    for id in &m.created {
        let new = find(&after, id).expect("created record in truth");
        assert_eq!(
            (new.created_at.as_str(), new.updated_at.as_str()),
            (m.timestamp.as_str(), m.timestamp.as_str())
        );
    }
    // One millisecond for a bulk edit.
    let bulk = mutate(
        &c,
        &s,
        MutateRequest {
            object_type: "deals".into(),
            updates: 6,
            same_timestamp: true,
            ..Default::default()
        },
    )
    .await;
    let truth = s.truth("deals").expect("truth");
    assert!(bulk
        .updated
        .iter()
        .all(|id| find(&truth, id).is_some_and(|r| r.updated_at == bulk.timestamp)));
    // Activities share one id space.
    let engagement_max = ["calls", "notes"]
        .iter()
        .flat_map(|t| s.truth(t).expect("truth"))
        .map(|r| r.id.parse::<u64>().unwrap_or(0))
        .max();
    let calls = mutate(
        &c,
        &s,
        MutateRequest {
            object_type: "0-48".into(),
            creates: 2,
            ..Default::default()
        },
    )
    .await;
    let notes = mutate(
        &c,
        &s,
        MutateRequest {
            object_type: "notes".into(),
            creates: 2,
            ..Default::default()
        },
    )
    .await;
    let new_ids: Vec<u64> = calls
        .created
        .iter()
        .chain(&notes.created)
        .map(|id| id.parse().unwrap_or(0))
        .collect();
    assert!(
        new_ids.windows(2).all(|w| w[0] < w[1]) && Some(new_ids[0]) > engagement_max,
        "{new_ids:?}"
    );
}

#[tokio::test]
async fn same_seed_same_portal() {
    let portal = |seed: u64| async move {
        let s = start(50, &[ObjectType::Deals, ObjectType::Meetings], |c| c.seed = seed).await;
        let truth = (
            s.truth("deals").expect("truth"),
            s.truth("meetings").expect("truth"),
        );
        s.shutdown().await.expect("shutdown");
        truth
    };
    let a = portal(7).await;
    assert_eq!(a, portal(7).await);
    assert_ne!(a, portal(8).await);
    let created: Vec<i64> = a.0.iter().map(|r| ms(r, "createdate")).collect();
    let years = created
        .iter()
        .map(|c| c / (365 * 86_400_000))
        .collect::<BTreeSet<_>>();
    assert!(years.len() >= 5, "created dates spread over years");
    assert!(created
        .iter()
        .all(|c| (sim::PORTAL_START_MS..sim::PORTAL_END_MS).contains(c)));
}

#[tokio::test]
async fn stats_count_what_was_served() {
    let s = start(10, &[ObjectType::Deals], |_| {}).await;
    let c = Client::new();
    for _ in 0..3 {
        get_list(&c, &s, "deals", &[]).await;
    }
    for _ in 0..2 {
        search(&c, &s, "deals", &SearchRequest::default()).await;
    }
    c.get(url(&s, "/properties/deals")).send().await.expect("send");
    c.get(url(&s, "/objects/deals/123/associations"))
        .send()
        .await
        .expect("send");
    let over_http: SimStats = c
        .get(url(&s, "/_sim/stats"))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    assert_eq!(over_http.requests, 7);
    let e = &over_http.by_endpoint;
    assert_eq!((e.list, e.search, e.properties, e.other), (3, 2, 1, 1));
    assert_eq!(s.stats().admin_requests, 1);
    c.post(url(&s, "/_sim/stats/reset")).send().await.expect("reset");
    assert_eq!(s.stats().requests, 0);
}
