//! Time moving on request (`POST /_sim/mutate`): updates, creates and archives stamped as
//! HubSpot stamps them.
//!
//! - U1: an update bumps `version` (so values change) and sets the modified property to a
//!   millisecond after the record's previous one and not after `now`.
//! - U2: an archive sets `archivedAt` and leaves the modified property alone (HubSpot does).
//! - U3: a create takes a fresh id above every id of its space (activities share one), unless
//!   the request gives `ids_from`: then it takes free ids inside the range in use, from that
//!   id up, as HubSpot does (it hands out ids from several blocks at once: recorded answers
//!   show a contact created 0.6 s after another with a lower id).
//! - U4: with a search lag, search keeps seeing the record as it was (or not at all, if new)
//!   until `now + lag`.
//! - U5: a created-date move (imports and integrations set `createdate` on deals and
//!   companies) changes the created property and bumps the modified one (U1), so the record
//!   shows up in the next incremental window with its new created day.
//! - U6: `creates_at` creates records with the created dates given (imports carry 1900-01-01,
//!   or dates in the future); their modified time is now, which may be before their created
//!   one (seeded records keep P2, such imports do not).
//! - U7: property changes (`add_property`, `retype_property`, `archive_property`) change the
//!   type's property table only (PS1, PS2 in `schema.rs`): no record's modified time or
//!   version moves. They are applied first and all or none: a refused one changes nothing.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use wire::format_ms;

use super::catalog::ObjectType;
use super::portal::{Pending, Portal, Rec, TypeStore, ID_STRIDE};
use super::relations::pair_of;
use super::rng::SplitMix64;
use super::schema::SchemaError;
use super::values::MergedIds;

/// `POST /_sim/mutate` body: counts of each change; all but `object_type` optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MutateRequest {
    /// A name (`deals`) or type id (`0-3`).
    pub object_type: String,
    #[serde(default)]
    pub updates: u64,
    #[serde(default)]
    pub creates: u64,
    #[serde(default)]
    pub archives: u64,
    /// Stamp every update with one identical millisecond, as bulk edits do.
    #[serde(default)]
    pub same_timestamp: bool,
    /// Pick the updated and archived records among the newest this many live records (by
    /// id, which grows with creation) instead of among all: a CRM's edits concentrate on
    /// recent records (open deals, new contacts). `None`: uniformly among all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub among_newest: Option<u64>,
    /// More creates, one per timestamp here, with that created date (U6).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub creates_at: Vec<i64>,
    /// Live records whose created date moves by `move_days` (U5).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub moves: u64,
    /// Days a move shifts the created date by (negative: earlier); 0 means -400.
    #[serde(default, skip_serializing_if = "is_zero_i")]
    pub move_days: i64,
    /// Creates take free ids inside the range in use, from this id up (U3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids_from: Option<u64>,
    /// These live records are archived too (U2), besides `archives` picked at random.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub archive_ids: Vec<u64>,
    /// A new custom property; every record has a value for it at once (U7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_property: Option<NewProperty>,
    /// A property whose type changes; values render per the new type from now on (U7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retype_property: Option<NewProperty>,
    /// A property archived: gone from the listing, null on records (U7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_property: Option<PropertyName>,
    /// Records merged (A4 in `relations.rs`): each loser disappears into its survivor.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merges: Vec<Merge>,
    /// Links added between this type's records and another type's (A3).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub associate: Vec<LinkChange>,
    /// Links removed (A3).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dissociate: Vec<LinkChange>,
    /// Links added and removed at random between live records (A3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random_links: Option<RandomLinks>,
    /// A pipeline stage's new label (deals and tickets, A5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relabel_stage: Option<StageLabel>,
}

/// `{"survivor": 101, "loser": 205}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Merge {
    pub survivor: u64,
    pub loser: u64,
}

/// A link between this type's record `id` and `to_object_type`'s `to_id`; `touch` also
/// bumps this record's modified time (U1), as HubSpot sometimes does and often does not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkChange {
    pub id: u64,
    pub to_object_type: String,
    pub to_id: u64,
    #[serde(default)]
    pub touch: bool,
}

/// `adds` new links and `removes` existing ones from random live records of this type to
/// random live records of `to_object_type`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RandomLinks {
    pub to_object_type: String,
    #[serde(default)]
    pub adds: u64,
    #[serde(default)]
    pub removes: u64,
    #[serde(default)]
    pub touch: bool,
}

/// `{"pipeline_id": "default", "stage_id": "closedwon", "label": "Won"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageLabel {
    pub pipeline_id: String,
    pub stage_id: String,
    pub label: String,
}

/// A property's name and (new) type: `{"name":"fleet_size","type":"number","field_type":"number"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewProperty {
    pub name: String,
    /// HubSpot's `type`: `string`, `number`, `date`, `datetime`, `bool`, `enumeration`.
    #[serde(rename = "type")]
    pub kind: String,
    /// HubSpot's `fieldType`; `None` takes the type's usual one (`text`, `number`, `date`,
    /// `booleancheckbox`, `select`). `checkbox` makes an enumeration multi-select.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_type: Option<String>,
}

/// A property by name: `{"name":"fleet_size"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PropertyName {
    pub name: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero_i(n: &i64) -> bool {
    *n == 0
}

/// The default of [`MutateRequest::move_days`].
const DEFAULT_MOVE_DAYS: i64 = -400;

/// What a mutation changed: ids per kind and the instant used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MutateResponse {
    pub object_type: String,
    pub timestamp_ms: i64,
    pub timestamp: String,
    pub updated: Vec<String>,
    pub created: Vec<String>,
    pub archived: Vec<String>,
    /// Records whose created date moved (U5).
    #[serde(default)]
    pub moved: Vec<String>,
    /// Properties added, retyped or archived (U7), in that order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<String>,
    /// Losers merged away (A4).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged: Vec<String>,
    /// Links added and removed, `from:to` (A3).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub linked: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unlinked: Vec<String>,
}

/// The instant a mutation stamps its changes with, and when search sees them (U4).
#[derive(Debug, Clone, Copy)]
struct Stamp {
    now: i64,
    search_lag_ms: u64,
    visible_at_ms: i64,
}

impl Stamp {
    /// Notes what search answers for `id` until its index catches up with a change (U4).
    fn pend(&self, pending: &mut HashMap<u64, Pending>, id: u64, old: Option<Rec>) {
        note_pending(pending, self.search_lag_ms, self.visible_at_ms, id, old, self.now)
    }
}

/// The live records one mutation changes, as indexes into the store: distinct, each sorted.
struct Picks {
    updates: Vec<usize>,
    archives: Vec<usize>,
    moves: Vec<usize>,
}

impl Portal {
    /// Applies one mutation at `now_ms` (raised if needed so stamps never go back in time).
    /// Updated and archived records are distinct live records picked with `rng`. A refused
    /// property change (U7) is the error, and nothing changed.
    pub fn mutate(
        &mut self,
        t: ObjectType,
        req: &MutateRequest,
        now_ms: i64,
        search_lag_ms: u64,
        rng: &mut SplitMix64,
    ) -> Result<MutateResponse, SchemaError> {
        let properties = self.change_properties(t, req)?;
        let now = now_ms.max(self.last_stamp_ms + 1);
        self.last_stamp_ms = now;
        let stamp = Stamp {
            now,
            search_lag_ms,
            visible_at_ms: now + search_lag_ms as i64,
        };
        let store = &mut self.stores[t.index()];
        store.pending.retain(|_, p| p.visible_at_ms > now);
        let picks = pick_records(store, req, rng);
        let mut out = MutateResponse {
            object_type: t.name().to_string(),
            timestamp_ms: now,
            timestamp: format_ms(now),
            updated: Vec::with_capacity(picks.updates.len()),
            created: Vec::new(),
            archived: Vec::with_capacity(picks.archives.len()),
            moved: Vec::with_capacity(picks.moves.len()),
            properties,
            merged: Vec::new(),
            linked: Vec::new(),
            unlinked: Vec::new(),
        };
        apply_updates(store, picks.updates, req.same_timestamp, stamp, &mut out.updated);
        apply_archives(store, picks.archives, stamp, &mut out.archived);
        apply_moves(store, picks.moves, req.move_days, stamp, &mut out.moved);
        self.apply_creates(t, req, stamp, rng, &mut out.created);
        self.apply_relations(t, req, stamp, rng, &mut out)?;
        Ok(out)
    }

    /// Links, merges and stage labels (A3-A5). Checked before anything changes: a request
    /// naming an unknown type, a record that is not live or a pair that does not link
    /// changes no link.
    fn apply_relations(
        &mut self,
        t: ObjectType,
        req: &MutateRequest,
        stamp: Stamp,
        rng: &mut SplitMix64,
        out: &mut MutateResponse,
    ) -> Result<(), SchemaError> {
        let other = |name: &str| {
            let to = ObjectType::parse(name).ok_or_else(|| format!("unknown object type `{name}`"))?;
            pair_of(t, to).ok_or_else(|| format!("{} and {} do not link", t.name(), to.name()))?;
            Ok::<ObjectType, SchemaError>(to)
        };
        for change in req.associate.iter().chain(&req.dissociate) {
            let to = other(&change.to_object_type)?;
            if !self.is_live(t, change.id) || !self.is_live(to, change.to_id) {
                return Err(format!(
                    "{} {} or {} {} is not a live record",
                    t.name(),
                    change.id,
                    to.name(),
                    change.to_id
                ));
            }
        }
        for m in &req.merges {
            if m.survivor == m.loser || !self.is_live(t, m.survivor) || !self.is_live(t, m.loser) {
                return Err(format!(
                    "merge {} into {}: both must be distinct live {} records",
                    m.loser,
                    m.survivor,
                    t.name()
                ));
            }
        }
        let mut touched: Vec<u64> = Vec::new();
        for c in &req.associate {
            let to = other(&c.to_object_type)?;
            self.links.link(t, c.id, to, c.to_id, &[]);
            out.linked.push(format!("{}:{}", c.id, c.to_id));
            if c.touch {
                touched.push(c.id);
            }
        }
        for c in &req.dissociate {
            let to = other(&c.to_object_type)?;
            if self.links.unlink(t, c.id, to, c.to_id) {
                out.unlinked.push(format!("{}:{}", c.id, c.to_id));
            }
            if c.touch {
                touched.push(c.id);
            }
        }
        if let Some(r) = &req.random_links {
            let to = other(&r.to_object_type)?;
            let from_ids: Vec<u64> = self.live_records(t).iter().map(|r| r.id).collect();
            let to_ids: Vec<u64> = self.live_records(to).iter().map(|r| r.id).collect();
            if !from_ids.is_empty() && !to_ids.is_empty() {
                for _ in 0..r.adds {
                    let a = from_ids[rng.below(from_ids.len() as u64) as usize];
                    let b = to_ids[rng.below(to_ids.len() as u64) as usize];
                    self.links.link(t, a, to, b, &[]);
                    out.linked.push(format!("{a}:{b}"));
                    if r.touch {
                        touched.push(a);
                    }
                }
                let mut removed = 0;
                for _ in 0..r.removes.saturating_mul(20) {
                    if removed == r.removes {
                        break;
                    }
                    let a = from_ids[rng.below(from_ids.len() as u64) as usize];
                    let Some(b) = self.links.of(t, a, to).and_then(|l| l.keys().next().copied()) else {
                        continue;
                    };
                    self.links.unlink(t, a, to, b);
                    out.unlinked.push(format!("{a}:{b}"));
                    removed += 1;
                    if r.touch {
                        touched.push(a);
                    }
                }
            }
        }
        for m in &req.merges {
            self.merge_records(t, *m, stamp);
            out.merged.push(m.loser.to_string());
            touched.push(m.survivor);
        }
        touched.sort_unstable();
        touched.dedup();
        let store = &mut self.stores[t.index()];
        let idx: Vec<usize> = touched
            .iter()
            .filter_map(|id| store.records.binary_search_by_key(id, |r| r.id).ok())
            .collect();
        apply_updates(store, idx, false, stamp, &mut out.updated);
        if let Some(s) = &req.relabel_stage {
            let now = format_ms(stamp.now);
            let stage = match t {
                ObjectType::Deals => &mut self.deal_pipelines,
                ObjectType::Tickets => &mut self.ticket_pipelines,
                _ => return Err(format!("{} has no pipelines", t.name())),
            }
            .iter_mut()
            .filter(|p| p.id == s.pipeline_id)
            .flat_map(|p| p.stages.iter_mut())
            .find(|st| st.id == s.stage_id)
            .ok_or_else(|| format!("no stage {} in pipeline {}", s.stage_id, s.pipeline_id))?;
            stage.label = s.label.clone();
            stage.updated_at = now;
        }
        Ok(())
    }

    /// A4: the loser disappears (it is not archived), its links go to the survivor, and the
    /// survivor lists it (and what was merged into it) among its merged ids.
    fn merge_records(&mut self, t: ObjectType, m: Merge, stamp: Stamp) {
        let store = &mut self.stores[t.index()];
        if let Ok(i) = store.records.binary_search_by_key(&m.loser, |r| r.id) {
            store.records.remove(i);
            store.pending.remove(&m.loser);
            store.index_created();
        }
        self.links.merge(t, m.loser, m.survivor);
        let mut merged: MergedIds = self.merged[t.index()].cloned().unwrap_or_default();
        let mut ids = merged.remove(&m.loser).unwrap_or_default();
        ids.push((m.loser, stamp.now));
        merged.entry(m.survivor).or_default().extend(ids);
        self.merged[t.index()] = Some(Box::leak(Box::new(merged)));
    }

    /// Applies the request's property changes to a copy of the type's table, and keeps it only
    /// if all succeed (U7). Records are not touched: values derive from the table.
    fn change_properties(&mut self, t: ObjectType, req: &MutateRequest) -> Result<Vec<String>, SchemaError> {
        let mut changed = Vec::new();
        if req.add_property.is_none() && req.retype_property.is_none() && req.archive_property.is_none() {
            return Ok(changed);
        }
        let mut schema = self.schemas[t.index()].clone();
        if let Some(p) = &req.add_property {
            schema.add(&p.name, &p.kind, p.field_type.as_deref())?;
            changed.push(p.name.clone());
        }
        if let Some(p) = &req.retype_property {
            schema.retype(&p.name, &p.kind, p.field_type.as_deref())?;
            changed.push(p.name.clone());
        }
        if let Some(p) = &req.archive_property {
            schema.archive(&p.name)?;
            changed.push(p.name.clone());
        }
        self.schemas[t.index()] = schema;
        Ok(changed)
    }

    /// Creates `req.creates` records at `now` and one per `req.creates_at` date (U6), with
    /// free low ids from `req.ids_from` first, then fresh ones (U3).
    fn apply_creates(
        &mut self,
        t: ObjectType,
        req: &MutateRequest,
        stamp: Stamp,
        rng: &mut SplitMix64,
        created_ids: &mut Vec<String>,
    ) {
        let created: Vec<i64> = std::iter::repeat_n(stamp.now, req.creates as usize)
            .chain(req.creates_at.iter().copied())
            .collect();
        let low = match req.ids_from {
            Some(from) => self.free_ids(t, from, created.len()),
            None => Vec::new(),
        };
        for (i, created_ms) in created.into_iter().enumerate() {
            let id = match low.get(i) {
                Some(id) => *id,
                None => self.fresh_id(t, rng),
            };
            let store = &mut self.stores[t.index()];
            let rec = Rec {
                id,
                created_ms,
                modified_ms: stamp.now,
                archived_at_ms: None,
                version: 0,
            };
            store.insert(rec);
            stamp.pend(&mut store.pending, id, None);
            created_ids.push(id.to_string());
        }
    }

    /// Takes the next id of `t`'s space, above every id in it (U3; activities share one), and
    /// moves the space's next id on by a random stride.
    fn fresh_id(&mut self, t: ObjectType, rng: &mut SplitMix64) -> u64 {
        let id = if t.is_activity() {
            self.next_engagement_id
        } else {
            self.next_id[t.index()]
        };
        let next = id + 1 + rng.below(ID_STRIDE);
        if t.is_activity() {
            self.next_engagement_id = next;
        } else {
            self.next_id[t.index()] = next;
        }
        id
    }

    /// Up to `n` ids nobody holds inside the range in use of `t`'s id space, from `from` up
    /// (the gaps between seeded ids, U3).
    fn free_ids(&self, t: ObjectType, from: u64, n: usize) -> Vec<u64> {
        let space: Vec<ObjectType> = if t.is_activity() {
            ObjectType::every().filter(|o| o.is_activity()).collect()
        } else {
            vec![t]
        };
        let mut taken: Vec<u64> = space
            .iter()
            .flat_map(|o| self.stores[o.index()].records.iter().map(|r| r.id))
            .collect();
        taken.sort_unstable();
        let mut out = Vec::with_capacity(n);
        for w in taken.windows(2).filter(|w| w[1] > from) {
            let mut id = (w[0] + 1).max(from);
            while id < w[1] && out.len() < n {
                out.push(id);
                id += 1;
            }
            if out.len() == n {
                break;
            }
        }
        out
    }
}

/// Picks the distinct live records to update, archive and move: at random among all (or the
/// newest `among_newest`), plus the live ones `archive_ids` names, which are archived only.
fn pick_records(store: &TypeStore, req: &MutateRequest, rng: &mut SplitMix64) -> Picks {
    let mut live: Vec<usize> = (0..store.records.len())
        .filter(|i| store.records[*i].is_live())
        .collect();
    if let Some(newest) = req.among_newest {
        let keep = usize::try_from(newest).unwrap_or(usize::MAX).min(live.len());
        live.drain(..live.len() - keep);
    }
    let picks =
        (req.updates.saturating_add(req.archives).saturating_add(req.moves)).min(live.len() as u64) as usize;
    for i in 0..picks {
        let j = i + rng.below((live.len() - i) as u64) as usize;
        live.swap(i, j);
    }
    let n_updates = (req.updates as usize).min(picks);
    let n_archives = (req.archives as usize).min(picks - n_updates);
    let mut updates = live[..n_updates].to_vec();
    let mut archives = live[n_updates..n_updates + n_archives].to_vec();
    let mut moves = live[n_updates + n_archives..picks].to_vec();
    for id in &req.archive_ids {
        if let Ok(idx) = store.records.binary_search_by_key(id, |r| r.id) {
            if store.records[idx].is_live() && !archives.contains(&idx) {
                updates.retain(|u| *u != idx);
                moves.retain(|m| *m != idx);
                archives.push(idx);
            }
        }
    }
    updates.sort_unstable();
    archives.sort_unstable();
    moves.sort_unstable();
    Picks {
        updates,
        archives,
        moves,
    }
}

/// Bumps each updated record's version and modified property (U1), noting its ids.
fn apply_updates(
    store: &mut TypeStore,
    updates: Vec<usize>,
    same_timestamp: bool,
    stamp: Stamp,
    updated: &mut Vec<String>,
) {
    let n = updates.len() as i64;
    for (i, idx) in updates.into_iter().enumerate() {
        let old = store.records[idx];
        let modified_ms = update_stamp(same_timestamp, stamp.now, n, i as i64, old.modified_ms);
        let rec = &mut store.records[idx];
        rec.version = rec.version.saturating_add(1);
        rec.modified_ms = modified_ms.max(old.modified_ms);
        stamp.pend(&mut store.pending, old.id, Some(old));
        updated.push(old.id.to_string());
    }
}

/// The stamp of the `i`th of `n` updates (U1): `now` for all in a bulk edit, else one
/// millisecond each, ending at `now`, after the record's previous modified time.
fn update_stamp(same_timestamp: bool, now: i64, n: i64, i: i64, previous_ms: i64) -> i64 {
    if same_timestamp {
        now
    } else {
        (now - (n - 1 - i)).max(previous_ms + 1).min(now)
    }
}

/// Sets `archivedAt` to now on each archived record, leaving its modified property (U2).
fn apply_archives(store: &mut TypeStore, archives: Vec<usize>, stamp: Stamp, archived: &mut Vec<String>) {
    for idx in archives {
        let old = store.records[idx];
        store.records[idx].archived_at_ms = Some(stamp.now);
        stamp.pend(&mut store.pending, old.id, Some(old));
        archived.push(old.id.to_string());
    }
}

/// Shifts each moved record's created date by `move_days` and bumps it as an update (U5).
fn apply_moves(
    store: &mut TypeStore,
    moves: Vec<usize>,
    move_days: i64,
    stamp: Stamp,
    moved: &mut Vec<String>,
) {
    let shift = if move_days == 0 {
        DEFAULT_MOVE_DAYS
    } else {
        move_days
    } * 86_400_000;
    for idx in moves {
        let old = store.records[idx];
        let rec = &mut store.records[idx];
        rec.created_ms = old.created_ms.saturating_add(shift);
        rec.version = rec.version.saturating_add(1);
        rec.modified_ms = stamp.now.max(old.modified_ms + 1);
        stamp.pend(&mut store.pending, old.id, Some(old));
        moved.push(old.id.to_string());
    }
    if !moved.is_empty() {
        store.index_created();
    }
}

/// Records what search sees until `visible_at` (U4). A record changed again while a change
/// is pending keeps the older view: search shows what it showed before the first change.
fn note_pending(
    pending: &mut HashMap<u64, Pending>,
    lag_ms: u64,
    visible_at_ms: i64,
    id: u64,
    previous: Option<Rec>,
    now: i64,
) {
    if lag_ms == 0 {
        return;
    }
    let previous = match pending.get(&id) {
        Some(p) if p.visible_at_ms > now => p.previous,
        _ => previous,
    };
    pending.insert(
        id,
        Pending {
            visible_at_ms,
            previous,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::portal::portal_for_test;

    fn req(updates: u64, creates: u64, archives: u64, same: bool) -> MutateRequest {
        MutateRequest {
            object_type: "deals".into(),
            updates,
            creates,
            archives,
            same_timestamp: same,
            ..Default::default()
        }
    }

    #[test]
    fn created_dates_move_given_dates_create_and_low_ids_fill_gaps_u3_u5_u6() {
        let t = ObjectType::Deals;
        let mut p = portal_for_test(3, 100, &[t]);
        let max_id = p.store(t).records.iter().map(|r| r.id).max().unwrap();
        let before = p.store(t).records.clone();
        let now = 1_800_000_000_000;
        let r = MutateRequest {
            moves: 3,
            creates_at: vec![-2_208_988_800_000, -1, 1_900_000_000_000],
            ids_from: Some(p.store(t).records[50].id),
            ..req(0, 2, 0, false)
        };
        let out = p.mutate(t, &r, now, 0, &mut SplitMix64::new(9)).unwrap();
        assert_eq!((out.moved.len(), out.created.len()), (3, 5));
        let recs = &p.store(t).records;
        assert!(recs.windows(2).all(|w| w[0].id < w[1].id), "P1 holds");
        for id in &out.moved {
            let new = recs.iter().find(|r| r.id.to_string() == *id).unwrap();
            let old = before.iter().find(|r| r.id == new.id).unwrap();
            assert_eq!(new.created_ms, old.created_ms - 400 * 86_400_000, "U5");
            assert!(new.modified_ms > old.modified_ms && new.version == old.version + 1);
        }
        let created: Vec<u64> = out.created.iter().map(|i| i.parse().unwrap()).collect();
        let from = before[50].id;
        assert!(
            created.iter().all(|id| *id < max_id && *id > from),
            "U3: inside the range in use, from the id asked"
        );
        let dates: Vec<i64> = created
            .iter()
            .map(|id| recs.iter().find(|r| r.id == *id).unwrap().created_ms)
            .collect();
        assert_eq!(dates, [now, now, -2_208_988_800_000, -1, 1_900_000_000_000]);
        let by_created = &p.store(t).by_created;
        assert!(by_created.windows(2).all(|w| w[0] <= w[1]) && by_created.len() == recs.len());
    }

    #[test]
    fn updates_bump_modified_and_version_u1() {
        let mut p = portal_for_test(3, 50, &[ObjectType::Deals]);
        let before = p.store(ObjectType::Deals).records.clone();
        let now = 1_800_000_000_000;
        let out = p
            .mutate(
                ObjectType::Deals,
                &req(5, 0, 0, false),
                now,
                0,
                &mut SplitMix64::new(1),
            )
            .unwrap();
        assert_eq!(out.updated.len(), 5);
        let after = &p.store(ObjectType::Deals).records;
        let mut stamps = Vec::new();
        for (old, new) in before.iter().zip(after) {
            if out.updated.contains(&old.id.to_string()) {
                assert_eq!(new.version, old.version + 1);
                assert!(new.modified_ms > old.modified_ms && new.modified_ms <= now);
                stamps.push(new.modified_ms);
            } else {
                assert_eq!(old, new);
            }
        }
        stamps.sort_unstable();
        stamps.dedup();
        assert_eq!(stamps.len(), 5, "each update has its own millisecond");
    }

    #[test]
    fn same_timestamp_archives_and_creates_u2_u3() {
        let t = ObjectType::Calls;
        let mut p = portal_for_test(3, 20, &[ObjectType::Calls, ObjectType::Notes]);
        let max_engagement = p.store(ObjectType::Notes).records.iter().map(|r| r.id).max();
        let r = MutateRequest {
            object_type: "calls".into(),
            ..req(4, 2, 3, true)
        };
        let out = p
            .mutate(t, &r, 1_800_000_000_000, 0, &mut SplitMix64::new(2))
            .unwrap();
        let recs = &p.store(t).records;
        let get = |id: &String| recs.iter().find(|r| r.id.to_string() == *id).copied();
        for id in &out.updated {
            assert_eq!(get(id).map(|r| r.modified_ms), Some(out.timestamp_ms));
        }
        for id in &out.archived {
            let rec = get(id).filter(|r| r.archived_at_ms == Some(out.timestamp_ms));
            assert!(rec.is_some_and(|r| r.modified_ms < out.timestamp_ms), "U2");
            assert!(!out.updated.contains(id));
        }
        assert_eq!(out.created.len(), 2);
        let first_new: u64 = out.created[0].parse().unwrap_or(0);
        assert!(Some(first_new) > max_engagement, "U3: shared engagement id space");
        assert!(recs.windows(2).all(|w| w[0].id < w[1].id));
    }

    #[test]
    fn among_newest_picks_only_recent_records() {
        let t = ObjectType::Deals;
        let mut p = portal_for_test(3, 100, &[t]);
        let newest: Vec<String> = p.store(t).records[80..]
            .iter()
            .map(|r| r.id.to_string())
            .collect();
        let r = MutateRequest {
            among_newest: Some(20),
            ..req(10, 0, 5, false)
        };
        let out = p
            .mutate(t, &r, 1_800_000_000_000, 0, &mut SplitMix64::new(3))
            .unwrap();
        assert_eq!((out.updated.len(), out.archived.len()), (10, 5));
        assert!(out
            .updated
            .iter()
            .chain(&out.archived)
            .all(|id| newest.contains(id)));
    }
}
