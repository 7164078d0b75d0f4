//! The lake's schema per table: its property columns, their types, and every change HubSpot's
//! properties API made to them.
//!
//! A table's columns follow the portal: at the start of every run the producer reads each
//! source's properties (`GET /crm/v3/properties/{type}`), and [`evolve`] turns the recorded
//! schema and that list into the run's schema. The rules (E1–E5) are what the README
//! documents:
//!
//! - E1: a property becomes a column named after it, typed by [`ColumnType::of`]. The created
//!   and modified properties and `hs_object_id` are the built-in columns and not repeated.
//! - E2: a new property becomes a new column in the run that first sees it; files written
//!   before read it as null, and the column is marked for a column backfill (its values for
//!   records the run does not fetch).
//! - E3: a property whose type changes keeps its column name and the column becomes a string
//!   (widening: no value of either type is lost, old typed values read as their text). A
//!   string column stays a string whatever the property's type becomes.
//! - E4: a property that is deleted (archived or gone) stops being fetched; its column stays,
//!   its old values with it, and new rows hold null. If it comes back it is fetched again.
//! - E5: the schema only grows: no column is ever dropped, so every file of the table reads
//!   under the latest schema.
//!
//! The schema is a JSON file per table (`<lake>/_hubsync/schema/<table>.json`), and each run's
//! copy sits beside it (`<table>/run=<run_id>.json`), so every page of a run is staged under
//! the columns the run started with.

mod cast;
mod objects;
pub mod snapshot;
mod store;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};
use wire::PropertyDefinition;

use crate::catalog::{columns, PropertySelection, TableSpec};
use crate::clock::EpochMs;

pub use cast::{
    canonical, parse_bool, parse_date_days, parse_decimal, parse_f64, split_multi, DoesNotCast, Typed,
};
pub use objects::{
    all_tables, custom_tables, record_custom_tables, recorded_tables, select_tables, table_spec, CustomTable,
};
pub use store::{for_run, load, load_for_run, save, save_for_run, SchemaError};

/// Decimal columns (`number` properties the catalog lists under `decimal`): 38 digits, 9 of
/// them after the point.
pub const DECIMAL_PRECISION: u8 = 38;
pub const DECIMAL_SCALE: i8 = 9;

/// The type of a property column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    String,
    Float64,
    /// A record id (link tables' linked id and association type).
    Int64,
    Decimal,
    /// Milliseconds, UTC.
    Timestamp,
    /// Days since 1970-01-01.
    Date,
    Boolean,
    /// A multi-select (`enumeration` edited as `checkbox`): HubSpot's `a;b;c` as a list.
    StringList,
}

impl ColumnType {
    /// E1: the column type of a property, from its `type` and `fieldType`.
    pub fn of(def: &PropertyDefinition, decimal: bool) -> ColumnType {
        match (def.kind.as_str(), def.field_type.as_str()) {
            ("number", _) if decimal => ColumnType::Decimal,
            ("number", _) => ColumnType::Float64,
            ("datetime", _) => ColumnType::Timestamp,
            ("date", _) => ColumnType::Date,
            ("bool", _) | (_, "booleancheckbox") => ColumnType::Boolean,
            ("enumeration", "checkbox") => ColumnType::StringList,
            _ => ColumnType::String,
        }
    }

    pub fn arrow(self) -> DataType {
        match self {
            ColumnType::String => DataType::Utf8,
            ColumnType::Float64 => DataType::Float64,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Decimal => DataType::Decimal128(DECIMAL_PRECISION, DECIMAL_SCALE),
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            ColumnType::Date => DataType::Date32,
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::StringList => DataType::List(Arc::new(list_item())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ColumnType::String => "string",
            ColumnType::Float64 => "double",
            ColumnType::Int64 => "bigint",
            ColumnType::Decimal => "decimal(38,9)",
            ColumnType::Timestamp => "timestamp",
            ColumnType::Date => "date",
            ColumnType::Boolean => "boolean",
            ColumnType::StringList => "array<string>",
        }
    }
}

/// The Parquet key-value metadata entry that marks a staged file as a column backfill's patch
/// (its value: the patched columns, comma-separated).
pub const PATCH_METADATA_KEY: &str = "hubsync.patch";

/// The item field of a multi-select list column.
pub fn list_item() -> Field {
    Field::new("item", DataType::Utf8, true)
}

/// The `_uncast` column's type: property → the value as HubSpot sent it, for every value of the
/// row that did not cast to its column's type (the typed column holds null).
pub fn uncast_type() -> DataType {
    let entries = Field::new(
        "entries",
        DataType::Struct(Fields::from(vec![
            Field::new("keys", DataType::Utf8, false),
            Field::new("values", DataType::Utf8, true),
        ])),
        false,
    );
    DataType::Map(Arc::new(entries), false)
}

/// One property column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ColumnType,
    /// The property's HubSpot `type` and `fieldType` as last read.
    pub hubspot_type: String,
    pub field_type: String,
    /// Whether runs request it (E4: false once the property is deleted).
    pub fetched: bool,
    /// The object types that have the property (a table may read several).
    #[serde(default)]
    pub sources: Vec<String>,
    /// Waiting for a column backfill (E2): set when the column appears in a table that already
    /// has data, cleared when a run that backfilled it commits.
    #[serde(default)]
    pub backfill: bool,
    pub added_at_ms: EpochMs,
    pub added_by_run: String,
}

/// What happened to a column, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    Added {
        ty: ColumnType,
        hubspot_type: String,
    },
    /// E3: the property's type changed; `to` is the column's type from now on.
    Retyped {
        from_hubspot: String,
        to_hubspot: String,
        from: ColumnType,
        to: ColumnType,
    },
    Deleted,
    Restored,
    /// A property that cannot be a column (its name is a built-in column's) or that the catalog
    /// lists and the portal does not have.
    Skipped {
        reason: String,
    },
    Backfilled,
}

/// One entry of a table's change log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnChange {
    pub at_ms: EpochMs,
    pub run_id: String,
    pub column: String,
    #[serde(flatten)]
    pub change: Change,
}

impl ColumnChange {
    pub fn describe(&self) -> String {
        match &self.change {
            Change::Added { ty, hubspot_type } => {
                format!(
                    "added `{}` ({} from HubSpot {hubspot_type})",
                    self.column,
                    ty.as_str()
                )
            }
            Change::Retyped {
                from_hubspot,
                to_hubspot,
                from,
                to,
            } => format!(
                "`{}` retyped in HubSpot from {from_hubspot} to {to_hubspot}: column {} → {}",
                self.column,
                from.as_str(),
                to.as_str()
            ),
            Change::Deleted => format!(
                "`{}` deleted in HubSpot: no longer fetched, column kept",
                self.column
            ),
            Change::Restored => format!("`{}` is back in HubSpot: fetched again", self.column),
            Change::Skipped { reason } => format!("`{}` skipped: {reason}", self.column),
            Change::Backfilled => format!("`{}` backfilled for every existing record", self.column),
        }
    }
}

/// The recorded schema of one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    pub table: String,
    /// Bumped by every change.
    pub version: u64,
    pub columns: Vec<Column>,
    pub changes: Vec<ColumnChange>,
    pub updated_at_ms: EpochMs,
    /// A link table's last full sync that committed (its start): every record's links were
    /// read since. The producer's automatic mode syncs the table fully again once it is older
    /// than the association refresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links_refreshed_ms: Option<EpochMs>,
}

impl TableSchema {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The columns a run requests from `object_type`: the fetched ones that type has.
    pub fn fetched_from<'a>(&'a self, object_type: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.columns
            .iter()
            .filter(move |c| c.fetched && c.sources.iter().any(|s| s == object_type))
            .map(|c| c.name.as_str())
    }

    /// The schema of a column backfill's patches: only the columns waiting for it.
    pub fn patch_schema(&self) -> TableSchema {
        let mut out = self.clone();
        out.columns.retain(|c| c.backfill && c.fetched);
        out
    }

    /// Columns waiting for a column backfill (E2).
    pub fn backfill_columns(&self) -> Vec<String> {
        self.columns
            .iter()
            .filter(|c| c.backfill && c.fetched)
            .map(|c| c.name.clone())
            .collect()
    }

    /// The table's Arrow schema: the key, `created_at`, `last_modified_at`, `archived`, the tag
    /// column, every property column (fetched or not, E5), `_uncast`, `_synced_at`, `_run_id`.
    pub fn arrow_schema(&self, table: &TableSpec) -> SchemaRef {
        if let Some(kind) = table.snapshot {
            return snapshot::arrow_schema(kind);
        }
        let ts = || DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
        let mut fields = vec![
            Field::new(&table.key_column, DataType::Int64, false),
            // Nullable: a record whose created date is missing or unreadable lands in
            // [`UNKNOWN_CREATED_DT`](crate::catalog::UNKNOWN_CREATED_DT) with no `created_at`.
            Field::new(columns::CREATED_AT, ts(), true),
            Field::new(columns::LAST_MODIFIED_AT, ts(), false),
            Field::new(columns::ARCHIVED, DataType::Boolean, false),
        ];
        if let Some(tag) = &table.tag_column {
            fields.push(Field::new(tag, DataType::Utf8, true));
        }
        for c in &self.columns {
            fields.push(Field::new(&c.name, c.ty.arrow(), true));
        }
        fields.push(Field::new(columns::UNCAST, uncast_type(), true));
        fields.push(Field::new(columns::SYNCED_AT, ts(), false));
        fields.push(Field::new(columns::RUN_ID, DataType::Utf8, false));
        Arc::new(Schema::new(fields))
    }

    /// The fixed schema of a link table: the linked record's id, the link's type id, category
    /// and label. No column is a property: a link table's pages ask HubSpot for none of them
    /// (the consumer fills them from the association batch read).
    pub fn of_links(table: &TableSpec) -> Option<TableSchema> {
        let links = table.links.as_ref()?;
        let column = |name: &str, ty: ColumnType| Column {
            name: name.to_string(),
            ty,
            hubspot_type: "association".into(),
            field_type: "association".into(),
            fetched: true,
            sources: table.sources.iter().map(|s| s.object_type.clone()).collect(),
            backfill: false,
            added_at_ms: 0,
            added_by_run: String::new(),
        };
        Some(TableSchema {
            table: table.name.clone(),
            version: 1,
            columns: vec![
                column(&links.to_column, ColumnType::Int64),
                column(crate::catalog::link_columns::TYPE_ID, ColumnType::Int64),
                column(crate::catalog::link_columns::CATEGORY, ColumnType::String),
                column(crate::catalog::link_columns::LABEL, ColumnType::String),
            ],
            changes: Vec::new(),
            updated_at_ms: 0,
            links_refreshed_ms: None,
        })
    }

    /// The schema of a table whose properties are exactly the catalog's list, all strings: for
    /// tests and tools that run without a properties API.
    pub fn of_catalog(table: &TableSpec) -> TableSchema {
        let columns = table
            .property_columns()
            .into_iter()
            .map(|name| Column {
                name,
                ty: ColumnType::String,
                hubspot_type: "string".into(),
                field_type: "text".into(),
                fetched: true,
                sources: table.sources.iter().map(|s| s.object_type.clone()).collect(),
                backfill: false,
                added_at_ms: 0,
                added_by_run: String::new(),
            })
            .collect();
        TableSchema {
            table: table.name.clone(),
            version: 1,
            columns,
            changes: Vec::new(),
            updated_at_ms: 0,
            links_refreshed_ms: None,
        }
    }
}

/// The properties one source offers, as its properties API listed them.
#[derive(Debug, Clone)]
pub struct Discovered {
    pub object_type: String,
    pub properties: Vec<PropertyDefinition>,
}

/// What [`evolve`] made of a run's discovery.
#[derive(Debug, Clone)]
pub struct Evolution {
    pub schema: TableSchema,
    /// The changes this run made (also appended to `schema.changes`); empty when nothing changed.
    pub changes: Vec<ColumnChange>,
}

/// A column a run wants: its type, its definition (the first source's), the sources with it.
struct Wanted {
    ty: ColumnType,
    def: PropertyDefinition,
    sources: Vec<String>,
}

/// The columns `table` wants from what its sources offer, in order: per source, the catalog's
/// selection of its non-archived properties, minus the built-in ones (E1). A name wanted by two
/// sources with different types is a string.
fn wanted(table: &TableSpec, discovered: &[Discovered], skipped: &mut Vec<(String, String)>) -> Vec<Wanted> {
    let reserved = table.reserved_columns();
    let mut out: Vec<Wanted> = Vec::new();
    for source in &table.sources {
        let offered: Vec<&PropertyDefinition> = discovered
            .iter()
            .filter(|d| d.object_type == source.object_type)
            .flat_map(|d| &d.properties)
            .filter(|p| !p.archived)
            .collect();
        let builtin = [
            source.created_property(),
            source.modified_property(),
            wire::ID_PROPERTY,
        ];
        let by_name: BTreeMap<&str, &PropertyDefinition> =
            offered.iter().map(|p| (p.name.as_str(), *p)).collect();
        let picked: Vec<&PropertyDefinition> = match &source.selection() {
            PropertySelection::All { exclude } => offered
                .iter()
                .copied()
                .filter(|p| !exclude.contains(&p.name))
                .collect(),
            PropertySelection::Listed(names) => names
                .iter()
                .filter_map(|n| match by_name.get(n.as_str()) {
                    Some(p) => Some(*p),
                    None => {
                        skipped.push((
                            n.clone(),
                            format!(
                                "the catalog lists it for {} and the portal has no such property \
                                 (check its internal name in HubSpot's property settings)",
                                source.object_type
                            ),
                        ));
                        None
                    }
                })
                .collect(),
        };
        for p in picked {
            if builtin.contains(&p.name.as_str()) {
                continue;
            }
            if reserved.iter().any(|r| r == &p.name) {
                skipped.push((p.name.clone(), "its name is a built-in column's".into()));
                continue;
            }
            let ty = ColumnType::of(p, source.decimal.contains(&p.name));
            match out.iter_mut().find(|w| w.def.name == p.name) {
                Some(seen) => {
                    if seen.ty != ty {
                        seen.ty = ColumnType::String;
                    }
                    seen.sources.push(source.object_type.clone());
                }
                None => out.push(Wanted {
                    ty,
                    def: p.clone(),
                    sources: vec![source.object_type.clone()],
                }),
            }
        }
    }
    skipped.dedup();
    out
}

/// Applies E1–E5: the schema `table` has after `run_id` discovered `discovered` at `now`.
/// `previous` is the recorded schema (`None` before the table's first run). Deterministic, so a
/// redelivered request evolves to the same schema.
pub fn evolve(
    previous: Option<&TableSchema>,
    table: &TableSpec,
    discovered: &[Discovered],
    run_id: &str,
    now: EpochMs,
) -> Evolution {
    let mut skipped = Vec::new();
    let wanted = wanted(table, discovered, &mut skipped);
    let mut schema = previous.cloned().unwrap_or(TableSchema {
        table: table.name.clone(),
        version: 0,
        columns: Vec::new(),
        changes: Vec::new(),
        updated_at_ms: now,
        links_refreshed_ms: None,
    });
    let mut changes = Vec::new();
    let mut note = |column: &str, change: Change| {
        changes.push(ColumnChange {
            at_ms: now,
            run_id: run_id.to_string(),
            column: column.to_string(),
            change,
        })
    };
    let has_data = previous.is_some();
    for Wanted { ty, def, sources } in &wanted {
        let name = &def.name;
        match schema.columns.iter_mut().find(|c| &c.name == name) {
            None => {
                note(
                    name,
                    Change::Added {
                        ty: *ty,
                        hubspot_type: def.kind.clone(),
                    },
                );
                schema.columns.push(Column {
                    name: name.clone(),
                    ty: *ty,
                    hubspot_type: def.kind.clone(),
                    field_type: def.field_type.clone(),
                    fetched: true,
                    sources: sources.clone(),
                    backfill: has_data,
                    added_at_ms: now,
                    added_by_run: run_id.to_string(),
                });
            }
            Some(col) => {
                if !col.fetched {
                    col.fetched = true;
                    note(name, Change::Restored);
                }
                if col.ty != *ty && col.ty != ColumnType::String {
                    note(
                        name,
                        Change::Retyped {
                            from_hubspot: col.hubspot_type.clone(),
                            to_hubspot: def.kind.clone(),
                            from: col.ty,
                            to: ColumnType::String,
                        },
                    );
                    col.ty = ColumnType::String;
                    // Its values of records this run does not fetch are read again, as strings.
                    col.backfill |= has_data;
                }
                col.hubspot_type = def.kind.clone();
                col.field_type = def.field_type.clone();
                col.sources = sources.clone();
            }
        }
    }
    for col in schema.columns.iter_mut() {
        if col.fetched && !wanted.iter().any(|w| w.def.name == col.name) {
            col.fetched = false;
            note(&col.name, Change::Deleted);
        }
    }
    for (name, reason) in skipped {
        let already = schema
            .changes
            .iter()
            .any(|c| c.column == name && matches!(&c.change, Change::Skipped { reason: r } if *r == reason));
        if !already {
            note(&name, Change::Skipped { reason });
        }
    }
    if !changes.is_empty() {
        schema.version += 1;
        schema.updated_at_ms = now;
        schema.changes.extend(changes.iter().cloned());
    }
    Evolution { schema, changes }
}

/// Marks `columns` backfilled by `run_id` (its commit), with a change each.
pub fn mark_backfilled(schema: &mut TableSchema, columns: &[String], run_id: &str, now: EpochMs) -> bool {
    let mut changed = false;
    for col in schema.columns.iter_mut() {
        if col.backfill && columns.contains(&col.name) {
            col.backfill = false;
            changed = true;
            schema.changes.push(ColumnChange {
                at_ms: now,
                run_id: run_id.to_string(),
                column: col.name.clone(),
                change: Change::Backfilled,
            });
        }
    }
    if changed {
        schema.version += 1;
        schema.updated_at_ms = now;
    }
    changed
}

#[cfg(test)]
mod tests;
