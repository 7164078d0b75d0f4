//! The table catalog: which lake tables exist, which HubSpot object types feed them and
//! which properties become columns. It is data (TOML), validated once at start-up and then
//! trusted; [`Catalog::default`] is `default_catalog.toml`, the five tables of DESIGN.md.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use serde::Deserialize;

/// The five tables of DESIGN.md; see the file for the column rules.
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
    tables: Vec<TableSpec>,
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
}

/// One HubSpot object type feeding a table.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    pub object_type: String,
    #[serde(default)]
    pub tag: Option<String>,
    pub properties: Vec<String>,
    #[serde(default)]
    pub modified_property: Option<String>,
    #[serde(default)]
    pub created_property: Option<String>,
}

impl SourceSpec {
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

    /// Properties to request: the catalog's, plus the created and modified properties.
    pub fn request_properties(&self) -> Vec<String> {
        let mut props: Vec<String> = self.properties.clone();
        for p in [self.created_property(), self.modified_property()] {
            if !props.iter().any(|x| x == p) {
                props.push(p.to_string());
            }
        }
        props
    }
}

impl TableSpec {
    /// Property columns in catalog order: each source's properties, first occurrence wins.
    pub fn property_columns(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for s in &self.sources {
            for p in &s.properties {
                if seen.insert(p.clone()) {
                    out.push(p.clone());
                }
            }
        }
        out
    }

    /// The table's Arrow schema, in the column order of the catalog's header comment.
    pub fn arrow_schema(&self) -> SchemaRef {
        let ts = || DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
        let mut fields = vec![
            Field::new(&self.key_column, DataType::Int64, false),
            // Nullable: a record whose created date is missing or unreadable lands in
            // [`UNKNOWN_CREATED_DT`](crate::catalog::UNKNOWN_CREATED_DT) with no `created_at`.
            Field::new(columns::CREATED_AT, ts(), true),
            Field::new(columns::LAST_MODIFIED_AT, ts(), false),
            Field::new(columns::ARCHIVED, DataType::Boolean, false),
        ];
        if let Some(tag) = &self.tag_column {
            fields.push(Field::new(tag, DataType::Utf8, true));
        }
        for p in self.property_columns() {
            fields.push(Field::new(p, DataType::Utf8, true));
        }
        fields.push(Field::new(columns::SYNCED_AT, ts(), false));
        fields.push(Field::new(columns::RUN_ID, DataType::Utf8, false));
        Arc::new(Schema::new(fields))
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
        if self.sources.is_empty() {
            return Err(format!("table `{}` has no sources", self.name));
        }
        if self.sources.len() > 1 && self.tag_column.is_none() {
            return Err(format!(
                "table `{}` reads several object types and needs a `tag_column` to tell them apart",
                self.name
            ));
        }
        let reserved = [
            self.key_column.as_str(),
            columns::CREATED_AT,
            columns::LAST_MODIFIED_AT,
            columns::ARCHIVED,
            columns::SYNCED_AT,
            columns::RUN_ID,
            "dt",
        ];
        for s in &self.sources {
            if wire::object_type_name(&s.object_type).is_none() {
                return Err(format!(
                    "table `{}`: unknown HubSpot object type `{}`",
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
            for p in &s.properties {
                if reserved.contains(&p.as_str()) || Some(p) == self.tag_column.as_ref() {
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
}

impl Default for Catalog {
    fn default() -> Self {
        // The embedded default is checked by `default_catalog_is_valid`.
        Catalog::from_toml(DEFAULT_CATALOG_TOML).unwrap_or(Catalog { tables: Vec::new() })
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
        Ok(Catalog { tables: file.tables })
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
            ["deals", "contacts", "companies", "activities", "contacts_dim"]
        );
        let acts = c.table("activities").unwrap();
        assert_eq!(acts.sources.len(), 5);
        assert_eq!(acts.tag_column.as_deref(), Some("activity_type"));
        let contacts = c.table("contacts").unwrap();
        assert_eq!(contacts.sources[0].modified_property(), "lastmodifieddate");
        assert!(contacts.sources[0]
            .request_properties()
            .contains(&"createdate".to_string()));
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
        ];
        for (text, want) in cases {
            let err = Catalog::from_toml(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
