//! `hubsync run` killed with -9 mid-backfill and restarted ends with the same lake as an
//! uninterrupted run (and equal to truth).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::ports::RunStatus;
use hubsync_tests::binary::hubsync_binary;
use hubsync_tests::harness::{diff_lake, fast_settings, pipeline_for, sim_config, wait_for};
use infra::audit::read_lake_table;
use sim::ObjectType;

const TABLES: [&str; 2] = ["deals", "contacts"];

fn spawn_run(lake: &std::path::Path, base_url: &str, log: &std::path::Path) -> anyhow::Result<Child> {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    Ok(Command::new(hubsync_binary()?)
        .args(["run", "--lake"])
        .arg(lake)
        .args([
            "--hubspot-url",
            base_url,
            "--tables",
            "deals,contacts",
            "--consumers",
            "2",
        ])
        .env_remove("HUBSPOT_TOKEN")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?)
}

/// Progress of the lake's runs of `TABLES`.
#[derive(Debug, Clone, Copy)]
struct Progress {
    records: i64,
    merges_done: i64,
    committed: bool,
}

/// When to kill: a description and a condition on progress.
type Stage = (&'static str, fn(&Progress) -> bool);

async fn progress(p: &common::pipeline::Pipeline) -> anyhow::Result<Progress> {
    let runs = p.ledger.list_runs(None, 100).await?;
    let merges_done = runs
        .iter()
        .filter(|r| r.status == RunStatus::Merging)
        .map(|r| r.merges_counted - r.merges_outstanding)
        .sum();
    Ok(Progress {
        records: runs.iter().map(|r| r.records).sum(),
        merges_done,
        committed: TABLES.iter().all(|t| {
            runs.iter()
                .any(|r| &r.table == t && r.status == RunStatus::Committed)
        }),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_with_sigkill_mid_backfill_and_restarted_ends_with_the_same_lake() -> anyhow::Result<()> {
    let mut config = sim_config(2000, &[ObjectType::Deals, ObjectType::Contacts]);
    config.runtime.latency_ms = 60;
    let server = sim::start(config).await?;
    let base = server.base_url();
    let dir = tempfile::tempdir()?;
    let (crashed, clean) = (dir.path().join("crashed"), dir.path().join("clean"));
    let log = dir.path().join("hubsync.log");
    let watcher = pipeline_for(&base, &crashed, fast_settings())?;

    // Kill at growing progress: early and late in the fetch, then twice while merging.
    let stages: [Stage; 4] = [
        ("300 records fetched", |p| p.records >= 300),
        ("1,500 records fetched", |p| p.records >= 1500),
        ("30 partitions merged", |p| p.merges_done >= 30),
        ("300 partitions merged", |p| p.merges_done >= 300),
    ];
    let mut kills = 0;
    for (what, reached) in stages {
        let mut child = spawn_run(&crashed, &base, &log)?;
        let waited = wait_for(what, Duration::from_secs(120), || async {
            let now = progress(&watcher).await?;
            Ok(reached(&now) || now.committed)
        })
        .await;
        child.kill()?; // SIGKILL: no destructor, no flush, no goodbye.
        child.wait()?;
        waited?;
        if progress(&watcher).await?.committed {
            break;
        }
        kills += 1;
    }
    assert!(
        kills >= 3,
        "the runs finished before the kills; slow the simulator down"
    );

    // Restarted, it resumes the active runs and exits 0 when they commit.
    let status = Command::new(hubsync_binary()?)
        .args(["run", "--lake"])
        .arg(&crashed)
        .args(["--hubspot-url", &base, "--tables", "deals,contacts"])
        .env_remove("HUBSPOT_TOKEN")
        .stdout(Stdio::null())
        .stderr(std::fs::OpenOptions::new().append(true).open(&log)?)
        .status()?;
    assert!(
        status.success(),
        "resumed run failed; log:\n{}",
        std::fs::read_to_string(&log)?
    );
    assert!(progress(&watcher).await?.committed);

    // An uninterrupted run of the same portal.
    let status = Command::new(hubsync_binary()?)
        .args(["run", "--lake"])
        .arg(&clean)
        .args(["--hubspot-url", &base, "--tables", "deals,contacts"])
        .env_remove("HUBSPOT_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    assert!(status.success());
    let reference = pipeline_for(&base, &clean, fast_settings())?;
    for t in TABLES {
        let (lake, diff) = diff_lake(&server, &watcher, t).await?;
        assert!(diff.is_clean(), "{t} after {kills} kills: {}", diff.summary());
        let spec = watcher.catalog.table(t)?;
        let other = read_lake_table(&reference.lake, spec).await?;
        assert_eq!(lake.rows, other.rows, "{t}: crashed and clean lakes differ");
        assert_eq!(lake.rows_per_dt, other.rows_per_dt);
        // Nothing left in staging once committed.
        let staging = watcher.lake.store().list(None);
        let leftovers: Vec<_> = futures_collect(staging)
            .await?
            .into_iter()
            .filter(|p| p.starts_with(&format!("_staging/{t}/")))
            .collect();
        assert!(leftovers.is_empty(), "{t}: staging not cleared: {leftovers:?}");
    }
    server.shutdown().await?;
    Ok(())
}

async fn futures_collect(
    mut s: futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>>,
) -> anyhow::Result<Vec<String>> {
    use futures::StreamExt;
    let mut out = Vec::new();
    while let Some(m) = s.next().await {
        out.push(m?.location.to_string());
    }
    Ok(out)
}

/// E1: `hubsync run` killed 30 times in quick succession (an OOM or restart loop does this),
/// each time a moment after it started, then run to the end: the messages each dead process
/// held were released without counting against them, so none was dead-lettered, and the
/// lake equals the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_30_times_in_quick_succession_it_commits_with_no_dead_letter_e1() -> anyhow::Result<()> {
    const KILLS: u64 = 30;
    let mut config = sim_config(600, &[ObjectType::Deals, ObjectType::Contacts]);
    config.runtime.latency_ms = 20;
    let server = sim::start(config).await?;
    let base = server.base_url();
    let dir = tempfile::tempdir()?;
    let (lake, log) = (dir.path().join("lake"), dir.path().join("hubsync.log"));
    let watcher = pipeline_for(&base, &lake, fast_settings())?;
    // A seeded spread of lifetimes, 150 ms to 1.2 s: some die starting, some mid-page.
    let mut seed: u64 = 0x5eed;
    let started = std::time::Instant::now();
    for _ in 0..KILLS {
        let mut child = spawn_run(&lake, &base, &log)?;
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        std::thread::sleep(Duration::from_millis(150 + (seed >> 33) % 1_050));
        child.kill()?; // SIGKILL
        child.wait()?;
    }
    let killing = started.elapsed();
    let before = progress(&watcher).await?;
    let status = hubsync_tests::binary::status_within(
        Command::new(hubsync_binary()?)
            .args(["run", "--lake"])
            .arg(&lake)
            .args(["--hubspot-url", &base, "--tables", "deals,contacts"])
            .env_remove("HUBSPOT_TOKEN")
            .stdout(Stdio::null())
            .stderr(std::fs::OpenOptions::new().append(true).open(&log)?),
        Duration::from_secs(240),
    )?;
    let text = std::fs::read_to_string(&log)?;
    assert!(
        status.success(),
        "the run after the kills failed ({status}); log tail:\n{}",
        text.lines().rev().take(30).collect::<Vec<_>>().join("\n")
    );
    let dead = watcher.requests.depth().await?.dead
        + watcher.pages.depth().await?.dead
        + watcher.merges.depth().await?.dead;
    let released = text
        .matches("released messages held by an interrupted process")
        .count();
    println!(
        "{KILLS} kills in {killing:.1?} ({} records fetched by then, {released} restarts released messages), \
         then the run committed with {dead} dead letters",
        before.records
    );
    assert_eq!(dead, 0, "healthy messages were dead-lettered for the kills");
    for t in TABLES {
        let (_, diff) = diff_lake(&server, &watcher, t).await?;
        assert!(diff.is_clean(), "{t} after {KILLS} kills: {}", diff.summary());
    }
    server.shutdown().await?;
    Ok(())
}
