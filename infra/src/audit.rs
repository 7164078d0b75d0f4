//! Comparing the lake with the source: rows per table and partition, duplicate keys, and
//! missing, unexpected and stale records, every value compared. Tests, the demo and
//! `hubsync audit` share it.

use std::collections::{BTreeMap, BTreeSet};

use common::schema::{self, Column, ColumnType, TableSchema, Typed};

use anyhow::Context;
use common::catalog::{columns, dt_of_created, TableSpec};
use common::clock::iso;
use common::lake::Lake;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, MapArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float64Type, Int64Type, TimestampMillisecondType,
};
use hubspot::HubSpotClient;
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use wire::{parse_ms, ObjectRecord, Paging, LIST_PAGE_MAX};

/// One record as the lake or the source holds it, reduced to what the lake stores. Property
/// values are compared as [`schema::canonical`] renders them: the lake's typed value, or
/// `uncast:<raw>` where `_uncast` holds it; the source's string cast by the same rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// `None`: missing or unreadable at the source (the record lives in the stated partition).
    pub created_ms: Option<i64>,
    pub modified_ms: i64,
    pub tag: Option<String>,
    pub properties: BTreeMap<String, Option<String>>,
}

/// A table read back from the lake.
#[derive(Debug)]
pub struct LakeTable {
    pub rows: BTreeMap<i64, Record>,
    pub rows_per_dt: BTreeMap<String, u64>,
    pub files: usize,
    pub duplicate_keys: Vec<i64>,
    /// Rows whose `dt` directory does not match their created date.
    pub misplaced: Vec<i64>,
    /// The table's recorded schema (no columns before its first run).
    pub schema: TableSchema,
}

impl LakeTable {
    pub fn row_count(&self) -> u64 {
        self.rows_per_dt.values().sum()
    }
}

/// The audited columns: the fetched ones (a deleted property's column keeps old values, E4).
fn audited(schema: &TableSchema) -> Vec<&Column> {
    schema.columns.iter().filter(|c| c.fetched).collect()
}

/// Each row's values of `col`, rendered as [`schema::canonical`] does, `_uncast` included.
fn rendered(
    col: &Column,
    array: Option<ArrayRef>,
    uncast: Option<&MapArray>,
    rows: usize,
) -> anyhow::Result<Vec<Option<String>>> {
    let mut out = vec![None; rows];
    if let Some(array) = array {
        let a = cast(&array, &col.ty.arrow())?;
        for (i, slot) in out.iter_mut().enumerate() {
            if a.is_null(i) {
                continue;
            }
            let typed = match col.ty {
                ColumnType::String => Typed::String(a.as_string::<i32>().value(i).to_string()),
                ColumnType::Float64 => Typed::Float64(a.as_primitive::<Float64Type>().value(i)),
                ColumnType::Int64 => Typed::Int64(a.as_primitive::<Int64Type>().value(i)),
                ColumnType::Decimal => Typed::Decimal(a.as_primitive::<Decimal128Type>().value(i)),
                ColumnType::Timestamp => {
                    Typed::Timestamp(a.as_primitive::<TimestampMillisecondType>().value(i))
                }
                ColumnType::Date => Typed::Date(a.as_primitive::<Date32Type>().value(i)),
                ColumnType::Boolean => Typed::Boolean(a.as_boolean().value(i)),
                ColumnType::StringList => Typed::StringList(
                    a.as_list::<i32>()
                        .value(i)
                        .as_string::<i32>()
                        .iter()
                        .map(|v| v.unwrap_or_default().to_string())
                        .collect(),
                ),
            };
            *slot = typed.render();
        }
    }
    if let Some(map) = uncast {
        for (i, slot) in out.iter_mut().enumerate() {
            if slot.is_some() || map.is_null(i) {
                continue;
            }
            let entries = map.value(i);
            let (keys, values) = (
                entries.column(0).as_string::<i32>(),
                entries.column(1).as_string::<i32>(),
            );
            if let Some(at) = (0..keys.len()).find(|&j| keys.value(j) == col.name) {
                *slot = (!values.is_null(at)).then(|| format!("uncast:{}", values.value(at)));
            }
        }
    }
    Ok(out)
}

/// Reads every live file of `table` (never `_staging`) under its recorded schema.
pub async fn read_lake_table(lake: &Lake, table: &TableSpec) -> anyhow::Result<LakeTable> {
    let schema = schema::load(lake, &table.name)
        .await?
        .unwrap_or_else(|| TableSchema {
            columns: Vec::new(),
            ..TableSchema::of_catalog(table)
        });
    let mut out = LakeTable {
        rows: BTreeMap::new(),
        rows_per_dt: BTreeMap::new(),
        files: 0,
        duplicate_keys: Vec::new(),
        misplaced: Vec::new(),
        schema,
    };
    let props = audited(&out.schema).into_iter().cloned().collect::<Vec<_>>();
    let mut link_sets: BTreeMap<i64, (Record, Vec<String>)> = BTreeMap::new();
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
                let col = |name: &str, ty: &DataType| -> anyhow::Result<Option<ArrayRef>> {
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
                let uncast = batch.column_by_name(columns::UNCAST).map(|c| c.as_map().clone());
                let n = batch.num_rows();
                let prop_cols: Vec<Vec<Option<String>>> = props
                    .iter()
                    .map(|c| rendered(c, batch.column_by_name(&c.name).cloned(), uncast.as_ref(), n))
                    .collect::<Result<_, _>>()?;
                let (key, created, modified) = (
                    key.as_primitive::<Int64Type>(),
                    created.as_primitive::<Int64Type>(),
                    modified.as_primitive::<Int64Type>(),
                );
                for i in 0..n {
                    let k = key.value(i);
                    let tag = tag.as_ref().and_then(|a| {
                        let s = a.as_string::<i32>();
                        (!s.is_null(i)).then(|| s.value(i).to_string())
                    });
                    let record = Record {
                        created_ms: (!created.is_null(i)).then(|| created.value(i)),
                        modified_ms: modified.value(i),
                        tag,
                        properties: props
                            .iter()
                            .zip(&prop_cols)
                            .map(|(c, values)| (c.name.clone(), values[i].clone()))
                            .collect(),
                    };
                    if dt_of_created(record.created_ms) != dt {
                        out.misplaced.push(k);
                    }
                    if table.is_links() {
                        // A link table: a key's rows are its set of links, compared whole.
                        let link = link_text(&record.properties);
                        let (_, links) = link_sets.entry(k).or_insert_with(|| (record, Vec::new()));
                        if links.is_empty() {
                            *out.rows_per_dt.entry(dt.clone()).or_default() += 1;
                        }
                        if links.contains(&link) {
                            out.duplicate_keys.push(k);
                        }
                        links.push(link);
                        continue;
                    }
                    *out.rows_per_dt.entry(dt.clone()).or_default() += 1;
                    if out.rows.insert(k, record).is_some() {
                        out.duplicate_keys.push(k);
                    }
                }
            }
        }
    }
    for (k, (record, links)) in link_sets {
        out.rows.insert(k, link_record(record, links));
    }
    Ok(out)
}

/// A record's time property in epoch ms, or its `fallback` field (`createdAt`, `updatedAt`).
fn record_time(r: &ObjectRecord, prop: &str, fallback: &str) -> Option<i64> {
    r.properties
        .get(prop)
        .and_then(|v| v.as_deref())
        .and_then(parse_ms)
        .or_else(|| parse_ms(fallback))
}

/// The property under which a link table's audit compares a key's set of links.
const LINKS_PROPERTY: &str = "links";

/// One link row, rendered: its columns (linked id, type id, category, label) by name.
fn link_text(properties: &BTreeMap<String, Option<String>>) -> String {
    properties
        .iter()
        .map(|(name, v)| format!("{name}={}", v.as_deref().unwrap_or("null")))
        .collect::<Vec<_>>()
        .join(",")
}

/// A key's record in a link table's audit: its version and its sorted set of links.
fn link_record(record: Record, mut links: Vec<String>) -> Record {
    links.sort();
    Record {
        properties: BTreeMap::from([(LINKS_PROPERTY.to_string(), Some(links.join(" ")))]),
        ..record
    }
}

/// The source's links of a link table, as the lake should hold them: every live `from`
/// record's links (read with the v4 batch read, as a sync does), keyed by the record, at its
/// version; records with no link have no row.
pub async fn expected_links(
    client: &HubSpotClient,
    table: &TableSpec,
) -> anyhow::Result<BTreeMap<i64, Record>> {
    let links = table.links.as_ref().context("not a link table")?;
    let schema = TableSchema::of_links(table).context("not a link table")?;
    let mut out = BTreeMap::new();
    for source in &table.sources {
        let props = source.request_properties(std::iter::empty::<&str>());
        let records = list_all(client, &source.object_type, &props).await?;
        for chunk in records.chunks(wire::ASSOCIATIONS_BATCH_MAX) {
            let ids: Vec<String> = chunk.iter().map(|r| r.id.clone()).collect();
            let found = client
                .associations(&source.object_type, &links.to_object_type, &ids)
                .await
                .with_context(|| {
                    format!(
                        "reading the links of {} to {}",
                        source.object_type, links.to_object_type
                    )
                })?;
            for r in chunk {
                let Some(set) = found.get(r.id.trim()).filter(|s| !s.is_empty()) else {
                    continue;
                };
                let key: i64 =
                    r.id.trim()
                        .parse()
                        .with_context(|| format!("record id {}", r.id))?;
                let time = |prop: &str, fallback: &str| record_time(r, prop, fallback);
                let texts = set
                    .iter()
                    .flat_map(|to| {
                        to.association_types.iter().map(|ty| {
                            let raw = [
                                Some(to.to_object_id.to_string()),
                                Some(ty.type_id.to_string()),
                                Some(ty.category.clone()),
                                ty.label.clone(),
                            ];
                            let props = schema
                                .columns
                                .iter()
                                .zip(raw)
                                .map(|(c, v)| (c.name.clone(), schema::canonical(c.ty, v.as_deref())))
                                .collect::<Vec<_>>();
                            link_text(&props.into_iter().collect())
                        })
                    })
                    .collect();
                let record = Record {
                    created_ms: time(source.created_property(), &r.created_at),
                    modified_ms: time(source.modified_property(), &r.updated_at)
                        .with_context(|| format!("record {key} has no modified time"))?,
                    tag: table.tag_column.as_ref().and(source.tag.clone()),
                    properties: BTreeMap::new(),
                };
                out.insert(key, link_record(record, texts));
            }
        }
    }
    Ok(out)
}

/// The source's live records of a table, as the lake should hold them.
pub fn expected_rows(
    table: &TableSpec,
    schema: &TableSchema,
    truth: &BTreeMap<String, Vec<ObjectRecord>>,
) -> anyhow::Result<BTreeMap<i64, Record>> {
    let props = audited(schema);
    let mut out = BTreeMap::new();
    for source in &table.sources {
        for r in truth
            .get(&source.object_type)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let key: i64 = r.id.parse().with_context(|| format!("truth id {}", r.id))?;
            let time = |prop: &str, fallback: &str| {
                record_time(r, prop, fallback).with_context(|| format!("truth record {key} has no {prop}"))
            };
            out.insert(
                key,
                Record {
                    created_ms: time(source.created_property(), &r.created_at).ok(),
                    modified_ms: time(source.modified_property(), &r.updated_at)?,
                    tag: table.tag_column.as_ref().and(source.tag.clone()),
                    properties: props
                        .iter()
                        .map(|c| {
                            let raw = if c.sources.contains(&source.object_type) {
                                r.properties.get(&c.name).cloned().flatten()
                            } else {
                                None
                            };
                            (c.name.clone(), schema::canonical(c.ty, raw.as_deref()))
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
    /// In the source, not in the lake.
    pub missing: Vec<i64>,
    /// In the lake, not (or no longer) live in the source.
    pub unexpected: Vec<i64>,
    /// In both, the lake's copy older than the source's: `(key, lake modified, source modified)`.
    pub stale: Vec<(i64, i64, i64)>,
    /// In both with the same modified time but another value (or a lake copy newer than the
    /// source's).
    pub different: Vec<(i64, String)>,
    pub duplicate_keys: Vec<i64>,
    pub misplaced: Vec<i64>,
    /// Partitions whose row count differs: `(dt, lake rows, source rows)`.
    pub partitions: Vec<(String, u64, u64)>,
}

impl Diff {
    pub fn is_clean(&self) -> bool {
        self.count() == 0
    }

    pub fn count(&self) -> usize {
        self.missing.len()
            + self.unexpected.len()
            + self.stale.len()
            + self.different.len()
            + self.duplicate_keys.len()
            + self.misplaced.len()
            + self.partitions.len()
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
            "{} compared; {} missing [{}], {} unexpected [{}], {} stale [{}], {} different [{}], \
             {} duplicate keys [{}], {} misplaced, {} partitions with other row counts [{}]",
            self.rows_compared,
            self.missing.len(),
            first(&self.missing),
            self.unexpected.len(),
            first(&self.unexpected),
            self.stale.len(),
            self.stale
                .iter()
                .take(3)
                .map(|(k, l, s)| format!("{k}: lake {} < source {}", iso(*l), iso(*s)))
                .collect::<Vec<_>>()
                .join("; "),
            self.different.len(),
            self.different
                .iter()
                .take(3)
                .map(|(k, w)| format!("{k}: {w}"))
                .collect::<Vec<_>>()
                .join("; "),
            self.duplicate_keys.len(),
            first(&self.duplicate_keys),
            self.misplaced.len(),
            self.partitions.len(),
            self.partitions
                .iter()
                .take(3)
                .map(|(dt, l, s)| format!("{dt}: lake {l}, source {s}"))
                .collect::<Vec<_>>()
                .join("; "),
        )
    }
}

pub fn compare(lake: &LakeTable, expected: &BTreeMap<i64, Record>) -> Diff {
    let mut d = Diff {
        duplicate_keys: lake.duplicate_keys.clone(),
        misplaced: lake.misplaced.clone(),
        ..Default::default()
    };
    let mut source_per_dt: BTreeMap<String, u64> = BTreeMap::new();
    for (k, want) in expected {
        *source_per_dt.entry(dt_of_created(want.created_ms)).or_default() += 1;
        match lake.rows.get(k) {
            None => d.missing.push(*k),
            Some(got) => {
                d.rows_compared += 1;
                if got.modified_ms < want.modified_ms {
                    d.stale.push((*k, got.modified_ms, want.modified_ms));
                } else if got.modified_ms != want.modified_ms {
                    d.different.push((
                        *k,
                        format!(
                            "lake modified {} is newer than the source's {}",
                            got.modified_ms, want.modified_ms
                        ),
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
    let dts: BTreeSet<&String> = lake.rows_per_dt.keys().chain(source_per_dt.keys()).collect();
    for dt in dts {
        let (l, s) = (
            lake.rows_per_dt.get(dt).copied().unwrap_or(0),
            source_per_dt.get(dt).copied().unwrap_or(0),
        );
        if l != s {
            d.partitions.push((dt.clone(), l, s));
        }
    }
    d
}

/// Every live record of `object_type` through the list API, with `props`.
async fn list_all(
    client: &HubSpotClient,
    object_type: &str,
    props: &[String],
) -> anyhow::Result<Vec<ObjectRecord>> {
    let mut records = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = client
            .list_page(object_type, props, after.as_deref(), false, LIST_PAGE_MAX)
            .await
            .with_context(|| format!("reading {object_type} from HubSpot"))?;
        records.extend(page.results);
        match Paging::next_after(&page.paging) {
            Some(a) => after = Some(a.to_string()),
            None => break,
        }
    }
    Ok(records)
}

/// Reads every live record of `table`'s object types through the list API, with the
/// properties the table stores (what a sync of it would read, minus the archived ones).
pub async fn source_records(
    client: &HubSpotClient,
    table: &TableSpec,
    schema: &TableSchema,
) -> anyhow::Result<BTreeMap<String, Vec<ObjectRecord>>> {
    let mut out: BTreeMap<String, Vec<ObjectRecord>> = BTreeMap::new();
    for source in &table.sources {
        let props = source.request_properties(schema.fetched_from(&source.object_type));
        let records = list_all(client, &source.object_type, &props).await?;
        out.entry(source.object_type.clone()).or_default().extend(records);
    }
    Ok(out)
}

/// The audit of one table.
#[derive(Debug)]
pub struct TableAudit {
    pub table: String,
    pub lake_rows: u64,
    pub source_rows: u64,
    pub diff: Diff,
}

/// Compares each of `tables` in the lake with HubSpot (or a simulator) through `client`.
pub async fn audit(
    lake: &Lake,
    client: &HubSpotClient,
    tables: &[&TableSpec],
) -> anyhow::Result<Vec<TableAudit>> {
    let mut out = Vec::new();
    for t in tables {
        if let Some(kind) = t.snapshot {
            out.push(audit_snapshot(lake, client, t, kind).await?);
            continue;
        }
        let at_rest = read_lake_table(lake, t)
            .await
            .with_context(|| format!("reading table {} from the lake {}", t.name, lake.uri()))?;
        let expected = if t.is_links() {
            expected_links(client, t).await?
        } else {
            let source = source_records(client, t, &at_rest.schema).await?;
            expected_rows(t, &at_rest.schema, &source)?
        };
        out.push(TableAudit {
            table: t.name.clone(),
            lake_rows: at_rest.row_count(),
            source_rows: expected.len() as u64,
            diff: compare(&at_rest, &expected),
        });
    }
    Ok(out)
}

/// The columns `hubsync audit` prints, in order.
pub const AUDIT_COLUMNS: [&str; 10] = [
    "table",
    "lake rows",
    "source rows",
    "missing",
    "stale",
    "unexpected",
    "different",
    "duplicate",
    "misplaced",
    "partitions",
];

/// Prints the audit as a table, then the first differences of each kind.
pub fn print_audit(audits: &[TableAudit]) {
    let c = AUDIT_COLUMNS;
    println!(
        "{:<14} {:>10} {:>11} {:>8} {:>6} {:>10} {:>9} {:>10} {:>9} {:>10}",
        c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9]
    );
    for a in audits {
        let d = &a.diff;
        println!(
            "{:<14} {:>10} {:>11} {:>8} {:>6} {:>10} {:>9} {:>10} {:>9} {:>10}",
            a.table,
            a.lake_rows,
            a.source_rows,
            d.missing.len(),
            d.stale.len(),
            d.unexpected.len(),
            d.different.len(),
            d.duplicate_keys.len(),
            d.misplaced.len(),
            d.partitions.len()
        );
    }
    for a in audits.iter().filter(|a| !a.diff.is_clean()) {
        println!("{}: {}", a.table, a.diff.summary());
    }
    let compared: u64 = audits.iter().map(|a| a.diff.rows_compared).sum();
    let differences: usize = audits.iter().map(|a| a.diff.count()).sum();
    println!(
        "audit: {} tables, {compared} rows compared, {differences} differences",
        audits.len()
    );
}

/// Reads the simulator's truth (`/_sim/truth/{type}`) for the object types of `tables`.
pub async fn sim_truth(
    base_url: &str,
    tables: &[&TableSpec],
) -> anyhow::Result<BTreeMap<String, Vec<ObjectRecord>>> {
    let http = reqwest::Client::new();
    let mut out = BTreeMap::new();
    for t in tables {
        if t.is_links() {
            continue;
        }
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

/// A snapshot table's rows rendered (every column but `_synced_at` and `_run_id`), counted.
fn snapshot_rows(
    batches: &[datafusion::arrow::record_batch::RecordBatch],
) -> anyhow::Result<BTreeMap<String, u64>> {
    use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
    let mut out = BTreeMap::new();
    let options = FormatOptions::default().with_null("null");
    for b in batches {
        let schema = b.schema();
        let shown: Vec<(String, ArrayFormatter<'_>)> = schema
            .fields()
            .iter()
            .zip(b.columns())
            .filter(|(f, _)| f.name() != columns::SYNCED_AT && f.name() != columns::RUN_ID)
            .map(|(f, c)| Ok((f.name().clone(), ArrayFormatter::try_new(c.as_ref(), &options)?)))
            .collect::<anyhow::Result<_>>()?;
        for i in 0..b.num_rows() {
            let row = shown
                .iter()
                .map(|(name, f)| format!("{name}={}", f.value(i)))
                .collect::<Vec<_>>()
                .join(",");
            *out.entry(row).or_default() += 1;
        }
    }
    Ok(out)
}

/// Compares a snapshot table with what HubSpot lists now: every row equal, none missing,
/// none extra, none twice.
pub async fn audit_snapshot(
    lake: &Lake,
    client: &HubSpotClient,
    table: &TableSpec,
    kind: common::catalog::SnapshotKind,
) -> anyhow::Result<TableAudit> {
    let mut at_rest = Vec::new();
    let mut rows_per_dt: BTreeMap<String, u64> = BTreeMap::new();
    for dt in lake.partitions(&table.name).await? {
        for meta in lake.list_parquet(&lake.partition_dir(&table.name, &dt)).await? {
            let bytes = lake.store().get(&meta.location).await?.bytes().await?;
            for batch in ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()? {
                let batch = batch?;
                *rows_per_dt.entry(dt.clone()).or_default() += batch.num_rows() as u64;
                at_rest.push(batch);
            }
        }
    }
    let source = match kind {
        common::catalog::SnapshotKind::Owners => {
            common::schema::snapshot::owners_batch(&client.owners().await?, "", 0)?
        }
        common::catalog::SnapshotKind::Pipelines => {
            let mut all = Vec::new();
            for t in common::schema::snapshot::PIPELINE_OBJECT_TYPES {
                all.push((t.to_string(), client.pipelines(t).await?));
            }
            common::schema::snapshot::stages_batch(&all, "", 0)?
        }
    };
    let (lake_rows, want) = (snapshot_rows(&at_rest)?, snapshot_rows(&[source])?);
    let mut diff = Diff::default();
    // Rows have no record id to name them by: differences are told by the row's text.
    for (i, (row, n)) in want.iter().enumerate() {
        match lake_rows.get(row) {
            None => diff
                .different
                .push((i as i64, format!("in HubSpot, not at rest: {row}"))),
            Some(m) => {
                diff.rows_compared += n;
                if m > n {
                    diff.different
                        .push((i as i64, format!("{m} times at rest: {row}")));
                }
            }
        }
    }
    for (i, row) in lake_rows.keys().enumerate() {
        if !want.contains_key(row) {
            diff.different
                .push((i as i64, format!("at rest, not in HubSpot: {row}")));
        }
    }
    if rows_per_dt.len() > 1 {
        diff.partitions
            .extend(rows_per_dt.iter().map(|(dt, n)| (dt.clone(), *n, 0)));
    }
    Ok(TableAudit {
        table: table.name.clone(),
        lake_rows: rows_per_dt.values().sum(),
        source_rows: want.values().sum(),
        diff,
    })
}
