//! The portal's custom object types as tables (a catalog with `custom_objects = "discover"`):
//! whoever reads `GET /crm/v3/schemas` (the producer on a request for a table it does not know,
//! `hubsync run`, `hubsync schema objects`) records the tables in
//! `<lake>/_hubsync/schema/custom-objects.json`, and every service looks a table up there
//! when the catalog does not list it. A recorded table keeps its name and key column for
//! good: a schema archived in HubSpot keeps its table (marked archived, no longer synced by
//! `hubsync run`), and a new schema whose name is taken gets its type id appended.
//!
//! The file is overwritten, not written conditionally: two writers at once (two producers, or
//! one and `hubsync schema objects`) each write what they read plus what HubSpot answered them,
//! so an entry is lost only when HubSpot answered them differently in that instant (a type
//! created between their reads); the next request that names it records it again, and the page
//! jobs of a run of it begun meanwhile are dead-lettered until then, to be replayed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::SchemaError;
use crate::catalog::{custom_table_name, Catalog, CatalogError, TableSpec};
use crate::clock::EpochMs;
use crate::lake::Lake;

/// One custom object type taken as a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomTable {
    pub table: String,
    /// `2-<id>`: what the table's requests name (stable across renames of the schema).
    pub object_type_id: String,
    /// `p<portal>_<name>`.
    pub fully_qualified_name: String,
    pub label: String,
    /// The property HubSpot shows as the record's name (a column like every property).
    pub primary_display_property: Option<String>,
    /// Archived in HubSpot since it was recorded: the table stays, `hubsync run` skips it.
    #[serde(default)]
    pub archived: bool,
    pub discovered_at_ms: EpochMs,
}

impl CustomTable {
    pub fn spec(&self) -> TableSpec {
        TableSpec::custom_object(&self.table, &self.object_type_id)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CustomTablesFile {
    tables: Vec<CustomTable>,
}

fn path(lake: &Lake) -> object_store::path::Path {
    lake.schema_dir().join("custom-objects.json")
}

/// The recorded custom object tables (none before the first discovery).
///
/// Whether the file exists is asked by listing the schema directory first, as for a table's
/// schema: S3 answers a read of a missing key with "access denied" to a caller who may not
/// list the bucket, and the services may list only `_hubsync/schema/`.
pub async fn custom_tables(lake: &Lake) -> Result<Vec<CustomTable>, SchemaError> {
    let path = path(lake);
    let listed = match lake.store().list_with_delimiter(Some(&lake.schema_dir())).await {
        Ok(listed) => listed,
        Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
        Err(source) => {
            return Err(SchemaError::Read {
                path: path.to_string(),
                source,
            })
        }
    };
    if !listed.objects.iter().any(|o| o.location == path) {
        return Ok(Vec::new());
    }
    let bytes = match lake.store().get(&path).await {
        Ok(got) => got.bytes().await.map_err(|source| SchemaError::Read {
            path: path.to_string(),
            source,
        })?,
        Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
        Err(source) => {
            return Err(SchemaError::Read {
                path: path.to_string(),
                source,
            })
        }
    };
    let file: CustomTablesFile = serde_json::from_slice(&bytes).map_err(|source| SchemaError::Corrupt {
        path: path.to_string(),
        source,
    })?;
    remember(lake, &file.tables);
    Ok(file.tables)
}

/// Records the custom object types of `schemas` (HubSpot's `GET /crm/v3/schemas` answer) as
/// tables, keeping every table recorded before; returns them all.
pub async fn record_custom_tables(
    lake: &Lake,
    catalog: &Catalog,
    schemas: &wire::SchemasResponse,
    now: EpochMs,
) -> Result<Vec<CustomTable>, SchemaError> {
    let recorded = custom_tables(lake).await?;
    let (tables, changed) = merge(catalog, recorded, schemas, now);
    if changed {
        // Serializing plain strings and numbers cannot fail.
        let bytes = serde_json::to_vec_pretty(&CustomTablesFile {
            tables: tables.clone(),
        })
        .unwrap_or_default();
        let path = path(lake);
        lake.store()
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(|source| SchemaError::Write {
                path: path.to_string(),
                source,
            })?;
        for t in &tables {
            tracing::info!(table = %t.table, object_type = %t.object_type_id, archived = t.archived,
                "custom object {} is table {}", t.label, t.table);
        }
        remember(lake, &tables);
    }
    Ok(tables)
}

/// `recorded` updated with `schemas`: new types appended under a free name, archived ones
/// marked; whether anything changed.
fn merge(
    catalog: &Catalog,
    mut recorded: Vec<CustomTable>,
    schemas: &wire::SchemasResponse,
    now: EpochMs,
) -> (Vec<CustomTable>, bool) {
    let mut changed = false;
    // A type the catalog lists itself is the catalog's table, not a second one.
    let listed = |s: &wire::ObjectSchema| {
        catalog.tables().iter().any(|t| {
            t.sources
                .iter()
                .any(|src| src.object_type == s.object_type_id || src.object_type == s.fully_qualified_name)
        })
    };
    // HubSpot lists only live schemas (archived ones only when asked for): a recorded type the
    // answer leaves out was archived, and one it lists again was restored.
    for known in recorded.iter_mut() {
        let live = schemas
            .results
            .iter()
            .find(|s| s.object_type_id == known.object_type_id && !s.archived);
        if known.archived != live.is_none() {
            known.archived = live.is_none();
            changed = true;
        }
        if let Some(s) = live.filter(|s| s.primary_display_property != known.primary_display_property) {
            known.primary_display_property = s.primary_display_property.clone();
            changed = true;
        }
    }
    for s in schemas.results.iter().filter(|s| !listed(s)) {
        if recorded.iter().any(|t| t.object_type_id == s.object_type_id) {
            continue;
        }
        if s.archived {
            continue;
        }
        let taken = |n: &str| catalog.table(n).is_ok() || recorded.iter().any(|t| t.table == n);
        let mut name = custom_table_name(&s.name);
        if taken(&name) {
            name = format!("{name}_{}", s.object_type_id.trim_start_matches("2-"));
        }
        recorded.push(CustomTable {
            table: name,
            object_type_id: s.object_type_id.clone(),
            fully_qualified_name: s.fully_qualified_name.clone(),
            label: s.labels.plural.clone(),
            primary_display_property: s.primary_display_property.clone(),
            archived: false,
            discovered_at_ms: now,
        });
        changed = true;
    }
    (recorded, changed)
}

type Cache = Mutex<HashMap<String, Arc<Vec<CustomTable>>>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(Cache::default)
}

fn remember(lake: &Lake, tables: &[CustomTable]) {
    if let Ok(mut c) = cache().lock() {
        c.insert(lake.uri().to_string(), Arc::new(tables.to_vec()));
    }
}

fn remembered(lake: &Lake, name: &str) -> Option<TableSpec> {
    let c = cache().lock().ok()?;
    c.get(lake.uri())?
        .iter()
        .find(|t| t.table == name)
        .map(CustomTable::spec)
}

/// The table `name`: the catalog's, or (when the catalog discovers custom objects) a recorded
/// custom object's, read from the lake when this process has not seen it yet.
pub async fn table_spec(lake: &Lake, catalog: &Catalog, name: &str) -> Result<TableSpec, SchemaError> {
    let unknown = match catalog.table(name) {
        Ok(spec) => return Ok(spec.clone()),
        Err(e) => e,
    };
    if !catalog.discovers_custom_objects() {
        return Err(SchemaError::UnknownTable(unknown));
    }
    if let Some(spec) = remembered(lake, name) {
        return Ok(spec);
    }
    let custom = custom_tables(lake).await?;
    if let Some(t) = custom.iter().find(|t| t.table == name) {
        return Ok(t.spec());
    }
    let mut known = catalog.table_names();
    known.extend(custom.iter().map(|t| t.table.clone()));
    Err(SchemaError::UnknownTable(CatalogError::UnknownTable {
        name: name.to_string(),
        known: format!(
            "{} (a custom object becomes a table once discovered: `hubsync schema objects` records the portal's)",
            known.join(", ")
        ),
    }))
}

/// Every table to sync: the catalog's, then (when the catalog discovers them) the recorded
/// custom objects' that are live in HubSpot and that the catalog does not read itself (a type
/// listed later under a table of its own syncs there, not twice).
pub async fn all_tables(lake: &Lake, catalog: &Catalog) -> Result<Vec<TableSpec>, SchemaError> {
    let mut out = recorded_tables(lake, catalog, false).await?;
    out.retain(|t| {
        catalog.table(&t.name).is_ok()
            || !catalog.tables().iter().any(|listed| {
                listed
                    .sources
                    .iter()
                    .any(|src| t.sources.iter().any(|s| s.object_type == src.object_type))
            })
    });
    Ok(out)
}

/// Every table the lake may hold: the catalog's and every recorded custom object's, archived
/// ones too when `archived` (what `hubsync status` shows).
pub async fn recorded_tables(
    lake: &Lake,
    catalog: &Catalog,
    archived: bool,
) -> Result<Vec<TableSpec>, SchemaError> {
    let mut out = catalog.tables().to_vec();
    if catalog.discovers_custom_objects() {
        out.extend(
            custom_tables(lake)
                .await?
                .iter()
                .filter(|t| archived || !t.archived)
                .map(CustomTable::spec),
        );
    }
    Ok(out)
}

/// `names` resolved (every table when empty), unknown names refused.
pub async fn select_tables(
    lake: &Lake,
    catalog: &Catalog,
    names: &[String],
) -> Result<Vec<TableSpec>, SchemaError> {
    if names.is_empty() {
        return all_tables(lake, catalog).await;
    }
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        out.push(table_spec(lake, catalog, n.trim()).await?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(id: &str, name: &str, archived: bool) -> wire::ObjectSchema {
        wire::ObjectSchema {
            id: id.into(),
            name: name.into(),
            labels: wire::ObjectLabels {
                singular: name.into(),
                plural: format!("{name}s"),
            },
            object_type_id: format!("2-{id}"),
            fully_qualified_name: format!("p42_{name}"),
            primary_display_property: Some("name".into()),
            required_properties: vec![],
            searchable_properties: vec![],
            properties: vec![],
            archived,
        }
    }

    #[test]
    fn new_types_get_free_names_and_recorded_ones_keep_theirs() {
        let catalog = Catalog::default();
        let schemas = wire::SchemasResponse {
            results: vec![
                schema("1", "cars", false),
                schema("2", "deals", false),
                schema("3", "old", true),
            ],
        };
        let (tables, changed) = merge(&catalog, Vec::new(), &schemas, 7);
        assert!(changed);
        let names: Vec<_> = tables.iter().map(|t| t.table.as_str()).collect();
        // `deals` is the catalog's; an archived type never seen before is not a table.
        assert_eq!(names, ["cars", "deals_2"]);
        assert_eq!(tables[1].spec().key_column, "deals_2_id");
        assert_eq!(tables[0].spec().key_column, "car_id");
        assert_eq!(tables[0].spec().sources[0].object_type, "2-1");
        assert_eq!(tables[0].spec().sources[0].created_property(), "hs_createdate");

        // Again, with cars archived (HubSpot leaves it out of its answer): its table stays,
        // marked; nothing else moves.
        let schemas = wire::SchemasResponse {
            results: vec![schema("2", "deals", false)],
        };
        let (again, changed) = merge(&catalog, tables.clone(), &schemas, 8);
        assert!(changed);
        assert!(again[0].archived);
        assert_eq!(again[1], tables[1]);
        let (again, changed) = merge(&catalog, again, &schemas, 9);
        assert!(!changed);
        // Restored: live again under its old name.
        let schemas = wire::SchemasResponse {
            results: vec![schema("1", "cars", false), schema("2", "deals", false)],
        };
        let (restored, changed) = merge(&catalog, again, &schemas, 10);
        assert!(changed);
        assert!(!restored[0].archived);
        assert_eq!(restored[0].table, "cars");
    }

    #[test]
    fn a_type_the_catalog_lists_is_not_a_second_table() {
        let toml = format!(
            "{}\n[[tables]]\nname = \"autos\"\nkey_column = \"auto_id\"\n\n[[tables.sources]]\nobject_type = \"p42_cars\"\n",
            crate::catalog::DEFAULT_CATALOG_TOML
        );
        let catalog = Catalog::from_toml(&toml).unwrap();
        let schemas = wire::SchemasResponse {
            results: vec![schema("1", "cars", false)],
        };
        assert!(merge(&catalog, Vec::new(), &schemas, 1).0.is_empty());
    }

    #[test]
    fn names_are_lake_directories() {
        assert_eq!(custom_table_name("Cars"), "cars");
        assert_eq!(custom_table_name("pet-store"), "pet_store");
        assert_eq!(custom_table_name("3d_models"), "custom_3d_models");
    }
}
