//! The search endpoint: operators, sorts, the 10,000 cap, and lag behind writes.

use super::*;

/// A filter and which values it keeps.
type Case = (Filter, Box<dyn Fn(i64) -> bool>);

#[tokio::test]
async fn search_filters_match_truth_for_every_operator() {
    let s = start(300, &[ObjectType::Contacts], |_| {}).await;
    let c = Client::new();
    let truth = s.truth("contacts").expect("truth");
    let pivot = &truth[137];
    let other = &truth[201];
    for prop in ["lastmodifieddate", "createdate", "hs_object_id"] {
        let value = |r: &ObjectRecord| {
            if prop == "hs_object_id" {
                r.id.parse().unwrap_or(0)
            } else {
                ms(r, prop)
            }
        };
        let (p, o) = (value(pivot), value(other));
        let (lo, hi) = (p.min(o), p.max(o));
        let cases: Vec<Case> = vec![
            (Filter::new(prop, Operator::Eq, p), Box::new(move |v| v == p)),
            (Filter::new(prop, Operator::Neq, p), Box::new(move |v| v != p)),
            (Filter::new(prop, Operator::Gt, p), Box::new(move |v| v > p)),
            (Filter::new(prop, Operator::Gte, p), Box::new(move |v| v >= p)),
            (Filter::new(prop, Operator::Lt, p), Box::new(move |v| v < p)),
            (Filter::new(prop, Operator::Lte, p), Box::new(move |v| v <= p)),
            (
                Filter::between(prop, lo, hi),
                Box::new(move |v| (lo..=hi).contains(&v)),
            ),
        ];
        for (filter, keep) in cases {
            let label = format!("{prop} {:?}", filter.operator);
            let expected: Vec<String> = truth
                .iter()
                .filter(|r| keep(value(r)))
                .map(|r| r.id.clone())
                .collect();
            let (total, ids) = search_ids(&c, &s, "contacts", filters(vec![filter])).await;
            assert_eq!(total, expected.len() as u64, "{label}");
            assert_eq!(ids, expected, "{label}: default order is id ascending");
        }
    }
    // ISO values are accepted; groups are ORed, filters ANDed.
    let iso = pivot.properties["lastmodifieddate"].clone().unwrap_or_default();
    let (_, ids) = search_ids(
        &c,
        &s,
        "contacts",
        filters(vec![
            Filter::new("lastmodifieddate", Operator::Eq, &iso),
            Filter::new("hs_object_id", Operator::Eq, &pivot.id),
        ]),
    )
    .await;
    assert_eq!(ids, vec![pivot.id.clone()]);
    let either = SearchRequest {
        filter_groups: vec![
            FilterGroup {
                filters: vec![Filter::new("hs_object_id", Operator::Eq, &pivot.id)],
            },
            FilterGroup {
                filters: vec![Filter::new("hs_object_id", Operator::Eq, &other.id)],
            },
        ],
        ..Default::default()
    };
    assert_eq!(search_ids(&c, &s, "contacts", either).await.0, 2);
}

#[tokio::test]
async fn search_sorts_both_ways_with_ties_broken_by_id() {
    let s = start(120, &[ObjectType::Deals], |_| {}).await;
    let c = Client::new();
    // Twenty updates on one millisecond make ties, as bulk edits do.
    let bulk = mutate(
        &c,
        &s,
        MutateRequest {
            object_type: "deals".into(),
            updates: 20,
            same_timestamp: true,
            among_newest: None,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(bulk.updated.len(), 20);
    let truth = s.truth("deals").expect("truth");
    for direction in [Direction::Ascending, Direction::Descending] {
        let req = SearchRequest {
            sorts: vec![Sort {
                property_name: "hs_lastmodifieddate".into(),
                direction,
            }],
            ..Default::default()
        };
        let (total, ids) = search_ids(&c, &s, "deals", req).await;
        assert_eq!(total, 120);
        let mut expected: Vec<(i64, u64, String)> = truth
            .iter()
            .map(|r| {
                (
                    ms(r, "hs_lastmodifieddate"),
                    r.id.parse().unwrap_or(0),
                    r.id.clone(),
                )
            })
            .collect();
        expected.sort_by(|a, b| {
            match direction {
                Direction::Ascending => a.0.cmp(&b.0),
                Direction::Descending => b.0.cmp(&a.0),
            }
            .then(a.1.cmp(&b.1))
        });
        let expected: Vec<String> = expected.into_iter().map(|e| e.2).collect();
        assert_eq!(ids, expected, "{direction:?}");
    }
}

#[tokio::test]
async fn search_refuses_pages_past_ten_thousand() {
    let s = start(10_500, &[ObjectType::Deals], |_| {}).await;
    let c = Client::new();
    let page = |after: &str| SearchRequest {
        limit: Some(200),
        after: Some(after.into()),
        ..Default::default()
    };
    let r = search(&c, &s, "deals", &page("9800")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let last: SearchResponse = r.json().await.expect("body");
    assert_eq!((last.total, last.results.len()), (10_500, 200));
    assert_eq!(Paging::next_after(&last.paging), Some("10000"));
    for after in ["9900", "10000"] {
        let r = search(&c, &s, "deals", &page(after)).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "after {after}");
        assert_eq!(error_body(r).await.category.as_deref(), Some("VALIDATION_ERROR"));
    }
}

#[tokio::test]
async fn search_lags_writes_but_list_does_not() {
    let lag = Duration::from_millis(1_500);
    let s = start(30, &[ObjectType::Deals], |c| {
        c.runtime.search_lag_ms = lag.as_millis() as u64
    })
    .await;
    let c = Client::new();
    let t0 = Instant::now();
    let m = mutate(
        &c,
        &s,
        MutateRequest {
            object_type: "deals".into(),
            updates: 1,
            creates: 1,
            ..Default::default()
        },
    )
    .await;
    let changed = filters(vec![Filter::new(
        "hs_lastmodifieddate",
        Operator::Gte,
        m.timestamp_ms - 10,
    )]);
    let (total, _) = search_ids(&c, &s, "deals", changed.clone()).await;
    if t0.elapsed() < lag {
        assert_eq!(total, 0, "search does not see the changes yet");
    }
    let listed = list_all(&c, &s, "deals", &[]).await;
    assert!(
        listed.iter().any(|r| r.id == m.created[0]),
        "list sees the create at once"
    );
    let seen = eventually(Duration::from_secs(10), || async {
        search_ids(&c, &s, "deals", changed.clone()).await.0 == 2
    })
    .await;
    assert!(seen, "search sees both changes after the lag");
    assert!(t0.elapsed() >= lag);
}
