//! At-least-once delivery: every page job and merge task handled twice changes nothing.

use std::time::Duration;

use common::messages::{self, RequestedMode, SyncRequest};
use common::ports::RunStatus;
use consumer::JobOutcome;
use hubsync_tests::harness::{live_files, sim_config, Harness};
use merger::TaskOutcome;
use sim::{MutateRequest, ObjectType};

/// Drives one run by hand, handling every message twice.
async fn run_twice_each(h: &Harness, request_id: &str) -> anyhow::Result<(usize, usize, Vec<String>)> {
    let p = &h.pipeline;
    let request = SyncRequest {
        request_id: request_id.into(),
        table: "deals".into(),
        mode: RequestedMode::Auto,
        requested_at_ms: p.now_ms(),
    };
    producer::handle_request(p, &p.hubspot, &request).await?;
    // A redelivered request re-sends page 0 of each slice: harmless duplicates.
    producer::handle_request(p, &p.hubspot, &request).await?;
    let mut page_bodies = Vec::new();
    let (mut pages, mut merges) = (0, 0);
    loop {
        let got = p.pages.receive(10, Duration::from_millis(50)).await?;
        if got.is_empty() {
            break;
        }
        for m in got {
            let job = messages::decode_page_job(&m.body)?;
            let first = consumer::process_job(p, &p.hubspot, &job).await?;
            let second = consumer::process_job(p, &p.hubspot, &job).await?;
            assert_eq!(second, JobOutcome::Duplicate, "{}", job.job_id());
            if matches!(first, JobOutcome::Staged { .. }) {
                pages += 1;
            }
            page_bodies.push(m.body.clone());
            p.pages.ack(&m.receipt).await?;
        }
    }
    loop {
        let got = p.merges.receive(10, Duration::from_millis(50)).await?;
        if got.is_empty() {
            break;
        }
        for m in got {
            let mut task = messages::decode_merge_task(&m.body)?;
            if task.dt.is_some() {
                assert!(
                    task.inputs.as_ref().is_some_and(|i| !i.is_empty()),
                    "a partition merge names its staged files: {task:?}"
                );
                // Every other one as an older sender wrote it: the merger lists the staging.
                if merges % 2 == 1 {
                    task.inputs = None;
                }
            }
            let first = process(p, &task).await?;
            let files_after_first = live_files(p, "deals").await?;
            let second = process(p, &task).await?;
            assert!(
                matches!(second, TaskOutcome::Duplicate { .. } | TaskOutcome::Stale(_)),
                "second handling of {} did {second:?}",
                task.task_id()
            );
            assert_eq!(
                live_files(p, "deals").await?,
                files_after_first,
                "a redelivered merge changed the lake"
            );
            if matches!(
                first,
                TaskOutcome::Merged { .. } | TaskOutcome::NothingToDo { .. }
            ) {
                merges += 1;
            }
            p.merges.ack(&m.receipt).await?;
        }
    }
    Ok((pages, merges, page_bodies))
}

async fn process(p: &common::pipeline::Pipeline, t: &messages::MergeTask) -> anyhow::Result<TaskOutcome> {
    Ok(merger::process_task(p, t).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_page_jobs_and_merge_tasks_change_nothing() -> anyhow::Result<()> {
    let h = Harness::start(sim_config(700, &[ObjectType::Deals])).await?;
    let (pages, merges, page_bodies) = run_twice_each(&h, "full").await?;
    assert_eq!(pages, 7, "700 records in pages of 100, each counted once");
    assert!(merges > 0);
    let run = h.pipeline.ledger.get_run("deals-full").await?.unwrap();
    assert_eq!(run.status, RunStatus::Committed);
    assert_eq!(run.records, 700, "L2: no page counted twice");
    h.assert_equals_truth(&["deals"]).await?;

    // Late copies of a committed run's messages are dropped and never touch the lake.
    let before = live_files(&h.pipeline, "deals").await?;
    let late = messages::decode_page_job(&page_bodies[0])?;
    assert!(matches!(
        consumer::process_job(&h.pipeline, &h.pipeline.hubspot, &late).await?,
        JobOutcome::Stale(_)
    ));
    let late_merge = messages::MergeTask {
        run_id: run.run_id.clone(),
        table: "deals".into(),
        dt: hubsync_tests::harness::touched(&h.pipeline, &run.run_id)
            .await?
            .into_iter()
            .next(),
        slice: None,
        inputs: None,
    };
    assert!(matches!(
        merger::process_task(&h.pipeline, &late_merge).await?,
        TaskOutcome::Stale(_)
    ));
    assert_eq!(live_files(&h.pipeline, "deals").await?, before);

    // The same, incrementally, after changes.
    h.mutate(MutateRequest {
        object_type: "deals".into(),
        updates: 30,
        creates: 12,
        archives: 4,
        same_timestamp: false,
        ..Default::default()
    })
    .await?;
    h.pipeline.flag.set("true").await?;
    run_twice_each(&h, "incremental").await?;
    let run = h.pipeline.ledger.get_run("deals-incremental").await?.unwrap();
    assert_eq!(run.status, RunStatus::Committed);
    assert_eq!(run.mode, common::ports::RunMode::Incremental);
    h.assert_equals_truth(&["deals"]).await?;
    Ok(())
}
