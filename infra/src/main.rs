//! The `hubsync` operator CLI.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use common::messages::RequestedMode;
use hubsync_infra::logging::{self, LogFormat};
use hubsync_infra::progress::ProgressMode;
use hubsync_infra::setup::{HubSpotArgs, LakeArgs, RoleArgs};
use hubsync_infra::{commands, demo, runner};

/// mimalloc, not glibc's malloc: pages and merges allocate and free Arrow buffers of every
/// size, and glibc spent a fifth of an incremental run's CPU in malloc, free and their
/// consolidation. A 1M-record backfill ran 11 % faster (16.4 s against 18.4 s, medians of three
/// paired runs) for a peak RSS of 310 MiB against 141 MiB. Built without transparent huge
/// pages (`no_thp`): with them every fresh 2 MiB page was zeroed on first touch, and the
/// incremental spent a third of its samples clearing pages.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "hubsync",
    version,
    about = "Keeps HubSpot CRM as a deduplicated, dt-partitioned Parquet lake, fetching only what changed",
    long_about = "Keeps HubSpot CRM as a deduplicated, dt-partitioned Parquet lake, fetching only what changed.\n\n\
        A local --lake directory runs embedded mode (one process, state in <lake>/_hubsync). \
        The HubSpot token is read from HUBSPOT_TOKEN only. Every flag has an environment twin (shown in --help)."
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, env = "HUBSYNC_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    /// Decide from the flag and the sync state (the seed's rules).
    Auto,
    Full,
    Incremental,
}

impl From<ModeArg> for RequestedMode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Auto => RequestedMode::Auto,
            ModeArg::Full => RequestedMode::Full,
            ModeArg::Incremental => RequestedMode::Incremental,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Serve a simulated HubSpot CRM v3 API (seeded portal, limits, faults) until stopped.
    Sim(sim::SimArgs),
    /// Full-sync the tables from an in-process simulator, change records, sync
    /// incrementally, and compare the lake with the simulator's truth.
    Demo {
        /// Lake directory (replaced if it holds an earlier demo lake).
        #[arg(long, env = "HUBSYNC_DEMO_LAKE")]
        lake: Option<PathBuf>,
        /// Simulated records per HubSpot object type.
        #[arg(long, env = "HUBSYNC_DEMO_RECORDS", default_value_t = 2000)]
        records: u64,
    },
    /// One sync of the given tables (all by default); exit 0 only when every run committed.
    /// Runs left active by an interrupted process are resumed, not restarted.
    Run {
        #[command(flatten)]
        lake: LakeArgs,
        #[command(flatten)]
        hubspot: HubSpotArgs,
        #[command(flatten)]
        roles: RoleArgs,
        /// Comma-separated tables (default: every catalog table and, with a catalog that
        /// discovers them, each custom object of the portal, read first).
        #[arg(long, env = "HUBSYNC_TABLES", value_delimiter = ',')]
        tables: Vec<String>,
        /// Full, incremental, or decided by the flag and state.
        #[arg(long, env = "HUBSYNC_MODE", value_enum, default_value = "auto")]
        mode: ModeArg,
        /// Concurrent page fetchers.
        #[arg(long, env = "HUBSYNC_CONSUMERS", default_value_t = 4, value_parser = at_least_one)]
        consumers: usize,
        /// Concurrent partition merges (of different partitions). A small partition's merge
        /// mostly waits on the store and the database, so more than the cores pay off.
        #[arg(long, env = "HUBSYNC_MERGERS", default_value_t = runner::DEFAULT_MERGERS, value_parser = at_least_one)]
        mergers: usize,
        /// Progress on stderr: one live line per table on a terminal (auto), plain lines, or off.
        #[arg(long, env = "HUBSYNC_PROGRESS", value_enum, default_value = "auto")]
        progress: ProgressMode,
    },
    /// Read or set the incremental-sync flag (/hubspot-analytics/incremental-sync-enabled).
    Flag {
        #[command(subcommand)]
        action: FlagAction,
    },
    /// Show or reset the sync state (hubspot-sync-state); a reset forces a full sync.
    State {
        #[command(subcommand)]
        action: StateAction,
    },
    /// AWS mode: request one sync of a table from the producer service; with --wait, follow the
    /// run and exit 0 when it commits (non-zero with the reason when it fails or is refused).
    Sync {
        #[command(flatten)]
        lake: LakeArgs,
        #[arg(long, env = "HUBSYNC_TABLE")]
        table: String,
        #[arg(long, env = "HUBSYNC_MODE", value_enum, default_value = "auto")]
        mode: ModeArg,
        /// Wait for the run to end.
        #[arg(long)]
        wait: bool,
        /// With --wait, give up after this many seconds (the run goes on).
        #[arg(long, env = "HUBSYNC_WAIT_SECS", default_value_t = 3600)]
        wait_secs: u64,
        /// With --wait, progress on stderr: a live line on a terminal (auto), plain lines, or off.
        #[arg(long, env = "HUBSYNC_PROGRESS", value_enum, default_value = "auto")]
        progress: ProgressMode,
    },
    /// Active runs, queue and dead-letter depths, and the watermark of every table.
    Status {
        #[command(flatten)]
        lake: LakeArgs,
    },
    /// Move dead-lettered messages back to their queue (after fixing what made them fail).
    Replay {
        #[command(flatten)]
        lake: LakeArgs,
        /// requests, pages or merge.
        #[arg(long)]
        queue: String,
        /// At most this many messages (default: all).
        #[arg(long)]
        max: Option<usize>,
        /// Only list what would be replayed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Compare the lake with HubSpot: rows per table and partition, duplicate keys, missing,
    /// stale and unexpected records, every stored value. Exit 0 when equal, 1 on any difference.
    /// Run it while nothing syncs (records changed since the last sync count as stale).
    Audit {
        #[command(flatten)]
        lake: LakeArgs,
        #[command(flatten)]
        hubspot: HubSpotArgs,
        /// Comma-separated tables (default: every catalog table and every custom object
        /// table recorded in the lake, but those archived in HubSpot).
        #[arg(long, env = "HUBSYNC_TABLES", value_delimiter = ',')]
        tables: Vec<String>,
    },
    /// Keep the latest row per key of local Parquet files, into one new file: the merger's own
    /// code path (for compaction, and the merge benchmark). Rows whose `archived` is true are
    /// dropped unless --keep-archived.
    MergeFiles {
        /// Key column: rows with the same key are versions of one record.
        #[arg(long)]
        key: String,
        /// Version column: the greatest wins (ties: `_synced_at`, then `_run_id`, when present).
        #[arg(long)]
        modified: String,
        /// The merged file (its directory must exist; it must not be an input).
        #[arg(long)]
        out: PathBuf,
        /// Keep rows whose `archived` column is true.
        #[arg(long)]
        keep_archived: bool,
        /// MiB the merge may hold before its sorts spill to temporary files.
        #[arg(long, env = "HUBSYNC_MERGE_MEMORY_MB", default_value_t = common::pipeline::DEFAULT_MERGE_MEMORY_MB)]
        memory_mb: usize,
        /// Input Parquet files.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
    /// The lake's schema per table (its columns follow HubSpot's properties), and the portal's
    /// custom objects.
    Schema {
        #[command(subcommand)]
        action: SchemaAction,
    },
    /// DataFusion SQL over the lake's tables (local or s3://): each table by its name, with
    /// its `dt` partition column (a filter on dt prunes partitions). For example:
    /// hubsync query --lake L "SELECT dealstage, count(*) FROM deals GROUP BY 1"
    Query {
        #[command(flatten)]
        lake: LakeArgs,
        /// The SQL (DataFusion's dialect; table names are the lake's folders).
        sql: String,
        /// How to print the answer.
        #[arg(long, value_enum, default_value = "table")]
        format: hubsync_infra::query::OutputFormat,
    },
    /// AWS mode: the lake's tables in Glue's Data Catalog, which Athena reads.
    Glue {
        #[command(subcommand)]
        action: GlueAction,
    },
    /// AWS mode: create (up) or delete (down) every queue, table, parameter and bucket (up also
    /// creates the Glue database and tables).
    Infra {
        #[command(subcommand)]
        action: InfraAction,
    },
}

#[derive(Subcommand)]
enum InfraAction {
    /// Create what is missing (idempotent).
    Up {
        #[command(flatten)]
        lake: LakeArgs,
        /// Receives before a message moves to its dead-letter queue.
        #[arg(long, env = "HUBSYNC_MAX_RECEIVE_COUNT", default_value_t = hubsync_infra::provision::MAX_RECEIVE_COUNT)]
        max_receive_count: u32,
    },
    /// Delete the queues, tables and parameter (and the bucket with --delete-bucket).
    Down {
        #[command(flatten)]
        lake: LakeArgs,
        #[arg(long)]
        delete_bucket: bool,
    },
}

#[derive(Subcommand)]
enum GlueAction {
    /// The Athena DDL of a table (its columns follow the lake's schema, dt is projected), and
    /// whether Glue holds it so (the merger publishes it at every commit).
    Show {
        #[command(flatten)]
        lake: LakeArgs,
        #[arg(long, env = "HUBSYNC_TABLE")]
        table: String,
    },
}

#[derive(Subcommand)]
enum SchemaAction {
    /// A table's columns with their types, HubSpot's types, whether they are fetched or wait
    /// for a column backfill, and every change since the first run.
    Show {
        #[command(flatten)]
        lake: LakeArgs,
        #[arg(long, env = "HUBSYNC_TABLE")]
        table: String,
    },
    /// The portal's custom object types (GET /crm/v3/schemas). With a catalog that discovers
    /// them (the default's `custom_objects = "discover"`), records each as a table of the lake
    /// and prints them; otherwise prints each as a catalog entry to add to your catalog.
    Objects {
        #[command(flatten)]
        lake: LakeArgs,
        #[command(flatten)]
        hubspot: HubSpotArgs,
    },
}

#[derive(Subcommand)]
enum FlagAction {
    /// Print the flag's value and what it means.
    Get {
        #[command(flatten)]
        lake: LakeArgs,
    },
    /// Set the flag: true|1|yes|enabled or false|0|no|disabled.
    Set {
        value: String,
        #[command(flatten)]
        lake: LakeArgs,
    },
}

#[derive(Subcommand)]
enum StateAction {
    /// Print each table's watermark.
    Show {
        #[command(flatten)]
        lake: LakeArgs,
        #[arg(long)]
        table: Option<String>,
    },
    /// Delete one table's state (--table) or every table's: their next sync is full.
    Reset {
        #[command(flatten)]
        lake: LakeArgs,
        #[arg(long)]
        table: Option<String>,
    },
}

async fn dispatch(command: Command) -> Result<bool> {
    match command {
        Command::Sim(args) => sim::run_cli(args).await.map(|_| true),
        Command::Demo { lake, records } => demo::demo(lake, records).await.map(|_| true),
        Command::Run {
            lake,
            hubspot,
            roles,
            tables,
            mode,
            consumers,
            mergers,
            progress,
        } => {
            let options = runner::RunOptions {
                tables,
                mode: mode.into(),
                consumers,
                mergers,
                progress,
                ..Default::default()
            };
            commands::run(&lake, &hubspot, &roles, &options).await
        }
        Command::Flag { action } => match action {
            FlagAction::Get { lake } => commands::flag(&lake, None).await.map(|_| true),
            FlagAction::Set { value, lake } => commands::flag(&lake, Some(&value)).await.map(|_| true),
        },
        Command::Sync {
            lake,
            table,
            mode,
            wait,
            wait_secs,
            progress,
        } => {
            commands::sync(
                &lake,
                &table,
                mode.into(),
                wait.then(|| std::time::Duration::from_secs(wait_secs)),
                progress,
            )
            .await
        }
        Command::Audit {
            lake,
            hubspot,
            tables,
        } => commands::audit(&lake, &hubspot, &tables).await,
        Command::MergeFiles {
            key,
            modified,
            out,
            keep_archived,
            memory_mb,
            inputs,
        } => commands::merge_files(&key, &modified, &out, &inputs, keep_archived, memory_mb)
            .await
            .map(|_| true),
        Command::Query { lake, sql, format } => hubsync_infra::query::query(&lake, &sql, format)
            .await
            .map(|_| true),
        Command::Status { lake } => commands::status(&lake).await.map(|_| true),
        Command::Schema { action } => match action {
            SchemaAction::Show { lake, table } => commands::schema_show(&lake, &table).await.map(|_| true),
            SchemaAction::Objects { lake, hubspot } => {
                commands::schema_objects(&lake, &hubspot).await.map(|_| true)
            }
        },
        Command::Replay {
            lake,
            queue,
            max,
            dry_run,
        } => commands::replay(&lake, &queue, max, dry_run).await.map(|_| true),
        Command::Glue {
            action: GlueAction::Show { lake, table },
        } => hubsync_infra::glue::show(&lake, &table).await.map(|_| true),
        Command::Infra { action } => match action {
            InfraAction::Up {
                lake,
                max_receive_count,
            } => {
                let (bucket, prefix) = s3_location(&lake)?;
                hubsync_infra::provision::up(&lake.names(), &bucket, &prefix, max_receive_count).await?;
                hubsync_infra::glue::up(&lake).await.map(|_| true)
            }
            InfraAction::Down { lake, delete_bucket } => {
                let bucket = s3_bucket(&lake)?;
                hubsync_infra::provision::down(&lake.names(), &bucket, delete_bucket)
                    .await
                    .map(|_| true)
            }
        },
        Command::State { action } => match action {
            StateAction::Show { lake, table } => commands::state(&lake, false, table.as_deref())
                .await
                .map(|_| true),
            StateAction::Reset { lake, table } => {
                commands::state(&lake, true, table.as_deref()).await.map(|_| true)
            }
        },
    }
}

/// A count of concurrent workers: zero would sync nothing (and was silently taken as one).
fn at_least_one(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1 (it is how many run at once)".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("`{s}` is not a count: {e}")),
    }
}

fn s3_bucket(lake: &LakeArgs) -> Result<String> {
    s3_location(lake).map(|(bucket, _)| bucket)
}

fn s3_location(lake: &LakeArgs) -> Result<(String, String)> {
    match common::lake::LakeLocation::parse(&lake.lake)? {
        common::lake::LakeLocation::S3 { bucket, prefix } => Ok((bucket, prefix)),
        common::lake::LakeLocation::Local(_) => {
            anyhow::bail!("`hubsync infra` provisions AWS mode; pass --lake s3://bucket/prefix")
        }
    }
}

/// Output piped into a reader that stops early (`hubsync state show | head -1`) ends the
/// process quietly, as a Unix tool does, instead of Rust's panic on the broken pipe. Not for
/// the commands that run a pipeline or a server: those must not die with their reader.
fn exit_quietly_on_broken_pipe() {
    // SAFETY: sets SIGPIPE back to its default disposition (terminate); no handler of ours
    // runs in signal context, and nothing else in the process relies on SIGPIPE being ignored
    // (std and tokio write to sockets with MSG_NOSIGNAL on Linux: a closed peer is an error).
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(
        cli.command,
        Command::Run { .. } | Command::Sim(_) | Command::Demo { .. }
    ) {
        exit_quietly_on_broken_pipe();
    }
    logging::init(cli.log_format);
    match dispatch(cli.command).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Cli;

    #[test]
    fn zero_workers_is_refused_with_a_reason() {
        for flag in ["--consumers", "--mergers"] {
            let err = Cli::try_parse_from(["hubsync", "run", "--lake", "/tmp/x", flag, "0"])
                .err()
                .unwrap_or_else(|| panic!("{flag} 0 parsed"));
            assert!(err.to_string().contains("at least 1"), "{flag}: {err}");
        }
        assert!(Cli::try_parse_from(["hubsync", "run", "--lake", "/tmp/x", "--mergers", "2"]).is_ok());
    }
}
