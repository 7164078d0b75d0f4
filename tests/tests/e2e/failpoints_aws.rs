//! Every failpoint of `common::failpoint::ALL` in AWS mode: the service that reaches it (the
//! producer, a consumer or the merger, each its own process on the emulator) dies there; the
//! other services are stopped and the invariants checked with nothing running; then all are
//! restarted, SQS redelivers what the dead one held, and the run ends equal to truth.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use common::failpoint;
use common::ports::RunStatus;
use hubsync_tests::crash::{check_after_crash, check_finished, hit_for, Snapshot};
use hubsync_tests::deploy::{aws_pipeline, stop, tail, Deployment, Service};
use hubsync_tests::harness::{sim_config, wait_for};
use hubsync_tests::moto::Moto;
use sim::{MutateRequest, ObjectType};

const ROLES: [&str; 3] = ["producer", "consumer", "merger"];
const SIGABRT: i32 = 6;

/// The three services, `crashing` (if any) started with `spec` in its failpoints.
fn start(d: &Deployment, crashing: Option<(&str, &str)>) -> anyhow::Result<Vec<(&'static str, Service)>> {
    ROLES
        .iter()
        .map(|role| {
            let child = match crashing {
                Some((r, spec)) if r == *role => d.service_with(role, &[(failpoint::ENV, spec)])?,
                _ => d.service(role)?,
            };
            Ok((*role, child))
        })
        .collect()
}

async fn newest_committed(p: &common::pipeline::Pipeline, after: &str) -> anyhow::Result<bool> {
    let runs = p.ledger.list_runs(Some("deals"), 1).await?;
    Ok(runs
        .first()
        .is_some_and(|r| r.run_id != after && r.status == RunStatus::Committed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failpoint_kills_its_service_and_the_restarted_services_end_equal_to_truth(
) -> anyhow::Result<()> {
    let _env = hubsync_tests::moto::env_lock().await;
    let moto = Moto::start()?;
    moto.export_env();
    let server = sim::start(sim_config(60, &[ObjectType::Deals])).await?;
    let dir = tempfile::tempdir()?;
    let d = Deployment::on(
        &moto,
        &server.base_url(),
        "fp",
        &dir.path().join("services.log"),
        &[
            ("HUBSYNC_PAGE_SIZE", "10"),
            ("HUBSYNC_VISIBILITY_SECS", "3"),
            ("HUBSYNC_MAX_RECEIVE_COUNT", "20"),
            // Sliced backfill, and one slice at a time so that each finished slice starts
            // the next (L5) in every run.
            ("HUBSYNC_LIST_WALK_MAX", "0"),
            ("HUBSYNC_BACKFILL_READS", "search"),
            ("HUBSYNC_SLICE_RECORDS", "20"),
            ("HUBSYNC_SLICES_IN_FLIGHT", "1"),
        ],
    )?;
    d.hubsync_ok(&["infra", "up", "--max-receive-count", "20"])?;
    let p = aws_pipeline("lake-fp", "fp").await?;

    // A clean full sync first: every crash below is in an incremental run over a full lake.
    let services = start(&d, None)?;
    let runs = d.sync_all(&p, &["deals"]).await?;
    let mut last_run = runs[0].run_id.clone();
    let mut before = check_finished(&server, &p, "deals", &Snapshot::default()).await?;
    stop(services.into_iter().map(|(_, c)| c).collect())?;

    let mut crashed = 0;
    let only = std::env::var("HUBSYNC_TEST_FAILPOINT").ok();
    for point in failpoint::ALL
        .iter()
        .filter(|p| only.as_deref().is_none_or(|o| o.split(',').any(|o| o == **p)))
    {
        let role = point.split('.').next().expect("role.step");
        let spec = format!("{point}@{}", hit_for(point));
        let context = |e: anyhow::Error| anyhow::anyhow!("{spec}: {e:#}\n--- services ---\n{}", tail(&d.log));
        server
            .mutate(&MutateRequest {
                object_type: "deals".into(),
                updates: 25,
                creates: 3,
                archives: 2,
                same_timestamp: false,
                ..Default::default()
            })
            .await?;
        let mut services = start(&d, Some((role, &spec)))?;
        // An incremental run's slices own no partitions (L3): the merges a finished slice
        // sends are a full run's.
        let mode = if *point == failpoint::CONSUMER_AFTER_PARTITION_MERGES {
            "full"
        } else {
            "incremental"
        };
        d.hubsync_ok(&["sync", "--table", "deals", "--mode", mode])?;
        let victim = services.iter().position(|(r, _)| *r == role).expect("the role");
        let (_, mut child) = services.remove(victim);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if std::time::Instant::now() > deadline {
                child.kill()?;
                return Err(context(anyhow::anyhow!("the {role} never reached the failpoint")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let fired = std::fs::read_to_string(&d.log)?
            .matches(&format!("failpoint {point} fired"))
            .count();
        anyhow::ensure!(
            status.signal() == Some(SIGABRT) && fired == 1,
            "{spec}: the {role} ended with {status} and {fired} fired lines\n{}",
            tail(&d.log)
        );
        stop(services.into_iter().map(|(_, c)| c).collect())?;
        check_after_crash(&server, &p, "deals", &before)
            .await
            .map_err(context)?;

        let services = start(&d, None)?;
        let after = last_run.clone();
        wait_for(
            "the run to commit after the restart",
            Duration::from_secs(180),
            || newest_committed(&p, &after),
        )
        .await
        .map_err(context)?;
        last_run = p.ledger.list_runs(Some("deals"), 1).await?.remove(0).run_id;
        before = check_finished(&server, &p, "deals", &before)
            .await
            .map_err(context)?;
        stop(services.into_iter().map(|(_, c)| c).collect())?;
        crashed += 1;
    }
    println!(
        "failpoints crashed in AWS mode: {crashed} of {}",
        failpoint::ALL.len()
    );
    server.shutdown().await?;
    Ok(())
}
