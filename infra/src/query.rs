//! `hubsync query 'SQL'`: DataFusion SQL over the lake's tables, local or on S3, so a user can
//! look at the lake without installing anything.
//!
//! Every table directory of the lake (every folder at its root not starting with `_`) is
//! registered by its name, reading `<lake>/<table>/dt=*/*.parquet` with `dt` as a string
//! partition column, exactly as Athena's tables read it (`hubsync glue show`): a filter on `dt`
//! prunes partitions. Like any reader of the directory, a query that runs while a merge is
//! between its write and its cleanup may see that partition's transient extra file.

use std::io::Write;

use anyhow::Context;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use futures::TryStreamExt;

use crate::setup::{open_lake, LakeArgs};

/// The URL the lake's object store is registered under.
const LAKE_URL: &str = "hubsync-lake://lake/";

/// How `hubsync query` prints its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// An aligned text table.
    Table,
    /// CSV with a header line (RFC 4180 quoting).
    Csv,
    /// One JSON object per row (JSON lines); nulls are `null`, numbers stay numbers.
    Json,
}

/// The table names of a lake: its root's folders but the `_` ones (staging, quarantine,
/// hubsync's own files).
pub async fn lake_tables(lake: &common::lake::Lake) -> anyhow::Result<Vec<String>> {
    let listing = lake
        .store()
        .list_with_delimiter(Some(lake.root()))
        .await
        .with_context(|| format!("listing the lake {}", lake.uri()))?;
    let mut tables: Vec<String> = listing
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().map(str::to_string))
        .filter(|name| !name.starts_with('_'))
        .collect();
    tables.sort();
    Ok(tables)
}

/// A DataFusion session with every table of the lake registered by name (or, with `only`,
/// those of them it names: registering a table lists its files and reads their footers).
pub async fn session(
    lake: &common::lake::Lake,
    only: Option<&[String]>,
) -> anyhow::Result<(SessionContext, Vec<String>)> {
    let ctx = SessionContext::new();
    let url = url::Url::parse(LAKE_URL)?;
    ctx.register_object_store(&url, lake.store().clone());
    let tables = lake_tables(lake).await?;
    for table in &tables {
        if only.is_some_and(|only| !only.contains(table)) {
            continue;
        }
        let dir = format!("{LAKE_URL}{}/", lake.table_dir(table));
        let options =
            ParquetReadOptions::default().table_partition_cols(vec![("dt".to_string(), DataType::Utf8)]);
        ctx.register_parquet(table.as_str(), &dir, options)
            .await
            .with_context(|| format!("reading the table {table} of {}", lake.uri()))?;
    }
    Ok((ctx, tables))
}

/// The tables `sql` reads (unqualified names, as the lake's tables are).
fn referenced_tables(sql: &str) -> anyhow::Result<Vec<String>> {
    let state = SessionContext::new().state();
    let statement = state
        .sql_to_statement(sql, &datafusion::config::Dialect::Generic)
        .context("parsing the query")?;
    Ok(state
        .resolve_table_references(&statement)?
        .iter()
        .map(|t| t.table().to_string())
        .collect())
}

/// Runs `sql` over the lake and prints the answer to stdout.
pub async fn query(lake: &LakeArgs, sql: &str, format: OutputFormat) -> anyhow::Result<()> {
    let lake = open_lake(lake)?;
    let wanted = referenced_tables(sql)?;
    let (ctx, tables) = session(&lake, Some(&wanted)).await?;
    anyhow::ensure!(
        !tables.is_empty(),
        "the lake {} has no tables yet; run a sync first",
        lake.uri()
    );
    let df = ctx.sql(sql).await.with_context(|| {
        format!(
            "planning the query (the lake's tables: {}; `dt` is each table's partition column)",
            tables.join(", ")
        )
    })?;
    let batches: Vec<RecordBatch> = df
        .execute_stream()
        .await?
        .try_collect()
        .await
        .context("running the query")?;
    let mut out = std::io::stdout().lock();
    write_batches(&mut out, &batches, format)?;
    out.flush()?;
    Ok(())
}

/// Writes `batches` as `format`.
pub fn write_batches(
    out: &mut impl Write,
    batches: &[RecordBatch],
    format: OutputFormat,
) -> anyhow::Result<()> {
    match format {
        OutputFormat::Table => {
            writeln!(
                out,
                "{}",
                datafusion::arrow::util::pretty::pretty_format_batches(batches)?
            )?;
        }
        OutputFormat::Csv => write_csv(out, batches)?,
        OutputFormat::Json => write_json(out, batches)?,
    }
    Ok(())
}

fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

fn write_csv(out: &mut impl Write, batches: &[RecordBatch]) -> anyhow::Result<()> {
    let Some(first) = batches.first() else {
        return Ok(());
    };
    let header: Vec<String> = first
        .schema()
        .fields()
        .iter()
        .map(|f| csv_field(f.name()))
        .collect();
    writeln!(out, "{}", header.join(","))?;
    let options = FormatOptions::default();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            let fields: Vec<String> = batch
                .columns()
                .iter()
                .zip(&formatters)
                .map(|(col, f)| {
                    if col.is_null(row) {
                        String::new()
                    } else {
                        csv_field(&f.value(row).to_string())
                    }
                })
                .collect();
            writeln!(out, "{}", fields.join(","))?;
        }
    }
    Ok(())
}

/// A value as JSON: numbers and booleans as themselves, everything else as its display string.
fn json_value(ty: &DataType, text: String) -> serde_json::Value {
    let numeric = ty.is_integer()
        || matches!(
            ty,
            DataType::Float32 | DataType::Float64 | DataType::Decimal128(..)
        );
    if numeric || matches!(ty, DataType::Boolean) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
            if v.is_number() || v.is_boolean() {
                return v;
            }
        }
    }
    serde_json::Value::String(text)
}

fn write_json(out: &mut impl Write, batches: &[RecordBatch]) -> anyhow::Result<()> {
    let options = FormatOptions::default();
    for batch in batches {
        let schema = batch.schema();
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            let mut object = serde_json::Map::new();
            for ((field, col), f) in schema.fields().iter().zip(batch.columns()).zip(&formatters) {
                let value = if col.is_null(row) {
                    serde_json::Value::Null
                } else {
                    json_value(field.data_type(), f.value(row).to_string())
                };
                object.insert(field.name().clone(), value);
            }
            writeln!(out, "{}", serde_json::Value::Object(object))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Float64Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    fn batch() -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("deal_id", DataType::Int64, false),
            Field::new("dealname", DataType::Utf8, true),
            Field::new("amount", DataType::Float64, true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("Big, \"new\" deal"), None])),
                Arc::new(Float64Array::from(vec![Some(12.5), None])),
            ],
        )
        .unwrap()
    }

    fn render(format: OutputFormat) -> String {
        let mut out = Vec::new();
        write_batches(&mut out, &[batch()], format).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn csv_quotes_what_needs_it_and_leaves_nulls_empty() {
        assert_eq!(
            render(OutputFormat::Csv),
            "deal_id,dealname,amount\n1,\"Big, \"\"new\"\" deal\",12.5\n2,,\n"
        );
    }

    #[test]
    fn json_lines_keep_numbers_and_nulls() {
        let lines: Vec<serde_json::Value> = render(OutputFormat::Json)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines,
            vec![
                serde_json::json!({"deal_id": 1, "dealname": "Big, \"new\" deal", "amount": 12.5}),
                serde_json::json!({"deal_id": 2, "dealname": null, "amount": null}),
            ]
        );
    }

    #[test]
    fn table_output_is_aligned() {
        let text = render(OutputFormat::Table);
        assert!(text.contains("| deal_id | dealname"), "{text}");
        assert_eq!(text.lines().count(), 6, "{text}");
    }

    #[test]
    fn a_query_names_the_tables_it_reads() {
        let sql = "WITH x AS (SELECT * FROM deals) SELECT * FROM x JOIN owners o ON true \
                   WHERE o.owner_id IN (SELECT owner_id FROM pipeline_stages)";
        let mut tables = referenced_tables(sql).unwrap();
        tables.sort();
        assert_eq!(tables, vec!["deals", "owners", "pipeline_stages"]);
        assert!(referenced_tables("SELEC 1").is_err());
    }

    #[tokio::test]
    async fn lake_tables_skip_underscore_folders() {
        let dir = tempfile::tempdir().unwrap();
        for d in [
            "deals/dt=2024-01-01",
            "_staging/deals",
            "_hubsync/index",
            "owners",
        ] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
            std::fs::write(dir.path().join(d).join("x.parquet"), b"").unwrap();
        }
        let lake = common::lake::Lake::local(dir.path()).unwrap();
        assert_eq!(lake_tables(&lake).await.unwrap(), vec!["deals", "owners"]);
    }
}
