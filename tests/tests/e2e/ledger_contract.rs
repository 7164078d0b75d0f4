//! The run ledger's contract, one scenario against both adapters: SQLite (embedded mode) and
//! DynamoDB on the moto emulator. Each step is taken twice where the protocol says a step may
//! come twice (SQS delivers at least once), and the second answer is checked too.

use std::collections::HashSet;

use common::aws::{AwsNames, DynamoLedger};
use common::embedded::{Db, EmbeddedLedger};
use common::messages::{MergeTask, Slice};
use common::ports::ledger::BeginRun;
use common::ports::{Ledger, MergeCompletion, PageCompletion, PageOutcome, Run, RunStatus};
use hubsync_tests::moto::Moto;

const LEASE_MS: i64 = 60_000;

fn run(run_id: &str) -> Run {
    Run {
        run_id: run_id.into(),
        table: "deals".into(),
        request_id: format!("request-{run_id}"),
        window_to_ms: 1_000,
        started_at_ms: 10,
        updated_at_ms: 10,
        lease_until_ms: 10 + LEASE_MS,
        ..Default::default()
    }
}

fn task(run_id: &str, dt: Option<&str>) -> String {
    MergeTask {
        run_id: run_id.into(),
        table: "deals".into(),
        dt: dt.map(str::to_string),
        pass: 0,
    }
    .task_id()
}

/// A one-slice run from its start to its commit, every step repeated once (L1, L2, L3).
async fn scenario(l: &dyn Ledger) -> anyhow::Result<()> {
    let r1 = run("r1");
    assert!(matches!(l.begin_run(&r1, 10).await?, BeginRun::Started(_)));
    assert!(
        matches!(l.begin_run(&r1, 10).await?, BeginRun::Existing(_)),
        "a redelivered request"
    );
    assert!(
        matches!(l.begin_run(&run("r2"), 11).await?, BeginRun::Refused(_)),
        "L1"
    );
    let plan = [Slice::List {
        object_type: "deals".into(),
    }];
    assert!(l.start_fetching("r1", &plan, 1, 12).await?);
    assert!(!l.start_fetching("r1", &plan, 1, 12).await?);

    let page = PageOutcome {
        slice_no: 0,
        dts: ["2024-01-01".to_string(), "2024-01-02".to_string()].into(),
        max_created_ms: Some(5),
        max_modified_ms: Some(7),
        records: 2,
        next_cursor: None,
    };
    let PageCompletion::Recorded {
        pages_outstanding,
        effects,
    } = l.complete_page("r1", "p0", &page, 13).await?
    else {
        panic!("the first copy of the page records it");
    };
    assert_eq!(pages_outstanding, 0, "L2: the only slice is done");
    assert_eq!(effects.merges.len(), 2, "P1: both partitions are due");
    assert_eq!(
        l.complete_page("r1", "p0", &page, 13).await?,
        PageCompletion::AlreadyDone
    );
    assert_eq!(l.page_done("r1", "p0").await?.map(|d| d.effects), Some(effects));
    assert!(l.begin_merging("r1", "p0", 14).await?);
    assert!(!l.begin_merging("r1", "p0", 14).await?);

    let merging = l.get_run("r1").await?.expect("the run");
    assert_eq!(
        (merging.status, merging.merges_outstanding),
        (RunStatus::Merging, 3)
    );
    assert!(l.done_merges("r1").await?.is_empty());
    let first = task("r1", Some("2024-01-01"));
    assert_eq!(
        l.complete_merge("r1", &first, 15).await?,
        MergeCompletion::Recorded {
            merges_outstanding: 2
        }
    );
    assert_eq!(
        l.complete_merge("r1", &first, 15).await?,
        MergeCompletion::AlreadyDone,
        "L3"
    );
    let closing = task("r1", None);
    l.complete_merge("r1", &closing, 16).await?;
    assert!(l.is_merge_done("r1", &first).await?);
    assert!(!l.is_merge_done("r1", &task("r1", Some("2024-01-02"))).await?);
    assert_eq!(
        l.done_merges("r1").await?,
        HashSet::from([first, closing]),
        "merge markers only, never the pages'"
    );

    assert!(l.finish("r1", RunStatus::Committed, None, 17).await?);
    assert!(!l.finish("r1", RunStatus::Abandoned, None, 17).await?);
    assert!(l.active_run("deals").await?.is_none());
    assert!(matches!(l.begin_run(&run("r2"), 18).await?, BeginRun::Started(_)));
    Ok(())
}

#[tokio::test]
async fn the_embedded_ledger_keeps_the_contract() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ledger = EmbeddedLedger::new(Db::open(&dir.path().join("ledger.db"))?, LEASE_MS);
    scenario(&ledger).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dynamodb_ledger_keeps_the_contract() -> anyhow::Result<()> {
    let _env = hubsync_tests::moto::env_lock().await;
    let moto = Moto::start()?;
    moto.export_env();
    let names = AwsNames {
        prefix: "contract".into(),
        ..Default::default()
    };
    infra::provision::up(&names, "lake-contract", 2).await?;
    let client = aws_sdk_dynamodb::Client::new(&common::aws::sdk_config().await);
    scenario(&DynamoLedger::new(client, &names.runs_table(), LEASE_MS)).await
}
