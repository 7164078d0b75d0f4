//! The pages of a backfill read on both paths (the protocol is in [`common::meet`]): a walk
//! job's list requests tell the meeting how far they read and end the walk where the lanes
//! begin (J2); a
//! lane's page claims its next range when its cursor asks for one (J1, J3) and reads it by an
//! id keyset.

use common::catalog::SourceSpec;
use common::meet::MeetStep;
use common::messages::{PageJob, Slice};
use common::pipeline::Pipeline;
use common::ports::Run;
use hubspot::HubSpotClient;

use crate::fetch::{fetch_page, id_range_page, Page};
use crate::ConsumerError;

/// A lane's cursor when its next page claims a range.
const CLAIM_NEXT: &str = "next";

/// Where a lane's page reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LaneCursor {
    /// Claim the next range (page 0, or the page after a range was read to its end).
    Claim,
    /// Go on inside the claimed `lo..=hi` after id `after`.
    Within { lo: u64, hi: u64, after: u64 },
}

fn parse_lane_cursor(cursor: Option<&str>) -> Result<LaneCursor, ConsumerError> {
    let Some(c) = cursor else {
        return Ok(LaneCursor::Claim);
    };
    if c == CLAIM_NEXT {
        return Ok(LaneCursor::Claim);
    }
    let bad = || {
        ConsumerError::BadJob(format!(
            "lane cursor `{c}` is not `{CLAIM_NEXT}` or <lo>-<hi>-<after>"
        ))
    };
    let mut parts = c.split('-').map(|n| n.parse::<u64>().map_err(|_| bad()));
    let (Some(lo), Some(hi), Some(after), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    Ok(LaneCursor::Within {
        lo: lo?,
        hi: hi?,
        after: after?,
    })
}

fn lane_cursor(lo: u64, hi: u64, after: u64) -> String {
    format!("{lo}-{hi}-{after}")
}

/// Fetches one page of a lane: claims a range first if its cursor says so. A lane with
/// nothing left to claim reads nothing and ends.
pub async fn lane_page(
    p: &Pipeline,
    hubspot: &HubSpotClient,
    run: &Run,
    job: &PageJob,
    source: &SourceSpec,
    properties: Vec<String>,
) -> Result<Page, ConsumerError> {
    let Slice::Lane {
        object_type,
        lane,
        top,
        width,
    } = &job.slice
    else {
        return Err(ConsumerError::BadJob(format!(
            "page job {} is not a lane's",
            job.job_id()
        )));
    };
    let (lo, hi, after) = match parse_lane_cursor(job.cursor.as_deref())? {
        LaneCursor::Within { lo, hi, after } => (lo, hi, Some(after)),
        LaneCursor::Claim => {
            let step = MeetStep::Claim {
                lane: *lane,
                page_no: job.page_no,
                top: *top,
                width: *width,
            };
            let meeting = p.ledger.meet(&run.run_id, object_type, &step).await?;
            match meeting.claim_of(*lane, job.page_no) {
                Some(Some((lo, hi))) => {
                    tracing::debug!(run_id = %run.run_id, %object_type, lane, lo, hi, "lane claimed a range");
                    (lo, hi, None)
                }
                Some(None) => {
                    tracing::info!(run_id = %run.run_id, %object_type, lane, frontier = meeting.frontier,
                        low = ?meeting.low, "lane met the list walk: nothing left to claim");
                    return Ok(Page {
                        records: Vec::new(),
                        next_cursor: None,
                    });
                }
                // A later page of the lane claimed already, so this page was recorded and this
                // copy is stale: the retry finds its marker.
                None => {
                    return Err(ConsumerError::Stage(format!(
                        "lane {lane} of {} claimed past page {} already; retrying finds its marker",
                        run.run_id, job.page_no
                    )))
                }
            }
        }
    };
    let page = id_range_page(
        hubspot,
        source,
        object_type,
        (lo, hi),
        after,
        properties,
        &p.settings,
    )
    .await?;
    let next_cursor = match page.next_cursor.as_deref() {
        Some(last) => {
            let last: u64 = last.parse().map_err(|_| {
                ConsumerError::BadRecord(format!("search cursor `{last}` is not a record id"))
            })?;
            lane_cursor(lo, hi, last)
        }
        None => CLAIM_NEXT.to_string(),
    };
    Ok(Page {
        records: page.records,
        next_cursor: Some(next_cursor),
    })
}

/// Fetches a walk job's list pages, up to `walk_requests_per_job` of them one after another,
/// recording each in the meeting; the walk ends after the page that reached the lanes' lowest
/// claim (J2), and goes on to the end if the list is out of id order (J4).
pub async fn walk_pages(
    p: &Pipeline,
    hubspot: &HubSpotClient,
    run: &Run,
    job: &PageJob,
    source: &SourceSpec,
    properties: Vec<String>,
) -> Result<Page, ConsumerError> {
    let requests = p.settings.walk_requests_per_job.max(1);
    let mut cursor = job.cursor.clone();
    let mut records = Vec::new();
    for i in 0..requests {
        let page = fetch_page(
            hubspot,
            source,
            &job.slice,
            cursor.as_deref(),
            properties.clone(),
            &p.settings,
        )
        .await?;
        // The meeting numbers list requests, so that J4 compares each with the one before it.
        let request_no = job.page_no.saturating_mul(requests).saturating_add(i);
        let page = walk_page(p, run, job, request_no, page).await?;
        records.extend(page.records);
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    Ok(Page {
        records,
        next_cursor: cursor,
    })
}

/// Records what one list request of the walk read in the meeting, and drops its cursor once
/// the walk met the lanes.
async fn walk_page(
    p: &Pipeline,
    run: &Run,
    job: &PageJob,
    request_no: u32,
    mut page: Page,
) -> Result<Page, ConsumerError> {
    let ids: Vec<u64> = page
        .records
        .iter()
        .filter_map(|r| r.id.trim().parse::<u64>().ok())
        .collect();
    let ascending = ids.windows(2).all(|w| w[0] < w[1]);
    let range = ids.iter().min().copied().zip(ids.iter().max().copied());
    let step = MeetStep::Walked {
        page_no: request_no,
        ids: range,
        ascending,
        last: page.next_cursor.is_none(),
    };
    let object_type = job.slice.object_type();
    let meeting = p.ledger.meet(&run.run_id, object_type, &step).await?;
    if meeting.unordered_at == Some(request_no) {
        tracing::warn!(run_id = %run.run_id, %object_type, page = job.page_no,
            "the list is not in id order: the walk reads to its end (J4)");
    }
    if let (Some(_), Some((_, max_id))) = (&page.next_cursor, range) {
        if meeting.walk_ends_after(max_id) {
            tracing::info!(run_id = %run.run_id, %object_type, page = job.page_no, max_id,
                low = ?meeting.low, "the list walk met the search lanes");
            page.next_cursor = None;
        }
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_cursors_round_trip_and_bad_ones_are_refused() {
        assert_eq!(parse_lane_cursor(None).unwrap(), LaneCursor::Claim);
        assert_eq!(parse_lane_cursor(Some("next")).unwrap(), LaneCursor::Claim);
        assert_eq!(
            parse_lane_cursor(Some(&lane_cursor(5, u64::MAX, 17))).unwrap(),
            LaneCursor::Within {
                lo: 5,
                hi: u64::MAX,
                after: 17
            }
        );
        for bad in ["", "1-2", "1-2-3-4", "a-2-3", "NTA="] {
            assert!(
                matches!(parse_lane_cursor(Some(bad)), Err(ConsumerError::BadJob(_))),
                "{bad}"
            );
        }
    }
}
