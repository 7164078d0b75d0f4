//! The CRM's relations: associations (v4), owners, pipelines and merged records.
//!
//! - A1: a link joins two records and has the same kinds seen from either side; each side
//!   renders them with its direction's type ids (HubSpot's table: deal→contact 3,
//!   contact→deal 4, contact→company 279 and its "Primary" 1, ...), so a batch read from
//!   either type agrees with the other.
//! - A2: a batch read answers only links between live records: an archived or merged-away
//!   record has none, and links to one are not shown.
//! - A3: changing a link (`/_sim/mutate` `associate`, `dissociate`, `random_links`) moves no
//!   record's modified time unless asked (`touch`): HubSpot does not always bump it.
//! - A4: a merge removes the loser (it is not archived: it disappears from every read), moves
//!   its links to the survivor, bumps the survivor (U1) and adds the loser (and the ids merged
//!   into it before) to the survivor's `hs_merged_object_ids` (contacts also
//!   `hs_calculated_merged_vids`, `id:ms` items). Other records' modified times stay (A3).
//! - A5: owners and pipelines are the portal's own small tables; a stage relabel changes the
//!   stage's `updatedAt`, nothing else.

use std::collections::{BTreeMap, HashMap};

use wire::{format_ms, AssociationTo, AssociationType, Owner, OwnerTeam, Pipeline, PipelineStage};

use super::catalog::ObjectType;
use super::pools::{EMAIL_DOMAINS, FIRST_NAMES, LAST_NAMES};
use super::portal::PORTAL_START_MS;
use super::rng::{below, hash, mix, tag};

/// The kinds a link can have; every link has [`LinkKind::Unlabeled`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LinkKind {
    Unlabeled,
    /// HubSpot's default label on pairs that have one (a contact's primary company).
    Primary,
    /// A portal's own label (`USER_DEFINED`), paired: the same label from both sides.
    DecisionMaker,
}

/// A pair of types that link, with HubSpot's type ids in each direction.
#[derive(Debug, Clone, Copy)]
pub struct Pair {
    pub a: ObjectType,
    pub b: ObjectType,
    /// Unlabeled type ids: a→b, b→a.
    pub unlabeled: (i64, i64),
    /// The "Primary" type ids, on pairs HubSpot gives one.
    pub primary: Option<(i64, i64)>,
    /// Whether the portal has the "Decision maker" label on this pair.
    pub labeled: bool,
    /// Links each `a` record gets at seeding, at most.
    pub max_links: u64,
}

/// The portal's own label's type ids (a→b, b→a): `USER_DEFINED` ids are small numbers.
const DECISION_MAKER: (i64, i64) = (101, 102);
const DECISION_MAKER_LABEL: &str = "Decision maker";

const fn pair(a: ObjectType, b: ObjectType, unlabeled: (i64, i64), primary: Option<(i64, i64)>) -> Pair {
    Pair {
        a,
        b,
        unlabeled,
        primary,
        labeled: false,
        max_links: 3,
    }
}

/// Every pair the simulator links, with HubSpot's defined type ids.
pub const PAIRS: &[Pair] = &[
    Pair {
        labeled: true,
        ..pair(ObjectType::Deals, ObjectType::Contacts, (3, 4), None)
    },
    pair(ObjectType::Deals, ObjectType::Companies, (341, 342), Some((5, 6))),
    Pair {
        max_links: 2,
        ..pair(
            ObjectType::Contacts,
            ObjectType::Companies,
            (279, 280),
            Some((1, 2)),
        )
    },
    pair(ObjectType::Tickets, ObjectType::Contacts, (16, 15), None),
    pair(
        ObjectType::Tickets,
        ObjectType::Companies,
        (339, 340),
        Some((26, 25)),
    ),
    Pair {
        max_links: 1,
        ..pair(ObjectType::LineItems, ObjectType::Deals, (20, 19), None)
    },
    pair(ObjectType::Calls, ObjectType::Contacts, (194, 193), None),
    pair(ObjectType::Calls, ObjectType::Companies, (182, 181), None),
    pair(ObjectType::Calls, ObjectType::Deals, (206, 205), None),
    pair(ObjectType::Calls, ObjectType::Tickets, (220, 219), None),
    pair(ObjectType::Emails, ObjectType::Contacts, (198, 197), None),
    pair(ObjectType::Emails, ObjectType::Companies, (186, 185), None),
    pair(ObjectType::Emails, ObjectType::Deals, (210, 209), None),
    pair(ObjectType::Emails, ObjectType::Tickets, (224, 223), None),
    pair(ObjectType::Meetings, ObjectType::Contacts, (200, 199), None),
    pair(ObjectType::Meetings, ObjectType::Companies, (188, 187), None),
    pair(ObjectType::Meetings, ObjectType::Deals, (212, 211), None),
    pair(ObjectType::Meetings, ObjectType::Tickets, (226, 225), None),
    pair(ObjectType::Notes, ObjectType::Contacts, (202, 201), None),
    pair(ObjectType::Notes, ObjectType::Companies, (190, 189), None),
    pair(ObjectType::Notes, ObjectType::Deals, (214, 213), None),
    pair(ObjectType::Notes, ObjectType::Tickets, (228, 227), None),
    pair(ObjectType::Tasks, ObjectType::Contacts, (204, 203), None),
    pair(ObjectType::Tasks, ObjectType::Companies, (192, 191), None),
    pair(ObjectType::Tasks, ObjectType::Deals, (216, 215), None),
    pair(ObjectType::Tasks, ObjectType::Tickets, (230, 229), None),
];

/// The pair `from`–`to` and whether `from` is its `a` side.
pub fn pair_of(from: ObjectType, to: ObjectType) -> Option<(&'static Pair, bool)> {
    PAIRS.iter().find_map(|p| {
        if p.a == from && p.b == to {
            Some((p, true))
        } else if p.b == from && p.a == to {
            Some((p, false))
        } else {
            None
        }
    })
}

/// A link's kind as the `from` side sees it.
fn association_type(pair: &Pair, forward: bool, kind: LinkKind) -> Option<AssociationType> {
    let side = |(ab, ba): (i64, i64)| if forward { ab } else { ba };
    Some(match kind {
        LinkKind::Unlabeled => AssociationType {
            category: "HUBSPOT_DEFINED".into(),
            type_id: side(pair.unlabeled),
            label: None,
        },
        LinkKind::Primary => AssociationType {
            category: "HUBSPOT_DEFINED".into(),
            type_id: side(pair.primary?),
            label: Some("Primary".into()),
        },
        LinkKind::DecisionMaker => AssociationType {
            category: "USER_DEFINED".into(),
            type_id: side(DECISION_MAKER),
            label: Some(DECISION_MAKER_LABEL.into()),
        },
    })
}

/// One side's links: from id → to id → kinds (sorted, distinct).
type Side = BTreeMap<u64, BTreeMap<u64, Vec<LinkKind>>>;

/// Every link of the portal, indexed from both sides (A1).
#[derive(Debug, Default)]
pub struct Links {
    /// Per `(from, to)`.
    by_side: HashMap<(ObjectType, ObjectType), Side>,
}

impl Links {
    /// Links `a`'s record `ia` and `b`'s record `ib` with `kinds` (added to any it has).
    pub fn link(&mut self, a: ObjectType, ia: u64, b: ObjectType, ib: u64, kinds: &[LinkKind]) {
        for (from, fid, to, tid) in [(a, ia, b, ib), (b, ib, a, ia)] {
            let have = self
                .by_side
                .entry((from, to))
                .or_default()
                .entry(fid)
                .or_default()
                .entry(tid)
                .or_default();
            for k in std::iter::once(&LinkKind::Unlabeled).chain(kinds) {
                if !have.contains(k) {
                    have.push(*k);
                }
            }
            have.sort_unstable();
        }
    }

    /// Removes the link between `a`'s `ia` and `b`'s `ib`; whether there was one.
    pub fn unlink(&mut self, a: ObjectType, ia: u64, b: ObjectType, ib: u64) -> bool {
        let mut removed = false;
        for (from, fid, to, tid) in [(a, ia, b, ib), (b, ib, a, ia)] {
            if let Some(links) = self.by_side.get_mut(&(from, to)).and_then(|m| m.get_mut(&fid)) {
                removed |= links.remove(&tid).is_some();
                if links.is_empty() {
                    self.by_side.get_mut(&(from, to)).map(|m| m.remove(&fid));
                }
            }
        }
        removed
    }

    /// The records `t`'s `id` links to in `to`, with their kinds.
    pub fn of(&self, t: ObjectType, id: u64, to: ObjectType) -> Option<&BTreeMap<u64, Vec<LinkKind>>> {
        self.by_side.get(&(t, to))?.get(&id)
    }

    /// Moves every link of `t`'s `loser` to `survivor` (A4).
    pub fn merge(&mut self, t: ObjectType, loser: u64, survivor: u64) {
        let sides: Vec<(ObjectType, ObjectType)> =
            self.by_side.keys().filter(|(f, _)| *f == t).copied().collect();
        for (from, to) in sides {
            let Some(links) = self.by_side.get_mut(&(from, to)).and_then(|m| m.remove(&loser)) else {
                continue;
            };
            for (other, kinds) in links {
                self.unlink(from, loser, to, other);
                if !(from == to && other == survivor) {
                    self.link(from, survivor, to, other, &kinds);
                }
            }
        }
    }

    /// The links of `id` (a `from` record) to `to` as v4 renders them, linked ids ascending;
    /// `live` says which `to` records are live (A2).
    pub fn render(
        &self,
        from: ObjectType,
        id: u64,
        to: ObjectType,
        live: impl Fn(u64) -> bool,
    ) -> Vec<AssociationTo> {
        let Some((pair, forward)) = pair_of(from, to) else {
            return Vec::new();
        };
        self.of(from, id, to)
            .into_iter()
            .flatten()
            .filter(|(other, _)| live(**other))
            .map(|(other, kinds)| AssociationTo {
                to_object_id: *other,
                association_types: kinds
                    .iter()
                    .filter_map(|k| association_type(pair, forward, *k))
                    .collect(),
            })
            .collect()
    }

    /// Seeds the links of every pair whose two types have records: each `a` record gets up
    /// to the pair's `max_links` links to `b` records drawn from the seed, the first one
    /// primary where the pair has a primary label, some labeled.
    pub fn seed(seed: u64, ids: impl Fn(ObjectType) -> Vec<u64>) -> Links {
        let mut links = Links::default();
        for pair in PAIRS {
            let (from, to) = (ids(pair.a), ids(pair.b));
            if from.is_empty() || to.is_empty() {
                continue;
            }
            for (k, id) in from.iter().enumerate() {
                let h = hash(&[seed, tag(pair.a.name()), tag(pair.b.name()), *id]);
                let n = if pair.max_links == 1 {
                    1
                } else {
                    below(h, pair.max_links + 1)
                };
                for i in 0..n {
                    let target = to[below(mix(h ^ (i + 1)), to.len() as u64) as usize];
                    let mut kinds = Vec::new();
                    if i == 0 && pair.primary.is_some() {
                        kinds.push(LinkKind::Primary);
                    }
                    if pair.labeled && below(mix(h ^ 0x1abe1 ^ k as u64), 5) == 0 {
                        kinds.push(LinkKind::DecisionMaker);
                    }
                    links.link(pair.a, *id, pair.b, target, &kinds);
                }
            }
        }
        links
    }
}

/// The portal's owners (A5): `count` people, the last two archived (they left; records still
/// name them), ids from [`owner_id`] so records' `hubspot_owner_id` values name them.
pub fn seed_owners(seed: u64, count: u64, owner_id: impl Fn(u64) -> u64) -> Vec<Owner> {
    let teams = [("178588", "West Coast Sales"), ("178590", "Support")];
    (0..count)
        .map(|i| {
            let h = hash(&[seed, tag("owner-person"), i]);
            let first = FIRST_NAMES[below(h, FIRST_NAMES.len() as u64) as usize];
            let last = LAST_NAMES[below(mix(h), LAST_NAMES.len() as u64) as usize];
            let domain = EMAIL_DOMAINS[below(mix(mix(h)), EMAIL_DOMAINS.len() as u64) as usize];
            let created = PORTAL_START_MS + (i as i64) * 17 * 86_400_000;
            let team = teams[below(h >> 9, 2) as usize];
            let user_id = 9_000_000 + below(h >> 13, 900_000) as i64;
            let archived = i + 2 >= count;
            Owner {
                id: owner_id(i).to_string(),
                email: Some(format!("{}.{}@{domain}", first.1, last.1)),
                kind: Some("PERSON".into()),
                first_name: Some(first.0.into()),
                last_name: Some(last.0.into()),
                user_id: (!archived).then_some(user_id),
                user_id_including_inactive: Some(user_id),
                created_at: format_ms(created),
                updated_at: format_ms(created + 3_600_000),
                archived,
                teams: vec![OwnerTeam {
                    id: team.0.into(),
                    name: team.1.into(),
                    primary: true,
                }],
            }
        })
        .collect()
}

/// One seeded stage: id, label, probability (deals) or ticket state (tickets), closed.
type StageSeed = (&'static str, &'static str, &'static str, bool);

const DEAL_STAGES: &[StageSeed] = &[
    ("appointmentscheduled", "Appointment Scheduled", "0.2", false),
    ("qualifiedtobuy", "Qualified To Buy", "0.4", false),
    ("presentationscheduled", "Presentation Scheduled", "0.6", false),
    ("decisionmakerboughtin", "Decision Maker Bought-In", "0.8", false),
    ("contractsent", "Contract Sent", "0.9", false),
    ("closedwon", "Closed Won", "1.0", true),
    ("closedlost", "Closed Lost", "0.0", true),
];
const RENEWAL_STAGES: &[StageSeed] = &[
    ("1029372", "Renewal due", "0.5", false),
    ("1029373", "Renewed", "1.0", true),
    ("1029374", "Churned", "0.0", true),
];
const TICKET_STAGES: &[StageSeed] = &[
    ("1", "New", "OPEN", false),
    ("2", "Waiting on contact", "OPEN", false),
    ("3", "Waiting on us", "OPEN", false),
    ("4", "Closed", "CLOSED", true),
];
const ESCALATION_STAGES: &[StageSeed] = &[
    ("1284078", "Escalated", "OPEN", false),
    ("1284079", "Resolved", "CLOSED", true),
];

/// The pipelines of deals and tickets (the ids the records' `pipeline` / `hs_pipeline` and
/// stage properties use), with HubSpot's metadata strings.
pub fn seed_pipelines(t: ObjectType) -> Vec<Pipeline> {
    let created = format_ms(PORTAL_START_MS);
    let build = |id: &str, label: &str, order: i64, stages: &[StageSeed]| Pipeline {
        id: id.into(),
        label: label.into(),
        display_order: order,
        stages: stages
            .iter()
            .enumerate()
            .map(|(i, (sid, slabel, value, closed))| PipelineStage {
                id: (*sid).into(),
                label: (*slabel).into(),
                display_order: i as i64,
                metadata: if t == ObjectType::Deals {
                    BTreeMap::from([
                        ("isClosed".to_string(), closed.to_string()),
                        ("probability".to_string(), (*value).to_string()),
                    ])
                } else {
                    BTreeMap::from([
                        ("isClosed".to_string(), closed.to_string()),
                        ("ticketState".to_string(), (*value).to_string()),
                    ])
                },
                created_at: created.clone(),
                updated_at: created.clone(),
                archived: false,
            })
            .collect(),
        created_at: created.clone(),
        updated_at: created.clone(),
        archived: false,
    };
    match t {
        ObjectType::Deals => vec![
            build("default", "Sales Pipeline", 0, DEAL_STAGES),
            build("75e28846", "Renewals", 1, RENEWAL_STAGES),
        ],
        ObjectType::Tickets => vec![
            build("0", "Support Pipeline", 0, TICKET_STAGES),
            build("1284077", "Escalations", 1, ESCALATION_STAGES),
        ],
        _ => Vec::new(),
    }
}

/// Renders merged ids as `hs_merged_object_ids` (`id;id`) or, with `with_times`, as
/// `hs_calculated_merged_vids` (`id:ms;id:ms`).
pub fn render_merged(ids: &[(u64, i64)], with_times: bool) -> String {
    ids.iter()
        .map(|(id, ms)| {
            if with_times {
                format!("{id}:{ms}")
            } else {
                id.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(";")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_reads_the_same_from_both_sides_with_each_directions_type_ids_a1() {
        let mut links = Links::default();
        links.link(
            ObjectType::Contacts,
            10,
            ObjectType::Companies,
            20,
            &[LinkKind::Primary],
        );
        let from_contact = links.render(ObjectType::Contacts, 10, ObjectType::Companies, |_| true);
        let from_company = links.render(ObjectType::Companies, 20, ObjectType::Contacts, |_| true);
        assert_eq!(from_contact[0].to_object_id, 20);
        assert_eq!(from_company[0].to_object_id, 10);
        let ids = |t: &[AssociationTo]| {
            t[0].association_types
                .iter()
                .map(|a| a.type_id)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&from_contact), vec![279, 1]);
        assert_eq!(ids(&from_company), vec![280, 2]);
        assert!(links
            .render(ObjectType::Contacts, 10, ObjectType::Companies, |id| id != 20)
            .is_empty());
        assert!(links.unlink(ObjectType::Companies, 20, ObjectType::Contacts, 10));
        assert!(links
            .of(ObjectType::Contacts, 10, ObjectType::Companies)
            .is_none());
    }

    #[test]
    fn a_merge_moves_the_losers_links_to_the_survivor_a4() {
        let mut links = Links::default();
        links.link(ObjectType::Deals, 1, ObjectType::Contacts, 7, &[]);
        links.link(
            ObjectType::Deals,
            2,
            ObjectType::Contacts,
            8,
            &[LinkKind::DecisionMaker],
        );
        links.link(
            ObjectType::Contacts,
            7,
            ObjectType::Companies,
            30,
            &[LinkKind::Primary],
        );
        links.merge(ObjectType::Contacts, 7, 8);
        assert!(links.of(ObjectType::Contacts, 7, ObjectType::Deals).is_none());
        let deals: Vec<u64> = links
            .of(ObjectType::Contacts, 8, ObjectType::Deals)
            .unwrap()
            .keys()
            .copied()
            .collect();
        assert_eq!(deals, vec![1, 2]);
        let deal_1: Vec<u64> = links
            .of(ObjectType::Deals, 1, ObjectType::Contacts)
            .unwrap()
            .keys()
            .copied()
            .collect();
        assert_eq!(deal_1, vec![8]);
        assert!(links
            .of(ObjectType::Contacts, 8, ObjectType::Companies)
            .unwrap()
            .contains_key(&30));
        assert!(!links
            .of(ObjectType::Companies, 30, ObjectType::Contacts)
            .unwrap()
            .contains_key(&7));
    }

    #[test]
    fn seeding_links_every_pair_whose_types_have_records() {
        let ids = |t: ObjectType| match t {
            ObjectType::Deals => (1..=50).collect(),
            ObjectType::Contacts => (100..=150).collect(),
            _ => Vec::new(),
        };
        let links = Links::seed(3, ids);
        let linked = (1..=50)
            .filter(|d| links.of(ObjectType::Deals, *d, ObjectType::Contacts).is_some())
            .count();
        assert!(linked > 25 && linked < 50, "{linked} of 50 deals linked");
        assert!(links
            .by_side
            .keys()
            .all(|(f, t)| [ObjectType::Deals, ObjectType::Contacts].contains(f)
                && [ObjectType::Deals, ObjectType::Contacts].contains(t)));
    }
}
