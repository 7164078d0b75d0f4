//! Where query engines find the lake's tables: AWS Glue's Data Catalog in AWS mode (Athena,
//! Spark on EMR, Redshift Spectrum read it); none in embedded mode.
//!
//! A table's definition follows the Parquet files the merger writes: one column per field of
//! the table's Arrow schema, in its order and with its Hive type, `dt` as the one partition key,
//! and partition projection (`projection.dt.type = date`), so neither a crawler nor `MSCK
//! REPAIR` is needed: a new partition is visible the moment its file is. The merger publishes
//! the definition at every commit, so a column is in the table once the commit that first wrote
//! it ends.

use arrow_schema::{DataType, Schema};
use async_trait::async_trait;

/// The partition column of every table.
pub const PARTITION_COLUMN: &str = "dt";
/// Where projected partitions start when the lake has none earlier: the day of records whose
/// created date is unknown (`UNKNOWN_CREATED_DT`).
pub const PROJECTION_START: &str = crate::catalog::UNKNOWN_CREATED_DT;
/// Where they end: Athena evaluates it at query time, so today's partitions are always in.
pub const PROJECTION_END: &str = "NOW+1DAYS";

/// A table as a query engine's catalog holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDefinition {
    pub database: String,
    pub table: String,
    /// `s3://bucket/prefix/<table>` (no trailing slash).
    pub location: String,
    /// (name, Hive type), in the Parquet files' order; `dt` is not among them.
    pub columns: Vec<(String, String)>,
    /// The first and last day of the projected `dt` range.
    pub range: (String, String),
}

impl TableDefinition {
    /// The definition of a table whose files have `schema`, with the default range widened to
    /// take in the partitions `dts` (see [`widen_range`]).
    pub fn new(database: &str, table: &str, location: &str, schema: &Schema, dts: &[String]) -> Self {
        let columns = schema
            .fields()
            .iter()
            .filter(|f| f.name() != PARTITION_COLUMN)
            .map(|f| (f.name().to_lowercase(), hive_type(f.data_type())))
            .collect();
        let range = widen_range((PROJECTION_START.into(), PROJECTION_END.into()), dts);
        TableDefinition {
            database: database.to_string(),
            table: table.to_string(),
            location: location.trim_end_matches('/').to_string(),
            columns,
            range,
        }
    }

    /// The table's parameters: Parquet, external, and the `dt` projection.
    pub fn parameters(&self) -> Vec<(String, String)> {
        [
            ("classification", "parquet".to_string()),
            ("EXTERNAL", "TRUE".to_string()),
            ("parquet.compression", "SNAPPY".to_string()),
            ("projection.enabled", "true".to_string()),
            ("projection.dt.type", "date".to_string()),
            ("projection.dt.format", "yyyy-MM-dd".to_string()),
            ("projection.dt.interval", "1".to_string()),
            ("projection.dt.interval.unit", "DAYS".to_string()),
            (
                "projection.dt.range",
                format!("{},{}", self.range.0, self.range.1),
            ),
            (
                "storage.location.template",
                format!("{}/dt=${{dt}}/", self.location),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The Athena (Hive) DDL that creates the table.
    pub fn ddl(&self) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|(name, ty)| format!("  `{name}` {ty}"))
            .collect();
        let properties: Vec<String> = self
            .parameters()
            .iter()
            .filter(|(k, _)| k != "EXTERNAL")
            .map(|(k, v)| format!("  '{k}' = '{v}'"))
            .collect();
        format!(
            "CREATE EXTERNAL TABLE IF NOT EXISTS `{}`.`{}` (\n{}\n)\nPARTITIONED BY (`{PARTITION_COLUMN}` string)\n\
             STORED AS PARQUET\nLOCATION '{}/'\nTBLPROPERTIES (\n{}\n);\n",
            self.database,
            self.table,
            columns.join(",\n"),
            self.location,
            properties.join(",\n")
        )
    }
}

/// `range` with its start moved back to the earliest of `dts` and, when one of them lies after
/// tomorrow (a record created in the future), its end moved to that day.
pub fn widen_range(range: (String, String), dts: &[String]) -> (String, String) {
    let (mut start, mut end) = range;
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    for dt in dts {
        if *dt < start {
            start = dt.clone();
        }
        let end_day = if end.starts_with("NOW") { &tomorrow } else { &end };
        if dt > end_day {
            end = dt.clone();
        }
    }
    (start, end)
}

/// The Hive type Athena reads an Arrow field of our Parquet files as.
pub fn hive_type(ty: &DataType) -> String {
    match ty {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string".into(),
        DataType::Int8 => "tinyint".into(),
        DataType::Int16 => "smallint".into(),
        DataType::Int32 => "int".into(),
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => "bigint".into(),
        DataType::Float32 => "float".into(),
        DataType::Float64 => "double".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Decimal128(p, s) => format!("decimal({p},{s})"),
        DataType::Timestamp(..) => "timestamp".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Binary | DataType::LargeBinary => "binary".into(),
        DataType::List(item) | DataType::LargeList(item) => format!("array<{}>", hive_type(item.data_type())),
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => {
                format!(
                    "map<{},{}>",
                    hive_type(kv[0].data_type()),
                    hive_type(kv[1].data_type())
                )
            }
            other => format!("map<string,{}>", hive_type(other)),
        },
        DataType::Struct(fields) => {
            let inner: Vec<String> = fields
                .iter()
                .map(|f| format!("{}:{}", f.name(), hive_type(f.data_type())))
                .collect();
            format!("struct<{}>", inner.join(","))
        }
        other => other.to_string().to_lowercase(),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("table catalog: {0}")]
pub struct MetastoreError(pub String);

#[async_trait]
pub trait Metastore: Send + Sync {
    /// Makes `table`'s definition equal to one built from `schema` (its files' columns), its
    /// projected range covering the range it has and the partitions `dts`; creates it when
    /// missing. Returns whether it changed anything. Idempotent.
    async fn publish(&self, table: &str, schema: &Schema, dts: &[String]) -> Result<bool, MetastoreError>;

    /// The definition `publish` would leave (for `hubsync glue show`), and whether the
    /// catalog holds it already.
    async fn show(&self, table: &str, schema: &Schema) -> Result<(TableDefinition, bool), MetastoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::{Field, TimeUnit};
    use std::sync::Arc;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("deal_id", DataType::Int64, false),
            Field::new(
                "created_at",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                true,
            ),
            Field::new("amount", DataType::Decimal128(38, 9), true),
            Field::new(
                "tags",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                true,
            ),
            Field::new("_uncast", crate::schema::uncast_type(), true),
            Field::new("dt", DataType::Utf8, false),
        ])
    }

    #[test]
    fn columns_follow_the_schema_but_dt() {
        let d = TableDefinition::new("hubsync", "deals", "s3://b/data/deals/", &schema(), &[]);
        assert_eq!(
            d.columns,
            vec![
                ("deal_id".to_string(), "bigint".to_string()),
                ("created_at".into(), "timestamp".into()),
                ("amount".into(), "decimal(38,9)".into()),
                ("tags".into(), "array<string>".into()),
                ("_uncast".into(), "map<string,string>".into()),
            ]
        );
        assert_eq!(d.location, "s3://b/data/deals");
        assert_eq!(d.range, ("1970-01-01".to_string(), "NOW+1DAYS".to_string()));
    }

    #[test]
    fn ddl_projects_dt_over_the_location() {
        let ddl = TableDefinition::new("hubsync", "deals", "s3://b/data/deals", &schema(), &[]).ddl();
        assert!(
            ddl.starts_with("CREATE EXTERNAL TABLE IF NOT EXISTS `hubsync`.`deals` (\n  `deal_id` bigint,"),
            "{ddl}"
        );
        assert!(
            ddl.contains("PARTITIONED BY (`dt` string)\nSTORED AS PARQUET\nLOCATION 's3://b/data/deals/'"),
            "{ddl}"
        );
        assert!(
            ddl.contains("'projection.dt.range' = '1970-01-01,NOW+1DAYS'"),
            "{ddl}"
        );
        assert!(
            ddl.contains("'storage.location.template' = 's3://b/data/deals/dt=${dt}/'"),
            "{ddl}"
        );
    }

    #[test]
    fn the_range_takes_in_early_and_future_partitions() {
        let start = || (PROJECTION_START.to_string(), PROJECTION_END.to_string());
        assert_eq!(widen_range(start(), &["2024-01-01".into()]), start());
        assert_eq!(
            widen_range(start(), &["0001-01-01".into(), "2024-01-01".into()]),
            ("0001-01-01".to_string(), PROJECTION_END.to_string())
        );
        assert_eq!(
            widen_range(start(), &["9999-12-31".into()]),
            (PROJECTION_START.to_string(), "9999-12-31".to_string())
        );
        // A literal end only moves later.
        let fixed = ("1970-01-01".to_string(), "9999-12-31".to_string());
        assert_eq!(widen_range(fixed.clone(), &["2030-01-01".into()]), fixed);
    }
}
