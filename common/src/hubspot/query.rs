//! Search queries of a slice, shared by the producer (counting) and the consumer (paging).

use crate::catalog::SourceSpec;
use crate::clock::EpochMs;

use super::wire::{Filter, FilterGroup, Operator};

/// The property HubSpot exposes the record id as; filterable and sortable.
pub const ID_PROPERTY: &str = "hs_object_id";

/// Which timestamp a search slice's window is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeField {
    /// The modified property: incremental windows.
    Modified,
    /// The created property: a full sync's slices, which then own whole `dt` partitions.
    Created,
}

impl TimeField {
    pub fn property(self, source: &SourceSpec) -> &str {
        match self {
            TimeField::Modified => source.modified_property(),
            TimeField::Created => source.created_property(),
        }
    }
}

/// The search filters of a slice: `field` in `[from, to]`, id in `[id_min, id_max]`, and
/// (for pages after the first) id after the cursor.
pub fn slice_filters(
    source: &SourceSpec,
    field: TimeField,
    from: EpochMs,
    to: EpochMs,
    id_min: u64,
    id_max: u64,
    after_id: Option<u64>,
) -> Vec<FilterGroup> {
    let mut filters = vec![Filter::between(field.property(source), from, to)];
    let low = after_id.map(|a| a.saturating_add(1)).unwrap_or(0).max(id_min);
    if low > 0 {
        filters.push(Filter::new(ID_PROPERTY, Operator::Gte, low));
    }
    if id_max < u64::MAX {
        filters.push(Filter::new(ID_PROPERTY, Operator::Lte, id_max));
    }
    vec![FilterGroup { filters }]
}
