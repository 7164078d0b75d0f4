//! The seeded portal: compact records per object type, their generation from a seed, and
//! rendering into wire records. Property values are not stored; `values.rs` derives them.
//!
//! Invariants:
//! - P1: each type's `records` is sorted by id, strictly ascending (ids only grow), so list
//!   cursors are binary searches.
//! - P2: `created_ms <= modified_ms`, and `modified_ms` is exactly what the modified
//!   property and `updatedAt` say.
//! - P3: activity ids come from one engagement id space: no id is used by two activity types.

use std::collections::{BTreeMap, HashMap};

use wire::{format_ms, ObjectRecord};

use super::catalog::{ObjectType, PropSpec};
use super::rng::{below, hash, mix, tag, unit};
use super::values::{value, ValueCtx};

/// Seeded records are created from this instant on (2019-01-01T00:00:00Z): fixed anchors,
/// so one seed gives the same portal whatever the wall clock says.
pub const PORTAL_START_MS: i64 = 1_546_300_800_000;
/// ... and created and modified before this one (2025-06-01T00:00:00Z).
pub const PORTAL_END_MS: i64 = 1_748_736_000_000;
/// Bulk edits (one millisecond stamped on many records) happen from 2024-01-01 on.
const BULK_EDITS_FROM_MS: i64 = 1_704_067_200_000;
const BULK_EDIT_COUNT: u64 = 3;
/// Consecutive ids leave gaps of up to this many, as HubSpot's do.
pub const ID_STRIDE: u64 = 4;
const ENGAGEMENT_ID_BASE: u64 = 20_000_000_000;

/// One record, compactly: everything else is derived from these fields and the seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rec {
    pub id: u64,
    pub created_ms: i64,
    pub modified_ms: i64,
    pub archived_at_ms: Option<i64>,
    /// Bumped by every update, so derived values change.
    pub version: u32,
}

impl Rec {
    pub fn is_live(&self) -> bool {
        self.archived_at_ms.is_none()
    }
}

/// A change that search does not see yet (search lags writes, `--search-lag-ms`).
#[derive(Debug, Clone, Copy)]
pub struct Pending {
    pub visible_at_ms: i64,
    /// What search shows until then: the record before the change, or nothing if new.
    pub previous: Option<Rec>,
}

#[derive(Debug, Default)]
pub struct TypeStore {
    /// Sorted by id (P1).
    pub records: Vec<Rec>,
    /// Changes not yet visible to search, by id.
    pub pending: HashMap<u64, Pending>,
    /// `(created_ms, index in records)` sorted: the search index on the created date (it never
    /// changes), so a created-window query reads its window instead of the whole type.
    pub by_created: Vec<(i64, u32)>,
}

impl TypeStore {
    /// Rebuilds [`TypeStore::by_created`] from the records.
    pub fn index_created(&mut self) {
        self.by_created = self
            .records
            .iter()
            .enumerate()
            .map(|(i, r)| (r.created_ms, i as u32))
            .collect();
        self.by_created.sort_unstable();
    }

    /// Adds a record in id order (P1) and indexes it: appended when its id is above every
    /// other (the cheap, usual case), else inserted, and the created index rebuilt.
    pub fn insert(&mut self, rec: Rec) {
        if self.records.last().is_some_and(|last| last.id >= rec.id) {
            let at = self.records.partition_point(|r| r.id < rec.id);
            self.records.insert(at, rec);
            self.index_created();
            return;
        }
        let index = self.records.len() as u32;
        self.records.push(rec);
        let sorted = self.by_created.last().is_none_or(|(c, _)| *c <= rec.created_ms);
        self.by_created.push((rec.created_ms, index));
        if !sorted {
            self.by_created.sort_unstable();
        }
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct PortalSpec {
    pub seed: u64,
    pub records_per_type: u64,
    pub object_types: Vec<ObjectType>,
}

#[derive(Debug)]
pub struct Portal {
    pub seed: u64,
    pub records_per_type: u64,
    pub stores: [TypeStore; 8],
    /// Next id per core type (indexed like `ObjectType::ALL`); activities use `next_engagement_id`.
    pub next_id: [u64; 8],
    pub next_engagement_id: u64,
    /// The latest instant a mutation stamped: mutations never go back in time.
    pub last_stamp_ms: i64,
}

/// The id of the `k`-th seeded record of a core type (deals, contacts, companies).
pub fn core_id(seed: u64, object_type: ObjectType, k: u64) -> u64 {
    let base = match object_type {
        ObjectType::Contacts => 1_001,
        ObjectType::Companies => 4_000_000_001,
        _ => 9_000_000_001,
    };
    base + k * ID_STRIDE + below(hash(&[seed, tag(object_type.name()), k]), ID_STRIDE)
}

fn engagement_id(seed: u64, k: u64) -> u64 {
    ENGAGEMENT_ID_BASE + k * ID_STRIDE + below(hash(&[seed, tag("engagement"), k]), ID_STRIDE)
}

impl Portal {
    pub fn generate(spec: &PortalSpec) -> Portal {
        let n = spec.records_per_type;
        let mut portal = Portal {
            seed: spec.seed,
            records_per_type: n,
            stores: Default::default(),
            next_id: [0; 8],
            next_engagement_id: engagement_id(spec.seed, 0),
            last_stamp_ms: PORTAL_END_MS,
        };
        for t in ObjectType::ALL.into_iter().filter(|t| !t.is_activity()) {
            portal.next_id[t.index()] = core_id(spec.seed, t, 0);
            if spec.object_types.contains(&t) {
                let records = (0..n).map(|k| portal.seed_record(core_id(spec.seed, t, k), k, n));
                portal.stores[t.index()].records = records.collect();
                portal.next_id[t.index()] = core_id(spec.seed, t, n);
            }
        }
        let activities: Vec<ObjectType> = spec
            .object_types
            .iter()
            .copied()
            .filter(|t| t.is_activity())
            .collect();
        portal.generate_engagements(&activities, n);
        for store in &mut portal.stores {
            store.index_created();
        }
        portal
    }

    /// Interleaves the activity types over one id space: each slot goes to a type drawn in
    /// proportion to how many records it still needs, so every type ends with exactly `n`.
    fn generate_engagements(&mut self, activities: &[ObjectType], n: u64) {
        let total = n * activities.len() as u64;
        let mut remaining: Vec<u64> = vec![n; activities.len()];
        for k in 0..total {
            let id = engagement_id(self.seed, k);
            let mut draw = below(hash(&[self.seed, tag("slot"), k]), total - k);
            let slot = remaining.iter().position(|r| {
                if draw < *r {
                    true
                } else {
                    draw -= r;
                    false
                }
            });
            if let Some(i) = slot {
                remaining[i] -= 1;
                let rec = self.seed_record(id, k, total);
                self.stores[activities[i].index()].records.push(rec);
            }
        }
        self.next_engagement_id = engagement_id(self.seed, total);
    }

    /// A seeded record: created dates follow ids across the years (with some imports
    /// backdated), modified dates fall anywhere after, a few on shared bulk-edit instants.
    fn seed_record(&self, id: u64, k: u64, n: u64) -> Rec {
        let span = (PORTAL_END_MS - PORTAL_START_MS) as u64;
        let slot = (span / n.max(1)).max(1);
        let h = hash(&[self.seed, id, tag("seed-record")]);
        let mut created = PORTAL_START_MS + (span as u128 * k as u128 / n.max(1) as u128) as i64;
        created += below(h, slot) as i64;
        if below(h >> 8, 100) < 3 {
            created = PORTAL_START_MS + below(mix(h), (created - PORTAL_START_MS) as u64) as i64;
        }
        created = created.min(PORTAL_END_MS - 2);
        let roll = below(h >> 16, 100);
        let modified = if roll < 20 {
            created
        } else {
            let bulk = bulk_edit_ms(self.seed, below(h >> 24, BULK_EDIT_COUNT));
            if roll < 23 && bulk > created {
                bulk
            } else {
                let room = (PORTAL_END_MS - 1 - created) as f64;
                let frac = unit(mix(h ^ 0x5eed));
                created + 1 + (room * frac * frac) as i64
            }
        };
        let version = if modified == created {
            0
        } else {
            1 + below(h >> 32, 6) as u32
        };
        Rec {
            id,
            created_ms: created,
            modified_ms: modified,
            archived_at_ms: None,
            version,
        }
    }

    pub fn store(&self, t: ObjectType) -> &TypeStore {
        &self.stores[t.index()]
    }

    pub fn value_ctx(&self, t: ObjectType) -> ValueCtx {
        ValueCtx {
            seed: self.seed,
            object_type: t,
            company_count: self.records_per_type,
        }
    }

    /// One list page: up to `limit` records with id >= `after`, live ones or (with
    /// `archived`) archived ones only, and the cursor of the next page if there is one.
    pub fn list_page(
        &self,
        t: ObjectType,
        after: u64,
        limit: usize,
        archived: bool,
    ) -> (Vec<Rec>, Option<u64>) {
        let records = &self.store(t).records;
        let start = records.partition_point(|r| r.id < after);
        let mut matching = records[start..].iter().filter(|r| r.is_live() != archived);
        let page: Vec<Rec> = matching.by_ref().take(limit).copied().collect();
        let next = if page.len() == limit {
            matching.next().map(|r| r.id)
        } else {
            None
        };
        (page, next)
    }

    /// Every live record of a type, as the truth endpoint reports them.
    pub fn live_records(&self, t: ObjectType) -> Vec<Rec> {
        self.store(t)
            .records
            .iter()
            .filter(|r| r.is_live())
            .copied()
            .collect()
    }
}

/// A record as the API returns it; needs no lock on the portal, only its [`ValueCtx`].
pub fn render(ctx: &ValueCtx, rec: &Rec, props: &[&'static PropSpec]) -> ObjectRecord {
    let properties: BTreeMap<String, Option<String>> = props
        .iter()
        .map(|spec| (spec.name.to_string(), value(ctx, spec, rec)))
        .collect();
    ObjectRecord {
        id: rec.id.to_string(),
        properties,
        created_at: format_ms(rec.created_ms),
        updated_at: format_ms(rec.modified_ms),
        archived: !rec.is_live(),
        archived_at: rec.archived_at_ms.map(format_ms),
    }
}

/// The instants of the seeded bulk edits (imports, pipeline changes) in the last months.
fn bulk_edit_ms(seed: u64, i: u64) -> i64 {
    let span = (PORTAL_END_MS - 1 - BULK_EDITS_FROM_MS) as u64;
    BULK_EDITS_FROM_MS + below(hash(&[seed, tag("bulk-edit"), i]), span) as i64
}

/// Resolves asked-for property names: `None` means the type's defaults; unknown names are
/// dropped, as HubSpot does.
pub fn select_properties(t: ObjectType, asked: Option<&[String]>) -> Vec<&'static PropSpec> {
    match asked {
        Some(names) if !names.is_empty() => {
            let mut specs: Vec<&'static PropSpec> =
                names.iter().filter_map(|n| t.property(n.trim())).collect();
            specs.sort_by_key(|s| s.name);
            specs.dedup_by_key(|s| s.name);
            specs
        }
        _ => t
            .default_properties()
            .iter()
            .filter_map(|n| t.property(n))
            .collect(),
    }
}

/// A small portal for unit tests.
#[cfg(test)]
pub fn portal_for_test(seed: u64, n: u64, types: &[ObjectType]) -> Portal {
    Portal::generate(&PortalSpec {
        seed,
        records_per_type: n,
        object_types: types.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_keeps_p1_p2_p3_and_is_reproducible() {
        let p = portal_for_test(5, 300, &ObjectType::ALL);
        let mut engagement_ids = std::collections::HashSet::new();
        for t in ObjectType::ALL {
            let recs = &p.store(t).records;
            assert_eq!(recs.len(), 300, "{}", t.name());
            assert!(recs.windows(2).all(|w| w[0].id < w[1].id), "P1 {}", t.name());
            assert!(recs.iter().all(|r| r.created_ms <= r.modified_ms), "P2");
            assert!(recs.iter().all(|r| r.modified_ms < PORTAL_END_MS));
            if t.is_activity() {
                assert!(recs.iter().all(|r| engagement_ids.insert(r.id)), "P3");
            }
        }
        let q = portal_for_test(5, 300, &ObjectType::ALL);
        assert_eq!(
            p.store(ObjectType::Calls).records,
            q.store(ObjectType::Calls).records
        );
        let r = portal_for_test(6, 300, &ObjectType::ALL);
        assert_ne!(
            p.store(ObjectType::Deals).records,
            r.store(ObjectType::Deals).records
        );
    }

    #[test]
    fn list_page_walks_every_live_record_once() {
        let p = portal_for_test(1, 250, &[ObjectType::Deals]);
        let (mut after, mut seen) = (0, Vec::new());
        loop {
            let (page, next) = p.list_page(ObjectType::Deals, after, 100, false);
            seen.extend(page.iter().map(|r| r.id));
            match next {
                Some(n) => after = n,
                None => break,
            }
        }
        let all: Vec<u64> = p.store(ObjectType::Deals).records.iter().map(|r| r.id).collect();
        assert_eq!(seen, all);
        assert!(p.store(ObjectType::Contacts).records.is_empty());
    }

    #[test]
    fn render_keeps_updated_at_equal_to_modified_property() {
        let p = portal_for_test(1, 10, &[ObjectType::Contacts]);
        let t = ObjectType::Contacts;
        let rec = p.store(t).records[3];
        let out = render(&p.value_ctx(t), &rec, &select_properties(t, None));
        assert_eq!(
            out.properties["lastmodifieddate"].as_deref(),
            Some(out.updated_at.as_str())
        );
        assert_eq!(
            out.properties["createdate"].as_deref(),
            Some(out.created_at.as_str())
        );
        assert_eq!(out.properties["hs_object_id"], Some(out.id.clone()));
        let asked = vec!["email".to_string(), "nope".to_string()];
        let only = render(&p.value_ctx(t), &rec, &select_properties(t, Some(&asked)));
        assert_eq!(only.properties.keys().collect::<Vec<_>>(), vec!["email"]);
    }
}
