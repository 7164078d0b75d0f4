//! The run ledger on DynamoDB (one table, partition key `pk`, sort key `sk`):
//!
//! | pk | sk | what |
//! |---|---|---|
//! | `run#<run_id>` | `run` | the head (`body` JSON, a `version` for optimistic concurrency) |
//! | `run#<run_id>` | `slice#<plan_id>#<00012>` | one slice of the plan |
//! | `run#<run_id>` | `page#<job>` | a page's done-marker: attempt, partitions, next cursor |
//! | `run#<run_id>` | `merge#<task>` | a merge task's done-marker |
//! | `run#<run_id>` | `meet#<object_type>` | where the walk and the lanes meet (J1-J4), `version`ed |
//! | `table#<table>` | `active` | the table's active run (L1) |
//! | `table#<table>` | `index` | the table's key index version (K1) |
//! | `part#<table>#<dt>` | `gen` | a partition's published generation (G1) |
//! | `workers` | `worker#<id>` | a consumer's heartbeat |
//! | `budget` | `schedule#<key>` | an account-wide send schedule (R5) |
//!
//! A marker is written in one TransactWriteItems with the head change it guards (L2, L3). No
//! item grows with the run (L6): the head is counters, each slice and marker its own item.
//! Markers and slices carry `expires_at` (epoch seconds) for the table's TTL: they are read
//! only while their run is active, and a run lives hours, not the 30 days they are kept.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;

use super::items::*;
use super::ops::parse_run;
use super::{backoff, get_n, get_s, n, s, Item, SharedMeter, HEAD_ATTEMPTS, MAX_ATTEMPTS};
use common::clock::{iso, EpochMs};
use common::meet::{MeetStep, Meeting};
use common::messages::Slice;
use common::ports::ledger::{
    BeginRun, IndexVersion, Ledger, LedgerError, MergeCompletion, MergeView, PageCompletion, PageDone,
    PageEffects, PageOutcome, Partition, Run, RunStatus,
};
use common::ports::run::encode_dts;

#[derive(Debug, Clone)]
pub struct DynamoLedger {
    pub(super) client: Client,
    pub(super) table: String,
    pub(super) lease_ms: i64,
    pub(super) meter: SharedMeter,
}

#[async_trait]
impl Ledger for DynamoLedger {
    async fn begin_run(&self, run: &Run, now: EpochMs) -> Result<BeginRun, LedgerError> {
        for attempt in 1..=MAX_ATTEMPTS {
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
                        self.finish(&other.run_id, RunStatus::Abandoned, Some(&note), None, now)
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
            let items = vec![active, DynamoLedger::run_item(run, 1)?];
            let conditions = vec![
                ("attribute_not_exists(pk)", None),
                ("attribute_not_exists(pk)", None),
            ];
            match self.transact("begin_run", items, conditions).await? {
                Ok(()) => return Ok(BeginRun::Started(run.clone())),
                Err(_) => tokio::time::sleep(backoff(attempt)).await,
            }
        }
        Err(LedgerError::Contention(format!(
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
        let scan = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("sk = :run")
            .expression_attribute_values(":run", s("run"));
        let items = super::scan_all(scan).await.map_err(|e| self.err("Scan", &e))?;
        let mut runs: Vec<Run> = items
            .iter()
            .filter_map(|item| get_s(item, "body").and_then(|b| serde_json::from_str::<Run>(b).ok()))
            .filter(|run| table.is_none_or(|t| t == run.table))
            .collect();
        runs.sort_by(|a, b| (b.started_at_ms, &b.run_id).cmp(&(a.started_at_ms, &a.run_id)));
        runs.truncate(limit);
        Ok(runs)
    }

    async fn start_fetching(
        &self,
        run_id: &str,
        plan: &[Slice],
        expected_records: Option<u64>,
        in_flight: usize,
        now: EpochMs,
    ) -> Result<bool, LedgerError> {
        let Some((head, _)) = self.load(run_id).await? else {
            return Err(LedgerError::UnknownRun(run_id.to_string()));
        };
        if head.status != RunStatus::Planning {
            return Ok(false);
        }
        // Each planning attempt writes its slices under an id of its own, and the head names
        // the one that won: two producers planning one request at once (a duplicate delivery)
        // never mix their plans.
        let plan_id = common::lake::new_attempt();
        let items = plan
            .iter()
            .enumerate()
            .map(|(i, slice)| {
                let mut item = key(format!("run#{run_id}"), slice_sk(&plan_id, i as u32));
                item.insert(
                    "body".into(),
                    s(serde_json::to_string(slice).map_err(|e| LedgerError::Backend(e.to_string()))?),
                );
                item.insert("expires_at".into(), expires_at(now));
                Ok(item)
            })
            .collect::<Result<Vec<_>, LedgerError>>()?;
        self.batch_put("start_fetching.slices", items).await?;
        let lease = self.lease_ms;
        let slices = plan.len() as u32;
        Ok(self
            .modify("start_fetching", run_id, None, |run| {
                run.plan_id = plan_id.clone();
                run.expected_records = expected_records;
                run.start_fetching(slices, in_flight, now, lease).then_some(())
            })
            .await?
            .is_some())
    }

    async fn slice(&self, run_id: &str, slice_no: u32) -> Result<Option<Slice>, LedgerError> {
        let Some((head, _)) = self.load(run_id).await? else {
            return Ok(None);
        };
        if slice_no >= head.slices {
            return Ok(None);
        }
        self.get(key(format!("run#{run_id}"), slice_sk(&head.plan_id, slice_no)))
            .await?
            .map(|item| parse_slice(&item))
            .transpose()
    }

    async fn slices(&self, run_id: &str, count: u32) -> Result<Vec<Slice>, LedgerError> {
        let Some((head, _)) = self.load(run_id).await? else {
            return Ok(Vec::new());
        };
        let items = self
            .query_prefix(format!("run#{run_id}"), format!("slice#{}#", head.plan_id))
            .await?;
        let mut slices = items
            .iter()
            .map(|item| {
                let no = get_s(item, "sk")
                    .and_then(|sk| sk.rsplit('#').next())
                    .and_then(|n| n.parse::<u32>().ok())
                    .unwrap_or(u32::MAX);
                Ok((no, parse_slice(item)?))
            })
            .collect::<Result<Vec<_>, LedgerError>>()?;
        slices.sort_by_key(|(no, _)| *no);
        Ok(slices
            .into_iter()
            .filter(|(no, _)| *no < count.min(head.slices))
            .map(|(_, s)| s)
            .collect())
    }

    async fn page_done(&self, run_id: &str, job_id: &str) -> Result<Option<PageDone>, LedgerError> {
        self.get(page_key(run_id, job_id))
            .await?
            .map(|item| parse_page_done(job_id, &item))
            .transpose()
    }

    async fn page_attempts(
        &self,
        run_id: &str,
        job_ids: &[String],
    ) -> Result<HashMap<String, String>, LedgerError> {
        let keys = job_ids.iter().map(|j| page_key(run_id, j)).collect();
        let items = self.batch_get(keys).await?;
        Ok(items
            .iter()
            .filter_map(|item| {
                let job = get_s(item, "sk")?.strip_prefix("page#")?.to_string();
                Some((job, get_s(item, "attempt")?.to_string()))
            })
            .collect())
    }

    async fn page_markers(
        &self,
        run_id: &str,
        slice_no: Option<u32>,
    ) -> Result<Vec<(String, PageDone)>, LedgerError> {
        let prefix = match slice_no {
            Some(s) => format!("page#s{s:05}-"),
            None => "page#".to_string(),
        };
        let items = self.query_prefix(format!("run#{run_id}"), prefix).await?;
        items
            .iter()
            .map(|item| {
                let job = get_s(item, "sk")
                    .and_then(|sk| sk.strip_prefix("page#"))
                    .unwrap_or_default()
                    .to_string();
                let done = parse_page_done(&job, item)?;
                Ok((job, done))
            })
            .collect()
    }

    async fn complete_page(
        &self,
        run_id: &str,
        job_id: &str,
        o: &PageOutcome,
        now: EpochMs,
    ) -> Result<PageCompletion, LedgerError> {
        let lease = self.lease_ms;
        // The marker's content depends on the effects, which depend on the head read inside
        // `modify`: the effects (at most one launched slice) are computed from the head first,
        // then checked to be the same as the transaction's.
        let mut marker = page_key(run_id, job_id);
        marker.insert("attempt".into(), s(&o.attempt));
        marker.insert("dts".into(), s(encode_dts(&o.dts)));
        marker.insert("fp".into(), s(&o.fingerprint));
        marker.insert("slice".into(), n(i64::from(o.slice_no)));
        marker.insert("expires_at".into(), expires_at(now));
        if let Some(c) = &o.next_cursor {
            marker.insert("next".into(), s(c));
        }
        for attempt in 1..=HEAD_ATTEMPTS {
            let Some((head, _)) = self.load(run_id).await? else {
                return Err(LedgerError::UnknownRun(run_id.to_string()));
            };
            let mut preview = head.clone();
            let (_, effects) = preview.apply_page(o, now, lease);
            let mut m = marker.clone();
            if effects != PageEffects::default() {
                // Serializing this plain struct cannot fail.
                m.insert(
                    "effects".into(),
                    s(serde_json::to_string(&effects).unwrap_or_default()),
                );
            }
            let expected = effects.clone();
            let done = self
                .modify_marked("complete_page", run_id, m, |run| {
                    let (left, effects) = run.apply_page(o, now, lease);
                    // The head moved since the preview (a concurrent page): try again.
                    (effects == expected).then_some((left, effects))
                })
                .await?;
            match done {
                Some((pages_outstanding, effects)) => {
                    return Ok(PageCompletion::Recorded {
                        pages_outstanding,
                        effects,
                    })
                }
                None => {
                    if self.get(page_key(run_id, job_id)).await?.is_some() {
                        return Ok(PageCompletion::AlreadyDone);
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
        }
        Err(LedgerError::Contention(format!(
            "page {job_id} of run {run_id}: the run's head kept changing"
        )))
    }

    async fn begin_merging(
        &self,
        run_id: &str,
        closing_job: &str,
        close_merges: i64,
        now: EpochMs,
    ) -> Result<bool, LedgerError> {
        Ok(self
            .modify("begin_merging", run_id, None, |run| {
                run.begin_merging(closing_job, close_merges, now).then_some(())
            })
            .await?
            .is_some())
    }

    async fn is_merge_done(&self, run_id: &str, task_id: &str) -> Result<bool, LedgerError> {
        Ok(self.get(merge_key(run_id, task_id)).await?.is_some())
    }

    async fn done_merges(&self, run_id: &str) -> Result<HashSet<String>, LedgerError> {
        let items = self
            .query_prefix(format!("run#{run_id}"), "merge#".into())
            .await?;
        Ok(items
            .iter()
            .filter_map(|item| get_s(item, "sk")?.strip_prefix("merge#").map(str::to_string))
            .collect())
    }

    /// One BatchGetItem (strongly consistent) for the three items, which share the table.
    async fn merge_view(
        &self,
        run_id: &str,
        task_id: &str,
        table: &str,
        dt: Option<&str>,
    ) -> Result<MergeView, LedgerError> {
        let (run, marker) = (run_key(run_id), merge_key(run_id, task_id));
        let partition = dt.map(|dt| partition_key(table, dt));
        let keys: Vec<Item> = [Some(run.clone()), Some(marker.clone()), partition.clone()]
            .into_iter()
            .flatten()
            .collect();
        let items = self.batch_get(keys).await?;
        // The answer comes in no particular order: each item by its key.
        let is = |item: &Item, key: &Item| ["pk", "sk"].iter().all(|k| item.get(*k) == key.get(*k));
        let mut view = MergeView {
            run: None,
            done: false,
            partition: None,
        };
        for item in &items {
            if is(item, &run) {
                view.run = Some(parse_run(run_id, item)?.0);
            } else if is(item, &marker) {
                view.done = true;
            } else if partition.as_ref().is_some_and(|p| is(item, p)) {
                view.partition = parse_partition(item);
            }
        }
        Ok(view)
    }

    async fn complete_merge(
        &self,
        run_id: &str,
        task_id: &str,
        now: EpochMs,
    ) -> Result<MergeCompletion, LedgerError> {
        let lease = self.lease_ms;
        let mut marker = merge_key(run_id, task_id);
        marker.insert("expires_at".into(), expires_at(now));
        let done = self
            .modify_marked("complete_merge", run_id, marker, |run| {
                Some(run.apply_merge(now, lease))
            })
            .await?;
        Ok(match done {
            None => MergeCompletion::AlreadyDone,
            Some(merges_outstanding) => MergeCompletion::Recorded { merges_outstanding },
        })
    }

    async fn partition(&self, table: &str, dt: &str) -> Result<Option<Partition>, LedgerError> {
        Ok(self
            .get(partition_key(table, dt))
            .await?
            .as_ref()
            .and_then(parse_partition))
    }

    async fn partitions(
        &self,
        table: &str,
        dts: &[String],
    ) -> Result<HashMap<String, Partition>, LedgerError> {
        let keys = dts.iter().map(|dt| partition_key(table, dt)).collect();
        let prefix = format!("part#{table}#");
        Ok(self
            .batch_get(keys)
            .await?
            .iter()
            .filter_map(|item| {
                let dt = get_s(item, "pk")?.strip_prefix(&prefix)?.to_string();
                Some((dt, parse_partition(item)?))
            })
            .collect())
    }

    async fn publish(
        &self,
        table: &str,
        dt: &str,
        expected: u64,
        next: &Partition,
    ) -> Result<bool, LedgerError> {
        let mut item = partition_key(table, dt);
        item.insert("gen".into(), n((expected + 1) as i64));
        if let Some(f) = &next.file {
            item.insert("file".into(), s(f));
        }
        item.insert("writer_run".into(), s(&next.writer_run));
        item.insert("writer_started".into(), n(next.writer_started_ms));
        if expected == 0 {
            self.put_if("publish", item, "attribute_not_exists(pk)", vec![])
                .await
        } else {
            self.put_if("publish", item, "gen = :g", vec![(":g", n(expected as i64))])
                .await
        }
    }

    async fn index_version(&self, table: &str) -> Result<Option<IndexVersion>, LedgerError> {
        Ok(self.get(index_key(table)).await?.and_then(|item| {
            Some(IndexVersion {
                run_id: get_s(&item, "run_id")?.to_string(),
                started_at_ms: get_n(&item, "started_at")?,
            })
        }))
    }

    async fn set_index_version(&self, table: &str, v: &IndexVersion) -> Result<bool, LedgerError> {
        let mut item = index_key(table);
        item.insert("run_id".into(), s(&v.run_id));
        item.insert("started_at".into(), n(v.started_at_ms));
        self.put_if(
            "set_index_version",
            item,
            "attribute_not_exists(pk) OR started_at < :s",
            vec![(":s", n(v.started_at_ms))],
        )
        .await
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
            .map_err(|e| self.err("PutItem", &e))?;
        let mut alive = 0;
        for item in self.query_prefix(WORKERS_PK.into(), "worker#".into()).await? {
            match get_n(&item, "until") {
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
        Ok(alive.max(1))
    }

    async fn leave(&self, worker: &str) -> Result<(), LedgerError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(worker_key(worker)))
            .send()
            .await
            .map_err(|e| self.err("DeleteItem", &e))?;
        Ok(())
    }

    async fn reserve_slot(
        &self,
        key_name: &str,
        spacing_ms: i64,
        now_ms: EpochMs,
    ) -> Result<EpochMs, LedgerError> {
        let item_key = key("budget".into(), format!("schedule#{key_name}"));
        for attempt in 1..=MAX_ATTEMPTS * 4 {
            let next = self
                .get(item_key.clone())
                .await?
                .and_then(|i| get_n(&i, "next_free"));
            let at = next.unwrap_or(now_ms).max(now_ms);
            let mut item = item_key.clone();
            item.insert("next_free".into(), n(at + spacing_ms));
            // Compare-and-set on the value read: two processes never get the same slot.
            let won = match next {
                Some(old) => {
                    self.put_if("reserve_slot", item, "next_free = :old", vec![(":old", n(old))])
                        .await?
                }
                None => {
                    self.put_if("reserve_slot", item, "attribute_not_exists(pk)", vec![])
                        .await?
                }
            };
            if won {
                return Ok(at);
            }
            if attempt % 8 == 0 {
                tokio::time::sleep(backoff(attempt / 8)).await;
            }
        }
        Err(LedgerError::Contention(format!(
            "schedule {key_name}: too much contention"
        )))
    }

    async fn meet(&self, run_id: &str, object_type: &str, step: &MeetStep) -> Result<Meeting, LedgerError> {
        let item_key = key(format!("run#{run_id}"), format!("meet#{object_type}"));
        for attempt in 1..=MAX_ATTEMPTS * 4 {
            let found = self.get(item_key.clone()).await?;
            let version = found.as_ref().and_then(|i| get_n(i, "version"));
            let mut meeting: Meeting = match found.as_ref().and_then(|i| get_s(i, "body")) {
                Some(body) => serde_json::from_str(body)
                    .map_err(|e| LedgerError::Backend(format!("meeting of {run_id}/{object_type}: {e}")))?,
                None => Meeting::default(),
            };
            meeting.apply(step);
            let mut item = item_key.clone();
            item.insert(
                "body".into(),
                s(serde_json::to_string(&meeting).map_err(|e| LedgerError::Backend(e.to_string()))?),
            );
            item.insert("version".into(), n(version.unwrap_or(0) + 1));
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as EpochMs);
            item.insert("expires_at".into(), expires_at(now));
            // Compare-and-set on the version read: two steps never both apply to one state.
            let won = match version {
                Some(v) => {
                    self.put_if("meet", item, "version = :v", vec![(":v", n(v))])
                        .await?
                }
                None => {
                    self.put_if("meet", item, "attribute_not_exists(pk)", vec![])
                        .await?
                }
            };
            if won {
                return Ok(meeting);
            }
            if attempt % 8 == 0 {
                tokio::time::sleep(backoff(attempt / 8)).await;
            }
        }
        Err(LedgerError::Contention(format!(
            "meeting of {run_id}/{object_type}: too much contention"
        )))
    }

    async fn finish(
        &self,
        run_id: &str,
        status: RunStatus,
        note: Option<&str>,
        partitions: Option<u64>,
        now: EpochMs,
    ) -> Result<bool, LedgerError> {
        let changed = self
            .modify("finish", run_id, None, |run| {
                let changed = run.finish(status, note, now);
                run.partitions = partitions.or(run.partitions);
                changed.then_some(())
            })
            .await?
            .is_some();
        if let Some(run) = self.get_run(run_id).await? {
            if !run.status.is_active() {
                self.release_table(&run).await?;
            }
        }
        Ok(changed)
    }
}
