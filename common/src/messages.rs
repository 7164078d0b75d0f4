//! The messages on hubsync's queues, defined once and used by every role.
//!
//! Every message is JSON with a `"v"` version and a `"kind"`. Decoding checks both before
//! anything else, so a message from a newer or foreign producer is a clear error (and, after
//! its retries, a dead letter) rather than a misread.

use serde::{Deserialize, Serialize};

use crate::clock::{day_of, EpochMs};

/// The message format version this build writes and reads.
pub const MESSAGE_VERSION: u32 = 1;
/// Bodies larger than this are refused before parsing (SQS's own limit is 256 KiB).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestedMode {
    /// Decide from the flag and the sync state (the seed's rules).
    Auto,
    Full,
    Incremental,
}

/// A request to sync one table, as the producer receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    pub request_id: String,
    pub table: String,
    pub mode: RequestedMode,
    pub requested_at_ms: EpochMs,
}

/// A query that stays under the search cap, read as one chain of page jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "read", rename_all = "snake_case")]
pub enum Slice {
    /// The list endpoint, every live record of one object type (full sync).
    List { object_type: String },
    /// The list endpoint with `archived=true`, keeping records archived at or after `since_ms`
    /// (incremental sync: search never returns archived records).
    ListArchived { object_type: String, since_ms: EpochMs },
    /// The search endpoint: modified in `[from_ms, to_ms]`, id in `[id_min, id_max]`,
    /// paged by `hs_object_id` ascending (a keyset, so records leaving the window mid-read
    /// never shift a page boundary).
    Search {
        object_type: String,
        from_ms: EpochMs,
        to_ms: EpochMs,
        id_min: u64,
        id_max: u64,
    },
    /// A full sync's share of one object type through the search endpoint: created in
    /// `[from_ms, to_ms]`, id in `[id_min, id_max]`, paged by `hs_object_id` ascending like
    /// [`Slice::Search`]. `dt` is the created day, so such a slice can only stage into the
    /// days it spans ([`Slice::days`]): once every slice spanning a day is done, that
    /// partition merges while the rest of the backfill goes on.
    Created {
        object_type: String,
        from_ms: EpochMs,
        to_ms: EpochMs,
        id_min: u64,
        id_max: u64,
    },
}

impl Slice {
    pub fn object_type(&self) -> &str {
        match self {
            Slice::List { object_type }
            | Slice::ListArchived { object_type, .. }
            | Slice::Search { object_type, .. }
            | Slice::Created { object_type, .. } => object_type,
        }
    }

    /// The created days (days since the epoch, UTC) whose partitions this slice can stage
    /// into, or `None` when it may touch any partition (a list walk, a modified window).
    pub fn days(&self) -> Option<(i64, i64)> {
        match self {
            Slice::Created { from_ms, to_ms, .. } => Some((day_of(*from_ms), day_of(*to_ms))),
            _ => None,
        }
    }
}

/// Fetch one page of one slice of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageJob {
    pub run_id: String,
    pub table: String,
    pub slice_no: u32,
    pub page_no: u32,
    pub slice: Slice,
    /// The list `after` cursor, or the last `hs_object_id` read for search; none on page 0.
    pub cursor: Option<String>,
}

impl PageJob {
    /// Deterministic id: a redelivered job overwrites the same staged files and finds its own
    /// done-marker.
    pub fn job_id(&self) -> String {
        format!("s{:05}-p{:06}", self.slice_no, self.page_no)
    }

    /// Page 0 of slice `slice_no` of `run`.
    pub fn first(run: &crate::ports::Run, slice_no: u32, slice: Slice) -> PageJob {
        PageJob {
            run_id: run.run_id.clone(),
            table: run.table.clone(),
            slice_no,
            page_no: 0,
            slice,
            cursor: None,
        }
    }

    pub fn next(&self, cursor: String) -> PageJob {
        PageJob {
            page_no: self.page_no + 1,
            cursor: Some(cursor),
            ..self.clone()
        }
    }
}

/// Merge the run's staged files of one partition into the live partition. `dt: None` is the
/// commit-only task of a run that touched no partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeTask {
    pub run_id: String,
    pub table: String,
    pub dt: Option<String>,
    /// 0 for a partition's merge; n > 0 for the n-th extra merge of a partition that a page
    /// staged into after its merge was queued (see `Run::apply_page`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pass: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl MergeTask {
    /// FIFO message group: merges of one partition never overlap.
    pub fn group_id(&self) -> String {
        format!("{}#{}", self.table, self.dt.as_deref().unwrap_or("-"))
    }

    /// FIFO deduplication id and done-marker name.
    pub fn task_id(&self) -> String {
        let dt = self.dt.as_deref().unwrap_or("-");
        match self.pass {
            0 => format!("{}:{dt}", self.run_id),
            n => format!("{}:{dt}:{n}", self.run_id),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    SyncRequest(SyncRequest),
    PageJob(PageJob),
    MergeTask(MergeTask),
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    v: u32,
    #[serde(flatten)]
    body: Body,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("message is {0} bytes, over the {MAX_MESSAGE_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("message is not valid JSON: {0}")]
    NotJson(String),
    #[error("message has no numeric `v` (format version); was it sent by hubsync?")]
    NoVersion,
    #[error("message format version {0} is not supported (this build reads {MESSAGE_VERSION}); upgrade the workers")]
    UnsupportedVersion(u64),
    #[error("message has an invalid field: {0}")]
    Invalid(String),
    #[error("message does not match its kind: {0}")]
    Shape(String),
    #[error("expected a {expected} message, got {got}")]
    WrongKind { expected: &'static str, got: String },
}

pub fn encode(body: &Body) -> String {
    // Serializing these plain structs cannot fail.
    serde_json::to_string(&Envelope {
        v: MESSAGE_VERSION,
        body: body.clone(),
    })
    .unwrap_or_default()
}

pub fn decode(raw: &str) -> Result<Body, DecodeError> {
    if raw.len() > MAX_MESSAGE_BYTES {
        return Err(DecodeError::TooLarge(raw.len()));
    }
    let value: serde_json::Value =
        serde_json::from_str(raw).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    let v = value
        .get("v")
        .and_then(|v| v.as_u64())
        .ok_or(DecodeError::NoVersion)?;
    if v != u64::from(MESSAGE_VERSION) {
        return Err(DecodeError::UnsupportedVersion(v));
    }
    let env: Envelope = serde_json::from_value(value).map_err(|e| DecodeError::Shape(e.to_string()))?;
    env.body.validate()?;
    Ok(env.body)
}

/// A name that becomes part of a lake path or a queue id: letters, digits, `-`, `_`, `.`,
/// not starting with `.` (no `/`, no `..`: a message can never point outside its table).
fn check_name(field: &str, value: &str) -> Result<(), DecodeError> {
    let ok = !value.is_empty()
        && value.len() <= 200
        && !value.starts_with('.')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(DecodeError::Invalid(format!(
            "`{field}` {value:?} must be 1 to 200 letters, digits, '-', '_' or '.', not starting with '.'"
        )))
    }
}

impl Body {
    /// Checks what serde cannot: names safe in paths, dates that are dates.
    pub fn validate(&self) -> Result<(), DecodeError> {
        match self {
            Body::SyncRequest(r) => {
                check_name("request_id", &r.request_id)?;
                check_name("table", &r.table)
            }
            Body::PageJob(j) => {
                check_name("run_id", &j.run_id)?;
                check_name("table", &j.table)
            }
            Body::MergeTask(t) => {
                check_name("run_id", &t.run_id)?;
                check_name("table", &t.table)?;
                match &t.dt {
                    Some(dt)
                        if chrono::NaiveDate::parse_from_str(dt, "%Y-%m-%d").is_err() || dt.len() != 10 =>
                    {
                        Err(DecodeError::Invalid(format!(
                            "`dt` {dt:?} is not a YYYY-MM-DD date"
                        )))
                    }
                    _ => Ok(()),
                }
            }
        }
    }
}

fn kind_name(b: &Body) -> String {
    match b {
        Body::SyncRequest(_) => "sync_request",
        Body::PageJob(_) => "page_job",
        Body::MergeTask(_) => "merge_task",
    }
    .to_string()
}

pub fn decode_sync_request(raw: &str) -> Result<SyncRequest, DecodeError> {
    match decode(raw)? {
        Body::SyncRequest(r) => Ok(r),
        other => Err(DecodeError::WrongKind {
            expected: "sync_request",
            got: kind_name(&other),
        }),
    }
}

pub fn decode_page_job(raw: &str) -> Result<PageJob, DecodeError> {
    match decode(raw)? {
        Body::PageJob(j) => Ok(j),
        other => Err(DecodeError::WrongKind {
            expected: "page_job",
            got: kind_name(&other),
        }),
    }
}

pub fn decode_merge_task(raw: &str) -> Result<MergeTask, DecodeError> {
    match decode(raw)? {
        Body::MergeTask(t) => Ok(t),
        other => Err(DecodeError::WrongKind {
            expected: "merge_task",
            got: kind_name(&other),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> PageJob {
        PageJob {
            run_id: "deals-r1".into(),
            table: "deals".into(),
            slice_no: 3,
            page_no: 0,
            slice: Slice::Search {
                object_type: "deals".into(),
                from_ms: 1,
                to_ms: 2,
                id_min: 0,
                id_max: u64::MAX,
            },
            cursor: None,
        }
    }

    #[test]
    fn round_trip_and_deterministic_ids() {
        let raw = encode(&Body::PageJob(job()));
        assert!(raw.contains("\"v\":1"), "{raw}");
        assert_eq!(decode_page_job(&raw).unwrap(), job());
        assert_eq!(job().job_id(), "s00003-p000000");
        assert_eq!(job().next("42".into()).job_id(), "s00003-p000001");
        let t = MergeTask {
            run_id: "r".into(),
            table: "deals".into(),
            dt: Some("2024-01-02".into()),
            pass: 0,
        };
        assert_eq!(t.group_id(), "deals#2024-01-02");
        assert_eq!(t.task_id(), "r:2024-01-02");
        let again = MergeTask { pass: 2, ..t };
        assert_eq!(
            (again.task_id(), again.group_id()),
            ("r:2024-01-02:2".into(), "deals#2024-01-02".into())
        );
        let raw = encode(&Body::MergeTask(again.clone()));
        assert_eq!(decode_merge_task(&raw).unwrap(), again);
        assert!(!encode(&Body::MergeTask(MergeTask { pass: 0, ..again })).contains("pass"));
    }

    #[test]
    fn bad_messages_say_what_is_wrong() {
        let cases: Vec<(String, &str)> = vec![
            ("not json".into(), "not valid JSON"),
            ("{}".into(), "no numeric `v`"),
            (r#"{"v":"1"}"#.into(), "no numeric `v`"),
            (r#"{"v":2,"kind":"page_job"}"#.into(), "version 2 is not supported"),
            (r#"{"v":1,"kind":"party"}"#.into(), "does not match"),
            (r#"{"v":1,"kind":"page_job","run_id":"r"}"#.into(), "does not match"),
            (
                r#"{"v":1,"kind":"page_job","run_id":"r","table":"t","slice_no":0,"page_no":-1,"slice":{"read":"list","object_type":"deals"},"cursor":null}"#.into(),
                "does not match",
            ),
            ("x".repeat(MAX_MESSAGE_BYTES + 1), "over the"),
        ];
        for (raw, want) in cases {
            let err = decode_page_job(&raw).unwrap_err().to_string();
            assert!(err.contains(want), "{}: {err}", &raw[..raw.len().min(60)]);
        }
        let merge = encode(&Body::MergeTask(MergeTask {
            run_id: "r".into(),
            table: "t".into(),
            dt: None,
            pass: 0,
        }));
        assert!(decode_page_job(&merge)
            .unwrap_err()
            .to_string()
            .contains("expected a page_job message, got merge_task"));
    }
}
