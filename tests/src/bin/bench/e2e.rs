//! `bench e2e`: an embedded backfill of one table (`hubsync run`, its own process, measured with
//! `wait4` for wall time and peak memory) from an unthrottled simulator, then an incremental run
//! after 1 % of the records changed; the lake is then audited against the simulator.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use infra::sim::{self, MutateRequest, ObjectType, RuntimeConfig, SimConfig};

use crate::{measured, release_bins, Measured};

#[derive(Args)]
pub struct E2eBench {
    /// Deals in the simulated account.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Share of the records the incremental run finds changed.
    #[arg(long, default_value_t = 0.01)]
    changed: f64,
    /// Consumer tasks of `hubsync run`.
    #[arg(long, default_value_t = 8)]
    consumers: usize,
    /// Skip the closing audit (it reads the whole table back through the list API).
    #[arg(long)]
    no_audit: bool,
}

pub struct E2eResult {
    pub records: u64,
    pub backfill: Measured,
    pub changed: u64,
    pub incremental: Measured,
}

fn hubsync_run(hubsync: &Path, lake: &Path, base: &str, mode: &str, consumers: usize) -> Result<Measured> {
    let consumers = consumers.to_string();
    let args = [
        "run",
        "--lake",
        &lake.display().to_string(),
        "--tables",
        "deals",
        "--mode",
        mode,
        "--hubspot-url",
        base,
        "--rate-limit",
        "0",
        "--search-rate",
        "0",
        "--consumers",
        &consumers,
    ]
    .map(String::from);
    let m = measured(hubsync, &args, &[("RUST_LOG", "warn")])?;
    if m.exit != 0 {
        bail!("hubsync run --mode {mode} exited {}:\n{}", m.exit, m.stderr_tail);
    }
    Ok(m)
}

pub async fn bench_e2e(args: E2eBench) -> Result<E2eResult> {
    let bins = release_bins()?;
    let hubsync = bins.join("hubsync");
    let t = Instant::now();
    let server = sim::start(SimConfig {
        records_per_type: args.records,
        object_types: vec![ObjectType::Deals],
        runtime: RuntimeConfig {
            rate_limit: 0,
            search_rate: 0,
            ..RuntimeConfig::default()
        },
        ..SimConfig::default()
    })
    .await?;
    let base = server.base_url();
    println!(
        "e2e: {} deals seeded in {:.1?}, limits off",
        args.records,
        t.elapsed()
    );
    let dir = tempfile::tempdir()?;
    let lake = dir.path().join("lake");

    let backfill = hubsync_run(&hubsync, &lake, &base, "full", args.consumers)?;
    println!(
        "e2e: backfill of {} records in {:.1} s = {:.0} rows/s, peak RSS {:.0} MiB",
        args.records,
        backfill.secs,
        args.records as f64 / backfill.secs,
        backfill.peak_mib
    );

    let changed = ((args.records as f64) * args.changed).round() as u64;
    server
        .mutate(&MutateRequest {
            object_type: "deals".into(),
            updates: changed,
            creates: 0,
            archives: 0,
            same_timestamp: false,
        })
        .await?;
    let flag = Command::new(&hubsync)
        .args(["flag", "set", "true", "--lake"])
        .arg(&lake)
        .stdout(Stdio::null())
        .status()?;
    anyhow::ensure!(flag.success(), "hubsync flag set true failed");
    let incremental = hubsync_run(&hubsync, &lake, &base, "auto", args.consumers)?;
    println!(
        "e2e: incremental after {changed} changes in {:.1} s ({:.1} % of the backfill), peak RSS {:.0} MiB",
        incremental.secs,
        100.0 * incremental.secs / backfill.secs,
        incremental.peak_mib
    );
    if !args.no_audit {
        let t = Instant::now();
        let audit = Command::new(&hubsync)
            .args(["audit", "--tables", "deals", "--hubspot-url", &base])
            .args(["--rate-limit", "0", "--search-rate", "0", "--lake"])
            .arg(&lake)
            .output()
            .context("running hubsync audit")?;
        let out = String::from_utf8_lossy(&audit.stdout);
        if !audit.status.success() {
            bail!(
                "the lake differs from the simulator after the benchmark:\n{out}{}",
                String::from_utf8_lossy(&audit.stderr)
            );
        }
        println!(
            "e2e: audit equal in {:.1?}: {}",
            t.elapsed(),
            out.lines().last().unwrap_or("")
        );
    }
    server.shutdown().await?;
    Ok(E2eResult {
        records: args.records,
        backfill,
        changed,
        incremental,
    })
}

pub fn print_table(r: &E2eResult) {
    println!(
        "{:<12} {:>9} {:>8} {:>10} {:>10} {:>14}",
        "run", "records", "secs", "rows/s", "peak MiB", "of backfill"
    );
    println!(
        "{:<12} {:>9} {:>8.1} {:>10.0} {:>10.0} {:>14}",
        "backfill",
        r.records,
        r.backfill.secs,
        r.records as f64 / r.backfill.secs,
        r.backfill.peak_mib,
        "-"
    );
    println!(
        "{:<12} {:>9} {:>8.1} {:>10} {:>10.0} {:>13.1}%",
        "incremental",
        r.changed,
        r.incremental.secs,
        "-",
        r.incremental.peak_mib,
        100.0 * r.incremental.secs / r.backfill.secs
    );
    println!("(targets: backfill ≥ 50,000 rows/s; incremental ≤ 5 % of the backfill's time)");
}
