//! Bad input never crashes a worker and never loses data: a bad message is logged and
//! dead-lettered (at once when no retry can help, after its retries otherwise), a record that
//! cannot be staged is quarantined under `_rejected/` and counted on its run (Q1), and
//! everything else goes on.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use common::messages::{self, Body, RequestedMode, SyncRequest};
use common::pipeline::Pipeline;
use common::ports::{Outgoing, Queue, RunStatus};
use common::worker::{process_one, StepOutcome};
use datafusion::arrow::array::{AsArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use hubsync_tests::canned;
use hubsync_tests::harness::{
    drain, drain_with, fast_settings, pipeline_for, sim_config, step_options, Harness,
};
use infra::audit::{read_lake_table, Diff, LakeTable};
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use sim::ObjectType;

/// A queue of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Q {
    Requests,
    Pages,
    Merges,
}

fn queue(p: &Pipeline, q: Q) -> &Arc<dyn Queue> {
    match q {
        Q::Requests => &p.requests,
        Q::Pages => &p.pages,
        Q::Merges => &p.merges,
    }
}

/// One way input goes wrong.
enum Input {
    /// A message body sent to a queue beside a good sync of `deals`.
    Message(Q, String),
    /// HubSpot answers every list request of a full sync with status 200, this content type
    /// and this body.
    HubSpot(&'static str, String),
    /// One staged file of a full sync is rewritten before the merges run.
    Staged(fn(&[u8]) -> anyhow::Result<Vec<u8>>),
}

/// What the lake holds after a case that commits.
struct Stored {
    lake: LakeTable,
    /// Keys of the rewritten staged file (staged cases).
    touched: BTreeSet<i64>,
    /// Differences from the simulator's truth (cases with a simulator).
    diff: Option<Diff>,
    /// Column names of the live files.
    columns: BTreeSet<String>,
    /// The quarantine's lines (`{"reason":..,"record":..}`) and the run's count of them.
    rejected: Vec<serde_json::Value>,
    run_rejected: i64,
}

enum Expect {
    /// Retried, then dead-lettered on the queue with an error containing the text; nothing
    /// else is held up or lost.
    DeadLetter(Q, &'static str),
    /// The run commits and the check holds.
    Commits(fn(&Stored) -> anyhow::Result<()>),
}

struct Case {
    name: &'static str,
    input: Input,
    expect: Expect,
}

const RUN: &str = "deals-good";

fn page_job(run_id: &str, table: &str, page_no: &str, slice: &str, cursor: &str) -> String {
    format!(
        r#"{{"v":1,"kind":"page_job","run_id":"{run_id}","table":"{table}","slice_no":0,"page_no":{page_no},"slice":{slice},"cursor":{cursor}}}"#
    )
}

const LIST_DEALS: &str = r#"{"read":"list","object_type":"deals"}"#;

fn iso(ms: i64) -> String {
    common::clock::iso(ms)
}

fn rewrite(bytes: &[u8], f: impl Fn(RecordBatch) -> anyhow::Result<RecordBatch>) -> anyhow::Result<Vec<u8>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::copy_from_slice(bytes))?.build()?;
    let batches = reader
        .map(|b| f(b?))
        .collect::<anyhow::Result<Vec<RecordBatch>>>()?;
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batches[0].schema(), None)?;
    for b in &batches {
        writer.write(b)?;
    }
    writer.close()?;
    Ok(out)
}

fn without_column(batch: RecordBatch, name: &str) -> anyhow::Result<RecordBatch> {
    let i = batch.schema().index_of(name)?;
    let mut b = batch;
    b.remove_column(i);
    Ok(b)
}

const WEIRD: [&str; 6] = [
    "Zoë Ångström-Straße 😀👩‍👩‍👧‍👦",
    "مرحبا بالعالم ‏RTL‏",
    "e\u{301}\u{302} combining, zero\u{200b}width, \u{feff}BOM",
    "line\nbreak\ttab \"quoted\" \\ back'slash",
    "NUL\u{0}inside and \u{10FFFF} last plane",
    "漢字かなカナ한국어 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
];

/// A record the quarantine cases stage beside the bad one.
fn good() -> (&'static str, &'static str, &'static str, serde_json::Value) {
    (
        "42",
        "2024-01-02T03:04:05.678Z",
        "2024-02-02T03:04:05.678Z",
        serde_json::json!({"dealname": "good"}),
    )
}

/// Q1: the record `id` was set aside with a reason containing `why`, raw; the run counted it
/// and went on (the good record is in the lake).
fn quarantined(s: &Stored, id: &str, why: &str) -> anyhow::Result<()> {
    anyhow::ensure!(s.run_rejected == 1, "the run counts {} rejected", s.run_rejected);
    anyhow::ensure!(s.rejected.len() == 1, "{:?}", s.rejected);
    let line = &s.rejected[0];
    anyhow::ensure!(line["record"]["id"] == id, "{line}");
    anyhow::ensure!(line["reason"].as_str().is_some_and(|r| r.contains(why)), "{line}");
    anyhow::ensure!(
        s.lake.rows.contains_key(&42) && s.lake.rows.len() == 1,
        "{:?}",
        s.lake.rows.keys()
    );
    Ok(())
}

fn cases() -> Vec<Case> {
    use Expect::*;
    use Input::*;
    let msg = |q, body: &str| Message(q, body.to_string());
    let deal = |id: &'static str, created: &'static str, updated: &'static str, props: serde_json::Value| {
        (id, created, updated, props)
    };
    let hubspot = |records: Vec<(&str, &str, &str, serde_json::Value)>| {
        HubSpot("application/json;charset=utf-8", canned::deals_page(&records))
    };
    vec![
        Case {
            name: "request: not JSON",
            input: msg(Q::Requests, "{not json"),
            expect: DeadLetter(Q::Requests, "not valid JSON"),
        },
        Case {
            name: "request: empty body",
            input: msg(Q::Requests, ""),
            expect: DeadLetter(Q::Requests, "not valid JSON"),
        },
        Case {
            name: "request: unknown message version",
            input: msg(Q::Requests, r#"{"v":9,"kind":"sync_request"}"#),
            expect: DeadLetter(Q::Requests, "version 9 is not supported"),
        },
        Case {
            name: "request: no version",
            input: msg(Q::Requests, r#"{"kind":"sync_request"}"#),
            expect: DeadLetter(Q::Requests, "no numeric `v`"),
        },
        Case {
            name: "request: unknown table",
            input: msg(
                Q::Requests,
                r#"{"v":1,"kind":"sync_request","request_id":"bad","table":"opportunities","mode":"auto","requested_at_ms":0}"#,
            ),
            expect: DeadLetter(Q::Requests, "unknown table `opportunities`"),
        },
        Case {
            name: "request: a path in the table name",
            input: msg(
                Q::Requests,
                r#"{"v":1,"kind":"sync_request","request_id":"bad","table":"../deals","mode":"auto","requested_at_ms":0}"#,
            ),
            expect: DeadLetter(Q::Requests, "`table` \"../deals\" must be"),
        },
        Case {
            name: "request: a field missing",
            input: msg(Q::Requests, r#"{"v":1,"kind":"sync_request","request_id":"x"}"#),
            expect: DeadLetter(Q::Requests, "does not match its kind"),
        },
        Case {
            name: "request: a merge task on the requests queue",
            input: msg(
                Q::Requests,
                r#"{"v":1,"kind":"merge_task","run_id":"r","table":"deals","dt":null}"#,
            ),
            expect: DeadLetter(Q::Requests, "expected a sync_request message, got merge_task"),
        },
        Case {
            name: "page: negative page number",
            input: Message(Q::Pages, page_job(RUN, "deals", "-1", LIST_DEALS, "null")),
            expect: DeadLetter(Q::Pages, "does not match its kind"),
        },
        Case {
            name: "page: oversized body",
            input: Message(
                Q::Pages,
                page_job(
                    RUN,
                    "deals",
                    "1",
                    LIST_DEALS,
                    &format!("\"{}\"", "x".repeat(300 * 1024)),
                ),
            ),
            expect: DeadLetter(Q::Pages, "over the 262144-byte limit"),
        },
        Case {
            name: "page: run not in the ledger",
            input: Message(
                Q::Pages,
                page_job("deals-nobody", "deals", "0", LIST_DEALS, "null"),
            ),
            expect: DeadLetter(Q::Pages, "not in the ledger"),
        },
        Case {
            name: "page: another table than its run's",
            input: Message(
                Q::Pages,
                page_job(
                    RUN,
                    "contacts",
                    "0",
                    r#"{"read":"list","object_type":"contacts"}"#,
                    "null",
                ),
            ),
            expect: DeadLetter(Q::Pages, "names table `contacts`"),
        },
        Case {
            name: "page: a page its run never sent",
            input: Message(Q::Pages, page_job(RUN, "deals", "5", LIST_DEALS, "\"999\"")),
            expect: DeadLetter(Q::Pages, "its predecessor s00000-p000004 is not recorded"),
        },
        Case {
            name: "page: a slice not in the plan",
            input: Message(
                Q::Pages,
                page_job(
                    RUN,
                    "deals",
                    "0",
                    r#"{"read":"list_archived","object_type":"deals","since_ms":0}"#,
                    "null",
                ),
            ),
            expect: DeadLetter(Q::Pages, "of the plan is another query"),
        },
        Case {
            name: "page: unknown slice kind",
            input: Message(
                Q::Pages,
                page_job(
                    RUN,
                    "deals",
                    "0",
                    r#"{"read":"scan","object_type":"deals"}"#,
                    "null",
                ),
            ),
            expect: DeadLetter(Q::Pages, "does not match its kind"),
        },
        Case {
            name: "merge: not JSON",
            input: msg(Q::Merges, "<merge/>"),
            expect: DeadLetter(Q::Merges, "not valid JSON"),
        },
        Case {
            name: "merge: dt that is not a date",
            input: msg(
                Q::Merges,
                r#"{"v":1,"kind":"merge_task","run_id":"deals-good","table":"deals","dt":"../../etc"}"#,
            ),
            expect: DeadLetter(Q::Merges, "is not a YYYY-MM-DD date"),
        },
        Case {
            name: "merge: run not in the ledger",
            input: msg(
                Q::Merges,
                r#"{"v":1,"kind":"merge_task","run_id":"deals-nobody","table":"deals","dt":"2024-01-01"}"#,
            ),
            expect: DeadLetter(Q::Merges, "not in the ledger"),
        },
        Case {
            name: "hubspot: 200 with an HTML body",
            input: HubSpot(
                "text/html",
                "<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>".into(),
            ),
            expect: DeadLetter(Q::Pages, "unreadable body"),
        },
        Case {
            name: "hubspot: 200 with invalid JSON",
            input: HubSpot(
                "application/json",
                r#"{"results":[{"id":"1" "properties":{}},]"#.into(),
            ),
            expect: DeadLetter(Q::Pages, "unreadable body"),
        },
        Case {
            name: "hubspot: a record id that is not a number",
            input: hubspot(vec![
                deal(
                    "12a",
                    "2024-01-02T03:04:05.678Z",
                    "2024-02-02T03:04:05.678Z",
                    serde_json::json!({}),
                ),
                good(),
            ]),
            expect: Commits(|s| quarantined(s, "12a", "is not a positive number")),
        },
        Case {
            name: "hubspot: a negative record id",
            input: hubspot(vec![
                good(),
                deal(
                    "-5",
                    "2024-01-02T03:04:05.678Z",
                    "2024-02-02T03:04:05.678Z",
                    serde_json::json!({}),
                ),
            ]),
            expect: Commits(|s| quarantined(s, "-5", "is not a positive number")),
        },
        Case {
            name: "hubspot: a record without its modified property or updatedAt",
            input: hubspot(vec![
                deal(
                    "7",
                    "2024-01-02T03:04:05.678Z",
                    "",
                    serde_json::json!({"dealname": "x"}),
                ),
                good(),
            ]),
            expect: Commits(|s| quarantined(s, "7", "has no readable modified time")),
        },
        Case {
            name: "hubspot: a record without a readable created date",
            input: hubspot(vec![deal(
                "13",
                "not a date",
                "2024-02-02T03:04:05.678Z",
                serde_json::json!({"createdate": "sometime"}),
            )]),
            expect: Commits(|s| {
                let r = &s.lake.rows[&13];
                anyhow::ensure!(r.created_ms.is_none(), "created_at is null: {r:?}");
                anyhow::ensure!(
                    s.lake.rows_per_dt.get(common::catalog::UNKNOWN_CREATED_DT) == Some(&1),
                    "in the stated partition: {:?}",
                    s.lake.rows_per_dt
                );
                Ok(())
            }),
        },
        Case {
            name: "hubspot: created in 1900, in 1969 and after year 9999",
            input: hubspot(vec![
                deal(
                    "14",
                    "1900-01-01T00:00:00Z",
                    "2024-02-02T03:04:05.678Z",
                    serde_json::json!({}),
                ),
                deal(
                    "15",
                    "1969-12-31T23:59:59.999Z",
                    "2024-02-02T03:04:05.678Z",
                    serde_json::json!({}),
                ),
                deal(
                    "16",
                    "253402300800000",
                    "2024-02-02T03:04:05.678Z",
                    serde_json::json!({}),
                ),
            ]),
            expect: Commits(|s| {
                let dts: Vec<&String> = s.lake.rows_per_dt.keys().collect();
                anyhow::ensure!(dts == ["1900-01-01", "1969-12-31", "9999-12-31"], "{dts:?}");
                anyhow::ensure!(
                    s.lake.rows[&16].created_ms == Some(253_402_300_800_000),
                    "year 10000 is kept as it is, in the last four-digit day"
                );
                Ok(())
            }),
        },
        Case {
            name: "hubspot: properties with unusual Unicode",
            input: hubspot(
                WEIRD
                    .iter()
                    .enumerate()
                    .map(|(i, w)| {
                        let id: &'static str = Box::leak((100 + i).to_string().into_boxed_str());
                        deal(
                            id,
                            "2024-01-02T03:04:05.678Z",
                            "2024-02-02T03:04:05.678Z",
                            serde_json::json!({"dealname": w, "dealstage": w}),
                        )
                    })
                    .collect(),
            ),
            expect: Commits(|s| {
                for (i, w) in WEIRD.iter().enumerate() {
                    let row = s
                        .lake
                        .rows
                        .get(&(100 + i as i64))
                        .ok_or_else(|| anyhow::anyhow!("row {i} missing"))?;
                    anyhow::ensure!(
                        row.properties["dealname"].as_deref() == Some(*w),
                        "{:?} != {w:?}",
                        row.properties["dealname"]
                    );
                    anyhow::ensure!(row.properties["dealstage"].as_deref() == Some(*w));
                }
                Ok(())
            }),
        },
        Case {
            name: "hubspot: timestamps as ISO strings",
            input: hubspot(vec![deal(
                "8",
                "2024-01-02T03:04:05.678Z",
                "2024-02-02T03:04:05.678Z",
                serde_json::json!({"createdate": "2023-05-06T07:08:09.010Z", "hs_lastmodifieddate": "2024-03-04T05:06:07.089Z"}),
            )]),
            expect: Commits(|s| {
                let r = &s.lake.rows[&8];
                anyhow::ensure!(
                    r.created_ms.map(iso).as_deref() == Some("2023-05-06T07:08:09.010Z"),
                    "created {:?}",
                    r.created_ms.map(iso)
                );
                anyhow::ensure!(
                    iso(r.modified_ms) == "2024-03-04T05:06:07.089Z",
                    "modified {}",
                    iso(r.modified_ms)
                );
                anyhow::ensure!(
                    s.lake.rows_per_dt.contains_key("2023-05-06"),
                    "partitioned by the created date"
                );
                Ok(())
            }),
        },
        Case {
            name: "hubspot: timestamps as epoch milliseconds",
            input: hubspot(vec![deal(
                "9",
                "2024-01-02T03:04:05.678Z",
                "2024-02-02T03:04:05.678Z",
                serde_json::json!({"createdate": "1683356889010", "hs_lastmodifieddate": "1709528767089"}),
            )]),
            expect: Commits(|s| {
                let r = &s.lake.rows[&9];
                anyhow::ensure!(
                    (r.created_ms, r.modified_ms) == (Some(1_683_356_889_010), 1_709_528_767_089),
                    "{r:?}"
                );
                Ok(())
            }),
        },
        Case {
            name: "hubspot: the modified property missing, updatedAt present",
            input: hubspot(vec![deal(
                "10",
                "2024-01-02T03:04:05.678Z",
                "2024-02-02T03:04:05.678Z",
                serde_json::json!({"dealname": "no modified"}),
            )]),
            expect: Commits(|s| {
                let r = &s.lake.rows[&10];
                anyhow::ensure!(
                    iso(r.modified_ms) == "2024-02-02T03:04:05.678Z",
                    "falls back to updatedAt: {}",
                    iso(r.modified_ms)
                );
                Ok(())
            }),
        },
        Case {
            name: "hubspot: null and absent properties",
            input: hubspot(vec![deal(
                "11",
                "2024-01-02T03:04:05.678Z",
                "2024-02-02T03:04:05.678Z",
                serde_json::json!({"dealname": null, "amount": ""}),
            )]),
            expect: Commits(|s| {
                let r = &s.lake.rows[&11];
                anyhow::ensure!(
                    r.properties["dealname"].is_none() && r.properties["dealstage"].is_none(),
                    "{r:?}"
                );
                anyhow::ensure!(
                    r.properties["amount"].is_none(),
                    "an empty number is no value, not a value that does not cast: {r:?}"
                );
                Ok(())
            }),
        },
        Case {
            name: "staged: not Parquet",
            input: Staged(|_| Ok(b"PAR1 this is not parquet at all".to_vec())),
            expect: DeadLetter(Q::Merges, "not a readable Parquet file"),
        },
        Case {
            name: "staged: truncated Parquet",
            input: Staged(|b| Ok(b[..b.len() / 2].to_vec())),
            expect: DeadLetter(Q::Merges, "not a readable Parquet file"),
        },
        Case {
            name: "staged: no key column",
            input: Staged(|b| rewrite(b, |batch| without_column(batch, "deal_id"))),
            expect: DeadLetter(Q::Merges, "has no `deal_id` column"),
        },
        Case {
            name: "staged: an extra column",
            input: Staged(|b| {
                rewrite(b, |batch| {
                    let mut fields: Vec<Field> = batch
                        .schema()
                        .fields()
                        .iter()
                        .map(|f| f.as_ref().clone())
                        .collect();
                    fields.push(Field::new("_unexpected", DataType::Utf8, true));
                    let mut columns = batch.columns().to_vec();
                    columns.push(Arc::new(StringArray::from(vec!["x"; batch.num_rows()])));
                    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
                })
            }),
            expect: Commits(|s| {
                let d = s.diff.as_ref().expect("a simulator case");
                anyhow::ensure!(d.is_clean(), "{}", d.summary());
                anyhow::ensure!(
                    s.columns.contains("_unexpected"),
                    "kept, not silently dropped: {:?}",
                    s.columns
                );
                Ok(())
            }),
        },
        Case {
            name: "staged: a property column missing",
            input: Staged(|b| rewrite(b, |batch| without_column(batch, "dealname"))),
            expect: Commits(|s| {
                let d = s.diff.as_ref().expect("a simulator case");
                anyhow::ensure!(
                    d.missing.is_empty() && d.unexpected.is_empty() && d.duplicate_keys.is_empty(),
                    "{}",
                    d.summary()
                );
                for k in &s.touched {
                    anyhow::ensure!(
                        s.lake.rows[k].properties["dealname"].is_none(),
                        "{k}: the missing column reads as null"
                    );
                }
                anyhow::ensure!(
                    d.different.iter().all(|(k, _)| s.touched.contains(k)),
                    "only the file's rows differ: {}",
                    d.summary()
                );
                Ok(())
            }),
        },
    ]
}

/// Every line of the quarantine of `deals`.
async fn quarantine(p: &Pipeline) -> anyhow::Result<Vec<serde_json::Value>> {
    use futures::TryStreamExt;
    let files: Vec<_> = p
        .lake
        .store()
        .list(Some(&p.lake.rejected_dir("deals")))
        .try_collect()
        .await?;
    let mut out = Vec::new();
    for f in files {
        let bytes = p.lake.store().get(&f.location).await?.bytes().await?;
        for line in std::str::from_utf8(&bytes)?.lines() {
            out.push(serde_json::from_str(line)?);
        }
    }
    Ok(out)
}

async fn live_columns(p: &Pipeline, table: &str) -> anyhow::Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for dt in p.lake.partitions(table).await? {
        for f in p.lake.list_parquet(&p.lake.partition_dir(table, &dt)).await? {
            let bytes = p.lake.store().get(&f.location).await?.bytes().await?;
            let b = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
            out.extend(b.schema().fields().iter().map(|f| f.name().clone()));
        }
    }
    Ok(out)
}

fn full_request(id: &str) -> SyncRequest {
    SyncRequest {
        request_id: id.into(),
        table: "deals".into(),
        mode: RequestedMode::Full,
        requested_at_ms: 0,
    }
}

async fn expect_dead_letter(p: &Pipeline, errors: &[String], q: Q, text: &str) -> anyhow::Result<()> {
    let dead = queue(p, q).depth().await?.dead;
    anyhow::ensure!(
        dead == 1,
        "expected one dead letter on {q:?}, found {dead}; errors: {errors:?}"
    );
    anyhow::ensure!(
        errors.iter().any(|e| e.contains(text)),
        "no error contains {text:?}: {errors:?}"
    );
    for other in [Q::Requests, Q::Pages, Q::Merges].into_iter().filter(|o| *o != q) {
        anyhow::ensure!(
            queue(p, other).depth().await?.dead == 0,
            "an unrelated dead letter on {other:?}"
        );
    }
    Ok(())
}

async fn run_case(case: &Case) -> anyhow::Result<()> {
    match &case.input {
        Input::Message(q, body) => {
            let h = Harness::start(sim_config(30, &[ObjectType::Deals])).await?;
            let p = &h.pipeline;
            p.requests
                .send(vec![Outgoing::standard(messages::encode(&Body::SyncRequest(
                    full_request("good"),
                )))])
                .await?;
            let bad = match q {
                Q::Merges => Outgoing::fifo(body.clone(), "bad".into(), "bad".into()),
                _ => Outgoing::standard(body.clone()),
            };
            // After the good request, so a page or merge naming its run finds it.
            let errors = drain_with(p, Some((queue(p, *q).clone(), bad))).await?.errors;
            let Expect::DeadLetter(want_q, text) = case.expect else {
                anyhow::bail!("message cases expect a dead letter");
            };
            anyhow::ensure!(want_q == *q, "a message is dead-lettered on its own queue");
            expect_dead_letter(p, &errors, *q, text).await?;
            // No retry can fix a bad message: it goes to the dead letters at its first
            // receive, not after its retries.
            anyhow::ensure!(
                errors.len() == 1,
                "dead-lettered at once, not retried: {errors:?}"
            );
            let run = p.ledger.get_run(RUN).await?.expect("the good run");
            anyhow::ensure!(
                run.status == RunStatus::Committed,
                "the good run is held up: {run:?}"
            );
            h.assert_equals_truth(&["deals"]).await?;
        }
        Input::HubSpot(content_type, body) => {
            let hubspot = canned::serve(content_type, body.clone()).await?;
            let dir = tempfile::tempdir()?;
            let p = &pipeline_for(&hubspot.base_url, dir.path(), fast_settings())?;
            producer::handle_request(p, &p.hubspot, &full_request("good")).await?;
            let errors = drain(p).await?.errors;
            let run = p.ledger.get_run(RUN).await?.expect("the run");
            match case.expect {
                Expect::DeadLetter(q, text) => {
                    expect_dead_letter(p, &errors, q, text).await?;
                    anyhow::ensure!(
                        run.status == RunStatus::Fetching,
                        "the run waits for its page: {run:?}"
                    );
                    anyhow::ensure!(
                        p.lake.partitions("deals").await?.is_empty(),
                        "nothing reached the lake"
                    );
                }
                Expect::Commits(check) => {
                    anyhow::ensure!(run.status == RunStatus::Committed, "{run:?}; errors: {errors:?}");
                    let lake = read_lake_table(&p.lake, p.catalog.table("deals")?).await?;
                    anyhow::ensure!(lake.duplicate_keys.is_empty() && lake.misplaced.is_empty());
                    check(&Stored {
                        lake,
                        touched: BTreeSet::new(),
                        diff: None,
                        columns: live_columns(p, "deals").await?,
                        rejected: quarantine(p).await?,
                        run_rejected: run.rejected,
                    })?;
                }
            }
        }
        Input::Staged(transform) => {
            let h = Harness::start(sim_config(30, &[ObjectType::Deals])).await?;
            let p = &h.pipeline;
            producer::handle_request(p, &p.hubspot, &full_request("good")).await?;
            let pages = consumer::PageJobHandler::new(p.pipeline.clone(), p.hubspot.clone());
            while process_one(p.pages.as_ref(), pages.as_ref(), &step_options()).await?
                != StepOutcome::EmptyQueue
            {}
            let dt = hubsync_tests::harness::touched(p, RUN)
                .await?
                .into_iter()
                .next()
                .expect("a partition");
            let victim = p
                .lake
                .list_parquet(&p.lake.staging_dir("deals", RUN, &dt))
                .await?
                .remove(0)
                .location;
            let original = p.lake.store().get(&victim).await?.bytes().await?;
            let touched: BTreeSet<i64> = {
                let reader = ParquetRecordBatchReaderBuilder::try_new(original.clone())?.build()?;
                let mut keys = BTreeSet::new();
                for b in reader {
                    let b = b?;
                    let col = b.column_by_name("deal_id").expect("key column");
                    keys.extend(col.as_primitive::<Int64Type>().values().iter().copied());
                }
                keys
            };
            p.lake
                .store()
                .put(&victim, Bytes::from(transform(&original)?).into())
                .await?;
            let errors = drain(p).await?.errors;
            let run = p.ledger.get_run(RUN).await?.expect("the run");
            match case.expect {
                Expect::DeadLetter(q, text) => {
                    expect_dead_letter(p, &errors, q, text).await?;
                    anyhow::ensure!(
                        run.status == RunStatus::Merging && run.merges_outstanding == 1,
                        "{run:?}"
                    );
                    anyhow::ensure!(
                        p.lake.store().head(&victim).await.is_ok(),
                        "the bad file is kept for the operator"
                    );
                }
                Expect::Commits(check) => {
                    anyhow::ensure!(run.status == RunStatus::Committed, "{run:?}; errors: {errors:?}");
                    let (lake, diff) = h.diff("deals").await?;
                    check(&Stored {
                        lake,
                        touched,
                        diff: Some(diff),
                        columns: live_columns(p, "deals").await?,
                        rejected: Vec::new(),
                        run_rejected: run.rejected,
                    })?;
                }
            }
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_table_each_case_with_its_outcome() -> anyhow::Result<()> {
    let cases = cases();
    assert!(cases.len() >= 20);
    let mut failures = Vec::new();
    for case in &cases {
        if let Err(e) = run_case(case).await {
            failures.push(format!("{}: {e:#}", case.name));
        }
    }
    println!(
        "bad input: {} cases, {} as expected",
        cases.len(),
        cases.len() - failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_staged_file_dead_letters_its_merge_and_replay_completes_the_run() -> anyhow::Result<()> {
    let h = Harness::start(sim_config(200, &[ObjectType::Deals])).await?;
    let p = &h.pipeline;
    let request = SyncRequest {
        request_id: "r".into(),
        table: "deals".into(),
        mode: RequestedMode::Auto,
        requested_at_ms: 0,
    };
    producer::handle_request(p, &p.hubspot, &request).await?;
    // Fetch everything, but hold the merges: corrupt one staged file first.
    let pages = consumer::PageJobHandler::new(p.pipeline.clone(), p.hubspot.clone());
    while process_one(p.pages.as_ref(), pages.as_ref(), &step_options()).await? != StepOutcome::EmptyQueue {}
    let run = p.ledger.get_run("deals-r").await?.unwrap();
    assert_eq!(run.status, RunStatus::Merging);
    let touched = hubsync_tests::harness::touched(p, "deals-r").await?;
    let dt = touched.iter().next().unwrap().clone();
    let staged = p
        .lake
        .list_parquet(&p.lake.staging_dir("deals", "deals-r", &dt))
        .await?;
    let victim = staged[0].location.clone();
    let original = p.lake.store().get(&victim).await?.bytes().await?;
    p.lake
        .store()
        .put(
            &victim,
            Bytes::from_static(b"PAR1 this is not parquet at all").into(),
        )
        .await?;

    let errors = drain(p).await?.errors;
    assert!(errors.iter().any(|e| e.contains(&dt)), "{errors:?}");
    assert_eq!(
        p.merges.depth().await?.dead,
        1,
        "only the corrupt partition's task"
    );
    let run = p.ledger.get_run("deals-r").await?.unwrap();
    assert_eq!(
        run.status,
        RunStatus::Merging,
        "the run waits for its last partition"
    );
    assert_eq!(run.merges_outstanding, 1);
    // Nothing else was lost: the staged file is still there, other partitions are live.
    assert!(p.lake.store().head(&victim).await.is_ok());
    assert_eq!(p.lake.partitions("deals").await?.len(), touched.len() - 1);

    // The operator fixes the cause and replays the dead letter.
    p.lake.store().put(&victim, original.into()).await?;
    assert_eq!(p.merges.replay_dead_letters(None, false).await?.len(), 1);
    drain(p).await?;
    assert_eq!(
        p.ledger.get_run("deals-r").await?.unwrap().status,
        RunStatus::Committed
    );
    h.assert_equals_truth(&["deals"]).await?;
    Ok(())
}
