//! The lake's tables in Glue's Data Catalog (what Athena reads): `hubsync infra up` creates the
//! database and one table per catalog table; `hubsync glue show --table T` prints a table's
//! DDL and whether Glue holds it so. The merger keeps them in step at every commit.

use anyhow::Context;
use common::catalog::{Catalog, TableSpec};
use common::lake::Lake;
use common::ports::Metastore;
use common::schema::{self, TableSchema};

use crate::setup::{load_catalog, open_lake, LakeArgs};

/// The Arrow schema of `spec`'s files as the lake records it (before a table's first run: the
/// columns every record table has, or a link or snapshot table's fixed ones).
pub async fn files_schema(
    lake: &Lake,
    spec: &TableSpec,
) -> anyhow::Result<datafusion::arrow::datatypes::SchemaRef> {
    let recorded = schema::load(lake, &spec.name).await?;
    let columns = recorded
        .or_else(|| TableSchema::of_links(spec))
        .unwrap_or_else(|| TableSchema {
            table: spec.name.clone(),
            version: 0,
            columns: Vec::new(),
            changes: Vec::new(),
            updated_at_ms: 0,
            links_refreshed_ms: None,
        });
    Ok(columns.arrow_schema(spec))
}

async fn metastore(lake: &LakeArgs) -> anyhow::Result<aws::GlueMetastore> {
    match common::lake::LakeLocation::parse(&lake.lake)? {
        common::lake::LakeLocation::S3 { bucket, prefix } => Ok(aws::GlueMetastore::new(
            &aws::sdk_config().await,
            &lake.names().glue_database(),
            &bucket,
            &prefix,
        )),
        common::lake::LakeLocation::Local(_) => anyhow::bail!(
            "Glue tables describe an S3 lake (AWS mode); pass --lake s3://bucket/prefix \
             (a local lake is read with `hubsync query`)"
        ),
    }
}

/// Every table of the catalog and every custom object the lake records.
async fn all_tables(lake: &Lake, catalog: &Catalog) -> anyhow::Result<Vec<TableSpec>> {
    let mut tables: Vec<TableSpec> = catalog.tables().to_vec();
    if catalog.discovers_custom_objects() {
        for custom in schema::custom_tables(lake).await? {
            if !custom.archived && !tables.iter().any(|t| t.name == custom.table) {
                tables.push(custom.spec());
            }
        }
    }
    Ok(tables)
}

/// `hubsync infra up`'s part: the database, and every table as the lake has it now.
pub async fn up(lake: &LakeArgs) -> anyhow::Result<()> {
    let glue = metastore(lake).await?;
    glue.ensure_database().await?;
    let store = open_lake(lake)?;
    let catalog = load_catalog(lake.catalog.as_deref())?;
    let tables = all_tables(&store, &catalog).await?;
    for spec in &tables {
        let files = files_schema(&store, spec).await?;
        let dts = store.partitions(&spec.name).await?;
        glue.publish(&spec.name, &files, &dts)
            .await
            .with_context(|| format!("publishing the Glue table {}.{}", glue.database(), spec.name))?;
    }
    println!("Glue database {}: {} tables", glue.database(), tables.len());
    Ok(())
}

/// `hubsync glue show --table T`: the DDL, then whether Glue holds the table so.
pub async fn show(lake: &LakeArgs, table: &str) -> anyhow::Result<()> {
    let glue = metastore(lake).await?;
    let store = open_lake(lake)?;
    let catalog = load_catalog(lake.catalog.as_deref())?;
    let spec = schema::table_spec(&store, &catalog, table).await?;
    let files = files_schema(&store, &spec).await?;
    let (definition, in_step) = glue.show(&spec.name, &files).await?;
    print!("{}", definition.ddl());
    eprintln!(
        "{}",
        if in_step {
            format!("Glue holds {}.{} as above.", glue.database(), spec.name)
        } else {
            format!(
                "Glue's {}.{} differs or is missing: `hubsync infra up` (or the table's next commit) publishes it.",
                glue.database(),
                spec.name
            )
        }
    );
    Ok(())
}
