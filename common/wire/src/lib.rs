//! HubSpot CRM v3 wire types, shared by the client and the simulator so the two cannot drift.
//!
//! Field names follow HubSpot's JSON exactly (camelCase); see `../shared/HUBSPOT.md`.
//! Every property value is a string or null on the wire, whatever its HubSpot type.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A bearer token (a private app's access token): it never prints, in `Debug` or in logs. The
/// client sends it and the simulator checks it; there is no other token type.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The token itself, for the `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Largest `limit` the list endpoint accepts.
pub const LIST_PAGE_MAX: u32 = 100;
/// Largest `limit` the search endpoint accepts (200 since September 2024).
pub const SEARCH_PAGE_MAX: u32 = 200;
/// The search endpoint answers 400 for any page that would reach past this many results.
pub const SEARCH_RESULT_CAP: u64 = 10_000;

/// One CRM object as the list and search endpoints return it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRecord {
    pub id: String,
    #[serde(default)]
    pub properties: BTreeMap<String, Option<String>>,
    /// ISO-8601 UTC, equal to the created property.
    pub created_at: String,
    /// ISO-8601 UTC, equal to the modified property to the millisecond.
    pub updated_at: String,
    #[serde(default)]
    pub archived: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextPage {
    /// Opaque cursor for the list endpoint; an offset for search.
    pub after: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paging {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<NextPage>,
}

impl Paging {
    pub fn next_after(paging: &Option<Paging>) -> Option<&str> {
        paging.as_ref()?.next.as_ref().map(|n| n.after.as_str())
    }
}

/// `GET /crm/v3/objects/{type}`: no `paging` on the last page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListResponse {
    pub results: Vec<ObjectRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paging: Option<Paging>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Operator {
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
    Between,
    In,
    NotIn,
    HasProperty,
    NotHasProperty,
    ContainsToken,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    pub property_name: String,
    pub operator: Operator,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Upper bound of `BETWEEN` (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_value: Option<String>,
    /// Operands of `IN` / `NOT_IN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
}

impl Filter {
    pub fn new(property: &str, operator: Operator, value: impl ToString) -> Self {
        Filter {
            property_name: property.to_string(),
            operator,
            value: Some(value.to_string()),
            high_value: None,
            values: None,
        }
    }

    pub fn between(property: &str, low: impl ToString, high: impl ToString) -> Self {
        Filter {
            property_name: property.to_string(),
            operator: Operator::Between,
            value: Some(low.to_string()),
            high_value: Some(high.to_string()),
            values: None,
        }
    }
}

/// Filters in one group are ANDed; groups are ORed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterGroup {
    pub filters: Vec<Filter>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Direction {
    Ascending,
    Descending,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sort {
    pub property_name: String,
    pub direction: Direction,
}

/// `POST /crm/v3/objects/{type}/search` body. The schema lists exactly these five fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchRequest {
    #[serde(default)]
    pub filter_groups: Vec<FilterGroup>,
    #[serde(default)]
    pub sorts: Vec<Sort>,
    #[serde(default)]
    pub properties: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchResponse {
    pub total: u64,
    pub results: Vec<ObjectRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paging: Option<Paging>,
}

/// HubSpot's error body. `category`, `correlationId` and `message` are required by the
/// published schema; 429s carry `errorType` and `policyName` instead of a category. Decoded
/// leniently: HubSpot's own example has no `status`, and a body missing any field still gives
/// what it has (the correlation id above all, which HubSpot's support asks for).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub correlation_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<serde_json::Value>,
}

impl ErrorBody {
    pub fn new(category: &str, message: impl Into<String>, correlation_id: String) -> Self {
        ErrorBody {
            status: "error".into(),
            message: message.into(),
            correlation_id,
            category: Some(category.into()),
            sub_category: None,
            error_type: None,
            policy_name: None,
            errors: None,
            context: None,
        }
    }
}

/// One entry of `GET /crm/v3/properties/{type}` (HubSpot's `Property` schema; the fields a
/// lake needs, the others ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyDefinition {
    pub name: String,
    pub label: String,
    /// `string`, `number`, `datetime`, `date`, `enumeration`, `bool`, `phone_number`,
    /// `object_coordinates`, `json`.
    #[serde(rename = "type")]
    pub kind: String,
    /// How HubSpot's UI edits it: `text`, `textarea`, `number`, `date`, `select`, `radio`,
    /// `checkbox` (multi-select, values `;`-separated), `booleancheckbox`, `calculation_equation`,
    /// `phonenumber`, `html`, `file`.
    pub field_type: String,
    #[serde(default)]
    pub group_name: String,
    #[serde(default)]
    pub description: String,
    /// Archived properties are listed only with `?archived=true`.
    #[serde(default)]
    pub archived: bool,
    #[serde(default)]
    pub hidden: bool,
    #[serde(default)]
    pub calculated: bool,
    /// HubSpot-defined (`true`) or a custom property of the portal (`false`).
    #[serde(default)]
    pub hubspot_defined: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PropertiesResponse {
    pub results: Vec<PropertyDefinition>,
}

/// The record id as a property: usable in filters and sorts, and in every record.
pub const ID_PROPERTY: &str = "hs_object_id";

/// HubSpot's batch read is capped at this many ids a request.
pub const BATCH_READ_MAX: usize = 100;

/// One id of a batch read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchId {
    pub id: String,
}

/// `POST /crm/v3/objects/{type}/batch/read` body (`BatchReadInputSimplePublicObjectId`):
/// the properties travel in the body, so no URL limit applies to them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchReadRequest {
    pub properties: Vec<String>,
    #[serde(default)]
    pub properties_with_history: Vec<String>,
    pub inputs: Vec<BatchId>,
}

/// Its answer: `200` with every id found, `207` with `errors` naming those that were not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchReadResponse {
    pub status: String,
    pub results: Vec<ObjectRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_errors: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<serde_json::Value>,
}

/// Singular and plural labels of a custom object schema.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectLabels {
    #[serde(default)]
    pub singular: String,
    #[serde(default)]
    pub plural: String,
}

/// One custom object type of `GET /crm/v3/schemas` (HubSpot's `ObjectSchema`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectSchema {
    pub id: String,
    /// The schema's name (`cars`); records are read under `objectTypeId` or
    /// `fullyQualifiedName`.
    pub name: String,
    #[serde(default)]
    pub labels: ObjectLabels,
    /// `2-<id>`.
    pub object_type_id: String,
    /// `p<portal id>_<name>`.
    pub fully_qualified_name: String,
    #[serde(default)]
    pub primary_display_property: Option<String>,
    #[serde(default)]
    pub required_properties: Vec<String>,
    #[serde(default)]
    pub searchable_properties: Vec<String>,
    #[serde(default)]
    pub properties: Vec<PropertyDefinition>,
    #[serde(default)]
    pub archived: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemasResponse {
    pub results: Vec<ObjectSchema>,
}

/// HubSpot's v4 association batch read takes at most this many ids a request.
pub const ASSOCIATIONS_BATCH_MAX: usize = 1_000;
/// ... and answers at most this many linked records per id; `paging.next.after` goes on.
pub const ASSOCIATIONS_PER_ID_MAX: usize = 500;

/// One id of a v4 association batch read, with the cursor of its next page of links.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssociationInput {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// `POST /crm/v4/associations/{from}/{to}/batch/read` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssociationsRequest {
    pub inputs: Vec<AssociationInput>,
}

/// One type of a link: HubSpot's (`HUBSPOT_DEFINED`, the unlabeled type or a default label
/// such as "Primary") or the portal's (`USER_DEFINED`, a custom label).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssociationType {
    pub category: String,
    pub type_id: i64,
    #[serde(default)]
    pub label: Option<String>,
}

/// A linked record and every type the link has in this direction. HubSpot documents
/// `toObjectId` as an integer in v4 and as a string in the dated versions: both are read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssociationTo {
    #[serde(deserialize_with = "id_of_number_or_string")]
    pub to_object_id: u64,
    #[serde(default)]
    pub association_types: Vec<AssociationType>,
}

fn id_of_number_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Number(n) => Ok(n),
        Raw::Text(t) => t
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("toObjectId `{t}` is not a record id"))),
    }
}

/// The `from` of one result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssociationFrom {
    pub id: String,
}

/// The links of one id (a page of them: `paging` is present only when more follow).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssociationResult {
    pub from: AssociationFrom,
    #[serde(default)]
    pub to: Vec<AssociationTo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paging: Option<Paging>,
}

/// Its answer: `200`, or `207` with `errors` for ids that have no links (or do not exist);
/// such ids have no result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssociationsResponse {
    pub status: String,
    #[serde(default)]
    pub results: Vec<AssociationResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_errors: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<serde_json::Value>,
}

/// The owners endpoint's page size limit (`GET /crm/v3/owners?limit=`).
pub const OWNERS_PAGE_MAX: u32 = 500;

/// A team an owner belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerTeam {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub primary: bool,
}

/// One owner of `GET /crm/v3/owners` (HubSpot's `PublicOwner`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Owner {
    pub id: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub user_id: Option<i64>,
    #[serde(default)]
    pub user_id_including_inactive: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
    pub archived: bool,
    #[serde(default)]
    pub teams: Vec<OwnerTeam>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnersResponse {
    pub results: Vec<Owner>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paging: Option<Paging>,
}

/// One stage of a pipeline. `metadata` holds strings: deals' `probability` and `isClosed`,
/// tickets' `ticketState` and `isClosed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineStage {
    pub id: String,
    pub label: String,
    pub display_order: i64,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    pub created_at: String,
    pub updated_at: String,
    pub archived: bool,
}

/// One pipeline of `GET /crm/v3/pipelines/{objectType}`, stages in display order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pipeline {
    pub id: String,
    pub label: String,
    pub display_order: i64,
    #[serde(default)]
    pub stages: Vec<PipelineStage>,
    pub created_at: String,
    pub updated_at: String,
    pub archived: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelinesResponse {
    pub results: Vec<Pipeline>,
}

/// Properties naming the ids merged into a record: the survivor of a merge lists the ids that
/// disappeared (`;`-separated); contacts also in `hs_calculated_merged_vids` (`id:ms;...`).
pub const MERGED_IDS_PROPERTY: &str = "hs_merged_object_ids";
pub const MERGED_VIDS_PROPERTY: &str = "hs_calculated_merged_vids";

/// Whether HubSpot merges records of this type (contacts, companies, deals, tickets): their
/// survivors list the merged-away ids in [`MERGED_IDS_PROPERTY`].
pub fn merges_records(object_type: &str) -> bool {
    matches!(
        object_type_name(object_type),
        Some("contacts" | "companies" | "deals" | "tickets")
    )
}

/// The ids a merged-ids property names: each `;`-separated item's leading number (a
/// `hs_calculated_merged_vids` item is `id:timestamp`); anything else is skipped.
pub fn merged_ids(value: &str) -> Vec<u64> {
    value
        .split(';')
        .filter_map(|item| item.split(':').next()?.trim().parse::<u64>().ok())
        .filter(|id| *id > 0)
        .collect()
}

/// Rate-limit headers HubSpot sends on ordinary (non-search) responses.
pub mod headers {
    pub const RATE_MAX: &str = "x-hubspot-ratelimit-max";
    pub const RATE_REMAINING: &str = "x-hubspot-ratelimit-remaining";
    pub const RATE_INTERVAL_MS: &str = "x-hubspot-ratelimit-interval-milliseconds";
    pub const RATE_DAILY: &str = "x-hubspot-ratelimit-daily";
    pub const RATE_DAILY_REMAINING: &str = "x-hubspot-ratelimit-daily-remaining";
}

/// Object type ids HubSpot accepts in place of names.
pub const OBJECT_TYPE_IDS: &[(&str, &str)] = &[
    ("0-1", "contacts"),
    ("0-2", "companies"),
    ("0-3", "deals"),
    ("0-5", "tickets"),
    ("0-7", "products"),
    ("0-8", "line_items"),
    ("0-14", "quotes"),
    ("0-27", "tasks"),
    ("0-46", "notes"),
    ("0-47", "meetings"),
    ("0-48", "calls"),
    ("0-49", "emails"),
];

/// Resolves a type id (`0-3`) or name (`deals`) to the name; `None` if unknown.
pub fn object_type_name(type_or_id: &str) -> Option<&'static str> {
    OBJECT_TYPE_IDS
        .iter()
        .find(|(id, name)| *id == type_or_id || *name == type_or_id)
        .map(|(_, name)| *name)
}

/// The modified property of an object type: `lastmodifieddate` for contacts,
/// `hs_lastmodifieddate` for everything else (a connector that used the wrong one synced nothing).
pub fn modified_property(object_type: &str) -> &'static str {
    if object_type == "contacts" {
        "lastmodifieddate"
    } else {
        "hs_lastmodifieddate"
    }
}

/// Whether `type_or_id` names a custom object type: its type id (`2-<digits>`) or its fully
/// qualified name (`p<portal id>_<name>`), as `GET /crm/v3/schemas` lists them.
pub fn is_custom_object_type(type_or_id: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(id) = type_or_id.strip_prefix("2-") {
        return digits(id);
    }
    match type_or_id.strip_prefix('p').and_then(|rest| rest.split_once('_')) {
        Some((portal, name)) => {
            digits(portal)
                && !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        }
        None => false,
    }
}

/// The created property: `createdate` for the core objects, `hs_createdate` for activities,
/// quotes and custom objects.
pub fn created_property(object_type: &str) -> &'static str {
    match object_type {
        "deals" | "contacts" | "companies" | "tickets" | "products" | "line_items" => "createdate",
        _ => "hs_createdate",
    }
}

/// Formats epoch milliseconds as HubSpot does: `2024-05-01T12:00:00.123Z`.
pub fn format_ms(ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => ms.to_string(),
    }
}

/// Parses a HubSpot timestamp: ISO-8601 (with or without fraction/offset), a bare date
/// (`YYYY-MM-DD`, midnight UTC) or epoch milliseconds as a string.
pub fn parse_ms(value: &str) -> Option<i64> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    if v.bytes().all(|b| b.is_ascii_digit()) || (v.starts_with('-') && v.len() > 1) {
        return v.parse::<i64>().ok();
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return Some(t.timestamp_millis());
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(t.and_utc().timestamp_millis());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp_millis());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_request_uses_hubspot_field_names() {
        let req = SearchRequest {
            filter_groups: vec![FilterGroup {
                filters: vec![Filter::new(
                    "hs_lastmodifieddate",
                    Operator::Gte,
                    1700000000000i64,
                )],
            }],
            sorts: vec![Sort {
                property_name: "hs_lastmodifieddate".into(),
                direction: Direction::Ascending,
            }],
            properties: vec!["dealname".into()],
            limit: Some(200),
            after: Some("200".into()),
        };
        let json = serde_json::to_value(&req).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"filterGroups":[{"filters":[{"propertyName":"hs_lastmodifieddate",
                "operator":"GTE","value":"1700000000000"}]}],"sorts":[{"propertyName":
                "hs_lastmodifieddate","direction":"ASCENDING"}],"properties":["dealname"],
                "limit":200,"after":"200"})
        );
    }

    #[test]
    fn error_bodies_without_status_keep_their_category_and_correlation_id() {
        // HubSpot's published Error example: no `status`.
        let b: ErrorBody = serde_json::from_str(
            r#"{"category":"VALIDATION_ERROR","correlationId":"aeb5f871-7f07-4993-9211-075dc63e7cbf",
            "links":{"knowledge-base":"https://www.hubspot.com/products/service/knowledge-base"},
            "message":"Invalid input JSON on line 1, column 15: Cannot build ObjectSchemaEgg"}"#,
        )
        .unwrap();
        assert_eq!(b.category.as_deref(), Some("VALIDATION_ERROR"));
        assert_eq!(b.correlation_id, "aeb5f871-7f07-4993-9211-075dc63e7cbf");
        assert!(b.status.is_empty());
        let only: ErrorBody = serde_json::from_str(r#"{"correlationId":"c1"}"#).unwrap();
        assert_eq!((only.correlation_id.as_str(), only.message.as_str()), ("c1", ""));
    }

    #[test]
    fn list_response_without_paging_is_last_page() {
        let r: ListResponse = serde_json::from_str(
            r#"{"results":[{"id":"1","properties":{"a":null,"b":"x"},
            "createdAt":"2021-03-04T05:06:07.890Z","updatedAt":"2021-03-04T05:06:07.890Z",
            "archived":false}]}"#,
        )
        .unwrap();
        assert_eq!(Paging::next_after(&r.paging), None);
        assert_eq!(r.results[0].properties["a"], None);
    }

    #[test]
    fn timestamps_round_trip_in_every_accepted_form() {
        let ms = 1_614_834_367_890;
        assert_eq!(format_ms(ms), "2021-03-04T05:06:07.890Z");
        assert_eq!(parse_ms("2021-03-04T05:06:07.890Z"), Some(ms));
        assert_eq!(parse_ms("1614834367890"), Some(ms));
        assert_eq!(parse_ms("2021-03-04T06:06:07.890+01:00"), Some(ms));
        assert_eq!(parse_ms("2021-03-04"), Some(1_614_816_000_000));
        assert_eq!(parse_ms("yesterday"), None);
        assert_eq!(parse_ms(""), None);
    }

    #[test]
    fn type_ids_resolve_to_names() {
        assert_eq!(object_type_name("0-3"), Some("deals"));
        assert_eq!(object_type_name("contacts"), Some("contacts"));
        assert_eq!(object_type_name("0-999"), None);
        assert_eq!(object_type_name("0-5"), Some("tickets"));
        for custom in ["2-3508482", "p1234_cars", "p99_fleet_cars"] {
            assert!(is_custom_object_type(custom), "{custom}");
        }
        for not in ["2-", "2-x1", "p_cars", "pabc_cars", "cars", "p12_Cars", "deals"] {
            assert!(!is_custom_object_type(not), "{not}");
        }
        assert_eq!(modified_property("contacts"), "lastmodifieddate");
        assert_eq!(created_property("calls"), "hs_createdate");
    }
}
