//! The CRM's relations (issue 15): link tables equal to HubSpot's v4 associations, links that
//! change with and without the record's modified time, merged records leaving no row and no
//! link at rest. Each check compares the lake with the simulator through the API, as
//! `hubsync audit` does.

use common::messages::RequestedMode;
use common::ports::RunMode;
use hubsync_tests::harness::{latest_run, sim_config, Harness};
use sim::{LinkChange, Merge, MutateRequest, ObjectType};

/// The link tables of the default catalog between the types these tests seed.
const LINK_TABLES: [&str; 6] = [
    "deal_contact_associations",
    "deal_company_associations",
    "contact_company_associations",
    "ticket_contact_associations",
    "ticket_company_associations",
    "activity_contact_associations",
];

fn portal(records: u64) -> sim::SimConfig {
    sim_config(
        records,
        &[
            ObjectType::Deals,
            ObjectType::Contacts,
            ObjectType::Companies,
            ObjectType::Tickets,
            ObjectType::Calls,
            ObjectType::Notes,
        ],
    )
}

/// Links at rest in a link table: (from, to) pairs, types aside.
async fn links_at_rest(
    h: &Harness,
    table: &str,
) -> anyhow::Result<std::collections::BTreeSet<(i64, String)>> {
    let (lake, _) = h.diff(table).await?;
    Ok(lake
        .rows
        .iter()
        .map(|(k, r)| (*k, r.properties.values().flatten().cloned().collect::<String>()))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_link_table_equals_the_sources_links() -> anyhow::Result<()> {
    let h = Harness::start(portal(120)).await?;
    let mut tables = vec!["deals", "contacts", "companies", "tickets", "activities"];
    tables.extend(LINK_TABLES);
    tables.extend(["activity_deal_associations", "activity_ticket_associations"]);
    h.sync(&tables, RequestedMode::Full).await?;
    let compared = h.assert_equals_truth(&tables).await?;
    assert!(compared > 600, "{compared} rows compared");
    for table in LINK_TABLES {
        let (lake, _) = h.diff(table).await?;
        assert!(
            lake.row_count() > 20,
            "{table}: {} records with links",
            lake.row_count()
        );
    }
    // Labels and types as HubSpot gives them: a contact's primary company, a portal's own label.
    let (contact_company, _) = h.diff("contact_company_associations").await?;
    let all: String = contact_company
        .rows
        .values()
        .flat_map(|r| r.properties.values().flatten().cloned())
        .collect();
    assert!(all.contains("association_label=Primary") && all.contains("association_type_id=279"));
    let (deal_contact, _) = h.diff("deal_contact_associations").await?;
    let all: String = deal_contact
        .rows
        .values()
        .flat_map(|r| r.properties.values().flatten().cloned())
        .collect();
    assert!(all.contains("USER_DEFINED") && all.contains("Decision maker"));
    let stats = h.sim.stats();
    assert!(stats.by_endpoint.associations > 0, "{stats:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_changed_with_and_without_a_modified_time_reach_the_lake() -> anyhow::Result<()> {
    let mut h = Harness::start(portal(80)).await?;
    let table = "deal_contact_associations";
    h.sync(&["deals", "contacts", table], RequestedMode::Full).await?;
    h.pipeline.flag.set("true").await?;
    let truth = h.sim.links_truth("deals", "contacts")?;
    let linked: Vec<(u64, u64)> = truth
        .iter()
        .map(|(deal, links)| (*deal, links[0].to_object_id))
        .collect();
    let contacts: Vec<u64> = h
        .sim
        .truth("contacts")?
        .iter()
        .map(|r| r.id.parse().unwrap())
        .collect();
    // A contact the deal does not link to yet.
    let unlinked = |deal: u64| {
        let links = &truth.iter().find(|(d, _)| *d == deal).unwrap().1;
        *contacts
            .iter()
            .find(|c| !links.iter().any(|l| l.to_object_id == **c))
            .unwrap()
    };
    let change = |i: usize, touch: bool, remove: bool| LinkChange {
        id: linked[i].0,
        to_object_type: "contacts".into(),
        to_id: if remove {
            linked[i].1
        } else {
            unlinked(linked[i].0)
        },
        touch,
    };
    h.mutate(MutateRequest {
        object_type: "deals".into(),
        associate: vec![
            change(0, true, false),
            change(1, false, false),
            change(2, false, false),
        ],
        dissociate: vec![change(3, true, true), change(4, false, true)],
        ..Default::default()
    })
    .await?;
    // The incremental run sees the links of the deals whose modified time moved.
    h.sync(&[table], RequestedMode::Auto).await?;
    assert_eq!(latest_run(&h.pipeline, table).await?.mode, RunMode::Incremental);
    let (_, diff) = h.diff(table).await?;
    let mut differing: Vec<i64> = diff.different.iter().map(|(k, _)| *k).collect();
    differing.extend(&diff.missing);
    differing.extend(&diff.unexpected);
    differing.sort_unstable();
    let mut untouched: Vec<i64> = [1, 2, 4].iter().map(|i| linked[*i].0 as i64).collect();
    untouched.sort_unstable();
    untouched.dedup();
    assert_eq!(
        differing,
        untouched,
        "only the links changed without a modified time lag: {}",
        diff.summary()
    );
    // The association refresh (due here at once) re-reads every deal's links.
    h.pipeline.settings.association_refresh_ms = 0;
    h.sync(&[table], RequestedMode::Auto).await?;
    assert_eq!(
        latest_run(&h.pipeline, table).await?.mode,
        RunMode::Full,
        "the refresh is a full sync"
    );
    h.assert_equals_truth(&[table]).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merged_contact_leaves_no_row_and_no_link_at_rest() -> anyhow::Result<()> {
    let h = Harness::start(portal(100)).await?;
    let tables = [
        "contacts",
        "contact_company_associations",
        "deal_contact_associations",
    ];
    h.sync(&tables, RequestedMode::Full).await?;
    h.pipeline.flag.set("true").await?;
    // The loser has links on both sides (from it to companies, from deals to it) and lives in
    // another partition than the survivor.
    let linked = h.sim.links_truth("contacts", "companies")?;
    let with_deals: Vec<u64> = h
        .sim
        .links_truth("contacts", "deals")?
        .iter()
        .map(|(id, _)| *id)
        .collect();
    let contacts = h.sim.truth("contacts")?;
    let dt = |id: u64| {
        let r = contacts.iter().find(|r| r.id == id.to_string()).unwrap();
        r.created_at[..10].to_string()
    };
    let survivor: u64 = contacts[0].id.parse()?;
    let loser = linked
        .iter()
        .map(|(id, _)| *id)
        .find(|id| *id != survivor && dt(*id) != dt(survivor) && with_deals.contains(id))
        .expect("a linked contact in another partition");
    let points_at_loser = |links: &std::collections::BTreeSet<(i64, String)>| {
        links.iter().any(|(_, set)| {
            set.split(' ')
                .any(|l| l.ends_with(&format!("contact_id={loser}")))
        })
    };
    assert!(points_at_loser(
        &links_at_rest(&h, "deal_contact_associations").await?
    ));
    let (lake, _) = h.diff("contacts").await?;
    assert!(lake.rows.contains_key(&(loser as i64)));
    assert!(links_at_rest(&h, "contact_company_associations")
        .await?
        .iter()
        .any(|(k, _)| *k == loser as i64));
    h.mutate(MutateRequest {
        object_type: "contacts".into(),
        merges: vec![Merge { survivor, loser }],
        ..Default::default()
    })
    .await?;
    h.sync(&tables, RequestedMode::Auto).await?;
    assert!(
        !points_at_loser(&links_at_rest(&h, "deal_contact_associations").await?),
        "a deal's link still points at the merged-away contact"
    );
    for t in tables {
        assert_eq!(
            latest_run(&h.pipeline, t).await?.mode,
            RunMode::Incremental,
            "{t}"
        );
        let (lake, diff) = h.diff(t).await?;
        assert!(
            !lake.rows.contains_key(&(loser as i64)),
            "{t} still holds the merged-away contact"
        );
        assert!(diff.is_clean(), "{t}: {}", diff.summary());
    }
    // `hubsync audit`'s comparison agrees.
    let specs: Vec<_> = tables
        .iter()
        .map(|t| h.pipeline.catalog.table(t).unwrap())
        .collect();
    let audits = infra::audit::audit(&h.pipeline.lake, &h.pipeline.hubspot, &specs).await?;
    for a in &audits {
        assert!(a.diff.is_clean(), "{}: {}", a.table, a.diff.summary());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_and_pipeline_stages_follow_a_relabelled_stage() -> anyhow::Result<()> {
    let h = Harness::start(portal(20)).await?;
    let tables = ["owners", "pipeline_stages"];
    h.sync(&tables, RequestedMode::Full).await?;
    let owners = h.sim.owners_truth();
    assert!(
        owners.iter().any(|o| o.archived),
        "archived owners are listed too"
    );
    let stages: usize = ["deals", "tickets"]
        .iter()
        .map(|t| {
            h.sim
                .pipelines_truth(t)
                .unwrap()
                .iter()
                .map(|p| p.stages.len())
                .sum::<usize>()
        })
        .sum();
    assert_eq!(
        h.assert_equals_truth(&tables).await?,
        (owners.len() + stages) as u64
    );
    h.pipeline.flag.set("true").await?;
    h.mutate(MutateRequest {
        object_type: "deals".into(),
        relabel_stage: Some(sim::StageLabel {
            pipeline_id: "default".into(),
            stage_id: "closedwon".into(),
            label: "Won".into(),
        }),
        ..Default::default()
    })
    .await?;
    let (_, stale) = h.diff("pipeline_stages").await?;
    assert_eq!(
        stale.different.len(),
        2,
        "the old label at rest, the new one in HubSpot: {}",
        stale.summary()
    );
    h.sync(&tables, RequestedMode::Auto).await?;
    assert_eq!(
        latest_run(&h.pipeline, "pipeline_stages").await?.mode,
        RunMode::Full
    );
    h.assert_equals_truth(&tables).await?;
    Ok(())
}
