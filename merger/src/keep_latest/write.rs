//! Phase 2: the survivors, column by column, into one Parquet file.
//!
//! Phase 1 fixed the output row by row ([`RowRef`]s in key order), so every output column can be
//! built on its own: a [`ColumnFeed`] reads that column of each input front to back and picks
//! the survivors out in output order. Columns of a row group are encoded in parallel (one
//! `ArrowColumnWriter` each), then [`store`] splices them into the file in schema order while the
//! next row group is encoded. Memory: two encoded row groups, and per column and input a window,
//! a page and a batch (plus, for an input that is not key-sorted, all of it: see `retain`).

use std::collections::VecDeque;
use std::sync::mpsc::SyncSender;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{new_null_array, Array, ArrayRef};
use datafusion::arrow::compute::interleave;
use datafusion::arrow::datatypes::{DataType, FieldRef};
use object_store::buffered::BufWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReader;
use parquet::arrow::arrow_writer::{
    compute_leaves, ArrowColumnChunk, ArrowColumnWriter, ArrowRowGroupWriterFactory, ArrowWriterOptions,
};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use tokio::runtime::Handle;

use super::input::{read_type, Input, Layout};
use super::parallel;
use super::store::{self, StoreSink, Stored};
use super::winners::RowRef;
use crate::MergerError;

/// Rows a column reader decodes at once.
pub(super) const READ_BATCH_ROWS: usize = 8192;

/// Output rows assembled and handed to a column writer at once.
const WRITE_BATCH_ROWS: usize = 8192;

/// What phase 2 needs from the plan.
pub(super) struct WritePlan<'a> {
    pub inputs: &'a [Input],
    pub layout: &'a Layout,
    pub order: &'a [RowRef],
    /// Per input: read it front to back (true) or keep all of it (false: not key-sorted).
    pub streamable: &'a [bool],
    pub rows_per_group: usize,
    pub props: WriterProperties,
    /// Columns, most expensive first: the parallel encoders start on them, so none is left
    /// alone at the end of a row group.
    pub column_order: Vec<usize>,
    pub threads: usize,
}

/// Reads one input's column and finds rows in it.
struct Cursor {
    reader: ParquetRecordBatchReader,
    /// Decoded batches with the input row of their first value, in row order.
    batches: VecDeque<(u64, ArrayRef)>,
    /// The input row after the last decoded one.
    end: u64,
    /// Keep every batch: the input is not key-sorted, so its rows are needed out of order.
    retain: bool,
    /// Time spent decoding.
    decoding: Duration,
}

impl Cursor {
    /// The batch holding `row`, with that batch's first row.
    fn locate(&mut self, row: u64, input: &Input) -> Result<(u64, ArrayRef), MergerError> {
        while self.end <= row {
            let started = Instant::now();
            let batch = self
                .reader
                .next()
                .ok_or_else(|| MergerError::Merge(format!("{} ended before row {row}", input.path)))?
                .map_err(|e| MergerError::Merge(format!("reading {}: {e}", input.path)))?;
            self.decoding += started.elapsed();
            let column = batch.column(0).clone();
            self.batches.push_back((self.end, column));
            self.end += batch.num_rows() as u64;
        }
        if !self.retain {
            // Streamable: later output rows only need later input rows.
            while self
                .batches
                .front()
                .is_some_and(|(start, b)| start + b.len() as u64 <= row)
            {
                self.batches.pop_front();
            }
        }
        let at = self.batches.partition_point(|(start, _)| *start <= row) - 1;
        Ok(self.batches[at].clone())
    }
}

/// Parquet leaf columns of a field: one for a primitive, those of its children for a list,
/// map or struct (each leaf has its own writer and chunk).
fn leaf_count(data_type: &DataType) -> usize {
    match data_type {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) | DataType::Map(f, _) => {
            leaf_count(f.data_type())
        }
        DataType::Struct(fields) => fields.iter().map(|f| leaf_count(f.data_type())).sum(),
        _ => 1,
    }
}

/// One output column: its field, its cursors (one per input that has the column) and, during a
/// row group, its writers (one per leaf).
struct ColumnFeed {
    field: FieldRef,
    /// The type the cursors return ([`read_type`]).
    read_type: DataType,
    cursors: Vec<Option<Cursor>>,
    writers: Vec<ArrowColumnWriter>,
    /// Time spent picking rows (decoding included) and encoding them.
    assembling: Duration,
    encoding: Duration,
}

impl ColumnFeed {
    /// The column's values for `rows`, in that order.
    fn assemble(&mut self, rows: &[RowRef], inputs: &[Input]) -> Result<ArrayRef, MergerError> {
        let mut sources: Vec<ArrayRef> = Vec::new();
        // Which (input, batch start) each source is; the last one used per input.
        let mut source_of: Vec<(u32, u64)> = Vec::new();
        let mut last: Vec<Option<(u64, u64, usize)>> = vec![None; self.cursors.len()];
        let mut null_source = None;
        let mut indices = Vec::with_capacity(rows.len());
        for r in rows {
            let i = r.input as usize;
            let row = u64::from(r.row);
            let Some(cursor) = &mut self.cursors[i] else {
                let s = *null_source.get_or_insert_with(|| {
                    sources.push(new_null_array(&self.read_type, 1));
                    source_of.push((u32::MAX, 0));
                    sources.len() - 1
                });
                indices.push((s, 0));
                continue;
            };
            if let Some((start, end, s)) = last[i] {
                if start <= row && row < end {
                    indices.push((s, (row - start) as usize));
                    continue;
                }
            }
            let (start, batch) = cursor.locate(row, &inputs[i])?;
            let end = start + batch.len() as u64;
            let s = match source_of.iter().position(|k| *k == (r.input, start)) {
                Some(s) => s,
                None => {
                    sources.push(batch);
                    source_of.push((r.input, start));
                    sources.len() - 1
                }
            };
            last[i] = Some((start, end, s));
            indices.push((s, (row - start) as usize));
        }
        if null_source.is_some() && sources.len() == 1 {
            return Ok(new_null_array(&self.read_type, rows.len()));
        }
        // A run of consecutive rows of one batch (new records, untouched stretches) is a slice.
        if let (1, Some(&(_, first))) = (sources.len(), indices.first()) {
            if indices.iter().enumerate().all(|(n, &(_, o))| o == first + n) {
                return Ok(sources[0].slice(first, rows.len()));
            }
        }
        let refs: Vec<&dyn Array> = sources.iter().map(|a| a.as_ref()).collect();
        interleave(&refs, &indices).map_err(|e| MergerError::Merge(e.to_string()))
    }

    /// Encodes `rows` into the current row group's writers and closes them: one chunk per leaf.
    fn encode(&mut self, rows: &[RowRef], inputs: &[Input]) -> Result<Vec<ArrowColumnChunk>, MergerError> {
        let failed = |e: parquet::errors::ParquetError| MergerError::Merge(format!("encoding: {e}"));
        let mut writers = std::mem::take(&mut self.writers);
        if writers.is_empty() {
            return Err(MergerError::Merge("column writer missing".into()));
        }
        for part in rows.chunks(WRITE_BATCH_ROWS) {
            let started = Instant::now();
            let array = self.assemble(part, inputs)?;
            let assembled = Instant::now();
            for (leaf, writer) in compute_leaves(&self.field, &array)
                .map_err(failed)?
                .into_iter()
                .zip(writers.iter_mut())
            {
                writer.write(&leaf).map_err(failed)?;
            }
            self.assembling += assembled - started;
            self.encoding += assembled.elapsed();
        }
        let started = Instant::now();
        let chunks = writers
            .into_iter()
            .map(|w| w.close().map_err(failed))
            .collect::<Result<Vec<_>, _>>();
        self.encoding += started.elapsed();
        chunks
    }
}

/// Encodes every row group, columns in parallel, and sends each to the storing thread.
fn encode_groups(
    plan: &WritePlan<'_>,
    feeds: &[Mutex<ColumnFeed>],
    factory: &ArrowRowGroupWriterFactory,
    send: &SyncSender<Stored>,
) -> Result<(), MergerError> {
    let poisoned = || MergerError::Merge("poisoned".into());
    for (group, rows) in plan.order.chunks(plan.rows_per_group.max(1)).enumerate() {
        let mut writers = factory
            .create_column_writers(group)
            .map_err(|e| MergerError::Merge(format!("writing: {e}")))?
            .into_iter();
        for feed in feeds {
            let mut feed = feed.lock().map_err(|_| poisoned())?;
            let leaves = leaf_count(feed.field.data_type());
            feed.writers = writers.by_ref().take(leaves).collect();
        }
        let chunks = parallel::map(feeds.len(), &plan.column_order, plan.threads, |c| {
            feeds[c].lock().map_err(|_| poisoned())?.encode(rows, plan.inputs)
        })?;
        // In schema order, each column's leaves in order, as the file lays them out.
        let chunks = chunks.into_iter().flatten().collect();
        if send.send(Stored::RowGroup(chunks)).is_err() {
            // The storer stopped on an error, which it reports.
            return Ok(());
        }
    }
    Ok(())
}

/// Writes the survivors into `out` (see the module doc); returns the rows written.
pub(super) fn write(plan: WritePlan<'_>, out: &mut BufWriter, handle: &Handle) -> Result<u64, MergerError> {
    let failed = |e: parquet::errors::ParquetError| MergerError::Merge(format!("writing: {e}"));
    let mut feeds = Vec::with_capacity(plan.layout.leaves.len());
    for (field, leaves) in plan.layout.schema.fields().iter().zip(&plan.layout.leaves) {
        let mut cursors = Vec::with_capacity(plan.inputs.len());
        for ((input, leaf), streamable) in plan.inputs.iter().zip(leaves).zip(plan.streamable) {
            cursors.push(match leaf {
                Some(leaf) => Some(Cursor {
                    reader: input.column_reader(*leaf, READ_BATCH_ROWS)?,
                    batches: VecDeque::new(),
                    end: 0,
                    retain: !streamable,
                    decoding: Duration::ZERO,
                }),
                None => None,
            });
        }
        feeds.push(Mutex::new(ColumnFeed {
            field: field.clone(),
            read_type: read_type(field.data_type()),
            cursors,
            writers: Vec::new(),
            assembling: Duration::ZERO,
            encoding: Duration::ZERO,
        }));
    }
    let options = ArrowWriterOptions::new().with_properties(plan.props.clone());
    let sink = StoreSink::new(out, handle);
    let (file, factory) = ArrowWriter::try_new_with_options(sink, plan.layout.schema.clone(), options)
        .and_then(ArrowWriter::into_serialized_writer)
        .map_err(failed)?;
    let groups = plan.order.len().div_ceil(plan.rows_per_group.max(1));
    if groups <= 1 {
        // One row group (every small merge of an incremental run): nothing to overlap, and a
        // storer thread per merge cost more to start and hand over to than the group takes
        // to store. Encoded, then stored, on this thread.
        let (send, received) = std::sync::mpsc::sync_channel(2);
        encode_groups(&plan, &feeds, &factory, &send)?;
        let _ = send.send(Stored::Done);
        drop(send);
        let storing = store::store(file, received)?;
        return finish(plan, feeds, storing);
    }
    let storing = std::thread::scope(|s| {
        // A row group is stored while the next is encoded; the encoders then wait.
        let (send, received) = std::sync::mpsc::sync_channel(0);
        let storer = s.spawn(move || store::store(file, received));
        let encoded = encode_groups(&plan, &feeds, &factory, &send);
        if encoded.is_ok() {
            // A failed send means the storer stopped; its error is the one to report.
            let _ = send.send(Stored::Done);
        }
        drop(send);
        let stored = storer
            .join()
            .map_err(|_| MergerError::Merge("the storing thread panicked".into()))?;
        encoded.and(stored)
    })?;
    finish(plan, feeds, storing)
}

/// Logs where a write's time went; returns the rows written.
fn finish(plan: WritePlan<'_>, feeds: Vec<Mutex<ColumnFeed>>, storing: Duration) -> Result<u64, MergerError> {
    let (mut decoding, mut assembling, mut encoding) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for feed in feeds {
        let feed = feed
            .into_inner()
            .map_err(|_| MergerError::Merge("poisoned".into()))?;
        decoding += feed
            .cursors
            .iter()
            .flatten()
            .map(|c| c.decoding)
            .sum::<Duration>();
        assembling += feed.assembling;
        encoding += feed.encoding;
    }
    tracing::debug!(?decoding, picking = ?assembling.saturating_sub(decoding), ?encoding, ?storing,
        threads = plan.threads, rows_per_group = plan.rows_per_group, "keep-latest: columns written");
    Ok(plan.order.len() as u64)
}
