//! The table catalog: which lake tables exist, which HubSpot object types feed them and
//! which properties become columns. It is data (TOML), validated once at start-up and then
//! trusted; [`Catalog::default`] is `default_catalog.toml`, the five tables of DESIGN.md.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;

/// The five tables of DESIGN.md and the other standard object types; see the file for the
/// column rules.
pub const DEFAULT_CATALOG_TOML: &str = include_str!("default_catalog.toml");

/// The partition of records whose created date is missing or unreadable: their `created_at`
/// is null. A created date before year 1 or after 9999 keeps its `created_at` and lands in the
/// first or last day those years hold (`dt` is a four-digit-year date for every reader).
pub const UNKNOWN_CREATED_DT: &str = "1970-01-01";
pub const FIRST_DT: &str = "0001-01-01";
pub const LAST_DT: &str = "9999-12-31";

/// The `dt` partition of a record created at `created_ms` (see [`UNKNOWN_CREATED_DT`]).
pub fn dt_of_created(created_ms: Option<i64>) -> String {
    match created_ms {
        None => UNKNOWN_CREATED_DT.to_string(),
        Some(ms) => match crate::clock::dt_of_day(crate::clock::day_of(ms)) {
            Some(dt) => dt,
            None if ms < 0 => FIRST_DT.to_string(),
            None => LAST_DT.to_string(),
        },
    }
}

/// Columns every table carries besides its properties.
pub mod columns {
    pub const CREATED_AT: &str = "created_at";
    pub const LAST_MODIFIED_AT: &str = "last_modified_at";
    pub const ARCHIVED: &str = "archived";
    pub const SYNCED_AT: &str = "_synced_at";
    pub const RUN_ID: &str = "_run_id";
    /// Values that did not cast to their column's type, raw (see `schema`).
    pub const UNCAST: &str = "_uncast";
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read the table catalog {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("the table catalog is not valid TOML: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("invalid table catalog: {0}")]
    Invalid(String),
    #[error("unknown table `{name}`; the catalog has: {known}. Add it to the catalog or pick one of those")]
    UnknownTable { name: String, known: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(default)]
    custom_objects: CustomObjects,
    tables: Vec<TableSpec>,
    /// Link tables, one per pair: `[[associations]] from = "deals" to = "contacts"`.
    #[serde(default)]
    associations: Vec<AssociationSpec>,
}

/// A pair whose links become a table: `from`, a table of the catalog; `to`, an object type.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct AssociationSpec {
    from: String,
    to: String,
}

/// What a link table holds besides its `from` table's key (see [`TableSpec::links`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSpec {
    /// The table whose records the links start from.
    pub from_table: String,
    /// The object type they lead to (`contacts`).
    pub to_object_type: String,
    /// The column of the linked record's id (`contact_id`).
    pub to_column: String,
}

/// Columns of every link table besides the key, `created_at`, `last_modified_at`, `archived`,
/// the tag column, `_synced_at` and `_run_id`.
pub mod link_columns {
    pub const TYPE_ID: &str = "association_type_id";
    pub const CATEGORY: &str = "association_category";
    pub const LABEL: &str = "association_label";
}

/// Whether the portal's custom object types are tables besides the catalog's own.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CustomObjects {
    /// Each custom object type of the portal (`GET /crm/v3/schemas`) is a table of its own,
    /// named after its schema, taking every property (the default catalog's choice).
    Discover,
    /// Only the tables the catalog lists (a custom object is one when listed).
    #[default]
    Listed,
}

/// One lake table.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    pub name: String,
    /// Primary key column (the HubSpot record id, int64).
    pub key_column: String,
    /// Column holding each source's `tag` (activities: `activity_type`), if any.
    #[serde(default)]
    pub tag_column: Option<String>,
    pub sources: Vec<SourceSpec>,
    /// A link table (`[[associations]]` in the catalog): one row per link of each record of
    /// its sources (the `from` table's), read with HubSpot's v4 association batch read. A
    /// record's links are replaced as a set at merge: the rows of its latest version are kept,
    /// so a removed link disappears, and a record with none keeps no row.
    #[serde(skip)]
    pub links: Option<LinkSpec>,
    /// A snapshot table: HubSpot's owners or pipelines with their stages, small lists read
    /// whole at every run and replacing the table (it has no sources; see [`SnapshotKind`]).
    #[serde(default)]
    pub snapshot: Option<SnapshotKind>,
}

/// What a snapshot table holds.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotKind {
    /// `GET /crm/v3/owners`, active and archived: one row per owner.
    Owners,
    /// `GET /crm/v3/pipelines/{deals,tickets}`: one row per stage, with its pipeline.
    Pipelines,
}

impl SnapshotKind {
    pub fn name(self) -> &'static str {
        match self {
            SnapshotKind::Owners => "owners",
            SnapshotKind::Pipelines => "pipelines",
        }
    }
}

/// The one partition of a snapshot table: its rows are replaced whole by each run, so they
/// have no created day to be spread over.
pub const SNAPSHOT_DT: &str = "1970-01-01";

/// One HubSpot object type feeding a table.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// A standard type's name (`deals`) or id (`0-3`), or a custom object's type id (`2-123`)
    /// or fully qualified name (`p<portal>_<name>`).
    pub object_type: String,
    #[serde(default)]
    pub tag: Option<String>,
    /// The properties to take, by internal name; absent: every property the portal has
    /// (`GET /crm/v3/properties/{type}`, archived ones excluded), minus `exclude`.
    #[serde(default)]
    pub properties: Option<Vec<String>>,
    /// With every property: those to leave out (personal data, say).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// `number` properties stored as decimal(38,9) instead of double (money, say).
    #[serde(default)]
    pub decimal: Vec<String>,
    #[serde(default)]
    pub modified_property: Option<String>,
    #[serde(default)]
    pub created_property: Option<String>,
}

/// Which properties of a source become columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropertySelection {
    All { exclude: Vec<String> },
    Listed(Vec<String>),
}

impl SourceSpec {
    pub fn selection(&self) -> PropertySelection {
        match &self.properties {
            Some(list) => PropertySelection::Listed(list.clone()),
            None => PropertySelection::All {
                exclude: self.exclude.clone(),
            },
        }
    }

    pub fn modified_property(&self) -> &str {
        self.modified_property
            .as_deref()
            .unwrap_or_else(|| wire::modified_property(&self.object_type))
    }

    pub fn created_property(&self) -> &str {
        self.created_property
            .as_deref()
            .unwrap_or_else(|| wire::created_property(&self.object_type))
    }

    /// Properties to request given the run's columns: the created and modified properties
    /// first (they order versions, so they travel in every request), then `columns`.
    pub fn request_properties<'a>(&self, columns: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut props: Vec<String> = vec![self.created_property().to_string()];
        if self.modified_property() != self.created_property() {
            props.push(self.modified_property().to_string());
        }
        for c in columns {
            if !props.iter().any(|x| x == c) {
                props.push(c.to_string());
            }
        }
        props
    }
}

/// The table name of a custom object schema named `schema_name`: its name in lowercase letters,
/// digits and `_` (`cars`), or `custom_<name>` where that is not a table name.
pub fn custom_table_name(schema_name: &str) -> String {
    let name: String = schema_name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if name.starts_with(|c: char| c.is_ascii_lowercase()) {
        name
    } else {
        format!("custom_{name}")
    }
}

/// English plurals of record names, simply: `-ies` -> `-y`, a final `s` dropped except after
/// `s`, `u` or `i` (`address`, `status`, `analysis` stay).
fn singular(name: &str) -> String {
    if let Some(stem) = name.strip_suffix("ies").filter(|s| !s.is_empty()) {
        return format!("{stem}y");
    }
    match name.strip_suffix('s') {
        Some(stem) if !stem.is_empty() && !stem.ends_with(['s', 'u', 'i']) => stem.to_string(),
        _ => name.to_string(),
    }
}

impl TableSpec {
    /// The table of a custom object type read under `object_type` (its `2-<id>`), named
    /// `name`: every property, HubSpot's own created and modified properties, key column
    /// `<singular of the name>_id` (`cars` -> `car_id`, `companies` -> `company_id`,
    /// `address` -> `address_id`).
    pub fn custom_object(name: &str, object_type: &str) -> TableSpec {
        TableSpec {
            name: name.to_string(),
            key_column: format!("{}_id", singular(name)),
            tag_column: None,
            links: None,
            snapshot: None,
            sources: vec![SourceSpec {
                object_type: object_type.to_string(),
                tag: None,
                properties: None,
                exclude: Vec::new(),
                decimal: Vec::new(),
                modified_property: None,
                created_property: None,
            }],
        }
    }

    /// The properties the catalog lists by name, in catalog order (first occurrence wins);
    /// sources that take every property add none.
    pub fn property_columns(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for s in &self.sources {
            for p in s.properties.iter().flatten() {
                if seen.insert(p.clone()) {
                    out.push(p.clone());
                }
            }
        }
        out
    }

    /// Whether this is a link table (see [`TableSpec::links`]).
    pub fn is_links(&self) -> bool {
        self.links.is_some()
    }

    /// Column names no property may take.
    pub fn reserved_columns(&self) -> Vec<String> {
        let mut out: Vec<String> = [
            self.key_column.as_str(),
            columns::CREATED_AT,
            columns::LAST_MODIFIED_AT,
            columns::ARCHIVED,
            columns::SYNCED_AT,
            columns::RUN_ID,
            columns::UNCAST,
            "dt",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        out.extend(self.tag_column.clone());
        out
    }

    /// The link table of `self`'s records to `to` (an object type): named
    /// `<singular of the table>_<singular of the type>_associations`, keyed by `self`'s key,
    /// with `self`'s sources (asking for no properties: a link row carries the link, and the
    /// record's created and modified times, which place and order it).
    pub fn links_to(&self, to: &str) -> TableSpec {
        let to_name = wire::object_type_name(to)
            .map(str::to_string)
            .unwrap_or_else(|| custom_table_name(to));
        let mut to_column = format!("{}_id", singular(&to_name));
        if to_column == self.key_column {
            to_column = format!("to_{to_column}");
        }
        TableSpec {
            name: format!("{}_{}_associations", singular(&self.name), singular(&to_name)),
            key_column: self.key_column.clone(),
            tag_column: self.tag_column.clone(),
            sources: self
                .sources
                .iter()
                .map(|s| SourceSpec {
                    properties: Some(Vec::new()),
                    exclude: Vec::new(),
                    decimal: Vec::new(),
                    ..s.clone()
                })
                .collect(),
            links: Some(LinkSpec {
                from_table: self.name.clone(),
                to_object_type: to.to_string(),
                to_column,
            }),
            snapshot: None,
        }
    }

    pub fn source(&self, object_type: &str) -> Option<&SourceSpec> {
        self.sources.iter().find(|s| s.object_type == object_type)
    }

    fn validate(&self) -> Result<(), String> {
        let ident_ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        if !ident_ok(&self.name) {
            return Err(format!(
                "table name `{}` must be lowercase letters, digits and `_` (it is a lake directory)",
                self.name
            ));
        }
        if self.snapshot.is_some() {
            if !self.sources.is_empty() || self.tag_column.is_some() {
                return Err(format!(
                    "table `{}` is a snapshot: it reads HubSpot's {} whole and takes no sources or tag column",
                    self.name,
                    self.snapshot.map(SnapshotKind::name).unwrap_or_default()
                ));
            }
            return Ok(());
        }
        if self.sources.is_empty() {
            return Err(format!("table `{}` has no sources", self.name));
        }
        if self.sources.len() > 1 && self.tag_column.is_none() {
            return Err(format!(
                "table `{}` reads several object types and needs a `tag_column` to tell them apart",
                self.name
            ));
        }
        let reserved = self.reserved_columns();
        for s in &self.sources {
            if wire::object_type_name(&s.object_type).is_none()
                && !wire::is_custom_object_type(&s.object_type)
            {
                return Err(format!(
                    "table `{}`: unknown HubSpot object type `{}` (a standard type's name or id, \
                     or a custom object's `2-<id>` or `p<portal>_<name>` from `hubsync schema objects`)",
                    self.name, s.object_type
                ));
            }
            if s.properties.is_some() && !s.exclude.is_empty() {
                return Err(format!(
                    "table `{}`: source `{}` has both `properties` and `exclude`; list the \
                     properties to take, or leave `properties` out to take all but `exclude`",
                    self.name, s.object_type
                ));
            }
            if self.tag_column.is_some() && s.tag.is_none() {
                return Err(format!(
                    "table `{}`: source `{}` needs a `tag` for column `{}`",
                    self.name,
                    s.object_type,
                    self.tag_column.as_deref().unwrap_or_default()
                ));
            }
            for p in s.properties.iter().flatten() {
                if reserved.contains(p) {
                    return Err(format!(
                        "table `{}`: property `{p}` collides with a built-in column",
                        self.name
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The validated catalog.
#[derive(Debug, Clone)]
pub struct Catalog {
    tables: Vec<TableSpec>,
    custom_objects: CustomObjects,
}

impl Default for Catalog {
    fn default() -> Self {
        // The embedded default is checked by `default_catalog_is_valid`.
        Catalog::from_toml(DEFAULT_CATALOG_TOML).unwrap_or(Catalog {
            tables: Vec::new(),
            custom_objects: CustomObjects::Listed,
        })
    }
}

impl Catalog {
    pub fn from_toml(text: &str) -> Result<Self, CatalogError> {
        let file: CatalogFile = toml::from_str(text)?;
        let mut names = BTreeSet::new();
        for t in &file.tables {
            t.validate().map_err(CatalogError::Invalid)?;
            if !names.insert(t.name.clone()) {
                return Err(CatalogError::Invalid(format!("table `{}` appears twice", t.name)));
            }
        }
        if file.tables.is_empty() {
            return Err(CatalogError::Invalid("the catalog has no tables".into()));
        }
        let mut tables = file.tables;
        for a in &file.associations {
            let from = tables
                .iter()
                .find(|t| t.name == a.from && t.snapshot.is_none())
                .ok_or_else(|| {
                    CatalogError::Invalid(format!(
                        "associations from `{}`: no such table (`from` names a table of the catalog)",
                        a.from
                    ))
                })?;
            if wire::object_type_name(&a.to).is_none() && !wire::is_custom_object_type(&a.to) {
                return Err(CatalogError::Invalid(format!(
                    "associations from `{}` to `{}`: `to` must be a HubSpot object type (a standard \
                     type's name or id, or a custom object's `2-<id>`)",
                    a.from, a.to
                )));
            }
            let links = from.links_to(&a.to);
            if !names.insert(links.name.clone()) {
                return Err(CatalogError::Invalid(format!(
                    "table `{}` appears twice",
                    links.name
                )));
            }
            tables.push(links);
        }
        Ok(Catalog {
            tables,
            custom_objects: file.custom_objects,
        })
    }

    /// Whether the portal's custom objects are tables besides the listed ones.
    pub fn discovers_custom_objects(&self) -> bool {
        self.custom_objects == CustomObjects::Discover
    }

    /// The catalog at `path`, or the default when `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, CatalogError> {
        match path {
            None => Catalog::from_toml(DEFAULT_CATALOG_TOML),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| CatalogError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                Catalog::from_toml(&text)
            }
        }
    }

    pub fn tables(&self) -> &[TableSpec] {
        &self.tables
    }

    pub fn table_names(&self) -> Vec<String> {
        self.tables.iter().map(|t| t.name.clone()).collect()
    }

    pub fn table(&self, name: &str) -> Result<&TableSpec, CatalogError> {
        self.tables
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| CatalogError::UnknownTable {
                name: name.to_string(),
                known: self.table_names().join(", "),
            })
    }

    /// Resolves a comma list (or all tables when empty), rejecting unknown names.
    pub fn select(&self, names: &[String]) -> Result<Vec<&TableSpec>, CatalogError> {
        if names.is_empty() {
            return Ok(self.tables.iter().collect());
        }
        names.iter().map(|n| self.table(n.trim())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_catalog_is_valid_and_has_the_five_tables() {
        let c = Catalog::from_toml(DEFAULT_CATALOG_TOML).unwrap();
        assert_eq!(
            c.table_names(),
            [
                "deals",
                "contacts",
                "companies",
                "activities",
                "contacts_dim",
                "tickets",
                "line_items",
                "products",
                "quotes",
                "owners",
                "pipeline_stages",
                "deal_contact_associations",
                "deal_company_associations",
                "contact_company_associations",
                "ticket_contact_associations",
                "ticket_company_associations",
                "line_item_deal_associations",
                "activity_contact_associations",
                "activity_company_associations",
                "activity_deal_associations",
                "activity_ticket_associations",
            ]
        );
        let links = c.table("activity_deal_associations").unwrap();
        assert_eq!(
            (links.key_column.as_str(), links.tag_column.as_deref()),
            ("activity_id", Some("activity_type"))
        );
        let spec = links.links.as_ref().unwrap();
        assert_eq!(
            (spec.to_object_type.as_str(), spec.to_column.as_str()),
            ("deals", "deal_id")
        );
        assert_eq!(links.sources.len(), 5);
        assert!(links.sources.iter().all(|s| s.properties == Some(Vec::new())));
        let bad = Catalog::from_toml("[[tables]]\nname='x'\nkey_column='id'\n[[tables.sources]]\nobject_type='deals'\n[[associations]]\nfrom='y'\nto='contacts'");
        assert!(bad.unwrap_err().to_string().contains("no such table"));
        let acts = c.table("activities").unwrap();
        assert_eq!(acts.sources.len(), 5);
        assert_eq!(acts.tag_column.as_deref(), Some("activity_type"));
        // The default catalog takes the portal's custom objects as tables; one that does not
        // say keeps to its own.
        assert!(c.discovers_custom_objects());
        let own = Catalog::from_toml(
            "[[tables]]\nname='cars'\nkey_column='car_id'\n[[tables.sources]]\nobject_type='p1234_cars'",
        )
        .unwrap();
        assert!(!own.discovers_custom_objects());
        let bad = Catalog::from_toml("custom_objects = 'all'\n[[tables]]\nname='x'\nkey_column='id'\n[[tables.sources]]\nobject_type='deals'");
        assert!(bad.unwrap_err().to_string().contains("custom_objects"));
        let contacts = c.table("contacts").unwrap();
        assert_eq!(contacts.sources[0].modified_property(), "lastmodifieddate");
        assert_eq!(
            contacts.sources[0].request_properties(["email"]),
            ["createdate", "lastmodifieddate", "email"]
        );
        assert_eq!(
            contacts.sources[0].selection(),
            PropertySelection::All { exclude: vec![] }
        );
        assert!(c.table("contacts_dim").unwrap().sources[0].properties.is_some());
        assert_eq!(
            c.table("quotes").unwrap().sources[0].created_property(),
            "hs_createdate"
        );
    }

    #[test]
    fn custom_object_keys_are_named_after_the_singular() {
        for (table, key) in [
            ("cars", "car_id"),
            ("companies", "company_id"),
            ("address", "address_id"),
            ("status", "status_id"),
            ("analysis", "analysis_id"),
            ("s", "s_id"),
            ("fleet", "fleet_id"),
        ] {
            assert_eq!(TableSpec::custom_object(table, "2-1").key_column, key, "{table}");
        }
    }

    #[test]
    fn unknown_table_names_the_known_ones() {
        let err = Catalog::default().table("deal").unwrap_err().to_string();
        assert!(err.contains("unknown table `deal`"), "{err}");
        assert!(err.contains("contacts_dim"), "{err}");
    }

    #[test]
    fn invalid_catalogs_are_rejected_with_the_reason() {
        let cases = [
            ("tables = []", "no tables"),
            (
                "[[tables]]\nname='x'\nkey_column='id'\n[[tables.sources]]\nobject_type='widgets'\nproperties=[]",
                "unknown HubSpot object type",
            ),
            (
                "[[tables]]\nname='x'\nkey_column='id'\n[[tables.sources]]\nobject_type='deals'\nproperties=['created_at']",
                "collides",
            ),
            (
                "[[tables]]\nname='X Y'\nkey_column='id'\n[[tables.sources]]\nobject_type='deals'\nproperties=[]",
                "lowercase",
            ),
            (
                "[[tables]]\nname='x'\nkey_column='id'\n[[tables.sources]]\nobject_type='deals'\nproperties=['a']\nexclude=['b']",
                "both `properties` and `exclude`",
            ),
        ];
        for (text, want) in cases {
            let err = Catalog::from_toml(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
