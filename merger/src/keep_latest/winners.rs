//! Phase 1: which row of each key survives, from the key and version columns alone.
//!
//! Rows are ordered by key (a stable sort, so the inputs' own order breaks no tie), each run of
//! equal keys keeps its newest row, and an archived survivor is dropped. Versions compare by
//! `modified`, then `_synced_at`, then `_run_id`, greatest first, a null (or a column the input
//! lacks) older than any value; rows equal in all three keep the one from the earliest input.

use std::cmp::Ordering;

use datafusion::arrow::array::{make_comparator, new_null_array, Array, ArrayRef, AsArray};
use datafusion::arrow::compute::{cast, concat, SortOptions};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::arrow::error::ArrowError;

use super::FastPathError;

/// One input's key and version columns (`None`: the input lacks that column).
pub(super) struct Versions {
    pub rows: usize,
    pub key: ArrayRef,
    pub modified: ArrayRef,
    pub synced_at: Option<ArrayRef>,
    pub run_id: Option<ArrayRef>,
    pub archived: Option<ArrayRef>,
}

/// A row of one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RowRef {
    pub input: u32,
    pub row: u32,
}

/// The surviving rows, in output order.
#[derive(Debug)]
pub(super) struct Winners {
    /// Survivors sorted by key.
    pub order: Vec<RowRef>,
    /// Per input: its survivors' rows increase along `order`, so the input can be read once,
    /// front to back, while the output is written (true of key-sorted inputs).
    pub streamable: Vec<bool>,
}

fn declined(what: &str) -> impl Fn(ArrowError) -> FastPathError + '_ {
    move |e| FastPathError::Declined(format!("{what}: {e}"))
}

/// One column across all inputs (global row order), nulls where an input lacks it; `None` when
/// no input has it.
fn across(
    inputs: &[Versions],
    name: &str,
    get: impl Fn(&Versions) -> Option<&ArrayRef>,
) -> Result<Option<ArrayRef>, FastPathError> {
    let Some(dtype) = inputs.iter().find_map(|v| get(v).map(|a| a.data_type().clone())) else {
        return Ok(None);
    };
    let parts: Vec<ArrayRef> = inputs
        .iter()
        .map(|v| get(v).cloned().unwrap_or_else(|| new_null_array(&dtype, v.rows)))
        .collect();
    let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
    concat(&refs).map(Some).map_err(declined(name))
}

/// Global row numbers sorted by key (stable), and whether two rows share a key.
enum SortedKeys {
    Int(Vec<i64>),
    Str(datafusion::arrow::array::StringViewArray),
}

impl SortedKeys {
    fn new(key: &ArrayRef) -> Result<SortedKeys, FastPathError> {
        if key.null_count() > 0 {
            return Err(FastPathError::Declined("null keys".into()));
        }
        match key.data_type() {
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32 => {
                let ints = cast(key, &DataType::Int64).map_err(declined("key"))?;
                Ok(SortedKeys::Int(
                    ints.as_primitive::<Int64Type>().values().to_vec(),
                ))
            }
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                let views = cast(key, &DataType::Utf8View).map_err(declined("key"))?;
                Ok(SortedKeys::Str(views.as_string_view().clone()))
            }
            other => Err(FastPathError::Declined(format!("key of type {other}"))),
        }
    }

    fn sorted(&self) -> Vec<u32> {
        match self {
            SortedKeys::Int(keys) => {
                // (key, row) pairs sort fast and, the rows being unique, stably; the inputs are
                // usually sorted runs already, which the sort merges.
                let mut pairs: Vec<(i64, u32)> =
                    keys.iter().enumerate().map(|(g, k)| (*k, g as u32)).collect();
                pairs.sort();
                pairs.into_iter().map(|(_, g)| g).collect()
            }
            SortedKeys::Str(keys) => {
                let mut rows: Vec<u32> = (0..keys.len() as u32).collect();
                rows.sort_by(|a, b| keys.value(*a as usize).cmp(keys.value(*b as usize)));
                rows
            }
        }
    }

    fn same(&self, a: u32, b: u32) -> bool {
        match self {
            SortedKeys::Int(keys) => keys[a as usize] == keys[b as usize],
            SortedKeys::Str(keys) => keys.value(a as usize) == keys.value(b as usize),
        }
    }
}

/// Picks the surviving row of every key (see the module doc).
pub(super) fn pick(inputs: &[Versions], drop_archived: bool) -> Result<Winners, FastPathError> {
    let total: usize = inputs.iter().map(|v| v.rows).sum();
    if u32::try_from(total).is_err() {
        return Err(FastPathError::Declined(format!("{total} rows")));
    }
    let key = across(inputs, "key", |v| Some(&v.key))?;
    let keys = match &key {
        Some(key) => SortedKeys::new(key)?,
        None => SortedKeys::Int(Vec::new()),
    };
    drop(key);
    let mut newer_than = Vec::new();
    let ascending = SortOptions {
        descending: false,
        nulls_first: true,
    };
    let versions = [
        across(inputs, "modified", |v| Some(&v.modified))?,
        across(inputs, "_synced_at", |v| v.synced_at.as_ref())?,
        across(inputs, "_run_id", |v| v.run_id.as_ref())?,
    ];
    for (name, column) in ["modified", "_synced_at", "_run_id"].iter().zip(&versions) {
        if let Some(column) = column {
            newer_than.push(make_comparator(column, column, ascending).map_err(declined(name))?);
        }
    }
    let archived = match across(inputs, "archived", |v| v.archived.as_ref())? {
        Some(a) if a.data_type() == &DataType::Boolean => Some(a.as_boolean().clone()),
        Some(a) => return Err(FastPathError::Declined(format!("archived is {}", a.data_type()))),
        None => None,
    };
    let newer = |a: u32, b: u32| {
        newer_than
            .iter()
            .map(|cmp| cmp(a as usize, b as usize))
            .find(|o| o.is_ne())
            == Some(Ordering::Greater)
    };
    let starts: Vec<usize> = inputs
        .iter()
        .scan(0, |at, v| {
            let start = *at;
            *at += v.rows;
            Some(start)
        })
        .collect();
    let mut order = Vec::new();
    let mut last_row: Vec<Option<u32>> = vec![None; inputs.len()];
    let mut streamable = vec![true; inputs.len()];
    let sorted = keys.sorted();
    let mut at = 0;
    while at < sorted.len() {
        let mut best = sorted[at];
        let mut next = at + 1;
        while next < sorted.len() && keys.same(sorted[at], sorted[next]) {
            if newer(sorted[next], best) {
                best = sorted[next];
            }
            next += 1;
        }
        at = next;
        let g = best as usize;
        if drop_archived && archived.as_ref().is_some_and(|a| a.is_valid(g) && a.value(g)) {
            continue;
        }
        let input = starts.partition_point(|s| *s <= g) - 1;
        let row = (g - starts[input]) as u32;
        if last_row[input].is_some_and(|last| last >= row) {
            streamable[input] = false;
        }
        last_row[input] = Some(row);
        order.push(RowRef {
            input: input as u32,
            row,
        });
    }
    Ok(Winners { order, streamable })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{BooleanArray, Int64Array, StringArray};

    use super::*;

    fn input(keys: &[i64], modified: &[Option<i64>]) -> Versions {
        Versions {
            rows: keys.len(),
            key: Arc::new(Int64Array::from(keys.to_vec())),
            modified: Arc::new(Int64Array::from(modified.to_vec())),
            synced_at: None,
            run_id: None,
            archived: None,
        }
    }

    fn rows(w: &Winners) -> Vec<(u32, u32)> {
        w.order.iter().map(|r| (r.input, r.row)).collect()
    }

    #[test]
    fn the_greatest_modified_wins_then_synced_at_then_run_id() {
        let mut a = input(&[1, 2, 3, 4], &[Some(5), Some(5), Some(5), Some(5)]);
        a.synced_at = Some(Arc::new(Int64Array::from(vec![1, 9, 1, 1])));
        a.run_id = Some(Arc::new(StringArray::from(vec!["a", "a", "a", "z"])));
        let mut b = input(&[1, 2, 3, 4], &[Some(6), Some(5), Some(5), Some(5)]);
        b.synced_at = Some(Arc::new(Int64Array::from(vec![1, 1, 2, 1])));
        b.run_id = Some(Arc::new(StringArray::from(vec!["a", "b", "a", "b"])));
        let w = pick(&[a, b], true).unwrap();
        // 1: b's modified; 2: a's _synced_at; 3: b's _synced_at; 4: a's _run_id.
        assert_eq!(rows(&w), [(1, 0), (0, 1), (1, 2), (0, 3)]);
        assert_eq!(w.streamable, [true, true]);
    }

    #[test]
    fn nulls_and_missing_columns_are_older_than_any_value() {
        // Input a has no _synced_at at all; b has it. Same modified: b wins.
        let a = input(&[1, 2], &[Some(5), None]);
        let mut b = input(&[1, 2], &[Some(5), Some(1)]);
        b.synced_at = Some(Arc::new(Int64Array::from(vec![Some(1), None])));
        let w = pick(&[a, b], true).unwrap();
        assert_eq!(rows(&w), [(1, 0), (1, 1)]);
    }

    #[test]
    fn a_full_tie_keeps_the_earliest_input() {
        let w = pick(&[input(&[7], &[Some(1)]), input(&[7], &[Some(1)])], true).unwrap();
        assert_eq!(rows(&w), [(0, 0)]);
    }

    #[test]
    fn archived_survivors_are_dropped_only_when_asked_and_older_versions_do_not_resurface() {
        let a = input(&[1, 2], &[Some(1), Some(1)]);
        let mut b = input(&[1], &[Some(2)]);
        b.archived = Some(Arc::new(BooleanArray::from(vec![true])));
        let w = pick(&[a, b], true).unwrap();
        assert_eq!(rows(&w), [(0, 1)]);
        let a = input(&[1, 2], &[Some(1), Some(1)]);
        let mut b = input(&[1], &[Some(2)]);
        b.archived = Some(Arc::new(BooleanArray::from(vec![Some(true)])));
        let w = pick(&[a, b], false).unwrap();
        assert_eq!(rows(&w), [(1, 0), (0, 1)]);
    }

    #[test]
    fn unsorted_inputs_are_found_and_still_merged_in_key_order() {
        let w = pick(
            &[input(&[3, 1, 2], &[Some(1); 3]), input(&[0, 4], &[Some(1); 2])],
            true,
        )
        .unwrap();
        assert_eq!(rows(&w), [(1, 0), (0, 1), (0, 2), (0, 0), (1, 1)]);
        assert_eq!(w.streamable, [false, true]);
    }

    #[test]
    fn empty_inputs_and_string_keys() {
        let empty = input(&[], &[]);
        let w = pick(&[empty], true).unwrap();
        assert!(w.order.is_empty());
        let strings = |keys: &[&str]| Versions {
            rows: keys.len(),
            key: Arc::new(StringArray::from(keys.to_vec())),
            modified: Arc::new(Int64Array::from(vec![1; keys.len()])),
            synced_at: None,
            run_id: None,
            archived: None,
        };
        let w = pick(&[strings(&["b", "a"]), input(&[], &[]), strings(&["a"])], true);
        // Mixed key types across inputs are declined, not merged wrongly.
        assert!(matches!(w, Err(FastPathError::Declined(_))));
        let w = pick(&[strings(&["b", "a"]), strings(&["a", "c"])], true).unwrap();
        assert_eq!(rows(&w), [(0, 1), (0, 0), (1, 1)]);
    }

    #[test]
    fn null_keys_are_declined() {
        let mut a = input(&[1], &[Some(1)]);
        a.key = Arc::new(Int64Array::from(vec![None]));
        assert!(matches!(pick(&[a], true), Err(FastPathError::Declined(_))));
    }
}
