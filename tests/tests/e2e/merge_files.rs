//! `hubsync merge-files`: the merger's keep-latest over local files, and a merge larger than its
//! memory limit spilling instead of failing.

use std::process::Command;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BooleanArray, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use hubsync_tests::binary::hubsync_binary;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;

const PROPERTIES: usize = 10;

/// Rows `keys` at version `modified`; every tenth archived when `archive_some`.
fn write(
    path: &std::path::Path,
    keys: impl Iterator<Item = i64> + Clone,
    modified: i64,
    archive_some: bool,
) -> anyhow::Result<()> {
    let mut fields = vec![
        Field::new("id", DataType::Int64, false),
        Field::new("modified", DataType::Int64, false),
        Field::new("archived", DataType::Boolean, false),
    ];
    fields.extend((0..PROPERTIES).map(|i| Field::new(format!("p{i:02}"), DataType::Utf8, true)));
    let schema = Arc::new(Schema::new(fields));
    let mut writer = ArrowWriter::try_new(std::fs::File::create(path)?, schema.clone(), None)?;
    let keys: Vec<i64> = keys.collect();
    for chunk in keys.chunks(8192) {
        let mut columns: Vec<Arc<dyn Array>> = vec![
            Arc::new(Int64Array::from(chunk.to_vec())),
            Arc::new(Int64Array::from(vec![modified; chunk.len()])),
            Arc::new(BooleanArray::from(
                chunk
                    .iter()
                    .map(|k| archive_some && k % 10 == 0)
                    .collect::<Vec<_>>(),
            )),
        ];
        for p in 0..PROPERTIES {
            columns.push(Arc::new(StringArray::from(
                chunk
                    .iter()
                    .map(|k| format!("value {p} of record {k} at version {modified}"))
                    .collect::<Vec<_>>(),
            )));
        }
        writer.write(&RecordBatch::try_new(schema.clone(), columns)?)?;
    }
    writer.close()?;
    Ok(())
}

#[test]
fn merge_files_keeps_the_latest_per_key_within_a_memory_limit_smaller_than_the_data() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (live, staged, out) = (
        dir.path().join("live.parquet"),
        dir.path().join("staged.parquet"),
        dir.path().join("merged.parquet"),
    );
    // 200,000 existing rows; 40,000 staged: half updates (a tenth of them archived), half new.
    write(&live, 0..200_000, 1, false)?;
    write(&staged, (180_000..200_000).chain(200_000..220_000), 2, true)?;
    let output = Command::new(hubsync_binary()?)
        .args([
            "merge-files",
            "--key",
            "id",
            "--modified",
            "modified",
            "--memory-mb",
            "16",
            "--out",
        ])
        .arg(&out)
        .arg(&live)
        .arg(&staged)
        .output()?;
    let text =
        String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("merged 2 files"), "{text}");

    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&out)?)?;
    let names: Vec<String> = reader
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        &names[..3],
        ["id", "modified", "archived"],
        "the first input's column order"
    );
    let mut seen = std::collections::BTreeMap::new();
    for batch in reader.build()? {
        let batch = batch?;
        let ids = batch.column(0).as_primitive::<Int64Type>();
        let versions = batch.column(1).as_primitive::<Int64Type>();
        let p0 = batch.column_by_name("p00").expect("p00").as_string::<i32>();
        for i in 0..batch.num_rows() {
            let (k, v) = (ids.value(i), versions.value(i));
            assert_eq!(p0.value(i), format!("value 0 of record {k} at version {v}"));
            assert!(seen.insert(k, v).is_none(), "duplicate key {k}");
        }
    }
    // 220,000 keys minus the 4,000 archived ones; the staged keys at version 2.
    assert_eq!(seen.len(), 216_000);
    assert!(seen.iter().all(|(k, v)| *v == if *k >= 180_000 { 2 } else { 1 }));
    assert!(!seen.contains_key(&190_000) && seen.contains_key(&190_001));

    // Clear errors: an input that is not Parquet, and --out naming an input.
    std::fs::write(dir.path().join("bad.parquet"), b"not parquet")?;
    let output = Command::new(hubsync_binary()?)
        .args(["merge-files", "--key", "id", "--modified", "modified", "--out"])
        .arg(dir.path().join("again.parquet"))
        .arg(&live)
        .arg(dir.path().join("bad.parquet"))
        .output()?;
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(
        err.contains("bad.parquet is not a readable Parquet file"),
        "{err}"
    );
    let output = Command::new(hubsync_binary()?)
        .args(["merge-files", "--key", "id", "--modified", "modified", "--out"])
        .arg(&live)
        .arg(&live)
        .output()?;
    assert!(String::from_utf8_lossy(&output.stderr).contains("is also an input"));
    Ok(())
}
