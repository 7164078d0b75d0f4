//! A column backfill's patches (E2), written into a merged partition.
//!
//! A patch row carries a record's key, its version (`last_modified_at`) as HubSpot had it when
//! the backfill read it, and the values of the patched columns. It is applied to the row of the
//! same key when the patch is at the row's version or newer: the values belong to that version
//! (or to a newer one, which the next incremental run brings whole). A row newer than the patch
//! was fetched with every column already and keeps its own. A patch with no row (the record
//! left the partition, or is not at rest yet) is dropped: it cannot make a record.
//!
//! `_uncast` is rebuilt for a patched row: the row's entries for the columns not patched, then
//! the patch's, so no raw value is lost. Patches are rare (one backfill per new column), so this
//! holds the partition in memory, after the ordinary merge wrote it.

use std::collections::HashMap;
use std::sync::Arc;

use common::catalog::columns;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, MapBuilder, MapFieldNames, RecordBatch, StringBuilder,
};
use datafusion::arrow::compute::{concat_batches, interleave};
use datafusion::arrow::datatypes::{Int64Type, TimestampMillisecondType};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::merge::MergeKeys;
use crate::MergerError;

fn failed(e: impl std::fmt::Display) -> MergerError {
    MergerError::Merge(format!("applying a column backfill: {e}"))
}

async fn read_all(store: &Arc<dyn ObjectStore>, path: &Path) -> Result<Vec<RecordBatch>, MergerError> {
    let bytes = store
        .get(path)
        .await
        .map_err(|e| failed(format!("reading {path}: {e}")))?
        .bytes()
        .await
        .map_err(|e| failed(format!("reading {path}: {e}")))?;
    ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| failed(format!("{path}: {e}")))?
        .build()
        .map_err(|e| failed(format!("{path}: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failed(format!("{path}: {e}")))
}

/// Applies `patches` to the merged file `base` and writes the result to `output`; returns the
/// rows written (those of `base`) and how many were patched.
pub async fn apply(
    store: Arc<dyn ObjectStore>,
    base: &Path,
    patches: &[Path],
    output: &Path,
    keys: &MergeKeys,
) -> Result<(u64, u64), MergerError> {
    let base_batches = read_all(&store, base).await?;
    let Some(first) = base_batches.first() else {
        return Err(failed(format!("{base} holds no rows")));
    };
    let schema = first.schema();
    let base = concat_batches(&schema, &base_batches).map_err(failed)?;
    let mut patch_batches = Vec::new();
    for p in patches {
        patch_batches.extend(read_all(&store, p).await?);
    }
    let Some(patch_schema) = patch_batches.first().map(RecordBatch::schema) else {
        return Ok((base.num_rows() as u64, 0));
    };
    let patch = concat_batches(&patch_schema, &patch_batches).map_err(failed)?;
    let key_of = |b: &RecordBatch| -> Result<ArrayRef, MergerError> {
        b.column_by_name(&keys.key)
            .cloned()
            .ok_or_else(|| failed(format!("no `{}` column", keys.key)))
    };
    let version_of = |b: &RecordBatch| -> Result<ArrayRef, MergerError> {
        b.column_by_name(&keys.modified)
            .cloned()
            .ok_or_else(|| failed(format!("no `{}` column", keys.modified)))
    };
    let (pk, pv) = (key_of(&patch)?, version_of(&patch)?);
    let (pk, pv) = (
        pk.as_primitive::<Int64Type>(),
        pv.as_primitive::<TimestampMillisecondType>(),
    );
    // The newest patch per key.
    let mut newest: HashMap<i64, (i64, usize)> = HashMap::with_capacity(pk.len());
    for i in 0..pk.len() {
        let entry = newest.entry(pk.value(i)).or_insert((pv.value(i), i));
        if pv.value(i) > entry.0 {
            *entry = (pv.value(i), i);
        }
    }
    let (bk, bv) = (key_of(&base)?, version_of(&base)?);
    let (bk, bv) = (
        bk.as_primitive::<Int64Type>(),
        bv.as_primitive::<TimestampMillisecondType>(),
    );
    let applies: Vec<Option<usize>> = (0..base.num_rows())
        .map(|i| {
            newest
                .get(&bk.value(i))
                .filter(|(version, _)| bv.is_null(i) || *version >= bv.value(i))
                .map(|(_, row)| *row)
        })
        .collect();
    let patched_rows = applies.iter().flatten().count() as u64;
    let patched: Vec<String> = patch_schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| schema.field_with_name(n).is_ok())
        .filter(|n| {
            ![
                keys.key.as_str(),
                keys.modified.as_str(),
                columns::CREATED_AT,
                columns::ARCHIVED,
                columns::SYNCED_AT,
                columns::RUN_ID,
                columns::UNCAST,
            ]
            .contains(&n.as_str())
        })
        .collect();
    let indices: Vec<(usize, usize)> = applies
        .iter()
        .enumerate()
        .map(|(i, a)| a.map_or((0, i), |row| (1, row)))
        .collect();
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let name = field.name();
        let column = base.column_by_name(name).cloned().ok_or_else(|| failed(name))?;
        let array = if patched.contains(name) {
            let from = patch.column_by_name(name).ok_or_else(|| failed(name))?;
            interleave(&[column.as_ref(), from.as_ref()], &indices).map_err(failed)?
        } else if name == columns::UNCAST {
            uncast(&column, patch.column_by_name(columns::UNCAST), &applies, &patched)?
        } else {
            column
        };
        arrays.push(array);
    }
    let out = RecordBatch::try_new(schema.clone(), arrays).map_err(failed)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut buf = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buf, schema, Some(props)).map_err(failed)?;
    writer.write(&out).map_err(failed)?;
    writer.close().map_err(failed)?;
    store
        .put(output, PutPayload::from(buf))
        .await
        .map_err(|e| failed(format!("writing {output}: {e}")))?;
    Ok((out.num_rows() as u64, patched_rows))
}

/// `_uncast` of the patched rows: the row's entries for columns not patched, then the patch's.
fn uncast(
    base: &ArrayRef,
    patch: Option<&ArrayRef>,
    applies: &[Option<usize>],
    patched: &[String],
) -> Result<ArrayRef, MergerError> {
    let names = MapFieldNames {
        entry: "entries".into(),
        key: "keys".into(),
        value: "values".into(),
    };
    let mut out = MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new());
    let base = base.as_map();
    let patch = patch.map(|p| p.as_map());
    for (i, applied) in applies.iter().enumerate() {
        let mut any = false;
        let mut copy = |map: &datafusion::arrow::array::MapArray, row: usize, keep: &dyn Fn(&str) -> bool| {
            if map.is_null(row) {
                return;
            }
            let entries = map.value(row);
            let (k, v) = (
                entries.column(0).as_string::<i32>(),
                entries.column(1).as_string::<i32>(),
            );
            for j in 0..k.len() {
                if keep(k.value(j)) {
                    out.keys().append_value(k.value(j));
                    out.values().append_option((!v.is_null(j)).then(|| v.value(j)));
                    any = true;
                }
            }
        };
        match applied {
            None => copy(base, i, &|_| true),
            Some(row) => {
                copy(base, i, &|k| !patched.iter().any(|p| p == k));
                if let Some(patch) = patch {
                    copy(patch, *row, &|_| true);
                }
            }
        }
        out.append(any).map_err(failed)?;
    }
    Ok(Arc::new(out.finish()))
}
