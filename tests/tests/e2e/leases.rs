//! Leases and abandoned runs (L4): a run stuck on a dead-lettered page blocks its table at most
//! for its lease; the late messages of an abandoned run are dropped, logged, and never touch
//! the lake; a replay after the cause is fixed completes a run that is still active.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use common::clock::{Clock, EpochMs};
use common::messages::{self, Body, MergeTask, RequestedMode, SyncRequest};
use common::ports::{Outgoing, RunStatus};
use futures::TryStreamExt;
use hubsync_tests::harness::{diff_lake, drain, fast_settings, live_files, pipeline_with_clock, sim_config};
use sim::{ConfigPatch, FaultKind, ObjectType};

const LEASE_MS: i64 = 10 * 60 * 1000;

/// The system clock, moved forward by tests.
#[derive(Debug, Default)]
struct Skewed(AtomicI64);

impl Clock for Skewed {
    fn now_ms(&self) -> EpochMs {
        chrono::Utc::now().timestamp_millis() + self.0.load(Ordering::SeqCst)
    }
}

fn request(id: &str) -> SyncRequest {
    SyncRequest {
        request_id: id.into(),
        table: "deals".into(),
        mode: RequestedMode::Full,
        requested_at_ms: 0,
    }
}

fn faults(rate: f64) -> ConfigPatch {
    ConfigPatch {
        fault_rate: Some(rate),
        fault_kinds: Some(vec![FaultKind::ServerError]),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_run_blocks_its_table_only_for_its_lease_and_its_late_messages_never_land(
) -> anyhow::Result<()> {
    let server = sim::start(sim_config(120, &[ObjectType::Deals])).await?;
    let dir = tempfile::tempdir()?;
    let clock = Arc::new(Skewed::default());
    let settings = common::pipeline::Settings {
        lease_ms: LEASE_MS,
        ..fast_settings()
    };
    let p = pipeline_with_clock(&server.base_url(), dir.path(), settings, clock.clone())?;

    // Planned (a table's first run needs its property definitions), then HubSpot fails every
    // request: the first page is retried, then dead-lettered.
    producer::handle_request(&p, &p.hubspot, &request("stuck")).await?;
    server.configure(&faults(1.0))?;
    let drained = drain(&p).await?;
    assert!(!drained.errors.is_empty());
    assert_eq!(p.pages.depth().await?.dead, 1);
    let stuck = p.ledger.get_run("deals-stuck").await?.expect("the stuck run");
    assert_eq!(stuck.status, RunStatus::Fetching);

    // Within the lease the table is held: a new request is refused, with the active run named.
    clock.0.store(LEASE_MS / 2, Ordering::SeqCst);
    let outcome = producer::handle_request(&p, &p.hubspot, &request("early")).await?;
    assert!(
        matches!(&outcome, producer::RequestOutcome::Refused { active_run_id, .. } if active_run_id == "deals-stuck"),
        "{outcome:?}"
    );

    // Past the lease the stuck run is abandoned and a new run takes the table, and commits.
    server.configure(&faults(0.0))?;
    clock.0.store(LEASE_MS + 1, Ordering::SeqCst);
    let outcome = producer::handle_request(&p, &p.hubspot, &request("fresh")).await?;
    assert!(
        matches!(outcome, producer::RequestOutcome::Started { .. }),
        "{outcome:?}"
    );
    let stuck = p.ledger.get_run("deals-stuck").await?.expect("the stuck run");
    assert_eq!(stuck.status, RunStatus::Abandoned);
    assert!(
        stuck
            .note
            .as_deref()
            .unwrap_or_default()
            .contains("lease expired"),
        "{stuck:?}"
    );
    drain(&p).await?;
    assert_eq!(
        p.ledger.get_run("deals-fresh").await?.expect("fresh").status,
        RunStatus::Committed
    );
    let (_, diff) = diff_lake(&server, &p, "deals").await?;
    assert!(diff.is_clean(), "{}", diff.summary());
    let lake_before = live_files(&p, "deals").await?;

    // The abandoned run's late messages: its dead-lettered page replayed, and a merge task.
    assert_eq!(p.pages.replay_dead_letters(None, false).await?.len(), 1);
    let late_merge = MergeTask {
        run_id: "deals-stuck".into(),
        table: "deals".into(),
        dt: Some(lake_before.keys().next().expect("a partition").clone()),
        slice: None,
        inputs: None,
    };
    p.merges
        .send(vec![Outgoing::fifo(
            messages::encode(&Body::MergeTask(late_merge.clone())),
            late_merge.group_id(),
            late_merge.dedup_id(),
        )])
        .await?;
    let drained = drain(&p).await?;
    assert!(drained.errors.is_empty(), "{:?}", drained.errors);
    assert_eq!(drained.dropped.len(), 2, "{:?}", drained.dropped);
    assert!(
        drained
            .dropped
            .iter()
            .all(|why| why.contains("deals-stuck is abandoned")),
        "{:?}",
        drained.dropped
    );
    // They never touched the lake: same live files, nothing staged for the abandoned run.
    assert_eq!(live_files(&p, "deals").await?, lake_before);
    let staged: Vec<_> = p
        .lake
        .store()
        .list(Some(&p.lake.staging_run_dir("deals", "deals-stuck")))
        .try_collect()
        .await?;
    assert!(staged.is_empty(), "{staged:?}");
    assert_eq!(p.pages.depth().await?.dead, 0);
    server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_after_the_cause_is_fixed_completes_the_still_active_run() -> anyhow::Result<()> {
    let server = sim::start(sim_config(120, &[ObjectType::Deals])).await?;
    let dir = tempfile::tempdir()?;
    let p = pipeline_with_clock(
        &server.base_url(),
        dir.path(),
        fast_settings(),
        common::clock::system(),
    )?;
    // The first page succeeds; then HubSpot fails until fixed, and the second page dies.
    producer::handle_request(&p, &p.hubspot, &request("r")).await?;
    let pages = consumer::PageJobHandler::new(p.pipeline.clone(), p.hubspot.clone());
    common::worker::process_one(
        p.pages.as_ref(),
        pages.as_ref(),
        &hubsync_tests::harness::step_options(),
    )
    .await?;
    server.configure(&faults(1.0))?;
    drain(&p).await?;
    assert_eq!(p.pages.depth().await?.dead, 1);
    let run = p.ledger.get_run("deals-r").await?.expect("run");
    assert_eq!(run.status, RunStatus::Fetching, "waits within its lease");
    assert_eq!(run.records, 100, "the first page is recorded");

    server.configure(&faults(0.0))?;
    assert_eq!(p.pages.replay_dead_letters(None, false).await?.len(), 1);
    let drained = drain(&p).await?;
    assert!(drained.errors.is_empty(), "{:?}", drained.errors);
    let run = p.ledger.get_run("deals-r").await?.expect("run");
    assert_eq!(run.status, RunStatus::Committed);
    assert_eq!(run.records, 120);
    let (_, diff) = diff_lake(&server, &p, "deals").await?;
    assert!(diff.is_clean(), "{}", diff.summary());
    server.shutdown().await?;
    Ok(())
}
