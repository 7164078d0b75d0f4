//! `bench e2e`: an embedded backfill of one table (`hubsync run`, its own process, measured with
//! `wait4` for wall time and peak memory) from an unthrottled simulator, then two incremental
//! runs after 1 % of the records changed each time: first changes among the newest 10 % of the
//! records, as a CRM's edits concentrate on recent deals and contacts, then changes spread
//! uniformly over every record (so over every `dt` partition: merge-and-overwrite rewrites
//! nearly the whole table). In that order because the 2 h overlap makes each incremental read
//! the changes before it again: uniform changes first would spread the second run over every
//! partition too. The lake is then audited against the simulator.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use sim::{MutateRequest, ObjectType, RuntimeConfig, SimConfig};

use crate::{measured, release_bins, Measured};

#[derive(Args)]
pub struct E2eBench {
    /// Deals in the simulated account.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Share of the records each incremental run finds changed.
    #[arg(long, default_value_t = 0.01)]
    changed: f64,
    /// Share of the records, the newest, among which the second incremental's changes fall.
    #[arg(long, default_value_t = 0.10)]
    recent: f64,
    /// Consumer tasks of `hubsync run`.
    #[arg(long, default_value_t = 8)]
    consumers: usize,
    /// Skip the closing audit (it reads the whole table back through the list API).
    #[arg(long)]
    no_audit: bool,
    /// Custom properties per deal besides HubSpot's (typed columns of every kind; real
    /// portals have hundreds).
    #[arg(long, default_value_t = 0)]
    custom_properties: u64,
}

pub struct E2eResult {
    pub records: u64,
    pub backfill: Measured,
    pub changed: u64,
    /// After changes spread over every record.
    pub uniform: Measured,
    /// After changes among the newest records.
    pub recent: Measured,
    pub recent_share: f64,
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
        custom_properties: vec![sim::TypeCount {
            object_type: ObjectType::Deals,
            count: args.custom_properties,
        }],
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
        "e2e: {} deals ({} custom properties each) seeded in {:.1?}, limits off",
        args.records,
        args.custom_properties,
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
    let flag = Command::new(&hubsync)
        .args(["flag", "set", "true", "--lake"])
        .arg(&lake)
        .stdout(Stdio::null())
        .status()?;
    anyhow::ensure!(flag.success(), "hubsync flag set true failed");
    let newest = ((args.records as f64) * args.recent).round() as u64;
    let mut incrementals = Vec::new();
    for (what, among_newest) in [
        ("among the newest", Some(newest)),
        ("spread over every record", None),
    ] {
        server
            .mutate(&MutateRequest {
                object_type: "deals".into(),
                updates: changed,
                creates: 0,
                archives: 0,
                same_timestamp: false,
                among_newest,
                ..Default::default()
            })
            .await?;
        let m = hubsync_run(&hubsync, &lake, &base, "auto", args.consumers)?;
        println!(
            "e2e: incremental after {changed} changes {what}{} in {:.1} s ({:.1} % of the backfill), peak RSS {:.0} MiB",
            among_newest.map_or(String::new(), |n| format!(" {n}")),
            m.secs,
            100.0 * m.secs / backfill.secs,
            m.peak_mib
        );
        incrementals.push(m);
    }
    let Ok([recent, uniform]) = <[Measured; 2]>::try_from(incrementals) else {
        bail!("expected two incremental runs measured");
    };
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
        uniform,
        recent,
        recent_share: args.recent,
    })
}

pub fn print_table(r: &E2eResult) {
    println!(
        "{:<24} {:>9} {:>8} {:>10} {:>10} {:>14}",
        "run", "records", "secs", "rows/s", "peak MiB", "of backfill"
    );
    println!(
        "{:<24} {:>9} {:>8.1} {:>10.0} {:>10.0} {:>14}",
        "backfill",
        r.records,
        r.backfill.secs,
        r.records as f64 / r.backfill.secs,
        r.backfill.peak_mib,
        "-"
    );
    let newest = format!("incremental, newest {:.0} %", 100.0 * r.recent_share);
    for (name, m) in [(newest.as_str(), &r.recent), ("incremental, uniform", &r.uniform)] {
        println!(
            "{:<24} {:>9} {:>8.1} {:>10} {:>10.0} {:>13.1}%",
            name,
            r.changed,
            m.secs,
            "-",
            m.peak_mib,
            100.0 * m.secs / r.backfill.secs
        );
    }
    println!("(targets: backfill ≥ 50,000 rows/s; incremental ≤ 5 % of the backfill's time)");
}
