//! `infra/cloudformation.yaml` deploys into moto and creates what AWS mode expects: six queues
//! with their redrive policies, both tables with their keys, the flag, the lake bucket and the
//! four managed policies. Moto is installed on first use when missing, never skipped.

use std::path::Path;
use std::time::Instant;

use hubsync_tests::cfn;
use hubsync_tests::moto::Moto;
use serde_json::Value;

const TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/cloudformation.yaml");

/// Describes every queue, table, parameter, bucket and local managed policy as one JSON object.
const DESCRIBE_SCRIPT: &str = r#"
import json
import boto3
sqs = boto3.client("sqs")
queues = {}
for url in sqs.list_queues().get("QueueUrls", []):
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    queues[url.rsplit("/", 1)[1]] = attrs
ddb = boto3.client("dynamodb")
tables = {}
for name in ddb.list_tables()["TableNames"]:
    t = ddb.describe_table(TableName=name)["Table"]
    types = {a["AttributeName"]: a["AttributeType"] for a in t["AttributeDefinitions"]}
    tables[name] = {
        "keys": [[k["AttributeName"], k["KeyType"], types[k["AttributeName"]]] for k in t["KeySchema"]],
        "billing": t.get("BillingModeSummary", {}).get("BillingMode"),
    }
ssm = boto3.client("ssm")
params = {p["Name"]: {"type": p["Type"], "value": ssm.get_parameter(Name=p["Name"])["Parameter"]["Value"]}
          for p in ssm.describe_parameters()["Parameters"]}
buckets = [b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]]
iam = boto3.client("iam")
policies = {}
for p in iam.list_policies(Scope="Local")["Policies"]:
    v = iam.get_policy_version(PolicyArn=p["Arn"], VersionId=p["DefaultVersionId"])["PolicyVersion"]
    doc = v["Document"]
    policies[p["PolicyName"]] = json.loads(doc) if isinstance(doc, str) else doc
print(json.dumps({"queues": queues, "tables": tables, "parameters": params,
                  "buckets": buckets, "policies": policies}))
"#;

/// Sends a message to the merges queue through the URL the stack output gives, and receives it.
const ROUND_TRIP_SCRIPT: &str = r#"
import sys
import boto3
sqs = boto3.client("sqs")
url = sys.argv[1]
sqs.send_message(QueueUrl=url, MessageBody="hello", MessageGroupId="deals#2024-01-01",
                 MessageDeduplicationId="m1")
msgs = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])
print(msgs[0]["Body"] if msgs else "")
"#;

fn describe(moto: &Moto) -> Value {
    let out = moto
        .run_python(DESCRIBE_SCRIPT, &[])
        .expect("describing moto's resources");
    serde_json::from_str(out.trim()).expect("describe output is JSON")
}

fn queue<'a>(state: &'a Value, name: &str) -> &'a Value {
    let q = &state["queues"][name];
    assert!(q.is_object(), "queue {name} missing; queues: {}", state["queues"]);
    q
}

/// The queue's redrive policy as (DLQ ARN, maxReceiveCount).
fn redrive(state: &Value, name: &str) -> (String, u64) {
    let raw = queue(state, name)["RedrivePolicy"]
        .as_str()
        .unwrap_or_else(|| panic!("queue {name} has no RedrivePolicy"));
    let policy: Value = serde_json::from_str(raw).expect("RedrivePolicy is JSON");
    let count = match &policy["maxReceiveCount"] {
        Value::Number(n) => n.as_u64().unwrap(),
        Value::String(s) => s.parse().unwrap(),
        other => panic!("maxReceiveCount of {name}: {other}"),
    };
    (policy["deadLetterTargetArn"].as_str().unwrap().to_string(), count)
}

/// Actions a policy grants on resources whose ARN ends with `resource_suffix`.
fn granted(state: &Value, policy: &str, resource_suffix: &str) -> Vec<String> {
    let statements = state["policies"][policy]["Statement"]
        .as_array()
        .unwrap_or_else(|| panic!("policy {policy} missing: {}", state["policies"]));
    let as_list = |v: &Value| -> Vec<String> {
        match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a.iter().map(|x| x.as_str().unwrap().to_string()).collect(),
            _ => vec![],
        }
    };
    let mut actions: Vec<String> = statements
        .iter()
        .filter(|s| {
            as_list(&s["Resource"])
                .iter()
                .any(|r| r.ends_with(resource_suffix))
        })
        .flat_map(|s| as_list(&s["Action"]))
        .collect();
    actions.sort();
    actions.dedup();
    actions
}

#[test]
fn cloudformation_template_deploys_into_moto() {
    let started = Instant::now();
    let moto = Moto::start().expect("starting moto");
    eprintln!("moto up at {} in {:.2?}", moto.endpoint, started.elapsed());

    let deployed = Instant::now();
    let outputs = cfn::deploy(
        &moto,
        Path::new(TEMPLATE),
        "hubsync",
        &[("LakeBucketName", "hubsync-lake")],
    )
    .unwrap_or_else(|e| panic!("{e:#}\n--- moto log ---\n{}", moto.log()));
    eprintln!("stack deployed in {:.2?}", deployed.elapsed());

    // Outputs: every queue URL, table, the flag, bucket and policy ARN.
    for (key, suffix) in [
        ("RequestsQueueUrl", "/hubsync-requests"),
        ("RequestsDlqUrl", "/hubsync-requests-dlq"),
        ("PagesQueueUrl", "/hubsync-pages"),
        ("PagesDlqUrl", "/hubsync-pages-dlq"),
        ("MergesQueueUrl", "/hubsync-merges.fifo"),
        ("MergesDlqUrl", "/hubsync-merges-dlq.fifo"),
        ("StateTableName", "hubspot-sync-state"),
        ("RunsTableName", "hubsync-runs"),
        ("FlagParameterName", "/hubspot-analytics/incremental-sync-enabled"),
        ("LakeBucketName", "hubsync-lake"),
        ("ProducerPolicyArn", ":policy/hubsync-producer"),
        ("ConsumerPolicyArn", ":policy/hubsync-consumer"),
        ("MergerPolicyArn", ":policy/hubsync-merger"),
        ("OperatorPolicyArn", ":policy/hubsync-operator"),
    ] {
        let value = outputs
            .get(key)
            .unwrap_or_else(|| panic!("output {key} missing: {outputs:?}"));
        assert!(
            value.ends_with(suffix),
            "output {key} = {value}, expected …{suffix}"
        );
    }

    let state = describe(&moto);

    // Queues: three standard or FIFO main queues, each redriving to its DLQ after 5 receives.
    for (main, dlq, fifo, visibility) in [
        ("hubsync-requests", "hubsync-requests-dlq", false, None),
        ("hubsync-pages", "hubsync-pages-dlq", false, Some("120")),
        (
            "hubsync-merges.fifo",
            "hubsync-merges-dlq.fifo",
            true,
            Some("300"),
        ),
    ] {
        let (target, count) = redrive(&state, main);
        let dlq_arn = queue(&state, dlq)["QueueArn"].as_str().unwrap();
        assert_eq!(target, dlq_arn, "{main} must redrive to {dlq}");
        assert_eq!(count, 5, "{main} maxReceiveCount");
        assert!(
            queue(&state, dlq)["RedrivePolicy"].is_null(),
            "{dlq} must not redrive"
        );
        for name in [main, dlq] {
            let is_fifo = queue(&state, name)["FifoQueue"].as_str() == Some("true");
            assert_eq!(is_fifo, fifo, "{name} FifoQueue");
        }
        if fifo {
            assert_eq!(queue(&state, main)["ContentBasedDeduplication"], "false");
        }
        if let Some(v) = visibility {
            assert_eq!(
                queue(&state, main)["VisibilityTimeout"],
                v,
                "{main} VisibilityTimeout"
            );
        }
    }
    assert_eq!(
        state["queues"].as_object().unwrap().len(),
        6,
        "{}",
        state["queues"]
    );

    // Tables and keys.
    assert_eq!(
        state["tables"]["hubspot-sync-state"]["keys"],
        serde_json::json!([["object_type", "HASH", "S"]])
    );
    assert_eq!(
        state["tables"]["hubsync-runs"]["keys"],
        serde_json::json!([["pk", "HASH", "S"], ["sk", "RANGE", "S"]])
    );
    for table in ["hubspot-sync-state", "hubsync-runs"] {
        assert_eq!(state["tables"][table]["billing"], "PAY_PER_REQUEST", "{table}");
    }

    // Flag: off by default.
    let flag = &state["parameters"]["/hubspot-analytics/incremental-sync-enabled"];
    assert_eq!(flag["type"], "String");
    assert_eq!(flag["value"], "false");

    // Bucket.
    assert_eq!(state["buckets"], serde_json::json!(["hubsync-lake"]));

    // Policies: a few grants that matter, and no grant beyond the service's own resources.
    let producer_on_requests = granted(&state, "hubsync-producer", ":hubsync-requests");
    for action in [
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
    ] {
        assert!(
            producer_on_requests.contains(&action.to_string()),
            "producer lacks {action}"
        );
    }
    assert!(!producer_on_requests.contains(&"sqs:SendMessage".to_string()));
    assert!(granted(&state, "hubsync-producer", ":hubsync-pages").contains(&"sqs:SendMessage".into()));
    assert_eq!(
        granted(&state, "hubsync-producer", "table/hubspot-sync-state"),
        // GetItem decides a run's mode; Scan is the commit watch's one read of every table's
        // last commit (`hubsync_seconds_since_last_commit`).
        ["dynamodb:GetItem", "dynamodb:Scan"]
    );
    assert_eq!(
        granted(
            &state,
            "hubsync-producer",
            "parameter/hubspot-analytics/incremental-sync-enabled"
        ),
        ["ssm:GetParameter"]
    );
    assert!(granted(&state, "hubsync-producer", "hubsync-lake/*").is_empty());
    assert!(granted(&state, "hubsync-consumer", ":hubsync-merges.fifo").contains(&"sqs:SendMessage".into()));
    // Consumers write only staged pages and quarantined records, never live data.
    for own in ["hubsync-lake/data/_staging/*", "hubsync-lake/data/_rejected/*"] {
        assert_eq!(
            granted(&state, "hubsync-consumer", own),
            ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:PutObject"],
            "{own}"
        );
    }
    assert_eq!(
        granted(&state, "hubsync-consumer", "hubsync-lake/data/_hubsync/index/*"),
        ["s3:GetObject"]
    );
    assert!(granted(&state, "hubsync-consumer", "hubsync-lake/data/*").is_empty());
    assert!(granted(&state, "hubsync-consumer", "hubsync-lake/*").is_empty());
    assert!(granted(&state, "hubsync-consumer", ":hubsync-pages-dlq").contains(&"sqs:SendMessage".into()));
    assert!(granted(&state, "hubsync-consumer", "table/hubspot-sync-state").is_empty());
    assert_eq!(
        granted(&state, "hubsync-merger", "hubsync-lake/data/*"),
        [
            "s3:AbortMultipartUpload",
            "s3:DeleteObject",
            "s3:GetObject",
            "s3:PutObject"
        ]
    );
    assert_eq!(
        granted(&state, "hubsync-merger", ":::hubsync-lake"),
        ["s3:ListBucket"]
    );
    assert!(
        granted(&state, "hubsync-merger", "table/hubspot-sync-state").contains(&"dynamodb:PutItem".into())
    );
    assert!(granted(&state, "hubsync-merger", ":hubsync-pages").is_empty());

    // The queue URL a stack output gives works against moto's endpoint (moto returns AWS-style
    // https://sqs.<region>.amazonaws.com/... URLs; SDK calls still go to AWS_ENDPOINT_URL).
    let body = moto
        .run_python(ROUND_TRIP_SCRIPT, &[&outputs["MergesQueueUrl"]])
        .expect("round trip through the merges queue");
    assert_eq!(body.trim(), "hello");

    // Deleting the stack keeps the data (lake bucket, watermarks) and removes the rest; a new
    // stack then adopts the existing state table with CreateStateTable=false.
    cfn::delete(&moto, "hubsync").expect("deleting the stack");
    let after = describe(&moto);
    assert_eq!(
        after["queues"].as_object().unwrap().len(),
        0,
        "{}",
        after["queues"]
    );
    assert!(
        after["tables"]["hubspot-sync-state"].is_object(),
        "state table retained"
    );
    assert!(after["tables"]["hubsync-runs"].is_null(), "runs table deleted");
    assert_eq!(
        after["buckets"],
        serde_json::json!(["hubsync-lake"]),
        "lake bucket retained"
    );

    let again = cfn::deploy(
        &moto,
        Path::new(TEMPLATE),
        "hubsync-2",
        &[
            ("Prefix", "hubsync2"),
            ("LakeBucketName", "hubsync-lake-2"),
            ("CreateStateTable", "false"),
        ],
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(again["StateTableName"], "hubspot-sync-state");
    assert_eq!(again["RunsTableName"], "hubsync2-runs");

    // reset() empties moto.
    moto.reset().expect("resetting moto");
    let empty = describe(&moto);
    assert!(
        empty["tables"].as_object().unwrap().is_empty(),
        "{}",
        empty["tables"]
    );
    eprintln!("aws_infra test took {:.2?}", started.elapsed());
}

/// The template pins the hardening (moto's CloudFormation applies little of it, so the text
/// is checked; `infra up`, which applies it through the APIs, is checked on the emulator).
#[test]
fn the_template_pins_encryption_tls_recovery_ttl_and_lifecycle_rules() {
    let text = std::fs::read_to_string(TEMPLATE).expect("the template");
    let count = |s: &str| text.matches(s).count();
    assert_eq!(count("SqsManagedSseEnabled: true"), 6, "every queue encrypted");
    assert_eq!(count("PointInTimeRecoveryEnabled: true"), 2, "both tables");
    for needle in [
        "TimeToLiveSpecification:\n        AttributeName: expires_at\n        Enabled: true",
        "SSEAlgorithm: AES256",
        "BlockPublicAcls: true",
        "BlockPublicPolicy: true",
        "IgnorePublicAcls: true",
        "RestrictPublicBuckets: true",
        "aws:SecureTransport: \"false\"",
        "AbortIncompleteMultipartUpload:",
        "Prefix: !Sub \"${LakePrefix}/_staging/\"",
        "s3:AbortMultipartUpload",
    ] {
        assert!(text.contains(needle), "the template lacks {needle:?}");
    }
}

/// What `hubsync infra up` leaves on every resource, read back from the emulator.
const HARDENING_SCRIPT: &str = r#"
import json, sys
import boto3
bucket, runs = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3")
out = {"region": s3.get_bucket_location(Bucket=bucket).get("LocationConstraint")}
out["encryption"] = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"]
out["public"] = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
out["lifecycle"] = sorted(r["ID"] for r in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"])
ddb = boto3.client("dynamodb")
out["pitr"] = {t: ddb.describe_continuous_backups(TableName=t)["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] for t in [runs, "hubspot-sync-state"]}
out["ttl"] = ddb.describe_time_to_live(TableName=runs)["TimeToLiveDescription"]
sqs = boto3.client("sqs")
out["sse"] = {u.rsplit("/", 1)[1]: sqs.get_queue_attributes(QueueUrl=u, AttributeNames=["SqsManagedSseEnabled"])["Attributes"].get("SqsManagedSseEnabled") for u in sqs.list_queues().get("QueueUrls", [])}
print(json.dumps(out))
"#;

/// `hubsync infra up` outside us-east-1 (S3 wants the region named there) applies the
/// hardening, and twice changes nothing.
#[test]
fn infra_up_works_in_any_region_and_hardens_what_it_makes() {
    let moto = Moto::start().expect("starting moto");
    let region = "eu-west-1";
    let run_up = || {
        let out = std::process::Command::new(hubsync_tests::binary::hubsync_binary().expect("hubsync"))
            .args(["infra", "up", "--lake", "s3://lake-eu/data", "--prefix", "eu"])
            .envs(moto.aws_env())
            .env("AWS_REGION", region)
            .env("AWS_DEFAULT_REGION", region)
            .env_remove("AWS_PROFILE")
            .output()
            .expect("running hubsync");
        assert!(
            out.status.success(),
            "infra up in {region} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = run_up();
    assert!(
        first.contains("TLS-only policy skipped (the endpoint is plain HTTP)"),
        "{first}"
    );
    run_up();
    let mut script = moto.python();
    script.env("AWS_REGION", region).env("AWS_DEFAULT_REGION", region);
    let out = script
        .arg("-c")
        .arg(HARDENING_SCRIPT)
        .args(["lake-eu", "eu-runs"])
        .output()
        .expect("python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let state: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(state["region"], region);
    assert_eq!(state["encryption"], "AES256");
    for flag in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(state["public"][flag], true, "{flag}");
    }
    assert_eq!(
        state["lifecycle"],
        serde_json::json!(["abort-incomplete-multipart-uploads", "expire-abandoned-staging"])
    );
    for table in ["eu-runs", "hubspot-sync-state"] {
        assert_eq!(state["pitr"][table], "ENABLED", "{table}");
    }
    assert_eq!(state["ttl"]["AttributeName"], "expires_at");
    assert_eq!(state["ttl"]["TimeToLiveStatus"], "ENABLED");
    let sse = state["sse"].as_object().expect("queues");
    assert_eq!(sse.len(), 6);
    assert!(sse.values().all(|v| v == "true"), "{sse:?}");
}

/// The three templates pass cfn-lint (installed with moto, into the same private folder), the
/// services and schedule stacks deploy into the emulator beside the data stack with the
/// properties the script checks, and the schedule's message decodes with our own decoder.
#[test]
fn the_stack_lints_deploys_with_services_and_its_schedule_sends_a_request_we_decode() {
    let moto = Moto::start().expect("moto");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let templates = [
        "infra/cloudformation.yaml",
        "infra/services.yaml",
        "infra/schedule.yaml",
    ];
    let lint = moto
        .python()
        .current_dir(&root)
        .args([
            "-c",
            "import sys; from cfnlint.runner import main; sys.argv[0] = 'cfn-lint'; sys.exit(main())",
        ])
        .args(templates)
        .output()
        .expect("cfn-lint");
    assert!(
        lint.status.success(),
        "cfn-lint: {}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
    let check = moto
        .python()
        .current_dir(&root)
        .arg("tests/scripts/stack_check.py")
        .arg(&moto.endpoint)
        .args(templates)
        .output()
        .expect("stack_check.py");
    let summary = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "stack_check: {summary}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let summary: Value = serde_json::from_str(summary.lines().last().expect("a summary")).expect("json");
    assert_eq!(summary["ok"], true, "{summary}");
    let body = moto
        .python()
        .current_dir(&root)
        .args([
            "tests/scripts/schedule_input.py",
            "infra/schedule.yaml",
            "--table",
            "deals",
        ])
        .args([
            "--execution-id",
            "d32c5kddcf5bb8c3",
            "--scheduled-time",
            "2026-12-03T18:00:00Z",
        ])
        .output()
        .expect("schedule_input.py");
    assert!(body.status.success(), "{}", String::from_utf8_lossy(&body.stderr));
    let request = common::messages::decode_sync_request(String::from_utf8_lossy(&body.stdout).trim())
        .expect("the schedule's message decodes");
    assert_eq!(request.table, "deals");
    assert_eq!(request.request_id, "d32c5kddcf5bb8c3");
    assert_eq!(request.mode, common::messages::RequestedMode::Auto);
    assert_eq!(request.requested_at_ms, 1_796_320_800_000);
}
