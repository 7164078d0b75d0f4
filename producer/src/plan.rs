//! Slices: a full run reads the list endpoint once per object type; an incremental run splits
//! its window by time until each search query holds at most 10,000 records, falls back to
//! `hs_object_id` ranges where one millisecond holds more (bulk edits stamp one instant on
//! many thousands of records), and adds one archived-records read per object type (search
//! never returns archived records).

use common::catalog::{SourceSpec, TableSpec};
use common::clock::EpochMs;
use common::hubspot::query::{slice_filters, ID_PROPERTY};
use common::hubspot::wire::{Direction, SearchRequest, Sort, SEARCH_RESULT_CAP};
use common::hubspot::{HubSpotClient, HubSpotError};
use common::messages::Slice;

use crate::decide::Decision;

/// Plans the slices of a run.
pub async fn plan(
    client: &HubSpotClient,
    table: &TableSpec,
    decision: &Decision,
    slice_cap: u64,
) -> Result<Vec<Slice>, HubSpotError> {
    let mut slices = Vec::new();
    for source in &table.sources {
        match decision.window_from_ms {
            None => slices.push(Slice::List {
                object_type: source.object_type.clone(),
            }),
            Some(from) => {
                slices.extend(split_window(client, source, from, decision.window_to_ms, slice_cap).await?);
                slices.push(Slice::ListArchived {
                    object_type: source.object_type.clone(),
                    since_ms: from,
                });
            }
        }
    }
    Ok(slices)
}

struct Range {
    from: EpochMs,
    to: EpochMs,
    id_min: u64,
    id_max: u64,
}

async fn count(client: &HubSpotClient, source: &SourceSpec, r: &Range) -> Result<u64, HubSpotError> {
    let req = SearchRequest {
        filter_groups: slice_filters(source, r.from, r.to, r.id_min, r.id_max, None),
        sorts: vec![],
        properties: vec![ID_PROPERTY.into()],
        limit: Some(1),
        after: None,
    };
    Ok(client.search_page(&source.object_type, &req).await?.total)
}

/// The smallest or largest record id in a range (`None` when empty).
async fn edge_id(
    client: &HubSpotClient,
    source: &SourceSpec,
    r: &Range,
    direction: Direction,
) -> Result<Option<u64>, HubSpotError> {
    let req = SearchRequest {
        filter_groups: slice_filters(source, r.from, r.to, r.id_min, r.id_max, None),
        sorts: vec![Sort {
            property_name: ID_PROPERTY.into(),
            direction,
        }],
        properties: vec![ID_PROPERTY.into()],
        limit: Some(1),
        after: None,
    };
    let resp = client.search_page(&source.object_type, &req).await?;
    Ok(resp.results.first().and_then(|r| r.id.parse().ok()))
}

/// Splits `[from, to]` until every part holds at most `cap` records (and at most the search
/// cap), by time first, then by id within a single millisecond.
pub async fn split_window(
    client: &HubSpotClient,
    source: &SourceSpec,
    from: EpochMs,
    to: EpochMs,
    cap: u64,
) -> Result<Vec<Slice>, HubSpotError> {
    let cap = cap.clamp(1, SEARCH_RESULT_CAP);
    let mut out = Vec::new();
    // Depth-first, newest half pushed first, so slices come out in time order.
    let mut stack = vec![Range {
        from,
        to,
        id_min: 0,
        id_max: u64::MAX,
    }];
    while let Some(mut r) = stack.pop() {
        let total = count(client, source, &r).await?;
        if total == 0 {
            continue;
        }
        if total <= cap {
            out.push(Slice::Search {
                object_type: source.object_type.clone(),
                from_ms: r.from,
                to_ms: r.to,
                id_min: r.id_min,
                id_max: r.id_max,
            });
            continue;
        }
        if r.to > r.from {
            let mid = r.from + (r.to - r.from) / 2;
            stack.push(Range {
                from: mid + 1,
                to: r.to,
                id_min: r.id_min,
                id_max: r.id_max,
            });
            stack.push(Range {
                from: r.from,
                to: mid,
                id_min: r.id_min,
                id_max: r.id_max,
            });
            continue;
        }
        // One millisecond holds more than the cap: split by id.
        if r.id_min == 0 && r.id_max == u64::MAX {
            let (Some(lo), Some(hi)) = (
                edge_id(client, source, &r, Direction::Ascending).await?,
                edge_id(client, source, &r, Direction::Descending).await?,
            ) else {
                continue;
            };
            r.id_min = lo;
            r.id_max = hi;
        }
        if r.id_min >= r.id_max {
            // Cannot split further; keyset paging still reads it whole.
            tracing::warn!(object_type = %source.object_type, ms = r.from, total,
                "one id range holds more than the slice cap; reading it as one slice");
            out.push(Slice::Search {
                object_type: source.object_type.clone(),
                from_ms: r.from,
                to_ms: r.to,
                id_min: r.id_min,
                id_max: r.id_max,
            });
            continue;
        }
        let mid = r.id_min + (r.id_max - r.id_min) / 2;
        stack.push(Range {
            from: r.from,
            to: r.to,
            id_min: mid + 1,
            id_max: r.id_max,
        });
        stack.push(Range {
            from: r.from,
            to: r.to,
            id_min: r.id_min,
            id_max: mid,
        });
    }
    Ok(out)
}
