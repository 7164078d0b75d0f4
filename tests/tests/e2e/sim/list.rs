//! The list and properties endpoints: paging, properties, archived, limits, errors.

use super::*;

#[tokio::test]
async fn list_pages_return_every_record_once_and_match_truth() {
    let s = start(250, &[ObjectType::Deals], |_| {}).await;
    let c = Client::new();
    // Every property the type defines, as the properties API lists them.
    let defs: wire::PropertiesResponse = c
        .get(format!("{}/crm/v3/properties/deals", s.base_url()))
        .send()
        .await
        .expect("properties")
        .json()
        .await
        .expect("a properties body");
    let joined = defs
        .results
        .iter()
        .map(|d| d.name.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let listed = list_all(&c, &s, "0-3", &[("properties", &joined)]).await;
    let truth = s.truth("deals").expect("truth");
    assert_eq!(listed.len(), 250);
    assert_eq!(listed, truth, "the list, with every property, is the truth");
    let unique: BTreeSet<&str> = listed.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(unique.len(), 250);
    for r in &listed {
        assert_eq!(
            r.properties["hs_lastmodifieddate"].as_deref(),
            Some(r.updated_at.as_str())
        );
        assert_eq!(r.properties["createdate"].as_deref(), Some(r.created_at.as_str()));
        assert_eq!(r.properties["hs_object_id"].as_deref(), Some(r.id.as_str()));
    }
    // The truth endpoint streams the same records as JSON lines.
    let lines = c
        .get(url(&s, "/_sim/truth/deals"))
        .send()
        .await
        .expect("truth")
        .text()
        .await
        .expect("body");
    let streamed: Vec<ObjectRecord> = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(streamed, truth);
    // Contacts were not seeded: the type exists, empty.
    assert!(get_list(&c, &s, "contacts", &[]).await.results.is_empty());
    s.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn properties_param_returns_only_asked_ones_with_nulls() {
    let s = start(60, &[ObjectType::Deals, ObjectType::Contacts], |_| {}).await;
    let c = Client::new();
    let page = get_list(
        &c,
        &s,
        "deals",
        &[("limit", "60"), ("properties", "dealname,closedate,no_such_prop")],
    )
    .await;
    let keys: BTreeSet<&str> = page
        .results
        .iter()
        .flat_map(|r| r.properties.keys().map(String::as_str))
        .collect();
    assert_eq!(keys, BTreeSet::from(["closedate", "dealname"]));
    assert!(
        page.results.iter().all(|r| r.properties.len() == 2),
        "null values are present, as null"
    );
    assert!(
        page.results.iter().any(|r| r.properties["closedate"].is_none()),
        "some close dates are null"
    );
    // No properties asked: HubSpot's defaults, the modified property of contacts included.
    let page = get_list(&c, &s, "contacts", &[("limit", "5")]).await;
    for r in &page.results {
        assert_eq!(
            r.properties["lastmodifieddate"].as_deref(),
            Some(r.updated_at.as_str())
        );
        assert!(r.properties.contains_key("email") && !r.properties.contains_key("phone"));
    }
    let defs: PropertiesResponse = c
        .get(url(&s, "/properties/0-1"))
        .send()
        .await
        .expect("properties")
        .json()
        .await
        .expect("defs");
    let modified = defs
        .results
        .iter()
        .find(|d| d.name == "lastmodifieddate")
        .map(|d| d.kind.as_str());
    assert_eq!(modified, Some("datetime"));
    // Real portals hold more than ASCII.
    let truth = s.truth("contacts").expect("truth");
    assert!(truth
        .iter()
        .flat_map(|r| r.properties.values().flatten())
        .any(|v| !v.is_ascii()));
}

#[tokio::test]
async fn limits_above_the_maximum_are_refused_and_unknown_types_are_404() {
    let s = start(150, &[ObjectType::Deals], |_| {}).await;
    let c = Client::new();
    assert_eq!(
        get_list(&c, &s, "deals", &[("limit", "100")]).await.results.len(),
        100
    );
    let r = c
        .get(url(&s, "/objects/deals"))
        .query(&[("limit", "101")])
        .send()
        .await
        .expect("send");
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "list limit > 100 is refused, not clamped"
    );
    assert_eq!(error_body(r).await.category.as_deref(), Some("VALIDATION_ERROR"));
    let r = search(
        &c,
        &s,
        "deals",
        &SearchRequest {
            limit: Some(201),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = c.get(url(&s, "/objects/widgets")).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_body(r).await.category.as_deref(), Some("OBJECT_NOT_FOUND"));
}
