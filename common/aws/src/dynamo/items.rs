//! The run ledger's items on DynamoDB: their keys, their time to live, and how a marker, a
//! partition's generation and a slice are read back from an item.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::AttributeValue;

use super::{get_n, get_s, n, s, Item};
use common::clock::EpochMs;
use common::messages::Slice;
use common::ports::ledger::{LedgerError, PageDone, PageEffects, Partition};
use common::ports::run::decode_dts;

/// How long markers and slices are kept (the table's TTL removes them after).
pub(super) const MARKER_TTL_SECS: i64 = 30 * 24 * 3600;
/// BatchGetItem's and BatchWriteItem's limits.
pub(super) const BATCH_GET: usize = 100;
pub(super) const BATCH_WRITE: usize = 25;

pub(super) fn key(pk: String, sk: impl Into<String>) -> Item {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

pub(super) fn run_key(run_id: &str) -> Item {
    key(format!("run#{run_id}"), "run")
}

pub(super) fn active_key(table: &str) -> Item {
    key(format!("table#{table}"), "active")
}

pub(super) fn index_key(table: &str) -> Item {
    key(format!("table#{table}"), "index")
}

pub(super) fn partition_key(table: &str, dt: &str) -> Item {
    key(format!("part#{table}#{dt}"), "gen")
}

pub(super) fn slice_sk(plan_id: &str, slice_no: u32) -> String {
    format!("slice#{plan_id}#{slice_no:05}")
}

pub(super) fn page_key(run_id: &str, job: &str) -> Item {
    key(format!("run#{run_id}"), format!("page#{job}"))
}

pub(super) fn merge_key(run_id: &str, task: &str) -> Item {
    key(format!("run#{run_id}"), format!("merge#{task}"))
}

/// Partition of the consumers' heartbeats (one item each, `sk = worker#<id>`).
pub(super) const WORKERS_PK: &str = "workers";

pub(super) fn worker_key(worker: &str) -> Item {
    key(WORKERS_PK.into(), format!("worker#{worker}"))
}

pub(super) fn expires_at(now: EpochMs) -> AttributeValue {
    n(now / 1000 + MARKER_TTL_SECS)
}

/// A service error's code and message, from any operation.
pub(super) fn code_of<E: ProvideErrorMetadata>(e: &E) -> (Option<String>, String) {
    (
        e.code().map(str::to_string),
        e.message().unwrap_or_default().to_string(),
    )
}

/// Internal signal of [`DynamoLedger::modify`]: the marker it would write exists.
pub(super) const MARKER_EXISTS: &str = "\u{0}marker exists";

pub(super) fn parse_page_done(job: &str, item: &Item) -> Result<PageDone, LedgerError> {
    let bad = |what: &str, e: String| LedgerError::Backend(format!("marker of page {job}: {what}: {e}"));
    Ok(PageDone {
        attempt: get_s(item, "attempt").unwrap_or_default().to_string(),
        dts: decode_dts(get_s(item, "dts").unwrap_or_default()).map_err(|e| bad("partitions", e))?,
        next_cursor: get_s(item, "next").map(str::to_string),
        fingerprint: get_s(item, "fp").unwrap_or_default().to_string(),
        effects: get_s(item, "effects")
            .map(serde_json::from_str::<PageEffects>)
            .transpose()
            .map_err(|e| bad("effects", e.to_string()))?
            .unwrap_or_default(),
    })
}

pub(super) fn parse_partition(item: &Item) -> Option<Partition> {
    Some(Partition {
        gen: get_n(item, "gen")? as u64,
        file: get_s(item, "file").map(str::to_string),
        writer_run: get_s(item, "writer_run").unwrap_or_default().to_string(),
        writer_started_ms: get_n(item, "writer_started").unwrap_or(0),
    })
}

pub(super) fn parse_slice(item: &Item) -> Result<Slice, LedgerError> {
    let body = get_s(item, "body").ok_or_else(|| LedgerError::Backend("slice item without a body".into()))?;
    serde_json::from_str(body).map_err(|e| LedgerError::Backend(format!("slice: {e}")))
}
