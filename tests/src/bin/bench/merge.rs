//! `bench merge`: the merger's keep-latest (through `hubsync merge-files`) against Polars and
//! DuckDB on the same files, in the same run: 1,000,000 live rows plus 200,000 staged rows
//! (100,000 updates, 100,000 new), 20 string properties (`--typed`: the lake's column types in
//! turn, lists and the `_uncast` map included; `--properties 200` as real deals have). Each engine runs as its own process
//! under a small wrapper that reports wall time and peak RSS (`wait4`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use anyhow::{bail, Result};
use clap::Args;
use datafusion::arrow::array::{Array, BooleanArray, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

#[derive(Args)]
pub struct MergeBench {
    /// Rows already in the partition.
    #[arg(long, default_value_t = 1_000_000)]
    live: i64,
    /// Rows staged: half updates of live rows, half new.
    #[arg(long, default_value_t = 200_000)]
    staged: i64,
    /// Properties per row.
    #[arg(long, default_value_t = 20)]
    properties: usize,
    /// Typed properties as the lake writes them (cycling double, timestamp, boolean, date,
    /// multi-select list, string) plus the `_uncast` map, instead of strings only.
    #[arg(long)]
    typed: bool,
    /// Where the files go (default: a temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Runs its arguments as a process and prints `wall-seconds peak-rss-kib exit-code`.
pub const MEASURE: &str = r#"
import os, sys, time
t = time.monotonic()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(f"{time.monotonic() - t:.3f} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"#;

const POLARS: &str = r#"
import sys, polars as pl
out, inputs = sys.argv[1], sys.argv[2:]
frames = [pl.scan_parquet(p) for p in inputs]
(pl.concat(frames, how="diagonal_relaxed")
   .sort(["id", "modified", "_synced_at"], descending=[False, True, True])
   .unique(subset=["id"], keep="first", maintain_order=True)
   .filter(~pl.col("archived"))
   .sink_parquet(out, compression="snappy"))
"#;

const DUCKDB: &str = r#"
import sys, duckdb
out, inputs = sys.argv[1], sys.argv[2:]
files = ", ".join("'" + p + "'" for p in inputs)
duckdb.sql(f"""
COPY (
  SELECT * FROM read_parquet([{files}], union_by_name = true)
  QUALIFY row_number() OVER (PARTITION BY id ORDER BY modified DESC, _synced_at DESC) = 1
          AND NOT archived
  ORDER BY id
) TO '{out}' (FORMAT parquet, COMPRESSION snappy)
""")
"#;

/// The type of property `p` in a typed run: the lake's column types in turn.
fn property_type(p: usize, typed: bool) -> common::schema::ColumnType {
    use common::schema::ColumnType::*;
    if !typed {
        return String;
    }
    [Float64, Timestamp, Boolean, Date, StringList, String][p % 6]
}

/// Property `p`'s column for `ids` at `version`.
fn property_column(p: usize, ty: common::schema::ColumnType, ids: &[i64], version: i64) -> Arc<dyn Array> {
    use common::schema::ColumnType;
    use datafusion::arrow::array::{
        Date32Array, Float64Array, ListBuilder, StringBuilder, TimestampMillisecondArray,
    };
    let h = |id: &i64| {
        id.wrapping_mul(2_654_435_761)
            .wrapping_add(p as i64 * 7 + version)
    };
    match ty {
        ColumnType::Float64 | ColumnType::Decimal => Arc::new(Float64Array::from_iter_values(
            ids.iter().map(|id| (h(id) % 1_000_000) as f64 / 100.0),
        )),
        ColumnType::Timestamp => Arc::new(
            TimestampMillisecondArray::from_iter_values(
                ids.iter().map(|id| 1_600_000_000_000 + h(id).rem_euclid(1 << 36)),
            )
            .with_timezone("UTC"),
        ),
        ColumnType::Int64 => Arc::new(datafusion::arrow::array::Int64Array::from_iter_values(
            ids.iter().map(h),
        )),
        ColumnType::Boolean => Arc::new(BooleanArray::from_iter(ids.iter().map(|id| Some(h(id) % 2 == 0)))),
        ColumnType::Date => Arc::new(Date32Array::from_iter_values(
            ids.iter().map(|id| 18_000 + (h(id).rem_euclid(3000)) as i32),
        )),
        ColumnType::StringList => {
            let mut b =
                ListBuilder::new(StringBuilder::new()).with_field(Arc::new(common::schema::list_item()));
            for id in ids {
                for o in 0..(h(id).rem_euclid(3)) {
                    b.values()
                        .append_value(format!("option_{}", (h(id) + o).rem_euclid(12)));
                }
                b.append(true);
            }
            Arc::new(b.finish())
        }
        ColumnType::String => Arc::new(StringArray::from_iter_values(
            ids.iter().map(|id| format!("v{version}-p{p}-{:x}", h(id))),
        )),
    }
}

/// One `_uncast` map per row: one value in a hundred did not cast.
fn uncast_column(ids: &[i64], version: i64) -> Arc<dyn Array> {
    use datafusion::arrow::array::{MapBuilder, MapFieldNames, StringBuilder};
    let names = MapFieldNames {
        entry: "entries".into(),
        key: "keys".into(),
        value: "values".into(),
    };
    let mut b = MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new());
    for id in ids {
        let uncast = id % 100 == 0;
        if uncast {
            b.keys().append_value("p00");
            b.values().append_value(format!("{id};{version}"));
        }
        let _ = b.append(uncast);
    }
    Arc::new(b.finish())
}

fn write_rows(path: &Path, ids: &[i64], version: i64, properties: usize, typed: bool) -> Result<()> {
    let mut fields = vec![
        Field::new("id", DataType::Int64, false),
        Field::new("modified", DataType::Int64, false),
        Field::new("archived", DataType::Boolean, false),
        Field::new("_synced_at", DataType::Int64, false),
    ];
    fields.extend(
        (0..properties).map(|i| Field::new(format!("p{i:02}"), property_type(i, typed).arrow(), true)),
    );
    if typed {
        fields.push(Field::new("_uncast", common::schema::uncast_type(), true));
    }
    let schema = Arc::new(Schema::new(fields));
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer = ArrowWriter::try_new(std::fs::File::create(path)?, schema.clone(), Some(props))?;
    for chunk in ids.chunks(65_536) {
        let mut columns: Vec<Arc<dyn Array>> = vec![
            Arc::new(Int64Array::from(chunk.to_vec())),
            Arc::new(Int64Array::from_iter_values(
                chunk
                    .iter()
                    .map(|id| 1_700_000_000_000 + version * 1_000_000_000 + id),
            )),
            Arc::new(BooleanArray::from(vec![false; chunk.len()])),
            Arc::new(Int64Array::from(vec![version; chunk.len()])),
        ];
        for p in 0..properties {
            columns.push(property_column(p, property_type(p, typed), chunk, version));
        }
        if typed {
            columns.push(uncast_column(chunk, version));
        }
        writer.write(&RecordBatch::try_new(schema.clone(), columns)?)?;
    }
    writer.close()?;
    Ok(())
}

/// A Python with Polars and DuckDB: the system's, or a venv under ~/.cache made on first use.
fn python() -> Result<PathBuf> {
    let ok = |py: &Path| {
        Command::new(py)
            .args(["-c", "import polars, duckdb"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let system = PathBuf::from("python3");
    if ok(&system) {
        return Ok(system);
    }
    let venv =
        PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| ".".into())).join(".cache/hubsync-bench-venv");
    let py = venv.join("bin/python");
    if !ok(&py) {
        eprintln!("installing polars and duckdb into {} ...", venv.display());
        let made = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status()?;
        anyhow::ensure!(made.success(), "python3 -m venv {} failed", venv.display());
        let pip = Command::new(&py)
            .args(["-m", "pip", "install", "--quiet", "polars", "duckdb"])
            .status()?;
        anyhow::ensure!(pip.success(), "pip install polars duckdb failed");
    }
    Ok(py)
}

/// The release `hubsync` next to this benchmark, built (or rebuilt) first.
fn hubsync() -> Result<PathBuf> {
    Ok(crate::release_bins()?.join("hubsync"))
}

pub struct Engine {
    engine: &'static str,
    secs: f64,
    peak_mib: f64,
    rows: usize,
}

fn measure(engine: &'static str, py: &Path, command: &[&std::ffi::OsStr], out: &Path) -> Result<Engine> {
    let _ = std::fs::remove_file(out);
    let output = Command::new(py).arg("-c").arg(MEASURE).args(command).output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let last: Vec<&str> = text
        .lines()
        .last()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    if last.len() != 3 || last[2] != "0" {
        bail!(
            "{engine} failed: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let rows = parquet::file::reader::SerializedFileReader::new(std::fs::File::open(out)?).map(|r| {
        parquet::file::reader::FileReader::metadata(&r)
            .file_metadata()
            .num_rows() as usize
    })?;
    Ok(Engine {
        engine,
        secs: last[0].parse()?,
        peak_mib: last[1].parse::<f64>()? / 1024.0,
        rows,
    })
}

pub fn bench_merge(args: MergeBench) -> Result<Vec<Engine>> {
    let temp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let (live, staged) = (dir.join("live.parquet"), dir.join("staged.parquet"));
    let t = std::time::Instant::now();
    let live_ids: Vec<i64> = (0..args.live).collect();
    // Updates spread over the live rows (every (live/updates)-th id), then new ids.
    let updates = args.staged / 2;
    let step = (args.live / updates.max(1)).max(1);
    let staged_ids: Vec<i64> = (0..updates)
        .map(|i| i * step)
        .chain(args.live..args.live + (args.staged - updates))
        .collect();
    write_rows(&live, &live_ids, 1, args.properties, args.typed)?;
    write_rows(&staged, &staged_ids, 2, args.properties, args.typed)?;
    let mib = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.len() as f64 / 1048576.0)
            .unwrap_or(0.0)
    };
    println!(
        "merge: {} live + {} staged rows ({} updates), {} {} properties; files {:.0} + {:.0} MiB, written in {:.1?}",
        args.live,
        args.staged,
        updates,
        args.properties,
        if args.typed { "typed (double, timestamp, boolean, date, list, string) + _uncast" } else { "string" },
        mib(&live),
        mib(&staged),
        t.elapsed()
    );
    let py = python()?;
    let hubsync = hubsync()?;
    let out = dir.join("out.parquet");
    // Not polars.py / duckdb.py: a script beside its module would shadow it.
    let (polars, duckdb) = (dir.join("merge_polars.py"), dir.join("merge_duckdb.py"));
    std::fs::write(&polars, POLARS)?;
    std::fs::write(&duckdb, DUCKDB)?;
    let os = |p: &Path| p.as_os_str().to_owned();
    let runs = [
        (
            "hubsync",
            vec![
                os(&hubsync),
                "merge-files".into(),
                "--key".into(),
                "id".into(),
                "--modified".into(),
                "modified".into(),
                "--out".into(),
                os(&out),
                os(&live),
                os(&staged),
            ],
        ),
        (
            "polars",
            vec![os(&py), os(&polars), os(&out), os(&live), os(&staged)],
        ),
        (
            "duckdb",
            vec![os(&py), os(&duckdb), os(&out), os(&live), os(&staged)],
        ),
    ];
    let mut results = Vec::new();
    for (engine, command) in &runs {
        let args: Vec<&std::ffi::OsStr> = command.iter().map(|a| a.as_os_str()).collect();
        results.push(measure(engine, &py, &args, &out)?);
    }
    let expected = (args.live + args.staged - updates) as usize;
    for m in &results {
        anyhow::ensure!(
            m.rows == expected,
            "{} wrote {} rows, expected {expected}",
            m.engine,
            m.rows
        );
    }
    print_table(&results);
    Ok(results)
}

/// hubsync, Polars, DuckDB, in that order.
pub fn print_table(results: &[Engine]) {
    println!(
        "{:<8} {:>9} {:>10} {:>10}",
        "engine", "wall s", "peak MiB", "rows out"
    );
    for m in results {
        println!(
            "{:<8} {:>9.2} {:>10.0} {:>10}",
            m.engine, m.secs, m.peak_mib, m.rows
        );
    }
    if let [ours, polars, duckdb] = results {
        println!(
            "hubsync/polars time {:.2} (target ≤ 0.75); hubsync/duckdb peak memory {:.2} (target ≤ 1.00)",
            ours.secs / polars.secs,
            ours.peak_mib / duckdb.peak_mib
        );
    }
}
