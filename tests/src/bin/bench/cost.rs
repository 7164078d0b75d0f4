//! `bench cost`: what a sync costs in AWS requests. The pipeline runs in AWS mode on the moto
//! emulator (producer, two consumers, merger as processes, IAM enforced) and the emulator counts
//! every request by the call AWS bills, with DynamoDB's request units reckoned from item sizes
//! (`Moto::start_counting`). Per run (a backfill, then an incremental after 1 % of the records
//! changed among the newest 10 %) it prints SQS requests, DynamoDB read and write units, S3
//! PUT/GET/LIST/DELETE, HubSpot requests, the dollars at on-demand prices, and the same per
//! partition the run touched and per million records.
//!
//! The emulator is one Python process and far from 1M records' reach; the per-million figures
//! are the measured ones scaled by records, which holds for the per-record costs (pages, staged
//! files) and overstates nothing the partitions cost, since a denser table has fewer
//! partitions per record. A sparse table (3,000 records over the simulator's six years, about
//! 2,100 partitions) shows the per-partition cost alone.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use common::ports::RunStatus;
use hubsync_tests::deploy::{aws_pipeline, stop, tail, Deployment};
use hubsync_tests::harness::{latest_run, sim_config, wait_for};
use hubsync_tests::moto::Moto;
use sim::{MutateRequest, ObjectType};

/// On-demand prices in us-east-1, in dollars (see the README's cost section for the date and
/// the sources).
pub mod price {
    /// Per SQS request (standard queue; each 64 KiB of payload counts as one request).
    pub const SQS: f64 = 0.40 / 1e6;
    /// Per SQS request on a FIFO queue.
    pub const SQS_FIFO: f64 = 0.50 / 1e6;
    /// Per DynamoDB write request unit (1 KB).
    pub const DYNAMO_WRITE: f64 = 0.625 / 1e6;
    /// Per DynamoDB read request unit (4 KB strongly consistent, 8 KB eventually).
    pub const DYNAMO_READ: f64 = 0.125 / 1e6;
    /// Per S3 Standard PUT, COPY, POST or LIST request.
    pub const S3_PUT: f64 = 0.005 / 1e3;
    /// Per S3 Standard GET (and HEAD, SELECT, other) request.
    pub const S3_GET: f64 = 0.0004 / 1e3;
    /// Per Glue Data Catalog request (past the first million a month).
    pub const GLUE: f64 = 1.0 / 1e6;
}

#[derive(Args)]
pub struct CostBench {
    /// Deals in the simulated account for the backfill and the incremental (0 to skip them).
    #[arg(long, default_value_t = 20_000)]
    records: u64,
    /// Deals of the sparse table (0 to skip it): spread over the simulator's six years.
    #[arg(long, default_value_t = 3_000)]
    sparse_records: u64,
    /// Share of the records changed before the incremental run.
    #[arg(long, default_value_t = 0.01)]
    changed: f64,
    /// Share of the records, the newest, among which the changes fall.
    #[arg(long, default_value_t = 0.10)]
    recent: f64,
    /// Custom properties per deal besides HubSpot's, typed columns of every kind (real portals
    /// have hundreds): wider records make larger files, not more of them.
    #[arg(long, default_value_t = 0)]
    custom_properties: u64,
    /// Runs the services under HubSpot's default limits (190 requests per 10 s, 5 searches a
    /// second) as production does, so a backfill reads both paths (a list walk up from the
    /// lowest ids and search lanes down from the highest) instead of created-date slices.
    #[arg(long)]
    hubspot_limits: bool,
}

/// What one run cost.
pub struct Cost {
    pub what: String,
    pub records: i64,
    pub partitions: u64,
    pub secs: f64,
    /// Counted calls by `service:call`, and DynamoDB's units.
    pub counts: BTreeMap<String, f64>,
    pub hubspot: u64,
}

impl Cost {
    fn sum(&self, service: &str) -> f64 {
        self.counts
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{service}:")) && !k.ends_with("_units"))
            .map(|(_, v)| v)
            .sum()
    }
    fn get(&self, key: &str) -> f64 {
        self.counts.get(key).copied().unwrap_or(0.0)
    }
    /// SQS requests, on standard and FIFO queues.
    pub fn sqs(&self) -> f64 {
        self.sum("sqs") + self.sum("sqs-fifo")
    }
    pub fn s3(&self, call: &str) -> f64 {
        self.get(&format!("s3:{call}"))
    }
    /// Every AWS request counted (DynamoDB's units aside).
    pub fn requests(&self) -> f64 {
        self.sqs()
            + ["dynamodb", "s3", "glue", "ssm"]
                .iter()
                .map(|s| self.sum(s))
                .sum::<f64>()
    }
    pub fn dollars(&self) -> f64 {
        let sqs = self.sum("sqs") * price::SQS + self.sum("sqs-fifo") * price::SQS_FIFO;
        let dynamo = self.get("dynamodb:read_units") * price::DYNAMO_READ
            + self.get("dynamodb:write_units") * price::DYNAMO_WRITE;
        let s3 = (self.s3("PUT") + self.s3("LIST")) * price::S3_PUT + self.s3("GET") * price::S3_GET;
        sqs + dynamo + s3 + self.sum("glue") * price::GLUE
    }
}

pub async fn bench_cost(args: CostBench) -> Result<Vec<Cost>> {
    let mut costs = Vec::new();
    if args.records > 0 {
        costs.extend(table_costs(&args, args.records, "dense", true).await?);
    }
    if args.sparse_records > 0 {
        costs.extend(table_costs(&args, args.sparse_records, "sparse", false).await?);
    }
    Ok(costs)
}

/// A backfill of `records` deals and (with `incremental`) the incremental after the changes,
/// on an emulator of its own (IAM is enforced once per emulator).
async fn table_costs(args: &CostBench, records: u64, name: &str, incremental: bool) -> Result<Vec<Cost>> {
    let moto = Moto::start_counting().context("starting the moto emulator")?;
    moto.export_env();
    let moto = &moto;
    let mut config = sim_config(records, &[ObjectType::Deals]);
    config.custom_properties = vec![sim::TypeCount {
        object_type: ObjectType::Deals,
        count: args.custom_properties,
    }];
    if args.hubspot_limits {
        // The simulated account enforces them too: a 429 would be counted with HubSpot's requests.
        let limits = sim::RuntimeConfig::default();
        config.runtime.rate_limit = limits.rate_limit;
        config.runtime.search_rate = limits.search_rate;
    }
    let server = sim::start(config).await?;
    let dir = tempfile::tempdir()?;
    let mut env = vec![("HUBSYNC_MAX_RECEIVE_COUNT", "10")];
    if args.hubspot_limits {
        env.extend([("HUBSYNC_RATE_LIMIT", "190"), ("HUBSYNC_SEARCH_RATE", "5")]);
    }
    let d = Deployment::on(
        moto,
        &server.base_url(),
        name,
        &dir.path().join(format!("{name}.log")),
        &env,
    )?;
    let reads = if args.hubspot_limits { ", both paths" } else { "" };
    d.hubsync_ok(&["infra", "up"])?;
    let p = aws_pipeline(&format!("lake-{name}"), name).await?;
    let services = vec![
        d.service("producer")?,
        d.service("consumer")?,
        d.service("consumer")?,
        d.service("merger")?,
    ];
    let mut out = Vec::new();
    let backfill = measure(
        moto,
        &d,
        &p,
        &server,
        &format!("{name} backfill ({records} deals{reads})"),
        "full",
    )
    .await?;
    println!("cost:\n{}\n{}", header(), row(&backfill));
    out.push(backfill);
    if incremental {
        d.hubsync_ok(&["flag", "set", "true"])?;
        let changed = ((records as f64) * args.changed).round() as u64;
        server
            .mutate(&MutateRequest {
                object_type: "deals".into(),
                updates: changed,
                among_newest: Some(((records as f64) * args.recent).round() as u64),
                ..Default::default()
            })
            .await?;
        let inc = measure(
            moto,
            &d,
            &p,
            &server,
            &format!("{name} incremental ({changed} changed)"),
            "auto",
        )
        .await?;
        println!("cost:\n{}\n{}", header(), row(&inc));
        out.push(inc);
    }
    stop(services)?;
    server.shutdown().await?;
    Ok(out)
}

/// One sync of deals from a request to its commit, with what the emulator and HubSpot counted.
async fn measure(
    moto: &Moto,
    d: &Deployment,
    p: &common::pipeline::Pipeline,
    server: &sim::SimServer,
    what: &str,
    mode: &str,
) -> Result<Cost> {
    // The commit is watched in the services' log, not in the ledger: this process's own reads
    // would be counted with the pipeline's (a poll of the runs every 50 ms outweighed a
    // backfill's merges).
    let commits = || std::fs::read_to_string(&d.log).map(|l| l.matches("\"run committed\"").count());
    let committed_before = commits()?;
    // Let the services' idle polls settle, then count from zero.
    tokio::time::sleep(Duration::from_secs(2)).await;
    moto.requests(true)?;
    server.reset_stats();
    let started = Instant::now();
    d.hubsync_ok(&["sync", "--table", "deals", "--mode", mode])?;
    wait_for("the run to commit", Duration::from_secs(3600), || async {
        Ok(commits()? > committed_before)
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\n{}", tail(&d.log)))?;
    let secs = started.elapsed().as_secs_f64();
    let counts = moto.requests(true)?;
    let hubspot = server.stats().requests;
    let run = latest_run(p, "deals").await?;
    anyhow::ensure!(
        run.status == RunStatus::Committed,
        "the latest run of deals is {:?}",
        run.status
    );
    Ok(Cost {
        what: what.to_string(),
        records: run.records,
        partitions: run.partitions.unwrap_or(0),
        secs,
        counts,
        hubspot,
    })
}

/// One run's row of the table (under [`header`]).
fn row(c: &Cost) -> String {
    format!(
        "{:<40} {:>8} {:>6} {:>6.0} {:>7.0} {:>8.0} {:>8.0} {:>7.0} {:>7.0} {:>7.0} {:>7.0} {:>8} {:>8.4}",
        c.what,
        c.records,
        c.partitions,
        c.secs,
        c.sqs(),
        c.get("dynamodb:read_units"),
        c.get("dynamodb:write_units"),
        c.s3("PUT"),
        c.s3("GET"),
        c.s3("LIST"),
        c.s3("DELETE") + c.s3("DeleteObjects"),
        c.hubspot,
        c.dollars()
    )
}

/// The table's header, in [`row`]'s widths.
fn header() -> String {
    format!(
        "{:<40} {:>8} {:>6} {:>6} {:>7} {:>8} {:>8} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8}",
        "run",
        "records",
        "dts",
        "secs",
        "SQS",
        "DDB RRU",
        "DDB WRU",
        "S3 PUT",
        "S3 GET",
        "LIST",
        "DELETE",
        "HubSpot",
        "$"
    )
}

pub fn print_table(costs: &[Cost]) {
    println!("{}", header());
    for c in costs {
        println!("{}", row(c));
    }
    println!();
    println!(
        "{:<40} {:>12} {:>12} {:>14} {:>12}",
        "per partition / per 1M records", "AWS req/dt", "$ per dt", "AWS req per 1M", "$ per 1M"
    );
    for c in costs {
        let requests = c.requests();
        let per_million = 1e6 / c.records.max(1) as f64;
        println!(
            "{:<40} {:>12.1} {:>12.6} {:>14.0} {:>12.4}",
            c.what,
            requests / c.partitions.max(1) as f64,
            c.dollars() / c.partitions.max(1) as f64,
            requests * per_million,
            c.dollars() * per_million
        );
    }
    println!("(DynamoDB units reckoned from item sizes as on-demand billing does; S3 DELETE is free; prices in the README. Per 1M: the measured run scaled by records.)");
    // Two backfills of different densities split the cost into a part per record and a part
    // per partition (cost = a × records + b × partitions): what 1M records cost over as many
    // days as the dense table spans, without scaling its partitions with its records.
    let backfills: Vec<&Cost> = costs.iter().filter(|c| c.what.contains("backfill")).collect();
    if let [dense, sparse] = backfills[..] {
        let (r1, p1, r2, p2) = (
            dense.records as f64,
            dense.partitions as f64,
            sparse.records as f64,
            sparse.partitions as f64,
        );
        let det = r1 * p2 - r2 * p1;
        // Two runs of about the same density (records per partition) cannot tell the two
        // parts apart: the fit is printed only when the densities differ twofold or more.
        let (d1, d2) = (r1 / p1.max(1.0), r2 / p2.max(1.0));
        if d1.max(d2) < 2.0 * d1.min(d2) {
            println!();
            println!(
                "no model: the backfills' densities ({d1:.1} and {d2:.1} records per partition) are too close to split per record from per partition"
            );
        } else if det.abs() > f64::EPSILON {
            let solve = |y1: f64, y2: f64| ((y1 * p2 - y2 * p1) / det, (r1 * y2 - r2 * y1) / det);
            let (a_usd, b_usd) = solve(dense.dollars(), sparse.dollars());
            let (a_req, b_req) = solve(dense.requests(), sparse.requests());
            println!();
            println!(
                "model from the two backfills: {:.3} AWS requests and ${:.8} per record, {:.1} requests and ${:.6} per partition",
                a_req, a_usd, b_req, b_usd
            );
            println!(
                "a 1M-record backfill over {} partitions: {:.0} AWS requests, ${:.4}",
                dense.partitions,
                a_req * 1e6 + b_req * p1,
                a_usd * 1e6 + b_usd * p1
            );
        }
    }
    println!("calls by service, last run:");
    if let Some(c) = costs.last() {
        for (k, v) in &c.counts {
            println!("  {k:<40} {v:>10.1}");
        }
    }
}
