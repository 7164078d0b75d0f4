//! Every failpoint of `common::failpoint::ALL`, embedded mode: `hubsync run` dies there (SIGABRT
//! from inside the process, not a caught panic), the invariants are checked with nothing
//! running, and a restarted `hubsync run` finishes the run from the redelivered messages. Each
//! failpoint is crashed in a full sync and then in an incremental sync after changes.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::failpoint;
use futures::StreamExt;
use hubsync_tests::binary::{hubsync_binary, status_within};
use hubsync_tests::crash::{check_after_crash, check_finished, hit_for, Snapshot};
use hubsync_tests::harness::{fast_settings, pipeline_for, sim_config};
use sim::{MutateRequest, ObjectType};

/// About seven backfill slices of two pages, then search slices once 210 records changed.
const RECORDS: u64 = 250;
const SIGABRT: i32 = 6;

/// How the backfills read: `search` (created-date slices) or `both` (a walk and lanes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reads {
    Search,
    Both,
}

fn hubsync_run(
    lake: &Path,
    base_url: &str,
    (mode, reads): (&str, Reads),
    failpoints: Option<&str>,
    log: &Path,
) -> anyhow::Result<std::process::ExitStatus> {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    let mut cmd = Command::new(hubsync_binary()?);
    cmd.args(["run", "--lake"])
        .arg(lake)
        .args(["--hubspot-url", base_url, "--tables", "deals", "--mode", mode])
        .env_remove("HUBSPOT_TOKEN")
        .env_remove(failpoint::ENV)
        .env("RUST_LOG", "info")
        // The backfill as parallel created-date slices of two pages, two in flight: slices
        // start one another (L5) and partitions merge mid-fetch (P1) in both modes.
        .env("HUBSYNC_LIST_WALK_MAX", "0")
        .env("HUBSYNC_SLICE_RECORDS", "60")
        .env("HUBSYNC_SLICES_IN_FLIGHT", "2")
        .env("HUBSYNC_PAGE_SIZE", "25")
        .stdout(Stdio::null())
        .stderr(log);
    match reads {
        Reads::Search => cmd.env("HUBSYNC_BACKFILL_READS", "search"),
        // A walk and one lane, claiming two pages' worth at a time: both read, and meet.
        Reads::Both => cmd
            .env("HUBSYNC_BACKFILL_READS", "both")
            .env("HUBSYNC_LANE_RECORDS", "50"),
    };
    if let Some(spec) = failpoints {
        cmd.env(failpoint::ENV, spec);
    }
    status_within(&mut cmd, Duration::from_secs(120))
}

async fn crash_at(point: &'static str, reads: Reads) -> anyhow::Result<()> {
    let server = sim::start(sim_config(RECORDS, &[ObjectType::Deals])).await?;
    let base = server.base_url();
    let dir = tempfile::tempdir()?;
    let (lake, log) = (dir.path().join("lake"), dir.path().join("hubsync.log"));
    let p = pipeline_for(&base, &lake, fast_settings())?;
    let spec = format!("{point}@{}", hit_for(point));
    let fired = format!("failpoint {point} fired");
    let mut before = Snapshot::default();
    let modes: &[&str] = match reads {
        Reads::Search => &["full", "incremental"],
        // An incremental run reads modified windows either way.
        Reads::Both => &["full"],
    };
    for &mode in modes {
        if mode == "incremental" {
            server
                .mutate(&MutateRequest {
                    object_type: "deals".into(),
                    updates: 210,
                    creates: 6,
                    archives: 4,
                    same_timestamp: false,
                    ..Default::default()
                })
                .await?;
        }
        let fired_before = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches(&fired)
            .count();
        if !reached_in(point, mode) {
            let status = hubsync_run(&lake, &base, (mode, reads), None, &log)?;
            anyhow::ensure!(status.success(), "{mode} run failed ({status})");
            before = check_finished(&server, &p, "deals", &before).await?;
            continue;
        }
        let status = hubsync_run(&lake, &base, (mode, reads), Some(&spec), &log)?;
        let text = std::fs::read_to_string(&log)?;
        anyhow::ensure!(
            status.signal() == Some(SIGABRT) && text.matches(&fired).count() == fired_before + 1,
            "{mode} run with {spec}: expected death at the failpoint, got {status}; log tail:\n{}",
            tail(&text)
        );
        check_after_crash(&server, &p, "deals", &before)
            .await
            .map_err(|e| anyhow::anyhow!("{mode} run, after dying at {spec}: {e}"))?;
        let status = hubsync_run(&lake, &base, (mode, reads), None, &log)?;
        anyhow::ensure!(
            status.success(),
            "{mode} run restarted after {spec} failed ({status}); log tail:\n{}",
            tail(&std::fs::read_to_string(&log)?)
        );
        before = check_finished(&server, &p, "deals", &before).await.map_err(|e| {
            anyhow::anyhow!(
                "{mode} run, restarted after {spec}: {e}\nlog tail:\n{}",
                tail(&std::fs::read_to_string(&log).unwrap_or_default())
            )
        })?;
    }
    server.shutdown().await?;
    Ok(())
}

/// Whether a run of `mode` reaches `point`: an incremental run's slices are modified windows,
/// which own no partitions, so its partitions merge only once fetching is over (L3) and no
/// slice's end sends partition merges.
fn reached_in(point: &str, mode: &str) -> bool {
    !(point == failpoint::CONSUMER_AFTER_PARTITION_MERGES && mode == "incremental")
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(25)..].join("\n")
}

/// Crashes at each point, two at a time; returns how many were tried and each failure.
async fn crash_each(points: impl IntoIterator<Item = &'static str>, reads: Reads) -> (usize, Vec<String>) {
    let results: Vec<(&str, anyhow::Result<()>)> = futures::stream::iter(points)
        .map(|point| async move { (point, crash_at(point, reads).await) })
        .buffer_unordered(2)
        .collect()
        .await;
    let failures = results
        .iter()
        .filter_map(|(point, r)| r.as_ref().err().map(|e| format!("{point}: {e:#}")))
        .collect();
    (results.len(), failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failpoint_kills_hubsync_run_and_the_restart_ends_equal_to_truth() -> anyhow::Result<()> {
    let only = std::env::var("HUBSYNC_TEST_FAILPOINT").ok();
    let points = failpoint::ALL
        .iter()
        .filter(|p| only.as_deref().is_none_or(|o| o.split(',').any(|o| o == **p)));
    let (tried, failures) = crash_each(points.copied(), Reads::Search).await;
    println!(
        "failpoints crashed in embedded mode: {} of {} (each in a full and an incremental run)",
        tried - failures.len(),
        failpoint::ALL.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    Ok(())
}

/// The consumer's failpoints in a backfill on both paths (J1-J4; the walk and its one lane
/// start together, so no slice launches another): a walk page or a lane's page
/// dies after its meeting step (a frontier moved, a range claimed) and its staged files, before
/// its marker, or after it; the restart's redelivery gets the same claim back (J3), the walk
/// stops on its own page (J2), and the lake ends equal to the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_failpoints_kill_a_backfill_on_both_paths_and_the_restart_ends_equal_to_truth(
) -> anyhow::Result<()> {
    let points = [
        failpoint::CONSUMER_AFTER_STAGE,
        failpoint::CONSUMER_AFTER_PAGE_DONE,
        failpoint::CONSUMER_AFTER_NEXT_PAGE,
        failpoint::CONSUMER_AFTER_BEGIN_MERGING,
    ];
    let (_, failures) = crash_each(points, Reads::Both).await;
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    Ok(())
}
