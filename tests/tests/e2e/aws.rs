//! AWS mode against the moto emulator: `hubsync infra up`, the producer, two consumers and a
//! merger as separate processes, full and incremental syncs of all five tables equal to the
//! simulator's truth read back from S3, the seed's state items in DynamoDB, the flag in SSM,
//! a poison page job dead-lettered then replayed, and the CloudFormation template's resources
//! with a consumer stopped by SIGTERM mid-page, draining within the services' StopTimeout.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::pipeline::Pipeline;
use common::ports::{RunMode, RunStatus};
use hubsync_tests::deploy::{aws_pipeline, stop, Deployment};
use hubsync_tests::harness::{diff_lake, sim_config, wait_for};
use hubsync_tests::moto::Moto;
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;
use sim::{ConfigPatch, FaultKind, MutateRequest, NewProperty, SimServer};

const TABLES: [&str; 5] = ["deals", "contacts", "companies", "activities", "contacts_dim"];

async fn assert_equals_truth(sim: &SimServer, p: &Pipeline) -> anyhow::Result<u64> {
    let mut compared = 0;
    for t in TABLES {
        let (_, diff) = diff_lake(sim, p, t).await?;
        assert!(diff.is_clean(), "{t}: {}", diff.summary());
        compared += diff.rows_compared;
    }
    Ok(compared)
}

/// A Glue table as boto3 reads it: columns, partition keys, parameters.
const GLUE_TABLE_SCRIPT: &str = r#"
import json, sys
import boto3
t = boto3.client("glue").get_table(DatabaseName=sys.argv[1], Name=sys.argv[2])["Table"]
print(json.dumps({"columns": [[c["Name"], c["Type"]] for c in t["StorageDescriptor"]["Columns"]],
                  "partition_keys": [[c["Name"], c["Type"]] for c in t.get("PartitionKeys", [])],
                  "parameters": t.get("Parameters", {}),
                  "location": t["StorageDescriptor"]["Location"]}))
"#;

/// Every live file of `table` has exactly the columns and types of its Glue table (Hive types
/// of the files' Arrow fields), `dt` is its projected partition key; returns Glue's columns.
async fn assert_glue_follows_files(
    moto: &Moto,
    p: &Pipeline,
    db: &str,
    table: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let out = moto.run_python(GLUE_TABLE_SCRIPT, &[db, table])?;
    let glue: Value = serde_json::from_str(out.trim())?;
    let columns: Vec<(String, String)> = serde_json::from_value(glue["columns"].clone())?;
    assert_eq!(
        glue["partition_keys"],
        serde_json::json!([["dt", "string"]]),
        "{table}"
    );
    assert_eq!(
        glue["parameters"]["projection.enabled"], "true",
        "{table}: {glue}"
    );
    assert_eq!(
        glue["parameters"]["projection.dt.type"], "date",
        "{table}: {glue}"
    );
    let location = glue["location"].as_str().unwrap_or_default();
    assert!(
        location.ends_with(&format!("/data/{table}/")),
        "{table}: {location}"
    );
    let mut files = 0;
    for dt in p.lake.partitions(table).await? {
        for meta in p.lake.list_parquet(&p.lake.partition_dir(table, &dt)).await? {
            let bytes = p.lake.store().get(&meta.location).await?.bytes().await?;
            let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
            let of_file: Vec<(String, String)> = builder
                .schema()
                .fields()
                .iter()
                .map(|f| {
                    (
                        f.name().clone(),
                        common::ports::metastore::hive_type(f.data_type()),
                    )
                })
                .collect();
            assert_eq!(of_file, columns, "{table} dt={dt}: {}", meta.location);
            files += 1;
        }
    }
    assert!(files > 0, "{table} has no files");
    Ok(columns)
}

/// The named series on each service's `/metrics` after the syncs, and EMF lines in the logs.
/// The StopTimeout of the consumer's container in `infra/services.yaml`: how long ECS waits
/// after SIGTERM before it kills the task.
fn consumer_stop_timeout() -> anyhow::Result<Duration> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/services.yaml");
    let template = std::fs::read_to_string(path)?;
    let (_, consumer) = template
        .split_once("EntryPoint: [consumer]")
        .ok_or_else(|| anyhow::anyhow!("{path} has no consumer container"))?;
    let secs: u64 = consumer
        .lines()
        .find_map(|l| l.trim().strip_prefix("StopTimeout:"))
        .ok_or_else(|| anyhow::anyhow!("the consumer container of {path} sets no StopTimeout"))?
        .trim()
        .parse()?;
    Ok(Duration::from_secs(secs))
}

async fn assert_metrics_name_the_syncs(ports: &[String], log: &std::path::Path) -> anyhow::Result<()> {
    let scrape = |addr: String| async move {
        let body = reqwest::get(format!("http://{addr}/metrics"))
            .await?
            .error_for_status()?
            .text()
            .await?;
        anyhow::Ok(body)
    };
    // The producer's commit watch runs every second here (its EMF interval).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let producer = loop {
        let body = scrape(ports[0].clone()).await?;
        if body.contains("hubsync_max_seconds_since_last_commit") || tokio::time::Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        producer.contains("hubsync_max_seconds_since_last_commit"),
        "{producer}"
    );
    assert!(
        producer.contains("hubsync_seconds_since_last_commit{table=\"deals\"}"),
        "{producer}"
    );
    assert!(producer.contains("hubsync_runs_past_lease 0"), "{producer}");
    assert!(
        producer.contains("hubsync_hubspot_requests_total{window=\"search\",outcome=\"ok\"}"),
        "{producer}"
    );
    let consumer = scrape(ports[1].clone()).await?;
    // Two consumers share the pages: which tables this one fetched is the queue's choice,
    // so its series must name a table, not a given one.
    for series in [
        "hubsync_records_fetched_total{table=\"",
        "hubsync_pages_fetched_total{table=\"",
        "hubsync_hubspot_requests_total{window=\"general\",outcome=\"ok\"}",
        "hubsync_hubspot_request_seconds",
        "hubsync_messages_total{queue=\"t1-pages\",outcome=\"done\"}",
    ] {
        assert!(consumer.contains(series), "consumer lacks {series}:\n{consumer}");
    }
    let merger = scrape(ports[2].clone()).await?;
    for series in [
        "hubsync_runs_committed_total{table=\"deals\"}",
        "hubsync_merge_seconds",
        "hubsync_merge_bytes_total{table=\"deals\"}",
        "hubsync_merge_rows_total{table=\"deals\"}",
    ] {
        assert!(merger.contains(series), "merger lacks {series}:\n{merger}");
    }
    // The same counters as CloudWatch embedded metric format, in the JSON logs.
    let emf: Vec<Value> = std::fs::read_to_string(log)?
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l.get("_aws").is_some())
        .collect();
    let fetched: f64 = emf
        .iter()
        .filter(|l| l["service"] == "consumer" && l["table"] == "deals")
        .filter_map(|l| l["hubsync_records_fetched_total"].as_f64())
        .sum();
    assert!(fetched >= 40.0, "EMF lines count {fetched} deal records fetched");
    let directive = &emf[0]["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "hubsync", "{directive}");
    assert!(
        emf.iter()
            .any(|l| l["service"] == "producer" && l.get("hubsync_max_seconds_since_last_commit").is_some()),
        "no EMF line of the commit watch"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_on_the_emulator_sync_all_five_tables_equal_to_truth() -> anyhow::Result<()> {
    let _env = hubsync_tests::moto::env_lock().await;
    let moto = Moto::start()?;
    let server = sim::start(sim_config(40, &[])).await?;
    let dir = tempfile::tempdir()?;
    // The stack and its IAM users; the in-process pipeline below reads the same standard AWS
    // configuration as the services, as the administrator.
    let d = Deployment::on(
        &moto,
        &server.base_url(),
        "t1",
        &dir.path().join("services.log"),
        &[],
    )?;
    d.hubsync_ok(&["infra", "up", "--max-receive-count", "2"])?;
    // Each service serves Prometheus metrics and writes EMF lines every second.
    let ports: Vec<String> = (0..3)
        .map(|_| hubsync_tests::moto::free_port().map(|p| format!("127.0.0.1:{p}")))
        .collect::<anyhow::Result<_>>()?;
    let metrics = |addr: &str| {
        [
            ("HUBSYNC_METRICS_ADDR", addr.to_string()),
            ("HUBSYNC_EMF_INTERVAL_SECS", "1".into()),
        ]
    };
    let with = |name: &str, env: [(&str, String); 2]| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        d.service_with(name, &env)
    };
    let mut services = vec![
        with("producer", metrics(&ports[0]))?,
        with("consumer", metrics(&ports[1]))?,
        d.service("consumer")?,
        with("merger", metrics(&ports[2]))?,
    ];
    let p = aws_pipeline("lake-t1", "t1").await?;

    // Full sync: the flag is "false" as provisioned.
    let runs = d.sync_all(&p, &TABLES).await?;
    assert!(runs.iter().all(|r| r.mode == RunMode::Full));
    let compared = assert_equals_truth(&server, &p).await?;
    assert_eq!(compared, 40 * 4 + 40 * 5);
    // Athena's tables: created by `infra up`, kept in step by the merger's commits (under its
    // own policy), each equal to its files' schema; `glue show` prints the same DDL.
    for t in TABLES {
        assert_glue_follows_files(&moto, &p, "t1", t).await?;
    }
    let ddl = d.hubsync_ok(&["glue", "show", "--table", "deals"])?;
    assert!(
        ddl.contains("CREATE EXTERNAL TABLE IF NOT EXISTS `t1`.`deals`"),
        "{ddl}"
    );
    assert!(ddl.contains("'projection.dt.type' = 'date'"), "{ddl}");
    // `hubsync query` reads the S3 lake as the operator.
    let count = d.hubsync_ok(&[
        "query",
        "--format",
        "csv",
        "SELECT count(*) AS n FROM deals WHERE dt >= '1970-01-01'",
    ])?;
    assert_eq!(count.trim(), "n\n40", "{count}");
    // Relations under the services' own policies: link tables (v4 batch reads, set merges)
    // and the owners and pipelines snapshots.
    let relations = [
        "deal_contact_associations",
        "contact_company_associations",
        "activity_deal_associations",
        "owners",
        "pipeline_stages",
    ];
    d.sync_all(&p, &relations).await?;
    for t in relations {
        let (lake, diff) = diff_lake(&server, &p, t).await?;
        assert!(diff.is_clean(), "{t}: {}", diff.summary());
        assert!(lake.row_count() > 0, "{t} is empty");
    }

    // The seed's state items, attribute by attribute.
    let dynamo = aws_sdk_dynamodb::Client::new(&aws_config::load_from_env().await);
    for t in TABLES {
        let item = dynamo
            .get_item()
            .table_name("hubspot-sync-state")
            .key(
                "object_type",
                aws_sdk_dynamodb::types::AttributeValue::S(t.into()),
            )
            .send()
            .await?;
        let item = item.item().expect("state item");
        for attr in [
            "object_type",
            "last_sync_at",
            "last_created_at",
            "last_modified_at",
            "records_processed",
        ] {
            assert!(item.contains_key(attr), "{t} lacks {attr}: {item:?}");
        }
    }

    // Changes, the flag turned on in SSM with a value of the seed's vocabulary, incremental.
    // Deals get a new property: its column lands through a column backfill.
    for object_type in ["deals", "contacts", "companies", "calls", "notes"] {
        server
            .mutate(&MutateRequest {
                object_type: object_type.into(),
                updates: 6,
                creates: 3,
                archives: 2,
                same_timestamp: false,
                add_property: (object_type == "deals").then(|| NewProperty {
                    name: "fleet_size".into(),
                    kind: "number".into(),
                    field_type: Some("number".into()),
                }),
                ..Default::default()
            })
            .await?;
    }
    d.hubsync_ok(&["flag", "set", " Yes "])?;
    let ssm = aws_sdk_ssm::Client::new(&aws_config::load_from_env().await);
    let raw = ssm
        .get_parameter()
        .name("/hubspot-analytics/incremental-sync-enabled")
        .send()
        .await?;
    assert_eq!(raw.parameter().and_then(|p| p.value()), Some(" Yes "));
    let runs = d.sync_all(&p, &TABLES).await?;
    assert!(
        runs.iter().all(|r| r.mode == RunMode::Incremental),
        "{:?}",
        runs.iter().map(|r| r.mode).collect::<Vec<_>>()
    );
    assert_equals_truth(&server, &p).await?;
    let columns = assert_glue_follows_files(&moto, &p, "t1", "deals").await?;
    assert!(
        columns.contains(&("fleet_size".to_string(), "double".to_string())),
        "{columns:?}"
    );

    assert_metrics_name_the_syncs(&ports, &dir.path().join("services.log")).await?;

    // A poison page job: HubSpot fails every request, the job is dead-lettered; the cause is
    // removed, `hubsync replay` brings it back, and the run commits.
    server.configure(&ConfigPatch {
        fault_rate: Some(1.0),
        fault_kinds: Some(vec![FaultKind::ServerError]),
        ..Default::default()
    })?;
    d.hubsync_ok(&["sync", "--table", "deals", "--mode", "full"])?;
    wait_for("the poison job in the DLQ", Duration::from_secs(120), || async {
        Ok(p.pages.depth().await?.dead >= 1)
    })
    .await?;
    let run = p.ledger.active_run("deals").await?.expect("the run waits");
    assert_eq!(run.status, RunStatus::Fetching);
    server.configure(&ConfigPatch {
        fault_rate: Some(0.0),
        ..Default::default()
    })?;
    let out = d.hubsync_ok(&["replay", "--queue", "pages"])?;
    assert!(out.contains("replayed 1"), "{out}");
    wait_for("the replayed run to commit", Duration::from_secs(120), || async {
        Ok(p.ledger
            .get_run(&run.run_id)
            .await?
            .is_some_and(|r| r.status == RunStatus::Committed))
    })
    .await?;
    assert_equals_truth(&server, &p).await?;
    let status = d.hubsync_ok(&["status"])?;
    assert!(status.contains("t1-pages"), "{status}");

    stop(std::mem::take(&mut services))?;

    // The CloudFormation template alone, deployed into a fresh emulator (no `infra up`), and
    // a sync on what it made.
    drop(p);
    let moto2 = Moto::start()?;
    let d2 = Deployment::on(
        &moto2,
        &server.base_url(),
        "cfn",
        &dir.path().join("services-cfn.log"),
        &[],
    )?;
    let services = vec![d2.service("producer")?, d2.service("merger")?];
    let mut consumer = d2.service("consumer")?;
    let p2 = aws_pipeline("lake-cfn", "cfn").await?;

    // ECS stops a task with SIGTERM and kills it StopTimeout seconds later: a consumer told
    // to stop while a page is in its hands (each HubSpot answer takes 3 s now) finishes that
    // page within the template's StopTimeout and exits 0, so the run commits with no consumer
    // left running.
    let stop_timeout = consumer_stop_timeout()?;
    server.configure(&ConfigPatch {
        latency_ms: Some(3_000),
        ..Default::default()
    })?;
    let mut sync = Command::new(hubsync_tests::binary::hubsync_binary()?);
    d2.env(&mut sync, "operator");
    let sync = sync
        .args(["sync", "--table", "companies", "--wait", "--wait-secs", "300"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    wait_for(
        "a page job in the consumer's hands",
        Duration::from_secs(120),
        || async { Ok(p2.pages.depth().await?.in_flight >= 1) },
    )
    .await?;
    let asked = Instant::now();
    Command::new("kill")
        .arg("-TERM")
        .arg(consumer.id().to_string())
        .status()?;
    let status = consumer.wait()?;
    let drained_in = asked.elapsed();
    assert!(status.success(), "the consumer did not stop cleanly: {status}");
    assert!(
        drained_in < stop_timeout,
        "the consumer took {drained_in:?} to drain, past the StopTimeout of {stop_timeout:?}"
    );
    println!(
        "consumer drained its page and exited {drained_in:?} after SIGTERM (StopTimeout {stop_timeout:?})"
    );
    let out = sync.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("committed"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.configure(&ConfigPatch {
        latency_ms: Some(0),
        ..Default::default()
    })?;
    let (_, diff) = diff_lake(&server, &p2, "companies").await?;
    assert!(diff.is_clean() && diff.rows_compared > 0, "{}", diff.summary());
    stop(services)?;
    server.shutdown().await?;
    Ok(())
}
