//! What the three service binaries share: configuration from flags with environment twins,
//! JSON logs, and one cancellation token fired by SIGTERM or Ctrl-C. This is where AWS mode's
//! adapters are wired in: the roles' libraries know only the ports.
//!
//! # Layout
//!
//! - [`ServiceArgs`]: the flags every queue-worker service takes (lake, queues, message
//!   handling) and the AWS pipeline they open; each role's own settings are its `config`.
//! - [`HubSpotArgs`]: how a process reaches HubSpot (URL, rate limits, retries; the token from
//!   `HUBSPOT_TOKEN` only).
//! - [`init_json_logs`], [`shutdown_on_signals`]: JSON logs and SIGTERM handling.
//! - [`telemetry`]: metrics as Prometheus and as CloudWatch EMF lines in the logs.

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use aws::AwsNames;
use common::catalog::Catalog;
use common::clock;
use common::lake::LakeLocation;
use common::pipeline::{Pipeline, Settings};
use common::worker::WorkerOptions;
use hubspot::client::DEFAULT_BASE_URL;
use hubspot::{ClientConfig, HubSpotClient, RateBudget, Secret};

pub mod telemetry;

pub use telemetry::{watch_commits, MetricsArgs, Telemetry};

/// Environment variable holding the HubSpot token (never a flag).
pub const TOKEN_ENV: &str = "HUBSPOT_TOKEN";

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ServiceError(pub String);

/// What every queue-worker service takes (AWS mode): where the lake and the queues are and
/// how messages are held. Each role adds its own settings (`producer::config`,
/// `consumer::config`, `merger::config`) and, when it calls HubSpot, [`HubSpotArgs`].
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceArgs {
    /// The lake: s3://bucket/prefix.
    #[arg(long, env = "HUBSYNC_LAKE")]
    pub lake: String,
    /// Table catalog (TOML); default: the built-in tables.
    #[arg(long, env = "HUBSYNC_CATALOG")]
    pub catalog: Option<PathBuf>,
    /// Prefix of the queues and the run table (`<prefix>-pages`, `<prefix>-runs`, ...).
    #[arg(long, env = "HUBSYNC_PREFIX", default_value = "hubsync")]
    pub prefix: String,
    /// Messages this process works on at once.
    #[arg(long, env = "HUBSYNC_CONCURRENCY", default_value_t = 4,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000))]
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
    #[command(flatten)]
    pub metrics: MetricsArgs,
}

/// How a process talks to HubSpot (the producer plans through it, consumers fetch through it);
/// shared by the services and the `hubsync` CLI.
#[derive(Debug, Clone, clap::Args)]
pub struct HubSpotArgs {
    /// HubSpot API base URL (a simulator's, for tests and demos). The token is read from the
    /// HUBSPOT_TOKEN environment variable only.
    #[arg(long, env = "HUBSPOT_BASE_URL", default_value = DEFAULT_BASE_URL)]
    pub hubspot_url: String,
    /// The account's requests per rolling 10 s (HubSpot Professional: 190; Starter: 100; 0 = no
    /// limit). Consumer processes split it; a lower `X-HubSpot-RateLimit-Max` answered by
    /// HubSpot wins, and a `-Remaining` of 0 holds requests briefly.
    #[arg(long = "rate-limit", env = "HUBSYNC_RATE_LIMIT", default_value_t = 190)]
    pub requests_per_10s: usize,
    /// The account's search requests per second (HubSpot: 5; 0 = no limit). Consumer processes
    /// share one schedule of them through the ledger.
    #[arg(long = "search-rate", env = "HUBSYNC_SEARCH_RATE", default_value_t = 5)]
    pub searches_per_s: usize,
    /// Retries of one HubSpot request (429, 5xx, transport) before the job fails and is retried
    /// through its queue.
    #[arg(long, env = "HUBSYNC_HUBSPOT_RETRIES", default_value_t = 6)]
    pub hubspot_retries: usize,
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
            RateBudget::new(self.requests_per_10s, self.searches_per_s),
        )
        .map_err(|e| ServiceError(e.to_string()))
    }
}

impl ServiceArgs {
    /// The settings every role shares (leases, visibility, retries), with the seed's defaults
    /// for the rest; a role's own config applies its part on top.
    pub fn settings(&self) -> Settings {
        Settings {
            max_receive_count: self.max_receive_count,
            visibility_timeout: Duration::from_secs(self.visibility_secs),
            max_retry_delay: Duration::from_millis(self.max_retry_delay_ms),
            ..Settings::default()
        }
    }

    pub fn worker_options(&self) -> WorkerOptions {
        WorkerOptions {
            wait: Duration::from_secs(10),
            visibility: Duration::from_secs(self.visibility_secs),
            first_retry_delay: Duration::from_millis(500).min(Duration::from_millis(self.max_retry_delay_ms)),
            max_retry_delay: Duration::from_millis(self.max_retry_delay_ms),
            // Deletes wait up to this for others to share a DeleteMessageBatch: a tenth or
            // less of the requests when work finishes at a few messages a second or more, and
            // a FIFO group's next merge delivered this much later.
            ack_linger: Duration::from_millis(50),
        }
    }

    pub fn names(&self) -> AwsNames {
        AwsNames {
            prefix: self.prefix.clone(),
            ..AwsNames::default()
        }
    }

    /// The pipeline on AWS, with `settings` (from [`ServiceArgs::settings`] and the role's
    /// config).
    pub async fn pipeline(&self, settings: Settings) -> Result<Pipeline, ServiceError> {
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
        aws::pipeline(
            &self.names(),
            &bucket,
            &prefix,
            catalog,
            clock::system(),
            settings,
        )
        .await
        .map_err(|e| ServiceError(e.to_string()))
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
