//! S1: two live copies of one page job (SQS delivered it twice, or a consumer stalled past its
//! visibility while a second got it), with a record archived between their fetches, so the
//! copies hold different records and end at different cursors. A test hold keeps one copy
//! between its fetch and its staging while the other runs; in either order of their markers
//! nothing is lost: the merge reads exactly the files the recorded marker names.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::messages::{self, PageJob, RequestedMode, SyncRequest};
use common::pipeline::Hooks;
use consumer::JobOutcome;
use hubsync_tests::harness::{drain, fast_settings, pipeline_for, sim_config, Harness, Wired};
use sim::{MutateRequest, ObjectType};
use tokio::sync::Notify;

const RECORDS: u64 = 50;
const PAGE: u32 = 10;
/// The job both copies run: page 2 of the list walk.
const JOB: &str = "s00000-p000002";

/// Holds the first `holds` copies of [`JOB`] after their fetch until released, one by one.
#[derive(Default)]
struct Hold {
    arrivals: AtomicUsize,
    reached: Notify,
    release: [Notify; 2],
}

#[async_trait::async_trait]
impl Hooks for Hold {
    async fn after_fetch(&self, _run_id: &str, job_id: &str) {
        if job_id != JOB {
            return;
        }
        let n = self.arrivals.fetch_add(1, Ordering::SeqCst);
        if let Some(release) = self.release.get(n) {
            let released = release.notified();
            self.reached.notify_one();
            released.await;
        }
    }
}

async fn reached(hold: &Hold) -> anyhow::Result<()> {
    tokio::time::timeout(Duration::from_secs(30), hold.reached.notified())
        .await
        .map_err(|_| anyhow::anyhow!("no copy reached the hold"))
}

/// Runs the pages queue until page [`JOB`] is due, and returns it (not acked: the copies run it).
async fn run_until_job(p: &Wired) -> anyhow::Result<PageJob> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "page {JOB} never came");
        for m in p.pages.receive(10, Duration::from_millis(100)).await? {
            let job = messages::decode_page_job(&m.body)?;
            if job.job_id() == JOB {
                p.pages.ack(&m.receipt).await?;
                return Ok(job);
            }
            consumer::process_job(p, &p.hubspot, &job).await?;
            p.pages.ack(&m.receipt).await?;
        }
    }
}

/// Sets up a full list walk, pages of 10, held at page 2.
async fn start(hold: Arc<Hold>) -> anyhow::Result<(Harness, PageJob)> {
    let mut settings = fast_settings();
    settings.list_page_size = PAGE;
    let mut h = Harness::start_with(sim_config(RECORDS, &[ObjectType::Deals]), settings).await?;
    h.pipeline.hooks = Some(hold);
    let request = SyncRequest {
        request_id: "copies".into(),
        table: "deals".into(),
        mode: RequestedMode::Full,
        requested_at_ms: 0,
    };
    producer::handle_request(&h.pipeline, &h.pipeline.hubspot, &request).await?;
    let job = run_until_job(&h.pipeline).await?;
    Ok((h, job))
}

/// The id of the `i`-th live deal, by id.
fn nth_id(h: &Harness, i: usize) -> anyhow::Result<u64> {
    Ok(h.sim.truth("deals")?[i].id.parse()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_copy_that_fetched_first_loses_and_nothing_is_lost_s1() -> anyhow::Result<()> {
    let hold = Arc::new(Hold::default());
    let (h, job) = start(hold.clone()).await?;
    // Copy B fetches page 2 (records 20..29) and is held; then record 22 is archived, so copy
    // A's page is 20, 21, 23..30 and its cursor one record further.
    let p = h.pipeline.clone();
    let b = {
        let (p, job) = (p.clone(), job.clone());
        tokio::spawn(async move { consumer::process_job(&p, &p.hubspot, &job).await })
    };
    reached(&hold).await?;
    let boundary = nth_id(&h, 30)?;
    h.mutate(MutateRequest {
        object_type: "deals".into(),
        archive_ids: vec![nth_id(&h, 22)?],
        ..Default::default()
    })
    .await?;
    hold.release[1].notify_one(); // a second hold slot is never used: A passes at once
    let a = consumer::process_job(&p, &p.hubspot, &job).await?;
    assert!(matches!(a, JobOutcome::Staged { records: 10, .. }), "{a:?}");
    let done = p
        .ledger
        .page_done("deals-copies", JOB)
        .await?
        .expect("A's marker");
    assert!(done.next_cursor.is_some());
    // B stages after A recorded the page: its files are its own and go (S1).
    hold.release[0].notify_one();
    let b = b.await??;
    assert_eq!(b, JobOutcome::Duplicate);
    drain(&p).await?;
    h.assert_equals_truth(&["deals"]).await?;
    let (lake, _) = h.diff("deals").await?;
    assert!(
        lake.rows.contains_key(&(boundary as i64)),
        "the record after B's page is not lost"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_copy_that_fetched_first_wins_and_nothing_is_lost_s1() -> anyhow::Result<()> {
    let hold = Arc::new(Hold::default());
    let (h, job) = start(hold.clone()).await?;
    let p = h.pipeline.clone();
    // Copy X fetches first (with record 22) and is held; record 22 is archived; copy Y
    // fetches (without it) and is held too; X records the page, then Y stages and loses.
    let x = {
        let (p, job) = (p.clone(), job.clone());
        tokio::spawn(async move { consumer::process_job(&p, &p.hubspot, &job).await })
    };
    reached(&hold).await?;
    let archived = nth_id(&h, 22)?;
    h.mutate(MutateRequest {
        object_type: "deals".into(),
        archive_ids: vec![archived],
        ..Default::default()
    })
    .await?;
    let y = {
        let (p, job) = (p.clone(), job.clone());
        tokio::spawn(async move { consumer::process_job(&p, &p.hubspot, &job).await })
    };
    reached(&hold).await?;
    hold.release[0].notify_one();
    assert!(matches!(x.await??, JobOutcome::Staged { records: 10, .. }));
    hold.release[1].notify_one();
    assert_eq!(y.await??, JobOutcome::Duplicate);
    drain(&p).await?;
    // The full run read record 22 before its archive (after T0): every record of the source
    // is in the lake, and only that one is extra, until the next incremental window.
    let (lake, diff) = h.diff("deals").await?;
    assert!(diff.missing.is_empty(), "{}", diff.summary());
    assert_eq!(diff.unexpected, vec![archived as i64], "{}", diff.summary());
    assert!(lake.duplicate_keys.is_empty());
    p.flag.set("true").await?;
    h.sync(&["deals"], RequestedMode::Auto).await?;
    h.assert_equals_truth(&["deals"]).await?;
    Ok(())
}

/// The same race against a real pages queue on the emulator is the chaos test's (pauses); a
/// pipeline built here without a hold runs straight through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_hold_both_copies_run_one_after_the_other() -> anyhow::Result<()> {
    let server = sim::start(sim_config(RECORDS, &[ObjectType::Deals])).await?;
    let dir = tempfile::tempdir()?;
    let mut settings = fast_settings();
    settings.list_page_size = PAGE;
    let p = pipeline_for(&server.base_url(), dir.path(), settings)?;
    producer::handle_request(
        &p,
        &p.hubspot,
        &SyncRequest {
            request_id: "twice".into(),
            table: "deals".into(),
            mode: RequestedMode::Full,
            requested_at_ms: 0,
        },
    )
    .await?;
    let job = run_until_job(&p).await?;
    let first = consumer::process_job(&p, &p.hubspot, &job).await?;
    let second = consumer::process_job(&p, &p.hubspot, &job).await?;
    assert!(matches!(first, JobOutcome::Staged { .. }) && second == JobOutcome::Duplicate);
    drain(&p).await?;
    use futures::TryStreamExt;
    let staged: Vec<_> = p
        .lake
        .store()
        .list(Some(&p.lake.staging_run_dir("deals", "deals-twice")))
        .try_collect()
        .await?;
    assert!(staged.is_empty(), "{staged:?}");
    Ok(())
}
