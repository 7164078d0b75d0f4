//! Bad input never crashes a worker and never loses data: it is logged, retried, and
//! dead-lettered after its retries, while everything else goes on.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::messages::{self, Body, RequestedMode, SyncRequest};
use common::pipeline::Pipeline;
use common::ports::{Outgoing, Queue, RunStatus};
use common::worker::{process_one, Handler, StepOutcome, WorkerOptions};
use hubsync_tests::harness::{sim_config, Harness};
use infra::sim::ObjectType;
use object_store::ObjectStoreExt;

fn options() -> WorkerOptions {
    WorkerOptions {
        wait: Duration::from_millis(20),
        visibility: Duration::from_secs(30),
        first_retry_delay: Duration::from_millis(10),
        max_retry_delay: Duration::from_millis(40),
    }
}

/// Steps every role until all queues are empty (failed messages are retried until dead).
async fn drain(p: &Pipeline) -> anyhow::Result<Vec<String>> {
    let roles: Vec<(Arc<dyn Queue>, Arc<dyn Handler>)> = vec![
        (p.requests.clone(), producer::RequestHandler::new(p.clone())),
        (p.pages.clone(), consumer::PageJobHandler::new(p.clone())),
        (p.merges.clone(), merger::MergeTaskHandler::new(p.clone())),
    ];
    let mut errors = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let mut busy = false;
        for (q, handler) in &roles {
            match process_one(q.as_ref(), handler.as_ref(), &options()).await? {
                StepOutcome::EmptyQueue => {
                    let d = q.depth().await?;
                    busy |= d.visible + d.in_flight > 0;
                }
                StepOutcome::Failed { error, .. } => {
                    errors.push(error);
                    busy = true;
                }
                StepOutcome::Handled(_) => busy = true,
            }
        }
        if !busy {
            break;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "queues did not drain");
    }
    Ok(errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_dead_lettered_and_the_good_run_commits() -> anyhow::Result<()> {
    let h = Harness::start(sim_config(150, &[ObjectType::Deals])).await?;
    let p = &h.pipeline;
    let good = SyncRequest {
        request_id: "good".into(),
        table: "deals".into(),
        mode: RequestedMode::Auto,
        requested_at_ms: 0,
    };
    let unknown_table = SyncRequest {
        request_id: "bad".into(),
        table: "opportunities".into(),
        ..good.clone()
    };
    p.requests
        .send(vec![
            Outgoing::standard(messages::encode(&Body::SyncRequest(unknown_table))),
            Outgoing::standard(messages::encode(&Body::SyncRequest(good))),
        ])
        .await?;
    let bad_pages = [
        "{not json".to_string(),
        r#"{"v":9,"kind":"page_job"}"#.to_string(),
        r#"{"v":1,"kind":"page_job","run_id":"deals-good","table":"deals","slice_no":0,"page_no":-1,"slice":{"read":"list","object_type":"deals"},"cursor":null}"#.to_string(),
        r#"{"v":1,"kind":"page_job","run_id":"no-such-run","table":"deals","slice_no":0,"page_no":0,"slice":{"read":"list","object_type":"deals"},"cursor":null}"#.to_string(),
    ];
    p.pages
        .send(bad_pages.iter().map(|b| Outgoing::standard(b.clone())).collect())
        .await?;
    let errors = drain(p).await?;
    let text = errors.join("\n");
    for want in [
        "unknown table `opportunities`",
        "not valid JSON",
        "version 9 is not supported",
        "does not match",
        "not in the ledger",
    ] {
        assert!(text.contains(want), "missing error {want:?} in:\n{text}");
    }
    assert_eq!(p.requests.depth().await?.dead, 1);
    assert_eq!(p.pages.depth().await?.dead, bad_pages.len() as u64);
    let run = p.ledger.get_run("deals-good").await?.unwrap();
    assert_eq!(run.status, RunStatus::Committed, "the good run is not held up");
    h.assert_equals_truth(&["deals"]).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_staged_file_dead_letters_its_merge_and_replay_completes_the_run() -> anyhow::Result<()> {
    let h = Harness::start(sim_config(200, &[ObjectType::Deals])).await?;
    let p = &h.pipeline;
    let request = SyncRequest {
        request_id: "r".into(),
        table: "deals".into(),
        mode: RequestedMode::Auto,
        requested_at_ms: 0,
    };
    producer::handle_request(p, &request).await?;
    // Fetch everything, but hold the merges: corrupt one staged file first.
    let pages = consumer::PageJobHandler::new(p.clone());
    while process_one(p.pages.as_ref(), pages.as_ref(), &options()).await? != StepOutcome::EmptyQueue {}
    let run = p.ledger.get_run("deals-r").await?.unwrap();
    assert_eq!(run.status, RunStatus::Merging);
    let dt = run.dts.iter().next().unwrap().clone();
    let staged = p
        .lake
        .list_parquet(&p.lake.staging_dir("deals", "deals-r", &dt))
        .await?;
    let victim = staged[0].location.clone();
    let original = p.lake.store().get(&victim).await?.bytes().await?;
    p.lake
        .store()
        .put(
            &victim,
            Bytes::from_static(b"PAR1 this is not parquet at all").into(),
        )
        .await?;

    let errors = drain(p).await?;
    assert!(errors.iter().any(|e| e.contains(&dt)), "{errors:?}");
    assert_eq!(
        p.merges.depth().await?.dead,
        1,
        "only the corrupt partition's task"
    );
    let run = p.ledger.get_run("deals-r").await?.unwrap();
    assert_eq!(
        run.status,
        RunStatus::Merging,
        "the run waits for its last partition"
    );
    assert_eq!(run.merges_outstanding, 1);
    // Nothing else was lost: the staged file is still there, other partitions are live.
    assert!(p.lake.store().head(&victim).await.is_ok());
    assert_eq!(p.lake.partitions("deals").await?.len(), run.dts.len() - 1);

    // The operator fixes the cause and replays the dead letter.
    p.lake.store().put(&victim, original.into()).await?;
    assert_eq!(p.merges.replay_dead_letters(None, false).await?.len(), 1);
    drain(p).await?;
    assert_eq!(
        p.ledger.get_run("deals-r").await?.unwrap().status,
        RunStatus::Committed
    );
    h.assert_equals_truth(&["deals"]).await?;
    Ok(())
}
