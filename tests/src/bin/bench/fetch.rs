//! `bench fetch`: a backfill of one table by N consumer processes (AWS mode on the moto
//! emulator: producer, merger and N consumers, each its own process) against one simulated
//! account with HubSpot's default limits and 100 ms latency. It reports rows per second against
//! the most those limits allow, and the share of requests the simulator answered 429
//! (`/_sim/stats`). The merger starts when fetching is over (see below).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use common::ports::RunStatus;
use hubsync_tests::deploy::{aws_pipeline, stop, tail, Deployment};
use hubsync_tests::harness::wait_for;
use hubsync_tests::moto::Moto;
use infra::sim::{self, ObjectType, RuntimeConfig, SimConfig};

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
    /// Messages each consumer process works on at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
}

/// One backfill's figures.
pub struct FetchResult {
    pub consumers: usize,
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
    release_bins()?;
    let moto = Moto::start().context("starting the moto emulator")?;
    moto.export_env();
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
        "fetch: {} deals seeded in {:.1?}; limits {} requests per 10 s, {} searches per s; latency {} ms",
        args.records,
        t.elapsed(),
        runtime.rate_limit,
        runtime.search_rate,
        args.latency_ms
    );
    let general_rows = f64::from(runtime.rate_limit) / 10.0 * LIST_ROWS;
    let search_rows = f64::from(runtime.search_rate) * SEARCH_ROWS;
    let dir = tempfile::tempdir()?;
    let mut results = Vec::new();
    for &consumers in &args.consumers {
        let prefix = format!("fetch{consumers}");
        let d = Deployment::on(
            &moto,
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
            ],
        );
        d.hubsync_ok(&["infra", "up"])?;
        let p = aws_pipeline(&format!("lake-{prefix}"), &prefix).await?;
        // The merger starts once fetching is over: its S3 listings would otherwise load the
        // emulator (one Python process) the consumers' ledger calls go through, and this
        // benchmark measures fetching against HubSpot's limits, not the emulator.
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
        // The budget governs fetching: measure from the request to the last page recorded.
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
        let run = p
            .ledger
            .list_runs(Some("deals"), 1)
            .await?
            .pop()
            .context("the backfill's run")?;
        stop(services)?;
        let used_search = stats.by_endpoint.search > 0;
        let used_list = stats.by_endpoint.list > 0;
        let result = FetchResult {
            consumers,
            rows: run.records,
            secs,
            requests: stats.requests,
            search: stats.by_endpoint.search,
            list: stats.by_endpoint.list,
            limited: stats.rate_limited.total,
            ceiling_used: if used_search { search_rows } else { 0.0 }
                + if used_list { general_rows } else { 0.0 },
            ceiling_all: search_rows + general_rows,
        };
        println!(
            "fetch: {consumers} consumer(s): {} rows in {secs:.1} s = {:.0} rows/s; {} requests ({} search, {} list), {} answered 429 ({:.2} %)",
            result.rows,
            result.rate(),
            result.requests,
            result.search,
            result.list,
            result.limited,
            result.limited_share() * 100.0
        );
        results.push(result);
    }
    server.shutdown().await?;
    print_table(&results);
    Ok(results)
}

pub fn print_table(results: &[FetchResult]) {
    println!(
        "{:<10} {:>9} {:>8} {:>10} {:>13} {:>12} {:>9}",
        "consumers", "rows", "secs", "rows/s", "of path max", "of all max", "429 %"
    );
    for r in results {
        println!(
            "{:<10} {:>9} {:>8.1} {:>10.0} {:>12.1}% {:>11.1}% {:>8.2}%",
            r.consumers,
            r.rows,
            r.secs,
            r.rate(),
            100.0 * r.rate() / r.ceiling_used.max(1.0),
            100.0 * r.rate() / r.ceiling_all.max(1.0),
            r.limited_share() * 100.0
        );
    }
    println!("(path max: the rows/s the enforced limits allow on the endpoints the backfill used; all max: list and search both full. Targets: ≥ 95 % and ≤ 0.5 % answered 429.)");
}
