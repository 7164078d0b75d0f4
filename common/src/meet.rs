//! Where a full sync's list walk and its search lanes meet (one meeting per run and object
//! type, kept in the ledger and changed only by [`Meeting::apply`], atomically).
//!
//! A large object type is backfilled on both of HubSpot's read paths at once: one list walk
//! ([`Slice::Walk`](crate::messages::Slice::Walk)) reads up from the lowest ids, on the
//! general limit, while search lanes ([`Slice::Lane`](crate::messages::Slice::Lane)) claim id
//! ranges going down from the highest, on the search limit. They meet in id space, not in
//! created dates: ids are not in creation order, so no created date splits the list.
//!
//! - J1: lanes claim contiguous ranges from the top down, so together they cover `[low, ∞)`;
//!   a claim never starts at or below the walk's frontier, and none is made once the walk is
//!   past the last claim's bottom.
//! - J2: the walk ends after the page whose own greatest id reaches `low - 1`: with the list in
//!   id order it has then read `[0, low)`, and the lanes read the rest. Its frontier (the
//!   greatest id any copy of a walk page read) only narrows claims; the walk's stop depends on
//!   its own page, so a copy that read further and then died cannot open a gap.
//! - J3: a claim is keyed by its lane and page: a redelivered or duplicated page gets the same
//!   range back, so no range is claimed and then left unread.
//! - J4: the walk checks the order it relies on: a page whose ids are not ascending, or start
//!   at or below the previous page's greatest, marks the meeting unordered; the walk then reads
//!   to the end and lanes claim nothing more (what was claimed is read twice, and merged away).
//! - Ranges read by both (the walk's last page reaching past `low`, a claim made on a stale
//!   frontier) are the overlap the keep-latest merge absorbs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A change to a meeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeetStep {
    /// Walk page `page_no` read records with ids from `min_id` to `max_id` (none when it was
    /// empty), in ascending order or not; `last` when the list had no page after it.
    Walked {
        page_no: u32,
        ids: Option<(u64, u64)>,
        ascending: bool,
        last: bool,
    },
    /// Page `page_no` of lane `lane` needs a range: the next one down from the lowest claim
    /// (the first one from `top`), about `width` ids wide.
    Claim {
        lane: u32,
        page_no: u32,
        top: u64,
        width: u64,
    },
}

/// The latest claim of one lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub page_no: u32,
    /// Ids `lo..=hi` to read, or `None`: nothing was left, the lane is done.
    pub range: Option<(u64, u64)>,
}

/// A walk page seen: its number and the greatest id it read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalkPage {
    pub page_no: u32,
    pub max_id: u64,
}

/// The state both sides read and change (see the module doc).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meeting {
    /// The greatest id any copy of a walk page read; `u64::MAX` once the list was read to its
    /// end.
    #[serde(default)]
    pub frontier: u64,
    /// The lowest id claimed by a lane: the lanes cover `[low, ∞)`. `None` before a claim.
    #[serde(default)]
    pub low: Option<u64>,
    /// The latest walk page seen and the one before it (J4).
    #[serde(default)]
    pub last_page: Option<WalkPage>,
    #[serde(default)]
    pub prev_page: Option<WalkPage>,
    /// The walk page that saw the list out of id order (J4), if one did.
    #[serde(default)]
    pub unordered_at: Option<u32>,
    /// Each lane's latest claim (J3).
    #[serde(default)]
    pub claims: BTreeMap<u32, Claim>,
}

impl Meeting {
    /// Applies `step` (one atomic change in the ledger).
    pub fn apply(&mut self, step: &MeetStep) {
        match *step {
            MeetStep::Walked {
                page_no,
                ids,
                ascending,
                last,
            } => self.walked(page_no, ids, ascending, last),
            MeetStep::Claim {
                lane,
                page_no,
                top,
                width,
            } => self.claim(lane, page_no, top, width),
        }
    }

    fn walked(&mut self, page_no: u32, ids: Option<(u64, u64)>, ascending: bool, last: bool) {
        if !ascending {
            self.unordered_at.get_or_insert(page_no);
        }
        if let Some((min_id, max_id)) = ids {
            // The page before this one, if it was seen (J4).
            let before = [self.last_page, self.prev_page]
                .into_iter()
                .flatten()
                .find(|p| Some(p.page_no) == page_no.checked_sub(1));
            if before.is_some_and(|b| min_id <= b.max_id) {
                self.unordered_at.get_or_insert(page_no);
            }
            match self.last_page {
                // Two copies of one page: the next page starts after the winner's, which may be
                // the one that read less far (a record archived in between), so the order check
                // compares with the smaller greatest id; the frontier keeps the larger.
                Some(l) if l.page_no == page_no => {
                    self.last_page = Some(WalkPage {
                        page_no,
                        max_id: l.max_id.min(max_id),
                    })
                }
                Some(l) if l.page_no > page_no => {}
                _ => {
                    self.prev_page = self.last_page;
                    self.last_page = Some(WalkPage { page_no, max_id });
                }
            }
            self.frontier = self.frontier.max(max_id);
        }
        if last {
            self.frontier = u64::MAX;
        }
    }

    fn claim(&mut self, lane: u32, page_no: u32, top: u64, width: u64) {
        if self.claims.get(&lane).is_some_and(|c| c.page_no >= page_no) {
            return; // J3: this page (or a later one of the lane) claimed already.
        }
        let range = if self.unordered() {
            None
        } else {
            let (below, hi) = match self.low {
                None => (top, u64::MAX),
                Some(0) => (0, 0),
                Some(low) => (low, low - 1),
            };
            // Past the frontier; nothing when the walk read the list to its end.
            self.frontier.checked_add(1).and_then(|above| {
                let lo = below.saturating_sub(width.max(1)).max(above);
                (self.low != Some(0) && lo <= hi).then_some((lo, hi))
            })
        };
        if let Some((lo, _)) = range {
            self.low = Some(lo);
        }
        self.claims.insert(lane, Claim { page_no, range });
    }

    /// The range page `page_no` of `lane` claimed, once [`MeetStep::Claim`] was applied.
    pub fn claim_of(&self, lane: u32, page_no: u32) -> Option<Option<(u64, u64)>> {
        self.claims
            .get(&lane)
            .filter(|c| c.page_no == page_no)
            .map(|c| c.range)
    }

    /// Whether the list was seen out of id order (J4).
    pub fn unordered(&self) -> bool {
        self.unordered_at.is_some()
    }

    /// Whether a walk page whose greatest id is `max_id` ends the walk (J2).
    pub fn walk_ends_after(&self, max_id: u64) -> bool {
        !self.unordered() && self.low.is_some_and(|low| max_id.saturating_add(1) >= low)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walked(page_no: u32, lo: u64, hi: u64) -> MeetStep {
        MeetStep::Walked {
            page_no,
            ids: Some((lo, hi)),
            ascending: true,
            last: false,
        }
    }

    fn claim(m: &mut Meeting, lane: u32, page_no: u32) -> Option<(u64, u64)> {
        m.apply(&MeetStep::Claim {
            lane,
            page_no,
            top: 1_001,
            width: 100,
        });
        m.claim_of(lane, page_no).unwrap()
    }

    #[test]
    fn lanes_claim_down_from_the_top_and_the_first_claim_stays_open_j1() {
        let mut m = Meeting::default();
        assert_eq!(claim(&mut m, 0, 0), Some((901, u64::MAX)));
        assert_eq!(claim(&mut m, 1, 0), Some((801, 900)));
        assert_eq!(claim(&mut m, 0, 7), Some((701, 800)));
        assert_eq!(m.low, Some(701));
    }

    #[test]
    fn a_repeated_claim_gets_its_range_back_j3() {
        let mut m = Meeting::default();
        let first = claim(&mut m, 0, 0);
        claim(&mut m, 1, 0);
        assert_eq!(claim(&mut m, 0, 0), first, "the same page: the same range");
        assert_eq!(m.low, Some(801), "and nothing more claimed");
    }

    #[test]
    fn claims_stop_above_the_walk_and_the_walk_stops_below_the_claims_j1_j2() {
        let mut m = Meeting::default();
        m.apply(&walked(0, 1, 650));
        assert!(!m.walk_ends_after(650), "no claim yet: the walk goes on");
        assert_eq!(claim(&mut m, 0, 0), Some((901, u64::MAX)));
        assert_eq!(claim(&mut m, 1, 0), Some((801, 900)));
        assert_eq!(claim(&mut m, 2, 0), Some((701, 800)));
        assert_eq!(claim(&mut m, 3, 0), Some((651, 700)), "narrowed to the frontier");
        assert_eq!(
            claim(&mut m, 0, 1),
            None,
            "nothing left between the walk and the claims"
        );
        m.apply(&walked(1, 651, 749));
        assert!(m.walk_ends_after(749), "past the lowest claim, 651");
    }

    #[test]
    fn the_walk_stops_on_its_own_page_not_on_a_dead_copys_frontier_j2() {
        let mut m = Meeting::default();
        claim(&mut m, 0, 0); // low 901
                             // A copy of page 3 read up to 950 and died; its redelivery read up to 700 (records
                             // archived meanwhile): the walk must go on, whatever the frontier says.
        m.apply(&walked(3, 600, 950));
        m.apply(&walked(3, 600, 700));
        assert_eq!(m.frontier, 950);
        assert!(!m.walk_ends_after(700));
        assert!(m.walk_ends_after(900));
    }

    #[test]
    fn a_walk_read_to_its_end_leaves_nothing_to_claim() {
        let mut m = Meeting::default();
        m.apply(&MeetStep::Walked {
            page_no: 0,
            ids: Some((1, 40)),
            ascending: true,
            last: true,
        });
        assert_eq!(claim(&mut m, 0, 0), None);
    }

    #[test]
    fn a_list_out_of_id_order_is_read_to_its_end_j4() {
        let mut m = Meeting::default();
        claim(&mut m, 0, 0);
        m.apply(&walked(0, 1, 500));
        m.apply(&walked(1, 400, 950)); // starts below page 0's greatest
        assert!(m.unordered());
        assert!(!m.walk_ends_after(950), "the walk no longer trusts the order");
        assert_eq!(claim(&mut m, 1, 0), None, "and lanes claim nothing more");

        let mut m = Meeting::default();
        m.apply(&MeetStep::Walked {
            page_no: 0,
            ids: Some((1, 9)),
            ascending: false,
            last: false,
        });
        assert_eq!(m.unordered_at, Some(0), "a page not ascending in itself");

        // A second copy of a page compares with the page before it, not with itself.
        let mut m = Meeting::default();
        m.apply(&walked(0, 1, 100));
        m.apply(&walked(1, 101, 200));
        m.apply(&walked(1, 101, 200));
        assert!(!m.unordered());

        // Two copies of one page read to 201 and to 200 (201 restored in between); the one that
        // read less won, so the next page starts at 201: in order, not a false alarm.
        let mut m = Meeting::default();
        m.apply(&walked(4, 101, 201));
        m.apply(&walked(4, 101, 200));
        m.apply(&walked(5, 201, 300));
        assert!(!m.unordered());
        assert_eq!(m.frontier, 300);
    }

    #[test]
    fn claims_reach_id_zero_and_stop() {
        let mut m = Meeting::default();
        m.apply(&MeetStep::Claim {
            lane: 0,
            page_no: 0,
            top: 50,
            width: 100,
        });
        assert_eq!(
            m.claim_of(0, 0),
            Some(Some((1, u64::MAX))),
            "ids start at 1: the frontier is 0"
        );
        m.low = Some(0);
        assert_eq!(claim(&mut m, 1, 0), None);
    }
}
