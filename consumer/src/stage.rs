//! Records → Arrow → one staged Parquet file per `dt`.
//!
//! Every row carries the key, `created_at` and `last_modified_at` (UTC ms), `archived`, the
//! tag column if the table has one, every property column of the run's schema typed as the
//! schema says (HubSpot sends every value as a string: a value that does not cast is kept
//! raw in the row's `_uncast` map and its column holds null, so nothing is lost), `_synced_at`
//! and `_run_id`. `dt` is the UTC date
//! of the created timestamp ([`common::catalog::dt_of_created`]: a stated partition when it is
//! missing or out of the four-digit years).
//!
//! Q1: a record that cannot be staged (no usable id, no readable modified time) is not a
//! reason to fail its page forever: [`validate`] sets it aside with its reason, to be written
//! raw under `_rejected/` and counted on the run. K1: a record whose key the table's index
//! places in another partition moved there (its created date changed): a tombstone row in the
//! old partition (archived, at the record's new version) removes the old row at merge.

use std::collections::BTreeMap;
use std::sync::Arc;

use common::catalog::{dt_of_created, SourceSpec, TableSpec};
use common::clock::EpochMs;
use common::schema::{self, ColumnType, TableSchema, Typed};
use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder, Int64Builder, ListBuilder,
    MapBuilder, MapFieldNames, StringBuilder, TimestampMillisecondBuilder,
};
use datafusion::arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use wire::{parse_ms, ObjectRecord};

use crate::ConsumerError;

/// One record, validated.
#[derive(Debug, Clone)]
pub struct Row<'a> {
    pub key: i64,
    /// `None`: missing or unreadable (the record lands in the stated partition).
    pub created_ms: Option<EpochMs>,
    pub modified_ms: EpochMs,
    pub record: &'a ObjectRecord,
}

impl Row<'_> {
    pub fn dt(&self) -> String {
        dt_of_created(self.created_ms)
    }
}

/// A record set aside (Q1), with why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rejected<'a> {
    pub reason: String,
    pub record: &'a ObjectRecord,
}

/// Splits a page's records into rows to stage and records to quarantine: a record needs a
/// positive numeric id and a readable modified time (the property, or `updatedAt`, which
/// HubSpot keeps equal to it). A created time falls back to `createdAt`, then to none.
pub fn validate<'a>(source: &SourceSpec, records: &'a [ObjectRecord]) -> (Vec<Row<'a>>, Vec<Rejected<'a>>) {
    let mut rows = Vec::with_capacity(records.len());
    let mut rejected = Vec::new();
    for record in records {
        match row(source, record) {
            Ok(r) => rows.push(r),
            Err(reason) => rejected.push(Rejected { reason, record }),
        }
    }
    (rows, rejected)
}

/// One record validated, or why it cannot be staged.
pub fn row<'a>(source: &SourceSpec, record: &'a ObjectRecord) -> Result<Row<'a>, String> {
    let key = match record.id.trim().parse::<i64>() {
        Ok(k) if k > 0 => k,
        _ => {
            return Err(format!(
                "{} id `{}` is not a positive number",
                source.object_type, record.id
            ))
        }
    };
    let time = |prop: &str, fallback: &str| {
        record
            .properties
            .get(prop)
            .and_then(|v| v.as_deref())
            .and_then(parse_ms)
            .or_else(|| parse_ms(fallback))
    };
    let modified_ms = time(source.modified_property(), &record.updated_at).ok_or_else(|| {
        format!(
            "{} {key} has no readable modified time (`{}` and `updatedAt` are missing or malformed), \
             so its versions cannot be ordered",
            source.object_type,
            source.modified_property()
        )
    })?;
    Ok(Row {
        key,
        created_ms: time(source.created_property(), &record.created_at),
        modified_ms,
        record,
    })
}

/// A row to stage: a record's version, or a tombstone (K1).
#[derive(Debug, Clone)]
pub enum Staged<'a> {
    Record(&'a Row<'a>),
    /// Removes `key` from `dt` (its old partition) at merge: archived, at `modified_ms`.
    Tombstone {
        key: i64,
        modified_ms: EpochMs,
        dt: String,
    },
}

impl Staged<'_> {
    fn dt(&self) -> String {
        match self {
            Staged::Record(r) => r.dt(),
            Staged::Tombstone { dt, .. } => dt.clone(),
        }
    }
}

/// One property column being built, typed.
enum ColumnBuilder {
    String(StringBuilder),
    Float64(Float64Builder),
    Int64(Int64Builder),
    Decimal(Decimal128Builder),
    Timestamp(TimestampMillisecondBuilder),
    Date(Date32Builder),
    Boolean(BooleanBuilder),
    List(ListBuilder<StringBuilder>),
}

impl ColumnBuilder {
    fn new(ty: ColumnType, n: usize) -> Self {
        match ty {
            ColumnType::String => ColumnBuilder::String(StringBuilder::with_capacity(n, n * 8)),
            ColumnType::Float64 => ColumnBuilder::Float64(Float64Builder::with_capacity(n)),
            ColumnType::Int64 => ColumnBuilder::Int64(Int64Builder::with_capacity(n)),
            ColumnType::Decimal => ColumnBuilder::Decimal(
                Decimal128Builder::with_capacity(n)
                    .with_precision_and_scale(schema::DECIMAL_PRECISION, schema::DECIMAL_SCALE)
                    .unwrap_or_else(|_| Decimal128Builder::with_capacity(n)),
            ),
            ColumnType::Timestamp => {
                ColumnBuilder::Timestamp(TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC"))
            }
            ColumnType::Date => ColumnBuilder::Date(Date32Builder::with_capacity(n)),
            ColumnType::Boolean => ColumnBuilder::Boolean(BooleanBuilder::with_capacity(n)),
            ColumnType::StringList => ColumnBuilder::List(
                ListBuilder::new(StringBuilder::new()).with_field(Arc::new(schema::list_item())),
            ),
        }
    }

    /// Appends a value cast to this column's type (null for any other variant).
    fn append(&mut self, value: Typed) {
        match (self, value) {
            (ColumnBuilder::String(b), Typed::String(v)) => b.append_value(v),
            (ColumnBuilder::Float64(b), Typed::Float64(v)) => b.append_value(v),
            (ColumnBuilder::Int64(b), Typed::Int64(v)) => b.append_value(v),
            (ColumnBuilder::Decimal(b), Typed::Decimal(v)) => b.append_value(v),
            (ColumnBuilder::Timestamp(b), Typed::Timestamp(v)) => b.append_value(v),
            (ColumnBuilder::Date(b), Typed::Date(v)) => b.append_value(v),
            (ColumnBuilder::Boolean(b), Typed::Boolean(v)) => b.append_value(v),
            (ColumnBuilder::List(b), Typed::StringList(v)) => {
                for item in v {
                    b.values().append_value(item);
                }
                b.append(true);
            }
            (b, _) => b.append_null(),
        }
    }

    fn append_null(&mut self) {
        match self {
            ColumnBuilder::String(b) => b.append_null(),
            ColumnBuilder::Float64(b) => b.append_null(),
            ColumnBuilder::Int64(b) => b.append_null(),
            ColumnBuilder::Decimal(b) => b.append_null(),
            ColumnBuilder::Timestamp(b) => b.append_null(),
            ColumnBuilder::Date(b) => b.append_null(),
            ColumnBuilder::Boolean(b) => b.append_null(),
            ColumnBuilder::List(b) => b.append(false),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::String(b) => Arc::new(b.finish()),
            ColumnBuilder::Float64(b) => Arc::new(b.finish()),
            ColumnBuilder::Int64(b) => Arc::new(b.finish()),
            ColumnBuilder::Decimal(b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(b) => Arc::new(b.finish()),
            ColumnBuilder::Date(b) => Arc::new(b.finish()),
            ColumnBuilder::Boolean(b) => Arc::new(b.finish()),
            ColumnBuilder::List(b) => Arc::new(b.finish()),
        }
    }
}

/// The `_uncast` column's builder (names as [`schema::uncast_type`] has them).
fn uncast_builder() -> MapBuilder<StringBuilder, StringBuilder> {
    let names = MapFieldNames {
        entry: "entries".into(),
        key: "keys".into(),
        value: "values".into(),
    };
    MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new())
}

/// Staged batches per `dt`, and the values per property that did not cast.
#[derive(Debug, Default)]
pub struct Batches {
    pub by_dt: BTreeMap<String, RecordBatch>,
    pub uncast: BTreeMap<String, u64>,
}

/// Groups rows by `dt` and builds one batch per partition, typed by the run's `columns`.
pub fn batches_by_dt(
    table: &TableSpec,
    columns: &TableSchema,
    source: &SourceSpec,
    rows: &[Staged<'_>],
    run_id: &str,
    synced_at: EpochMs,
) -> Result<Batches, ConsumerError> {
    let mut by_dt: BTreeMap<String, Vec<&Staged<'_>>> = BTreeMap::new();
    for r in rows {
        by_dt.entry(r.dt()).or_default().push(r);
    }
    let schema = columns.arrow_schema(table);
    // Columns this source does not fetch (another source's, deleted properties) stay null.
    let fetched: Vec<bool> = columns
        .columns
        .iter()
        .map(|c| c.fetched && c.sources.iter().any(|s| s == &source.object_type))
        .collect();
    let mut out = Batches::default();
    for (dt, rows) in by_dt {
        let n = rows.len();
        let mut key = Int64Builder::with_capacity(n);
        let ts = || TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
        let (mut created, mut modified, mut synced) = (ts(), ts(), ts());
        let mut archived = BooleanBuilder::with_capacity(n);
        let mut run = StringBuilder::new();
        let mut tag = StringBuilder::new();
        let mut prop_cols: Vec<ColumnBuilder> = columns
            .columns
            .iter()
            .map(|c| ColumnBuilder::new(c.ty, n))
            .collect();
        let mut uncast = uncast_builder();
        for r in &rows {
            match r {
                Staged::Record(r) => {
                    key.append_value(r.key);
                    created.append_option(r.created_ms);
                    modified.append_value(r.modified_ms);
                    archived.append_value(r.record.archived);
                    let mut any_uncast = false;
                    for ((col, spec), fetched) in prop_cols.iter_mut().zip(&columns.columns).zip(&fetched) {
                        if !fetched {
                            col.append_null();
                            continue;
                        }
                        let raw = r.record.properties.get(&spec.name).and_then(|v| v.as_deref());
                        match spec.ty.cast(raw) {
                            Ok(v) => col.append(v),
                            Err(schema::DoesNotCast) => {
                                col.append_null();
                                uncast.keys().append_value(&spec.name);
                                uncast.values().append_option(raw);
                                any_uncast = true;
                                *out.uncast.entry(spec.name.clone()).or_default() += 1;
                            }
                        }
                    }
                    uncast
                        .append(any_uncast)
                        .map_err(|e| ConsumerError::Stage(format!("building `_uncast`: {e}")))?;
                }
                Staged::Tombstone {
                    key: k, modified_ms, ..
                } => {
                    key.append_value(*k);
                    created.append_null();
                    modified.append_value(*modified_ms);
                    archived.append_value(true);
                    for col in prop_cols.iter_mut() {
                        col.append_null();
                    }
                    uncast
                        .append(false)
                        .map_err(|e| ConsumerError::Stage(format!("building `_uncast`: {e}")))?;
                }
            }
            tag.append_option(source.tag.as_deref());
            synced.append_value(synced_at);
            run.append_value(run_id);
        }
        let mut arrays: Vec<ArrayRef> = vec![
            Arc::new(key.finish()),
            Arc::new(created.finish()),
            Arc::new(modified.finish()),
            Arc::new(archived.finish()),
        ];
        if table.tag_column.is_some() {
            arrays.push(Arc::new(tag.finish()));
        }
        arrays.extend(prop_cols.iter_mut().map(ColumnBuilder::finish));
        arrays.push(Arc::new(uncast.finish()));
        arrays.push(Arc::new(synced.finish()));
        arrays.push(Arc::new(run.finish()));
        let batch = RecordBatch::try_new(schema.clone(), arrays)
            .map_err(|e| ConsumerError::Stage(format!("building the {dt} batch: {e}")))?;
        out.by_dt.insert(dt, batch);
    }
    Ok(out)
}

/// Encodes a batch as a Parquet file in memory (snappy); a column backfill's patch is marked
/// in the footer with the columns it patches ([`schema::PATCH_METADATA_KEY`]). A staged file
/// is read once, whole, by its partition's merge: no dictionaries and only chunk statistics
/// (no page index), which a page's few hundred rows would pay for in encoding time and a
/// merge would never use.
pub fn to_parquet(batch: &RecordBatch, patch: Option<&[String]>) -> Result<Vec<u8>, ConsumerError> {
    let mut props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::Chunk);
    if let Some(columns) = patch {
        props = props.set_key_value_metadata(Some(vec![parquet::file::metadata::KeyValue::new(
            schema::PATCH_METADATA_KEY.to_string(),
            columns.join(","),
        )]));
    }
    let props = props.build();
    let mut buf = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props))
        .map_err(|e| ConsumerError::Stage(e.to_string()))?;
    writer
        .write(batch)
        .map_err(|e| ConsumerError::Stage(e.to_string()))?;
    writer.close().map_err(|e| ConsumerError::Stage(e.to_string()))?;
    Ok(buf)
}

/// The quarantine file of a page's rejected records: one JSON object per line, the reason
/// and the record as HubSpot sent it (Q1).
pub fn rejected_jsonl(rejected: &[Rejected<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in rejected {
        // Serializing these plain structs cannot fail.
        out.extend(serde_json::to_vec(r).unwrap_or_default());
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::catalog::Catalog;

    fn record(id: &str, created: &str, modified: Option<&str>) -> ObjectRecord {
        let mut props = BTreeMap::new();
        props.insert("dealname".to_string(), Some("Ünïcode 🚀 deal".to_string()));
        props.insert("createdate".to_string(), Some(created.to_string()));
        if let Some(m) = modified {
            props.insert("hs_lastmodifieddate".to_string(), Some(m.to_string()));
        }
        ObjectRecord {
            id: id.into(),
            properties: props,
            created_at: created.into(),
            updated_at: modified.unwrap_or("").into(),
            archived: false,
            archived_at: None,
        }
    }

    #[test]
    fn rows_accept_iso_and_epoch_ms_and_set_aside_what_cannot_be_ordered_q1() {
        let cat = Catalog::default();
        let t = cat.table("deals").unwrap();
        let s = &t.sources[0];
        let iso = record("1", "2024-01-02T03:04:05.006Z", Some("2024-02-01T00:00:00Z"));
        assert_eq!(row(s, &iso).unwrap().created_ms, Some(1_704_164_645_006));
        let epoch = record("2", "1704164645006", Some("1706745600000"));
        assert_eq!(row(s, &epoch).unwrap().modified_ms, 1_706_745_600_000);
        let records = [
            record("3", "2024-01-02T03:04:05Z", None),
            record("x9", "2024-01-02T03:04:05Z", Some("2024-01-02T03:04:05Z")),
            record("-4", "2024-01-02T03:04:05Z", Some("2024-01-02T03:04:05Z")),
            record("5", "garbage", Some("2024-01-02T03:04:05Z")),
        ];
        let (rows, rejected) = validate(s, &records);
        let reasons: Vec<&str> = rejected.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(rejected.len(), 3, "{reasons:?}");
        assert!(reasons[0].contains("modified") && reasons[1].contains("not a positive number"));
        assert!(reasons[2].contains("`-4`"));
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].created_ms, rows[0].dt()),
            (None, "1970-01-01".to_string())
        );
        let lines = String::from_utf8(rejected_jsonl(&rejected)).unwrap();
        assert_eq!(lines.lines().count(), 3);
        assert!(lines.contains("\"id\":\"x9\"") && lines.contains("\"reason\""));
    }

    #[test]
    fn created_dates_outside_four_digit_years_land_at_the_ends() {
        let cat = Catalog::default();
        let s = &cat.table("deals").unwrap().sources[0];
        let old = record("1", "-2208988800000", Some("2024-01-01T00:00:00Z"));
        assert_eq!(row(s, &old).unwrap().dt(), "1900-01-01");
        let far = record("2", "253402300800000", Some("2024-01-01T00:00:00Z"));
        assert_eq!(row(s, &far).unwrap().dt(), "9999-12-31", "year 10000");
        let ancient = record("3", "-62200000000000", Some("2024-01-01T00:00:00Z"));
        assert_eq!(row(s, &ancient).unwrap().dt(), "0001-01-01");
    }

    /// The deals table with a typed schema: a string, a number, a multi-select.
    fn typed_deals() -> (TableSpec, TableSchema) {
        let t = Catalog::default().table("deals").unwrap().clone();
        let def = |name: &str, kind: &str, field: &str| wire::PropertyDefinition {
            name: name.into(),
            kind: kind.into(),
            field_type: field.into(),
            ..Default::default()
        };
        let discovered = [common::schema::Discovered {
            object_type: "deals".into(),
            properties: vec![
                def("dealname", "string", "text"),
                def("amount", "number", "number"),
                def("tags", "enumeration", "checkbox"),
            ],
        }];
        let schema = common::schema::evolve(None, &t, &discovered, "run-1", 1).schema;
        (t, schema)
    }

    #[test]
    fn one_batch_per_dt_with_the_run_schema_and_tombstones_k1() {
        let (t, cols) = typed_deals();
        let s = &t.sources[0];
        let mut recs = [
            record("1", "2024-01-02T23:59:59.999Z", Some("2024-03-01T00:00:00Z")),
            record("2", "2024-01-03T00:00:00.000Z", Some("2024-03-01T00:00:00Z")),
            record("3", "2024-01-02T00:00:00.000Z", Some("2024-03-01T00:00:00Z")),
        ];
        recs[0].properties.insert("amount".into(), Some("12.5".into()));
        recs[0].properties.insert("tags".into(), Some("a;b".into()));
        recs[2].properties.insert("amount".into(), Some("12;34".into()));
        let rows: Vec<Row<'_>> = recs.iter().map(|r| row(s, r).unwrap()).collect();
        let mut staged: Vec<Staged<'_>> = rows.iter().map(Staged::Record).collect();
        staged.push(Staged::Tombstone {
            key: 2,
            modified_ms: 5,
            dt: "2023-12-31".into(),
        });
        let out = batches_by_dt(&t, &cols, s, &staged, "run-1", 5).unwrap();
        let b = &out.by_dt;
        assert_eq!(
            b.keys().collect::<Vec<_>>(),
            ["2023-12-31", "2024-01-02", "2024-01-03"]
        );
        let day = &b["2024-01-02"];
        assert_eq!(day.num_rows(), 2);
        assert_eq!(day.schema(), cols.arrow_schema(&t));
        assert_eq!(out.uncast, BTreeMap::from([("amount".to_string(), 1)]));
        use datafusion::arrow::array::{Array, AsArray};
        use datafusion::arrow::datatypes::Float64Type;
        let amount = day
            .column_by_name("amount")
            .unwrap()
            .as_primitive::<Float64Type>();
        assert_eq!((amount.value(0), amount.is_null(1)), (12.5, true));
        let uncast = day.column_by_name("_uncast").unwrap().as_map();
        assert!(uncast.is_null(0));
        let entry = uncast.value(1);
        assert_eq!(entry.column(0).as_string::<i32>().value(0), "amount");
        assert_eq!(entry.column(1).as_string::<i32>().value(0), "12;34", "kept raw");
        let tags = day.column_by_name("tags").unwrap().as_list::<i32>();
        assert_eq!(
            tags.value(0)
                .as_string::<i32>()
                .iter()
                .flatten()
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(b["2023-12-31"].num_rows(), 1);
        assert!(!to_parquet(&b["2024-01-03"], None).unwrap().is_empty());
    }
}
