//! Stalled workers, on the emulator under IAM: a consumer and a merger frozen (SIGSTOP, as a
//! GC or VM pause freezes a process) past their messages' visibility while other processes
//! take their messages and finish the run, then woken (SIGCONT) while the next run is under
//! way with updates, creates and archives; then a merger frozen inside a full run's commit,
//! woken after a later run created partitions. Every woken process acts on its old snapshot,
//! and every action is fenced: S1 (its staged files are its own), G1 (its publish names the
//! generation it read), G2 (its commit re-reads the run), W1 (its handler is cancelled once it
//! sees its visibility lapsed). `hubsync audit` finds no difference.

use std::time::Duration;

use common::ports::RunStatus;
use hubsync_tests::deploy::{aws_pipeline, stop, tail, Deployment, Service};
use hubsync_tests::harness::{sim_config, wait_for};
use hubsync_tests::moto::Moto;
use sim::{MutateRequest, ObjectType};

/// Whether the process is stopped (its state in `/proc/<pid>/stat` is `T`).
fn is_stopped(service: &Service) -> bool {
    std::fs::read_to_string(format!("/proc/{}/stat", service.id()))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('T'))
        })
        .unwrap_or(false)
}

fn signal(service: &Service, sig: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("kill")
        .args([sig, &service.id().to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "kill {sig} {} failed", service.id());
    Ok(())
}

async fn stopped(what: &str, service: &Service) -> anyhow::Result<()> {
    wait_for(what, Duration::from_secs(180), || async {
        Ok(is_stopped(service))
    })
    .await
}

async fn committed(p: &common::pipeline::Pipeline, run_id: &str) -> anyhow::Result<bool> {
    Ok(p.ledger
        .get_run(run_id)
        .await?
        .is_some_and(|r| r.status == RunStatus::Committed))
}

/// Requests a sync and returns its run id.
fn request(d: &Deployment, mode: &str) -> anyhow::Result<String> {
    let out = d.hubsync_ok(&["sync", "--table", "deals", "--mode", mode])?;
    out.split_whitespace()
        .skip_while(|w| *w != "run")
        .nth(1)
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("no run id in {out:?}"))
}

fn changes(creates: u64) -> MutateRequest {
    MutateRequest {
        object_type: "deals".into(),
        updates: 8,
        creates,
        archives: 3,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_workers_woken_after_others_took_their_messages_change_nothing_newer() -> anyhow::Result<()> {
    let _env = hubsync_tests::moto::env_lock().await;
    let moto = Moto::start()?;
    let server = sim::start(sim_config(120, &[ObjectType::Deals])).await?;
    let dir = tempfile::tempdir()?;
    let d = Deployment::on(
        &moto,
        &server.base_url(),
        "stall",
        &dir.path().join("services.log"),
        &[
            ("HUBSYNC_PAGE_SIZE", "10"),
            ("HUBSYNC_VISIBILITY_SECS", "3"),
            ("HUBSYNC_MAX_RECEIVE_COUNT", "20"),
        ],
    )?;
    d.hubsync_ok(&["infra", "up", "--max-receive-count", "20"])?;
    let p = aws_pipeline("lake-stall", "stall").await?;
    let context = |e: anyhow::Error| anyhow::anyhow!("{e:#}\n--- services ---\n{}", tail(&d.log));
    let mut pauses = 0;

    // 1. A backfill whose third staged page freezes consumer A, and whose second merged file
    //    freezes merger A; each is the only one of its role until frozen, then others start.
    let producer = d.service("producer")?;
    let consumer_a = d.service_with(
        "consumer",
        &[(common::failpoint::ENV, "consumer.after_stage@3=stop")],
    )?;
    let merger_a = d.service_with("merger", &[(common::failpoint::ENV, "merger.after_write@2=stop")])?;
    let backfill = request(&d, "full")?;
    stopped("consumer A frozen after staging a page", &consumer_a)
        .await
        .map_err(context)?;
    pauses += 1;
    let consumer_b = d.service("consumer")?;
    stopped("merger A frozen after writing a merged file", &merger_a)
        .await
        .map_err(context)?;
    pauses += 1;
    let merger_b = d.service("merger")?;
    wait_for(
        "the backfill to commit without A",
        Duration::from_secs(180),
        || committed(&p, &backfill),
    )
    .await
    .map_err(context)?;
    assert!(
        is_stopped(&consumer_a) && is_stopped(&merger_a),
        "A's stayed frozen throughout"
    );

    // 2. An incremental run with changes; A's wake up while it is under way, acting on the
    //    backfill's page and merge they held.
    server.mutate(&changes(6)).await?;
    d.hubsync_ok(&["flag", "set", "true"])?;
    let incremental = request(&d, "auto")?;
    wait_for(
        "the incremental run to start",
        Duration::from_secs(60),
        || async {
            Ok(p.ledger
                .get_run(&incremental)
                .await?
                .is_some_and(|r| r.status.is_active()))
        },
    )
    .await?;
    signal(&consumer_a, "-CONT")?;
    signal(&merger_a, "-CONT")?;
    wait_for("the incremental run to commit", Duration::from_secs(180), || {
        committed(&p, &incremental)
    })
    .await
    .map_err(context)?;
    stop(vec![consumer_a, merger_a, merger_b])?;

    // 3. A full run whose commit freezes merger C (the only merger until then), committed by
    //    merger D; then an incremental run creating partitions; then C wakes inside the old
    //    commit, whose run has ended.
    server.mutate(&changes(0)).await?;
    let merger_c = d.service_with(
        "merger",
        &[(common::failpoint::ENV, "merger.before_commit@1=stop")],
    )?;
    let full = request(&d, "full")?;
    stopped("merger C frozen before the commit", &merger_c)
        .await
        .map_err(context)?;
    pauses += 1;
    let merger_d = d.service("merger")?;
    wait_for(
        "the full run to commit without C",
        Duration::from_secs(180),
        || committed(&p, &full),
    )
    .await
    .map_err(context)?;
    let far = common::clock::system().now_ms() + 1_000 * 86_400_000;
    server
        .mutate(&MutateRequest {
            creates_at: vec![far, far + 86_400_000],
            ..changes(2)
        })
        .await?;
    let later = request(&d, "auto")?;
    wait_for("the later run to commit", Duration::from_secs(180), || {
        committed(&p, &later)
    })
    .await
    .map_err(context)?;
    let lake_before_wake = hubsync_tests::harness::live_files(&p, "deals").await?;
    // Woken, C either sees its visibility lapsed and cancels the handler (W1) or, if the
    // commit's first read slips through, finds the run committed and stops (G2).
    let gave_up = |text: &str| {
        text.matches("not committing: the run moved on").count()
            + text.matches("its handler is cancelled").count()
    };
    let before = gave_up(&std::fs::read_to_string(&d.log)?);
    signal(&merger_c, "-CONT")?;
    wait_for(
        "merger C to give up its old commit",
        Duration::from_secs(60),
        || async { Ok(gave_up(&std::fs::read_to_string(&d.log)?) > before) },
    )
    .await
    .map_err(context)?;
    let lake_after_wake = hubsync_tests::harness::live_files(&p, "deals").await?;
    assert_eq!(
        lake_before_wake, lake_after_wake,
        "G2: the woken commit dropped nothing"
    );
    stop(vec![producer, consumer_b, merger_c, merger_d])?;

    audit(&d)?;
    println!("stalls: {pauses} pauses past the visibility, then woken; audit: no differences");
    server.shutdown().await?;
    Ok(())
}

/// `hubsync audit` of deals against the simulator; fails unless it finds no difference.
fn audit(d: &Deployment) -> anyhow::Result<()> {
    let audit = d.hubsync(&["audit", "--tables", "deals", "--hubspot-url", &d.hubspot])?;
    let out = String::from_utf8_lossy(&audit.stdout);
    let differences = out.lines().find(|l| l.starts_with("audit:")).and_then(|l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        let i = words
            .iter()
            .position(|w| w.trim_end_matches(',') == "differences")?;
        words.get(i.checked_sub(1)?)?.parse::<u64>().ok()
    });
    anyhow::ensure!(audit.status.success(), "the audit found differences:\n{out}");
    anyhow::ensure!(differences == Some(0), "{out}");
    Ok(())
}

/// A backfill on both read paths (J1-J4) whose lane worker and walk worker freeze with a
/// staged page in hand, past their visibility: the one consumer left takes their messages,
/// claims and walks on, and the run commits without them. Woken during the next run, each
/// records its stale page (already recorded by the copy that took it over: its files are
/// deleted, S1) or sees its visibility lapsed and cancels (W1), and the meeting it joined has
/// moved on; the lake equals the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_walk_and_a_lane_frozen_past_their_visibility_change_nothing() -> anyhow::Result<()> {
    let _env = hubsync_tests::moto::env_lock().await;
    let moto = Moto::start()?;
    let server = sim::start(sim_config(600, &[ObjectType::Deals])).await?;
    let dir = tempfile::tempdir()?;
    let d = Deployment::on(
        &moto,
        &server.base_url(),
        "stallboth",
        &dir.path().join("services.log"),
        &[
            ("HUBSYNC_PAGE_SIZE", "20"),
            ("HUBSYNC_VISIBILITY_SECS", "3"),
            ("HUBSYNC_MAX_RECEIVE_COUNT", "20"),
            // Both paths: past the list-walk threshold, with search limited.
            ("HUBSYNC_LIST_WALK_MAX", "100"),
            ("HUBSYNC_SEARCH_RATE", "5"),
            ("HUBSYNC_LANE_RECORDS", "100"),
            ("HUBSYNC_WALK_REQUESTS_PER_JOB", "1"),
        ],
    )?;
    d.hubsync_ok(&["infra", "up", "--max-receive-count", "20"])?;
    let p = aws_pipeline("lake-stallboth", "stallboth").await?;
    let context = |e: anyhow::Error| anyhow::anyhow!("{e:#}\n--- services ---\n{}", tail(&d.log));

    // The lane worker first, alone: it takes the walk's first job and the lanes', and freezes
    // on its first staged lane page. Then the walk worker, alone, takes them all over once
    // their visibility lapses, and freezes on its first staged walk page. Then a healthy one.
    let producer = d.service("producer")?;
    let lane = d.service_with(
        "consumer",
        &[(common::failpoint::ENV, "consumer.lane_after_stage@1=stop")],
    )?;
    let merger = d.service("merger")?;
    let backfill = request(&d, "full")?;
    stopped("the lane worker frozen after staging a page", &lane)
        .await
        .map_err(context)?;
    let walk = d.service_with(
        "consumer",
        &[(common::failpoint::ENV, "consumer.walk_after_stage@1=stop")],
    )?;
    stopped("the walk worker frozen after staging a page", &walk)
        .await
        .map_err(context)?;
    let healthy = d.service("consumer")?;
    wait_for(
        "the backfill to commit without the frozen two",
        Duration::from_secs(180),
        || committed(&p, &backfill),
    )
    .await
    .map_err(context)?;
    assert!(
        is_stopped(&lane) && is_stopped(&walk),
        "both stayed frozen throughout"
    );
    let run = p
        .ledger
        .get_run(&backfill)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no run {backfill}"))?;
    let plan = hubsync_tests::harness::plan(&p, &run).await?;
    assert!(
        matches!(plan[0], common::messages::Slice::Walk { .. })
            && plan[1..]
                .iter()
                .all(|s| matches!(s, common::messages::Slice::Lane { .. })),
        "a backfill on both paths: {plan:?}"
    );
    audit(&d).map_err(context)?;

    // Woken while an incremental run with changes is under way.
    server.mutate(&changes(6)).await?;
    d.hubsync_ok(&["flag", "set", "true"])?;
    let incremental = request(&d, "auto")?;
    signal(&lane, "-CONT")?;
    signal(&walk, "-CONT")?;
    wait_for("the incremental run to commit", Duration::from_secs(180), || {
        committed(&p, &incremental)
    })
    .await
    .map_err(context)?;
    // Both woke where they froze and acted on their stale pages before the audit.
    wait_for("the frozen two to resume", Duration::from_secs(60), || async {
        let log = std::fs::read_to_string(&d.log)?;
        Ok(common::failpoint::BOTH_PATHS
            .iter()
            .all(|point| log.contains(&format!("failpoint {point} resumed"))))
    })
    .await
    .map_err(context)?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop(vec![producer, lane, walk, healthy, merger])?;
    audit(&d).map_err(context)?;
    server.shutdown().await?;
    Ok(())
}

/// G2 without the race: a commit of a full run that resumes (with its old head) after the run
/// was committed by another process and a later run created partitions drops nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_resumed_after_a_later_run_drops_nothing_g2() -> anyhow::Result<()> {
    use common::messages::RequestedMode;
    use hubsync_tests::harness::{latest_run, live_files, Harness};
    let h = Harness::start(sim_config(120, &[ObjectType::Deals])).await?;
    h.sync(&["deals"], RequestedMode::Full).await?;
    let mut stale = latest_run(&h.pipeline, "deals").await?;
    // The head as the stalled committer read it, before the run was committed.
    stale.status = RunStatus::Merging;
    stale.merges_outstanding = 0;
    let far = common::clock::system().now_ms() + 1_000 * 86_400_000;
    h.mutate(MutateRequest {
        object_type: "deals".into(),
        creates_at: vec![far, far + 86_400_000],
        updates: 5,
        ..Default::default()
    })
    .await?;
    h.pipeline.flag.set("true").await?;
    h.sync(&["deals"], RequestedMode::Auto).await?;
    let before = live_files(&h.pipeline, "deals").await?;
    merger::commit::commit(&h.pipeline, &stale).await?;
    assert_eq!(live_files(&h.pipeline, "deals").await?, before, "G2");
    h.assert_equals_truth(&["deals"]).await?;
    Ok(())
}
