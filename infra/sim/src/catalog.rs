//! The simulated portal's vocabulary: the object types (standard and built-in custom schemas)
//! and, per type, its built-in properties with how each value is generated. A portal's own
//! property table (custom properties, retypes, archives) lives in `schema.rs`.

use wire::PropertyDefinition;

use super::{commerce, custom_objects, properties};

/// The object types the simulator serves: HubSpot's standard types, then the built-in custom
/// object schemas a portal may enable (`SimConfig::custom_objects`). Activities share one
/// engagement id space; every other type has its own.
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
    Tickets,
    LineItems,
    Products,
    Quotes,
    /// Custom object `cars` (HubSpot's own example schema).
    Cars,
    /// Custom object `shipments`.
    Shipments,
}

impl ObjectType {
    /// Every standard (HubSpot-defined) type; the default set a portal seeds.
    pub const ALL: [ObjectType; 12] = [
        ObjectType::Deals,
        ObjectType::Contacts,
        ObjectType::Companies,
        ObjectType::Calls,
        ObjectType::Emails,
        ObjectType::Meetings,
        ObjectType::Notes,
        ObjectType::Tasks,
        ObjectType::Tickets,
        ObjectType::LineItems,
        ObjectType::Products,
        ObjectType::Quotes,
    ];

    /// The built-in custom object schemas; a portal serves those it enables.
    pub const CUSTOM: [ObjectType; 2] = [ObjectType::Cars, ObjectType::Shipments];

    /// How many types there are, standard and custom: the length of per-type tables.
    pub const COUNT: usize = 14;

    /// Every type, standard then custom, in [`ObjectType::index`] order.
    pub fn every() -> impl Iterator<Item = ObjectType> {
        ObjectType::ALL.into_iter().chain(ObjectType::CUSTOM)
    }

    /// HubSpot's name of the type; for a custom object its schema name (`cars`), which the
    /// API knows only as [`ObjectType::custom_type_id`] or its fully qualified name.
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
            ObjectType::Tickets => "tickets",
            ObjectType::LineItems => "line_items",
            ObjectType::Products => "products",
            ObjectType::Quotes => "quotes",
            ObjectType::Cars => "cars",
            ObjectType::Shipments => "shipments",
        }
    }

    /// Resolves a name (`deals`) or a type id (`0-3`), as HubSpot accepts both; for a custom
    /// object also its schema name (`cars`), type id (`2-3508482`) or fully qualified name
    /// (`p<any portal id>_cars`). The HTTP API is stricter: see `Portal::resolve`.
    pub fn parse(type_or_id: &str) -> Option<Self> {
        if let Some(name) = wire::object_type_name(type_or_id) {
            return ObjectType::ALL.into_iter().find(|t| t.name() == name);
        }
        ObjectType::CUSTOM.into_iter().find(|t| {
            t.name() == type_or_id
                || t.custom_type_id() == Some(type_or_id)
                || custom_fqn_name(type_or_id) == Some(t.name())
        })
    }

    /// Position in [`ObjectType::every`], for per-type tables.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn is_activity(self) -> bool {
        matches!(
            self,
            ObjectType::Calls
                | ObjectType::Emails
                | ObjectType::Meetings
                | ObjectType::Notes
                | ObjectType::Tasks
        )
    }

    pub fn is_custom(self) -> bool {
        ObjectType::CUSTOM.contains(&self)
    }

    /// A custom object's `objectTypeId` (`2-<schema id>`); `None` for standard types.
    pub fn custom_type_id(self) -> Option<&'static str> {
        match self {
            ObjectType::Cars => Some("2-3508482"),
            ObjectType::Shipments => Some("2-3508519"),
            _ => None,
        }
    }

    pub fn modified_property(self) -> &'static str {
        wire::modified_property(self.name())
    }

    pub fn created_property(self) -> &'static str {
        if self.is_custom() {
            "hs_createdate"
        } else {
            wire::created_property(self.name())
        }
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
            ObjectType::Tickets => &[
                "content",
                "createdate",
                "hs_lastmodifieddate",
                "hs_object_id",
                "hs_pipeline",
                "hs_pipeline_stage",
                "hs_ticket_category",
                "hs_ticket_priority",
                "subject",
            ],
            ObjectType::LineItems => &[
                "amount",
                "createdate",
                "hs_lastmodifieddate",
                "hs_object_id",
                "hs_product_id",
                "name",
                "price",
                "quantity",
            ],
            ObjectType::Products => &[
                "createdate",
                "description",
                "hs_lastmodifieddate",
                "hs_object_id",
                "name",
                "price",
            ],
            ObjectType::Quotes => &[
                "hs_createdate",
                "hs_expiration_date",
                "hs_lastmodifieddate",
                "hs_object_id",
                "hs_title",
            ],
            _ => &["hs_createdate", "hs_lastmodifieddate", "hs_object_id"],
        }
    }

    /// The type's built-in properties (HubSpot-defined, or the schema's for a custom object),
    /// in a stable order. A portal starts from these and adds its own (`schema.rs`).
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
            ObjectType::Tickets => commerce::TICKETS,
            ObjectType::LineItems => commerce::LINE_ITEMS,
            ObjectType::Products => commerce::PRODUCTS,
            ObjectType::Quotes => commerce::QUOTES,
            ObjectType::Cars => custom_objects::CARS,
            ObjectType::Shipments => custom_objects::SHIPMENTS,
        }
    }

    /// A built-in property by name.
    pub fn property(self, name: &str) -> Option<&'static PropSpec> {
        self.properties().iter().find(|p| p.name == name)
    }

    /// The `groupName` of the type's properties.
    pub fn group_name(self) -> String {
        match self {
            ObjectType::LineItems => "line_item_information".to_string(),
            t => format!("{}information", t.name().trim_end_matches('s')),
        }
    }
}

/// The schema name of a fully qualified custom object name (`p1234_cars` gives `cars`).
pub fn custom_fqn_name(fqn: &str) -> Option<&str> {
    if !wire::is_custom_object_type(fqn) || fqn.starts_with("2-") {
        return None;
    }
    fqn.split_once('_').map(|(_, name)| name)
}

impl PropSpec {
    /// The definition `GET /crm/v3/properties/{type}` lists.
    pub fn definition(&self, t: ObjectType) -> PropertyDefinition {
        PropertyDefinition {
            name: self.name.to_string(),
            label: self.label.to_string(),
            kind: self.kind.type_name().to_string(),
            field_type: self.field_type().to_string(),
            group_name: t.group_name(),
            archived: self.archived,
            calculated: self.calculated,
            hubspot_defined: self.hubspot_defined,
            ..Default::default()
        }
    }

    /// HubSpot's `fieldType`: the one given, else the usual one of the kind.
    pub fn field_type(&self) -> &'static str {
        if self.field_type.is_empty() {
            self.kind.field_type()
        } else {
            self.field_type
        }
    }

    /// A multi-select enumeration (`fieldType` `checkbox`): values are `;`-separated.
    pub fn is_multi(&self) -> bool {
        self.kind == Kind::Enumeration && self.field_type() == "checkbox"
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
    Bool,
}

impl Kind {
    /// Every kind, for parsing and for drawing custom properties.
    pub const ALL: [Kind; 6] = [
        Kind::String,
        Kind::Number,
        Kind::DateTime,
        Kind::Date,
        Kind::Enumeration,
        Kind::Bool,
    ];

    /// Parses HubSpot's `type` (`string`, `number`, `datetime`, `date`, `enumeration`, `bool`).
    pub fn parse(raw: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.type_name() == raw)
    }

    pub fn type_name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Number => "number",
            Kind::DateTime => "datetime",
            Kind::Date => "date",
            Kind::Enumeration => "enumeration",
            Kind::Bool => "bool",
        }
    }

    pub fn field_type(self) -> &'static str {
        match self {
            Kind::String => "text",
            Kind::Number => "number",
            Kind::DateTime | Kind::Date => "date",
            Kind::Enumeration => "select",
            Kind::Bool => "booleancheckbox",
        }
    }
}

/// How a property's value is derived (see `values.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gen {
    ObjectId,
    /// The ids merged into the record (`hs_merged_object_ids`, A4 in `relations.rs`).
    MergedIds,
    /// ... as contacts' `hs_calculated_merged_vids` (`id:ms` items).
    MergedVids,
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
    /// `"true"` with this chance in 1000, else `"false"`.
    Flag {
        true_per_mille: u16,
    },
    /// `"true"` when the pick of `options` under the property's key is one of `set` (a
    /// calculated flag consistent with the enumeration it is calculated from).
    InSet {
        options: &'static [&'static str],
        set: &'static [&'static str],
    },
    /// A multi-select value: a `;`-joined subset of the options (one, several, or empty).
    Multi(&'static [&'static str]),
    /// A date-only value up to `max_days` after creation: `YYYY-MM-DD`, one in five as the
    /// epoch milliseconds of that midnight (recorded answers carry both).
    Day {
        max_days: u64,
    },
    /// A line item's amount: `quantity` times `price` of the same record.
    LineAmount,
    /// A reference to one of the seeded products.
    ProductRef,
    /// A stock keeping unit, `SKU-` and digits.
    Sku,
    /// A vehicle identification number (17 characters).
    Vin,
    /// A portal's own property: the value follows the property's current kind, so a retype
    /// changes what is rendered; may be uncastable (`SimConfig::uncastable_per_mille`).
    Custom,
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
    /// HubSpot's `fieldType`; empty means the kind's usual one.
    pub field_type: &'static str,
    /// Options of a custom enumeration (built-in ones carry theirs in `gen`).
    pub options: &'static [&'static str],
    pub calculated: bool,
    /// `false` for the portal's custom properties.
    pub hubspot_defined: bool,
    /// An archived property is listed only with `?archived=true`; records render it null.
    pub archived: bool,
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
        field_type: "",
        options: &[],
        calculated: false,
        hubspot_defined: true,
        archived: false,
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
    pub(super) const fn field(mut self, field_type: &'static str) -> Self {
        self.field_type = field_type;
        self
    }
    pub(super) const fn calculated(mut self) -> Self {
        self.calculated = true;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_has_id_created_and_modified_properties() {
        for t in ObjectType::every() {
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
        assert_eq!(ObjectType::parse("0-5"), Some(ObjectType::Tickets));
        assert_eq!(ObjectType::parse("line_items"), Some(ObjectType::LineItems));
        assert_eq!(ObjectType::parse("2-3508482"), Some(ObjectType::Cars));
        assert_eq!(ObjectType::parse("p42_cars"), Some(ObjectType::Cars));
        assert_eq!(ObjectType::every().count(), ObjectType::COUNT);
        assert!(ObjectType::every().enumerate().all(|(i, t)| t.index() == i));
    }
}
