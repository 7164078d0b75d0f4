//! A backfill on both read paths (J1-J4, `common::meet`): a full sync of an object type past
//! the list-walk threshold runs one list walk up from the lowest ids and search lanes down from
//! the highest at once. Both must take part, meet without a gap, and leave the lake equal to
//! the source, while records are created (at the top and inside the id range), updated and
//! archived during the run.

use std::collections::BTreeSet;
use std::time::Duration;

use common::messages::{RequestedMode, Slice};
use common::pipeline::{BackfillReads, Settings};
use common::ports::RunStatus;
use hubsync_tests::harness::{fast_settings, latest_run, plan, search_limited_client, sim_config, Harness};
use sim::{MutateRequest, ObjectType, RuntimeConfig};

const RECORDS: u64 = 3_000;
const PAGE: u32 = 50;

fn both() -> Settings {
    Settings {
        list_walk_max_records: 100,
        backfill_reads: BackfillReads::Both,
        lane_records: 150,
        slices_in_flight: 4,
        search_page_size: PAGE,
        list_page_size: PAGE,
        ..fast_settings()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_on_both_paths_equals_the_source_while_records_change_under_it() -> anyhow::Result<()> {
    let mut config = sim_config(RECORDS, &[ObjectType::Deals]);
    // Slow enough that the changes land while both paths read.
    config.runtime = RuntimeConfig {
        latency_ms: 10,
        ..config.runtime
    };
    let mut h = Harness::start_with(config, both()).await?;
    h.pipeline.hubspot = search_limited_client(&h.sim.base_url())?;
    let before: Vec<u64> = h
        .sim
        .truth("deals")?
        .iter()
        .map(|r| r.id.parse())
        .collect::<Result<_, _>>()?;
    let middle = before[before.len() / 2];
    h.sim.reset_stats();

    let p = h.pipeline.clone();
    let sim = h.sim.handle();
    let changer = tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        let mut archived = BTreeSet::new();
        let mut rounds = 0;
        // Three rounds while the run fetches: updates and archives anywhere, creates at the top
        // (the first lane's open claim) and inside the id range (wherever the walk or a lane
        // may be).
        while rounds < 3 {
            let run = p.ledger.active_run("deals").await?;
            match run {
                Some(r) if r.status == RunStatus::Fetching && r.records >= 300 * (rounds + 1) => {
                    for ids_from in [None, Some(middle)] {
                        let out = sim
                            .mutate(&MutateRequest {
                                object_type: "deals".into(),
                                updates: 100,
                                creates: 30,
                                archives: 30,
                                ids_from,
                                ..Default::default()
                            })
                            .await?;
                        archived.extend(out.archived.iter().filter_map(|id| id.parse::<u64>().ok()));
                    }
                    rounds += 1;
                }
                Some(r) if r.status != RunStatus::Fetching && r.status != RunStatus::Planning => break,
                _ => {}
            }
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "the run never fetched");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        anyhow::Ok((rounds, archived))
    });
    h.sync(&["deals"], RequestedMode::Full).await?;
    let (rounds, archived) = changer.await??;
    anyhow::ensure!(
        rounds >= 2,
        "only {rounds} rounds of changes landed while the run fetched"
    );

    // The plan: one walk and the lanes.
    let run = latest_run(&h.pipeline, "deals").await?;
    let slices = plan(&h.pipeline, &run).await?;
    assert!(matches!(slices[0], Slice::Walk { .. }), "{slices:?}");
    assert_eq!(slices.len(), 4, "the walk and three lanes: {slices:?}");
    assert!(slices[1..].iter().all(|s| matches!(s, Slice::Lane { .. })));

    // Both paths read, and the walk stopped where the lanes began: a walk to the end would
    // have taken every list page.
    let stats = h.sim.stats();
    let (list, search) = (stats.by_endpoint.list, stats.by_endpoint.search);
    let whole_walk = RECORDS / u64::from(PAGE);
    println!(
        "both paths: {list} list pages, {search} searches, {} records read",
        run.records
    );
    assert!(list >= 5, "the walk read {list} pages");
    assert!(search >= 5, "the lanes read {search} pages");
    assert!(
        list < whole_walk,
        "the walk read {list} pages, the whole list is {whole_walk}"
    );

    // Every record that lived through the run is in the lake, once, in its partition.
    let (lake, diff) = h.diff("deals").await?;
    let lost: Vec<&u64> = before
        .iter()
        .filter(|id| !archived.contains(id) && !lake.rows.contains_key(&(**id as i64)))
        .take(10)
        .collect();
    assert!(lost.is_empty(), "records never read: {lost:?}");
    assert!(
        diff.duplicate_keys.is_empty() && diff.misplaced.is_empty(),
        "{}",
        diff.summary()
    );

    // What changed during the run is the next window's: then the lake equals the source.
    h.pipeline.flag.set("true").await?;
    h.sync(&["deals"], RequestedMode::Auto).await?;
    let rows = h.assert_equals_truth(&["deals"]).await?;
    println!("both paths: {rows} rows equal the source after the incremental");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_walk_reads_everything_when_no_lane_starts_beside_it() -> anyhow::Result<()> {
    // One slice in flight: the walk runs alone, to the end of the list; the lanes then start
    // and find nothing left to claim (J1), reading nothing.
    let settings = Settings {
        slices_in_flight: 1,
        ..both()
    };
    let mut h = Harness::start_with(sim_config(600, &[ObjectType::Deals]), settings).await?;
    h.pipeline.hubspot = search_limited_client(&h.sim.base_url())?;
    h.sim.reset_stats();
    h.sync(&["deals"], RequestedMode::Full).await?;
    let stats = h.sim.stats();
    let run = latest_run(&h.pipeline, "deals").await?;
    let slices = plan(&h.pipeline, &run).await?;
    assert_eq!(slices.len(), 2, "the walk and one lane: {slices:?}");
    let whole = 600 / u64::from(PAGE);
    assert!(
        (whole..=whole + 1).contains(&stats.by_endpoint.list),
        "the walk read the whole list: {} pages",
        stats.by_endpoint.list
    );
    // The plan's count and its two id edges, nothing by the lane.
    assert_eq!(stats.by_endpoint.search, 3, "{:?}", stats.by_endpoint);
    h.assert_equals_truth(&["deals"]).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_search_limit_a_backfill_reads_created_date_slices() -> anyhow::Result<()> {
    // The harness's client has no limit: nothing to gain from the walk's one chain of pages.
    let h = Harness::start_with(sim_config(300, &[ObjectType::Deals]), both()).await?;
    h.sync(&["deals"], RequestedMode::Full).await?;
    let run = latest_run(&h.pipeline, "deals").await?;
    let slices = plan(&h.pipeline, &run).await?;
    assert!(
        slices.iter().all(|s| matches!(s, Slice::Created { .. })),
        "{slices:?}"
    );
    h.assert_equals_truth(&["deals"]).await?;
    Ok(())
}
