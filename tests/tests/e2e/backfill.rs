//! Parallel backfill: a full sync of an object type larger than the list-walk threshold is read
//! as search slices over created-date windows, slices start in waves (L5), and partitions merge
//! while the backfill still fetches (P1). The lake still ends equal to the source, and an
//! incremental sync after changes finds it.

use std::time::Duration;

use common::messages::{RequestedMode, Slice};
use common::pipeline::{BackfillReads, Settings};
use common::ports::RunStatus;
use hubsync_tests::harness::{fast_settings, latest_run, live_files, sim_config, Harness};
use sim::{MutateRequest, ObjectType, RuntimeConfig};

const RECORDS: u64 = 3_000;

fn sliced_settings() -> Settings {
    Settings {
        list_walk_max_records: 0,
        backfill_reads: BackfillReads::Search,
        backfill_slice_records: 250,
        slices_in_flight: 2,
        search_page_size: 100,
        ..fast_settings()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_is_sliced_by_created_date_and_its_partitions_land_while_it_fetches() -> anyhow::Result<()>
{
    let mut config = sim_config(RECORDS, &[ObjectType::Deals]);
    // Slow enough that the run is observed mid-fetch.
    config.runtime = RuntimeConfig {
        latency_ms: 15,
        ..config.runtime
    };
    let h = Harness::start_with(config, sliced_settings()).await?;
    let p = h.pipeline.clone();
    let sync = tokio::spawn(async move {
        let h = h;
        let reports = h.sync(&["deals"], RequestedMode::Full).await;
        (h, reports)
    });

    // Watch the ledger and the lake while the run fetches: some partition of this run must be
    // live before fetching ends.
    let mut seen_early: Option<(usize, usize)> = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while tokio::time::Instant::now() < deadline && !sync.is_finished() {
        if let Some(run) = p.ledger.active_run("deals").await? {
            if run.status == RunStatus::Fetching {
                let mine = format!("part-{}-", run.run_id);
                let live = live_files(&p, "deals").await?;
                let landed = live
                    .values()
                    .filter(|files| files.iter().any(|f| f.starts_with(&mine)))
                    .count();
                // Re-read: the files must have landed while the run still fetched.
                let still = p.ledger.get_run(&run.run_id).await?;
                if landed > 0 && still.is_some_and(|r| r.status == RunStatus::Fetching) {
                    seen_early = Some((landed, (run.slices as i64 - run.pages_outstanding) as usize));
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (h, reports) = sync.await?;
    reports?;
    let (partitions, slices_done) =
        seen_early.ok_or_else(|| anyhow::anyhow!("no partition landed while the backfill fetched"))?;
    println!("backfill: {partitions} partitions live after {slices_done} slices, before fetching ended");

    let run = latest_run(&h.pipeline, "deals").await?;
    let plan = hubsync_tests::harness::plan(&h.pipeline, &run).await?;
    let created: Vec<&Slice> = plan
        .iter()
        .filter(|s| matches!(s, Slice::Created { .. }))
        .collect();
    assert_eq!(created.len(), plan.len(), "every slice is a created window");
    assert!(
        created.len() >= RECORDS as usize / 250,
        "{} slices",
        created.len()
    );
    assert_eq!(run.pages_outstanding, 0);
    assert_eq!(run.slices_started, run.slices, "every slice was started");
    // Created windows cover the whole timeline without overlap, in plan order (C1).
    let windows: Vec<(i64, i64)> = created
        .iter()
        .filter_map(|s| match s {
            Slice::Created { from_ms, to_ms, .. } => Some((*from_ms, *to_ms)),
            _ => None,
        })
        .collect();
    assert!(windows.windows(2).all(|w| w[0].1 < w[1].0), "{windows:?}");
    assert_eq!(
        windows.first().map(|w| w.0),
        Some(common::messages::OPEN_START_MS)
    );
    assert_eq!(windows.last().map(|w| w.1), Some(common::messages::OPEN_END_MS));
    // Each slice merged the partitions it staged into when it ended: every partition once,
    // a day two slices share once per slice (L3), and the closing task.
    let touched = hubsync_tests::harness::touched(&h.pipeline, &run.run_id).await?;
    assert_eq!(run.partitions, Some(touched.len() as u64));
    assert!(
        run.merges_counted as usize > touched.len()
            && run.merges_counted as usize <= touched.len() + plan.len(),
        "{} merges for {} partitions and {} slices",
        run.merges_counted,
        touched.len(),
        plan.len()
    );
    assert_eq!(h.assert_equals_truth(&["deals"]).await?, RECORDS);

    // The incremental sync after a backfill: updates, creates (some backdated by the simulator)
    // and archives all land.
    h.pipeline.flag.set("true").await?;
    h.mutate(MutateRequest {
        object_type: "deals".into(),
        updates: 120,
        creates: 30,
        archives: 7,
        same_timestamp: false,
        ..Default::default()
    })
    .await?;
    h.sync(&["deals"], RequestedMode::Auto).await?;
    h.assert_equals_truth(&["deals"]).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_object_type_keeps_its_list_walk() -> anyhow::Result<()> {
    let h = Harness::start_with(sim_config(400, &[ObjectType::Deals]), fast_settings()).await?;
    h.sync(&["deals"], RequestedMode::Full).await?;
    let run = latest_run(&h.pipeline, "deals").await?;
    assert_eq!(
        hubsync_tests::harness::plan(&h.pipeline, &run).await?,
        vec![Slice::List {
            object_type: "deals".into()
        }]
    );
    h.assert_equals_truth(&["deals"]).await?;
    Ok(())
}

/// Deals backfilled, the flag on, then a bulk edit: 600 updates at one instant (which no cut by
/// time can split), 40 creates and 9 archives.
async fn backfilled_then_bulk_edited(config: sim::SimConfig, settings: Settings) -> anyhow::Result<Harness> {
    let h = Harness::start_with(config, settings).await?;
    h.sync(&["deals"], RequestedMode::Full).await?;
    h.pipeline.flag.set("true").await?;
    h.mutate(MutateRequest {
        object_type: "deals".into(),
        updates: 600,
        creates: 40,
        archives: 9,
        same_timestamp: true,
        ..Default::default()
    })
    .await?;
    Ok(h)
}

/// The id cut of an incremental window (`plan::modified_window`) while records change under
/// the run: records updated again (moving out of the window), created (at the top and inside
/// the id range) and archived while its slices fetch. Whatever the run did not see is the next
/// window's, through the overlap; nothing changed before the run is missed or duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_window_cut_by_id_misses_nothing_while_records_change_under_it() -> anyhow::Result<()>
{
    let settings = Settings {
        backfill_slice_records: 100,
        slices_in_flight: 8,
        search_page_size: 20,
        ..fast_settings()
    };
    let mut config = sim_config(2_000, &[ObjectType::Deals]);
    // Slow enough that the changes land while the window's slices fetch.
    config.runtime = RuntimeConfig {
        latency_ms: 30,
        ..config.runtime
    };
    let h = backfilled_then_bulk_edited(config, settings).await?;
    let before: Vec<(u64, i64)> = h
        .sim
        .truth("deals")?
        .iter()
        .map(|r| Ok((r.id.parse()?, wire::parse_ms(&r.updated_at).unwrap_or(0))))
        .collect::<anyhow::Result<_>>()?;
    let middle = before[before.len() / 2].0;

    let p = h.pipeline.clone();
    let sim = h.sim.handle();
    let changer = tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        let mut touched = std::collections::BTreeSet::new();
        loop {
            match p.ledger.active_run("deals").await? {
                Some(r) if r.status == RunStatus::Fetching => break,
                _ => {}
            }
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "the run never fetched");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Updates anywhere (some of them records of the window, which leave it), archives,
        // and creates at the top and inside the id range.
        for ids_from in [None, Some(middle)] {
            let out = sim
                .mutate(&MutateRequest {
                    object_type: "deals".into(),
                    updates: 150,
                    creates: 20,
                    archives: 20,
                    ids_from,
                    ..Default::default()
                })
                .await?;
            touched.extend(
                out.updated
                    .iter()
                    .chain(&out.archived)
                    .filter_map(|id| id.parse::<u64>().ok()),
            );
        }
        let still_fetching = matches!(
            p.ledger.active_run("deals").await?,
            Some(r) if r.status == RunStatus::Fetching
        );
        anyhow::Ok((touched, still_fetching))
    });
    h.sync(&["deals"], RequestedMode::Auto).await?;
    let (touched, still_fetching) = changer.await??;
    anyhow::ensure!(
        still_fetching,
        "the run stopped fetching before the changes landed"
    );
    let run = latest_run(&h.pipeline, "deals").await?;
    assert_eq!(run.mode, common::ports::RunMode::Incremental);
    let plan = hubsync_tests::harness::plan(&h.pipeline, &run).await?;
    assert!(plan.len() >= 3, "the window was not cut: {plan:?}");

    // Every record the run's window held and no one touched during the run is in the lake at
    // its version from before the run (or newer), once, in its partition.
    let (lake, diff) = h.diff("deals").await?;
    let missed: Vec<(u64, i64, Option<i64>)> = before
        .iter()
        .filter(|(id, _)| !touched.contains(id))
        .filter_map(|(id, modified)| {
            let in_lake = lake.rows.get(&(*id as i64)).map(|r| r.modified_ms);
            (in_lake < Some(*modified)).then_some((*id, *modified, in_lake))
        })
        .take(10)
        .collect();
    assert!(
        missed.is_empty(),
        "records the window held but the run missed (id, modified, lake): {missed:?}"
    );
    assert!(
        diff.duplicate_keys.is_empty() && diff.misplaced.is_empty(),
        "{}",
        diff.summary()
    );
    // The changes made during the run are the next window's.
    h.sync(&["deals"], RequestedMode::Auto).await?;
    h.assert_equals_truth(&["deals"]).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_window_is_read_as_id_ranges_that_cover_every_change() -> anyhow::Result<()> {
    let settings = Settings {
        backfill_slice_records: 100,
        slices_in_flight: 8,
        ..fast_settings()
    };
    let h = backfilled_then_bulk_edited(sim_config(2_000, &[ObjectType::Deals]), settings).await?;
    h.sync(&["deals"], RequestedMode::Auto).await?;
    let run = latest_run(&h.pipeline, "deals").await?;
    assert_eq!(run.mode, common::ports::RunMode::Incremental);
    let plan = hubsync_tests::harness::plan(&h.pipeline, &run).await?;
    let ranges: Vec<(u64, u64)> = plan
        .iter()
        .filter_map(|s| match s {
            Slice::Search { id_min, id_max, .. } => Some((*id_min, *id_max)),
            _ => None,
        })
        .collect();
    assert!(ranges.len() >= 3, "the window was not cut: {plan:?}");
    assert_eq!(ranges.first().map(|r| r.0), Some(0), "{ranges:?}");
    assert_eq!(ranges.last().map(|r| r.1), Some(u64::MAX), "{ranges:?}");
    assert!(ranges.windows(2).all(|w| w[0].1 < w[1].0), "{ranges:?}");
    h.assert_equals_truth(&["deals"]).await?;
    Ok(())
}
