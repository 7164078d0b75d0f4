//! Slices: the independent chains of page jobs a run is read as.
//!
//! - A full run reads each object type either with one list walk (types of at most
//!   `list_walk_max_records` records: cheap, exact, on the general rate limit) or, for larger
//!   ones, on both read paths at once (`BackfillReads::Both`, the default): one list walk up
//!   from the lowest ids and `search_lanes` search lanes claiming id ranges down from the
//!   highest, meeting in id space (J1-J4, `common::meet`); their partitions merge at the close.
//!   With `BackfillReads::Search`, larger types are read by search slices over created-date
//!   windows cut at day boundaries. Those run in parallel on the search limit, and each owns
//!   whole `dt` partitions (dt is the created day), so a partition merges as soon as its slices
//!   are done while the backfill goes on (P1).
//! - An incremental run cuts its modified window into id ranges read at once (see
//!   [`modified_window`]) and adds one archived-records read per object type (search never
//!   returns archived records).
//!
//! Splitting counts with the search endpoint (`total` of a one-record page; one count per cut,
//! the right half's count is the rest, an estimate that never drops it): the biggest part
//! is split first, at the day boundary nearest its middle, else at its middle millisecond, else
//! (one millisecond holding more than the target: bulk edits and imports stamp one instant on
//! many thousands of records) by `hs_object_id`. It stops when every part holds at most the
//! target or the run has [`MAX_PLAN_SLICES`] slices. Parts counted empty are dropped: a record
//! that lands there later has a modified time inside the next incremental window. Every slice is
//! paged by an id keyset, so each request is the first page of its query and none reaches the
//! search cap, whatever a slice holds.

use std::collections::BinaryHeap;

use common::catalog::{SourceSpec, TableSpec};
use common::clock::{EpochMs, DAY_MS};
use common::messages::{Slice, OPEN_END_MS, OPEN_START_MS};
use common::pipeline::{BackfillReads, Settings};
use hubspot::query::{slice_filters, TimeField, ID_PROPERTY};
use hubspot::rate::Window;
use hubspot::{HubSpotClient, HubSpotError};
use wire::{Direction, SearchRequest, Sort, SEARCH_RESULT_CAP};

use crate::decide::Decision;

/// Most slices in one run's plan. The plan lives in the run's ledger entry (one DynamoDB item,
/// 400 KB at most), and splitting costs search requests; past it, slices just hold more.
pub const MAX_PLAN_SLICES: usize = 512;

/// How a run is cut into slices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanOptions {
    /// Records a slice should hold at most (capped at the search cap).
    pub slice_records: u64,
    /// Object types with at most this many records are backfilled by one list walk.
    pub list_walk_max_records: u64,
    /// How larger ones are read.
    pub reads: BackfillReads,
    /// Records a lane claims at once (J1).
    pub lane_records: u64,
    /// Search lanes beside the walk.
    pub search_lanes: usize,
    /// Slices fetched at once: the walk and the lanes must all fit.
    pub slices_in_flight: usize,
}

impl PlanOptions {
    pub fn from_settings(s: &Settings) -> Self {
        PlanOptions {
            slice_records: s.backfill_slice_records,
            list_walk_max_records: s.list_walk_max_records,
            reads: s.backfill_reads,
            lane_records: s.lane_records,
            search_lanes: s.search_lanes,
            slices_in_flight: s.slices_in_flight,
        }
    }
}

/// A run's slices and the records their counts add up to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub slices: Vec<Slice>,
    /// The sum of the search totals the plan read (the full sync's count, each modified
    /// window's parts); `None` when a slice was planned without a count (a list walk chosen
    /// without counting, or after counting failed). Archived records are not counted.
    pub expected_records: Option<u64>,
}

/// Plans the slices of a run.
pub async fn plan(
    client: &HubSpotClient,
    table: &TableSpec,
    decision: &Decision,
    options: PlanOptions,
) -> Result<Plan, HubSpotError> {
    let max_parts = (MAX_PLAN_SLICES / table.sources.len().max(1)).max(1);
    let target = options.slice_records.clamp(1, SEARCH_RESULT_CAP);
    let mut slices = Vec::new();
    let mut expected = Some(0u64);
    let mut counted = |n: Option<u64>| expected = expected.zip(n).map(|(a, b)| a + b);
    for source in &table.sources {
        let object_type = source.object_type.clone();
        let t0 = decision.window_to_ms;
        match decision.window_from_ms {
            None => {
                if options.list_walk_max_records == u64::MAX {
                    counted(None);
                    slices.push(Slice::List { object_type });
                    continue;
                }
                // C1: every created date, before 1970 and after T0 included.
                let all = Part::new(OPEN_START_MS, OPEN_END_MS);
                // One request answers both the count and the first creation time.
                let first = match edge(
                    client,
                    source,
                    TimeField::Created,
                    &all,
                    Direction::Ascending,
                    false,
                )
                .await
                {
                    Ok(first) => first,
                    Err(e @ (HubSpotError::Unauthorized(_) | HubSpotError::DailyLimit { .. })) => {
                        return Err(e)
                    }
                    // The list walk needs no search: slower, never wrong.
                    Err(e) => {
                        tracing::warn!(%object_type, error = %e,
                            "counting records through search failed; backfilling with one list walk");
                        counted(None);
                        slices.push(Slice::List { object_type });
                        continue;
                    }
                };
                let total = first.total;
                counted(Some(total));
                if total <= options.list_walk_max_records {
                    slices.push(Slice::List { object_type });
                    continue;
                }
                // Both paths pay off where search is limited (HubSpot: ~5 a second). Without a
                // search limit (a simulator with limits off), created-date slices read as fast
                // in parallel and their partitions merge while the backfill fetches.
                let search_limited = client.budget().window(Window::Search).configured() > 0;
                if options.reads == BackfillReads::Both && search_limited {
                    let met = both_paths(client, source, total, options).await?;
                    tracing::info!(%object_type, records = total, lanes = met.len().saturating_sub(1),
                        "backfill planned on both read paths: a list walk and search lanes");
                    slices.extend(met);
                    continue;
                }
                let from = match first.record {
                    Some((created, _)) if created != OPEN_START_MS => created.min(t0),
                    _ => t0,
                };
                let mut parts = split(
                    client,
                    source,
                    TimeField::Created,
                    (from, t0),
                    Some(total),
                    target,
                    max_parts,
                )
                .await?;
                if parts.is_empty() {
                    // Counted, then gone (search moved on): the list walk reads what is there.
                    slices.push(Slice::List { object_type });
                    continue;
                }
                open_ends(&mut parts);
                tracing::info!(%object_type, records = total, slices = parts.len(),
                    "backfill planned as created-date slices");
                slices.extend(parts.into_iter().map(|p| Slice::Created {
                    object_type: object_type.clone(),
                    from_ms: p.from,
                    to_ms: p.to,
                    id_min: p.id_min,
                    id_max: p.id_max,
                }));
            }
            Some(from) => {
                let (total, parts) = modified_window(client, source, (from, t0), target, max_parts).await?;
                counted(Some(total));
                slices.extend(parts.into_iter().map(|p| Slice::Search {
                    object_type: object_type.clone(),
                    from_ms: p.from,
                    to_ms: p.to,
                    id_min: p.id_min,
                    id_max: p.id_max,
                }));
                slices.push(Slice::ListArchived {
                    object_type,
                    since_ms: from,
                });
            }
        }
    }
    Ok(Plan {
        slices,
        expected_records: expected,
    })
}

/// A backfill on both read paths (J1-J4): the walk, then the lanes, each lane claiming about
/// `lane_records` records' worth of ids at a time going down from the highest id. Ids are
/// spread unevenly, so the width is an average: a claim that holds more is paged by its
/// keyset all the same, one that holds none costs one request.
async fn both_paths(
    client: &HubSpotClient,
    source: &SourceSpec,
    total: u64,
    options: PlanOptions,
) -> Result<Vec<Slice>, HubSpotError> {
    let object_type = source.object_type.clone();
    let walk = Slice::Walk {
        object_type: object_type.clone(),
    };
    let (Some(lowest), Some(highest)) = (
        id_edge(client, source, Direction::Ascending).await?,
        id_edge(client, source, Direction::Descending).await?,
    ) else {
        // Counted, then gone (search moved on): the walk alone reads what is there.
        return Ok(vec![Slice::List { object_type }]);
    };
    let span = u128::from(highest.saturating_sub(lowest)) + 1;
    let width = (span * u128::from(options.lane_records.max(1)) / u128::from(total.max(1))).max(1);
    let width = u64::try_from(width).unwrap_or(u64::MAX);
    let lanes = options
        .search_lanes
        .min(options.slices_in_flight.saturating_sub(1))
        .max(1) as u32;
    let mut slices = vec![walk];
    slices.extend((0..lanes).map(|lane| Slice::Lane {
        object_type: object_type.clone(),
        lane,
        top: highest.saturating_add(1),
        width,
    }));
    Ok(slices)
}

/// The lowest (ascending) or highest id of an object type, by search; `None` when it has none.
async fn id_edge(
    client: &HubSpotClient,
    source: &SourceSpec,
    direction: Direction,
) -> Result<Option<u64>, HubSpotError> {
    let req = SearchRequest {
        filter_groups: Vec::new(),
        sorts: vec![Sort {
            property_name: ID_PROPERTY.into(),
            direction,
        }],
        properties: vec![ID_PROPERTY.into()],
        limit: Some(1),
        after: None,
    };
    let resp = client.search_page(&source.object_type, &req).await?;
    Ok(resp.results.first().and_then(|r| r.id.trim().parse().ok()))
}

/// C1: a full sync's created slices cover the whole timeline. The first part's window opens
/// at the beginning of time and the last part's never closes, so records created before the
/// earliest the plan counted (imports dated 1900, say) or after T0 (imports dated in the
/// future, records created during the run) belong to a slice, and a full run's commit never
/// drops their partitions as untouched. A part cut by id within one millisecond keeps its
/// bounds, and an open slice of its own takes that side instead.
fn open_ends(parts: &mut Vec<Part>) {
    let (Some(first), Some(last)) = (parts.first().copied(), parts.last().copied()) else {
        return;
    };
    let whole_ids = |p: &Part| p.id_min == 0 && p.id_max == u64::MAX;
    if whole_ids(&first) {
        parts[0].from = OPEN_START_MS;
    } else {
        parts.insert(0, Part::new(OPEN_START_MS, first.from - 1));
    }
    let n = parts.len();
    if whole_ids(&last) {
        parts[n - 1].to = OPEN_END_MS;
    } else {
        parts.push(Part::new(last.to + 1, OPEN_END_MS));
    }
}

/// A window being split: time in `[from, to]`, id in `[id_min, id_max]`, and its count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Part {
    from: EpochMs,
    to: EpochMs,
    id_min: u64,
    id_max: u64,
    count: u64,
}

impl Part {
    fn new(from: EpochMs, to: EpochMs) -> Self {
        Part {
            from,
            to,
            id_min: 0,
            id_max: u64::MAX,
            count: 0,
        }
    }
}

/// Biggest first.
impl Ord for Part {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.count, std::cmp::Reverse((self.from, self.id_min)))
            .cmp(&(other.count, std::cmp::Reverse((other.from, other.id_min))))
    }
}

impl PartialOrd for Part {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

fn search(source: &SourceSpec, field: TimeField, r: &Part, sort: Option<(&str, Direction)>) -> SearchRequest {
    SearchRequest {
        filter_groups: slice_filters(source, field, r.from, r.to, r.id_min, r.id_max, None),
        sorts: sort
            .map(|(property, direction)| {
                vec![Sort {
                    property_name: property.into(),
                    direction,
                }]
            })
            .unwrap_or_default(),
        properties: vec![ID_PROPERTY.into(), field.property(source).into()],
        limit: Some(1),
        after: None,
    }
}

async fn count(
    client: &HubSpotClient,
    source: &SourceSpec,
    field: TimeField,
    r: &Part,
) -> Result<u64, HubSpotError> {
    let req = search(source, field, r, None);
    Ok(client.search_page(&source.object_type, &req).await?.total)
}

/// What a one-record search of a part answered: the part's count and its first record.
struct Edge {
    total: u64,
    /// The first record's time (by the part's field) and id.
    record: Option<(EpochMs, u64)>,
}

/// The first record of a part by `field` (ascending) or by id (either way), with the part's
/// count (every search answer carries it).
async fn edge(
    client: &HubSpotClient,
    source: &SourceSpec,
    field: TimeField,
    r: &Part,
    direction: Direction,
    by_id: bool,
) -> Result<Edge, HubSpotError> {
    let by = if by_id || r.from == r.to {
        ID_PROPERTY
    } else {
        field.property(source)
    };
    let req = search(source, field, r, Some((by, direction)));
    let resp = client.search_page(&source.object_type, &req).await?;
    let record = resp.results.first().and_then(|rec| {
        let id = rec.id.parse().ok()?;
        let time = rec
            .properties
            .get(field.property(source))
            .and_then(|v| v.as_deref())
            .and_then(wire::parse_ms)
            .unwrap_or(r.from);
        Some((time, id))
    });
    Ok(Edge {
        total: resp.total,
        record,
    })
}

/// Records an incremental slice holds at least before its window is cut (ten search pages):
/// each cut costs a partial last page.
const MIN_WINDOW_SLICE_RECORDS: u64 = 2_000;

/// How an incremental window of `total` records is cut: (records a slice holds at most,
/// slices at most). Eight slices of at least `min(target, MIN_WINDOW_SLICE_RECORDS)` records
/// each, and as many of `target` records as a larger window needs; at most `max_parts` (those
/// past the slices in flight start as others finish, L5).
fn window_slices(total: u64, target: u64, max_parts: usize) -> (u64, usize) {
    let target = target.max(1);
    let per_slice = total
        .div_ceil(8)
        .clamp(target.min(MIN_WINDOW_SLICE_RECORDS), target);
    let slices = total.div_ceil(per_slice).clamp(1, max_parts.max(1) as u64);
    (per_slice, usize::try_from(slices).unwrap_or(usize::MAX))
}

/// An incremental run's modified window `[from, to]` cut by record id, read at once: a
/// window's records crowd into a few instants (an update lands at one) and, where ids follow
/// creation, into a few id ranges, so the window is counted, its id edges found (two requests
/// sent together), and then, round by round, every range over the slice size is halved at its
/// middle id, the left halves of a round counted together: a round trip per round, not per
/// cut. Ranges counted empty are dropped (a record that lands there later has a modified time
/// inside the next window); the first range opens at 0 and the last at `u64::MAX`, so the
/// rest cover every id. Returns the window's count and its parts in id order.
async fn modified_window(
    client: &HubSpotClient,
    source: &SourceSpec,
    (from, to): (EpochMs, EpochMs),
    target: u64,
    max_parts: usize,
) -> Result<(u64, Vec<Part>), HubSpotError> {
    let whole = Part::new(from, to);
    let total = count(client, source, TimeField::Modified, &whole).await?;
    if total == 0 {
        return Ok((0, Vec::new()));
    }
    let (per_slice, most) = window_slices(total, target, max_parts);
    if most == 1 {
        return Ok((total, vec![whole]));
    }
    let (lo, hi) = tokio::try_join!(
        edge(
            client,
            source,
            TimeField::Modified,
            &whole,
            Direction::Ascending,
            true
        ),
        edge(
            client,
            source,
            TimeField::Modified,
            &whole,
            Direction::Descending,
            true
        ),
    )?;
    let (Some((_, lo)), Some((_, hi))) = (lo.record, hi.record) else {
        // Counted but not found (search moved on): one slice reads what is there.
        return Ok((total, vec![whole]));
    };
    let mut parts = vec![Part {
        id_min: lo,
        id_max: hi,
        count: total,
        ..whole
    }];
    loop {
        let mut cuts: Vec<usize> = (0..parts.len())
            .filter(|i| parts[*i].count > per_slice && parts[*i].id_min < parts[*i].id_max)
            .collect();
        cuts.sort_by_key(|i| std::cmp::Reverse(parts[*i].count));
        cuts.truncate(most.saturating_sub(parts.len()));
        if cuts.is_empty() {
            break;
        }
        let halves =
            futures::future::try_join_all(cuts.iter().map(|i| halve(client, source, parts[*i]))).await?;
        for (i, [left, right]) in cuts.into_iter().zip(halves) {
            parts[i] = left;
            parts.push(right);
        }
        parts.retain(|p| p.count > 0);
    }
    parts.sort_by_key(|p| p.id_min);
    if let Some(first) = parts.first_mut() {
        first.id_min = 0;
    }
    if let Some(last) = parts.last_mut() {
        last.id_max = u64::MAX;
    }
    Ok((total, parts))
}

/// `p` cut at its middle id, the left half counted and the right half's count the rest.
async fn halve(client: &HubSpotClient, source: &SourceSpec, p: Part) -> Result<[Part; 2], HubSpotError> {
    let mid = p.id_min + (p.id_max - p.id_min) / 2;
    let mut left = Part { id_max: mid, ..p };
    let mut right = Part { id_min: mid + 1, ..p };
    left.count = count(client, source, TimeField::Modified, &left).await?;
    // An estimate (search counts drift while records change): kept even when it says empty.
    right.count = p.count.saturating_sub(left.count).max(1);
    Ok([left, right])
}

/// Where to cut `[from, to]` (`from < to`): the day boundary nearest the middle when one lies
/// inside, else the middle. Returns the first millisecond of the right half.
fn cut(from: EpochMs, to: EpochMs) -> EpochMs {
    let mid = from + (to - from) / 2 + 1;
    let below = mid.div_euclid(DAY_MS) * DAY_MS;
    let above = below + DAY_MS;
    [below, above]
        .into_iter()
        .filter(|b| *b > from && *b <= to)
        .min_by_key(|b| (b - mid).abs())
        .unwrap_or(mid)
}

/// Splits `[from, to]` (see the module docs; `counted`: its count when already known),
/// returning its parts in time order: none counted empty.
async fn split(
    client: &HubSpotClient,
    source: &SourceSpec,
    field: TimeField,
    (from, to): (EpochMs, EpochMs),
    counted: Option<u64>,
    target: u64,
    max_parts: usize,
) -> Result<Vec<Part>, HubSpotError> {
    let mut whole = Part::new(from, to);
    whole.count = match counted {
        Some(n) => n,
        None => count(client, source, field, &whole).await?,
    };
    let mut heap = BinaryHeap::new();
    let mut done = Vec::new();
    if whole.count > 0 {
        heap.push(whole);
    }
    while let Some(mut p) = heap.pop() {
        if p.count <= target || heap.len() + done.len() + 2 > max_parts {
            done.push(p);
            break;
        }
        let halves = if p.to > p.from {
            let at = cut(p.from, p.to);
            [Part { to: at - 1, ..p }, Part { from: at, ..p }]
        } else {
            if p.id_min == 0 && p.id_max == u64::MAX {
                let lo = edge(client, source, field, &p, Direction::Ascending, true).await?;
                let hi = edge(client, source, field, &p, Direction::Descending, true).await?;
                let (Some((_, lo)), Some((_, hi))) = (lo.record, hi.record) else {
                    // Counted but not found (search moved on): page it as it is.
                    done.push(p);
                    continue;
                };
                p.id_min = lo;
                p.id_max = hi;
            }
            if p.id_min >= p.id_max {
                // One record id: keyset paging still reads it whole.
                tracing::warn!(object_type = %source.object_type, ms = p.from, count = p.count,
                    "one millisecond and id range holds more than the slice target; reading it as one slice");
                done.push(p);
                continue;
            }
            let mid = p.id_min + (p.id_max - p.id_min) / 2;
            [Part { id_max: mid, ..p }, Part { id_min: mid + 1, ..p }]
        };
        let [mut left, mut right] = halves;
        left.count = count(client, source, field, &left).await?;
        if left.count > 0 {
            heap.push(left);
        }
        // The right half's count is derived, saving a request per cut. Being an estimate (search
        // counts drift while records change), it never drops the half as empty.
        right.count = p.count.saturating_sub(left.count);
        if right.count > 0 {
            heap.push(right);
        } else {
            done.push(right);
        }
    }
    done.extend(heap);
    done.sort_by_key(|p| (p.from, p.id_min));
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_fall_on_the_day_boundary_nearest_the_middle() {
        let day = |d: i64| d * DAY_MS;
        assert_eq!(cut(day(0), day(10) - 1), day(5));
        assert_eq!(
            cut(day(0) + 5, day(3)),
            day(2),
            "a boundary, not the exact middle"
        );
        assert_eq!(
            cut(day(4) + 10, day(4) + 20),
            day(4) + 16,
            "inside one day: the middle"
        );
        assert_eq!(
            cut(day(4) - 1, day(4)),
            day(4),
            "two milliseconds across midnight"
        );
        assert_eq!(cut(7, 8), 8);
    }

    #[test]
    fn a_full_plan_opens_its_first_and_last_slices_c1() {
        let mut parts = vec![Part::new(100, 199), Part::new(200, 299)];
        open_ends(&mut parts);
        assert_eq!(
            parts.iter().map(|p| (p.from, p.to)).collect::<Vec<_>>(),
            [(OPEN_START_MS, 199), (200, OPEN_END_MS)]
        );
        // One millisecond cut by id keeps its bounds; open slices of their own take the sides.
        let by_id = Part {
            id_min: 5,
            ..Part::new(300, 300)
        };
        let mut parts = vec![by_id];
        open_ends(&mut parts);
        assert_eq!(
            parts.iter().map(|p| (p.from, p.to, p.id_min)).collect::<Vec<_>>(),
            [(OPEN_START_MS, 299, 0), (300, 300, 5), (301, OPEN_END_MS, 0)]
        );
    }

    #[test]
    fn an_incremental_window_is_cut_by_its_size() {
        assert_eq!(window_slices(1, 10_000, 512), (2_000, 1));
        assert_eq!(window_slices(2_000, 10_000, 512), (2_000, 1));
        assert_eq!(window_slices(10_175, 10_000, 512), (2_000, 6));
        assert_eq!(window_slices(217, 50, 512), (50, 5));
        assert_eq!(window_slices(10_175, 250, 512), (250, 41));
        assert_eq!(window_slices(1_000_000, 10_000, 512), (10_000, 100));
        assert_eq!(window_slices(1_000_000, 10_000, 4), (10_000, 4));
    }

    #[test]
    fn biggest_part_first() {
        let mut heap = BinaryHeap::new();
        for (from, count) in [(0, 5), (10, 50), (20, 7)] {
            heap.push(Part {
                count,
                ..Part::new(from, from + 9)
            });
        }
        assert_eq!(heap.pop().map(|p| p.from), Some(10));
    }
}
