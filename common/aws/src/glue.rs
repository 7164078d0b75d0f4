//! The `Metastore` port on AWS Glue's Data Catalog: one database per deployment, one table per
//! lake table, each a Parquet table over `s3://<bucket>/<prefix>/<table>/` with `dt` projected
//! (see `common::ports::metastore`). The merger publishes at every commit: one `GetTable`, and
//! an `UpdateTable` (or `CreateTable`) only when a column or the partition range changed.

use std::collections::HashMap;

use arrow_schema::Schema;
use async_trait::async_trait;
use aws_sdk_glue::types::{Column, DatabaseInput, SerDeInfo, StorageDescriptor, Table, TableInput};
use common::ports::metastore::{widen_range, Metastore, MetastoreError, TableDefinition, PARTITION_COLUMN};

const INPUT_FORMAT: &str = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat";
const OUTPUT_FORMAT: &str = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat";
const SERDE: &str = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe";

#[derive(Debug, Clone)]
pub struct GlueMetastore {
    client: aws_sdk_glue::Client,
    database: String,
    /// `s3://bucket/prefix`: tables live under it.
    root: String,
}

fn err(what: &str, e: impl std::fmt::Display) -> MetastoreError {
    MetastoreError(format!("Glue {what}: {e}"))
}

impl GlueMetastore {
    pub fn new(config: &aws_config::SdkConfig, database: &str, bucket: &str, prefix: &str) -> Self {
        let root = if prefix.is_empty() {
            format!("s3://{bucket}")
        } else {
            format!("s3://{bucket}/{}", prefix.trim_matches('/'))
        };
        GlueMetastore {
            client: aws_sdk_glue::Client::new(config),
            database: database.to_string(),
            root,
        }
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    /// Creates the database unless it exists (`hubsync infra up`).
    pub async fn ensure_database(&self) -> Result<(), MetastoreError> {
        let input = DatabaseInput::builder()
            .name(&self.database)
            .description("hubsync's HubSpot lake: one table per lake table, dt projected")
            .build()
            .map_err(|e| err("database input", e))?;
        match self.client.create_database().database_input(input).send().await {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_already_exists_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(err(
                &format!("CreateDatabase {}", self.database),
                aws_sdk_glue::error::DisplayErrorContext(e),
            )),
        }
    }

    fn location(&self, table: &str) -> String {
        format!("{}/{table}", self.root)
    }

    /// The table as Glue holds it, or `None`.
    async fn current(&self, table: &str) -> Result<Option<TableDefinition>, MetastoreError> {
        match self
            .client
            .get_table()
            .database_name(&self.database)
            .name(table)
            .send()
            .await
        {
            Ok(out) => Ok(out.table().map(|t| definition_of(&self.database, t))),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_entity_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(err(
                &format!("GetTable {}.{table}", self.database),
                aws_sdk_glue::error::DisplayErrorContext(e),
            )),
        }
    }

    /// What `publish` would leave, given what Glue holds now.
    fn desired(
        &self,
        table: &str,
        schema: &Schema,
        dts: &[String],
        current: Option<&TableDefinition>,
    ) -> TableDefinition {
        let mut desired = TableDefinition::new(&self.database, table, &self.location(table), schema, dts);
        // The range only widens: a partition published once stays visible.
        if let Some(current) = current.filter(|c| !c.range.0.is_empty() && !c.range.1.is_empty()) {
            desired.range = widen_range(current.range.clone(), &[desired.range.0.clone()]);
            desired.range = widen_range(desired.range, dts);
        }
        desired
    }
}

/// A Glue table read back as the definition it was made from.
fn definition_of(database: &str, t: &Table) -> TableDefinition {
    let sd = t.storage_descriptor();
    let columns = sd
        .map(|sd| {
            sd.columns()
                .iter()
                .map(|c| (c.name().to_string(), c.r#type().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let location = sd
        .and_then(|sd| sd.location())
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_string();
    let range = t
        .parameters()
        .and_then(|p| p.get("projection.dt.range"))
        .and_then(|r| r.split_once(','))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .unwrap_or_default();
    TableDefinition {
        database: database.to_string(),
        table: t.name().to_string(),
        location,
        columns,
        range,
    }
}

fn table_input(d: &TableDefinition) -> Result<TableInput, MetastoreError> {
    let column = |name: &str, ty: &str| {
        Column::builder()
            .name(name)
            .r#type(ty)
            .build()
            .map_err(|e| err("column", e))
    };
    let columns = d
        .columns
        .iter()
        .map(|(n, t)| column(n, t))
        .collect::<Result<Vec<_>, _>>()?;
    let sd = StorageDescriptor::builder()
        .set_columns(Some(columns))
        .location(format!("{}/", d.location))
        .input_format(INPUT_FORMAT)
        .output_format(OUTPUT_FORMAT)
        .serde_info(SerDeInfo::builder().serialization_library(SERDE).build())
        .build();
    let parameters: HashMap<String, String> = d.parameters().into_iter().collect();
    TableInput::builder()
        .name(&d.table)
        .description("A hubsync lake table (written by hubsync's merger; do not edit by hand)")
        .table_type("EXTERNAL_TABLE")
        .storage_descriptor(sd)
        .partition_keys(column(PARTITION_COLUMN, "string")?)
        .set_parameters(Some(parameters))
        .build()
        .map_err(|e| err("table input", e))
}

#[async_trait]
impl Metastore for GlueMetastore {
    async fn publish(&self, table: &str, schema: &Schema, dts: &[String]) -> Result<bool, MetastoreError> {
        let current = self.current(table).await?;
        let desired = self.desired(table, schema, dts, current.as_ref());
        if current.as_ref() == Some(&desired) {
            return Ok(false);
        }
        let input = table_input(&desired)?;
        let what = format!("{}.{table}", self.database);
        let result = if current.is_some() {
            self.client
                .update_table()
                .database_name(&self.database)
                .table_input(input)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| {
                    err(
                        &format!("UpdateTable {what}"),
                        aws_sdk_glue::error::DisplayErrorContext(e),
                    )
                })
        } else {
            match self
                .client
                .create_table()
                .database_name(&self.database)
                .table_input(input)
                .send()
                .await
            {
                Ok(_) => Ok(()),
                // Another merger created it meanwhile: the next commit compares again.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_already_exists_exception()) =>
                {
                    Ok(())
                }
                Err(e) => Err(err(
                    &format!("CreateTable {what}"),
                    aws_sdk_glue::error::DisplayErrorContext(e),
                )),
            }
        };
        result.map(|_| true)
    }

    async fn show(&self, table: &str, schema: &Schema) -> Result<(TableDefinition, bool), MetastoreError> {
        let current = self.current(table).await?;
        let desired = self.desired(table, schema, &[], current.as_ref());
        let in_step = current.as_ref() == Some(&desired);
        Ok((desired, in_step))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::{DataType, Field};

    #[test]
    fn a_table_input_reads_back_as_its_definition() {
        let schema = Schema::new(vec![
            Field::new("deal_id", DataType::Int64, false),
            Field::new("dealname", DataType::Utf8, true),
        ]);
        let d = TableDefinition::new(
            "hubsync",
            "deals",
            "s3://b/data/deals",
            &schema,
            &["0001-01-01".into()],
        );
        let input = table_input(&d).unwrap();
        let table = Table::builder()
            .name(input.name())
            .set_storage_descriptor(input.storage_descriptor().cloned())
            .set_parameters(input.parameters().cloned())
            .build()
            .unwrap();
        assert_eq!(definition_of("hubsync", &table), d);
        assert_eq!(d.range.0, "0001-01-01");
        assert_eq!(input.partition_keys()[0].name(), "dt");
    }
}
