//! The inputs as the fast path sees them: their footers, the output layout (the union of their
//! schemas by column name), what their column chunks weigh, and readers of one column.

use std::ops::Range;
use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::ProjectionMask;
use tokio::runtime::Handle;

use super::source::{InputBytes, RangedFile};
use super::FastPathError;
use crate::merge::{CheckedInput, MergeKeys};
use crate::MergerError;

/// One input file, its footer read and checked (`merge::check_inputs`).
pub(super) struct Input {
    pub path: Path,
    pub size: u64,
    /// The file's Arrow schema: the types the output keeps.
    schema: SchemaRef,
    /// How it is read: strings as views ([`read_type`]).
    pub meta: ArrowReaderMetadata,
    pub bytes: InputBytes,
    /// Per top-level column, its Parquet leaf columns (one for a primitive, several for a
    /// list, map or struct).
    roots: Vec<Range<usize>>,
}

/// The type a column is read as: strings and binaries as views into the decoded pages, so that
/// neither decoding nor picking survivors copies their bytes (the encoder reads them in place).
pub(super) fn read_type(file_type: &DataType) -> DataType {
    match file_type {
        DataType::Utf8 => DataType::Utf8View,
        DataType::Binary => DataType::BinaryView,
        other => other.clone(),
    }
}

/// What one input's column weighs, from its footer.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ColumnWeight {
    pub compressed: u64,
    pub uncompressed: u64,
    /// The largest chunk of the column, compressed and not.
    pub max_chunk: u64,
    pub max_chunk_uncompressed: u64,
}

impl Input {
    /// Wraps a checked input, fetching it here when `whole` (unless checking it already did).
    pub(super) async fn open(
        store: &Arc<dyn ObjectStore>,
        checked: &CheckedInput,
        whole: bool,
    ) -> Result<Input, MergerError> {
        let (path, size, metadata) = (&checked.path, checked.size, checked.metadata.clone());
        let unreadable = |e: parquet::errors::ParquetError| MergerError::Merge(format!("{path}: {e}"));
        let plain =
            ArrowReaderMetadata::try_new(metadata.clone(), ArrowReaderOptions::new()).map_err(unreadable)?;
        let schema = plain.schema().clone();
        let views: Vec<Field> = schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_data_type(read_type(f.data_type())))
            .collect();
        let views = Arc::new(Schema::new_with_metadata(views, schema.metadata().clone()));
        let meta = if views == schema {
            plain
        } else {
            ArrowReaderMetadata::try_new(metadata, ArrowReaderOptions::new().with_schema(views))
                .map_err(unreadable)?
        };
        let bytes = if let Some(all) = checked.whole.clone().filter(|_| whole) {
            InputBytes::Whole(all)
        } else if whole {
            let got = store
                .get(path)
                .await
                .map_err(|e| MergerError::Merge(format!("reading {path}: {e}")))?;
            InputBytes::Whole(
                got.bytes()
                    .await
                    .map_err(|e| MergerError::Merge(format!("reading {path}: {e}")))?,
            )
        } else {
            InputBytes::Ranged(Arc::new(RangedFile {
                store: store.clone(),
                path: path.clone(),
                size,
                handle: Handle::current(),
            }))
        };
        let descr = meta.parquet_schema();
        // Leaves are numbered depth first, so each column's are consecutive.
        let mut roots: Vec<Option<Range<usize>>> = vec![None; schema.fields().len()];
        for leaf in 0..descr.num_columns() {
            let Some(r) = roots.get_mut(descr.get_column_root_idx(leaf)) else {
                return Err(MergerError::Merge(format!(
                    "{path}: a leaf column outside the schema"
                )));
            };
            *r = Some(r.as_ref().map_or(leaf, |r| r.start)..leaf + 1);
        }
        let roots: Vec<Range<usize>> = roots
            .into_iter()
            .collect::<Option<_>>()
            .ok_or_else(|| MergerError::Merge(format!("{path}: a column without leaves")))?;
        Ok(Input {
            path: path.clone(),
            size,
            schema,
            meta,
            bytes,
            roots,
        })
    }

    pub(super) fn rows(&self) -> u64 {
        u64::try_from(self.meta.metadata().file_metadata().num_rows()).unwrap_or(0)
    }

    pub(super) fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The byte ranges of column `root`'s chunks (each of its leaves'), in file order.
    fn chunk_ranges(&self, root: usize) -> Result<Vec<Range<u64>>, MergerError> {
        let mut ranges = Vec::new();
        for group in self.meta.metadata().row_groups() {
            for leaf in self.roots[root].clone() {
                ranges.push(self.chunk_range(group.column(leaf))?);
            }
        }
        Ok(ranges)
    }

    fn chunk_range(
        &self,
        column: &parquet::file::metadata::ColumnChunkMetaData,
    ) -> Result<Range<u64>, MergerError> {
        let start = column
            .dictionary_page_offset()
            .unwrap_or(column.data_page_offset());
        let (Ok(start), Ok(len)) = (u64::try_from(start), u64::try_from(column.compressed_size())) else {
            return Err(MergerError::Merge(format!(
                "{}: column chunk with a negative offset or size",
                self.path
            )));
        };
        Ok(start..start + len)
    }

    /// What column `root` weighs (its leaves together).
    pub(super) fn weight(&self, root: usize) -> ColumnWeight {
        let mut w = ColumnWeight::default();
        for group in self.meta.metadata().row_groups() {
            let (mut c, mut u) = (0u64, 0u64);
            for leaf in self.roots[root].clone() {
                let column = group.column(leaf);
                c += u64::try_from(column.compressed_size()).unwrap_or(0);
                u += u64::try_from(column.uncompressed_size()).unwrap_or(0);
            }
            w.compressed += c;
            w.uncompressed += u;
            w.max_chunk = w.max_chunk.max(c);
            w.max_chunk_uncompressed = w.max_chunk_uncompressed.max(u);
        }
        w
    }

    /// A reader of column `root` alone (all its leaves), over every row, `batch_rows` at a time.
    pub(super) fn column_reader(
        &self,
        root: usize,
        batch_rows: usize,
    ) -> Result<ParquetRecordBatchReader, MergerError> {
        let source = self.bytes.reader(self.chunk_ranges(root)?);
        // The decoder sizes (and zeroes) its buffers for a whole batch: a file of a few hundred
        // rows (most of an incremental run's) would pay for thousands at every column.
        let batch_rows = usize::try_from(self.rows()).map_or(batch_rows, |rows| batch_rows.min(rows.max(1)));
        ParquetRecordBatchReaderBuilder::new_with_metadata(source, self.meta.clone())
            .with_projection(ProjectionMask::roots(self.meta.parquet_schema(), [root]))
            .with_batch_size(batch_rows)
            .build()
            .map_err(|e| MergerError::Merge(format!("reading {}: {e}", self.path)))
    }

    /// All of `leaf`, as one array.
    pub(super) fn read_column(&self, leaf: usize) -> Result<ArrayRef, MergerError> {
        let failed = |e: &dyn std::fmt::Display| MergerError::Merge(format!("reading {}: {e}", self.path));
        let mut parts = Vec::new();
        for batch in self.column_reader(leaf, 64 * 1024)? {
            parts.push(batch.map_err(|e| failed(&e))?.column(0).clone());
        }
        let dtype = self.meta.schema().field(leaf).data_type().clone();
        if parts.is_empty() {
            return Ok(datafusion::arrow::array::new_empty_array(&dtype));
        }
        let refs: Vec<&dyn datafusion::arrow::array::Array> = parts.iter().map(|a| a.as_ref()).collect();
        datafusion::arrow::compute::concat(&refs).map_err(|e| failed(&e))
    }
}

/// The output's columns and where each comes from.
pub(super) struct Layout {
    pub schema: SchemaRef,
    /// `leaves[c][i]`: output column `c`'s index among input `i`'s top-level columns, or `None`
    /// when the input lacks it (it reads as nulls there).
    pub leaves: Vec<Vec<Option<usize>>>,
}

impl Layout {
    /// The union of the inputs' schemas by column name: `keys.column_order` first, then the
    /// other columns sorted by name, as the DataFusion path orders them; or the table's schema
    /// when `keys` has it. Declines a name whose type differs between inputs (or from the
    /// table's schema).
    pub(super) fn of(inputs: &[Input], keys: &MergeKeys) -> Result<Layout, FastPathError> {
        let mut fields: Vec<Field> = Vec::new();
        for input in inputs {
            let schema = input.schema();
            for field in schema.fields() {
                match fields.iter_mut().find(|f| f.name() == field.name()) {
                    Some(seen) if seen.data_type() != field.data_type() => {
                        return Err(FastPathError::Declined(format!(
                            "column `{}` is {} in one input and {} in {}",
                            field.name(),
                            seen.data_type(),
                            field.data_type(),
                            input.path
                        )));
                    }
                    Some(seen) => {
                        if field.is_nullable() {
                            seen.set_nullable(true);
                        }
                    }
                    None => fields.push(field.as_ref().clone()),
                }
            }
        }
        if let Some(target) = &keys.schema {
            // The table's schema: its columns, each of its type (a cast is DataFusion's work).
            for f in &fields {
                match target.field_with_name(f.name()) {
                    Ok(t) if t.data_type() == f.data_type() => {}
                    Ok(t) => {
                        return Err(FastPathError::Declined(format!(
                            "column `{}` is {} in an input and {} in the table's schema",
                            f.name(),
                            f.data_type(),
                            t.data_type()
                        )))
                    }
                    Err(_) => {
                        return Err(FastPathError::Declined(format!(
                            "column `{}` is not in the table's schema",
                            f.name()
                        )))
                    }
                }
            }
            fields = target.fields().iter().map(|f| f.as_ref().clone()).collect();
        }
        let mut ordered: Vec<Field> = Vec::with_capacity(fields.len());
        for name in &keys.column_order {
            if let Some(at) = fields.iter().position(|f| f.name() == name) {
                ordered.push(fields.remove(at));
            }
        }
        fields.sort_by(|a, b| a.name().cmp(b.name()));
        ordered.extend(fields);
        let leaves: Vec<Vec<Option<usize>>> = ordered
            .iter()
            .map(|f| {
                inputs
                    .iter()
                    .map(|i| i.schema().index_of(f.name()).ok())
                    .collect()
            })
            .collect();
        // A column some input lacks reads as nulls there.
        let fields: Vec<FieldRef> = ordered
            .into_iter()
            .zip(&leaves)
            .map(|(f, at)| {
                let nullable = f.is_nullable() || at.iter().any(Option::is_none);
                Arc::new(f.with_nullable(nullable))
            })
            .collect();
        Ok(Layout {
            schema: Arc::new(Schema::new(fields)),
            leaves,
        })
    }
}
