//! The seeded portal: compact records per object type, their generation from a seed, and
//! rendering into wire records. Property values are not stored; `values.rs` derives them.
//!
//! Invariants:
//! - P1: each type's `records` is sorted by id, strictly ascending (ids only grow), so list
//!   cursors are binary searches.
//! - P2: `created_ms <= modified_ms`, and `modified_ms` is exactly what the modified
//!   property and `updatedAt` say.
//! - P3: activity ids come from one engagement id space: no id is used by two activity types.
//! - P4: a custom object type is served only by a portal that enables it, and over HTTP only
//!   under its type id or its fully qualified name with this portal's id.

use std::collections::{BTreeMap, HashMap};

use wire::{format_ms, ObjectRecord, Owner, Pipeline};

use super::catalog::{custom_fqn_name, ObjectType, PropSpec};
use super::config::TypeCount;
use super::relations::{seed_owners, seed_pipelines, Links};
use super::rng::{below, hash, mix, tag, unit};
use super::schema::TypeSchema;
use super::values::{owner_id, value, MergedIds, ValueCtx, OWNER_COUNT};

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
#[derive(Debug, Clone, Default)]
pub struct PortalSpec {
    pub seed: u64,
    pub records_per_type: u64,
    /// Types seeded with `records_per_type` records (a custom type listed here is enabled).
    pub object_types: Vec<ObjectType>,
    /// HubSpot's account id, in custom objects' fully qualified names (`p<id>_cars`).
    pub portal_id: u64,
    /// Seeded custom properties per type, beside the built-in ones.
    pub custom_properties: Vec<TypeCount>,
    /// Custom object types enabled, with their record counts.
    pub custom_objects: Vec<TypeCount>,
    /// Chance in 1000 that a typed custom value does not parse as its type.
    pub uncastable_per_mille: u16,
}

#[derive(Debug)]
pub struct Portal {
    pub seed: u64,
    pub records_per_type: u64,
    pub portal_id: u64,
    pub uncastable_per_mille: u16,
    /// Per type, indexed by [`ObjectType::index`].
    pub stores: Vec<TypeStore>,
    /// Per type: the properties the portal has now (`schema.rs`).
    pub schemas: Vec<TypeSchema>,
    /// Per type: served at all (standard types always; custom ones when enabled, P4).
    pub enabled: Vec<bool>,
    /// Next id per non-activity type; activities use `next_engagement_id`.
    pub next_id: Vec<u64>,
    pub next_engagement_id: u64,
    /// The latest instant a mutation stamped: mutations never go back in time.
    pub last_stamp_ms: i64,
    /// Every link between records (`relations.rs`).
    pub links: Links,
    /// Per type, the ids merged into each survivor (A4), leaked anew at each merge so values
    /// render without the portal's lock.
    pub merged: Vec<Option<&'static MergedIds>>,
    /// `GET /crm/v3/owners`.
    pub owners: Vec<Owner>,
    /// `GET /crm/v3/pipelines/{deals,tickets}`.
    pub deal_pipelines: Vec<Pipeline>,
    pub ticket_pipelines: Vec<Pipeline>,
}

/// The id of the `k`-th seeded record of a non-activity type (each its own id space).
pub fn core_id(seed: u64, object_type: ObjectType, k: u64) -> u64 {
    let base = match object_type {
        ObjectType::Contacts => 1_001,
        ObjectType::Companies => 4_000_000_001,
        ObjectType::Tickets => 1_500_000_001,
        ObjectType::Products => 1_200_000_001,
        ObjectType::LineItems => 7_000_000_001,
        ObjectType::Quotes => 2_500_000_001,
        ObjectType::Cars => 30_000_000_001,
        ObjectType::Shipments => 31_000_000_001,
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
            portal_id: spec.portal_id,
            uncastable_per_mille: spec.uncastable_per_mille,
            stores: (0..ObjectType::COUNT).map(|_| TypeStore::default()).collect(),
            schemas: ObjectType::every().map(TypeSchema::builtin).collect(),
            enabled: ObjectType::every().map(|t| !t.is_custom()).collect(),
            next_id: vec![0; ObjectType::COUNT],
            next_engagement_id: engagement_id(spec.seed, 0),
            last_stamp_ms: PORTAL_END_MS,
            links: Links::default(),
            merged: vec![None; ObjectType::COUNT],
            owners: seed_owners(spec.seed, OWNER_COUNT, |i| owner_id(spec.seed, i)),
            deal_pipelines: seed_pipelines(ObjectType::Deals),
            ticket_pipelines: seed_pipelines(ObjectType::Tickets),
        };
        for c in &spec.custom_properties {
            portal.schemas[c.object_type.index()].add_seeded(c.object_type, spec.seed, c.count);
        }
        let seeded = |t: ObjectType| -> Option<u64> {
            let custom = spec.custom_objects.iter().find(|c| c.object_type == t);
            custom
                .map(|c| c.count)
                .or_else(|| spec.object_types.contains(&t).then_some(n))
        };
        for t in ObjectType::every().filter(|t| !t.is_activity()) {
            portal.next_id[t.index()] = core_id(spec.seed, t, 0);
            if let Some(count) = seeded(t) {
                portal.enabled[t.index()] = true;
                let records = (0..count).map(|k| portal.seed_record(core_id(spec.seed, t, k), k, count));
                portal.stores[t.index()].records = records.collect();
                portal.next_id[t.index()] = core_id(spec.seed, t, count);
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
        portal.links = Links::seed(spec.seed, |t| {
            portal.store(t).records.iter().map(|r| r.id).collect()
        });
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
            uncastable_per_mille: self.uncastable_per_mille,
            merged: self.merged[t.index()],
        }
    }

    /// Whether `t` has a live record `id`.
    pub fn is_live(&self, t: ObjectType, id: u64) -> bool {
        let records = &self.store(t).records;
        records
            .binary_search_by_key(&id, |r| r.id)
            .is_ok_and(|i| records[i].is_live())
    }

    /// The pipelines of `t` (deals and tickets have them).
    pub fn pipelines(&self, t: ObjectType) -> Option<&Vec<Pipeline>> {
        match t {
            ObjectType::Deals => Some(&self.deal_pipelines),
            ObjectType::Tickets => Some(&self.ticket_pipelines),
            _ => None,
        }
    }

    /// Every link between live records of `from` and `to`, as a v4 batch read from `from`
    /// answers them (A2): (from id, its links), ids ascending.
    pub fn links_truth(&self, from: ObjectType, to: ObjectType) -> Vec<(u64, Vec<wire::AssociationTo>)> {
        self.store(from)
            .records
            .iter()
            .filter(|r| r.is_live())
            .filter_map(|r| {
                let links = self.links.render(from, r.id, to, |id| self.is_live(to, id));
                (!links.is_empty()).then_some((r.id, links))
            })
            .collect()
    }

    /// The properties `t` has in this portal now.
    pub fn schema(&self, t: ObjectType) -> &TypeSchema {
        &self.schemas[t.index()]
    }

    /// Resolves a CRM path's type as HubSpot does (P4): a standard name or type id; a custom
    /// object by its type id or `p<this portal's id>_<name>` (not its bare name), if enabled.
    pub fn resolve(&self, raw: &str) -> Option<ObjectType> {
        if let Some(name) = wire::object_type_name(raw) {
            return ObjectType::ALL.into_iter().find(|t| t.name() == name);
        }
        let t = ObjectType::CUSTOM.into_iter().find(|t| {
            t.custom_type_id() == Some(raw)
                || (custom_fqn_name(raw) == Some(t.name())
                    && raw == super::custom_objects::fully_qualified_name(*t, self.portal_id))
        })?;
        self.enabled[t.index()].then_some(t)
    }

    /// Resolves a `/_sim/*` type: anything [`ObjectType::parse`] takes (a custom object's bare
    /// name too), if the portal serves it.
    pub fn resolve_admin(&self, raw: &str) -> Option<ObjectType> {
        ObjectType::parse(raw).filter(|t| self.enabled[t.index()])
    }

    /// The custom object types this portal serves.
    pub fn custom_types(&self) -> Vec<ObjectType> {
        ObjectType::CUSTOM
            .into_iter()
            .filter(|t| self.enabled[t.index()])
            .collect()
    }

    /// Resolves asked-for property names against this portal's table (see [`select_properties`]).
    pub fn select(&self, t: ObjectType, asked: Option<&[String]>) -> Vec<&'static PropSpec> {
        select_properties(self.schema(t), t, asked)
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
/// dropped, as HubSpot does; an archived property asked for renders null.
pub fn select_properties(
    schema: &TypeSchema,
    t: ObjectType,
    asked: Option<&[String]>,
) -> Vec<&'static PropSpec> {
    match asked {
        Some(names) if !names.is_empty() => {
            let mut specs: Vec<&'static PropSpec> =
                names.iter().filter_map(|n| schema.get(n.trim())).collect();
            specs.sort_by_key(|s| s.name);
            specs.dedup_by_key(|s| s.name);
            specs
        }
        _ => t
            .default_properties()
            .iter()
            .filter_map(|n| schema.get(n))
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
        portal_id: crate::config::DEFAULT_PORTAL_ID,
        ..Default::default()
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
        let out = render(&p.value_ctx(t), &rec, &p.select(t, None));
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
        let only = render(&p.value_ctx(t), &rec, &p.select(t, Some(&asked)));
        assert_eq!(only.properties.keys().collect::<Vec<_>>(), vec!["email"]);
    }
}
