//! Building a table's key index (K1) at commit, from the published files of its partitions.
//!
//! A full run's index is its partitions' keys. An incremental run's is the previous version
//! with the entries of every partition it touched replaced by what those partitions hold now
//! (a moved record's tombstone emptied its old partition of it, the merge of the new one
//! added it). Without a previous version (a lake from before the index) every partition is
//! read. The new version is written under the run's id and the table's pointer moved to it
//! only forwards (G2); the version it replaced is deleted.

use std::collections::BTreeSet;
use std::sync::Arc;

use common::clock::day_of_dt;
use common::keyindex::KeyIndex;
use common::pipeline::Pipeline;
use common::ports::{IndexVersion, Run, RunMode};
use datafusion::arrow::array::{Array, Int64Array};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::file::metadata::ParquetMetaData;

use crate::MergerError;

/// Partitions whose keys are read at once.
const READ_CONCURRENCY: usize = 16;

/// Writes the run's version of its table's key index and moves the pointer to it.
pub async fn update(p: &Pipeline, run: &Run, touched: &BTreeSet<String>) -> Result<(), MergerError> {
    let table = &crate::table_spec(p, &run.table).await?;
    if table.snapshot.is_some() {
        // A snapshot is read whole by every run: no record moves, nothing to look up.
        return Ok(());
    }
    let previous = p.ledger.index_version(&run.table).await?;
    // The version the run's pages read, whose touched days are replaced (an incremental run).
    let base: Option<Arc<KeyIndex>> = match (&run.mode, &previous) {
        (RunMode::Incremental, Some(v)) => Some(match p.indexes.cached(&run.run_id, &v.run_id) {
            Some(cached) => cached,
            None => Arc::new(KeyIndex::read(&p.lake, &run.table, &v.run_id).await?),
        }),
        _ => None,
    };
    let read: Vec<String> = match (&run.mode, &previous) {
        (RunMode::Incremental, None) => p.lake.partitions(&run.table).await?,
        _ => touched.iter().cloned().collect(),
    };
    let mut pairs = Vec::new();
    let files = published_files(p, &run.table, &read).await?;
    let key = table.key_column.clone();
    let read_keys: Vec<Vec<(i64, i64)>> = futures::stream::iter(files.into_iter().map(|(day, path)| {
        let key = key.clone();
        async move {
            let keys = read_keys(p, &path, &key).await?;
            Ok::<_, MergerError>(keys.into_iter().map(|k| (k, day)).collect())
        }
    }))
    .buffer_unordered(READ_CONCURRENCY)
    .try_collect()
    .await?;
    pairs.extend(read_keys.into_iter().flatten());
    let index = match base {
        Some(old) => {
            let days: BTreeSet<i64> = touched.iter().filter_map(|d| day_of_dt(d)).collect();
            old.replacing_days(&days, pairs)
        }
        None => KeyIndex::from_pairs(pairs),
    };
    index.write(&p.lake, &run.table, &run.run_id).await?;
    let version = IndexVersion {
        run_id: run.run_id.clone(),
        started_at_ms: run.started_at_ms,
    };
    if !p.ledger.set_index_version(&run.table, &version).await? {
        let current = p.ledger.index_version(&run.table).await?;
        if current.as_ref().is_some_and(|c| c.run_id != run.run_id) {
            // A later run's index is current: this commit resumed late (G2). Its file goes.
            p.lake.delete(&p.lake.index_file(&run.table, &run.run_id)).await?;
        }
        // Else this run's own version is current already (a redelivered commit).
        return Ok(());
    }
    if let Some(old) = previous.filter(|v| v.run_id != run.run_id) {
        p.lake.delete(&p.lake.index_file(&run.table, &old.run_id)).await?;
    }
    tracing::debug!(run_id = %run.run_id, table = %run.table, keys = index.len(),
        partitions_read = read.len(), "key index written");
    Ok(())
}

/// The published files of `dts` (the ones their partitions' generation records name), with
/// their day.
async fn published_files(p: &Pipeline, table: &str, dts: &[String]) -> Result<Vec<(i64, Path)>, MergerError> {
    let heads = p.ledger.partitions(table, dts).await?;
    let mut out = Vec::new();
    for dt in dts {
        let Some(day) = day_of_dt(dt) else { continue };
        if let Some(f) = heads.get(dt).and_then(|h| h.file.as_ref()) {
            out.push((day, p.lake.live_file(table, dt, f)));
        }
    }
    Ok(out)
}

/// The key column of one Parquet file: its footer in one request, then the key column's
/// chunks only.
async fn read_keys(p: &Pipeline, path: &Path, key: &str) -> Result<Vec<i64>, MergerError> {
    let bad = |e: String| MergerError::Merge(format!("reading the keys of {path}: {e}"));
    let keys = crate::merge::MergeKeys {
        key: key.to_string(),
        modified: common::catalog::columns::LAST_MODIFIED_AT.into(),
        column_order: Vec::new(),
        drop_archived: false,
        set_columns: Vec::new(),
        memory_limit: None,
        schema: None,
    };
    let checked = crate::merge::check_inputs(p.lake.store(), std::slice::from_ref(path), &keys)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| bad("no footer".into()))?;
    let reader = StoreReader {
        store: Arc::clone(p.lake.store()),
        path: path.clone(),
        metadata: checked.metadata,
        whole: checked.whole,
    };
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| bad(e.to_string()))?;
    let index = builder
        .schema()
        .index_of(key)
        .map_err(|_| bad(format!("no `{key}` column")))?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), [index]);
    let mut stream = builder
        .with_projection(mask)
        .build()
        .map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| bad(e.to_string()))?;
        let column = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| bad(format!("`{key}` is not int64")))?;
        out.extend(column.iter().flatten());
    }
    Ok(out)
}

/// A Parquet file in the lake's store whose footer was read already (and, for a small file,
/// all of it: its ranges are then cut from those bytes, with no request).
struct StoreReader {
    store: Arc<dyn object_store::ObjectStore>,
    path: Path,
    metadata: Arc<ParquetMetaData>,
    whole: Option<bytes::Bytes>,
}

impl AsyncFileReader for StoreReader {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> futures::future::BoxFuture<'_, parquet::errors::Result<bytes::Bytes>> {
        use futures::FutureExt;
        use object_store::ObjectStoreExt;
        async move {
            if let Some(all) = &self.whole {
                let (start, end) = (range.start as usize, range.end as usize);
                return match all.get(start..end) {
                    Some(_) => Ok(all.slice(start..end)),
                    None => Err(parquet::errors::ParquetError::EOF(format!(
                        "{}: range {start}..{end} past its {} bytes",
                        self.path,
                        all.len()
                    ))),
                };
            }
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> futures::future::BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        use futures::FutureExt;
        futures::future::ready(Ok(self.metadata.clone())).boxed()
    }
}
