//! Four consumer processes share one HubSpot account's rate budget: their heartbeats in the
//! ledger split the general limit, one schedule in the ledger spaces their searches (R5), and
//! the simulator, enforcing both, answers (almost) none of their requests with 429. The target,
//! at most 0.5 %, is the fetch benchmark's to measure: on a loaded machine a consumer's missed
//! heartbeats can hand its share to the others for a beat, and with a hundred requests one 429 is
//! 1 %. The test holds them to [`MAX_LIMITED`]; processes that did not share (each taking the
//! whole limit) would send four times what the account allows.

use std::time::{Duration, Instant};

use common::ports::RunStatus;
use hubsync_tests::deploy::{aws_pipeline, stop, tail, Deployment};
use hubsync_tests::harness::{sim_config, wait_for};
use hubsync_tests::moto::Moto;

/// Requests per rolling 10 s the simulated account allows (HubSpot's is 190; smaller here so
/// the limit binds with few records).
const LIMIT: u32 = 30;
/// Searches per second the account allows: fewer than the consumers, which shares could not
/// split without sending more than it in sum.
const SEARCH_LIMIT: u32 = 3;
const TABLES: [&str; 4] = ["deals", "contacts", "companies", "activities"];
/// Records per type, fetched in pages of [`PAGE_SIZE`]: many requests but few partitions (a
/// record's creation day is its partition), so the merges behind the fetching stay short on
/// the emulator.
const RECORDS: u64 = 40;
const PAGE_SIZE: &str = "4";
/// The share of requests answered 429 the test tolerates (see the module's documentation).
const MAX_LIMITED: f64 = 0.03;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_consumer_processes_stay_within_one_accounts_limit() -> anyhow::Result<()> {
    let _env = hubsync_tests::moto::env_lock().await;
    let moto = Moto::start()?;
    moto.export_env();
    let mut config = sim_config(RECORDS, &[]);
    config.runtime.rate_limit = LIMIT;
    config.runtime.search_rate = SEARCH_LIMIT;
    let server = sim::start(config).await?;
    let dir = tempfile::tempdir()?;
    let d = Deployment::on(
        &moto,
        &server.base_url(),
        "budget",
        &dir.path().join("services.log"),
        &[
            ("HUBSYNC_RATE_LIMIT", LIMIT.to_string().as_str()),
            ("HUBSYNC_SEARCH_RATE", SEARCH_LIMIT.to_string().as_str()),
            ("HUBSYNC_PAGE_SIZE", PAGE_SIZE),
            ("HUBSYNC_HUBSPOT_RETRIES", "6"),
        ],
    )?;
    d.hubsync_ok(&["infra", "up"])?;
    let p = aws_pipeline("lake-budget", "budget").await?;
    let mut services = vec![d.service("producer")?, d.service("merger")?];
    for _ in 0..4 {
        services.push(d.service("consumer")?);
    }
    // Every consumer has seen the four (heartbeats every 3 s) before any page is asked for.
    wait_for(
        "four consumers sharing the budget",
        Duration::from_secs(60),
        || async {
            let log = std::fs::read_to_string(&d.log)?;
            Ok(log.matches("\"consumers\":4").count() >= 4)
        },
    )
    .await?;
    server.reset_stats();
    let started = Instant::now();
    for t in TABLES {
        d.hubsync_ok(&["sync", "--table", t])?;
    }
    // Fetching is what the budget governs: measure until every run has all its pages.
    wait_for("every run past fetching", Duration::from_secs(300), || async {
        let mut done = 0;
        for t in TABLES {
            let run = p.ledger.list_runs(Some(t), 1).await?;
            done += run
                .iter()
                .filter(|r| matches!(r.status, RunStatus::Merging | RunStatus::Committed))
                .count();
        }
        Ok(done == TABLES.len())
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\n{}", tail(&d.log)))?;
    let elapsed = started.elapsed();
    let stats = server.stats();
    let limited = stats.rate_limited.total as f64 / stats.requests.max(1) as f64;
    println!(
        "shared budget: 4 consumers, {} requests in {elapsed:.1?} ({:.2} per s; the account allows {:.1}), {} answered 429 ({:.2} %)",
        stats.requests,
        stats.requests as f64 / elapsed.as_secs_f64(),
        f64::from(LIMIT) / 10.0,
        stats.rate_limited.total,
        limited * 100.0
    );
    assert!(
        stats.requests > 2 * u64::from(LIMIT),
        "the limit must bind: {stats:?}"
    );
    assert!(
        limited <= MAX_LIMITED,
        "{} of {} requests answered 429: {:?}",
        stats.rate_limited.total,
        stats.requests,
        stats.rate_limited
    );

    wait_for("every run committed", Duration::from_secs(300), || async {
        let mut done = 0;
        for t in TABLES {
            let runs = p.ledger.list_runs(Some(t), 1).await?;
            done += runs.iter().filter(|r| r.status == RunStatus::Committed).count();
        }
        Ok(done == TABLES.len())
    })
    .await?;

    // Backfills through search now: the producer plans created-date slices for every type.
    let producer = services.remove(0);
    stop(vec![producer])?;
    services.push(d.service_with(
        "producer",
        &[
            ("HUBSYNC_LIST_WALK_MAX", "0"),
            ("HUBSYNC_BACKFILL_READS", "search"),
            ("HUBSYNC_SLICE_RECORDS", "10"),
        ],
    )?);
    server.reset_stats();
    let started = Instant::now();
    for t in ["deals", "contacts"] {
        d.hubsync_ok(&["sync", "--table", t, "--mode", "full"])?;
    }
    wait_for(
        "the search backfills past fetching",
        Duration::from_secs(300),
        || async {
            let mut done = 0;
            for t in ["deals", "contacts"] {
                let runs = p.ledger.list_runs(Some(t), 1).await?;
                done += runs
                    .iter()
                    .filter(|r| r.mode == common::ports::RunMode::Full && r.slices > 1)
                    .filter(|r| matches!(r.status, RunStatus::Merging | RunStatus::Committed))
                    .count();
            }
            Ok(done == 2)
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\n{}", tail(&d.log)))?;
    let elapsed = started.elapsed();
    let stats = server.stats();
    stop(services)?;
    let searches = stats.by_endpoint.search;
    println!(
        "shared search schedule: 4 consumers, {searches} searches in {elapsed:.1?} ({:.2} per s; the account allows {SEARCH_LIMIT}), {} answered 429",
        searches as f64 / elapsed.as_secs_f64(),
        stats.rate_limited.search
    );
    assert!(
        searches > 6 * u64::from(SEARCH_LIMIT),
        "the search limit must bind: {stats:?}"
    );
    assert!(
        stats.rate_limited.total as f64 <= MAX_LIMITED * stats.requests as f64,
        "{} of {} requests answered 429: {stats:?}",
        stats.rate_limited.total,
        stats.requests
    );
    server.shutdown().await?;
    Ok(())
}
