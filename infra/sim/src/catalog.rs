//! The simulated portal's schema: the eight object types and, per type, its properties with
//! how each value is generated. `GET /crm/v3/properties/{type}` is rendered from this table.

use wire::PropertyDefinition;

use super::properties;

/// The object types the simulator serves. Activities share one engagement id space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectType {
    Deals,
    Contacts,
    Companies,
    Calls,
    Emails,
    Meetings,
    Notes,
    Tasks,
}

impl ObjectType {
    pub const ALL: [ObjectType; 8] = [
        ObjectType::Deals,
        ObjectType::Contacts,
        ObjectType::Companies,
        ObjectType::Calls,
        ObjectType::Emails,
        ObjectType::Meetings,
        ObjectType::Notes,
        ObjectType::Tasks,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ObjectType::Deals => "deals",
            ObjectType::Contacts => "contacts",
            ObjectType::Companies => "companies",
            ObjectType::Calls => "calls",
            ObjectType::Emails => "emails",
            ObjectType::Meetings => "meetings",
            ObjectType::Notes => "notes",
            ObjectType::Tasks => "tasks",
        }
    }

    /// Resolves a name (`deals`) or a type id (`0-3`), as HubSpot accepts both.
    pub fn parse(type_or_id: &str) -> Option<Self> {
        let name = wire::object_type_name(type_or_id)?;
        ObjectType::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Position in [`ObjectType::ALL`], for per-type arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn is_activity(self) -> bool {
        !matches!(
            self,
            ObjectType::Deals | ObjectType::Contacts | ObjectType::Companies
        )
    }

    pub fn modified_property(self) -> &'static str {
        wire::modified_property(self.name())
    }

    pub fn created_property(self) -> &'static str {
        wire::created_property(self.name())
    }

    /// The properties HubSpot returns when a request names none.
    pub fn default_properties(self) -> &'static [&'static str] {
        match self {
            ObjectType::Deals => &[
                "amount",
                "closedate",
                "createdate",
                "dealname",
                "dealstage",
                "hs_lastmodifieddate",
                "hs_object_id",
                "pipeline",
            ],
            ObjectType::Contacts => &[
                "createdate",
                "email",
                "firstname",
                "hs_object_id",
                "lastmodifieddate",
                "lastname",
            ],
            ObjectType::Companies => &[
                "createdate",
                "domain",
                "hs_lastmodifieddate",
                "hs_object_id",
                "name",
            ],
            _ => &["hs_createdate", "hs_lastmodifieddate", "hs_object_id"],
        }
    }

    /// Every property of the type, in a stable order.
    pub fn properties(self) -> &'static [PropSpec] {
        match self {
            ObjectType::Deals => properties::DEALS,
            ObjectType::Contacts => properties::CONTACTS,
            ObjectType::Companies => properties::COMPANIES,
            ObjectType::Calls => properties::CALLS,
            ObjectType::Emails => properties::EMAILS,
            ObjectType::Meetings => properties::MEETINGS,
            ObjectType::Notes => properties::NOTES,
            ObjectType::Tasks => properties::TASKS,
        }
    }

    pub fn property(self, name: &str) -> Option<&'static PropSpec> {
        self.properties().iter().find(|p| p.name == name)
    }

    pub fn property_definitions(self) -> Vec<PropertyDefinition> {
        self.properties()
            .iter()
            .map(|p| PropertyDefinition {
                name: p.name.to_string(),
                label: p.label.to_string(),
                kind: p.kind.type_name().to_string(),
                field_type: p.kind.field_type().to_string(),
                group_name: format!("{}information", self.name().trim_end_matches('s')),
                hubspot_defined: true,
                ..Default::default()
            })
            .collect()
    }
}

/// HubSpot's property types (the `type` of a property definition).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Number,
    DateTime,
    Date,
    Enumeration,
}

impl Kind {
    fn type_name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Number => "number",
            Kind::DateTime => "datetime",
            Kind::Date => "date",
            Kind::Enumeration => "enumeration",
        }
    }

    fn field_type(self) -> &'static str {
        match self {
            Kind::String => "text",
            Kind::Number => "number",
            Kind::DateTime | Kind::Date => "date",
            Kind::Enumeration => "select",
        }
    }
}

/// How a property's value is derived (see `values.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gen {
    ObjectId,
    Created,
    Modified,
    /// One of fixed options (enumerations, and free text drawn from a pool).
    Pick(&'static [&'static str]),
    /// Free text built from a phrase pool, sometimes with HTML, quotes and newlines.
    Body,
    Title(&'static [&'static str]),
    FirstName,
    LastName,
    Email,
    Phone,
    City,
    Country,
    CompanyName,
    Domain,
    Owner,
    CompanyRef,
    Amount,
    Int {
        min: u64,
        max: u64,
    },
    /// A date-time up to `max_days` after creation.
    AfterCreated {
        max_days: u64,
    },
    /// When an activity happened: up to two weeks before it was logged.
    ActivityTime,
    /// A meeting's end: 15 to 120 minutes after its start (`ActivityTime`).
    MeetingEnd,
}

/// One property of an object type.
#[derive(Debug, Clone, Copy)]
pub struct PropSpec {
    pub name: &'static str,
    pub label: &'static str,
    pub kind: Kind,
    pub gen: Gen,
    /// Values with the same key are drawn from the same hash (city with country, first
    /// name with email, meeting start with `hs_timestamp`), so they stay consistent.
    pub key: &'static str,
    /// Chance in 1000 that the value is null.
    pub null_per_mille: u16,
    /// Stable properties keep their first value through updates (names, ids, places).
    pub stable: bool,
}

pub(super) const fn p(name: &'static str, label: &'static str, kind: Kind, gen: Gen) -> PropSpec {
    PropSpec {
        name,
        label,
        kind,
        gen,
        key: name,
        null_per_mille: 0,
        stable: false,
    }
}

impl PropSpec {
    pub(super) const fn nulls(mut self, per_mille: u16) -> Self {
        self.null_per_mille = per_mille;
        self
    }
    pub(super) const fn stable(mut self) -> Self {
        self.stable = true;
        self
    }
    pub(super) const fn key(mut self, key: &'static str) -> Self {
        self.key = key;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_has_id_created_and_modified_properties() {
        for t in ObjectType::ALL {
            for name in ["hs_object_id", t.created_property(), t.modified_property()] {
                assert!(t.property(name).is_some(), "{} lacks {name}", t.name());
            }
            for name in t.default_properties() {
                assert!(
                    t.property(name).is_some(),
                    "{} default {name} undefined",
                    t.name()
                );
            }
            assert_eq!(ObjectType::parse(t.name()), Some(t));
        }
        assert_eq!(ObjectType::parse("0-3"), Some(ObjectType::Deals));
        assert_eq!(ObjectType::parse("widgets"), None);
    }
}
