//! DynamoDB: the seed's sync state ([`state`]) and the run ledger ([`ledger`]), with what they
//! share: attribute helpers, item sizes and write units as DynamoDB bills them ([`Meter`]),
//! errors told apart by what retrying would do ([`classify`]), and back-off.

mod items;
mod ledger;
mod ops;
mod state;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;

pub use ledger::DynamoLedger;
pub use state::DynamoState;

use common::ports::LedgerError;

pub(crate) type Item = HashMap<String, AttributeValue>;

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn get_s<'a>(item: &'a Item, k: &str) -> Option<&'a str> {
    item.get(k).and_then(|v| v.as_s().ok()).map(String::as_str)
}

/// Every item `scan` returns, page after page: a Scan answers at most 1 MB (or its limit) a
/// page, so reading only the first lists only some items.
pub(crate) async fn scan_all(
    scan: aws_sdk_dynamodb::operation::scan::builders::ScanFluentBuilder,
) -> Result<Vec<Item>, aws_sdk_dynamodb::error::SdkError<aws_sdk_dynamodb::operation::scan::ScanError>> {
    let mut items = Vec::new();
    let mut start: Option<Item> = None;
    loop {
        let out = scan.clone().set_exclusive_start_key(start.take()).send().await?;
        items.extend(out.items().iter().cloned());
        match out.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => break,
        }
    }
    Ok(items)
}

pub(crate) fn get_n(item: &Item, k: &str) -> Option<i64> {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

/// An item's size as DynamoDB counts it against its 400 KB limit and for billing: each
/// attribute's name plus its value (strings and binaries by their bytes, numbers by about
/// half their digits, lists and maps by their elements plus 3 bytes).
pub fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => n.trim_start_matches('-').len().div_ceil(2) + 1,
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(v) => v.iter().map(String::len).sum(),
        AttributeValue::Ns(v) => v.iter().map(|n| n.len().div_ceil(2) + 1).sum(),
        AttributeValue::L(l) => 3 + l.iter().map(|e| 1 + value_size(e)).sum::<usize>(),
        AttributeValue::M(m) => 3 + m.iter().map(|(k, e)| 1 + k.len() + value_size(e)).sum::<usize>(),
        _ => 0,
    }
}

/// Write units of writing items of these sizes: one per started KB of each item, twice that
/// inside a transaction (DynamoDB's on-demand billing).
pub fn write_units(sizes: &[usize], transactional: bool) -> u64 {
    let units: u64 = sizes.iter().map(|s| (*s as u64).div_ceil(1024).max(1)).sum();
    if transactional {
        units * 2
    } else {
        units
    }
}

/// What one kind of ledger write cost so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub calls: u64,
    /// Bytes of the items written (the sum over every call).
    pub bytes: u64,
    /// The most bytes one call wrote.
    pub max_bytes: u64,
    /// The largest item one call wrote.
    pub max_item: u64,
    pub write_units: u64,
}

/// Counts what the ledger writes, by operation: how the benchmark and the contract test see
/// that a page's or a merge's update stays the same size whatever the run's (L6).
#[derive(Debug, Default)]
pub struct Meter(Mutex<HashMap<&'static str, WriteStats>>);

impl Meter {
    pub(crate) fn record(&self, op: &'static str, sizes: &[usize], transactional: bool) {
        let mut ops = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let stats = ops.entry(op).or_default();
        let bytes: usize = sizes.iter().sum();
        stats.calls += 1;
        stats.bytes += bytes as u64;
        stats.max_bytes = stats.max_bytes.max(bytes as u64);
        stats.max_item = stats
            .max_item
            .max(sizes.iter().copied().max().unwrap_or(0) as u64);
        stats.write_units += write_units(sizes, transactional);
    }

    /// The statistics so far, by operation (`complete_page`, `complete_merge`, ...).
    pub fn snapshot(&self) -> HashMap<&'static str, WriteStats> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn reset(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// What a failed DynamoDB call means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// A condition did not hold (or a transaction lost to a concurrent one): read again.
    Conflict,
    /// Throttled, or the service is briefly unavailable: back off, then retry.
    Busy,
    /// The request can never succeed as it is (too large, invalid).
    Invalid,
    Other,
}

/// Classifies a DynamoDB error code (the service's `__type` suffix or a cancellation reason).
pub(crate) fn classify(code: Option<&str>, message: &str) -> Class {
    match code.unwrap_or_default() {
        "ConditionalCheckFailed"
        | "ConditionalCheckFailedException"
        | "TransactionConflict"
        | "TransactionConflictException" => Class::Conflict,
        "ProvisionedThroughputExceeded"
        | "ProvisionedThroughputExceededException"
        | "ThrottlingError"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "InternalServerError"
        | "ServiceUnavailable"
        | "TransactionInProgressException" => Class::Busy,
        "ValidationError"
        | "ValidationException"
        | "ItemCollectionSizeLimitExceeded"
        | "ItemCollectionSizeLimitExceededException" => Class::Invalid,
        _ if message.contains("Item size has exceeded") => Class::Invalid,
        _ => Class::Other,
    }
}

/// The ledger error of a failed call of `class`.
pub(crate) fn ledger_error(class: Class, what: String) -> LedgerError {
    match class {
        Class::Conflict => LedgerError::Contention(what),
        Class::Busy => LedgerError::Unavailable(what),
        Class::Invalid => LedgerError::Rejected(what),
        Class::Other => LedgerError::Backend(what),
    }
}

/// Attempts of a conditional write or of a batch's unprocessed items before it gives up.
pub(crate) const MAX_ATTEMPTS: u32 = 12;

/// Attempts of a read-modify-write of a run's head before it gives up as contention. Every
/// page and merge of a run updates its head, so many writers race for it at once; a lost race
/// is cheap (a read and a refused write) and the backoff below spreads the writers: 40 attempts
/// are up to about 20 s of backing off, well inside a message's visibility, before the message
/// is retried. (With 12, `bench ledger`'s 8 writers once lost 12 races in a row.)
pub(crate) const HEAD_ATTEMPTS: u32 = 40;

/// The pause before attempt `attempt` (1-based) of a conflicting or throttled write:
/// exponential from 10 ms, capped at 1 s, with full jitter so contending writers spread out.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let cap_ms = (10u64 << attempt.min(7)).min(1_000);
    let jitter = (uuid::Uuid::new_v4().as_u128() % u128::from(cap_ms + 1)) as u64;
    Duration::from_millis(jitter)
}

/// Shared by the ledger's clones.
pub(crate) type SharedMeter = Arc<Meter>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_units_follow_dynamodb() {
        let item: Item = HashMap::from([("pk".to_string(), s("run#r1")), ("n".to_string(), n(12345))]);
        assert_eq!(item_size(&item), 2 + 6 + 1 + 4);
        assert_eq!(write_units(&[100, 1024, 1025], false), 1 + 1 + 2);
        assert_eq!(write_units(&[100], true), 2);
        assert_eq!(classify(Some("TransactionConflict"), ""), Class::Conflict);
        assert_eq!(classify(Some("ThrottlingError"), ""), Class::Busy);
        assert_eq!(classify(Some("ValidationException"), "x"), Class::Invalid);
        assert_eq!(
            classify(None, "Item size has exceeded the maximum allowed size"),
            Class::Invalid
        );
        assert!(backoff(1) <= Duration::from_millis(20) && backoff(30) <= Duration::from_secs(1));
        let m = Meter::default();
        m.record("page", &[300, 900], true);
        m.record("page", &[300, 1500], true);
        let p = m.snapshot()["page"];
        assert_eq!(
            (p.calls, p.bytes, p.max_bytes, p.max_item, p.write_units),
            (2, 3000, 1800, 1500, 10)
        );
    }
}
