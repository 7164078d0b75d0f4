//! The built-in custom object schemas a portal may enable (`SimConfig::custom_objects`):
//! their property tables and how `GET /crm/v3/schemas` describes them.

use wire::{ObjectLabels, ObjectSchema};

use super::catalog::{p, Gen, Kind, ObjectType, PropSpec};
use super::properties::{HS_CREATEDATE, HS_MODIFIED, ID, OWNER};
use Gen::*;
use Kind::{Bool, Date, DateTime, Enumeration, Number};

pub(super) static CARS: &[PropSpec] = &[
    ID,
    HS_CREATEDATE,
    HS_MODIFIED,
    p("model", "Model", Kind::String, Pick(CAR_MODELS))
        .key("car")
        .stable(),
    p("make", "Make", Kind::String, Pick(CAR_MAKES))
        .key("car")
        .stable(),
    p("year", "Year", Number, Int { min: 1998, max: 2025 }).stable(),
    p("vin", "VIN", Kind::String, Vin).stable(),
    p(
        "color",
        "Color",
        Enumeration,
        Pick(&["black", "white", "silver", "red", "blue", "green"]),
    )
    .nulls(100),
    p("mileage", "Mileage", Number, Int { min: 0, max: 250_000 }).nulls(150),
    OWNER,
];

// Paired by index with CAR_MAKES under one key, so make and model agree.
const CAR_MODELS: &[&str] = &[
    "Corolla", "Golf", "Model 3", "Civic", "3 Series", "Clio", "Octavia",
];
const CAR_MAKES: &[&str] = &[
    "Toyota",
    "Volkswagen",
    "Tesla",
    "Honda",
    "BMW",
    "Renault",
    "Škoda",
];

pub(super) static SHIPMENTS: &[PropSpec] = &[
    ID,
    HS_CREATEDATE,
    HS_MODIFIED,
    p("tracking_number", "Tracking number", Kind::String, Sku).stable(),
    p(
        "carrier",
        "Carrier",
        Enumeration,
        Pick(&["UPS", "DHL", "FEDEX", "USPS", "DPD"]),
    )
    .stable(),
    p(
        "shipment_status",
        "Status",
        Enumeration,
        Pick(&["label_created", "in_transit", "delivered", "returned"]),
    ),
    p("shipped_at", "Shipped at", DateTime, AfterCreated { max_days: 5 }).nulls(200),
    p("delivered_on", "Delivered on", Date, Day { max_days: 20 }).nulls(350),
    p("weight_kg", "Weight (kg)", Number, Int { min: 1, max: 900 }).nulls(100),
    p("is_insured", "Insured", Bool, Flag { true_per_mille: 250 }),
];

/// Labels, primary display property, required and searchable properties of a schema.
struct SchemaMeta {
    singular: &'static str,
    plural: &'static str,
    primary: &'static str,
    required: &'static [&'static str],
    searchable: &'static [&'static str],
}

fn meta(t: ObjectType) -> SchemaMeta {
    match t {
        ObjectType::Shipments => SchemaMeta {
            singular: "Shipment",
            plural: "Shipments",
            primary: "tracking_number",
            required: &["tracking_number"],
            searchable: &["tracking_number", "carrier"],
        },
        _ => SchemaMeta {
            singular: "Car",
            plural: "Cars",
            primary: "model",
            required: &["model", "make", "year", "vin"],
            searchable: &["model", "make", "vin"],
        },
    }
}

/// A custom object's fully qualified name in a portal (`p<portal id>_cars`).
pub fn fully_qualified_name(t: ObjectType, portal_id: u64) -> String {
    format!("p{portal_id}_{}", t.name())
}

/// `GET /crm/v3/schemas` entry of a custom type; `properties` are the portal's current ones.
pub fn object_schema(
    t: ObjectType,
    portal_id: u64,
    properties: Vec<wire::PropertyDefinition>,
) -> ObjectSchema {
    let m = meta(t);
    let type_id = t.custom_type_id().unwrap_or_default();
    ObjectSchema {
        id: type_id.trim_start_matches("2-").to_string(),
        name: t.name().to_string(),
        labels: ObjectLabels {
            singular: m.singular.to_string(),
            plural: m.plural.to_string(),
        },
        object_type_id: type_id.to_string(),
        fully_qualified_name: fully_qualified_name(t, portal_id),
        primary_display_property: Some(m.primary.to_string()),
        required_properties: m.required.iter().map(|s| s.to_string()).collect(),
        searchable_properties: m.searchable.iter().map(|s| s.to_string()).collect(),
        properties,
        archived: false,
    }
}
