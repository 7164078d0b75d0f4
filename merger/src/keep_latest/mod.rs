//! Keep-latest-per-key in two passes over the inputs, without a SQL engine: the merge's fast
//! path. Same result as the DataFusion path in [`crate::merge`], in a quarter of its time on the
//! merge benchmark and a third of its memory.
//!
//! 1. [`winners`]: read only the key and version columns of every input and decide, per key,
//!    which row survives. The result is the output row by row, as (input, row) pairs in key
//!    order.
//! 2. [`write`]: read the full columns and write each output column from them, columns encoded
//!    in parallel, row group by row group. A key-sorted input (the live file the merger writes,
//!    and staged files, which are sorted within their page) is read once, front to back; an
//!    input that is not is held whole.
//!
//! It declines ([`FastPathError::Declined`]), and the merge runs on DataFusion instead, when it
//! cannot keep the merge's memory limit or does not handle the inputs: a column
//! whose type differs between inputs, null keys, keys that are neither integers nor strings.
//! Memory is estimated from the footers before each phase and phase 1 stops past its share;
//! nothing is written before the last decision, so a decline leaves no output behind.

mod input;
mod parallel;
mod source;
mod store;
mod winners;
mod write;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use common::catalog::columns;
use datafusion::arrow::array::Array;
use datafusion::arrow::compute::kernels::partition::partition;
use datafusion::arrow::compute::sort;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::ObjectStore;
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use tokio::runtime::Handle;

use self::input::{Input, Layout};
use self::source::WINDOW_BYTES;
use self::winners::{Versions, Winners};
use self::write::{WritePlan, READ_BATCH_ROWS};
use crate::merge::{CheckedInput, MergeKeys, MergeStats};
use crate::MergerError;

/// Rows sampled per column to choose its encoding.
const SAMPLE_ROWS: usize = 8192;

/// Output row groups aim at this many encoded bytes (less under a small memory limit).
const ROW_GROUP_BYTES: u64 = 64 << 20;

/// Inputs up to this size are fetched whole, once: one request instead of one per column chunk
/// (staged files are one page of records, a few hundred KiB).
const SMALL_INPUT_BYTES: u64 = 8 << 20;

/// Merges of at most this many input rows run on one thread, columns unsampled.
const SMALL_MERGE_ROWS: u64 = SAMPLE_ROWS as u64;

/// Output row groups hold at most this many rows (Parquet's default).
const ROW_GROUP_MAX_ROWS: u64 = 1 << 20;

/// Why the fast path did not merge.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FastPathError {
    /// It does not apply (see the module doc); the merge should run on DataFusion. Not an error.
    #[error("the fast path declined: {0}")]
    Declined(String),
    /// It applied and failed, as the DataFusion path would have.
    #[error(transparent)]
    Failed(#[from] MergerError),
}

/// Sizes the tests shrink to reach row group boundaries and ranged reads with little data.
#[derive(Debug, Clone, Copy)]
struct Tuning {
    /// Rows per output row group; `None`: from the inputs and the limit.
    rows_per_group: Option<usize>,
    /// Inputs up to this size are fetched whole.
    small_input_bytes: u64,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            rows_per_group: None,
            small_input_bytes: SMALL_INPUT_BYTES,
        }
    }
}

/// Merges `checked` into `output` (see the module doc).
pub(crate) async fn merge(
    store: Arc<dyn ObjectStore>,
    checked: &[CheckedInput],
    output: &Path,
    keys: &MergeKeys,
) -> Result<MergeStats, FastPathError> {
    merge_tuned(store, checked, output, keys, Tuning::default()).await
}

async fn merge_tuned(
    store: Arc<dyn ObjectStore>,
    checked: &[CheckedInput],
    output: &Path,
    keys: &MergeKeys,
    tuning: Tuning,
) -> Result<MergeStats, FastPathError> {
    let limit = keys.memory_limit.map_or(u64::MAX, |l| l as u64);
    let whole: u64 = checked
        .iter()
        .map(|c| c.size)
        .filter(|s| *s <= tuning.small_input_bytes)
        .sum();
    if whole > limit / 4 {
        return Err(FastPathError::Declined(format!(
            "{whole} bytes of small inputs under a {limit}-byte limit"
        )));
    }
    let mut inputs = Vec::with_capacity(checked.len());
    for c in checked {
        let whole = c.size <= tuning.small_input_bytes;
        inputs.push(Input::open(&store, c, whole).await?);
    }
    let layout = Layout::of(&inputs, keys)?;
    // A small merge (most partitions of an incremental run: a few hundred rows) is cheaper on
    // the calling thread alone, and sampling its columns would decode each of them twice.
    let small = inputs.iter().map(Input::rows).sum::<u64>() <= SMALL_MERGE_ROWS;
    let threads = if small { 1 } else { parallel::threads() };
    let (inputs, layout) = (Arc::new(inputs), Arc::new(layout));
    // Phase 1 may hold what is left after the small inputs held whole.
    let budget = limit.saturating_sub(whole);
    let phase1 = (inputs.clone(), layout.clone(), keys.clone());
    let started = std::time::Instant::now();
    let (winners, dictionary) = blocking(move || {
        let (inputs, layout, keys) = phase1;
        std::thread::scope(|s| {
            // Sampling (a page per column) runs beside the versions and the pick, which is serial.
            let sampling = (!small).then(|| s.spawn(|| dictionary_columns(&inputs, &layout, 1)));
            let winners = read_versions(&inputs, &keys, budget, threads)
                .and_then(|versions| winners::pick(&versions, keys.drop_archived));
            let dictionary = match sampling {
                Some(sampling) => sampling
                    .join()
                    .map_err(|_| MergerError::Merge("sampling columns panicked".into()))??,
                // A few hundred rows: hashing them into dictionaries costs more encoding time
                // than their few bytes saved.
                None => vec![false; layout.leaves.len()],
            };
            Ok((winners?, dictionary))
        })
    })
    .await?;
    tracing::debug!(elapsed = ?started.elapsed(), survivors = winners.order.len(), "keep-latest: winners picked");
    let needed = estimate_phase2(&inputs, &layout, &winners, limit) + whole;
    if needed > limit {
        return Err(FastPathError::Declined(format!(
            "writing needs about {needed} bytes, over the {limit}-byte limit"
        )));
    }
    let rows_per_group = tuning
        .rows_per_group
        .unwrap_or_else(|| rows_per_group(&inputs, limit));
    let mut out = BufWriter::new(store, output.clone());
    let output_name = output.to_string();
    let handle = Handle::current();
    let (result, out) = blocking(move || {
        let plan = WritePlan {
            inputs: &inputs,
            layout: &layout,
            order: &winners.order,
            streamable: &winners.streamable,
            rows_per_group,
            props: writer_properties(&layout, &dictionary, small),
            column_order: costliest_first(&inputs, &layout),
            threads,
        };
        let result = write::write(plan, &mut out, &handle);
        Ok::<_, FastPathError>((result, out))
    })
    .await?;
    match result {
        Ok(rows_out) => Ok(MergeStats {
            input_files: checked.len(),
            bytes_in: checked.iter().map(|c| c.size).sum(),
            rows_out,
        }),
        Err(e) => {
            let mut out = out;
            // Best effort: the merge failed either way, and an unfinished upload is invisible.
            let _ = out.abort().await;
            Err(MergerError::Merge(format!("writing {output_name}: {e}")).into())
        }
    }
}

/// Runs CPU-heavy work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, FastPathError> + Send + 'static,
) -> Result<T, FastPathError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| MergerError::Merge(format!("merge task failed: {e}")))?
}

/// Reads every input's key and version columns (phase 1), declining once they pass `budget`.
fn read_versions(
    inputs: &[Input],
    keys: &MergeKeys,
    budget: u64,
    threads: usize,
) -> Result<Vec<Versions>, FastPathError> {
    let mut names = vec![
        keys.key.as_str(),
        keys.modified.as_str(),
        columns::SYNCED_AT,
        columns::RUN_ID,
    ];
    if keys.drop_archived {
        names.push(columns::ARCHIVED);
    }
    let mut tasks = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        for (n, name) in names.iter().enumerate() {
            if let Ok(leaf) = input.schema().index_of(name) {
                tasks.push((i, n, leaf));
            }
        }
    }
    let mut order: Vec<usize> = (0..tasks.len()).collect();
    order.sort_by_key(|t| std::cmp::Reverse(inputs[tasks[*t].0].weight(tasks[*t].2).uncompressed));
    // Charged as columns are read; the sort's own arrays come on top, about 40 bytes a row.
    let rows: u64 = inputs.iter().map(Input::rows).sum();
    let left = AtomicU64::new(budget.saturating_sub(rows.saturating_mul(40)));
    let arrays = parallel::map(tasks.len(), &order, threads, |t| {
        let (i, _, leaf) = tasks[t];
        let array = inputs[i].read_column(leaf)?;
        let size = array.get_array_memory_size() as u64;
        if left
            .fetch_update(Relaxed, Relaxed, |l| l.checked_sub(size))
            .is_err()
        {
            return Err(FastPathError::Declined(format!(
                "key and version columns over the {budget}-byte limit"
            )));
        }
        Ok(array)
    })?;
    let mut columns: Vec<[Option<_>; 5]> = inputs.iter().map(|_| Default::default()).collect();
    for ((i, n, _), array) in tasks.into_iter().zip(arrays) {
        columns[i][n] = Some(array);
    }
    inputs
        .iter()
        .zip(columns)
        .map(
            |(input, [key, modified, synced_at, run_id, archived])| -> Result<Versions, FastPathError> {
                let missing =
                    || MergerError::Merge(format!("{} lacks the key or modified column", input.path));
                Ok(Versions {
                    rows: usize::try_from(input.rows()).map_err(|e| MergerError::Merge(e.to_string()))?,
                    key: key.ok_or_else(missing)?,
                    modified: modified.ok_or_else(missing)?,
                    synced_at,
                    run_id,
                    archived,
                })
            },
        )
        .collect()
}

/// Encoded bytes per row, from the inputs' footers.
fn encoded_row_bytes(inputs: &[Input]) -> u64 {
    let rows: u64 = inputs.iter().map(Input::rows).sum();
    let bytes: u64 = inputs.iter().map(|i| i.size).sum();
    bytes / rows.max(1) + 1
}

/// Rows per output row group: about [`ROW_GROUP_BYTES`] encoded, or a sixth of the limit.
fn rows_per_group(inputs: &[Input], limit: u64) -> usize {
    let target = ROW_GROUP_BYTES.min(limit / 6);
    let rows = (target / encoded_row_bytes(inputs)).clamp(write::READ_BATCH_ROWS as u64, ROW_GROUP_MAX_ROWS);
    usize::try_from(rows).unwrap_or(usize::MAX)
}

/// What phase 2 holds at once, roughly (see `write`'s module doc).
fn estimate_phase2(inputs: &[Input], layout: &Layout, winners: &Winners, limit: u64) -> u64 {
    let order = winners.order.len() as u64 * std::mem::size_of::<winners::RowRef>() as u64;
    // One row group stored while the next is encoded.
    let group = rows_per_group(inputs, limit) as u64 * encoded_row_bytes(inputs) * 5 / 2;
    let mut readers = 0u64;
    let mut row_bytes = 0u64;
    for leaves in &layout.leaves {
        let mut widest = 0;
        for ((input, leaf), streamable) in inputs.iter().zip(leaves).zip(&winners.streamable) {
            let Some(leaf) = leaf else { continue };
            let w = input.weight(*leaf);
            let rows = input.rows().max(1);
            let value = (w.uncompressed / rows).max(8) + 8;
            widest = widest.max(value);
            readers += match input.bytes {
                source::InputBytes::Ranged(_) => w.max_chunk.min(WINDOW_BYTES),
                source::InputBytes::Whole(_) => 0,
            } + w.max_chunk_uncompressed.min(2 << 20)
                + value * rows.min(READ_BATCH_ROWS as u64);
            if !streamable {
                readers += value * rows;
            }
        }
        row_bytes += widest;
    }
    let assembling = parallel::threads() as u64 * 2 * READ_BATCH_ROWS as u64 * row_bytes;
    order + group + readers + assembling
}

/// Output columns by what they weigh in the inputs, heaviest first.
fn costliest_first(inputs: &[Input], layout: &Layout) -> Vec<usize> {
    let weight = |c: usize| -> u64 {
        inputs
            .iter()
            .zip(&layout.leaves[c])
            .filter_map(|(input, leaf)| leaf.map(|l| input.weight(l).uncompressed))
            .sum()
    };
    let mut order: Vec<usize> = (0..layout.leaves.len()).collect();
    order.sort_by_key(|c| std::cmp::Reverse(weight(*c)));
    order
}

/// How the output is encoded: Snappy, dictionaries where `dictionary` says; a small merge's
/// output (one page a column) keeps its statistics in the footer only, its page index would
/// repeat them.
fn writer_properties(layout: &Layout, dictionary: &[bool], small: bool) -> WriterProperties {
    let mut builder = WriterProperties::builder().set_compression(Compression::SNAPPY);
    if small {
        builder = builder.set_statistics_enabled(EnabledStatistics::Chunk);
    }
    for (field, dictionary) in layout.schema.fields().iter().zip(dictionary) {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(field.name().as_str()), *dictionary);
    }
    builder.build()
}

/// Per output column: whether to dictionary-encode it. Yes unless more than half of a sample of
/// its values (the first rows of the largest input that has it) are distinct: on such a column
/// (emails, ids, free text) the encoder hashes values until its dictionary overflows, then falls
/// back to plain anyway, a tenth of the encoding time spent for nothing.
fn dictionary_columns(inputs: &[Input], layout: &Layout, threads: usize) -> Result<Vec<bool>, MergerError> {
    let order: Vec<usize> = (0..layout.leaves.len()).collect();
    parallel::map(layout.leaves.len(), &order, threads, |c| {
        let largest = inputs
            .iter()
            .zip(&layout.leaves[c])
            .filter_map(|(input, leaf)| leaf.map(|leaf| (input, leaf)))
            .max_by_key(|(input, _)| input.rows());
        let Some((input, leaf)) = largest else {
            return Ok(true);
        };
        let Some(sample) = input.column_reader(leaf, SAMPLE_ROWS)?.next() else {
            return Ok(true);
        };
        let sample = sample.map_err(|e| MergerError::Merge(format!("reading {}: {e}", input.path)))?;
        let distinct = sort(sample.column(0), None)
            .and_then(|sorted| partition(&[sorted]))
            .map(|p| p.len());
        // A type the kernels do not sort keeps the writer's default.
        Ok(distinct.map_or(true, |d| d * 2 <= sample.num_rows()))
    })
}
