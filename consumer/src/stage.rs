//! Records → Arrow → one staged Parquet file per `dt`.
//!
//! Every row carries the key, `created_at` and `last_modified_at` (UTC ms), `archived`, the
//! tag column if the table has one, every catalog property as a string column (HubSpot sends
//! every value as a string; nothing is lost), `_synced_at` and `_run_id`. `dt` is the UTC date
//! of the created timestamp, which never changes, so a record never leaves its partition.

use std::collections::BTreeMap;
use std::sync::Arc;

use common::catalog::{SourceSpec, TableSpec};
use common::clock::{dt_of, EpochMs};
use common::hubspot::wire::{parse_ms, ObjectRecord};
use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Int64Builder, StringBuilder, TimestampMillisecondBuilder,
};
use datafusion::arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::ConsumerError;

/// One record, validated.
#[derive(Debug, Clone)]
pub struct Row<'a> {
    pub key: i64,
    pub created_ms: EpochMs,
    pub modified_ms: EpochMs,
    pub record: &'a ObjectRecord,
}

/// Validates a record: a numeric id, a created and a modified time (the property, or
/// `createdAt` / `updatedAt`, which HubSpot keeps equal to them).
pub fn row<'a>(source: &SourceSpec, record: &'a ObjectRecord) -> Result<Row<'a>, ConsumerError> {
    let key = record.id.trim().parse::<i64>().map_err(|_| {
        ConsumerError::BadRecord(format!(
            "{} id `{}` is not a number",
            source.object_type, record.id
        ))
    })?;
    let time = |prop: &str, fallback: &str, what: &str| {
        record
            .properties
            .get(prop)
            .and_then(|v| v.as_deref())
            .and_then(parse_ms)
            .or_else(|| parse_ms(fallback))
            .ok_or_else(|| {
                ConsumerError::BadRecord(format!(
                    "{} {key} has no readable {what} time (`{prop}` and its fallback are missing or malformed)",
                    source.object_type
                ))
            })
    };
    Ok(Row {
        key,
        created_ms: time(source.created_property(), &record.created_at, "created")?,
        modified_ms: time(source.modified_property(), &record.updated_at, "modified")?,
        record,
    })
}

/// Groups rows by `dt` and builds one batch per partition.
pub fn batches_by_dt(
    table: &TableSpec,
    source: &SourceSpec,
    rows: &[Row<'_>],
    run_id: &str,
    synced_at: EpochMs,
) -> Result<BTreeMap<String, RecordBatch>, ConsumerError> {
    let mut by_dt: BTreeMap<String, Vec<&Row<'_>>> = BTreeMap::new();
    for r in rows {
        let dt = dt_of(r.created_ms)
            .ok_or_else(|| ConsumerError::BadRecord(format!("created time {} out of range", r.created_ms)))?;
        by_dt.entry(dt).or_default().push(r);
    }
    let schema = table.arrow_schema();
    let props = table.property_columns();
    let mut out = BTreeMap::new();
    for (dt, rows) in by_dt {
        let n = rows.len();
        let mut key = Int64Builder::with_capacity(n);
        let ts = || TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
        let (mut created, mut modified, mut synced) = (ts(), ts(), ts());
        let mut archived = BooleanBuilder::with_capacity(n);
        let mut run = StringBuilder::new();
        let mut prop_cols: Vec<StringBuilder> = props.iter().map(|_| StringBuilder::new()).collect();
        for r in &rows {
            key.append_value(r.key);
            created.append_value(r.created_ms);
            modified.append_value(r.modified_ms);
            archived.append_value(r.record.archived);
            for (col, name) in prop_cols.iter_mut().zip(&props) {
                col.append_option(r.record.properties.get(name).and_then(|v| v.as_deref()));
            }
            synced.append_value(synced_at);
            run.append_value(run_id);
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(key.finish()),
            Arc::new(created.finish()),
            Arc::new(modified.finish()),
            Arc::new(archived.finish()),
        ];
        if table.tag_column.is_some() {
            let mut tag = StringBuilder::new();
            for _ in 0..n {
                tag.append_option(source.tag.as_deref());
            }
            columns.push(Arc::new(tag.finish()));
        }
        columns.extend(prop_cols.iter_mut().map(|c| Arc::new(c.finish()) as ArrayRef));
        columns.push(Arc::new(synced.finish()));
        columns.push(Arc::new(run.finish()));
        let batch = RecordBatch::try_new(schema.clone(), columns)
            .map_err(|e| ConsumerError::Stage(format!("building the {dt} batch: {e}")))?;
        out.insert(dt, batch);
    }
    Ok(out)
}

/// Encodes a batch as a Parquet file in memory (snappy).
pub fn to_parquet(batch: &RecordBatch) -> Result<Vec<u8>, ConsumerError> {
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut buf = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props))
        .map_err(|e| ConsumerError::Stage(e.to_string()))?;
    writer
        .write(batch)
        .map_err(|e| ConsumerError::Stage(e.to_string()))?;
    writer.close().map_err(|e| ConsumerError::Stage(e.to_string()))?;
    Ok(buf)
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
    fn rows_accept_iso_and_epoch_ms_and_reject_missing_times() {
        let cat = Catalog::default();
        let t = cat.table("deals").unwrap();
        let s = &t.sources[0];
        let iso = record("1", "2024-01-02T03:04:05.006Z", Some("2024-02-01T00:00:00Z"));
        assert_eq!(row(s, &iso).unwrap().created_ms, 1_704_164_645_006);
        let epoch = record("2", "1704164645006", Some("1706745600000"));
        assert_eq!(row(s, &epoch).unwrap().modified_ms, 1_706_745_600_000);
        let missing = record("3", "2024-01-02T03:04:05Z", None);
        assert!(row(s, &missing).unwrap_err().to_string().contains("modified"));
        let bad_id = record("x9", "2024-01-02T03:04:05Z", Some("2024-01-02T03:04:05Z"));
        assert!(row(s, &bad_id).unwrap_err().to_string().contains("not a number"));
    }

    #[test]
    fn one_batch_per_dt_with_the_catalog_schema() {
        let cat = Catalog::default();
        let t = cat.table("deals").unwrap();
        let s = &t.sources[0];
        let recs = [
            record("1", "2024-01-02T23:59:59.999Z", Some("2024-03-01T00:00:00Z")),
            record("2", "2024-01-03T00:00:00.000Z", Some("2024-03-01T00:00:00Z")),
            record("3", "2024-01-02T00:00:00.000Z", Some("2024-03-01T00:00:00Z")),
        ];
        let rows: Vec<_> = recs.iter().map(|r| row(s, r).unwrap()).collect();
        let b = batches_by_dt(t, s, &rows, "run-1", 5).unwrap();
        assert_eq!(b.keys().collect::<Vec<_>>(), ["2024-01-02", "2024-01-03"]);
        assert_eq!(b["2024-01-02"].num_rows(), 2);
        assert_eq!(b["2024-01-02"].schema(), t.arrow_schema());
        assert!(!to_parquet(&b["2024-01-03"]).unwrap().is_empty());
    }
}
