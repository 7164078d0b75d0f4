//! Search queries of a slice, shared by the producer (counting) and the consumer (paging).

use common::catalog::SourceSpec;
use common::clock::EpochMs;

use wire::{Filter, FilterGroup, Operator};

/// The property HubSpot exposes the record id as; filterable and sortable.
pub use wire::ID_PROPERTY;

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
/// (for pages after the first) id after the cursor. [`OPEN_START_MS`] and [`OPEN_END_MS`]
/// leave that side of the window unbounded (C1); a query with no bound at all has no filter
/// group (HubSpot answers every record).
///
/// [`OPEN_START_MS`]: crate::messages::OPEN_START_MS
/// [`OPEN_END_MS`]: crate::messages::OPEN_END_MS
pub fn slice_filters(
    source: &SourceSpec,
    field: TimeField,
    from: EpochMs,
    to: EpochMs,
    id_min: u64,
    id_max: u64,
    after_id: Option<u64>,
) -> Vec<FilterGroup> {
    use common::messages::{OPEN_END_MS, OPEN_START_MS};
    let property = field.property(source);
    let mut filters = match (from == OPEN_START_MS, to == OPEN_END_MS) {
        (false, false) => vec![Filter::between(property, from, to)],
        (true, false) => vec![Filter::new(property, Operator::Lte, to)],
        (false, true) => vec![Filter::new(property, Operator::Gte, from)],
        (true, true) => Vec::new(),
    };
    let low = after_id.map(|a| a.saturating_add(1)).unwrap_or(0).max(id_min);
    let mut ids = Vec::new();
    if low > 0 {
        ids.push(Filter::new(ID_PROPERTY, Operator::Gte, low));
    }
    if id_max < u64::MAX {
        ids.push(Filter::new(ID_PROPERTY, Operator::Lte, id_max));
    }
    // The slice that opens the timeline also reads records with no created date at all: no
    // window filter can match them (they stage into the stated partition, see the catalog).
    let undated = (field == TimeField::Created && from == OPEN_START_MS && to != OPEN_END_MS).then(|| {
        let mut f = vec![Filter {
            property_name: property.to_string(),
            operator: Operator::NotHasProperty,
            value: None,
            high_value: None,
            values: None,
        }];
        f.extend(ids.iter().cloned());
        FilterGroup { filters: f }
    });
    filters.extend(ids);
    if filters.is_empty() {
        return Vec::new();
    }
    let mut groups = vec![FilterGroup { filters }];
    groups.extend(undated);
    groups
}
