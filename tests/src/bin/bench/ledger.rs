//! `bench ledger`: what the run ledger writes to DynamoDB for a 1,000,000-record backfill, per
//! page and per merge, at two partition counts (L6: neither figure depends on the number of
//! partitions the run touches, only on the partitions one page stages into, which a page's
//! 200 records bound). The DynamoDB adapter runs against moto with a backfill's shape: created
//! slices of about 23 days each (the simulator's six and a half years of 1M deals cut into
//! slices of 10,000), read in pages of 200 records (HubSpot's search maximum), each page
//! staging into every partition of its slice's days, each slice's partitions merged when it
//! ends. Ten times the partitions is ten times the slices of a tenth of the records each.
//! Write units are DynamoDB's on-demand billing of the items written (one per started KB,
//! twice in a transaction), counted at the adapter.

use std::collections::BTreeSet;
use std::time::Instant;

use anyhow::Result;
use aws::{AwsNames, DynamoLedger, WriteStats};
use clap::Args;
use common::clock::dt_of_day;
use common::messages::{MergeTask, Slice};
use common::ports::ledger::BeginRun;
use common::ports::{Ledger, PageOutcome, Run};
use futures::StreamExt;
use hubsync_tests::moto::Moto;

#[derive(Args, Clone)]
pub struct LedgerBench {
    /// Records of the backfill.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Partition counts to run it at (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "2343,23430")]
    partitions: Vec<u64>,
    /// Records per page.
    #[arg(long, default_value_t = 200)]
    page_records: u64,
    /// Partitions (days) one slice spans.
    #[arg(long, default_value_t = 23.43)]
    days_per_slice: f64,
}

pub struct LedgerResult {
    pub partitions: u64,
    pub pages: u64,
    pub merges: u64,
    pub page: WriteStats,
    pub merge: WriteStats,
    pub secs: f64,
}

/// Ledger calls in flight at once (slices of a backfill run side by side).
const CONCURRENCY: usize = 8;

pub async fn bench_ledger(args: LedgerBench) -> Result<Vec<LedgerResult>> {
    let moto = Moto::start()?;
    moto.export_env();
    let mut out = Vec::new();
    for (i, partitions) in args.partitions.iter().copied().enumerate() {
        let names = AwsNames {
            prefix: format!("bench{i}"),
            ..Default::default()
        };
        infra::provision::up(&names, &format!("lake-bench{i}"), "data", 5).await?;
        let client = aws_sdk_dynamodb::Client::new(&aws::sdk_config().await);
        let ledger = DynamoLedger::new(client, &names.runs_table(), 3_600_000);
        let r = one_run(&ledger, &args, partitions).await?;
        println!(
            "ledger: {} records, {partitions} partitions: {} pages at {:.2} write units and {:.0} B each \
             (at most {} B), {} merges at {:.2} write units and {:.0} B each, in {:.0} s",
            args.records,
            r.pages,
            r.page.write_units as f64 / r.page.calls as f64,
            r.page.bytes as f64 / r.page.calls as f64,
            r.page.max_bytes,
            r.merges,
            r.merge.write_units as f64 / r.merge.calls as f64,
            r.merge.bytes as f64 / r.merge.calls as f64,
            r.secs
        );
        out.push(r);
    }
    Ok(out)
}

async fn one_run(l: &DynamoLedger, args: &LedgerBench, partitions: u64) -> Result<LedgerResult> {
    let started = Instant::now();
    let run_id = format!("deals-bench-{partitions}");
    let run = Run {
        run_id: run_id.clone(),
        table: "deals".into(),
        request_id: "bench".into(),
        window_to_ms: 1,
        lease_until_ms: i64::MAX / 2,
        ..Default::default()
    };
    anyhow::ensure!(matches!(l.begin_run(&run, 0).await?, BeginRun::Started(_)));
    let slices = ((partitions as f64 / args.days_per_slice).round() as u64).max(1);
    let pages_per_slice = args.records.div_ceil(slices).div_ceil(args.page_records).max(1);
    let plan: Vec<Slice> = (0..slices as i64)
        .map(|s| Slice::Created {
            object_type: "deals".into(),
            from_ms: s,
            to_ms: s,
            id_min: 0,
            id_max: u64::MAX,
        })
        .collect();
    l.start_fetching(&run_id, &plan, None, slices as usize, 1).await?;
    // Slice s owns the days [s * partitions / slices, (s + 1) * partitions / slices]; each of
    // its pages stages into every one of them (records of a slice spread over its days).
    let days = |s: u64| -> BTreeSet<String> {
        let (lo, hi) = (
            s * partitions / slices,
            ((s + 1) * partitions / slices).min(partitions - 1),
        );
        (lo..=hi).filter_map(|d| dt_of_day(10_000 + d as i64)).collect()
    };
    l.meter().reset();
    let page_calls = futures::stream::iter(0..slices)
        .map(|s| {
            let (run_id, fp, dts) = (run_id.clone(), plan[s as usize].fingerprint(), days(s));
            async move {
                for p in 0..pages_per_slice {
                    let last = p + 1 == pages_per_slice;
                    let outcome = PageOutcome {
                        slice_no: s as u32,
                        attempt: common::lake::new_attempt(),
                        dts: dts.clone(),
                        records: args.page_records as i64,
                        next_cursor: (!last).then(|| format!("{}", (p + 1) * args.page_records)),
                        fingerprint: fp.clone(),
                        slice_merges: if last { dts.len() as i64 } else { 0 },
                        ..Default::default()
                    };
                    l.complete_page(&run_id, &format!("s{s:05}-p{p:06}"), &outcome, 2)
                        .await?;
                }
                anyhow::Ok(())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    page_calls.into_iter().collect::<Result<Vec<()>>>()?;
    let page = l.meter().snapshot()["complete_page"];
    l.begin_merging(&run_id, "close", 0, 3).await?;
    l.meter().reset();
    let tasks: Vec<MergeTask> = (0..slices)
        .flat_map(|s| {
            days(s).into_iter().map(move |dt| MergeTask {
                run_id: format!("deals-bench-{partitions}"),
                table: "deals".into(),
                dt: Some(dt),
                slice: Some(s as u32),
                inputs: None,
            })
        })
        .collect();
    let merges = tasks.len() as u64;
    let merge_calls = futures::stream::iter(tasks)
        .map(|t| async move { l.complete_merge(&t.run_id, &t.task_id(), 4).await })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    for r in merge_calls {
        r?;
    }
    let merge = l.meter().snapshot()["complete_merge"];
    Ok(LedgerResult {
        partitions,
        pages: slices * pages_per_slice,
        merges,
        page,
        merge,
        secs: started.elapsed().as_secs_f64(),
    })
}

pub fn print_table(results: &[LedgerResult]) {
    println!(
        "{:>10} {:>7} {:>8} {:>12} {:>10} {:>12} {:>10}",
        "partitions", "pages", "merges", "WCU/page", "B/page", "WCU/merge", "B/merge"
    );
    for r in results {
        println!(
            "{:>10} {:>7} {:>8} {:>12.2} {:>10.0} {:>12.2} {:>10.0}",
            r.partitions,
            r.pages,
            r.merges,
            r.page.write_units as f64 / r.page.calls as f64,
            r.page.bytes as f64 / r.page.calls as f64,
            r.merge.write_units as f64 / r.merge.calls as f64,
            r.merge.bytes as f64 / r.merge.calls as f64
        );
    }
}
