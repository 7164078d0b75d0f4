//! K1: a table's key index, every key at rest and the partition it lives in, so a record whose
//! created date moved (imports and integrations set it on deals and companies) leaves no row
//! in its old partition.
//!
//! The commit of each run writes a new version (`<lake>/_hubsync/index/<table>/<run_id>.parquet`,
//! columns `key` and `day`, sorted by key) and moves the table's pointer in the ledger to it,
//! only forwards (G2). Readers take the version current when they first ask during their run
//! (no other commit of the table can come while the run is active, L1) and keep it in memory:
//! 12 bytes a key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow_array::RecordBatch;
use arrow_array::{Array, Int32Array, Int64Array};
use arrow_schema::{DataType, Field, Schema};
use bytes::Bytes;
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Encoding;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use tokio::sync::OnceCell;

use crate::lake::Lake;
use crate::ports::{Ledger, LedgerError};

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("key index {path}: {message}")]
    File { path: String, message: String },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// Keys and the day (days since the epoch, the `dt` partition) each lives in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyIndex {
    keys: Vec<i64>,
    days: Vec<i32>,
}

/// A set of days as a bitmap over their range: the index's update asks it once per key.
struct DaySet {
    first: i64,
    member: Vec<bool>,
}

impl DaySet {
    fn new(days: &std::collections::BTreeSet<i64>) -> Self {
        let (Some(first), Some(last)) = (days.first(), days.last()) else {
            return DaySet {
                first: 0,
                member: Vec::new(),
            };
        };
        let mut member = vec![false; usize::try_from(last - first + 1).unwrap_or(0)];
        for d in days {
            member[(d - first) as usize] = true;
        }
        DaySet {
            first: *first,
            member,
        }
    }

    fn contains(&self, day: i32) -> bool {
        usize::try_from(i64::from(day) - self.first)
            .ok()
            .and_then(|i| self.member.get(i).copied())
            .unwrap_or(false)
    }
}

/// Rows of one written row group: lookups by key range read a few of them.
const ROW_GROUP_ROWS: usize = 1 << 16;

impl KeyIndex {
    /// An index of `(key, day)` pairs; a key given twice keeps its last day.
    pub fn from_pairs(mut pairs: Vec<(i64, i64)>) -> Self {
        // Stable: among equal keys the later pair stays last, and wins below.
        pairs.sort_by_key(|(k, _)| *k);
        let mut index = KeyIndex::default();
        for (k, d) in pairs {
            if index.keys.last() == Some(&k) {
                if let Some(last) = index.days.last_mut() {
                    *last = d as i32;
                }
                continue;
            }
            index.keys.push(k);
            index.days.push(d as i32);
        }
        index
    }

    /// This index with every key whose day is in `days` dropped and `pairs` (the keys those
    /// days hold now) put in; where a key is in both, `pairs` wins. Linear in the index: the
    /// kept keys are sorted already, only `pairs` is sorted.
    pub fn replacing_days(&self, days: &std::collections::BTreeSet<i64>, pairs: Vec<(i64, i64)>) -> Self {
        let fresh = KeyIndex::from_pairs(pairs);
        let dropped = DaySet::new(days);
        let mut out = KeyIndex {
            keys: Vec::with_capacity(self.keys.len() + fresh.keys.len()),
            days: Vec::with_capacity(self.keys.len() + fresh.keys.len()),
        };
        let (mut i, mut j) = (0, 0);
        while i < self.keys.len() || j < fresh.keys.len() {
            if i < self.keys.len() && dropped.contains(self.days[i]) {
                i += 1;
                continue;
            }
            let take_new = match (self.keys.get(i), fresh.keys.get(j)) {
                (Some(k), Some(n)) => {
                    if k == n {
                        i += 1;
                    }
                    n <= k
                }
                (None, _) => true,
                (Some(_), None) => false,
            };
            if take_new {
                out.keys.push(fresh.keys[j]);
                out.days.push(fresh.days[j]);
                j += 1;
            } else {
                out.keys.push(self.keys[i]);
                out.days.push(self.days[i]);
                i += 1;
            }
        }
        out
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The day of `key`'s partition, if the index knows it.
    pub fn get(&self, key: i64) -> Option<i64> {
        self.keys
            .binary_search(&key)
            .ok()
            .map(|i| i64::from(self.days[i]))
    }

    fn schema() -> Arc<Schema> {
        Arc::new(Schema::new(vec![
            Field::new("key", DataType::Int64, false),
            Field::new("day", DataType::Int32, false),
        ]))
    }

    /// Encodes the index as Parquet.
    pub fn to_parquet(&self) -> Result<Vec<u8>, String> {
        let mut buf = Vec::new();
        let schema = KeyIndex::schema();
        // Keys are sorted and unique: delta-encoded, not a dictionary that can only overflow.
        let key = ColumnPath::from("key");
        let props = WriterProperties::builder()
            .set_column_dictionary_enabled(key.clone(), false)
            .set_column_encoding(key, Encoding::DELTA_BINARY_PACKED)
            .build();
        let mut writer =
            ArrowWriter::try_new(&mut buf, schema.clone(), Some(props)).map_err(|e| e.to_string())?;
        for (keys, days) in self
            .keys
            .chunks(ROW_GROUP_ROWS)
            .zip(self.days.chunks(ROW_GROUP_ROWS))
        {
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(keys.to_vec())),
                    Arc::new(Int32Array::from(days.to_vec())),
                ],
            )
            .map_err(|e| e.to_string())?;
            writer.write(&batch).map_err(|e| e.to_string())?;
            writer.flush().map_err(|e| e.to_string())?;
        }
        writer.close().map_err(|e| e.to_string())?;
        Ok(buf)
    }

    /// Decodes an index written by [`KeyIndex::to_parquet`].
    pub fn from_parquet(bytes: Bytes) -> Result<Self, String> {
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .map_err(|e| e.to_string())?
            .with_batch_size(ROW_GROUP_ROWS)
            .build()
            .map_err(|e| e.to_string())?;
        let mut index = KeyIndex::default();
        for batch in reader {
            let batch = batch.map_err(|e| e.to_string())?;
            let keys = batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or("column `key` is not int64")?;
            let days = batch
                .column(1)
                .as_any()
                .downcast_ref::<Int32Array>()
                .ok_or("column `day` is not int32")?;
            if keys.null_count() + days.null_count() > 0 {
                return Err("null keys or days".into());
            }
            index.keys.extend(keys.values().iter());
            index.days.extend(days.values().iter());
        }
        if !index.keys.windows(2).all(|w| w[0] < w[1]) {
            return Err("keys are not sorted and unique".into());
        }
        Ok(index)
    }

    pub async fn read(lake: &Lake, table: &str, run_id: &str) -> Result<Self, IndexError> {
        let path = lake.index_file(table, run_id);
        let bad = |message: String| IndexError::File {
            path: path.to_string(),
            message,
        };
        let bytes = lake
            .store()
            .get(&path)
            .await
            .map_err(|e| bad(e.to_string()))?
            .bytes()
            .await
            .map_err(|e| bad(e.to_string()))?;
        KeyIndex::from_parquet(bytes).map_err(bad)
    }

    pub async fn write(&self, lake: &Lake, table: &str, run_id: &str) -> Result<(), IndexError> {
        let path = lake.index_file(table, run_id);
        let bad = |message: String| IndexError::File {
            path: path.to_string(),
            message,
        };
        let bytes = self.to_parquet().map_err(bad)?;
        lake.store()
            .put(&path, Bytes::from(bytes).into())
            .await
            .map_err(|e| bad(e.to_string()))?;
        Ok(())
    }
}

/// Per process: the key index each run reads, loaded once per run (K1). Concurrent first
/// asks of one run share a single read: an incremental run's first pages all want it at once,
/// and a million keys are 12 MB to decode.
#[derive(Debug, Clone, Default)]
pub struct IndexCache(Arc<Mutex<HashMap<String, Slot>>>);

/// One run's index, read at most once (`None` inside: the table has no index yet).
type Slot = Arc<OnceCell<Option<Cached>>>;

/// An index version read, with the run id that wrote it.
#[derive(Debug)]
struct Cached {
    version: String,
    index: Arc<KeyIndex>,
}

/// Runs whose index the cache keeps (a process serves a few runs at a time).
const CACHED_RUNS: usize = 8;

impl IndexCache {
    /// The index `run_id` (a run of `table`) reads: the table's version when first asked,
    /// `None` when the table has none yet.
    pub async fn for_run(
        &self,
        ledger: &dyn Ledger,
        lake: &Lake,
        table: &str,
        run_id: &str,
    ) -> Result<Option<Arc<KeyIndex>>, IndexError> {
        let cell = {
            let mut entries = self.entries();
            if !entries.contains_key(run_id) && entries.len() >= CACHED_RUNS {
                entries.clear();
            }
            entries.entry(run_id.to_string()).or_default().clone()
        };
        // A failed read leaves the cell empty: the next ask tries again.
        let index = cell
            .get_or_try_init(|| async {
                Ok::<_, IndexError>(match ledger.index_version(table).await? {
                    None => None,
                    Some(v) => Some(Cached {
                        index: Arc::new(KeyIndex::read(lake, table, &v.run_id).await?),
                        version: v.run_id,
                    }),
                })
            })
            .await?;
        Ok(index.as_ref().map(|c| c.index.clone()))
    }

    /// The index this process read for `run_id`, if it read version `version` (the run id
    /// that wrote it): a commit in the process that staged the run's pages reads it no more.
    pub fn cached(&self, run_id: &str, version: &str) -> Option<Arc<KeyIndex>> {
        let cell = self.entries().get(run_id)?.clone();
        let cached = cell.get()?.as_ref()?;
        (cached.version == version).then(|| cached.index.clone())
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_and_round_trips() {
        let index = KeyIndex::from_pairs(vec![(5, 100), (-3, 7), (5, 101), (1 << 40, -25_567)]);
        assert_eq!(index.len(), 3);
        assert_eq!(index.get(5), Some(101), "a key given twice keeps its last day");
        assert_eq!(index.get(-3), Some(7));
        assert_eq!(index.get(1 << 40), Some(-25_567), "1900");
        assert_eq!(index.get(6), None);
        let big = KeyIndex::from_pairs((0..200_000).map(|k| (k * 3, k % 2_000)).collect());
        let back = KeyIndex::from_parquet(Bytes::from(big.to_parquet().unwrap())).unwrap();
        assert_eq!(back, big);
        assert!(KeyIndex::from_parquet(Bytes::from_static(b"nope")).is_err());
    }

    /// The linear update equals rebuilding from the kept pairs and the new ones.
    #[test]
    fn replacing_days_equals_a_rebuild() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let old = KeyIndex::from_pairs(
            (0..5_000)
                .map(|_| (next(20_000) as i64, next(300) as i64 - 100))
                .collect(),
        );
        let days: std::collections::BTreeSet<i64> = (0..40).map(|_| next(300) as i64 - 100).collect();
        // What the touched days hold now: some of their old keys, keys moved in from other
        // days (present in `old` under an untouched day), and new keys.
        let fresh: Vec<(i64, i64)> = (0..1_500)
            .map(|_| {
                (
                    next(25_000) as i64,
                    *days.iter().nth(next(days.len() as u64) as usize).unwrap(),
                )
            })
            .collect();
        let rebuilt = KeyIndex::from_pairs(
            old.keys
                .iter()
                .zip(&old.days)
                .map(|(k, d)| (*k, i64::from(*d)))
                .filter(|(_, d)| !days.contains(d))
                .chain(fresh.iter().copied())
                .collect(),
        );
        let replaced = old.replacing_days(&days, fresh);
        assert_eq!(replaced, rebuilt);
        assert!(replaced.keys.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(old.replacing_days(&Default::default(), Vec::new()), old);
        let all: std::collections::BTreeSet<i64> = (-100..200).collect();
        assert!(old.replacing_days(&all, Vec::new()).is_empty());
    }
}
