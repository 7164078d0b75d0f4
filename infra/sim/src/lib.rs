//! A HubSpot CRM v3 simulator: a seeded synthetic portal served over HTTP with HubSpot's
//! paths, shapes, limits and failures, so hubsync is tested against the behaviour that
//! loses records in other tools (`shared/HUBSPOT.md`) without a real account.
//!
//! # Layout
//!
//! - `config`: [`SimConfig`] (fixed at start) and [`RuntimeConfig`] (limits, latency,
//!   faults, search lag; changed at runtime by `POST /_sim/config`), validated once.
//! - `catalog`: the object types (twelve standard ones, and the built-in custom object schemas
//!   a portal may enable) and the vocabulary of their properties; `properties` (CRM and
//!   activities), `commerce` (tickets, products, line items, quotes) and `custom_objects`
//!   (`cars`, `shipments`, and their `GET /crm/v3/schemas` entries) hold the built-in tables
//!   (name, HubSpot type and field type, how each value is generated).
//! - `schema`: a portal's own property table per type: built-ins plus seeded custom
//!   properties, changed at run time by add, retype and archive; invariants PS1-PS2.
//! - `rng`: splitmix64, the only source of randomness, so one seed is one portal.
//! - `portal`: compact records (id, created, modified, archived, version), their seeded
//!   generation and rendering; invariants P1-P3.
//! - `values`: property values derived from (seed, type, id, version), never stored, drawn
//!   from the pools in `pools`; typed
//!   custom values may be uncastable (`uncastable_per_mille`).
//! - `mutate`: time moving on request (updates, creates, archives, property changes);
//!   invariants U1-U7.
//! - `batch`: batch read by id; invariants B1-B3.
//! - `relations`: links between records (seeded per pair of types, with HubSpot's type ids
//!   and labels), owners, pipelines and merges; invariants A1-A5.
//! - `search`: filter, sort and page evaluation of a search request; invariants SR1-SR2.
//!   (P, PS, U, B, SR and A name the simulator's invariants; the pipeline's are W, M, L, S, G,
//!   Q, K, R, C and E, so the two never share a name.)
//! - `limits`, `faults`, `errors`: HubSpot's rate limits, failures and error bodies.
//! - `gate`: the middleware applying the URL limit ([`URL_LIMIT_CHARS`]), auth, limits,
//!   latency and faults to CRM requests.
//! - `crm`, `admin`: the handlers of `/crm/v3/...` and of `/_sim/...`.
//! - `stats`: counters of what was served.
//! - `server`: the shared state, the router, [`start`] and [`SimServer`]; `http_tests` drives
//!   the newer routes over HTTP.
//!
//! # Endpoints
//!
//! - `GET /crm/v3/objects/{type}` (`limit` 1..=100, larger is a 400; `after`; `properties`;
//!   `archived`), `POST /crm/v3/objects/{type}/search` (`limit` 1..=200, at most one sort as
//!   HubSpot allows, a 400 when `after + limit > 10000`), `POST
//!   /crm/v3/objects/{type}/batch/read` (`archived` in the query; at most 100 inputs, else
//!   400; 200 `COMPLETE`, or 207 with `numErrors` and `OBJECT_NOT_FOUND` errors naming the ids
//!   not found; charged to the general window, not lagged), `GET /crm/v3/properties/{type}`
//!   (`?archived=true` lists only archived properties), `GET /crm/v3/schemas` and `GET
//!   /crm/v3/schemas/{type}` (the portal's custom object schemas), `POST
//!   /crm/v4/associations/{from}/{to}/batch/read` (1,000 ids, 500 links per id then
//!   `paging.next.after`, 207 naming the ids with no links), `GET /crm/v3/owners` (`limit` up
//!   to 500, `after`, `archived=true` for the archived ones only), `GET
//!   /crm/v3/pipelines/{deals,tickets}`.
//! - A standard type is a name (`deals`, `tickets`, `line_items`...) or type id (`0-3`); a
//!   custom object its `objectTypeId` (`2-3508482`) or `fullyQualifiedName`
//!   (`p<portal id>_cars`), not its bare name; an unknown or not enabled one is a 404.
//! - Any CRM request whose path and query exceed [`URL_LIMIT_CHARS`] characters is a 414
//!   (`URI_TOO_LONG`), counted in `SimStats::uri_too_long`.
//! - `POST /_sim/mutate` (record changes; property changes `add_property`, `retype_property`,
//!   `archive_property`; `merges`, `associate`, `dissociate`, `random_links` (with or without
//!   `touch` on the record's modified time), `relabel_stage`; see [`MutateRequest`]),
//!   `GET /_sim/associations/{from}/{to}` (every link between live records), `GET|POST /_sim/config`, `GET
//!   /_sim/truth/{type}` (JSON lines; every unarchived property; a custom object also by bare
//!   name), `GET /_sim/stats`, `POST /_sim/stats/reset`, `GET /_sim/health`.

mod admin;
mod batch;
mod catalog;
mod commerce;
mod config;
mod crm;
mod custom_objects;
mod errors;
mod faults;
mod gate;
mod limits;
mod mutate;
mod pools;
mod portal;
mod properties;
mod relations;
mod rng;
mod schema;
mod search;
mod server;
mod stats;
mod values;

#[cfg(test)]
mod http_tests;

use std::net::{IpAddr, Ipv4Addr};

use anyhow::{anyhow, Context};

pub use catalog::ObjectType;
pub use config::{
    ConfigPatch, FaultKind, FaultKinds, RuntimeConfig, Secret, SimConfig, SimError, TypeCount,
    DEFAULT_PORTAL_ID, DEFAULT_RATE_LIMIT, DEFAULT_RECORDS_PER_TYPE, DEFAULT_SEARCH_RATE, DEFAULT_SEED,
};
pub use gate::URL_LIMIT_CHARS;
pub use mutate::{
    LinkChange, Merge, MutateRequest, MutateResponse, NewProperty, PropertyName, RandomLinks, StageLabel,
};
pub use portal::{PORTAL_END_MS, PORTAL_START_MS};
pub use relations::{pair_of as linked_pair, PAIRS as LINKED_PAIRS};
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
    /// Object types to seed (comma list of names or type ids; default every standard type).
    #[arg(long, env = "HUBSYNC_SIM_TYPES", value_delimiter = ',', value_parser = parse_type)]
    pub types: Vec<ObjectType>,
    /// HubSpot account id of the portal (custom objects are named `p<ID>_<name>`).
    #[arg(long, env = "HUBSYNC_SIM_PORTAL_ID", default_value_t = DEFAULT_PORTAL_ID)]
    pub portal_id: u64,
    /// Seeded custom properties per type (comma list of TYPE=COUNT, e.g. `deals=600,contacts=50`).
    #[arg(long, env = "HUBSYNC_SIM_CUSTOM_PROPERTIES", value_delimiter = ',', value_parser = TypeCount::parse)]
    pub custom_properties: Vec<TypeCount>,
    /// Custom object types to serve with their record counts (comma list of NAME=COUNT; known:
    /// `cars`, `shipments`).
    #[arg(long, env = "HUBSYNC_SIM_CUSTOM_OBJECTS", value_delimiter = ',', value_parser = TypeCount::parse)]
    pub custom_objects: Vec<TypeCount>,
    /// Chance in 1000 that a typed custom value does not parse as its type (`"12;34"`, `"n/a"`).
    #[arg(long, env = "HUBSYNC_SIM_UNCASTABLE_PER_MILLE", default_value_t = 0)]
    pub uncastable_per_mille: u16,
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
            portal_id: self.portal_id,
            custom_properties: self.custom_properties.clone(),
            custom_objects: self.custom_objects.clone(),
            uncastable_per_mille: self.uncastable_per_mille,
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
        assert!(config.custom_objects.is_empty() && config.uncastable_per_mille == 0);
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
        let cli = Cli::try_parse_from([
            "x",
            "--custom-properties",
            "deals=600,0-1=50",
            "--custom-objects",
            "cars=500",
            "--uncastable-per-mille",
            "20",
        ]);
        let custom = cli.map(|c| c.sim).unwrap().to_config().unwrap();
        let counts: Vec<(ObjectType, u64)> = custom
            .custom_properties
            .iter()
            .map(|c| (c.object_type, c.count))
            .collect();
        assert_eq!(counts, [(ObjectType::Deals, 600), (ObjectType::Contacts, 50)]);
        assert_eq!(custom.custom_objects[0].object_type, ObjectType::Cars);
        assert_eq!(custom.uncastable_per_mille, 20);
        let not_custom = Cli::try_parse_from(["x", "--custom-objects", "deals=5"]).map(|c| c.sim);
        let err = not_custom.unwrap().to_config().unwrap_err().to_string();
        assert!(err.contains("--custom-objects"), "{err}");
        assert!(Cli::try_parse_from(["x", "--custom-objects", "cars"]).is_err());
    }
}
