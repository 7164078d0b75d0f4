//! hubsync's benchmarks, one command for all of them (`bash scripts/bench.sh`, i.e.
//! `cargo run --release -p hubsync-tests --bin bench -- all`):
//!
//! - `merge`: the merger's keep-latest against Polars and DuckDB on the same files;
//! - `fetch`: a backfill by 1, 4 and 8 consumers against HubSpot's default limits;
//! - `e2e`: an embedded backfill of 1,000,000 records, then two incremental runs after 1 %
//!   changed each time (among the newest 10 %, then spread over every record);
//! - `ledger`: the run ledger's DynamoDB write units per page and per merge of a 1M-record
//!   backfill, at 2,343 and 23,430 partitions;
//! - `sim`: the simulator's list endpoint alone, the ceiling the others run under.
//!
//! Every figure is printed, never asserted; `all` ends with the machine it ran on.

mod cost;
mod e2e;
mod fetch;
mod ledger;
mod merge;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use sim::{ObjectType, RuntimeConfig, SimConfig};

#[derive(Parser)]
#[command(name = "bench", about = "hubsync benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Pages the simulator's list endpoint from concurrent clients (limits off).
    Sim(SimBench),
    /// Keep-latest merge of 1M live + 200k staged rows: hubsync, Polars, DuckDB.
    Merge(merge::MergeBench),
    /// A backfill by 1, 4 and 8 consumer processes (AWS mode on moto) under HubSpot's limits.
    Fetch(fetch::FetchBench),
    /// An embedded backfill of 1,000,000 records, then incremental runs after 1 % changed.
    E2e(e2e::E2eBench),
    /// The run ledger's DynamoDB write units per page and per merge (on moto).
    Ledger(ledger::LedgerBench),
    /// AWS requests and dollars of a backfill, an incremental and a sparse table's backfill
    /// (AWS mode on moto, every request counted).
    Cost(cost::CostBench),
    /// merge, fetch, e2e and ledger with their defaults, then the machine they ran on.
    All,
}

/// What `wait4` saw of one process.
pub struct Measured {
    pub secs: f64,
    pub peak_mib: f64,
    pub exit: i32,
    pub stderr_tail: String,
}

/// Runs `program args` as its own process under a `wait4` wrapper: wall time, peak RSS, exit.
pub fn measured(program: &std::path::Path, args: &[String], env: &[(&str, &str)]) -> Result<Measured> {
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg(merge::MEASURE)
        .arg(program)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .with_context(|| format!("running {} under python3's wait4", program.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last: Vec<&str> = stdout
        .lines()
        .last()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let stderr_tail = lines[lines.len().saturating_sub(30)..].join("\n");
    anyhow::ensure!(
        last.len() == 3,
        "no wait4 figures from {}: {stdout}\n{stderr_tail}",
        program.display()
    );
    Ok(Measured {
        secs: last[0].parse()?,
        peak_mib: last[1].parse::<f64>()? / 1024.0,
        exit: last[2].parse()?,
        stderr_tail,
    })
}

/// Builds the workspace's release binaries (a no-op when fresh) and returns their directory,
/// the benchmark's own.
pub fn release_bins() -> Result<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the workspace root")?;
    let status = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--workspace", "--bins", "--locked"])
        .current_dir(root)
        .status()
        .context("running cargo build --release")?;
    anyhow::ensure!(status.success(), "building the release binaries failed");
    let exe = std::env::current_exe()?;
    Ok(exe.parent().context("the benchmark's directory")?.to_path_buf())
}

/// The machine, for the record.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!("{cores} cores ({cpu}), {mem_gib:.0} GiB")
}

#[derive(Args)]
struct SimBench {
    /// Deals seeded in the simulated portal.
    #[arg(long, default_value_t = 100_000)]
    records: u64,
    /// Concurrent HTTP clients, each paging on its own.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// How long to measure, in seconds.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Records per page (the list endpoint's maximum is 100).
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Also parse every page into wire types (as the consumer does).
    #[arg(long)]
    parse: bool,
}

#[derive(Default)]
struct Totals {
    pages: AtomicU64,
    records: AtomicU64,
    bytes: AtomicU64,
    busy_us: AtomicU64,
}

/// The `paging.next.after` cursor of a raw list page, found without parsing the page.
fn next_after(body: &[u8]) -> Option<String> {
    const NEEDLE: &[u8] = br#""next":{"after":""#;
    let start = body.windows(NEEDLE.len()).position(|w| w == NEEDLE)? + NEEDLE.len();
    let len = body[start..].iter().position(|b| *b == b'"')?;
    Some(String::from_utf8_lossy(&body[start..start + len]).into_owned())
}

fn count_records(body: &[u8]) -> u64 {
    const NEEDLE: &[u8] = br#"{"id":""#;
    body.windows(NEEDLE.len()).filter(|w| *w == NEEDLE).count() as u64
}

async fn client_loop(
    base: String,
    limit: u32,
    parse: bool,
    until: Instant,
    totals: Arc<Totals>,
) -> Result<()> {
    let http = reqwest::Client::new();
    let url = format!("{base}{}/objects/deals", sim::CRM_BASE_PATH);
    let limit = limit.to_string();
    let mut after: Option<String> = None;
    while Instant::now() < until {
        let t0 = Instant::now();
        let mut req = http.get(&url).query(&[("limit", limit.as_str())]);
        if let Some(a) = &after {
            req = req.query(&[("after", a.as_str())]);
        }
        let body = req.send().await?.error_for_status()?.bytes().await?;
        let records = if parse {
            let page: wire::ListResponse = serde_json::from_slice(&body)?;
            page.results.len() as u64
        } else {
            count_records(&body)
        };
        totals.busy_us.fetch_add(t0.elapsed().as_micros() as u64, Relaxed);
        totals.pages.fetch_add(1, Relaxed);
        totals.records.fetch_add(records, Relaxed);
        totals.bytes.fetch_add(body.len() as u64, Relaxed);
        after = next_after(&body);
    }
    Ok(())
}

async fn bench_sim(args: SimBench) -> Result<()> {
    let t0 = Instant::now();
    let server = sim::start(SimConfig {
        records_per_type: args.records,
        object_types: vec![ObjectType::Deals],
        runtime: RuntimeConfig {
            rate_limit: 0,
            ..RuntimeConfig::default()
        },
        ..SimConfig::default()
    })
    .await
    .context("starting the simulator")?;
    println!(
        "simulator: {} deals seeded in {:.2?} at {}",
        args.records,
        t0.elapsed(),
        server.base_url()
    );
    let totals = Arc::new(Totals::default());
    let started = Instant::now();
    let until = started + Duration::from_secs(args.duration_secs);
    let tasks: Vec<_> = (0..args.clients)
        .map(|_| {
            tokio::spawn(client_loop(
                server.base_url(),
                args.limit,
                args.parse,
                until,
                totals.clone(),
            ))
        })
        .collect();
    for task in tasks {
        task.await.context("client task")??;
    }
    let secs = started.elapsed().as_secs_f64();
    let (pages, records) = (totals.pages.load(Relaxed), totals.records.load(Relaxed));
    let mib = totals.bytes.load(Relaxed) as f64 / (1024.0 * 1024.0);
    let mean_ms = totals.busy_us.load(Relaxed) as f64 / pages.max(1) as f64 / 1000.0;
    println!(
        "list limit={} clients={} parse={} for {secs:.1}s: {pages} pages, {:.0} pages/s, {:.0} records/s, {:.1} MiB/s, mean {mean_ms:.2} ms/page",
        args.limit, args.clients, args.parse, pages as f64 / secs, records as f64 / secs, mib / secs
    );
    server.shutdown().await.context("stopping the simulator")?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        BenchCommand::Sim(args) => bench_sim(args).await,
        BenchCommand::Merge(args) => merge::bench_merge(args).map(drop),
        BenchCommand::Fetch(args) => bench_fetch(args).await.map(drop),
        BenchCommand::E2e(args) => e2e::bench_e2e(args).await.map(|r| e2e::print_table(&r)),
        BenchCommand::Ledger(args) => ledger::bench_ledger(args).await.map(|r| ledger::print_table(&r)),
        BenchCommand::Cost(args) => cost::bench_cost(args).await.map(|r| cost::print_table(&r)),
        BenchCommand::All => {
            let defaults = |sub: &str| Cli::parse_from(["bench", sub]).command;
            let BenchCommand::Merge(m) = defaults("merge") else {
                unreachable!()
            };
            let BenchCommand::Fetch(f) = defaults("fetch") else {
                unreachable!()
            };
            let BenchCommand::E2e(e) = defaults("e2e") else {
                unreachable!()
            };
            let BenchCommand::Ledger(l) = defaults("ledger") else {
                unreachable!()
            };
            let merged = merge::bench_merge(m)?;
            let fetched = bench_fetch(f).await?;
            let e2e = e2e::bench_e2e(e).await?;
            let ledger = ledger::bench_ledger(l).await?;
            println!("\n== all benchmarks, on {} ==", machine());
            println!("-- merge --");
            merge::print_table(&merged);
            println!("-- fetch --");
            fetch::print_table(&fetched);
            println!("-- end to end --");
            e2e::print_table(&e2e);
            println!("-- ledger (DynamoDB) --");
            ledger::print_table(&ledger);
            Ok(())
        }
    }
}

async fn bench_fetch(args: fetch::FetchBench) -> Result<Vec<fetch::FetchResult>> {
    fetch::bench_fetch(args).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_and_records_are_found_in_raw_pages() {
        let body = br#"{"results":[{"id":"1","properties":{"hs_object_id":"1"}},{"id":"2"}],"paging":{"next":{"after":"3","link":"x"}}}"#;
        assert_eq!(next_after(body).as_deref(), Some("3"));
        assert_eq!(count_records(body), 2);
        assert_eq!(next_after(br#"{"results":[]}"#), None);
    }
}
