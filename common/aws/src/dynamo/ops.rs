//! The DynamoDB calls the run ledger is made of: consistent reads, batched reads and writes
//! with their unprocessed items retried, transactions whose cancellation reasons are told
//! apart, and the optimistic read-modify-write of a run's head.

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, Put, PutRequest, TransactWriteItem, WriteRequest,
};
use aws_sdk_dynamodb::Client;

use super::items::*;
use super::ledger::DynamoLedger;
use super::{
    backoff, classify, get_n, get_s, item_size, ledger_error, n, s, Class, Item, Meter, SharedMeter,
    HEAD_ATTEMPTS, MAX_ATTEMPTS,
};
use common::ports::ledger::{LedgerError, Run};

impl DynamoLedger {
    pub fn new(client: Client, table: &str, lease_ms: i64) -> Self {
        DynamoLedger {
            client,
            table: table.into(),
            lease_ms,
            meter: SharedMeter::default(),
        }
    }

    /// What this ledger (and its clones) wrote so far, by operation.
    pub fn meter(&self) -> &Meter {
        &self.meter
    }

    pub(super) fn err<E>(&self, what: &str, e: &aws_sdk_dynamodb::error::SdkError<E>) -> LedgerError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let class = match e.as_service_error() {
            Some(service) => {
                let (code, message) = code_of(service);
                classify(code.as_deref(), &message)
            }
            // Timeouts, dispatch and response failures: the service may be fine a moment later.
            None => Class::Busy,
        };
        ledger_error(
            class,
            format!("{what} on {}: {}", self.table, DisplayErrorContext(e)),
        )
    }

    pub(super) fn run_item(run: &Run, version: i64) -> Result<Item, LedgerError> {
        let mut item = run_key(&run.run_id);
        let body = serde_json::to_string(run).map_err(|e| LedgerError::Backend(e.to_string()))?;
        item.insert("body".into(), s(body));
        item.insert("version".into(), n(version));
        item.insert("tbl".into(), s(&run.table));
        item.insert("started_at".into(), n(run.started_at_ms));
        Ok(item)
    }

    /// A consistent read of one item.
    pub(super) async fn get(&self, key: Item) -> Result<Option<Item>, LedgerError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.err("GetItem", &e))?;
        Ok(out.item)
    }

    /// Consistent reads of many items, batched, unprocessed keys retried with back-off.
    pub(super) async fn batch_get(&self, keys: Vec<Item>) -> Result<Vec<Item>, LedgerError> {
        let mut out = Vec::new();
        for chunk in keys.chunks(BATCH_GET) {
            let mut pending = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(chunk.to_vec()))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| LedgerError::Backend(e.to_string()))?,
            );
            let mut attempt = 0;
            while let Some(request) = pending.take() {
                attempt += 1;
                let got = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| self.err("BatchGetItem", &e))?;
                if let Some(items) = got.responses().and_then(|r| r.get(&self.table)) {
                    out.extend(items.iter().cloned());
                }
                pending = got
                    .unprocessed_keys()
                    .and_then(|u| u.get(&self.table))
                    .filter(|k| !k.keys().is_empty())
                    .cloned();
                if pending.is_some() {
                    if attempt >= MAX_ATTEMPTS {
                        return Err(LedgerError::Unavailable(format!(
                            "BatchGetItem on {}: keys still unprocessed after {attempt} attempts",
                            self.table
                        )));
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
        }
        Ok(out)
    }

    /// Every item of `pk` whose sort key starts with `prefix`, consistent, paged.
    pub(super) async fn query_prefix(&self, pk: String, prefix: String) -> Result<Vec<Item>, LedgerError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", s(&pk))
                .expression_attribute_values(":prefix", s(&prefix))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.err("Query", &e))?;
            items.extend(out.items().iter().cloned());
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(items)
    }

    pub(super) async fn load(&self, run_id: &str) -> Result<Option<(Run, i64)>, LedgerError> {
        let Some(item) = self.get(run_key(run_id)).await? else {
            return Ok(None);
        };
        parse_run(run_id, &item).map(Some)
    }

    /// One TransactWriteItems. `Ok(Err(reasons))` when it was cancelled, with each item's
    /// cancellation code (in the order of `items`), so the caller tells a lost race on the
    /// head from a marker that already exists.
    pub(super) async fn transact(
        &self,
        op: &'static str,
        items: Vec<Item>,
        conditions: Vec<(&str, Option<(&str, AttributeValue)>)>,
    ) -> Result<Result<(), Vec<Option<String>>>, LedgerError> {
        let sizes: Vec<usize> = items.iter().map(item_size).collect();
        let mut writes = Vec::with_capacity(items.len());
        for (item, (condition, value)) in items.into_iter().zip(conditions) {
            let mut put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression(condition);
            if let Some((name, v)) = value {
                put = put.expression_attribute_values(name, v);
            }
            let put = put.build().map_err(|e| LedgerError::Backend(e.to_string()))?;
            writes.push(TransactWriteItem::builder().put(put).build());
        }
        // The token makes the SDK's own retry of this write idempotent: a write that succeeded
        // but whose answer was lost is reported as done, not as a conflict with its own marker
        // (which would tell the page that recorded it that another did).
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(writes))
            .client_request_token(uuid::Uuid::new_v4().to_string())
            .send()
            .await;
        match result {
            Ok(_) => {
                self.meter.record(op, &sizes, true);
                Ok(Ok(()))
            }
            Err(e) => match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c)) => {
                    let reasons: Vec<Option<String>> = c
                        .cancellation_reasons()
                        .iter()
                        .map(|r| r.code().map(str::to_string))
                        .collect();
                    let invalid = reasons
                        .iter()
                        .any(|r| classify(r.as_deref(), "") == Class::Invalid);
                    if invalid {
                        return Err(LedgerError::Rejected(format!(
                            "TransactWriteItems on {}: {reasons:?}: {}",
                            self.table,
                            DisplayErrorContext(&e)
                        )));
                    }
                    Ok(Err(reasons))
                }
                _ => Err(self.err("TransactWriteItems", &e)),
            },
        }
    }

    /// Optimistic read-modify-write of a head, with an optional done-marker (`marker`, its
    /// attributes beside the key) written in the same transaction. `Ok(None)` when the marker
    /// already existed. Lost races on the head back off and read again; throttling backs off.
    pub(super) async fn modify<T>(
        &self,
        op: &'static str,
        run_id: &str,
        marker: Option<Item>,
        mut f: impl FnMut(&mut Run) -> Option<T>,
    ) -> Result<Option<T>, LedgerError> {
        for attempt in 1..=HEAD_ATTEMPTS {
            let (mut run, version) = self
                .load(run_id)
                .await?
                .ok_or_else(|| LedgerError::UnknownRun(run_id.to_string()))?;
            let Some(out) = f(&mut run) else {
                // Nothing to write (a transition that does not apply): `None` from `f`.
                return Ok(None);
            };
            let mut items = vec![DynamoLedger::run_item(&run, version + 1)?];
            let mut conditions = vec![("version = :v", Some((":v", n(version))))];
            if let Some(m) = &marker {
                items.push(m.clone());
                conditions.push(("attribute_not_exists(pk)", None));
            }
            match self.transact(op, items, conditions).await? {
                Ok(()) => return Ok(Some(out)),
                Err(reasons) => {
                    let marker_exists = marker.is_some()
                        && reasons.get(1).and_then(|r| r.as_deref()) == Some("ConditionalCheckFailed");
                    // Reasons may be missing (some emulators): ask the marker itself.
                    let marker_exists = marker_exists
                        || (reasons.is_empty() && marker.is_some() && {
                            let m = marker.as_ref().map(|m| {
                                m.iter()
                                    .filter(|(k, _)| *k == "pk" || *k == "sk")
                                    .map(|(k, v)| (k.clone(), v.clone()))
                                    .collect::<Item>()
                            });
                            match m {
                                Some(k) => self.get(k).await?.is_some(),
                                None => false,
                            }
                        });
                    if marker_exists {
                        return Err(LedgerError::Backend(MARKER_EXISTS.into()));
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
        }
        Err(LedgerError::Contention(format!(
            "run {run_id}: {HEAD_ATTEMPTS} conflicting writes in a row; the message is retried"
        )))
    }

    /// [`DynamoLedger::modify`] with a marker: `AlreadyDone` when it existed.
    pub(super) async fn modify_marked<T>(
        &self,
        op: &'static str,
        run_id: &str,
        marker: Item,
        f: impl FnMut(&mut Run) -> Option<T>,
    ) -> Result<Option<T>, LedgerError> {
        match self.modify(op, run_id, Some(marker), f).await {
            Err(LedgerError::Backend(m)) if m == MARKER_EXISTS => Ok(None),
            other => other,
        }
    }

    pub(super) async fn release_table(&self, run: &Run) -> Result<(), LedgerError> {
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
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(self.err("DeleteItem", &e)),
        }
    }

    pub(super) async fn active_run_id(&self, table: &str) -> Result<Option<String>, LedgerError> {
        let item = self.get(active_key(table)).await?;
        Ok(item.as_ref().and_then(|i| get_s(i, "run_id")).map(str::to_string))
    }

    /// A conditional put; false when the condition failed.
    pub(super) async fn put_if(
        &self,
        op: &'static str,
        item: Item,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<bool, LedgerError> {
        let size = item_size(&item);
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition);
        for (k, v) in values {
            put = put.expression_attribute_values(k, v);
        }
        match put.send().await {
            Ok(_) => {
                self.meter.record(op, &[size], false);
                Ok(true)
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.err("PutItem", &e)),
        }
    }

    pub(super) async fn batch_put(&self, op: &'static str, items: Vec<Item>) -> Result<(), LedgerError> {
        for chunk in items.chunks(BATCH_WRITE) {
            let sizes: Vec<usize> = chunk.iter().map(item_size).collect();
            let mut pending: Vec<WriteRequest> = chunk
                .iter()
                .map(|item| {
                    PutRequest::builder()
                        .set_item(Some(item.clone()))
                        .build()
                        .map(|p| WriteRequest::builder().put_request(p).build())
                        .map_err(|e| LedgerError::Backend(e.to_string()))
                })
                .collect::<Result<_, _>>()?;
            let mut attempt = 0;
            while !pending.is_empty() {
                attempt += 1;
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(|e| self.err("BatchWriteItem", &e))?;
                pending = out
                    .unprocessed_items()
                    .and_then(|u| u.get(&self.table))
                    .cloned()
                    .unwrap_or_default();
                if !pending.is_empty() {
                    if attempt >= MAX_ATTEMPTS {
                        return Err(LedgerError::Unavailable(format!(
                            "BatchWriteItem on {}: items still unprocessed after {attempt} attempts",
                            self.table
                        )));
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
            self.meter.record(op, &sizes, false);
        }
        Ok(())
    }
}

/// A run's head item: the run and the head's version.
pub(super) fn parse_run(run_id: &str, item: &Item) -> Result<(Run, i64), LedgerError> {
    let body =
        get_s(item, "body").ok_or_else(|| LedgerError::Backend(format!("run {run_id} has no body")))?;
    let run: Run =
        serde_json::from_str(body).map_err(|e| LedgerError::Backend(format!("run {run_id}: {e}")))?;
    Ok((run, get_n(item, "version").unwrap_or(0)))
}
