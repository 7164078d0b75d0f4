//! Comparing the lake with the source: rows per table and partition, duplicate keys, and
//! missing, unexpected and stale records, every value compared. Tests, the demo and (later)
//! `hubsync audit` share it.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use common::catalog::{columns, TableSpec};
use common::clock::dt_of;
use common::hubspot::wire::{parse_ms, ObjectRecord};
use common::lake::Lake;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// One record as the lake or the source holds it, reduced to what the lake stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub created_ms: i64,
    pub modified_ms: i64,
    pub tag: Option<String>,
    pub properties: BTreeMap<String, Option<String>>,
}

/// A table read back from the lake.
#[derive(Debug, Default)]
pub struct LakeTable {
    pub rows: BTreeMap<i64, Record>,
    pub rows_per_dt: BTreeMap<String, u64>,
    pub files: usize,
    pub duplicate_keys: Vec<i64>,
    /// Rows whose `dt` directory does not match their created date.
    pub misplaced: Vec<i64>,
}

impl LakeTable {
    pub fn row_count(&self) -> u64 {
        self.rows_per_dt.values().sum()
    }
}

/// Reads every live file of `table` (never `_staging`).
pub async fn read_lake_table(lake: &Lake, table: &TableSpec) -> anyhow::Result<LakeTable> {
    let mut out = LakeTable::default();
    let props = table.property_columns();
    for dt in lake.partitions(&table.name).await? {
        for meta in lake.list_parquet(&lake.partition_dir(&table.name, &dt)).await? {
            out.files += 1;
            let bytes = lake
                .store()
                .get(&meta.location)
                .await?
                .bytes()
                .await
                .with_context(|| format!("reading {}", meta.location))?;
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                .with_context(|| format!("{} is not a readable Parquet file", meta.location))?
                .build()?;
            for batch in reader {
                let batch = batch?;
                let col = |name: &str, ty: &DataType| -> anyhow::Result<Option<std::sync::Arc<dyn Array>>> {
                    match batch.column_by_name(name) {
                        Some(c) => Ok(Some(cast(c, ty)?)),
                        None => Ok(None),
                    }
                };
                let key = col(&table.key_column, &DataType::Int64)?.context("no key column")?;
                let created = col(columns::CREATED_AT, &DataType::Int64)?.context("no created_at")?;
                let modified =
                    col(columns::LAST_MODIFIED_AT, &DataType::Int64)?.context("no last_modified_at")?;
                let tag = match &table.tag_column {
                    Some(t) => col(t, &DataType::Utf8)?,
                    None => None,
                };
                let prop_cols: Vec<Option<std::sync::Arc<dyn Array>>> = props
                    .iter()
                    .map(|p| col(p, &DataType::Utf8))
                    .collect::<Result<_, _>>()?;
                let (key, created, modified) = (
                    key.as_primitive::<Int64Type>(),
                    created.as_primitive::<Int64Type>(),
                    modified.as_primitive::<Int64Type>(),
                );
                for i in 0..batch.num_rows() {
                    let k = key.value(i);
                    let str_at = |a: &Option<std::sync::Arc<dyn Array>>| {
                        a.as_ref().and_then(|a| {
                            let s = a.as_string::<i32>();
                            (!s.is_null(i)).then(|| s.value(i).to_string())
                        })
                    };
                    let record = Record {
                        created_ms: created.value(i),
                        modified_ms: modified.value(i),
                        tag: str_at(&tag),
                        properties: props
                            .iter()
                            .zip(&prop_cols)
                            .map(|(p, c)| (p.clone(), str_at(c)))
                            .collect(),
                    };
                    if dt_of(record.created_ms).as_deref() != Some(dt.as_str()) {
                        out.misplaced.push(k);
                    }
                    *out.rows_per_dt.entry(dt.clone()).or_default() += 1;
                    if out.rows.insert(k, record).is_some() {
                        out.duplicate_keys.push(k);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The source's live records of a table, as the lake should hold them.
pub fn expected_rows(
    table: &TableSpec,
    truth: &BTreeMap<String, Vec<ObjectRecord>>,
) -> anyhow::Result<BTreeMap<i64, Record>> {
    let props = table.property_columns();
    let mut out = BTreeMap::new();
    for source in &table.sources {
        for r in truth
            .get(&source.object_type)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let key: i64 = r.id.parse().with_context(|| format!("truth id {}", r.id))?;
            let time = |prop: &str, fallback: &str| {
                r.properties
                    .get(prop)
                    .and_then(|v| v.as_deref())
                    .and_then(parse_ms)
                    .or_else(|| parse_ms(fallback))
                    .with_context(|| format!("truth record {key} has no {prop}"))
            };
            let owned: BTreeSet<&String> = source.properties.iter().collect();
            out.insert(
                key,
                Record {
                    created_ms: time(source.created_property(), &r.created_at)?,
                    modified_ms: time(source.modified_property(), &r.updated_at)?,
                    tag: table.tag_column.as_ref().and(source.tag.clone()),
                    properties: props
                        .iter()
                        .map(|p| {
                            let v = if owned.contains(p) {
                                r.properties.get(p).cloned().flatten()
                            } else {
                                None
                            };
                            (p.clone(), v)
                        })
                        .collect(),
                },
            );
        }
    }
    Ok(out)
}

/// Differences between a lake table and the source.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Diff {
    pub rows_compared: u64,
    pub missing: Vec<i64>,
    pub unexpected: Vec<i64>,
    /// Present in both with a different modified time (stale) or any other value.
    pub different: Vec<(i64, String)>,
    pub duplicate_keys: Vec<i64>,
    pub misplaced: Vec<i64>,
}

impl Diff {
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty()
            && self.unexpected.is_empty()
            && self.different.is_empty()
            && self.duplicate_keys.is_empty()
            && self.misplaced.is_empty()
    }

    pub fn count(&self) -> usize {
        self.missing.len()
            + self.unexpected.len()
            + self.different.len()
            + self.duplicate_keys.len()
            + self.misplaced.len()
    }

    pub fn summary(&self) -> String {
        let first = |v: &[i64]| {
            v.iter()
                .take(5)
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        format!(
            "{} compared; {} missing [{}], {} unexpected [{}], {} different [{}], {} duplicate keys, {} misplaced",
            self.rows_compared,
            self.missing.len(),
            first(&self.missing),
            self.unexpected.len(),
            first(&self.unexpected),
            self.different.len(),
            self.different.iter().take(3).map(|(k, w)| format!("{k}: {w}")).collect::<Vec<_>>().join("; "),
            self.duplicate_keys.len(),
            self.misplaced.len()
        )
    }
}

pub fn compare(lake: &LakeTable, expected: &BTreeMap<i64, Record>) -> Diff {
    let mut d = Diff {
        duplicate_keys: lake.duplicate_keys.clone(),
        misplaced: lake.misplaced.clone(),
        ..Default::default()
    };
    for (k, want) in expected {
        match lake.rows.get(k) {
            None => d.missing.push(*k),
            Some(got) => {
                d.rows_compared += 1;
                if got.modified_ms != want.modified_ms {
                    d.different.push((
                        *k,
                        format!("modified {} != {}", got.modified_ms, want.modified_ms),
                    ));
                } else if got != want {
                    d.different.push((*k, format!("{got:?} != {want:?}")));
                }
            }
        }
    }
    d.unexpected = lake
        .rows
        .keys()
        .filter(|k| !expected.contains_key(k))
        .copied()
        .collect();
    d
}

/// Reads the simulator's truth (`/_sim/truth/{type}`) for the object types of `tables`.
pub async fn sim_truth(
    base_url: &str,
    tables: &[&TableSpec],
) -> anyhow::Result<BTreeMap<String, Vec<ObjectRecord>>> {
    let http = reqwest::Client::new();
    let mut out = BTreeMap::new();
    for t in tables {
        for s in &t.sources {
            if out.contains_key(&s.object_type) {
                continue;
            }
            let url = format!("{}/_sim/truth/{}", base_url.trim_end_matches('/'), s.object_type);
            let text = http.get(&url).send().await?.error_for_status()?.text().await?;
            let records = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l)?;
                    Ok(ObjectRecord {
                        id: v["id"].as_str().unwrap_or_default().to_string(),
                        properties: serde_json::from_value(v["properties"].clone())?,
                        created_at: v["createdAt"].as_str().unwrap_or_default().to_string(),
                        updated_at: v["updatedAt"].as_str().unwrap_or_default().to_string(),
                        archived: false,
                        archived_at: None,
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()
                .with_context(|| format!("parsing truth of {}", s.object_type))?;
            out.insert(s.object_type.clone(), records);
        }
    }
    Ok(out)
}
