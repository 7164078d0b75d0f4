//! The operator commands: run (embedded), sync, status, replay (AWS), flag and state (both).

use anyhow::Context;
use common::catalog::TableSpec;
use common::clock::iso;
use common::messages::RequestedMode;
use common::ports::flag::{parse_flag, read_decision, FlagDecision};
use common::schema;

use crate::progress::{Progress, ProgressMode};
use crate::runner::{run_embedded, RunOptions, RunReport};
use common::pipeline::Settings;

use crate::setup::{
    embedded_pipeline, local_lake_dir, open_pipeline, take_over_lake, HubSpotArgs, LakeArgs, RoleArgs,
};

/// `hubsync run`: one sync of each table; true when every run committed.
pub async fn run(
    lake: &LakeArgs,
    hubspot: &HubSpotArgs,
    roles: &RoleArgs,
    options: &RunOptions,
) -> anyhow::Result<bool> {
    let _lock = take_over_lake(&local_lake_dir(&lake.lake)?).await?;
    let p = embedded_pipeline(lake, roles.settings()?)?;
    let client = hubspot.client()?;
    let reports = run_embedded(&p, &client, options).await?;
    print_reports(&reports);
    Ok(reports.iter().all(RunReport::committed))
}

pub fn print_reports(reports: &[RunReport]) {
    println!(
        "{:<14} {:<12} {:<11} {:<49} {:>9} {:>10}",
        "table", "mode", "status", "window", "records", "partitions"
    );
    for r in reports {
        match &r.run {
            Some(run) => {
                let window = match run.window_from_ms {
                    Some(from) => format!("{} .. {}", iso(from), iso(run.window_to_ms)),
                    None => format!("everything as of {}", iso(run.window_to_ms)),
                };
                println!(
                    "{:<14} {:<12} {:<11} {:<49} {:>9} {:>10}{}",
                    r.table,
                    run.mode.as_str(),
                    run.status.as_str(),
                    window,
                    run.records,
                    partitions_text(run),
                    if r.resumed { "  (resumed)" } else { "" }
                );
            }
            None => println!("{:<14} -", r.table),
        }
        if let Some(problem) = &r.problem {
            println!("  ! {problem}");
        }
    }
}

/// The partitions a run touched (counted at commit), or its merges so far.
fn partitions_text(run: &common::ports::Run) -> String {
    match run.partitions {
        Some(n) => n.to_string(),
        None => format!("{} merges", run.merges_counted),
    }
}

/// `hubsync flag get|set`.
pub async fn flag(lake: &LakeArgs, value: Option<&str>) -> anyhow::Result<()> {
    let p = open_pipeline(lake, Settings::default()).await?;
    if let Some(v) = value {
        if let FlagDecision::Unrecognized(_) = parse_flag(v) {
            anyhow::bail!("`{v}` is not a flag value; use true/false, 1/0, yes/no or enabled/disabled");
        }
        p.flag.set(v).await.context("writing the flag")?;
    }
    let raw = p.flag.get().await.context("reading the flag")?;
    let decision = read_decision(p.flag.as_ref()).await;
    println!(
        "{} = {} ({})",
        common::ports::flag::FLAG_PARAMETER,
        raw.as_deref()
            .map(|r| format!("{r:?}"))
            .unwrap_or_else(|| "<not set>".into()),
        if decision.incremental() {
            "incremental sync enabled"
        } else {
            "full sync"
        }
    );
    Ok(())
}

/// `hubsync state show|reset`.
pub async fn state(lake: &LakeArgs, reset: bool, table: Option<&str>) -> anyhow::Result<()> {
    let p = open_pipeline(lake, Settings::default()).await?;
    if let Some(t) = table {
        schema::table_spec(&p.lake, &p.catalog, t).await?;
    }
    if reset {
        match table {
            Some(t) => {
                p.state.delete(t).await?;
                println!("state of {t} deleted: its next sync is full");
            }
            None => {
                let n = p.state.delete_all().await?;
                println!("state reset ({n} tables): every table's next sync is full");
            }
        }
        return Ok(());
    }
    println!(
        "{:<14} {:<26} {:<26} {:<26} {:>9}",
        "object_type", "last_sync_at", "last_created_at", "last_modified_at", "records"
    );
    for s in p.state.list().await? {
        if table.is_some_and(|t| t != s.object_type) {
            continue;
        }
        let opt = |v: Option<i64>| v.map(iso).unwrap_or_else(|| "-".into());
        println!(
            "{:<14} {:<26} {:<26} {:<26} {:>9}",
            s.object_type,
            iso(s.last_sync_at),
            opt(s.last_created_at),
            opt(s.last_modified_at),
            s.records_processed
        );
    }
    Ok(())
}

/// `hubsync sync`: sends one sync request; with `wait`, follows the run until it ends, showing
/// its progress. Returns whether it committed (or, without `wait`, was sent).
pub async fn sync(
    lake: &LakeArgs,
    table: &str,
    mode: RequestedMode,
    wait: Option<std::time::Duration>,
    progress: ProgressMode,
) -> anyhow::Result<bool> {
    let p = open_pipeline(lake, Settings::default()).await?;
    schema::table_spec(&p.lake, &p.catalog, table).await?;
    if let Some(active) = p.ledger.active_run(table).await? {
        if !active.lease_expired(p.now_ms()) {
            anyhow::bail!(
                "refused: run {} of {table} is active ({}); wait for it to commit or for its lease to expire",
                active.run_id,
                active.status.as_str()
            );
        }
    }
    let request = common::messages::SyncRequest {
        request_id: crate::runner::new_request_id(p.now_ms()),
        table: table.to_string(),
        mode,
        requested_at_ms: p.now_ms(),
    };
    let run_id = producer::worker::run_id_for(&request);
    p.requests
        .send(vec![common::ports::Outgoing::standard(common::messages::encode(
            &common::messages::Body::SyncRequest(request),
        ))])
        .await?;
    println!("sync of {table} requested: run {run_id}");
    let Some(timeout) = wait else {
        return Ok(true);
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let mut progress = Progress::new(&[table.to_string()], progress);
    let mut dead_seen = 0;
    loop {
        if let Some(run) = p.ledger.get_run(&run_id).await? {
            progress.update(table, &run);
            if !run.status.is_active() {
                progress.finish(table, Some(&run), None);
                drop(progress);
                if run.status == common::ports::RunStatus::Committed {
                    println!(
                        "run {run_id} committed: {} records ({} rejected) in {} partitions",
                        run.records,
                        run.rejected,
                        partitions_text(&run)
                    );
                    return Ok(true);
                }
                anyhow::bail!(
                    "run {run_id} ended {}: {}",
                    run.status.as_str(),
                    run.note.unwrap_or_default()
                );
            }
        } else if let Some(active) = p.ledger.active_run(table).await? {
            if active.run_id != run_id {
                anyhow::bail!("refused: run {} of {table} is active", active.run_id);
            }
        }
        let dead =
            p.requests.depth().await?.dead + p.pages.depth().await?.dead + p.merges.depth().await?.dead;
        if dead > dead_seen {
            tracing::warn!("{dead} dead-lettered message(s); see `hubsync status` and `hubsync replay`");
            dead_seen = dead;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for run {run_id}; it goes on (see `hubsync status`)"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// `hubsync status`: active runs, queue and dead-letter depths, watermarks.
pub async fn status(lake: &LakeArgs) -> anyhow::Result<()> {
    let p = open_pipeline(lake, Settings::default()).await?;
    println!("lake {}", p.lake.uri());
    println!(
        "\n{:<24} {:>8} {:>9} {:>13}",
        "queue", "visible", "in flight", "dead letters"
    );
    for q in [&p.requests, &p.pages, &p.merges] {
        let d = q.depth().await?;
        println!(
            "{:<24} {:>8} {:>9} {:>13}",
            q.name(),
            d.visible,
            d.in_flight,
            d.dead
        );
    }
    println!(
        "\n{:<14} {:<44} {:<9} {:>8} {:>8} {:>7} {:>7}  watermark",
        "table", "latest run", "status", "records", "rejected", "pages", "merges"
    );
    let states = p.state.list().await.unwrap_or_default();
    let dead = crate::dead::dead_letters(&p).await?;
    let mut advice = Vec::new();
    for t in &schema::recorded_tables(&p.lake, &p.catalog, true).await? {
        let latest = match p.ledger.active_run(&t.name).await? {
            Some(active) => Some(active),
            None => p.ledger.list_runs(Some(&t.name), 1).await?.pop(),
        };
        let wm = states
            .iter()
            .find(|s| s.object_type == t.name)
            .and_then(|s| s.watermark())
            .map(iso)
            .unwrap_or_else(|| "- (next sync is full)".into());
        match latest {
            Some(r) => {
                println!(
                    "{:<14} {:<44} {:<9} {:>8} {:>8} {:>7} {:>7}  {wm}",
                    t.name,
                    r.run_id,
                    r.status.as_str(),
                    r.records,
                    r.rejected,
                    r.pages_outstanding,
                    r.merges_outstanding
                );
                if r.rejected > 0 {
                    advice.push(format!(
                        "{}: {} record(s) of run {} could not be staged; they are kept raw, with the reason, under {}",
                        t.name,
                        r.rejected,
                        r.run_id,
                        p.lake.rejected_dir(&t.name)
                    ));
                }
                if !r.uncast.is_empty() {
                    let mut worst: Vec<(&String, &i64)> = r.uncast.iter().collect();
                    worst.sort_by(|a, b| b.1.cmp(a.1));
                    advice.push(format!(
                        "{}: {} value(s) of run {} did not cast to their column's type and are kept raw in `_uncast` (most: {}); \
                         read them as `_uncast['<property>']`",
                        t.name,
                        r.uncast.values().sum::<i64>(),
                        r.run_id,
                        worst
                            .iter()
                            .take(5)
                            .map(|(p, n)| format!("{p} {n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                if let Some(counts) = dead.by_run.get(&r.run_id).filter(|_| r.status.is_active()) {
                    advice.push(format!(
                        "{}: run {} waits on {} in the dead-letter queues; fix the cause (see the services' logs), then {}",
                        t.name,
                        r.run_id,
                        counts.describe(),
                        counts.replay_commands(&lake.lake).join(" and ")
                    ));
                }
            }
            None => println!(
                "{:<14} {:<44} {:<9} {:>8} {:>8} {:>7} {:>7}  {wm}",
                t.name, "-", "", "", "", "", ""
            ),
        }
    }
    if dead.unreadable > 0 {
        advice.push(format!(
            "{} dead letter(s) are not hubsync messages (see `hubsync replay --dry-run`)",
            dead.unreadable
        ));
    }
    if !advice.is_empty() {
        println!();
        for a in advice {
            println!("! {a}");
        }
    }
    Ok(())
}

/// `hubsync replay`: moves dead-lettered messages back to their queue.
pub async fn replay(lake: &LakeArgs, queue: &str, max: Option<usize>, dry_run: bool) -> anyhow::Result<()> {
    let p = open_pipeline(lake, Settings::default()).await?;
    let q = match queue {
        "requests" => &p.requests,
        "pages" => &p.pages,
        "merge" | "merges" => &p.merges,
        other => anyhow::bail!("unknown queue `{other}`; use requests, pages or merge"),
    };
    let bodies = q.replay_dead_letters(max, dry_run).await?;
    for b in &bodies {
        println!("{}", b.chars().take(200).collect::<String>());
    }
    println!(
        "{} {} dead-lettered message(s) of {}",
        if dry_run { "would replay" } else { "replayed" },
        bodies.len(),
        q.name()
    );
    Ok(())
}

/// `hubsync audit`: true when every table equals the source.
pub async fn audit(lake: &LakeArgs, hubspot: &HubSpotArgs, tables: &[String]) -> anyhow::Result<bool> {
    let catalog = crate::setup::load_catalog(lake.catalog.as_deref())?;
    let store = crate::setup::open_lake(lake)?;
    let specs = schema::select_tables(&store, &catalog, tables).await?;
    let specs: Vec<_> = specs.iter().collect();
    let client = hubspot.client()?;
    let audits = crate::audit::audit(&store, &client, &specs).await?;
    crate::audit::print_audit(&audits);
    Ok(audits.iter().all(|a| a.diff.is_clean()))
}

/// `hubsync merge-files`: the merger's keep-latest-per-key over local Parquet files, through
/// the service's own code path, into one new file.
pub async fn merge_files(
    key: &str,
    modified: &str,
    out: &std::path::Path,
    inputs: &[std::path::PathBuf],
    keep_archived: bool,
    memory_mb: usize,
) -> anyhow::Result<()> {
    use object_store::path::Path as StorePath;
    anyhow::ensure!(!inputs.is_empty(), "name at least one input Parquet file");
    let absolute = |p: &std::path::Path| -> anyhow::Result<StorePath> {
        let p = std::path::absolute(p).with_context(|| format!("resolving {}", p.display()))?;
        StorePath::from_absolute_path(&p).with_context(|| format!("{} is not a usable path", p.display()))
    };
    let mut paths = Vec::new();
    for input in inputs {
        anyhow::ensure!(input.is_file(), "input {} is not a file", input.display());
        paths.push(absolute(&input.canonicalize()?)?);
    }
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    anyhow::ensure!(
        parent.is_dir(),
        "the directory of --out {} does not exist",
        out.display()
    );
    let output = absolute(
        &parent
            .canonicalize()?
            .join(out.file_name().context("--out names no file")?),
    )?;
    anyhow::ensure!(
        !paths.contains(&output),
        "--out {} is also an input; write elsewhere",
        out.display()
    );
    // The first input's column order leads; columns only later inputs have follow.
    let first = std::fs::File::open(&inputs[0])?;
    let column_order = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(first)
        .with_context(|| format!("{} is not a readable Parquet file", inputs[0].display()))?
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let keys = merger::merge::MergeKeys {
        key: key.to_string(),
        modified: modified.to_string(),
        column_order,
        drop_archived: !keep_archived,
        set_columns: Vec::new(),
        memory_limit: Some(memory_mb << 20),
        schema: None,
    };
    let store: std::sync::Arc<dyn object_store::ObjectStore> =
        std::sync::Arc::new(object_store::local::LocalFileSystem::new());
    let started = std::time::Instant::now();
    let stats = merger::merge::merge_files(store, &paths, &output, &keys).await?;
    println!(
        "merged {} files into {}: {} rows in {:.2?}",
        stats.input_files,
        out.display(),
        stats.rows_out,
        started.elapsed()
    );
    Ok(())
}

/// `hubsync schema show`: a table's columns, their types and HubSpot's, and every change.
pub async fn schema_show(lake: &LakeArgs, table: &str) -> anyhow::Result<()> {
    let catalog = crate::setup::load_catalog(lake.catalog.as_deref())?;
    let store = crate::setup::open_lake(lake)?;
    let spec = schema::table_spec(&store, &catalog, table).await?;
    if let Some(custom) = schema::custom_tables(&store)
        .await?
        .into_iter()
        .find(|t| t.table == spec.name)
    {
        println!(
            "custom object {} ({}, {}), primary display property `{}`{}",
            custom.label,
            custom.object_type_id,
            custom.fully_qualified_name,
            custom.primary_display_property.as_deref().unwrap_or("none"),
            if custom.archived {
                "; archived in HubSpot, no longer synced by `hubsync run`"
            } else {
                ""
            }
        );
    }
    let Some(schema) = common::schema::load(&store, &spec.name).await? else {
        println!(
            "table {}: no schema recorded yet; its first run reads the properties of {} and records it",
            spec.name,
            spec.sources
                .iter()
                .map(|s| s.object_type.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(());
    };
    println!(
        "table {} (schema version {}, updated {}): {} property columns, {} fetched",
        schema.table,
        schema.version,
        iso(schema.updated_at_ms),
        schema.columns.len(),
        schema.columns.iter().filter(|c| c.fetched).count()
    );
    println!(
        "{:<40} {:<14} {:<22} {:<8} {:<9} added",
        "column", "type", "hubspot type", "fetched", "backfill"
    );
    for c in &schema.columns {
        println!(
            "{:<40} {:<14} {:<22} {:<8} {:<9} {} ({})",
            c.name,
            c.ty.as_str(),
            format!("{}/{}", c.hubspot_type, c.field_type),
            if c.fetched { "yes" } else { "no" },
            if c.backfill { "pending" } else { "" },
            iso(c.added_at_ms),
            c.added_by_run
        );
    }
    println!("changes:");
    for change in &schema.changes {
        println!("  {} {}: {}", iso(change.at_ms), change.run_id, change.describe());
    }
    Ok(())
}

/// `hubsync schema objects`: the portal's custom object types, each as the table it is (a
/// catalog that discovers them records them in the lake) or as a catalog entry to add.
pub async fn schema_objects(lake: &LakeArgs, hubspot: &HubSpotArgs) -> anyhow::Result<()> {
    let client = hubspot.client()?;
    let schemas = client
        .schemas()
        .await
        .context("reading the portal's custom objects (GET /crm/v3/schemas)")?;
    if schemas.results.is_empty() {
        println!("# the portal has no custom object types");
    }
    let catalog = crate::setup::load_catalog(lake.catalog.as_deref())?;
    if catalog.discovers_custom_objects() {
        // Recording them may be a new lake's first write.
        if let Ok(dir) = local_lake_dir(&lake.lake) {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("creating the lake directory {}", dir.display()))?;
        }
        let store = crate::setup::open_lake(lake)?;
        let tables =
            schema::record_custom_tables(&store, &catalog, &schemas, chrono::Utc::now().timestamp_millis())
                .await?;
        println!(
            "{:<24} {:<12} {:<28} {:<24} status",
            "table", "type id", "name", "display property"
        );
        for t in &tables {
            println!(
                "{:<24} {:<12} {:<28} {:<24} {}",
                t.table,
                t.object_type_id,
                t.fully_qualified_name,
                t.primary_display_property.as_deref().unwrap_or("-"),
                if t.archived {
                    "archived in HubSpot"
                } else {
                    "synced with every table"
                }
            );
        }
        println!(
            "# recorded in {}: each is a table for sync, audit and schema show",
            store.uri()
        );
        return Ok(());
    }
    println!("# the catalog lists its tables (custom_objects = \"listed\"); add these to sync them");
    for s in schemas.results.iter().filter(|s| !s.archived) {
        let spec = TableSpec::custom_object(
            &common::catalog::custom_table_name(&s.name),
            &s.fully_qualified_name,
        );
        println!(
            "# {} ({}), primary display property `{}`\n[[tables]]\nname = \"{}\"\nkey_column = \"{}\"\n\n[[tables.sources]]\nobject_type = \"{}\"\n",
            s.labels.plural,
            s.object_type_id,
            s.primary_display_property.as_deref().unwrap_or("none"),
            spec.name,
            spec.key_column,
            s.fully_qualified_name
        );
    }
    Ok(())
}
