//! `bench fetch`: a backfill of one table by N consumers against one simulated account with
//! HubSpot's default limits and 100 ms latency. It reports rows per second against the most
//! those limits allow, and the share of requests the simulator answered 429 (`/_sim/stats`).
//! Each consumer count is measured on both read paths (a list walk and search lanes) and on
//! search alone, in paired rounds whose order alternates; medians and the paired ratio close.
//!
//! By default the consumers are N workers of one embedded pipeline (SQLite queues and ledger)
//! built in this process: what is measured is hubsync against HubSpot's limits. `--aws` runs
//! them as N consumer processes on the moto emulator instead; there the emulator, whose
//! DynamoDB calls are serialized, binds long before HubSpot's limits do.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use common::catalog::Catalog;
use common::clock;
use common::messages::RequestedMode;
use common::pipeline::{BackfillReads, Settings};
use common::ports::RunStatus;
use hubspot::{ClientConfig, HubSpotClient, RateBudget};
use hubsync_tests::deploy::{aws_pipeline, stop, tail, Deployment};
use hubsync_tests::harness::{latest_run, wait_for};
use hubsync_tests::moto::Moto;
use infra::runner::{run_embedded, RunOptions};
use sim::{ObjectType, RuntimeConfig, SimConfig, SimServer, SimStats};

use crate::release_bins;

/// HubSpot's page maxima: rows per list and per search request.
const LIST_ROWS: f64 = 100.0;
const SEARCH_ROWS: f64 = 200.0;

#[derive(Args)]
pub struct FetchBench {
    /// Deals in the simulated account.
    #[arg(long, default_value_t = 60_000)]
    records: u64,
    /// Consumer process counts to measure, one backfill each.
    #[arg(long, value_delimiter = ',', default_value = "1,4,8")]
    consumers: Vec<usize>,
    /// Latency the simulator adds to every request (±25 %), in ms.
    #[arg(long, default_value_t = 100)]
    latency_ms: u64,
    /// Messages each consumer works on at once (a consumer process's default: 4); embedded,
    /// each consumer is this many workers of the pipeline.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Consumer processes on the moto emulator instead of workers of one embedded pipeline.
    #[arg(long)]
    aws: bool,
    /// Paired rounds per consumer count: each backfills on both paths and on search alone,
    /// the order alternating from round to round.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Only both paths (no search-only backfills to compare with).
    #[arg(long)]
    both_only: bool,
}

/// One backfill's figures.
pub struct FetchResult {
    pub consumers: usize,
    pub reads: BackfillReads,
    pub rows: i64,
    pub secs: f64,
    pub requests: u64,
    pub search: u64,
    pub list: u64,
    pub limited: u64,
    /// Rows per second the enforced limits allow on the read paths the run used.
    pub ceiling_used: f64,
    /// Rows per second the limits allow in all (list and search both full).
    pub ceiling_all: f64,
}

impl FetchResult {
    pub fn rate(&self) -> f64 {
        self.rows as f64 / self.secs
    }
    pub fn limited_share(&self) -> f64 {
        self.limited as f64 / self.requests.max(1) as f64
    }
}

pub async fn bench_fetch(args: FetchBench) -> Result<Vec<FetchResult>> {
    let runtime = RuntimeConfig {
        latency_ms: args.latency_ms,
        ..RuntimeConfig::default()
    };
    let t = Instant::now();
    let server = sim::start(SimConfig {
        records_per_type: args.records,
        object_types: vec![ObjectType::Deals],
        runtime,
        ..SimConfig::default()
    })
    .await?;
    println!(
        "fetch: {} deals seeded in {:.1?}; limits {} requests per 10 s, {} searches per s; latency {} ms; {}",
        args.records,
        t.elapsed(),
        runtime.rate_limit,
        runtime.search_rate,
        args.latency_ms,
        if args.aws {
            format!(
                "consumer processes on moto, {} messages at once each",
                args.concurrency
            )
        } else {
            format!(
                "consumers as {} workers each of one embedded pipeline",
                args.concurrency
            )
        }
    );
    let ceilings = Ceilings {
        general_rows: f64::from(runtime.rate_limit) / 10.0 * LIST_ROWS,
        search_rows: f64::from(runtime.search_rate) * SEARCH_ROWS,
    };
    let mut results = Vec::new();
    let moto = if args.aws {
        release_bins()?;
        let moto = Moto::start().context("starting the moto emulator")?;
        moto.export_env();
        Some(moto)
    } else {
        None
    };
    for &consumers in &args.consumers {
        for round in 0..args.rounds.max(1) {
            let order = match (args.both_only, round % 2) {
                (true, _) => vec![BackfillReads::Both],
                (false, 0) => vec![BackfillReads::Both, BackfillReads::Search],
                (false, _) => vec![BackfillReads::Search, BackfillReads::Both],
            };
            for reads in order {
                let r = match &moto {
                    Some(moto) => {
                        fetch_aws(&args, &server, moto, runtime, ceilings, (consumers, reads)).await?
                    }
                    None => {
                        let workers = consumers * args.concurrency.max(1);
                        fetch_embedded(&server, runtime, ceilings, (consumers, reads), workers).await?
                    }
                };
                results.push(r);
            }
        }
    }
    server.shutdown().await?;
    print_table(&results);
    Ok(results)
}

fn reads_name(reads: BackfillReads) -> &'static str {
    match reads {
        BackfillReads::Both => "both",
        BackfillReads::Search => "search",
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[derive(Clone, Copy)]
struct Ceilings {
    general_rows: f64,
    search_rows: f64,
}

impl Ceilings {
    fn result(
        &self,
        (consumers, reads): (usize, BackfillReads),
        rows: i64,
        secs: f64,
        stats: &SimStats,
    ) -> FetchResult {
        let used_search = stats.by_endpoint.search > 0;
        let used_list = stats.by_endpoint.list > 0;
        let r = FetchResult {
            consumers,
            reads,
            rows,
            secs,
            requests: stats.requests,
            search: stats.by_endpoint.search,
            list: stats.by_endpoint.list,
            limited: stats.rate_limited.total,
            ceiling_used: if used_search { self.search_rows } else { 0.0 }
                + if used_list { self.general_rows } else { 0.0 },
            ceiling_all: self.search_rows + self.general_rows,
        };
        println!(
            "fetch: {consumers} consumer(s), {}: {} rows in {secs:.1} s = {:.0} rows/s; {} requests ({} search, {} list), {} answered 429 ({:.2} %)",
            reads_name(reads),
            r.rows,
            r.rate(),
            r.requests,
            r.search,
            r.list,
            r.limited,
            r.limited_share() * 100.0
        );
        if r.list > 0 && reads == BackfillReads::Both {
            // The walk is one chain of pages: each waits for the one before (its cursor).
            println!(
                "fetch:   the list walk: {} pages, {:.0} ms a page ({:.0} rows/s of list pages; the general window allows {:.0})",
                r.list,
                secs * 1000.0 / r.list as f64,
                r.list as f64 * LIST_ROWS / secs,
                self.general_rows
            );
        }
        r
    }
}

/// N workers of one embedded pipeline; the client's budget at the account's limits.
async fn fetch_embedded(
    server: &SimServer,
    runtime: RuntimeConfig,
    ceilings: Ceilings,
    (consumers, reads): (usize, BackfillReads),
    workers: usize,
) -> Result<FetchResult> {
    let dir = tempfile::tempdir()?;
    let client = HubSpotClient::new(
        ClientConfig {
            base_url: server.base_url(),
            max_retries: 8,
            ..Default::default()
        },
        RateBudget::new(runtime.rate_limit as usize, runtime.search_rate as usize),
    )?;
    let p = embedded::pipeline(
        dir.path(),
        Catalog::default(),
        clock::system(),
        Settings {
            backfill_reads: reads,
            ..Settings::default()
        },
    )?;
    server.reset_stats();
    let started = Instant::now();
    let options = RunOptions {
        tables: vec!["deals".into()],
        mode: RequestedMode::Full,
        consumers: workers,
        mergers: 2,
        timeout: Some(Duration::from_secs(3600)),
        ..Default::default()
    };
    // The budget governs fetching: measure from the request to the last page recorded.
    let watcher = {
        let p = p.clone();
        async move {
            loop {
                let runs = p.ledger.list_runs(Some("deals"), 1).await?;
                if runs
                    .first()
                    .is_some_and(|r| matches!(r.status, RunStatus::Merging | RunStatus::Committed))
                {
                    return anyhow::Ok((started.elapsed(), server.stats()));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let (reports, fetched) = tokio::join!(run_embedded(&p, &client, &options), watcher);
    let (elapsed, stats) = fetched?;
    let run = reports?.pop().and_then(|r| r.run).context("the backfill's run")?;
    anyhow::ensure!(
        run.status == RunStatus::Committed,
        "the backfill did not commit: {:?}",
        run.status
    );
    Ok(ceilings.result((consumers, reads), run.records, elapsed.as_secs_f64(), &stats))
}

/// N consumer processes on the emulator, with a producer and (after the fetch) a merger.
async fn fetch_aws(
    args: &FetchBench,
    server: &SimServer,
    moto: &Moto,
    runtime: RuntimeConfig,
    ceilings: Ceilings,
    (consumers, reads): (usize, BackfillReads),
) -> Result<FetchResult> {
    let dir = tempfile::tempdir()?;
    let prefix = format!("fetch{consumers}{}", reads_name(reads));
    let d = Deployment::on(
        moto,
        &server.base_url(),
        &prefix,
        &dir.path().join(format!("{prefix}.log")),
        &[
            // The account's own limits: the budget's margins keep the sum under them.
            ("HUBSYNC_RATE_LIMIT", &runtime.rate_limit.to_string()),
            ("HUBSYNC_SEARCH_RATE", &runtime.search_rate.to_string()),
            ("HUBSYNC_HUBSPOT_RETRIES", "8"),
            ("HUBSYNC_MAX_RECEIVE_COUNT", "10"),
            ("HUBSYNC_CONCURRENCY", &args.concurrency.to_string()),
            ("HUBSYNC_BACKFILL_READS", reads_name(reads)),
        ],
    )?;
    d.hubsync_ok(&["infra", "up"])?;
    let p = aws_pipeline(&format!("lake-{prefix}"), &prefix).await?;
    // The merger starts once fetching is over: its S3 listings would otherwise load the
    // emulator (one Python process) the consumers' ledger calls go through.
    let mut services = vec![d.service("producer")?];
    for _ in 0..consumers {
        services.push(d.service("consumer")?);
    }
    let needle = format!("\"consumers\":{consumers}");
    wait_for(
        "the consumers to see each other",
        Duration::from_secs(60),
        || async { Ok(std::fs::read_to_string(&d.log)?.matches(&needle).count() >= consumers) },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\n{}", tail(&d.log)))?;
    server.reset_stats();
    let started = Instant::now();
    d.hubsync_ok(&["sync", "--table", "deals", "--mode", "full"])?;
    wait_for(
        "the backfill past fetching",
        Duration::from_secs(3600),
        || async {
            let runs = p.ledger.list_runs(Some("deals"), 1).await?;
            Ok(runs
                .first()
                .is_some_and(|r| matches!(r.status, RunStatus::Merging | RunStatus::Committed)))
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\n{}", tail(&d.log)))?;
    let secs = started.elapsed().as_secs_f64();
    let stats = server.stats();
    services.push(d.service("merger")?);
    wait_for("the backfill to commit", Duration::from_secs(600), || async {
        let runs = p.ledger.list_runs(Some("deals"), 1).await?;
        Ok(runs.first().is_some_and(|r| r.status == RunStatus::Committed))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\n{}", tail(&d.log)))?;
    let run = latest_run(&p, "deals").await?;
    stop(services)?;
    Ok(ceilings.result((consumers, reads), run.records, secs, &stats))
}

pub fn print_table(results: &[FetchResult]) {
    println!(
        "{:<10} {:<7} {:>5} {:>9} {:>8} {:>10} {:>13} {:>12} {:>9}",
        "consumers", "reads", "runs", "rows", "secs", "rows/s", "of path max", "of all max", "429 %"
    );
    let mut groups: Vec<(usize, BackfillReads)> = Vec::new();
    for r in results {
        if !groups.contains(&(r.consumers, r.reads)) {
            groups.push((r.consumers, r.reads));
        }
    }
    for (consumers, reads) in groups {
        let runs: Vec<&FetchResult> = results
            .iter()
            .filter(|r| r.consumers == consumers && r.reads == reads)
            .collect();
        let m = |f: &dyn Fn(&FetchResult) -> f64| median(runs.iter().map(|r| f(r)).collect());
        println!(
            "{:<10} {:<7} {:>5} {:>9.0} {:>8.1} {:>10.0} {:>12.1}% {:>11.1}% {:>8.2}%",
            consumers,
            reads_name(reads),
            runs.len(),
            m(&|r| r.rows as f64),
            m(&|r| r.secs),
            m(&|r| r.rate()),
            m(&|r| 100.0 * r.rate() / r.ceiling_used.max(1.0)),
            m(&|r| 100.0 * r.rate() / r.ceiling_all.max(1.0)),
            m(&|r| r.limited_share() * 100.0)
        );
    }
    // Paired: each round's both-paths run against its search-only run.
    let mut consumer_counts: Vec<usize> = results.iter().map(|r| r.consumers).collect();
    consumer_counts.dedup();
    for consumers in consumer_counts {
        let of = |reads| {
            results
                .iter()
                .filter(move |r| r.consumers == consumers && r.reads == reads)
                .map(FetchResult::rate)
        };
        let ratios: Vec<f64> = of(BackfillReads::Both)
            .zip(of(BackfillReads::Search))
            .map(|(b, s)| b / s)
            .collect();
        if !ratios.is_empty() {
            println!(
                "fetch: {consumers} consumer(s): both paths / search alone = {:.2} (median of {} paired rounds: {})",
                median(ratios.clone()),
                ratios.len(),
                ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(", ")
            );
        }
    }
    println!("(medians of the runs; path max: the rows/s the enforced limits allow on the endpoints the backfill used; all max: list and search both full. Targets: both paths ≥ 1.8 × search alone, ≤ 0.5 % answered 429.)");
}
