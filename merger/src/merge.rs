//! Keep-latest-per-key over Parquet files, into one new file.
//!
//! The inputs (live files and staged files) are read as one table whose schema is the union of
//! their schemas by column name; a column missing from an older file reads as null. Per key the
//! row with the greatest `last_modified_at`, then `_synced_at`, then `_run_id` survives, so the
//! result does not depend on the order in which pages or merges ran; a null version (or a column
//! the file lacks) is older than any value. Archived survivors are dropped: the lake mirrors
//! HubSpot's live records. The output is sorted by key.
//!
//! [`merge_files`] runs the fast path of [`crate::keep_latest`] and, where that declines (too
//! little memory, inputs it does not handle), a DataFusion query whose sorts spill to disk
//! within the memory limit. Both give the same rows.

use std::sync::Arc;

use common::catalog::columns;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::context::SessionContext;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionConfig};
use futures::StreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::ObjectStore;
use object_store::{GetOptions, GetRange, ObjectStoreExt};
use parquet::arrow::async_writer::AsyncArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::WriterProperties;

use crate::keep_latest::{self, FastPathError};
use crate::MergerError;

/// Below this limit a merge sorts as one stream (see [`merge_files`]).
const PARALLEL_SORT_MIN_MEMORY: usize = 256 << 20;

/// The URL the lake's object store is registered under inside DataFusion.
const LAKE_URL: &str = "hubsync-lake://lake/";

/// What a merge read and wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeStats {
    pub input_files: usize,
    /// Bytes of the input files (their sizes as listed).
    pub bytes_in: u64,
    pub rows_out: u64,
}

/// Which columns identify and order versions of a record.
#[derive(Debug, Clone)]
pub struct MergeKeys {
    pub key: String,
    pub modified: String,
    /// Preferred output column order (the catalog's); other input columns follow, sorted.
    pub column_order: Vec<String>,
    /// Drop survivors whose `archived` is true (when the column exists).
    pub drop_archived: bool,
    /// Empty: one row per key survives. Otherwise a link table's rows: every row of a key's
    /// latest version survives (its set of links, each once by these columns), so a link
    /// the latest version lacks is gone.
    pub set_columns: Vec<String>,
    /// Bytes the merge may hold; past them its sorts spill to temporary files instead of
    /// failing. `None`: unbounded.
    pub memory_limit: Option<usize>,
    /// The table's schema, when known: the output has exactly its columns and types, an input
    /// column of another type is cast to it (a property widened to string, E3) and a column an
    /// input lacks reads as null. `None`: the union of the inputs' schemas.
    pub schema: Option<SchemaRef>,
}

/// Bytes read from the end of an input to find its footer.
const FOOTER_READ: u64 = 64 * 1024;

/// An input whose footer was read and checked.
pub(crate) struct CheckedInput {
    pub path: Path,
    pub size: u64,
    pub metadata: Arc<ParquetMetaData>,
    /// The whole file, when the footer's read already fetched all of it (a file under
    /// [`FOOTER_READ`], as most staged pages of a sparse table are): no second GET.
    pub whole: Option<bytes::Bytes>,
}

/// Reads every input's footer: each must be Parquet with the key and modified columns. A file
/// without them would otherwise read as nulls under the union of schemas and collapse rows.
pub(crate) async fn check_inputs(
    store: &Arc<dyn ObjectStore>,
    inputs: &[Path],
    keys: &MergeKeys,
) -> Result<Vec<CheckedInput>, MergerError> {
    futures::future::try_join_all(inputs.iter().map(|path| async move {
        check_input(store, path, keys, false)
            .await?
            .ok_or_else(|| MergerError::Merge(format!("{path} vanished while it was read")))
    }))
    .await
}

/// [`check_inputs`] of staged files, leaving out those that are gone: a staged file is deleted
/// only once a published generation holds its rows (M1), so a missing one was merged already
/// (by an earlier delivery of the task, or a task of the same partition that named it too).
pub(crate) async fn check_staged(
    store: &Arc<dyn ObjectStore>,
    inputs: &[Path],
    keys: &MergeKeys,
) -> Result<Vec<CheckedInput>, MergerError> {
    let checked =
        futures::future::try_join_all(inputs.iter().map(|path| check_input(store, path, keys, true))).await?;
    Ok(checked.into_iter().flatten().collect())
}

/// The footer of `path`, checked; `None` when the file is missing and `missing_ok`.
async fn check_input(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    keys: &MergeKeys,
    missing_ok: bool,
) -> Result<Option<CheckedInput>, MergerError> {
    let bad = |why: String| {
        MergerError::Merge(format!(
            "{path} is not a readable Parquet file ({why}); move it away (or restore it) and replay the task"
        ))
    };
    // One request for the file's tail: it holds the whole footer unless that is unusually big.
    let got = match store
        .get_opts(
            path,
            GetOptions::default().with_range(Some(GetRange::Suffix(FOOTER_READ))),
        )
        .await
    {
        Ok(got) => got,
        Err(object_store::Error::NotFound { .. }) if missing_ok => {
            tracing::debug!(%path, "a staged input is gone: merged already");
            return Ok(None);
        }
        Err(e) => return Err(bad(e.to_string())),
    };
    let size = got.meta.size;
    let tail = got.bytes().await.map_err(|e| bad(e.to_string()))?;
    if size < 12 || tail.len() < 8 {
        return Err(bad(format!("{size} bytes")));
    }
    let end = &tail[tail.len() - 8..];
    if &end[4..8] != b"PAR1" {
        return Err(bad("no Parquet footer: truncated or not Parquet".into()));
    }
    let len = u64::from(u32::from_le_bytes([end[0], end[1], end[2], end[3]]));
    if len + 12 > size {
        return Err(bad(format!("footer of {len} bytes in a {size}-byte file")));
    }
    let footer = if len + 8 <= tail.len() as u64 {
        tail.slice(tail.len() - 8 - len as usize..tail.len() - 8)
    } else {
        store
            .get_range(path, size - 8 - len..size - 8)
            .await
            .map_err(|e| bad(e.to_string()))?
    };
    let metadata = ParquetMetaDataReader::decode_metadata(&footer).map_err(|e| bad(e.to_string()))?;
    let schema = metadata.file_metadata().schema_descr();
    for needed in [&keys.key, &keys.modified] {
        if !schema
            .root_schema()
            .get_fields()
            .iter()
            .any(|f| f.name() == needed.as_str())
        {
            return Err(MergerError::Merge(format!(
                "{path} has no `{needed}` column; move it away (or restore it) and replay the task"
            )));
        }
    }
    Ok(Some(CheckedInput {
        path: path.clone(),
        size,
        metadata: Arc::new(metadata),
        whole: (tail.len() as u64 == size).then_some(tail),
    }))
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Merges `inputs` (paths in `store`) into `output` (see the module doc). Inputs must be
/// non-empty.
pub async fn merge_files(
    store: Arc<dyn ObjectStore>,
    inputs: &[Path],
    output: &Path,
    keys: &MergeKeys,
) -> Result<MergeStats, MergerError> {
    // No inputs: none checked, and merge_checked_files refuses them.
    let checked = check_inputs(&store, inputs, keys).await?;
    merge_checked_files(store, &checked, output, keys).await
}

/// [`merge_files`] of inputs whose footers were read already (non-empty).
pub(crate) async fn merge_checked_files(
    store: Arc<dyn ObjectStore>,
    checked: &[CheckedInput],
    output: &Path,
    keys: &MergeKeys,
) -> Result<MergeStats, MergerError> {
    if checked.is_empty() {
        return Err(MergerError::Merge("no input files".into()));
    }
    let inputs: Vec<Path> = checked.iter().map(|c| c.path.clone()).collect();
    let bytes_in = checked.iter().map(|c| c.size).sum();
    let stats = merge_checked(store, &inputs, checked, output, keys).await?;
    Ok(MergeStats { bytes_in, ..stats })
}

async fn merge_checked(
    store: Arc<dyn ObjectStore>,
    inputs: &[Path],
    checked: &[CheckedInput],
    output: &Path,
    keys: &MergeKeys,
) -> Result<MergeStats, MergerError> {
    let widened = with_extra_columns(checked, keys)?;
    let keys = widened.as_ref().unwrap_or(keys);
    if !keys.set_columns.is_empty() {
        return merge_with_datafusion(store, inputs, output, keys).await;
    }
    match keep_latest::merge(store.clone(), checked, output, keys).await {
        Ok(stats) => return Ok(stats),
        Err(FastPathError::Failed(e)) => return Err(e),
        Err(FastPathError::Declined(why)) => tracing::debug!(%why, "merging with DataFusion"),
    }
    merge_with_datafusion(store, inputs, output, keys).await
}

/// `keys` with the table's schema widened by the columns some input has and the schema does
/// not (appended, sorted by name): a column nobody declared is kept, never silently dropped.
/// `None` when there are none (or no schema).
fn with_extra_columns(checked: &[CheckedInput], keys: &MergeKeys) -> Result<Option<MergeKeys>, MergerError> {
    let Some(target) = &keys.schema else {
        return Ok(None);
    };
    let mut extra: Vec<datafusion::arrow::datatypes::FieldRef> = Vec::new();
    for input in checked {
        let file = input.metadata.file_metadata();
        let schema = parquet::arrow::parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata())
            .map_err(|e| MergerError::Merge(format!("{}: {e}", input.path)))?;
        for f in schema.fields() {
            if target.field_with_name(f.name()).is_err() && !extra.iter().any(|e| e.name() == f.name()) {
                extra.push(Arc::new(f.as_ref().clone().with_nullable(true)));
            }
        }
    }
    if extra.is_empty() {
        return Ok(None);
    }
    extra.sort_by(|a, b| a.name().cmp(b.name()));
    tracing::warn!(columns = ?extra.iter().map(|f| f.name().as_str()).collect::<Vec<_>>(),
        "inputs hold columns the table's schema does not have; they are kept");
    let fields: Vec<datafusion::arrow::datatypes::FieldRef> =
        target.fields().iter().cloned().chain(extra).collect();
    let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(fields));
    Ok(Some(MergeKeys {
        column_order: schema.fields().iter().map(|f| f.name().clone()).collect(),
        schema: Some(schema),
        ..keys.clone()
    }))
}

/// The merge as a DataFusion query: sorts that spill to disk within `keys.memory_limit`.
pub(crate) async fn merge_with_datafusion(
    store: Arc<dyn ObjectStore>,
    inputs: &[Path],
    output: &Path,
    keys: &MergeKeys,
) -> Result<MergeStats, MergerError> {
    let ctx = session(keys)?;
    let schema = register_inputs(&ctx, &store, inputs, keys).await?;
    let result = ctx.sql(&keep_latest_sql(&schema, keys)).await?;
    let rows_out = write_output(store, output, result).await?;
    Ok(MergeStats {
        input_files: inputs.len(),
        bytes_in: 0,
        rows_out,
    })
}

/// A DataFusion session whose memory pool and sorts keep within `keys.memory_limit`.
fn session(keys: &MergeKeys) -> Result<SessionContext, MergerError> {
    let mut config = SessionConfig::new().with_target_partitions(2);
    let mut runtime = RuntimeEnvBuilder::new();
    if let Some(limit) = keys.memory_limit {
        // Fair: each spilling sort gets an equal part, so one cannot starve the other's merge.
        runtime = runtime.with_memory_pool(Arc::new(FairSpillPool::new(limit)));
        // Under a limit: plain strings (views over whole Parquet pages count those pages
        // against the pool), and room held back for merging spilled runs in proportion.
        let options = config.options_mut();
        options.execution.parquet.schema_force_view_types = false;
        options.execution.sort_spill_reservation_bytes = (limit / 8).min(10 << 20);
    }
    if keys.memory_limit.is_some_and(|l| l < PARALLEL_SORT_MIN_MEMORY) {
        // One sorted stream: the final merge of parallel sorts cannot spill, and in a small
        // pool it would starve beside them. Merges of different partitions run in parallel.
        config = config.with_batch_size(4096).with_target_partitions(1);
    }
    Ok(SessionContext::new_with_config_rt(config, runtime.build_arc()?))
}

/// Registers the inputs as the table `inputs`; returns its schema, checked for the key and modified columns.
async fn register_inputs(
    ctx: &SessionContext,
    store: &Arc<dyn ObjectStore>,
    inputs: &[Path],
    keys: &MergeKeys,
) -> Result<SchemaRef, MergerError> {
    let url = url::Url::parse(LAKE_URL).map_err(|e| MergerError::Merge(e.to_string()))?;
    ctx.register_object_store(&url, store.clone());
    let paths: Vec<String> = inputs.iter().map(|p| format!("{LAKE_URL}{p}")).collect();
    let mut options = ParquetReadOptions::default().parquet_pruning(false);
    if let Some(schema) = &keys.schema {
        options = options.schema(schema.as_ref());
    }
    let df = ctx.read_parquet(paths, options).await?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    for needed in [&keys.key, &keys.modified] {
        if schema.field_with_name(needed).is_err() {
            return Err(MergerError::Merge(format!(
                "input files have no `{needed}` column (columns: {})",
                schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    ctx.register_table("inputs", df.into_view())?;
    Ok(schema)
}

/// The keep-latest-per-key query over `inputs` (see the module doc), sorted by key.
fn keep_latest_sql(schema: &SchemaRef, keys: &MergeKeys) -> String {
    let has = |c: &str| schema.field_with_name(c).is_ok();
    // NULLS LAST: a null version is older than any value (DataFusion puts nulls first in DESC).
    let mut order_by = vec![format!("{} DESC NULLS LAST", quote(&keys.modified))];
    for tiebreak in [columns::SYNCED_AT, columns::RUN_ID] {
        if has(tiebreak) {
            order_by.push(format!("{} DESC NULLS LAST", quote(tiebreak)));
        }
    }
    let filter = if keys.drop_archived && has(columns::ARCHIVED) {
        format!(" AND {} IS NOT TRUE", quote(columns::ARCHIVED))
    } else {
        String::new()
    };
    let select = output_columns(schema, keys)
        .iter()
        .map(|c| quote(c))
        .collect::<Vec<_>>()
        .join(", ");
    if !keys.set_columns.is_empty() {
        // Every row of the key's latest version (rank, not row number: its links tie), each
        // link once (a record read twice in one run at one instant stages its set twice).
        let link = std::iter::once(&keys.key)
            .chain(&keys.set_columns)
            .map(|c| quote(c))
            .collect::<Vec<_>>()
            .join(", ");
        return format!(
            "SELECT {select} FROM (SELECT *, rank() OVER (PARTITION BY {key} ORDER BY {order}) AS __hubsync_rank, \
             row_number() OVER (PARTITION BY {link} ORDER BY {order}) AS __hubsync_rn FROM inputs) \
             WHERE __hubsync_rank = 1 AND __hubsync_rn = 1{filter} ORDER BY {link}",
            key = quote(&keys.key),
            order = order_by.join(", "),
        );
    }
    format!(
        "SELECT {select} FROM (SELECT *, row_number() OVER (PARTITION BY {key} ORDER BY {order}) AS __hubsync_rn FROM inputs) \
         WHERE __hubsync_rn = 1{filter} ORDER BY {key}",
        key = quote(&keys.key),
        order = order_by.join(", "),
    )
}

/// The output's columns: those of `keys.column_order` the inputs have, then the others, sorted.
fn output_columns(schema: &SchemaRef, keys: &MergeKeys) -> Vec<String> {
    let mut ordered: Vec<String> = keys
        .column_order
        .iter()
        .filter(|c| schema.field_with_name(c).is_ok())
        .cloned()
        .collect();
    let mut extra: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| !ordered.contains(n))
        .collect();
    extra.sort();
    ordered.extend(extra);
    ordered
}

/// Streams the query's rows into `output` as one Snappy Parquet file; returns the rows written.
async fn write_output(
    store: Arc<dyn ObjectStore>,
    output: &Path,
    result: DataFrame,
) -> Result<u64, MergerError> {
    let out_schema: SchemaRef = Arc::new(result.schema().as_arrow().clone());
    let mut stream = result.execute_stream().await?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let object_writer = BufWriter::new(store, output.clone());
    let mut writer = AsyncArrowWriter::try_new(object_writer, out_schema, Some(props))
        .map_err(|e| MergerError::Merge(e.to_string()))?;
    let mut rows_out = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        rows_out += batch.num_rows() as u64;
        writer
            .write(&batch)
            .await
            .map_err(|e| MergerError::Merge(format!("writing {output}: {e}")))?;
    }
    writer
        .close()
        .await
        .map_err(|e| MergerError::Merge(format!("closing {output}: {e}")))?;
    Ok(rows_out)
}
