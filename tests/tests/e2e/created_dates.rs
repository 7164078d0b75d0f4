//! Every created date has a partition, and a created date that moves moves its row.
//!
//! - C1: a full sync of a table past `HUBSYNC_LIST_WALK_MAX` records (created-date slices)
//!   has the records created in 1900, in 1969 and after the run began (T0): its first and last
//!   slices are open-ended, so the commit never drops their partitions as untouched.
//! - C2: a full sync reads every pre-existing record while records are created inside the id
//!   range it is walking, with ids not in creation order (a list walk no longer stops at the
//!   first page of records created after T0), and so does a sliced one.
//! - K1: a deal whose created date moves to another day between two syncs has one row, in
//!   its new partition.

use std::collections::BTreeSet;
use std::time::Duration;

use common::messages::RequestedMode;
use common::pipeline::{BackfillReads, Settings};
use hubsync_tests::harness::{fast_settings, latest_run, sim_config, Harness};
use sim::{MutateRequest, ObjectType, RuntimeConfig};

const DAY_MS: i64 = 86_400_000;

/// More records than a list walk may take: the backfill is sliced by created date.
fn sliced() -> Settings {
    Settings {
        list_walk_max_records: 100,
        backfill_reads: BackfillReads::Search,
        backfill_slice_records: 80,
        slices_in_flight: 3,
        ..fast_settings()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sliced_backfill_has_records_created_in_1900_in_1969_and_after_t0_c1() -> anyhow::Result<()> {
    let h = Harness::start_with(sim_config(300, &[ObjectType::Deals]), sliced()).await?;
    let in_a_year = common::clock::system().now_ms() + 365 * DAY_MS;
    let created = h
        .mutate(MutateRequest {
            object_type: "deals".into(),
            creates_at: vec![
                -2_208_988_800_000, // 1900-01-01, as imports carry it
                -15_638_400_000,    // 1969-07-04
                -1,                 // 1969-12-31T23:59:59.999Z
                in_a_year,
            ],
            ..Default::default()
        })
        .await?;
    let reports = h.sync(&["deals"], RequestedMode::Full).await?;
    let run = reports[0].run.as_ref().expect("a run");
    assert!(run.slices > 1, "a sliced backfill: {} slices", run.slices);
    assert!(run.window_to_ms < in_a_year, "one record is created after T0");
    assert_eq!(h.assert_equals_truth(&["deals"]).await?, 304);
    let (lake, _) = h.diff("deals").await?;
    for (id, dt) in created
        .created
        .iter()
        .zip(["1900-01-01", "1969-07-04", "1969-12-31"])
    {
        let key: i64 = id.parse()?;
        assert!(
            lake.rows.contains_key(&key),
            "{id} created on {dt} is in the lake"
        );
        assert_eq!(lake.rows_per_dt.get(dt), Some(&1), "{dt}");
    }
    Ok(())
}

/// Records a page holds in the id-order tests: seeded ids leave gaps of up to six free ids,
/// so pages of two records created after T0 only (the page a walk that believed in id order
/// stopped at) lie ahead of the cursor.
const SMALL_PAGE: u32 = 2;

/// A full sync while 150 records are created, mid-walk, with ids inside the range the walk
/// has not read yet (pages of records created after T0 only, ahead of the cursor).
async fn backfill_while_creating_low_ids(settings: Settings) -> anyhow::Result<()> {
    let mut config = sim_config(300, &[ObjectType::Contacts]);
    // Slow enough that the creates land mid-walk.
    config.runtime = RuntimeConfig {
        latency_ms: 10,
        ..config.runtime
    };
    let both = settings.backfill_reads == BackfillReads::Both;
    let mut h = Harness::start_with(config, settings).await?;
    if both {
        // Both paths are planned only where search is limited, as HubSpot's is.
        h.pipeline.hubspot = hubsync_tests::harness::search_limited_client(&h.sim.base_url())?;
    }
    let before: BTreeSet<i64> = h
        .sim
        .truth("contacts")?
        .iter()
        .map(|r| r.id.parse())
        .collect::<Result<_, _>>()?;
    let ahead = h.sim.truth("contacts")?[200].id.parse::<u64>()?;
    let p = h.pipeline.clone();
    let sim = h.sim.handle();
    let creator = tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        // Once the walk has recorded a few pages, and well before it reaches `ahead`.
        loop {
            let run = p.ledger.active_run("contacts").await?;
            if run.is_some_and(|r| r.records >= 30) {
                break;
            }
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "the walk never started");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let out = sim
            .mutate(&MutateRequest {
                object_type: "contacts".into(),
                creates: 150,
                ids_from: Some(ahead),
                ..Default::default()
            })
            .await?;
        anyhow::Ok(out.created)
    });
    h.sync(&["contacts"], RequestedMode::Full).await?;
    let created = creator.await??;
    let run = latest_run(&h.pipeline, "contacts").await?;
    assert!(
        created
            .iter()
            .all(|id| id.parse::<u64>().is_ok_and(|i| i > ahead)),
        "ids inside the range the walk had not read"
    );
    let (lake, diff) = h.diff("contacts").await?;
    let lost: Vec<&i64> = before
        .iter()
        .filter(|k| !lake.rows.contains_key(k))
        .take(10)
        .collect();
    assert!(
        lost.is_empty(),
        "pre-existing contacts were never read: {lost:?} ({} records read in {} slices)",
        run.records,
        run.slices
    );
    assert!(
        diff.duplicate_keys.is_empty() && diff.misplaced.is_empty(),
        "{}",
        diff.summary()
    );
    // The records created after T0 that this walk skipped are the next window's.
    h.pipeline.flag.set("true").await?;
    h.sync(&["contacts"], RequestedMode::Auto).await?;
    h.assert_equals_truth(&["contacts"]).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_walk_reads_every_record_while_ids_out_of_creation_order_appear_c2() -> anyhow::Result<()> {
    let settings = Settings {
        list_page_size: SMALL_PAGE,
        ..fast_settings()
    };
    backfill_while_creating_low_ids(settings).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sliced_backfill_reads_every_record_while_ids_out_of_creation_order_appear_c2() -> anyhow::Result<()>
{
    let settings = Settings {
        search_page_size: SMALL_PAGE,
        ..sliced()
    };
    backfill_while_creating_low_ids(settings).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_on_both_paths_reads_every_record_while_ids_out_of_creation_order_appear_c2(
) -> anyhow::Result<()> {
    // The walk and two lanes claiming ten pages' worth at a time: the creates land in ranges
    // the walk, a claim or nobody yet has read (J1, J2).
    let settings = Settings {
        backfill_reads: BackfillReads::Both,
        lane_records: 20,
        list_page_size: SMALL_PAGE,
        search_page_size: SMALL_PAGE,
        ..sliced()
    };
    backfill_while_creating_low_ids(settings).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deal_whose_created_date_moves_has_one_row_in_its_new_partition_k1() -> anyhow::Result<()> {
    let h = Harness::start_with(sim_config(200, &[ObjectType::Deals]), fast_settings()).await?;
    h.sync(&["deals"], RequestedMode::Full).await?;
    let before = h.diff("deals").await?.0;
    let moved = h
        .mutate(MutateRequest {
            object_type: "deals".into(),
            moves: 4,
            move_days: -400,
            updates: 3,
            ..Default::default()
        })
        .await?;
    h.pipeline.flag.set("true").await?;
    h.sync(&["deals"], RequestedMode::Auto).await?;
    h.assert_equals_truth(&["deals"]).await?;
    let (after, diff) = h.diff("deals").await?;
    assert!(
        diff.duplicate_keys.is_empty() && diff.misplaced.is_empty(),
        "{}",
        diff.summary()
    );
    for id in &moved.moved {
        let key: i64 = id.parse()?;
        let (old, new) = (&before.rows[&key], &after.rows[&key]);
        let shift = old.created_ms.zip(new.created_ms).map(|(o, n)| (o - n) / DAY_MS);
        assert_eq!(
            shift,
            Some(400),
            "{id} moved 400 days back, one row in the new partition"
        );
    }
    // A second incremental sync after the move changes nothing more.
    h.sync(&["deals"], RequestedMode::Auto).await?;
    h.assert_equals_truth(&["deals"]).await?;
    Ok(())
}
