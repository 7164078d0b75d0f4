//! `hubsync demo`: the whole story in one command, against an in-process simulator.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::audit::{compare, expected_links, expected_rows, read_lake_table, sim_truth};
use crate::commands::print_reports;
use crate::runner::{run_embedded, RunOptions};
use sim::SimConfig;

/// Default lake of the demo, relative to the working directory.
pub const DEFAULT_DEMO_LAKE: &str = "hubsync-demo-lake";

/// Refuses to overwrite a directory that is not empty and not a hubsync lake.
fn prepare_lake(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let is_lake = dir.join(common::lake::EMBEDDED_DIR).exists();
        let empty = std::fs::read_dir(dir)?.next().is_none();
        if !empty && !is_lake {
            bail!(
                "{} exists and is not a hubsync lake; pick another --lake",
                dir.display()
            );
        }
        if is_lake {
            println!("removing the previous demo lake in {}", dir.display());
            std::fs::remove_dir_all(dir)?;
        }
    }
    Ok(())
}

pub async fn demo(lake: Option<PathBuf>, records: u64) -> anyhow::Result<()> {
    let dir = lake.unwrap_or_else(|| PathBuf::from(DEFAULT_DEMO_LAKE));
    prepare_lake(&dir)?;
    let _lock = crate::setup::take_over_lake(&dir).await?;
    let server = sim::start(SimConfig {
        records_per_type: records,
        ..Default::default()
    })
    .await
    .context("starting the simulator")?;
    let base = server.base_url();
    println!("simulated HubSpot at {base} with {records} records per object type");
    let catalog = common::catalog::Catalog::default();
    let client = hubspot::HubSpotClient::new(
        hubspot::ClientConfig {
            base_url: base.clone(),
            ..Default::default()
        },
        hubspot::RateBudget::new(170, 4),
    )?;
    let mut p = embedded::pipeline(&dir, catalog.clone(), common::clock::system(), Default::default())?;

    println!("\n== 1. full sync of every table (the flag is not set) ==");
    let reports = run_embedded(&p, &client, &RunOptions::default()).await?;
    print_reports(&reports);

    println!("\n== 2. HubSpot changes: updates, creates, archives, a new property, and a bulk edit in one millisecond ==");
    let http = reqwest::Client::new();
    for object_type in [
        "deals",
        "contacts",
        "companies",
        "calls",
        "emails",
        "meetings",
        "notes",
        "tasks",
        "tickets",
        "line_items",
        "products",
        "quotes",
    ] {
        let body = serde_json::json!({"object_type": object_type, "updates": records / 20 + 1,
            "creates": records / 50 + 1, "archives": records / 100 + 1});
        http.post(format!("{base}/_sim/mutate"))
            .json(&body)
            .send()
            .await?
            .error_for_status()?;
    }
    // A custom property created in HubSpot between the runs: every deal has a value for it, and
    // none of them was modified by its creation.
    let added = serde_json::json!({"object_type": "deals",
        "add_property": {"name": "renewal_tier", "type": "enumeration", "field_type": "select"}});
    http.post(format!("{base}/_sim/mutate"))
        .json(&added)
        .send()
        .await?
        .error_for_status()?;
    println!("deals gained a custom property, renewal_tier (no deal's modified time changed)");
    let bulk = serde_json::json!({"object_type": "deals", "updates": records / 2, "same_timestamp": true});
    http.post(format!("{base}/_sim/mutate"))
        .json(&bulk)
        .send()
        .await?
        .error_for_status()?;
    p.flag.set("true").await?;
    println!("flag {} set to true", common::ports::flag::FLAG_PARAMETER);

    println!("\n== 3. incremental sync ==");
    let reports = run_embedded(&p, &client, &RunOptions::default()).await?;
    print_reports(&reports);

    let deals = common::schema::load(&p.lake, "deals")
        .await?
        .context("the deals table has no recorded schema")?;
    for change in deals.changes.iter().filter(|c| c.column == "renewal_tier") {
        println!("schema of deals: {}", change.describe());
    }

    println!(
        "\n== 3b. association refresh: links of records deleted or relinked without a modified-time change =="
    );
    // The refresh is due daily; here at once. An incremental run sees the links of records
    // that changed; a deleted contact's links vanish from records that did not.
    p.settings.association_refresh_ms = 0;
    let links: Vec<String> = catalog
        .tables()
        .iter()
        .filter(|t| t.is_links())
        .map(|t| t.name.clone())
        .collect();
    let reports = run_embedded(
        &p,
        &client,
        &RunOptions {
            tables: links,
            ..RunOptions::default()
        },
    )
    .await?;
    print_reports(&reports);

    println!("\n== 4. the lake against HubSpot's truth ==");
    let tables: Vec<_> = catalog.tables().iter().collect();
    let truth = sim_truth(&base, &tables).await?;
    let mut clean = true;
    for t in &tables {
        if let Some(kind) = t.snapshot {
            let audit = crate::audit::audit_snapshot(&p.lake, &client, t, kind).await?;
            clean &= audit.diff.is_clean();
            println!(
                "{:<14} {:>7} rows in {:>4} partitions: {}",
                t.name,
                audit.lake_rows,
                1,
                if audit.diff.is_clean() {
                    "equal to HubSpot's".to_string()
                } else {
                    audit.diff.summary()
                }
            );
            continue;
        }
        let lake_table = read_lake_table(&p.lake, t).await?;
        let expected = if t.is_links() {
            expected_links(&client, t).await?
        } else {
            expected_rows(t, &lake_table.schema, &truth)?
        };
        let diff = compare(&lake_table, &expected);
        clean &= diff.is_clean();
        println!(
            "{:<14} {:>7} rows in {:>4} partitions: {}",
            t.name,
            lake_table.row_count(),
            lake_table.rows_per_dt.len(),
            if diff.is_clean() {
                "equal to truth".to_string()
            } else {
                diff.summary()
            }
        );
    }
    println!("\n== 5. a question the lake answers: deals by owner and stage (the README's query) ==");
    let answer = ask(&dir, DEALS_BY_OWNER_AND_STAGE).await?;
    println!("{DEALS_BY_OWNER_AND_STAGE}\n{answer}");
    server.shutdown().await?;
    println!("\nlake: {}  (read it with DuckDB: SELECT * FROM read_parquet('{}/deals/*/*.parquet', hive_partitioning = true))",
        dir.display(), dir.display());
    if !clean {
        bail!("the lake differs from the simulator's truth");
    }
    Ok(())
}

/// Deals joined to their primary company, their owner and their stage's label: the query the
/// README shows (there for DuckDB, here for DataFusion; the same SQL).
pub const DEALS_BY_OWNER_AND_STAGE: &str =
    "SELECT coalesce(o.first_name || ' ' || o.last_name, '(no owner)') AS owner, \
s.stage_label, count(*) AS deals, count(DISTINCT c.company_id) AS companies, round(sum(d.amount)) AS amount
FROM deals d
JOIN deal_company_associations dc ON dc.deal_id = d.deal_id AND dc.association_label = 'Primary'
JOIN companies c ON c.company_id = dc.company_id
LEFT JOIN owners o ON o.owner_id = TRY_CAST(d.hubspot_owner_id AS BIGINT)
LEFT JOIN pipeline_stages s ON s.object_type = 'deals' AND s.stage_id = d.dealstage
GROUP BY 1, 2 ORDER BY amount DESC NULLS LAST LIMIT 5";

/// Runs `sql` over the lake's tables at `dir` with DataFusion (as `hubsync query` does); the
/// answer as a text table.
async fn ask(dir: &Path, sql: &str) -> anyhow::Result<String> {
    let lake = common::lake::Lake::local(dir)?;
    let (ctx, _) = crate::query::session(&lake, None).await?;
    let batches = ctx.sql(sql).await?.collect().await?;
    Ok(datafusion::arrow::util::pretty::pretty_format_batches(&batches)?.to_string())
}
