//! The run ledger's contract, one scenario against both adapters: SQLite (embedded mode) and
//! DynamoDB on the moto emulator. Each step is taken twice where the protocol says a step may
//! come twice (SQS delivers at least once), and the second answer is checked too. Then, on the
//! emulator, a run of 20,000 partitions: no item grows with it and a page's update stays
//! small (L6).

use std::collections::{BTreeSet, HashMap, HashSet};

use aws::{item_size, AwsNames, DynamoLedger};
use common::clock::dt_of_day;
use common::meet::MeetStep;
use common::messages::{MergeTask, Slice, OPEN_END_MS};
use common::ports::ledger::BeginRun;
use common::ports::{
    IndexVersion, Ledger, MergeCompletion, PageCompletion, PageEffects, PageOutcome, Partition, Run,
    RunStatus,
};
use embedded::{Db, EmbeddedLedger};
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

fn task(run_id: &str, dt: Option<&str>, slice: Option<u32>) -> String {
    MergeTask {
        run_id: run_id.into(),
        table: "deals".into(),
        dt: dt.map(str::to_string),
        slice,
        inputs: None,
    }
    .task_id()
}

fn dts(days: &[&str]) -> BTreeSet<String> {
    days.iter().map(|d| d.to_string()).collect()
}

fn page(slice_no: u32, attempt: &str, days: &[&str], next: Option<&str>) -> PageOutcome {
    PageOutcome {
        slice_no,
        attempt: attempt.into(),
        dts: dts(days),
        max_created_ms: Some(5),
        max_modified_ms: Some(7),
        records: 2,
        next_cursor: next.map(str::to_string),
        fingerprint: format!("fp{slice_no}"),
        ..Default::default()
    }
}

/// A two-slice run from its start to its commit, every step repeated once (L1, L2, L3, L5,
/// S1), then partition generations (G1) and index versions (K1).
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
    let plan = [
        Slice::Created {
            object_type: "deals".into(),
            from_ms: 0,
            to_ms: OPEN_END_MS,
            id_min: 0,
            id_max: u64::MAX,
        },
        Slice::List {
            object_type: "deals".into(),
        },
    ];
    assert!(l.start_fetching("r1", &plan, Some(3), 1, 12).await?);
    assert!(
        !l.start_fetching("r1", &plan[..1], None, 1, 12).await?,
        "the first plan stands"
    );
    let head = l.get_run("r1").await?.expect("the run");
    assert_eq!(
        (head.slices, head.slices_started, head.pages_outstanding),
        (2, 1, 2)
    );
    assert_eq!(
        head.expected_records,
        Some(3),
        "the plan's count is kept for progress"
    );
    assert_eq!(l.slice("r1", 1).await?, Some(plan[1].clone()));
    assert_eq!(l.slice("r1", 2).await?, None);
    assert_eq!(l.slices("r1", 2).await?, plan.to_vec());
    assert_eq!(l.slices("r1", 1).await?, plan[..1].to_vec());

    // Slice 0 (owns its days): two pages.
    let p0 = page(0, "a1", &["2024-01-01", "2024-01-02"], Some("c1"));
    assert_eq!(
        l.complete_page("r1", "s00000-p000000", &p0, 13).await?,
        PageCompletion::Recorded {
            pages_outstanding: 2,
            effects: PageEffects::default()
        }
    );
    let copy = page(0, "b2", &["2024-01-01"], Some("c9"));
    assert_eq!(
        l.complete_page("r1", "s00000-p000000", &copy, 13).await?,
        PageCompletion::AlreadyDone,
        "a second live copy loses (S1)"
    );
    let done = l.page_done("r1", "s00000-p000000").await?.expect("the marker");
    assert_eq!(
        (
            done.attempt.as_str(),
            done.next_cursor.as_deref(),
            done.fingerprint.as_str()
        ),
        ("a1", Some("c1"), "fp0"),
        "the winner's attempt, cursor and slice"
    );
    assert_eq!(done.dts, p0.dts);
    let p1 = PageOutcome {
        slice_merges: 3,
        ..page(0, "a2", &["2024-01-03"], None)
    };
    assert_eq!(
        l.complete_page("r1", "s00000-p000001", &p1, 14).await?,
        PageCompletion::Recorded {
            pages_outstanding: 1,
            effects: PageEffects { launch: Some(1) }
        },
        "L5: the next slice starts"
    );
    let attempts = l
        .page_attempts(
            "r1",
            &[
                "s00000-p000000".into(),
                "s00000-p000001".into(),
                "s00001-p000000".into(),
            ],
        )
        .await?;
    assert_eq!(
        attempts,
        HashMap::from([
            ("s00000-p000000".to_string(), "a1".to_string()),
            ("s00000-p000001".to_string(), "a2".to_string())
        ])
    );
    let slice0: BTreeSet<String> = l
        .page_markers("r1", Some(0))
        .await?
        .into_iter()
        .flat_map(|(_, m)| m.dts)
        .collect();
    assert_eq!(slice0, dts(&["2024-01-01", "2024-01-02", "2024-01-03"]));
    assert!(
        !l.begin_merging("r1", "s00000-p000001", 0, 14).await?,
        "slice 1 is open"
    );

    // Slice 1 (a list walk): one page, then the close.
    let p2 = page(1, "a3", &["2024-02-01"], None);
    assert!(matches!(
        l.complete_page("r1", "s00001-p000000", &p2, 15).await?,
        PageCompletion::Recorded {
            pages_outstanding: 0,
            ..
        }
    ));
    assert_eq!(l.page_markers("r1", None).await?.len(), 3);
    assert!(l.page_markers("r2", None).await?.is_empty());
    assert!(l.begin_merging("r1", "s00001-p000000", 1, 16).await?);
    assert!(!l.begin_merging("r1", "s00001-p000000", 1, 16).await?);
    let merging = l.get_run("r1").await?.expect("the run");
    assert_eq!(
        (merging.status, merging.merges_outstanding, merging.merges_counted),
        (RunStatus::Merging, 5, 5),
        "three of slice 0, one of the close, the closing task (L3)"
    );
    assert_eq!(merging.closing_job.as_deref(), Some("s00001-p000000"));
    assert_eq!(merging.records, 6);

    let first = task("r1", Some("2024-01-01"), Some(0));
    assert_eq!(
        l.complete_merge("r1", &first, 17).await?,
        MergeCompletion::Recorded {
            merges_outstanding: 4
        }
    );
    assert_eq!(
        l.complete_merge("r1", &first, 17).await?,
        MergeCompletion::AlreadyDone,
        "L3"
    );
    assert!(l.is_merge_done("r1", &first).await?);
    // A merge task's first reads, in one: the head, its marker, the partition's generation.
    let view = l.merge_view("r1", &first, "deals", Some("2024-01-01")).await?;
    assert!(view.done && view.partition.is_none(), "{view:?}");
    assert_eq!(view.run.map(|r| r.run_id).as_deref(), Some("r1"));
    let nothing = l.merge_view("r-none", &first, "deals", None).await?;
    assert!(nothing.run.is_none() && !nothing.done && nothing.partition.is_none());
    assert!(
        !l.is_merge_done("r1", &task("r1", Some("2024-01-02"), Some(0)))
            .await?
    );
    let closing = task("r1", None, None);
    l.complete_merge("r1", &closing, 18).await?;
    assert_eq!(
        l.done_merges("r1").await?,
        HashSet::from([first, closing]),
        "merge markers only, never the pages'"
    );

    // G1: a publish names the generation it read; the loser of a race learns it lost.
    assert_eq!(l.partition("deals", "2024-01-01").await?, None);
    let published = |gen: u64, file: Option<&str>, writer: &str| Partition {
        gen,
        file: file.map(str::to_string),
        writer_run: writer.into(),
        writer_started_ms: 10,
    };
    assert!(
        l.publish("deals", "2024-01-01", 0, &published(1, Some("f1"), "r1"))
            .await?
    );
    assert!(
        !l.publish("deals", "2024-01-01", 0, &published(1, Some("stale"), "r0"))
            .await?,
        "a stalled merger that read generation 0 publishes nothing"
    );
    assert_eq!(
        l.partition("deals", "2024-01-01").await?,
        Some(published(1, Some("f1"), "r1"))
    );
    let view = l
        .merge_view(
            "r1",
            &task("r1", Some("2024-01-01"), Some(1)),
            "deals",
            Some("2024-01-01"),
        )
        .await?;
    assert_eq!(view.partition, Some(published(1, Some("f1"), "r1")));
    assert!(!view.done && view.run.is_some());
    assert!(
        l.publish("deals", "2024-01-01", 1, &published(2, None, "r1"))
            .await?
    );
    assert!(
        l.publish("deals", "2024-01-02", 0, &published(1, Some("f2"), "r1"))
            .await?
    );
    let heads = l
        .partitions(
            "deals",
            &["2024-01-01".into(), "2024-01-02".into(), "2024-01-09".into()],
        )
        .await?;
    assert_eq!(heads.len(), 2);
    assert_eq!(
        heads["2024-01-01"],
        published(2, None, "r1"),
        "an empty partition"
    );

    // K1: the index version moves only forwards.
    assert_eq!(l.index_version("deals").await?, None);
    let v = |run_id: &str, at: i64| IndexVersion {
        run_id: run_id.into(),
        started_at_ms: at,
    };
    assert!(l.set_index_version("deals", &v("r1", 100)).await?);
    assert!(
        !l.set_index_version("deals", &v("r0", 50)).await?,
        "a stalled older commit"
    );
    assert!(l.set_index_version("deals", &v("r2", 200)).await?);
    assert_eq!(l.index_version("deals").await?, Some(v("r2", 200)));

    assert!(l.finish("r1", RunStatus::Committed, None, Some(4), 19).await?);
    assert!(!l.finish("r1", RunStatus::Abandoned, None, None, 19).await?);
    assert_eq!(l.get_run("r1").await?.and_then(|r| r.partitions), Some(4));
    assert!(l.active_run("deals").await?.is_none());
    assert!(matches!(l.begin_run(&run("r2"), 20).await?, BeginRun::Started(_)));
    meeting(l).await
}

/// J1-J4 through the ledger: lanes claiming at once (each claim twice, as a redelivery would)
/// get contiguous, disjoint ranges going down, the same range again on a repeat, none below
/// the walk's frontier; each object type meets apart.
async fn meeting(l: &dyn Ledger) -> anyhow::Result<()> {
    let claim = |lane: u32, page_no: u32| MeetStep::Claim {
        lane,
        page_no,
        top: 10_001,
        width: 1_000,
    };
    let walked = MeetStep::Walked {
        page_no: 0,
        ids: Some((1, 2_500)),
        ascending: true,
        last: false,
    };
    l.meet("m1", "deals", &walked).await?;
    let mut ranges = Vec::new();
    for page_no in 0..3 {
        let steps: Vec<_> = (0..4)
            .flat_map(|lane| [claim(lane, page_no), claim(lane, page_no)])
            .collect();
        let met = futures::future::try_join_all(steps.iter().map(|s| l.meet("m1", "deals", s))).await?;
        for (lane, pair) in met.chunks(2).enumerate() {
            let (a, b) = (
                pair[0].claim_of(lane as u32, page_no),
                pair[1].claim_of(lane as u32, page_no),
            );
            assert_eq!(a, b, "lane {lane} page {page_no}: a repeat gets the same range");
            ranges.extend(a.flatten());
        }
    }
    ranges.sort();
    assert_eq!(
        ranges.first().map(|r| r.0),
        Some(2_501),
        "nothing at or below the frontier"
    );
    assert_eq!(
        ranges.last().map(|r| r.1),
        Some(u64::MAX),
        "the first claim stays open"
    );
    for w in ranges.windows(2) {
        assert_eq!(w[0].1 + 1, w[1].0, "contiguous and disjoint: {ranges:?}");
    }
    let met = l.meet("m1", "deals", &claim(0, 9)).await?;
    assert_eq!(
        met.claim_of(0, 9),
        Some(None),
        "nothing left between the walk and the claims"
    );
    assert!(met.walk_ends_after(2_500));
    let other = l.meet("m1", "contacts", &claim(0, 0)).await?;
    assert_eq!(
        other.claim_of(0, 0),
        Some(Some((9_001, u64::MAX))),
        "types meet apart"
    );
    Ok(())
}

#[tokio::test]
async fn the_embedded_ledger_keeps_the_contract() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ledger = EmbeddedLedger::new(Db::open(&dir.path().join("ledger.db"))?, LEASE_MS);
    scenario(&ledger).await
}

async fn dynamo_on(moto: &Moto, prefix: &str) -> anyhow::Result<(DynamoLedger, String)> {
    moto.export_env();
    let names = AwsNames {
        prefix: prefix.into(),
        ..Default::default()
    };
    infra::provision::up(&names, &format!("lake-{prefix}"), "data", 2).await?;
    let client = aws_sdk_dynamodb::Client::new(&aws::sdk_config().await);
    Ok((
        DynamoLedger::new(client, &names.runs_table(), LEASE_MS),
        names.runs_table(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dynamodb_ledger_keeps_the_contract() -> anyhow::Result<()> {
    let _env = hubsync_tests::moto::env_lock().await;
    let moto = Moto::start()?;
    let (ledger, _) = dynamo_on(&moto, "contract").await?;
    scenario(&ledger).await
}

/// Partitions of the large run, and how many one page touches.
const PARTITIONS: i64 = 20_000;
const PAGE_PARTITIONS: i64 = 200;

/// L6 at scale: a run touching 20,000 partitions in 100 pages of 200 partitions each (the
/// worst a page of HubSpot's can do: every record on another day), over 100 slices that own
/// their days, closed and merged. Every item stays under 16 KB, a page's update writes under
/// 2 KB, and neither grows with the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_of_20000_partitions_keeps_every_item_small_l6() -> anyhow::Result<()> {
    let _env = hubsync_tests::moto::env_lock().await;
    let moto = Moto::start()?;
    let (l, table) = dynamo_on(&moto, "big").await?;
    let r = run("big");
    assert!(matches!(l.begin_run(&r, 10).await?, BeginRun::Started(_)));
    let pages = PARTITIONS / PAGE_PARTITIONS;
    let plan: Vec<Slice> = (0..pages)
        .map(|i| Slice::Created {
            object_type: "deals".into(),
            from_ms: i * 1_000,
            to_ms: i * 1_000 + 999,
            id_min: 0,
            id_max: u64::MAX,
        })
        .collect();
    assert!(l.start_fetching("big", &plan, None, 16, 11).await?);
    let mut page_bytes = Vec::new();
    for i in 0..pages {
        // Days spread over 55 years, each page's interleaved with the others'.
        let days: Vec<String> = (0..PAGE_PARTITIONS)
            .filter_map(|k| dt_of_day(-5_000 + k * pages + i))
            .collect();
        let outcome = PageOutcome {
            slice_no: i as u32,
            attempt: common::lake::new_attempt(),
            dts: days.into_iter().collect(),
            records: 200,
            max_modified_ms: Some(i),
            next_cursor: None,
            fingerprint: plan[i as usize].fingerprint(),
            slice_merges: PAGE_PARTITIONS,
            ..Default::default()
        };
        l.meter().reset();
        let job = format!("s{i:05}-p000000");
        assert!(matches!(
            l.complete_page("big", &job, &outcome, 12 + i).await?,
            PageCompletion::Recorded { .. }
        ));
        page_bytes.push(l.meter().snapshot()["complete_page"].max_bytes);
    }
    assert!(l.begin_merging("big", "s00099-p000000", 0, 200).await?);
    l.meter().reset();
    let touched = common::flow::run_partitions(&l, "big").await?;
    assert_eq!(touched.len() as i64, PARTITIONS);
    for (k, dt) in touched.iter().enumerate().take(500) {
        let task = task("big", Some(dt), Some((k % 100) as u32));
        l.complete_merge("big", &task, 300).await?;
    }
    let merge = l.meter().snapshot()["complete_merge"];

    // Every item of the ledger, by its size.
    let client = aws_sdk_dynamodb::Client::new(&aws::sdk_config().await);
    let mut largest = 0;
    let mut head = 0;
    let mut start = None;
    loop {
        let out = client
            .scan()
            .table_name(&table)
            .set_exclusive_start_key(start.take())
            .send()
            .await?;
        for item in out.items() {
            let size = item_size(item);
            largest = largest.max(size);
            if item.get("sk").and_then(|v| v.as_s().ok()).map(String::as_str) == Some("run") {
                head = size;
            }
        }
        match out.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => break,
        }
    }
    let first_page = page_bytes[0];
    let last_page = *page_bytes.last().expect("pages");
    let worst_page = page_bytes.iter().copied().max().unwrap_or(0);
    println!(
        "ledger at {PARTITIONS} partitions: largest item {largest} B, run head {head} B; a page's update \
         {first_page} B first, {last_page} B last, {worst_page} B at most; a merge's {} B at most, {:.1} write units each",
        merge.max_bytes,
        merge.write_units as f64 / merge.calls as f64
    );
    assert!(largest < 16 * 1024, "an item of {largest} bytes");
    assert!(worst_page < 2 * 1024, "a page's update wrote {worst_page} bytes");
    assert!(
        last_page <= first_page + 64,
        "a page's update grew with the run: {first_page} -> {last_page} bytes"
    );
    assert!(
        merge.max_bytes < 1024,
        "a merge's update wrote {} bytes",
        merge.max_bytes
    );
    Ok(())
}
