//! Fetching one page of a slice.

use common::catalog::SourceSpec;
use common::messages::Slice;
use common::pipeline::Settings;
use hubspot::query::{slice_filters, TimeField, ID_PROPERTY};
use hubspot::HubSpotClient;
use wire::{Direction, ObjectRecord, Paging, SearchRequest, Sort};

use crate::ConsumerError;

/// A fetched page: its records and the cursor of the next page, if the slice goes on.
#[derive(Debug)]
pub struct Page {
    pub records: Vec<ObjectRecord>,
    pub next_cursor: Option<String>,
}

/// Fetches one page of `slice` with `properties` (the created and modified ones first).
pub async fn fetch_page(
    client: &HubSpotClient,
    source: &SourceSpec,
    slice: &Slice,
    cursor: Option<&str>,
    properties: Vec<String>,
    settings: &Settings,
) -> Result<Page, ConsumerError> {
    match slice {
        Slice::List { object_type } | Slice::Walk { object_type } | Slice::Backfill { object_type } => {
            let resp = client
                .list_page(object_type, &properties, cursor, false, settings.list_page_size)
                .await?;
            Ok(Page {
                next_cursor: Paging::next_after(&resp.paging).map(str::to_string),
                records: resp.results,
            })
        }
        Slice::ListArchived {
            object_type,
            since_ms,
        } => {
            let resp = client
                .list_page(object_type, &properties, cursor, true, settings.list_page_size)
                .await?;
            let next_cursor = Paging::next_after(&resp.paging).map(str::to_string);
            // Only archives since the window opened; older ones were applied by earlier runs.
            let records = resp
                .results
                .into_iter()
                .filter(|r| {
                    r.archived_at
                        .as_deref()
                        .and_then(wire::parse_ms)
                        .is_none_or(|at| at >= *since_ms)
                })
                .collect();
            Ok(Page { records, next_cursor })
        }
        Slice::Lane { object_type, .. } => Err(ConsumerError::BadJob(format!(
            "a {object_type} lane's page reads the range its meeting hands it (crate::meet)"
        ))),
        Slice::Snapshot { object_type } => Err(ConsumerError::BadJob(format!(
            "a {object_type} snapshot job names no records to page through (only a snapshot table's run sends one)"
        ))),
        Slice::Merged { object_type, .. } => Err(ConsumerError::BadJob(format!(
            "a merged-records job of {object_type} belongs to a link table's run"
        ))),
        Slice::Search {
            object_type,
            from_ms,
            to_ms,
            id_min,
            id_max,
        } => {
            let window = (TimeField::Modified, *from_ms, *to_ms, *id_min, *id_max);
            search_page(client, source, object_type, window, cursor, properties, settings).await
        }
        Slice::Created {
            object_type,
            from_ms,
            to_ms,
            id_min,
            id_max,
        } => {
            let window = (TimeField::Created, *from_ms, *to_ms, *id_min, *id_max);
            search_page(client, source, object_type, window, cursor, properties, settings).await
        }
    }
}

/// One page of search over ids `lo..=hi` (after `after_id`), any created date: a lane's
/// claim. The next cursor is the greatest id read, when the page was full.
#[allow(clippy::too_many_arguments)]
pub async fn id_range_page(
    client: &HubSpotClient,
    source: &SourceSpec,
    object_type: &str,
    (lo, hi): (u64, u64),
    after_id: Option<u64>,
    properties: Vec<String>,
    settings: &Settings,
) -> Result<Page, ConsumerError> {
    use common::messages::{OPEN_END_MS, OPEN_START_MS};
    let window = (TimeField::Created, OPEN_START_MS, OPEN_END_MS, lo, hi);
    let cursor = after_id.map(|a| a.to_string());
    search_page(
        client,
        source,
        object_type,
        window,
        cursor.as_deref(),
        properties,
        settings,
    )
    .await
}

/// A search slice: its time field and window, and its id range.
type Window = (TimeField, i64, i64, u64, u64);

/// One page of a search slice, paged by an id keyset: each request is the first page of a
/// narrower query (id after the cursor), never an offset, so no query reaches the 10,000 cap
/// and no record shifts across a page boundary.
async fn search_page(
    client: &HubSpotClient,
    source: &SourceSpec,
    object_type: &str,
    (field, from_ms, to_ms, id_min, id_max): Window,
    cursor: Option<&str>,
    properties: Vec<String>,
    settings: &Settings,
) -> Result<Page, ConsumerError> {
    let after_id = match cursor {
        None => None,
        Some(c) => Some(
            c.parse::<u64>()
                .map_err(|_| ConsumerError::BadJob(format!("search cursor `{c}` is not a record id")))?,
        ),
    };
    let limit = settings.search_page_size.clamp(1, wire::SEARCH_PAGE_MAX);
    let req = SearchRequest {
        filter_groups: slice_filters(source, field, from_ms, to_ms, id_min, id_max, after_id),
        sorts: vec![Sort {
            property_name: ID_PROPERTY.into(),
            direction: Direction::Ascending,
        }],
        properties,
        limit: Some(limit),
        after: None,
    };
    let resp = client.search_page(object_type, &req).await?;
    let full_page = resp.results.len() as u32 >= limit;
    // The keyset goes on after the greatest id read. Ids that are not positive numbers (their
    // records are quarantined, Q1) cannot carry it, wherever the sort put them.
    let greatest = resp
        .results
        .iter()
        .filter_map(|r| r.id.trim().parse::<u64>().ok().filter(|id| *id > 0))
        .max();
    let next_cursor = match (full_page, greatest) {
        (true, Some(id)) => Some(id.to_string()),
        (true, None) => {
            return Err(ConsumerError::BadRecord(format!(
                "a full search page of {object_type} holds no record with a numeric id, so the \
                 slice cannot go on after it"
            )))
        }
        (false, _) => None,
    };
    Ok(Page {
        records: resp.results,
        next_cursor,
    })
}
