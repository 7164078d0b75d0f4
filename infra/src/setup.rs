//! Turning the operator's flags and environment into a [`Pipeline`].

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use common::catalog::Catalog;
use common::clock;
use common::lake::LakeLocation;
use common::pipeline::{Pipeline, Settings};
use consumer::config::ConsumerConfig;
use embedded::{Db, LakeLock};
use merger::config::MergerConfig;
use producer::config::ProducerConfig;

pub use service::TOKEN_ENV;

/// Options shared by every command that touches a lake.
#[derive(Debug, Clone, clap::Args)]
pub struct LakeArgs {
    /// The lake: a local directory (embedded mode) or s3://bucket/prefix (AWS mode).
    #[arg(long, env = "HUBSYNC_LAKE")]
    pub lake: String,
    /// Table catalog (TOML); default: the built-in one (every standard object type, every property).
    #[arg(long, env = "HUBSYNC_CATALOG")]
    pub catalog: Option<PathBuf>,
    /// AWS mode: prefix of the queues and the run table (`<prefix>-pages`, `<prefix>-runs`).
    #[arg(long, env = "HUBSYNC_PREFIX", default_value = "hubsync")]
    pub prefix: String,
}

impl LakeArgs {
    pub fn names(&self) -> aws::AwsNames {
        aws::AwsNames {
            prefix: self.prefix.clone(),
            ..Default::default()
        }
    }
}

pub use service::HubSpotArgs;

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
        LakeLocation::S3 { bucket, prefix } => aws::s3_lake(&bucket, &prefix)?,
    })
}

/// A pipeline for either mode: a local directory is embedded mode, `s3://` AWS mode. The
/// commands that call HubSpot (`run`, `audit`) make their client beside it.
pub async fn open_pipeline(lake: &LakeArgs, settings: Settings) -> anyhow::Result<Pipeline> {
    match LakeLocation::parse(&lake.lake)? {
        LakeLocation::Local(_) => embedded_pipeline(lake, settings),
        LakeLocation::S3 { bucket, prefix } => Ok(aws::pipeline(
            &lake.names(),
            &bucket,
            &prefix,
            load_catalog(lake.catalog.as_deref())?,
            clock::system(),
            settings,
        )
        .await?),
    }
}

pub fn load_catalog(path: Option<&Path>) -> anyhow::Result<Catalog> {
    Catalog::load(path).context("loading the table catalog")
}

/// Every role's settings, for `hubsync run`, which runs the producer, consumers and merger in
/// one process: each role's own flags, flattened.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RoleArgs {
    #[command(flatten)]
    pub producer: ProducerConfig,
    #[command(flatten)]
    pub consumer: ConsumerConfig,
    #[command(flatten)]
    pub merger: MergerConfig,
}

impl RoleArgs {
    /// The seed's settings with each role's part applied, validated.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let settings = self.producer.apply(Settings::default())?;
        Ok(self.merger.apply(self.consumer.apply(settings)))
    }
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
pub fn embedded_pipeline(lake: &LakeArgs, settings: Settings) -> anyhow::Result<Pipeline> {
    let dir = local_lake_dir(&lake.lake)?;
    Ok(embedded::pipeline(
        &dir,
        load_catalog(lake.catalog.as_deref())?,
        clock::system(),
        settings,
    )?)
}
