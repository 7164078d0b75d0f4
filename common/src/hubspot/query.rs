//! Search queries of a slice, shared by the producer (counting) and the consumer (paging).

use crate::catalog::SourceSpec;
use crate::clock::EpochMs;

use super::wire::{Filter, FilterGroup, Operator};

/// The property HubSpot exposes the record id as; filterable and sortable.
pub const ID_PROPERTY: &str = "hs_object_id";

/// The search filters of a slice: modified in `[from, to]`, id in `[id_min, id_max]`, and
/// (for pages after the first) id after the cursor.
pub fn slice_filters(
    source: &SourceSpec,
    from: EpochMs,
    to: EpochMs,
    id_min: u64,
    id_max: u64,
    after_id: Option<u64>,
) -> Vec<FilterGroup> {
    let mut filters = vec![Filter::between(source.modified_property(), from, to)];
    let low = after_id.map(|a| a.saturating_add(1)).unwrap_or(0).max(id_min);
    if low > 0 {
        filters.push(Filter::new(ID_PROPERTY, Operator::Gte, low));
    }
    if id_max < u64::MAX {
        filters.push(Filter::new(ID_PROPERTY, Operator::Lte, id_max));
    }
    vec![FilterGroup { filters }]
}
