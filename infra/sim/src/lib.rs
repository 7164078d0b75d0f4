//! A HubSpot CRM v3 simulator: a seeded synthetic portal served over HTTP with HubSpot's
//! paths, shapes, limits and failures, so hubsync is tested against the behaviour that
//! loses records in other tools (`shared/HUBSPOT.md`) without a real account.
//!
//! # Layout
//!
//! - `config`: [`SimConfig`] (fixed at start) and [`RuntimeConfig`] (limits, latency,
//!   faults, search lag; changed at runtime by `POST /_sim/config`), validated once.
//! - `catalog`: the eight object types and the vocabulary of their properties;
//!   `properties` holds the tables (name, HubSpot type, how each value is generated).
//! - `rng`: splitmix64, the only source of randomness, so one seed is one portal.
//! - `portal`: compact records (id, created, modified, archived, version), their seeded
//!   generation and rendering; invariants P1-P3.
//! - `values`: property values derived from (seed, type, id, version), never stored.
//! - `mutate`: time moving on request (updates, creates, archives); invariants U1-U4.
//! - `search`: filter, sort and page evaluation of a search request; invariants SR1-SR2.
//!   (P, U and SR name the simulator's invariants; the pipeline's are W, M, L, S, G, Q, K,
//!   R, C and E, so the two never share a name.)
//! - `limits`, `faults`, `errors`: HubSpot's rate limits, failures and error bodies.
//! - `gate`: the middleware applying auth, limits, latency and faults to CRM requests.
//! - `crm`, `admin`: the handlers of `/crm/v3/...` and of `/_sim/...`.
//! - `stats`: counters of what was served.
//! - `server`: the shared state, the router, [`start`] and [`SimServer`].
//!
//! # Endpoints
//!
//! - `GET /crm/v3/objects/{type}` (`limit` 1..=100, larger is a 400; `after`; `properties`;
//!   `archived`), `POST /crm/v3/objects/{type}/search` (`limit` 1..=200, at most one sort as
//!   HubSpot allows, a 400 when `after + limit > 10000`), `GET /crm/v3/properties/{type}`;
//!   a type is a name (`deals`) or type id (`0-3`); an unknown one is a 404.
//! - `POST /_sim/mutate`, `GET|POST /_sim/config`, `GET /_sim/truth/{type}` (JSON lines),
//!   `GET /_sim/stats`, `POST /_sim/stats/reset`, `GET /_sim/health`.

mod admin;
mod catalog;
mod config;
mod crm;
mod errors;
mod faults;
mod gate;
mod limits;
mod mutate;
mod portal;
mod properties;
mod rng;
mod search;
mod server;
mod stats;
mod values;

use std::net::{IpAddr, Ipv4Addr};

use anyhow::{anyhow, Context};

pub use catalog::ObjectType;
pub use config::{
    ConfigPatch, FaultKind, FaultKinds, RuntimeConfig, Secret, SimConfig, SimError, DEFAULT_RATE_LIMIT,
    DEFAULT_RECORDS_PER_TYPE, DEFAULT_SEARCH_RATE, DEFAULT_SEED,
};
pub use mutate::{MutateRequest, MutateResponse};
pub use portal::{PORTAL_END_MS, PORTAL_START_MS};
pub use server::{start, SimHandle, SimServer, CRM_BASE_PATH, SIM_BASE_PATH};
pub use stats::{EndpointCounts, FaultCounts, RateLimitedCounts, SimStats};

/// The port `hubsync sim` listens on unless told otherwise.
pub const DEFAULT_CLI_PORT: u16 = 8765;

/// `hubsync sim`: serve a simulated HubSpot portal until Ctrl-C or SIGTERM.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "HUBSYNC_SIM_PORT", default_value_t = DEFAULT_CLI_PORT)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, env = "HUBSYNC_SIM_HOST", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub host: IpAddr,
    /// Seeded records per object type.
    #[arg(long, env = "HUBSYNC_SIM_RECORDS", default_value_t = DEFAULT_RECORDS_PER_TYPE)]
    pub records: u64,
    /// Seed of the portal, its faults and its mutations: the same seed gives the same portal.
    #[arg(long, env = "HUBSYNC_SIM_SEED", default_value_t = DEFAULT_SEED)]
    pub seed: u64,
    /// Require `Authorization: Bearer <TOKEN>` on CRM requests (401 otherwise).
    #[arg(long, env = "HUBSYNC_SIM_TOKEN", hide_env_values = true, value_parser = parse_secret)]
    pub token: Option<Secret>,
    /// Non-search CRM requests allowed per rolling 10 seconds; 0 turns every limit off.
    #[arg(long, env = "HUBSYNC_SIM_RATE_LIMIT", default_value_t = DEFAULT_RATE_LIMIT)]
    pub rate_limit: u32,
    /// Search requests allowed per rolling second; 0 turns the search limit off.
    #[arg(long, env = "HUBSYNC_SIM_SEARCH_RATE", default_value_t = DEFAULT_SEARCH_RATE)]
    pub search_rate: u32,
    /// Latency added to every CRM request, in milliseconds (uniform ±25% jitter).
    #[arg(long, env = "HUBSYNC_SIM_LATENCY_MS", default_value_t = 0)]
    pub latency_ms: u64,
    /// Chance in [0, 1] that a CRM request fails (5xx, truncated or malformed body, dropped
    /// connection), drawn in request order from the seed.
    #[arg(long, env = "HUBSYNC_SIM_FAULT_RATE", default_value_t = 0.0)]
    pub fault_rate: f64,
    /// Fault kinds to draw from (comma list; default all).
    #[arg(long, env = "HUBSYNC_SIM_FAULT_KINDS", value_enum, value_delimiter = ',')]
    pub fault_kinds: Vec<FaultKind>,
    /// Chance in [0, 1] that a request not already faulted gets 200 with broken JSON.
    #[arg(long, env = "HUBSYNC_SIM_MALFORMED_RATE", default_value_t = 0.0)]
    pub malformed_rate: f64,
    /// How long search lags writes, in milliseconds.
    #[arg(long, env = "HUBSYNC_SIM_SEARCH_LAG_MS", default_value_t = 0)]
    pub search_lag_ms: u64,
    /// Object types to seed (comma list of names or type ids; default all eight).
    #[arg(long, env = "HUBSYNC_SIM_TYPES", value_delimiter = ',', value_parser = parse_type)]
    pub types: Vec<ObjectType>,
}

fn parse_secret(raw: &str) -> Result<Secret, String> {
    Ok(Secret::new(raw))
}

fn parse_type(raw: &str) -> Result<ObjectType, String> {
    ObjectType::parse(raw.trim()).ok_or_else(|| {
        let names: Vec<&str> = ObjectType::ALL.iter().map(|t| t.name()).collect();
        format!("unknown object type '{raw}' (known: {})", names.join(", "))
    })
}

impl SimArgs {
    /// The library configuration; errors name the flag at fault.
    pub fn to_config(&self) -> anyhow::Result<SimConfig> {
        let config = SimConfig {
            host: self.host,
            port: self.port,
            seed: self.seed,
            records_per_type: self.records,
            object_types: if self.types.is_empty() {
                ObjectType::ALL.to_vec()
            } else {
                self.types.clone()
            },
            token: self.token.clone(),
            runtime: RuntimeConfig {
                rate_limit: self.rate_limit,
                search_rate: self.search_rate,
                latency_ms: self.latency_ms,
                fault_rate: self.fault_rate,
                fault_kinds: if self.fault_kinds.is_empty() {
                    FaultKinds::ALL
                } else {
                    FaultKinds::from_kinds(&self.fault_kinds)
                },
                malformed_rate: self.malformed_rate,
                search_lag_ms: self.search_lag_ms,
            },
        };
        config.validate().map_err(|e| match e {
            SimError::InvalidConfig { field, reason } => {
                anyhow!("invalid --{}: {reason}", field.replace('_', "-"))
            }
            other => anyhow!(other),
        })?;
        Ok(config)
    }
}

/// Runs `hubsync sim`: prints the base URL on stdout, serves until Ctrl-C or SIGTERM.
pub async fn run_cli(args: SimArgs) -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let config = args.to_config()?;
    let server = start(config).await.context("starting the simulator")?;
    println!("{}", server.base_url());
    shutdown_signal().await?;
    server.shutdown().await.context("stopping the simulator")
}

async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("listening for Ctrl-C"),
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.context("listening for Ctrl-C")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }

    #[test]
    fn flags_parse_and_errors_name_the_flag() {
        let cli = Cli::try_parse_from([
            "x",
            "--types",
            "deals,0-1",
            "--fault-kinds",
            "server_error,dropped",
        ]);
        let args = cli.map(|c| c.sim).unwrap();
        let config = args.to_config().unwrap();
        assert_eq!(config.object_types, vec![ObjectType::Deals, ObjectType::Contacts]);
        assert_eq!(
            config.runtime.fault_kinds.kinds(),
            vec![FaultKind::ServerError, FaultKind::Dropped]
        );
        let bad = Cli::try_parse_from(["x", "--fault-rate", "2"])
            .map(|c| c.sim)
            .unwrap();
        let err = bad.to_config().unwrap_err().to_string();
        assert!(err.contains("--fault-rate"), "{err}");
        assert!(Cli::try_parse_from(["x", "--types", "widgets"]).is_err());
    }
}
