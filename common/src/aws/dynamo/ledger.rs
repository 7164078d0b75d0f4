//! The seed's sync state (`hubspot-sync-state`, key `object_type`) and the run ledger on
//! DynamoDB.
//!
//! Ledger table layout (one table, partition key `pk`, sort key `sk`):
//! - `pk = run#<run_id>, sk = run`: the run (`body`, JSON) with a `version` for optimistic
//!   concurrency: every change is a conditional put on the version it read.
//! - `pk = run#<run_id>, sk = marker#<name>`: a done-marker, written in the same
//!   TransactWriteItems as the counter change it guards (L2, L3).
//! - `pk = table#<table>, sk = active`: the table's active run (L1).
//! - `pk = workers, sk = worker#<id>`: a consumer's heartbeat.
//! - `pk = budget, sk = schedule#<key>`: an account-wide send schedule (`next_free`, R5).

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;

use crate::clock::{iso, EpochMs};
use crate::hubspot::wire::parse_ms;
use crate::messages::Slice;
use crate::ports::ledger::{
    BeginRun, Ledger, LedgerError, MergeCompletion, PageCompletion, PageDone, PageOutcome, Run, RunStatus,
};
use crate::ports::state::{StateError, StateStore, SyncState};

type Item = HashMap<String, AttributeValue>;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s<'a>(item: &'a Item, k: &str) -> Option<&'a str> {
    item.get(k).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn get_n(item: &Item, k: &str) -> Option<i64> {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

// ---------------------------------------------------------------------------------------------
// Sync state

/// The seed's table: `object_type`, `last_sync_at`, `last_created_at`, `last_modified_at` (ISO
/// 8601 UTC strings, as an analyst reading the table expects) and `records_processed`.
#[derive(Debug, Clone)]
pub struct DynamoState {
    client: Client,
    table: String,
}

impl DynamoState {
    pub fn new(client: Client, table: &str) -> Self {
        DynamoState {
            client,
            table: table.into(),
        }
    }

    fn parse(item: &Item) -> Option<SyncState> {
        let time = |k: &str| get_s(item, k).and_then(parse_ms);
        Some(SyncState {
            object_type: get_s(item, "object_type")?.to_string(),
            last_sync_at: time("last_sync_at")?,
            last_created_at: time("last_created_at"),
            last_modified_at: time("last_modified_at"),
            records_processed: get_n(item, "records_processed").unwrap_or(0),
        })
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> StateError {
        StateError(format!("{what} on {}: {e}", self.table))
    }
}

#[async_trait]
impl StateStore for DynamoState {
    async fn get(&self, table: &str) -> Result<Option<SyncState>, StateError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("object_type", s(table))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.err("GetItem", DisplayErrorContext(&e)))?;
        Ok(out.item().and_then(DynamoState::parse))
    }

    async fn list(&self) -> Result<Vec<SyncState>, StateError> {
        let out = self
            .client
            .scan()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| self.err("Scan", DisplayErrorContext(&e)))?;
        let mut states: Vec<SyncState> = out.items().iter().filter_map(DynamoState::parse).collect();
        states.sort_by(|a, b| a.object_type.cmp(&b.object_type));
        Ok(states)
    }

    async fn put_forward(&self, state: &SyncState) -> Result<bool, StateError> {
        let mut item: Item = HashMap::new();
        item.insert("object_type".into(), s(&state.object_type));
        item.insert("last_sync_at".into(), s(iso(state.last_sync_at)));
        if let Some(c) = state.last_created_at {
            item.insert("last_created_at".into(), s(iso(c)));
        }
        if let Some(m) = state.last_modified_at {
            item.insert("last_modified_at".into(), s(iso(m)));
        }
        item.insert("records_processed".into(), n(state.records_processed));
        // W2 as a condition: ISO-8601 UTC strings of one format compare like the instants.
        let watermark = iso(state.watermark().unwrap_or(0));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(
                "attribute_not_exists(object_type) OR \
                 ((attribute_not_exists(last_modified_at) OR last_modified_at <= :w) AND \
                  (attribute_not_exists(last_created_at) OR last_created_at <= :w))",
            )
            .expression_attribute_values(":w", s(watermark))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => {
                let e = e.into_service_error();
                if e.is_conditional_check_failed_exception() {
                    Ok(false)
                } else {
                    Err(self.err("PutItem", DisplayErrorContext(&e)))
                }
            }
        }
    }

    async fn delete(&self, table: &str) -> Result<(), StateError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("object_type", s(table))
            .send()
            .await
            .map_err(|e| self.err("DeleteItem", DisplayErrorContext(&e)))?;
        Ok(())
    }

    async fn delete_all(&self) -> Result<usize, StateError> {
        let states = self.list().await?;
        for st in &states {
            self.delete(&st.object_type).await?;
        }
        Ok(states.len())
    }
}

// ---------------------------------------------------------------------------------------------
// Run ledger

#[derive(Debug, Clone)]
pub struct DynamoLedger {
    client: Client,
    table: String,
    lease_ms: i64,
}

/// What a modification of a run decided.
enum Change<T> {
    /// Write the run (and the marker, if any) and return `T`.
    Write(T),
    /// Write the run and the marker with these extra attributes, and return `T`.
    WriteMarked(T, Item),
    /// Return `T` without writing.
    Keep(T),
}

fn run_key(run_id: &str) -> Item {
    HashMap::from([
        ("pk".to_string(), s(format!("run#{run_id}"))),
        ("sk".to_string(), s("run")),
    ])
}

fn active_key(table: &str) -> Item {
    HashMap::from([
        ("pk".to_string(), s(format!("table#{table}"))),
        ("sk".to_string(), s("active")),
    ])
}

/// Partition of the consumers' heartbeats (one item each, `sk = worker#<id>`).
const WORKERS_PK: &str = "workers";

fn worker_key(worker: &str) -> Item {
    HashMap::from([
        ("pk".to_string(), s(WORKERS_PK)),
        ("sk".to_string(), s(format!("worker#{worker}"))),
    ])
}

fn marker_key(run_id: &str, marker: &str) -> Item {
    HashMap::from([
        ("pk".to_string(), s(format!("run#{run_id}"))),
        ("sk".to_string(), s(format!("marker#{marker}"))),
    ])
}

impl DynamoLedger {
    pub fn new(client: Client, table: &str, lease_ms: i64) -> Self {
        DynamoLedger {
            client,
            table: table.into(),
            lease_ms,
        }
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> LedgerError {
        LedgerError::Backend(format!("{what} on {}: {e}", self.table))
    }

    fn run_item(run: &Run, version: i64) -> Result<Item, LedgerError> {
        let mut item = run_key(&run.run_id);
        let body = serde_json::to_string(run).map_err(|e| LedgerError::Backend(e.to_string()))?;
        item.insert("body".into(), s(body));
        item.insert("version".into(), n(version));
        item.insert("tbl".into(), s(&run.table));
        item.insert("started_at".into(), n(run.started_at_ms));
        Ok(item)
    }

    /// A consistent read of one item.
    async fn get(&self, key: Item) -> Result<Option<Item>, LedgerError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.err("GetItem", DisplayErrorContext(&e)))?;
        Ok(out.item)
    }

    async fn load(&self, run_id: &str) -> Result<Option<(Run, i64)>, LedgerError> {
        let Some(item) = self.get(run_key(run_id)).await? else {
            return Ok(None);
        };
        let item = &item;
        let body =
            get_s(item, "body").ok_or_else(|| LedgerError::Backend(format!("run {run_id} has no body")))?;
        let run: Run =
            serde_json::from_str(body).map_err(|e| LedgerError::Backend(format!("run {run_id}: {e}")))?;
        Ok(Some((run, get_n(item, "version").unwrap_or(0))))
    }

    async fn has_item(&self, key: Item) -> Result<bool, LedgerError> {
        Ok(self.get(key).await?.is_some())
    }

    /// Optimistic read-modify-write of a run, with an optional done-marker written in the same
    /// transaction. `Ok(None)` when the marker already existed.
    async fn modify<T>(
        &self,
        run_id: &str,
        marker: Option<&str>,
        mut f: impl FnMut(&mut Run) -> Change<T>,
    ) -> Result<Option<T>, LedgerError> {
        for _ in 0..50 {
            if let Some(m) = marker {
                if self.has_item(marker_key(run_id, m)).await? {
                    return Ok(None);
                }
            }
            let (mut run, version) = self
                .load(run_id)
                .await?
                .ok_or_else(|| LedgerError::UnknownRun(run_id.to_string()))?;
            let (out, extra) = match f(&mut run) {
                Change::Keep(t) => return Ok(Some(t)),
                Change::Write(t) => (t, Item::new()),
                Change::WriteMarked(t, extra) => (t, extra),
            };
            let put_run = Put::builder()
                .table_name(&self.table)
                .set_item(Some(DynamoLedger::run_item(&run, version + 1)?))
                .condition_expression("version = :v")
                .expression_attribute_values(":v", n(version))
                .build()
                .map_err(|e| self.err("Put", e))?;
            let mut items = vec![TransactWriteItem::builder().put(put_run).build()];
            if let Some(m) = marker {
                let mut item = marker_key(run_id, m);
                item.extend(extra);
                let put_marker = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .condition_expression("attribute_not_exists(pk)")
                    .build()
                    .map_err(|e| self.err("Put", e))?;
                items.push(TransactWriteItem::builder().put(put_marker).build());
            }
            // The token makes the SDK's own retry of this write idempotent: a write that
            // succeeded but whose answer was lost is reported as done, not as a conflict with
            // its own marker (which would tell the page that recorded it that another did).
            match self
                .client
                .transact_write_items()
                .set_transact_items(Some(items))
                .client_request_token(uuid::Uuid::new_v4().to_string())
                .send()
                .await
            {
                Ok(_) => return Ok(Some(out)),
                Err(e) => {
                    let e = e.into_service_error();
                    if e.is_transaction_canceled_exception() {
                        continue; // a concurrent change or the marker appeared: read again
                    }
                    return Err(self.err("TransactWriteItems", DisplayErrorContext(&e)));
                }
            }
        }
        Err(LedgerError::Backend(format!("run {run_id}: too much contention")))
    }

    async fn release_table(&self, run: &Run) -> Result<(), LedgerError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(active_key(&run.table)))
            .condition_expression("run_id = :r")
            .expression_attribute_values(":r", s(&run.run_id))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = e.into_service_error();
                if e.is_conditional_check_failed_exception() {
                    Ok(())
                } else {
                    Err(self.err("DeleteItem", DisplayErrorContext(&e)))
                }
            }
        }
    }

    async fn active_run_id(&self, table: &str) -> Result<Option<String>, LedgerError> {
        let item = self.get(active_key(table)).await?;
        Ok(item.as_ref().and_then(|i| get_s(i, "run_id")).map(str::to_string))
    }
}

#[async_trait]
impl Ledger for DynamoLedger {
    async fn begin_run(&self, run: &Run, now: EpochMs) -> Result<BeginRun, LedgerError> {
        for _ in 0..10 {
            if let Some((existing, _)) = self.load(&run.run_id).await? {
                return Ok(BeginRun::Existing(existing));
            }
            if let Some(active_id) = self.active_run_id(&run.table).await? {
                match self.load(&active_id).await? {
                    Some((other, _)) if other.status.is_active() && !other.lease_expired(now) => {
                        return Ok(BeginRun::Refused(other));
                    }
                    Some((other, _)) if other.status.is_active() => {
                        // L4: abandon the expired run before giving the table away.
                        let note = format!("lease expired at {}", iso(other.lease_until_ms));
                        self.finish(&other.run_id, RunStatus::Abandoned, Some(&note), now)
                            .await?;
                        tracing::warn!(run_id = %other.run_id, table = %other.table, "abandoned run whose lease expired");
                    }
                    Some((other, _)) => self.release_table(&other).await?,
                    None => {
                        let ghost = Run {
                            run_id: active_id,
                            ..run.clone()
                        };
                        self.release_table(&ghost).await?;
                    }
                }
            }
            let mut active = active_key(&run.table);
            active.insert("run_id".into(), s(&run.run_id));
            let items = vec![
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(&self.table)
                            .set_item(Some(active))
                            .condition_expression("attribute_not_exists(pk)")
                            .build()
                            .map_err(|e| self.err("Put", e))?,
                    )
                    .build(),
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(&self.table)
                            .set_item(Some(DynamoLedger::run_item(run, 1)?))
                            .condition_expression("attribute_not_exists(pk)")
                            .build()
                            .map_err(|e| self.err("Put", e))?,
                    )
                    .build(),
            ];
            // The token makes the SDK's own retry of this write idempotent: a write that
            // succeeded but whose answer was lost is reported as done, not as a conflict with
            // its own marker (which would tell the page that recorded it that another did).
            match self
                .client
                .transact_write_items()
                .set_transact_items(Some(items))
                .client_request_token(uuid::Uuid::new_v4().to_string())
                .send()
                .await
            {
                Ok(_) => return Ok(BeginRun::Started(run.clone())),
                Err(e) => {
                    let e = e.into_service_error();
                    if !e.is_transaction_canceled_exception() {
                        return Err(self.err("TransactWriteItems", DisplayErrorContext(&e)));
                    }
                }
            }
        }
        Err(LedgerError::Backend(format!(
            "could not begin run {}: contention",
            run.run_id
        )))
    }

    async fn get_run(&self, run_id: &str) -> Result<Option<Run>, LedgerError> {
        Ok(self.load(run_id).await?.map(|(r, _)| r))
    }

    async fn active_run(&self, table: &str) -> Result<Option<Run>, LedgerError> {
        match self.active_run_id(table).await? {
            // A process killed between `finish` and releasing the table leaves the pointer on
            // a finished run: that run is not active (the next begin_run clears the pointer).
            Some(id) => Ok(self.get_run(&id).await?.filter(|r| r.status.is_active())),
            None => Ok(None),
        }
    }

    async fn list_runs(&self, table: Option<&str>, limit: usize) -> Result<Vec<Run>, LedgerError> {
        let mut runs = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("sk = :run")
                .expression_attribute_values(":run", s("run"))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.err("Scan", DisplayErrorContext(&e)))?;
            for item in out.items() {
                if let Some(run) = get_s(item, "body").and_then(|b| serde_json::from_str::<Run>(b).ok()) {
                    if table.is_none_or(|t| t == run.table) {
                        runs.push(run);
                    }
                }
            }
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        runs.sort_by(|a, b| (b.started_at_ms, &b.run_id).cmp(&(a.started_at_ms, &a.run_id)));
        runs.truncate(limit);
        Ok(runs)
    }

    async fn start_fetching(
        &self,
        run_id: &str,
        plan: &[Slice],
        in_flight: usize,
        now: EpochMs,
    ) -> Result<bool, LedgerError> {
        let lease = self.lease_ms;
        Ok(self
            .modify(run_id, None, |run| {
                match run.start_fetching(plan, in_flight, now, lease) {
                    true => Change::Write(true),
                    false => Change::Keep(false),
                }
            })
            .await?
            .unwrap_or(false))
    }

    async fn page_done(&self, run_id: &str, job_id: &str) -> Result<Option<PageDone>, LedgerError> {
        Ok(self
            .get(marker_key(run_id, &format!("page:{job_id}")))
            .await?
            .map(|item| {
                let effects = get_s(&item, "effects")
                    .map(serde_json::from_str)
                    .transpose()
                    .map_err(|e| {
                        LedgerError::Backend(format!("page {job_id} of run {run_id}: effects: {e}"))
                    })?
                    .unwrap_or_default();
                Ok(PageDone {
                    next_cursor: get_s(&item, "next_cursor").map(str::to_string),
                    effects,
                })
            })
            .transpose()?)
    }

    async fn complete_page(
        &self,
        run_id: &str,
        job_id: &str,
        o: &PageOutcome,
        now: EpochMs,
    ) -> Result<PageCompletion, LedgerError> {
        let lease = self.lease_ms;
        let done = self
            .modify(run_id, Some(&format!("page:{job_id}")), |run| {
                let (pages_outstanding, effects) = run.apply_page(o, now, lease);
                let mut extra = Item::new();
                if let Some(c) = &o.next_cursor {
                    extra.insert("next_cursor".into(), s(c));
                }
                if !effects.is_empty() {
                    // Serializing these plain structs cannot fail.
                    extra.insert(
                        "effects".into(),
                        s(serde_json::to_string(&effects).unwrap_or_default()),
                    );
                }
                Change::WriteMarked((pages_outstanding, effects), extra)
            })
            .await?;
        Ok(match done {
            None => PageCompletion::AlreadyDone,
            Some((pages_outstanding, effects)) => PageCompletion::Recorded {
                pages_outstanding,
                effects,
            },
        })
    }

    async fn heartbeat(
        &self,
        worker: &str,
        now_ms: EpochMs,
        until_ms: EpochMs,
    ) -> Result<usize, LedgerError> {
        let mut item = worker_key(worker);
        item.insert("until".into(), n(until_ms));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| self.err("PutItem", DisplayErrorContext(&e)))?;
        let mut alive = 0;
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(WORKERS_PK))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.err("Query", DisplayErrorContext(&e)))?;
            for item in page.items() {
                match get_n(item, "until") {
                    Some(until) if until >= now_ms => alive += 1,
                    // Lapsed: forget it (a conditional delete would only race with its return).
                    _ => {
                        let _ = self
                            .client
                            .delete_item()
                            .table_name(&self.table)
                            .set_key(Some(
                                item.iter()
                                    .filter(|(k, _)| *k == "pk" || *k == "sk")
                                    .map(|(k, v)| (k.clone(), v.clone()))
                                    .collect(),
                            ))
                            .condition_expression("#u < :now")
                            .expression_attribute_names("#u", "until")
                            .expression_attribute_values(":now", n(now_ms))
                            .send()
                            .await;
                    }
                }
            }
            match page.last_evaluated_key() {
                Some(k) => start = Some(k.clone()),
                None => break,
            }
        }
        Ok(alive.max(1))
    }

    async fn leave(&self, worker: &str) -> Result<(), LedgerError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(worker_key(worker)))
            .send()
            .await
            .map_err(|e| self.err("DeleteItem", DisplayErrorContext(&e)))?;
        Ok(())
    }

    async fn reserve_slot(
        &self,
        key: &str,
        spacing_ms: i64,
        now_ms: EpochMs,
    ) -> Result<EpochMs, LedgerError> {
        let item_key = HashMap::from([
            ("pk".to_string(), s("budget")),
            ("sk".to_string(), s(format!("schedule#{key}"))),
        ]);
        for _ in 0..50 {
            let next = self
                .get(item_key.clone())
                .await?
                .and_then(|i| get_n(&i, "next_free"));
            let at = next.unwrap_or(now_ms).max(now_ms);
            let mut item = item_key.clone();
            item.insert("next_free".into(), n(at + spacing_ms));
            let put = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item));
            // Compare-and-set on the value read: two processes never get the same slot.
            let put = match next {
                Some(old) => put
                    .condition_expression("next_free = :old")
                    .expression_attribute_values(":old", n(old)),
                None => put.condition_expression("attribute_not_exists(pk)"),
            };
            match put.send().await {
                Ok(_) => return Ok(at),
                Err(e) => {
                    let e = e.into_service_error();
                    if !e.is_conditional_check_failed_exception() {
                        return Err(self.err("PutItem", DisplayErrorContext(&e)));
                    }
                }
            }
        }
        Err(LedgerError::Backend(format!(
            "schedule {key}: too much contention"
        )))
    }

    async fn begin_merging(
        &self,
        run_id: &str,
        closing_job: &str,
        now: EpochMs,
    ) -> Result<bool, LedgerError> {
        Ok(self
            .modify(run_id, None, |run| match run.begin_merging(closing_job, now) {
                true => Change::Write(true),
                false => Change::Keep(false),
            })
            .await?
            .unwrap_or(false))
    }

    async fn is_merge_done(&self, run_id: &str, task_id: &str) -> Result<bool, LedgerError> {
        self.has_item(marker_key(run_id, &format!("merge:{task_id}")))
            .await
    }

    async fn done_merges(&self, run_id: &str) -> Result<HashSet<String>, LedgerError> {
        const PREFIX: &str = "marker#merge:";
        let mut done = HashSet::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", s(format!("run#{run_id}")))
                .expression_attribute_values(":prefix", s(PREFIX))
                .projection_expression("sk")
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.err("Query", DisplayErrorContext(&e)))?;
            done.extend(
                out.items()
                    .iter()
                    .filter_map(|item| get_s(item, "sk")?.strip_prefix(PREFIX).map(str::to_string)),
            );
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(done)
    }

    async fn complete_merge(
        &self,
        run_id: &str,
        task_id: &str,
        now: EpochMs,
    ) -> Result<MergeCompletion, LedgerError> {
        let lease = self.lease_ms;
        let done = self
            .modify(run_id, Some(&format!("merge:{task_id}")), |run| {
                Change::Write(run.apply_merge(now, lease))
            })
            .await?;
        Ok(match done {
            None => MergeCompletion::AlreadyDone,
            Some(merges_outstanding) => MergeCompletion::Recorded { merges_outstanding },
        })
    }

    async fn finish(
        &self,
        run_id: &str,
        status: RunStatus,
        note: Option<&str>,
        now: EpochMs,
    ) -> Result<bool, LedgerError> {
        let changed = self
            .modify(run_id, None, |run| match run.finish(status, note, now) {
                true => Change::Write(true),
                false => Change::Keep(false),
            })
            .await?
            .unwrap_or(false);
        if let Some(run) = self.get_run(run_id).await? {
            if !run.status.is_active() {
                self.release_table(&run).await?;
            }
        }
        Ok(changed)
    }
}
