//! Turning the operator's flags and environment into a [`Pipeline`].

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use common::catalog::Catalog;
use common::clock;
use common::embedded::{Db, LakeLock};
use common::hubspot::{ClientConfig, HubSpotClient, RateBudget};
use common::lake::LakeLocation;
use common::pipeline::{Pipeline, Settings};

pub use common::service::TOKEN_ENV;

/// Options shared by every command that touches a lake.
#[derive(Debug, Clone, clap::Args)]
pub struct LakeArgs {
    /// The lake: a local directory (embedded mode) or s3://bucket/prefix (AWS mode).
    #[arg(long, env = "HUBSYNC_LAKE")]
    pub lake: String,
    /// Table catalog (TOML); default: the five built-in tables.
    #[arg(long, env = "HUBSYNC_CATALOG")]
    pub catalog: Option<PathBuf>,
    /// AWS mode: prefix of the queues and the run table (`<prefix>-pages`, `<prefix>-runs`).
    #[arg(long, env = "HUBSYNC_PREFIX", default_value = "hubsync")]
    pub prefix: String,
}

impl LakeArgs {
    pub fn names(&self) -> common::aws::AwsNames {
        common::aws::AwsNames {
            prefix: self.prefix.clone(),
            ..Default::default()
        }
    }
}

pub use common::service::HubSpotArgs;

/// The local lake directory of an embedded-mode command.
pub fn local_lake_dir(lake: &str) -> anyhow::Result<PathBuf> {
    match LakeLocation::parse(lake)? {
        LakeLocation::Local(dir) => Ok(dir),
        LakeLocation::S3 { .. } => bail!(
            "`{lake}` is an S3 lake (AWS mode), where the services do the work: use `hubsync sync` \
             to request a sync; `hubsync run` is embedded mode and needs a local directory"
        ),
    }
}

/// The lake alone (no queue, ledger or state), for commands that only read it.
pub fn open_lake(lake: &LakeArgs) -> anyhow::Result<common::lake::Lake> {
    Ok(match LakeLocation::parse(&lake.lake)? {
        LakeLocation::Local(dir) => {
            anyhow::ensure!(
                dir.is_dir(),
                "the lake directory {} does not exist; pass the --lake a sync wrote to",
                dir.display()
            );
            common::lake::Lake::local(&dir)?
        }
        LakeLocation::S3 { bucket, prefix } => common::aws::s3_lake(&bucket, &prefix)?,
    })
}

/// A pipeline for either mode: a local directory is embedded mode, `s3://` AWS mode.
pub async fn open_pipeline(lake: &LakeArgs, hubspot: Option<&HubSpotArgs>) -> anyhow::Result<Pipeline> {
    match LakeLocation::parse(&lake.lake)? {
        LakeLocation::Local(_) => match hubspot {
            Some(h) => embedded_pipeline(lake, h),
            None => offline_pipeline(lake),
        },
        LakeLocation::S3 { bucket, prefix } => {
            let (client, settings) = match hubspot {
                Some(h) => (hubspot_client(h)?, settings(h)?),
                None => (
                    HubSpotClient::new(ClientConfig::default(), RateBudget::unlimited())?,
                    Settings::default(),
                ),
            };
            Ok(common::aws::pipeline(
                &lake.names(),
                &bucket,
                &prefix,
                load_catalog(lake.catalog.as_deref())?,
                client,
                clock::system(),
                settings,
            )
            .await?)
        }
    }
}

pub fn load_catalog(path: Option<&Path>) -> anyhow::Result<Catalog> {
    Catalog::load(path).context("loading the table catalog")
}

pub fn hubspot_client(args: &HubSpotArgs) -> anyhow::Result<HubSpotClient> {
    Ok(args.client()?)
}

pub fn settings(args: &HubSpotArgs) -> anyhow::Result<Settings> {
    Ok(args.settings()?)
}

/// Takes the lake's lock and releases the messages a killed predecessor held, so its runs
/// resume at once instead of after their visibility timeout.
pub async fn take_over_lake(dir: &Path) -> anyhow::Result<LakeLock> {
    let lock = LakeLock::acquire(dir)?;
    let released = Db::open_in_lake(dir)?
        .release_in_flight(clock::system().now_ms())
        .await?;
    if released > 0 {
        tracing::info!(
            messages = released,
            "released messages held by an interrupted process, without counting their receive (E1)"
        );
    }
    Ok(lock)
}

/// An embedded pipeline over a local lake.
pub fn embedded_pipeline(lake: &LakeArgs, hubspot: &HubSpotArgs) -> anyhow::Result<Pipeline> {
    let dir = local_lake_dir(&lake.lake)?;
    Ok(Pipeline::embedded(
        &dir,
        load_catalog(lake.catalog.as_deref())?,
        hubspot_client(hubspot)?,
        clock::system(),
        settings(hubspot)?,
    )?)
}

/// An embedded pipeline for commands that never call HubSpot (state, flag).
pub fn offline_pipeline(lake: &LakeArgs) -> anyhow::Result<Pipeline> {
    let dir = local_lake_dir(&lake.lake)?;
    let client = HubSpotClient::new(ClientConfig::default(), RateBudget::unlimited())?;
    Ok(Pipeline::embedded(
        &dir,
        load_catalog(lake.catalog.as_deref())?,
        client,
        clock::system(),
        Settings::default(),
    )?)
}
