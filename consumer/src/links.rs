//! A link table's page: the `from` records a slice read, turned into one row per link and type.
//!
//! The page's records come from the link table's slice as from any table's (list walk, search
//! slice, archived list) with only their created, modified and merged-ids properties; their
//! links are read with HubSpot's v4 batch read (one request per 1,000 ids, more for a record
//! with over 500 links). Each link type becomes a row keyed by the `from` record, at its
//! version: the merge keeps the rows of a record's latest version, its whole set (see
//! `TableSpec::links`). A record with no link (or archived: HubSpot answers no links for it)
//! stages one archived row instead, so that its older links are replaced by none.

use std::collections::BTreeMap;

use common::catalog::{link_columns, LinkSpec, SourceSpec};
use hubspot::HubSpotClient;
use wire::ObjectRecord;

use crate::fetch::Page;
use crate::ConsumerError;

/// Properties a link table asks of its `from` records: the created and modified properties
/// (they place and order the rows) and the merged ids (a merge removes the losers' links).
pub fn request_properties(source: &SourceSpec) -> Vec<String> {
    source.request_properties(merged_properties(&source.object_type))
}

/// The properties that name the ids merged into a record, for types HubSpot merges.
pub fn merged_properties(object_type: &str) -> Vec<&'static str> {
    let mergeable = wire::merges_records(object_type);
    let contacts = wire::object_type_name(object_type) == Some("contacts");
    [
        mergeable.then_some(wire::MERGED_IDS_PROPERTY),
        contacts.then_some(wire::MERGED_VIDS_PROPERTY),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// One page of a link table's merged-records slice (`Slice::Merged`): the survivors among
/// `merged_type`'s records modified in the window (they list merged ids), paged by id; the
/// `from` records now linked to them (HubSpot moved the losers' links to the survivor) are read
/// by id and their whole sets of links staged again, at a later `_synced_at` than the rows that
/// still point at a loser, which the merge therefore replaces.
pub async fn relinked_page(
    hubspot: &HubSpotClient,
    source: &SourceSpec,
    links: &LinkSpec,
    (merged_type, from_ms, to_ms): (&str, i64, i64),
    cursor: Option<&str>,
    settings: &common::pipeline::Settings,
) -> Result<Page, ConsumerError> {
    use wire::{Direction, Filter, FilterGroup, Operator, SearchRequest, Sort};
    let after =
        match cursor {
            None => None,
            Some(c) => Some(c.parse::<u64>().map_err(|_| {
                ConsumerError::BadJob(format!("merged-records cursor `{c}` is not a record id"))
            })?),
        };
    let mut filters = vec![
        Filter::between(wire::modified_property(merged_type), from_ms, to_ms),
        Filter {
            property_name: wire::MERGED_IDS_PROPERTY.into(),
            operator: Operator::HasProperty,
            value: None,
            high_value: None,
            values: None,
        },
    ];
    if let Some(a) = after {
        filters.push(Filter::new(wire::ID_PROPERTY, Operator::Gt, a));
    }
    let limit = settings.search_page_size.clamp(1, wire::SEARCH_PAGE_MAX);
    let req = SearchRequest {
        filter_groups: vec![FilterGroup { filters }],
        sorts: vec![Sort {
            property_name: wire::ID_PROPERTY.into(),
            direction: Direction::Ascending,
        }],
        properties: vec![wire::ID_PROPERTY.into()],
        limit: Some(limit),
        after: None,
    };
    let resp = hubspot.search_page(merged_type, &req).await?;
    let survivors: Vec<String> = resp.results.iter().map(|r| r.id.trim().to_string()).collect();
    let next_cursor = (resp.results.len() as u32 >= limit)
        .then(|| survivors.iter().filter_map(|id| id.parse::<u64>().ok()).max())
        .flatten()
        .map(|id| id.to_string());
    if survivors.is_empty() {
        return Ok(Page {
            records: Vec::new(),
            next_cursor,
        });
    }
    let linked: std::collections::BTreeSet<String> = hubspot
        .associations(merged_type, &source.object_type, &survivors)
        .await?
        .into_values()
        .flatten()
        .map(|to| to.to_object_id.to_string())
        .collect();
    let linked: Vec<String> = linked.into_iter().collect();
    let properties = request_properties(source);
    let mut records = Vec::with_capacity(linked.len());
    for chunk in linked.chunks(wire::BATCH_READ_MAX) {
        let resp = hubspot
            .batch_read(&source.object_type, chunk, &properties, false)
            .await?;
        records.extend(resp.results);
    }
    tracing::info!(merged_type, survivors = survivors.len(), relinked = records.len(),
        object_type = %source.object_type, "records linked to merge survivors: their links are read again");
    link_rows(hubspot, source, links, Page { records, next_cursor }).await
}

/// Replaces the page's records by their link rows (see the module doc).
pub async fn link_rows(
    hubspot: &HubSpotClient,
    source: &SourceSpec,
    links: &LinkSpec,
    page: Page,
) -> Result<Page, ConsumerError> {
    let ids: Vec<String> = page
        .records
        .iter()
        .filter(|r| !r.archived)
        .map(|r| r.id.trim().to_string())
        .collect();
    let found = if ids.is_empty() {
        BTreeMap::new()
    } else {
        hubspot
            .associations(&source.object_type, &links.to_object_type, &ids)
            .await?
    };
    let mut records = Vec::with_capacity(page.records.len());
    for record in page.records {
        let set = found.get(record.id.trim()).map(Vec::as_slice).unwrap_or_default();
        records.extend(rows_of(links, record, set));
    }
    Ok(Page {
        records,
        next_cursor: page.next_cursor,
    })
}

/// The rows of one record: one per link and type, or one archived row when it has none.
fn rows_of(links: &LinkSpec, record: ObjectRecord, set: &[wire::AssociationTo]) -> Vec<ObjectRecord> {
    if set.is_empty() {
        return vec![ObjectRecord {
            archived: true,
            ..record
        }];
    }
    let mut rows = Vec::new();
    for link in set {
        for ty in &link.association_types {
            let mut row = record.clone();
            let props = &mut row.properties;
            props.insert(links.to_column.clone(), Some(link.to_object_id.to_string()));
            props.insert(link_columns::TYPE_ID.into(), Some(ty.type_id.to_string()));
            props.insert(link_columns::CATEGORY.into(), Some(ty.category.clone()));
            props.insert(link_columns::LABEL.into(), ty.label.clone());
            rows.push(row);
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::{AssociationTo, AssociationType};

    fn record(id: &str) -> ObjectRecord {
        ObjectRecord {
            id: id.into(),
            properties: BTreeMap::from([(
                "createdate".to_string(),
                Some("2024-01-01T00:00:00Z".to_string()),
            )]),
            created_at: "2024-01-01T00:00:00Z".into(),
            updated_at: "2024-01-02T00:00:00Z".into(),
            archived: false,
            archived_at: None,
        }
    }

    #[test]
    fn each_link_type_is_a_row_and_no_links_is_one_archived_row() {
        let spec = LinkSpec {
            from_table: "contacts".into(),
            to_object_type: "companies".into(),
            to_column: "company_id".into(),
        };
        let ty = |id, label: Option<&str>| AssociationType {
            category: "HUBSPOT_DEFINED".into(),
            type_id: id,
            label: label.map(str::to_string),
        };
        let set = vec![
            AssociationTo {
                to_object_id: 40,
                association_types: vec![ty(279, None), ty(1, Some("Primary"))],
            },
            AssociationTo {
                to_object_id: 41,
                association_types: vec![ty(279, None)],
            },
        ];
        let rows = rows_of(&spec, record("7"), &set);
        assert_eq!(rows.len(), 3);
        assert!(rows.iter().all(|r| r.id == "7" && !r.archived));
        assert_eq!(
            rows[1].properties["association_label"].as_deref(),
            Some("Primary")
        );
        assert_eq!(rows[2].properties["company_id"].as_deref(), Some("41"));
        let none = rows_of(&spec, record("8"), &[]);
        assert_eq!(none.len(), 1);
        assert!(none[0].archived && !none[0].properties.contains_key("company_id"));
    }

    #[test]
    fn merged_ids_are_asked_of_the_types_hubspot_merges() {
        assert_eq!(
            merged_properties("contacts"),
            ["hs_merged_object_ids", "hs_calculated_merged_vids"]
        );
        assert_eq!(merged_properties("0-3"), ["hs_merged_object_ids"]);
        assert!(merged_properties("calls").is_empty());
    }
}
