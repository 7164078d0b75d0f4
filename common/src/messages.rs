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
/// Longest table name and request id. A run id is `<table>-<request_id>` (at most 129
/// characters) and reaches SQS (deduplication ids of 128 at most, hashed past it, see
/// [`MergeTask::dedup_id`]), DynamoDB keys (1,024 bytes) and S3 keys (1,024 bytes).
pub const MAX_NAME_CHARS: usize = 64;
/// Longest run id: a table name, `-`, a request id.
pub const MAX_RUN_ID_CHARS: usize = 2 * MAX_NAME_CHARS + 1;
/// SQS's limit on a FIFO deduplication id.
pub const MAX_DEDUP_ID_CHARS: usize = 128;
/// The open ends of a created-date slice ([`Slice::Created`]): no bound on that side, so a
/// full sync's first and last slices cover created dates before 1970, in the future, or
/// anywhere the plan's counts did not see (C1).
pub const OPEN_START_MS: EpochMs = EpochMs::MIN;
pub const OPEN_END_MS: EpochMs = EpochMs::MAX;

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
    /// Epoch milliseconds; an RFC 3339 string is read too, since that is all EventBridge
    /// Scheduler can put there (`<aws.scheduler.scheduled-time>`, see `infra/schedule.yaml`).
    #[serde(deserialize_with = "epoch_ms_or_rfc3339")]
    pub requested_at_ms: EpochMs,
}

fn epoch_ms_or_rfc3339<'de, D: serde::Deserializer<'de>>(d: D) -> Result<EpochMs, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Instant {
        Ms(EpochMs),
        Text(String),
    }
    match Instant::deserialize(d)? {
        Instant::Ms(ms) => Ok(ms),
        Instant::Text(text) => chrono::DateTime::parse_from_rfc3339(&text)
            .map(|t| t.timestamp_millis())
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "`requested_at_ms` {text:?} is neither epoch milliseconds nor an RFC 3339 time: {e}"
                ))
            }),
    }
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
    /// `[from_ms, to_ms]` ([`OPEN_START_MS`] and [`OPEN_END_MS`] leave a side unbounded), id
    /// in `[id_min, id_max]`, paged by `hs_object_id` ascending like [`Slice::Search`]. `dt`
    /// is the created day, so such a slice stages (all but records whose created date moved
    /// under it) into the days it spans: the partitions it staged into merge as soon as it is
    /// done, while the rest of the backfill goes on (L3).
    Created {
        object_type: String,
        from_ms: EpochMs,
        to_ms: EpochMs,
        id_min: u64,
        id_max: u64,
    },
    /// A full sync's list walk of a large object type, read up from the lowest ids (the list
    /// endpoint's order) while [`Slice::Lane`]s read down from the highest: it ends where the
    /// lanes' claims begin (the meeting, see [`crate::meet`]). Its cursor stays HubSpot's,
    /// opaque; where it has read to comes from its records' ids.
    Walk { object_type: String },
    /// A full sync's share of a large object type through search, beside its [`Slice::Walk`]:
    /// lane `lane` claims id ranges of about `width` ids, one after another, going down from
    /// `top` (the highest id at planning, plus one; the first claim stays open above, so records
    /// created during the run are read), and reads each by an id keyset, until the walk's
    /// frontier is reached. Its cursor is ours: `<lo>-<hi>-<after>` inside a claim, `next`
    /// when the next page claims.
    Lane {
        object_type: String,
        lane: u32,
        top: u64,
        width: u64,
    },
    /// A column backfill (E2): the list endpoint over every live record of one object type,
    /// asking only for the run's backfill columns (with the created and modified properties).
    /// Its pages are staged as patches: the merge writes those columns into the rows it already
    /// holds at the same or an older version, and touches nothing else.
    Backfill { object_type: String },
    /// A snapshot table's one job: HubSpot's owners (`object_type` "owners") or deal and
    /// ticket pipelines ("pipelines"), read whole.
    Snapshot { object_type: String },
    /// A link table's incremental share of merges on its `to` side: records of `merged_type`
    /// modified in `[from_ms, to_ms]` that list merged ids (survivors), paged by id; the
    /// `object_type` records linked to them (the loser's links moved to the survivor) have
    /// their links read again, so no row keeps pointing at a merged-away record.
    Merged {
        object_type: String,
        merged_type: String,
        from_ms: EpochMs,
        to_ms: EpochMs,
    },
}

impl Slice {
    pub fn object_type(&self) -> &str {
        match self {
            Slice::List { object_type }
            | Slice::Walk { object_type }
            | Slice::Lane { object_type, .. }
            | Slice::ListArchived { object_type, .. }
            | Slice::Search { object_type, .. }
            | Slice::Created { object_type, .. }
            | Slice::Backfill { object_type }
            | Slice::Snapshot { object_type }
            | Slice::Merged { object_type, .. } => object_type,
        }
    }

    /// The created days (days since the epoch, UTC) whose partitions this slice stages into,
    /// or `None` when it may touch any partition (a list walk, a modified window).
    pub fn days(&self) -> Option<(i64, i64)> {
        match self {
            Slice::Created { from_ms, to_ms, .. } => Some((day_of(*from_ms), day_of(*to_ms))),
            _ => None,
        }
    }

    /// Whether the slice owns the partitions of its days (a created window): its partitions
    /// merge when it is done. Others (list walks, lanes, modified windows) touch any
    /// partition, and theirs merge when the run's fetching is over (L3).
    pub fn owns_its_days(&self) -> bool {
        self.days().is_some()
    }

    /// A short stable digest of the slice, kept in each page's done-marker: the successor a
    /// page names must carry the same slice (L2).
    pub fn fingerprint(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        format!("{:016x}", fnv1a(json.as_bytes(), FNV_OFFSET))
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// 64-bit FNV-1a: stable across builds and platforms (unlike `std`'s hasher), for digests
/// that are stored or compared between processes.
fn fnv1a(bytes: &[u8], offset: u64) -> u64 {
    bytes.iter().fold(offset, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
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

    /// Page 0 of slice `slice_no` of the run `run_id` of `table`.
    pub fn first_of(run_id: &str, table: &str, slice_no: u32, slice: Slice) -> PageJob {
        PageJob {
            run_id: run_id.to_string(),
            table: table.to_string(),
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

/// Merge the run's recorded staged files of one partition into the live partition. A task
/// with a `dt` is due when the slice it names is done (a created window owns its partitions)
/// or, with no slice, when the run's fetching is over; `dt: None` is the closing task, done
/// last, that commits the run (L3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeTask {
    pub run_id: String,
    pub table: String,
    pub dt: Option<String>,
    /// The slice whose end made this merge due; `None`: the run's close did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice: Option<u32>,
    /// The staged files to merge, each as `<job>.<attempt>` of a recorded page (S1), named by
    /// whoever made the task due from the pages' markers, so the merger neither lists the
    /// staging nor reads the markers again. `None` (a task naming more than
    /// [`MAX_NAMED_INPUTS`], or from an older version): the merger lists the partition's
    /// staging and keeps what the markers name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Vec<String>>,
}

/// The most staged files a merge task names (about 30 bytes each): past them it names none
/// and the merger lists, so ten tasks stay well inside one 256 KiB send batch.
pub const MAX_NAMED_INPUTS: usize = 100;

impl MergeTask {
    /// FIFO message group: merges of one partition never overlap.
    pub fn group_id(&self) -> String {
        format!("{}#{}", self.table, self.dt.as_deref().unwrap_or("-"))
    }

    /// The task's done-marker name: unique within its run.
    pub fn task_id(&self) -> String {
        match (&self.dt, self.slice) {
            (None, _) => format!("{}:-", self.run_id),
            (Some(dt), Some(s)) => format!("{}:{dt}:s{s}", self.run_id),
            (Some(dt), None) => format!("{}:{dt}:c", self.run_id),
        }
    }

    /// The FIFO deduplication id: the task id, or a digest of it where it would pass SQS's
    /// 128 characters (run ids reach 129).
    pub fn dedup_id(&self) -> String {
        let id = self.task_id();
        if id.len() <= MAX_DEDUP_ID_CHARS {
            return id;
        }
        let b = id.as_bytes();
        format!(
            "h{:016x}{:016x}",
            fnv1a(b, FNV_OFFSET),
            fnv1a(b, FNV_OFFSET ^ 0x9e37_79b9_7f4a_7c15)
        )
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

/// A name that becomes part of a lake path or a queue id: 1 to `max` letters, digits, `-`,
/// `_`, `.`, not starting with `.` (no `/`, no `..`: a message can never point outside its
/// table).
pub fn check_name(field: &str, value: &str, max: usize) -> Result<(), DecodeError> {
    let ok = !value.is_empty()
        && value.len() <= max
        && !value.starts_with('.')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(DecodeError::Invalid(format!(
            "`{field}` {value:?} must be 1 to {max} letters, digits, '-', '_' or '.', not starting with '.'"
        )))
    }
}

impl Body {
    /// Checks what serde cannot: names safe in paths, dates that are dates.
    pub fn validate(&self) -> Result<(), DecodeError> {
        match self {
            Body::SyncRequest(r) => {
                check_name("request_id", &r.request_id, MAX_NAME_CHARS)?;
                check_name("table", &r.table, MAX_NAME_CHARS)
            }
            Body::PageJob(j) => {
                check_name("run_id", &j.run_id, MAX_RUN_ID_CHARS)?;
                check_name("table", &j.table, MAX_NAME_CHARS)
            }
            Body::MergeTask(t) => {
                check_name("run_id", &t.run_id, MAX_RUN_ID_CHARS)?;
                check_name("table", &t.table, MAX_NAME_CHARS)?;
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
            slice: Some(7),
            inputs: None,
        };
        assert_eq!(t.group_id(), "deals#2024-01-02");
        assert_eq!(t.task_id(), "r:2024-01-02:s7");
        let close = MergeTask {
            slice: None,
            ..t.clone()
        };
        assert_eq!(
            (close.task_id(), close.group_id()),
            ("r:2024-01-02:c".into(), "deals#2024-01-02".into())
        );
        let raw = encode(&Body::MergeTask(t.clone()));
        assert_eq!(decode_merge_task(&raw).unwrap(), t);
        assert!(!encode(&Body::MergeTask(close.clone())).contains("slice"));
        let closing = MergeTask { dt: None, ..close };
        assert_eq!(closing.task_id(), "r:-");
    }

    #[test]
    fn ten_tasks_naming_their_most_inputs_fit_one_send_batch() {
        let inputs: Vec<String> = (0..MAX_NAMED_INPUTS as u32)
            .map(|p| format!("s{:05}-p{p:06}.{}", u32::MAX, u32::MAX))
            .collect();
        let task = MergeTask {
            run_id: "r".repeat(MAX_RUN_ID_CHARS),
            table: "t".repeat(MAX_NAME_CHARS),
            dt: Some("2024-01-02".into()),
            slice: Some(u32::MAX),
            inputs: Some(inputs),
        };
        let raw = encode(&Body::MergeTask(task.clone()));
        assert!(10 * raw.len() < MAX_MESSAGE_BYTES, "{} bytes", raw.len());
        assert_eq!(decode_merge_task(&raw).unwrap(), task);
    }

    #[test]
    fn ids_fit_every_aws_limit_they_reach() {
        let longest = MergeTask {
            run_id: format!("{}-{}", "t".repeat(MAX_NAME_CHARS), "r".repeat(MAX_NAME_CHARS)),
            table: "t".repeat(MAX_NAME_CHARS),
            dt: Some("2024-01-02".into()),
            slice: Some(511),
            inputs: None,
        };
        assert_eq!(longest.run_id.len(), MAX_RUN_ID_CHARS);
        assert!(longest.task_id().len() > MAX_DEDUP_ID_CHARS);
        let dedup = longest.dedup_id();
        assert!(dedup.len() <= MAX_DEDUP_ID_CHARS, "{dedup}");
        assert_ne!(
            dedup,
            MergeTask {
                slice: Some(510),
                ..longest.clone()
            }
            .dedup_id()
        );
        assert!(longest.group_id().len() <= 128);
        let raw = encode(&Body::MergeTask(longest));
        assert!(decode_merge_task(&raw).is_ok());
        let request = format!(
            r#"{{"v":1,"kind":"sync_request","request_id":"{}","table":"deals","mode":"auto","requested_at_ms":0}}"#,
            "r".repeat(MAX_NAME_CHARS + 1)
        );
        assert!(decode_sync_request(&request)
            .unwrap_err()
            .to_string()
            .contains("1 to 64"));
    }

    #[test]
    fn a_scheduled_request_may_carry_its_time_as_rfc_3339() {
        let raw = |at: &str| {
            format!(
                r#"{{"v":1,"kind":"sync_request","request_id":"r1","table":"deals","mode":"auto","requested_at_ms":{at}}}"#
            )
        };
        let text = decode_sync_request(&raw(r#""2026-12-03T18:00:00Z""#)).unwrap();
        assert_eq!(text.requested_at_ms, 1_796_320_800_000);
        let ms = decode_sync_request(&raw("1796320800000")).unwrap();
        assert_eq!(ms, text);
        let err = decode_sync_request(&raw(r#""tomorrow""#))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("neither epoch milliseconds nor an RFC 3339"),
            "{err}"
        );
    }

    #[test]
    fn fingerprints_tell_slices_apart_and_open_ends_span_every_day() {
        let a = job().slice;
        let b = Slice::Search {
            object_type: "deals".into(),
            from_ms: 1,
            to_ms: 3,
            id_min: 0,
            id_max: u64::MAX,
        };
        assert_eq!(a.fingerprint(), job().slice.fingerprint());
        assert_ne!(a.fingerprint(), b.fingerprint());
        let open = Slice::Created {
            object_type: "deals".into(),
            from_ms: OPEN_START_MS,
            to_ms: OPEN_END_MS,
            id_min: 0,
            id_max: u64::MAX,
        };
        let (lo, hi) = open.days().unwrap();
        assert!(lo < -719_162 && hi > 2_932_896, "before year 1 and after 9999");
        assert!(open.owns_its_days() && !a.owns_its_days());
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
            slice: None,
            inputs: None,
        }));
        assert!(decode_page_job(&merge)
            .unwrap_err()
            .to_string()
            .contains("expected a page_job message, got merge_task"));
    }
}
