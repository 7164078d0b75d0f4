//! The fast path against the DataFusion path on the same files: same columns, same rows.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use super::{merge_tuned, FastPathError, Tuning};
use crate::merge::{check_inputs, merge_files, merge_with_datafusion, MergeKeys};

/// One test row: key, modified, archived, _synced_at, _run_id and a property.
type Row = (i64, Option<i64>, bool, i64, &'static str, String);

/// Writes `rows` (in the given order) with the named columns only, `group_rows` per row group.
/// Columns are nullable: the DataFusion path cannot fill a non-nullable column that some input
/// lacks (see `a_non_nullable_column_an_input_lacks_reads_as_null_there`).
fn write_for_test(
    dir: &std::path::Path,
    name: &str,
    rows: &[Row],
    columns: &[&str],
    group_rows: usize,
) -> Path {
    write_nullable_for_test(dir, name, rows, columns, group_rows, true)
}

fn write_nullable_for_test(
    dir: &std::path::Path,
    name: &str,
    rows: &[Row],
    columns: &[&str],
    group_rows: usize,
    nullable: bool,
) -> Path {
    let all: Vec<(Field, ArrayRef)> = vec![
        (
            Field::new("id", DataType::Int64, false),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
        ),
        (
            Field::new("modified", DataType::Int64, true),
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.1))),
        ),
        (
            Field::new("archived", DataType::Boolean, nullable),
            Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.2)))),
        ),
        (
            Field::new("_synced_at", DataType::Int64, nullable),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.3))),
        ),
        (
            Field::new("_run_id", DataType::Utf8, nullable),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.4))),
        ),
        (
            Field::new("p1", DataType::Utf8, true),
            Arc::new(StringArray::from_iter(
                rows.iter().map(|r| (r.0 % 7 != 0).then(|| r.5.clone())),
            )),
        ),
        (
            Field::new("p2", DataType::Utf8, true),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| format!("{}-2", r.5)),
            )),
        ),
    ];
    let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = all
        .into_iter()
        .filter(|(f, _)| columns.contains(&f.name().as_str()))
        .unzip();
    let schema = Arc::new(Schema::new(fields));
    let path = dir.join(name);
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(group_rows))
        .build();
    let file = std::fs::File::create(&path).expect("temp file");
    let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).expect("writer");
    writer
        .write(&RecordBatch::try_new(schema, arrays).expect("batch"))
        .expect("write");
    writer.close().expect("close");
    Path::from_absolute_path(&path).expect("absolute path")
}

fn keys_for_test(drop_archived: bool, memory_limit: Option<usize>) -> MergeKeys {
    MergeKeys {
        key: "id".into(),
        modified: "modified".into(),
        column_order: vec!["id".into(), "modified".into(), "archived".into()],
        drop_archived,
        set_columns: Vec::new(),
        memory_limit,
        schema: None,
    }
}

/// A file's rows as one batch, every column cast to strings (the paths may pick different
/// string types), with its row group count.
fn read_for_test(path: &std::path::Path) -> (RecordBatch, usize) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).expect("output"))
        .expect("parquet");
    let groups = builder.metadata().num_row_groups();
    let schema = builder.schema().clone();
    let batches: Vec<RecordBatch> = builder
        .build()
        .expect("reader")
        .map(|b| b.expect("batch"))
        .collect();
    let batch = concat_batches(&schema, &batches).expect("concat");
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| Field::new(f.name(), DataType::Utf8, true))
        .collect();
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|c| cast(c, &DataType::Utf8).expect("cast"))
        .collect();
    (
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("batch"),
        groups,
    )
}

struct Merged {
    fast: RecordBatch,
    fast_groups: usize,
    datafusion: RecordBatch,
}

async fn merge_both(dir: &std::path::Path, inputs: &[Path], keys: &MergeKeys, tuning: Tuning) -> Merged {
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new());
    let (fast, slow) = (dir.join("fast.parquet"), dir.join("datafusion.parquet"));
    let checked = check_inputs(&store, inputs, keys).await.expect("inputs");
    let out = Path::from_absolute_path(&fast).expect("path");
    let stats = merge_tuned(store.clone(), &checked, &out, keys, tuning)
        .await
        .expect("the fast path merges");
    let out = Path::from_absolute_path(&slow).expect("path");
    merge_with_datafusion(store, inputs, &out, keys)
        .await
        .expect("DataFusion merges");
    let (fast, fast_groups) = read_for_test(&fast);
    assert_eq!(stats.rows_out, fast.num_rows() as u64);
    assert_eq!(stats.input_files, inputs.len());
    Merged {
        fast,
        fast_groups,
        datafusion: read_for_test(&slow).0,
    }
}

fn row(id: i64, modified: Option<i64>, synced: i64, run: &'static str) -> Row {
    (
        id,
        modified,
        false,
        synced,
        run,
        format!("v{id}-{modified:?}-{synced}-{run}"),
    )
}

/// A live file of `n` sorted rows, staged updates with every kind of tie-break, new rows, a
/// staged file out of key order, another lacking columns, and archived survivors.
fn inputs_for_test(dir: &std::path::Path, n: i64) -> Vec<Path> {
    let all = ["id", "modified", "archived", "_synced_at", "_run_id", "p1", "p2"];
    let live: Vec<Row> = (0..n).map(|id| row(id, Some(100), 1, "r1")).collect();
    let mut staged: Vec<Row> = Vec::new();
    for id in (0..n).step_by(3) {
        staged.push(match id % 4 {
            0 => row(id, Some(200), 2, "r2"), // newer modified
            1 => row(id, Some(100), 2, "r2"), // same modified, later _synced_at
            2 => row(id, Some(100), 1, "r0"), // same modified and _synced_at, older _run_id: loses
            _ => row(id, None, 9, "r9"),      // null modified: older than any value, loses
        });
    }
    for r in staged.iter_mut().filter(|r| r.0 % 5 == 0) {
        r.2 = true; // archived
    }
    staged.extend((n..n + n / 4).map(|id| row(id, Some(150), 2, "r2")));
    let unsorted: Vec<Row> = [n + 7, 5, n + 3, 1, 2]
        .iter()
        .map(|id| row(*id, Some(300), 3, "r3"))
        .collect();
    let no_p2: Vec<Row> = (n / 2..n / 2 + 50)
        .map(|id| row(id, Some(400), 4, "r4"))
        .collect();
    vec![
        write_for_test(dir, "live.parquet", &live, &all, 3000),
        write_for_test(dir, "staged.parquet", &staged, &all, 1000),
        write_for_test(dir, "unsorted.parquet", &unsorted, &all, 1000),
        write_for_test(
            dir,
            "no_p2.parquet",
            &no_p2,
            &["id", "modified", "p1", "_synced_at"],
            1000,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matches_datafusion_across_schemas_ties_nulls_unsorted_inputs_and_row_groups() {
    let dir = tempfile::tempdir().expect("temp dir");
    let inputs = inputs_for_test(dir.path(), 20_000);
    for drop_archived in [true, false] {
        let keys = keys_for_test(drop_archived, Some(512 << 20));
        // Ranged reads of every input, and output row groups far smaller than the inputs'.
        let tuning = Tuning {
            rows_per_group: Some(4096),
            small_input_bytes: 0,
        };
        let merged = merge_both(dir.path(), &inputs, &keys, tuning).await;
        assert_eq!(merged.fast.schema(), merged.datafusion.schema());
        assert_eq!(merged.fast, merged.datafusion, "drop_archived: {drop_archived}");
        let names: Vec<&str> = merged
            .fast
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(
            names,
            ["id", "modified", "archived", "_run_id", "_synced_at", "p1", "p2"]
        );
        assert!(merged.fast_groups > 5, "{} row groups", merged.fast_groups);
        // 25,000 keys; archived survivors: staged multiples of 15 that win on modified or
        // _synced_at (id % 4 in {0, 1}: 667), less two that no_p2 supersedes (10005, 10020).
        let expected = 25_000 - if drop_archived { 665 } else { 0 };
        assert_eq!(merged.fast.num_rows(), expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_inputs_read_whole_give_the_same_result() {
    let dir = tempfile::tempdir().expect("temp dir");
    let inputs = inputs_for_test(dir.path(), 3_000);
    let merged = merge_both(dir.path(), &inputs, &keys_for_test(true, None), Tuning::default()).await;
    assert_eq!(merged.fast, merged.datafusion);
    assert_eq!(merged.fast_groups, 1);
    // The footer's read (its last 64 KiB) already holds a small file whole: the merge reads it
    // from those bytes, with no second request; a larger file is read again.
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new());
    let checked = check_inputs(&store, &inputs, &keys_for_test(true, None))
        .await
        .expect("inputs");
    for c in &checked {
        let on_disk = std::fs::read(format!("/{}", c.path)).expect("the input");
        match &c.whole {
            Some(bytes) => assert_eq!(bytes.as_ref(), on_disk.as_slice(), "{}", c.path),
            None => assert!(on_disk.len() > 64 * 1024, "{}: {} bytes", c.path, on_disk.len()),
        }
    }
    assert!(
        checked.iter().any(|c| c.whole.is_some()) && checked.iter().any(|c| c.whole.is_none()),
        "sizes: {:?}",
        checked.iter().map(|c| c.size).collect::<Vec<_>>()
    );
}

/// Runs the fast path alone; returns its output.
async fn merge_fast(dir: &std::path::Path, inputs: &[Path], keys: &MergeKeys) -> RecordBatch {
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new());
    let checked = check_inputs(&store, inputs, keys).await.expect("inputs");
    let out = dir.join("fast_only.parquet");
    let path = Path::from_absolute_path(&out).expect("path");
    merge_tuned(store, &checked, &path, keys, Tuning::default())
        .await
        .expect("the fast path merges");
    read_for_test(&out).0
}

fn column_for_test(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let column = batch.column_by_name(name).expect("column");
    let strings = column.as_any().downcast_ref::<StringArray>().expect("strings");
    strings.iter().map(|v| v.map(str::to_string)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_with_zero_rows_adds_its_columns_and_empty_inputs_give_an_empty_file() {
    // DataFusion loses `p1` when the first input is empty; the union by name keeps it.
    let dir = tempfile::tempdir().expect("temp dir");
    let empty = write_for_test(dir.path(), "empty.parquet", &[], &["id", "modified", "p2"], 10);
    let some = write_for_test(
        dir.path(),
        "some.parquet",
        &[row(2, Some(1), 1, "a"), row(1, Some(1), 1, "a")],
        &["id", "modified", "p1"],
        1,
    );
    let keys = keys_for_test(true, Some(64 << 20));
    let merged = merge_fast(dir.path(), &[empty.clone(), some], &keys).await;
    let names: Vec<&str> = merged
        .schema_ref()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(names, ["id", "modified", "p1", "p2"]);
    assert_eq!(
        column_for_test(&merged, "id"),
        [Some("1".into()), Some("2".into())]
    );
    assert_eq!(
        column_for_test(&merged, "p1")[0].as_deref(),
        Some("v1-Some(1)-1-a")
    );
    assert_eq!(column_for_test(&merged, "p2"), [None, None]);
    let merged = merge_both(dir.path(), &[empty.clone(), empty], &keys, Tuning::default()).await;
    assert_eq!(merged.fast.num_rows(), 0);
    assert_eq!(merged.fast.schema(), merged.datafusion.schema());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_nullable_column_an_input_lacks_reads_as_null_there() {
    // The catalog's `archived`, `_synced_at` and `_run_id` are non-nullable; an input written
    // before one existed still merges (DataFusion refuses: "declared as non-nullable").
    let dir = tempfile::tempdir().expect("temp dir");
    let all = ["id", "modified", "archived", "_synced_at", "_run_id"];
    let new = write_nullable_for_test(
        dir.path(),
        "new.parquet",
        &[row(1, Some(1), 5, "b")],
        &all,
        10,
        false,
    );
    let old = write_nullable_for_test(
        dir.path(),
        "old.parquet",
        &[row(1, Some(1), 0, "a"), row(2, Some(1), 0, "a")],
        &["id", "modified"],
        10,
        false,
    );
    let merged = merge_fast(dir.path(), &[old, new], &keys_for_test(true, None)).await;
    // Key 1: same modified, and a _synced_at beats none. Key 2: only the old version.
    assert_eq!(column_for_test(&merged, "_run_id"), [Some("b".into()), None]);
    assert_eq!(column_for_test(&merged, "archived"), [Some("false".into()), None]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_over_the_memory_limit_is_declined_and_runs_on_datafusion() {
    let dir = tempfile::tempdir().expect("temp dir");
    let inputs = inputs_for_test(dir.path(), 20_000);
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new());
    let keys = keys_for_test(true, Some(1 << 20));
    let checked = check_inputs(&store, &inputs, &keys).await.expect("inputs");
    let out = Path::from_absolute_path(dir.path().join("declined.parquet")).expect("path");
    let declined = merge_tuned(store.clone(), &checked, &out, &keys, Tuning::default()).await;
    assert!(
        matches!(declined, Err(FastPathError::Declined(_))),
        "{declined:?}"
    );
    assert!(store.head(&out).await.is_err(), "a declined merge writes nothing");
    // merge_files falls back and gives what an unbounded fast merge gives.
    let stats = merge_files(store, &inputs, &out, &keys)
        .await
        .expect("falls back");
    let unbounded = merge_both(dir.path(), &inputs, &keys_for_test(true, None), Tuning::default()).await;
    let (fallback, _) = read_for_test(&dir.path().join("declined.parquet"));
    assert_eq!(fallback, unbounded.fast);
    assert_eq!(stats.rows_out, fallback.num_rows() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_whose_type_differs_between_inputs_is_declined() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = write_for_test(
        dir.path(),
        "a.parquet",
        &[row(1, Some(1), 1, "a")],
        &["id", "modified"],
        10,
    );
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("modified", DataType::Utf8, false),
    ]));
    let path = dir.path().join("b.parquet");
    let mut writer =
        ArrowWriter::try_new(std::fs::File::create(&path).expect("file"), schema.clone(), None).expect("w");
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![1])),
            Arc::new(StringArray::from(vec!["x"])),
        ],
    )
    .expect("batch");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
    let b = Path::from_absolute_path(&path).expect("path");
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new());
    let keys = keys_for_test(true, None);
    let checked = check_inputs(&store, &[a, b], &keys).await.expect("inputs");
    let out = Path::from_absolute_path(dir.path().join("out.parquet")).expect("path");
    let got = merge_tuned(store, &checked, &out, &keys, Tuning::default()).await;
    assert!(matches!(got, Err(FastPathError::Declined(_))), "{got:?}");
}

/// A file with a multi-select list column and a `_uncast` map, as staging writes them.
fn write_nested_for_test(dir: &std::path::Path, name: &str, ids: &[i64], version: i64) -> Path {
    use datafusion::arrow::array::{ListBuilder, MapBuilder, MapFieldNames, StringBuilder};
    let mut tags = ListBuilder::new(StringBuilder::new()).with_field(Arc::new(common::schema::list_item()));
    let names = MapFieldNames {
        entry: "entries".into(),
        key: "keys".into(),
        value: "values".into(),
    };
    let mut uncast = MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new());
    for id in ids {
        if id % 3 == 0 {
            tags.append(false);
        } else {
            tags.values().append_value(format!("v{version}"));
            tags.values().append_value(format!("k{id}"));
            tags.append(true);
        }
        if id % 2 == 0 {
            uncast.keys().append_value("amount");
            uncast.values().append_value(format!("{id};{version}"));
            uncast.append(true).expect("map row");
        } else {
            uncast.append(false).expect("map row");
        }
    }
    let schema = nested_schema();
    let arrays: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids.to_vec())),
        Arc::new(Int64Array::from(vec![version; ids.len()])),
        Arc::new(BooleanArray::from(vec![false; ids.len()])),
        Arc::new(tags.finish()),
        Arc::new(uncast.finish()),
    ];
    let path = dir.join(name);
    let file = std::fs::File::create(&path).expect("temp file");
    let mut writer = ArrowWriter::try_new(file, schema.clone(), None).expect("writer");
    writer
        .write(&RecordBatch::try_new(schema, arrays).expect("batch"))
        .expect("write");
    writer.close().expect("close");
    Path::from_absolute_path(&path).expect("absolute path")
}

fn nested_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("modified", DataType::Int64, true),
        Field::new("archived", DataType::Boolean, true),
        Field::new("tags", common::schema::ColumnType::StringList.arrow(), true),
        Field::new("_uncast", common::schema::uncast_type(), true),
    ]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_columns_merge_on_the_fast_path_as_on_datafusion() {
    use datafusion::arrow::array::AsArray;
    let dir = tempfile::tempdir().expect("temp dir");
    let a = write_nested_for_test(dir.path(), "a.parquet", &[1, 2, 3, 4, 6], 1);
    let b = write_nested_for_test(dir.path(), "b.parquet", &[2, 3, 5, 6], 2);
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new());
    let keys = MergeKeys {
        schema: Some(nested_schema()),
        column_order: nested_schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect(),
        ..keys_for_test(true, None)
    };
    let inputs = [a, b];
    let checked = check_inputs(&store, &inputs, &keys).await.expect("inputs");
    let fast = Path::from_absolute_path(dir.path().join("fast.parquet")).expect("path");
    merge_tuned(store.clone(), &checked, &fast, &keys, Tuning::default())
        .await
        .expect("the fast path merges nested columns");
    let slow = Path::from_absolute_path(dir.path().join("slow.parquet")).expect("path");
    merge_with_datafusion(store.clone(), &inputs, &slow, &keys)
        .await
        .expect("DataFusion merges");
    let read = |p: &str| {
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(dir.path().join(p)).expect("file"))
                .expect("parquet");
        let schema = builder.schema().clone();
        let batches: Vec<RecordBatch> = builder
            .build()
            .expect("reader")
            .map(|b| b.expect("batch"))
            .collect();
        concat_batches(&schema, &batches).expect("concat")
    };
    let (f, d) = (read("fast.parquet"), read("slow.parquet"));
    assert_eq!(
        f.schema(),
        nested_schema(),
        "the table's schema, nested types and all"
    );
    assert_eq!(f.num_rows(), 6);
    for name in ["id", "modified", "tags", "_uncast"] {
        let (x, y) = (f.column_by_name(name).unwrap(), d.column_by_name(name).unwrap());
        assert_eq!(x.to_data(), y.to_data(), "column {name}");
    }
    let tags = f.column_by_name("tags").unwrap().as_list::<i32>();
    let key2: Vec<_> = tags
        .value(1)
        .as_string::<i32>()
        .iter()
        .flatten()
        .map(str::to_string)
        .collect();
    assert_eq!(key2, ["v2", "k2"], "key 2's newest version");
    assert!(tags.is_null(2), "key 3's newest has no tags");
}
