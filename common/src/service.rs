//! What the three service binaries share: configuration from flags with environment twins,
//! JSON logs, and one cancellation token fired by SIGTERM or Ctrl-C.

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::aws::AwsNames;
use crate::catalog::Catalog;
use crate::clock;
use crate::hubspot::client::DEFAULT_BASE_URL;
use crate::hubspot::{ClientConfig, HubSpotClient, RateBudget, Secret};
use crate::lake::LakeLocation;
use crate::pipeline::{Pipeline, Settings};
use crate::worker::WorkerOptions;

/// Environment variable holding the HubSpot token (never a flag).
pub const TOKEN_ENV: &str = "HUBSPOT_TOKEN";

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ServiceError(pub String);

/// Configuration of a service process (AWS mode).
#[derive(Debug, Clone, clap::Parser)]
pub struct ServiceArgs {
    /// The lake: s3://bucket/prefix.
    #[arg(long, env = "HUBSYNC_LAKE")]
    pub lake: String,
    /// Table catalog (TOML); default: the five built-in tables.
    #[arg(long, env = "HUBSYNC_CATALOG")]
    pub catalog: Option<PathBuf>,
    /// Prefix of the queues and the run table (`<prefix>-pages`, `<prefix>-runs`, ...).
    #[arg(long, env = "HUBSYNC_PREFIX", default_value = "hubsync")]
    pub prefix: String,
    #[command(flatten)]
    pub hubspot: HubSpotArgs,
    /// Messages this process works on at once.
    #[arg(long, env = "HUBSYNC_CONCURRENCY", default_value_t = 4)]
    pub concurrency: usize,
    /// Receives before a message is dead-lettered (must match the queues' redrive policy).
    #[arg(long, env = "HUBSYNC_MAX_RECEIVE_COUNT", default_value_t = 5)]
    pub max_receive_count: u32,
    /// Seconds a message in hand stays invisible; a heartbeat renews it.
    #[arg(long, env = "HUBSYNC_VISIBILITY_SECS", default_value_t = 120)]
    pub visibility_secs: u64,
    /// Longest pause, in milliseconds, before a failed message is retried.
    #[arg(long, env = "HUBSYNC_MAX_RETRY_DELAY_MS", default_value_t = 30_000)]
    pub max_retry_delay_ms: u64,
}

/// How a process talks to HubSpot; shared by the services and the `hubsync` CLI.
#[derive(Debug, Clone, clap::Args)]
pub struct HubSpotArgs {
    /// HubSpot API base URL (a simulator's, for tests and demos). The token is read from the
    /// HUBSPOT_TOKEN environment variable only.
    #[arg(long, env = "HUBSPOT_BASE_URL", default_value = DEFAULT_BASE_URL)]
    pub hubspot_url: String,
    /// The account's requests per rolling 10 s (HubSpot Professional: 190; Starter: 100; 0 = no
    /// limit). Consumer processes split it; a lower `X-HubSpot-RateLimit-Max` answered by
    /// HubSpot wins, and a `-Remaining` of 0 holds requests briefly.
    #[arg(long, env = "HUBSYNC_RATE_LIMIT", default_value_t = 190)]
    pub rate_limit: usize,
    /// The account's search requests per second (HubSpot: 5; 0 = no limit). Consumer processes
    /// share one schedule of them through the ledger.
    #[arg(long, env = "HUBSYNC_SEARCH_RATE", default_value_t = 5)]
    pub search_rate: usize,
    /// Retries of one HubSpot request (429, 5xx, transport) before the job fails and is retried
    /// through its queue.
    #[arg(long, env = "HUBSYNC_HUBSPOT_RETRIES", default_value_t = 6)]
    pub hubspot_retries: usize,
    /// Hours of overlap subtracted from the watermark to open an incremental window.
    #[arg(long, env = "HUBSYNC_OVERLAP_HOURS", default_value_t = 2.0)]
    pub overlap_hours: f64,
    /// MiB one merge may hold before its sorts spill to temporary files (a partition larger
    /// than this still merges, more slowly).
    #[arg(long, env = "HUBSYNC_MERGE_MEMORY_MB", default_value_t = crate::pipeline::DEFAULT_MERGE_MEMORY_MB,
          value_parser = parse_merge_memory)]
    pub merge_memory_mb: usize,
    /// Records per list and search page (default: HubSpot's maxima, 100 and 200). Smaller
    /// pages mean more jobs; tests use them to get many pages from few records.
    #[arg(long, env = "HUBSYNC_PAGE_SIZE", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub page_size: Option<u32>,
    /// Slices of a run fetched at once; each finished slice starts the next, so a backfill's
    /// partitions merge and become visible one after another.
    #[arg(long, env = "HUBSYNC_SLICES_IN_FLIGHT", default_value_t = crate::pipeline::DEFAULT_SLICES_IN_FLIGHT,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    pub slices_in_flight: usize,
    /// A full sync reads an object type of at most this many records with one list walk (the
    /// general rate limit); larger ones with parallel search slices over created-date windows.
    #[arg(long, env = "HUBSYNC_LIST_WALK_MAX", default_value_t = crate::pipeline::DEFAULT_LIST_WALK_MAX_RECORDS)]
    pub list_walk_max: u64,
    /// Pages a full sync's list walk may read before its run is abandoned as outpaced by
    /// records being created faster than it reads them (nothing is committed then).
    #[arg(long, env = "HUBSYNC_LIST_WALK_MAX_PAGES", default_value_t = crate::pipeline::DEFAULT_LIST_WALK_MAX_PAGES)]
    pub list_walk_max_pages: u32,
    /// Records one slice should hold at most (at most HubSpot's search cap, 10,000).
    #[arg(long, env = "HUBSYNC_SLICE_RECORDS", default_value_t = crate::hubspot::wire::SEARCH_RESULT_CAP,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub slice_records: u64,
}

impl HubSpotArgs {
    /// The client, with the token from HUBSPOT_TOKEN (required for HubSpot's own API).
    pub fn client(&self) -> Result<HubSpotClient, ServiceError> {
        let token = std::env::var(TOKEN_ENV).unwrap_or_default();
        if token.trim().is_empty() && self.hubspot_url == DEFAULT_BASE_URL {
            return Err(ServiceError(format!(
                "set {TOKEN_ENV} to a HubSpot private-app token (or point --hubspot-url at a simulator)"
            )));
        }
        HubSpotClient::new(
            ClientConfig {
                base_url: self.hubspot_url.clone(),
                token: Secret::new(token.trim()),
                max_retries: self.hubspot_retries,
                ..Default::default()
            },
            RateBudget::new(self.rate_limit, self.search_rate),
        )
        .map_err(|e| ServiceError(e.to_string()))
    }

    /// Settings with this overlap, validated.
    pub fn settings(&self) -> Result<Settings, ServiceError> {
        if !(self.overlap_hours.is_finite() && self.overlap_hours >= 0.0) {
            return Err(ServiceError(format!(
                "--overlap-hours (HUBSYNC_OVERLAP_HOURS) must be a non-negative number of hours, got {}",
                self.overlap_hours
            )));
        }
        let defaults = Settings::default();
        Ok(Settings {
            overlap_buffer_ms: (self.overlap_hours * 3_600_000.0) as i64,
            list_page_size: self.page_size.unwrap_or(defaults.list_page_size),
            search_page_size: self.page_size.unwrap_or(defaults.search_page_size),
            merge_memory_bytes: self.merge_memory_mb << 20,
            slices_in_flight: self.slices_in_flight,
            list_walk_max_records: self.list_walk_max,
            list_walk_max_pages: self.list_walk_max_pages,
            backfill_slice_records: self.slice_records,
            ..defaults
        })
    }
}

impl ServiceArgs {
    pub fn settings(&self) -> Result<Settings, ServiceError> {
        if self.concurrency == 0 {
            return Err(ServiceError("HUBSYNC_CONCURRENCY must be at least 1".into()));
        }
        Ok(Settings {
            max_receive_count: self.max_receive_count,
            visibility_timeout: Duration::from_secs(self.visibility_secs),
            max_retry_delay: Duration::from_millis(self.max_retry_delay_ms),
            ..self.hubspot.settings()?
        })
    }

    pub fn worker_options(&self) -> WorkerOptions {
        WorkerOptions {
            wait: Duration::from_secs(10),
            visibility: Duration::from_secs(self.visibility_secs),
            first_retry_delay: Duration::from_millis(500).min(Duration::from_millis(self.max_retry_delay_ms)),
            max_retry_delay: Duration::from_millis(self.max_retry_delay_ms),
        }
    }

    pub fn names(&self) -> AwsNames {
        AwsNames {
            prefix: self.prefix.clone(),
            ..AwsNames::default()
        }
    }

    /// The pipeline on AWS.
    pub async fn pipeline(&self) -> Result<Pipeline, ServiceError> {
        let (bucket, prefix) = match LakeLocation::parse(&self.lake).map_err(|e| ServiceError(e.to_string()))? {
            LakeLocation::S3 { bucket, prefix } => (bucket, prefix),
            LakeLocation::Local(_) => {
                return Err(ServiceError(format!(
                    "HUBSYNC_LAKE `{}` is a local path; the services run in AWS mode and need s3://bucket/prefix \
                     (use `hubsync run` for embedded mode)",
                    self.lake
                )))
            }
        };
        let catalog = Catalog::load(self.catalog.as_deref()).map_err(|e| ServiceError(e.to_string()))?;
        let client = self.hubspot.client()?;
        crate::aws::pipeline(
            &self.names(),
            &bucket,
            &prefix,
            catalog,
            client,
            clock::system(),
            self.settings()?,
        )
        .await
        .map_err(|e| ServiceError(e.to_string()))
    }
}

fn parse_merge_memory(raw: &str) -> Result<usize, String> {
    match raw.trim().parse::<usize>() {
        Ok(mb) if (16..=1 << 20).contains(&mb) => Ok(mb),
        _ => Err(format!("`{raw}` is not a number of MiB between 16 and 1048576")),
    }
}

/// JSON logs on stderr; `RUST_LOG` filters (default `info`).
pub fn init_json_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// A token cancelled on SIGTERM or Ctrl-C. Workers finish the message in hand, then stop.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown requested; finishing the messages in hand");
        t.cancel();
    });
    token
}
