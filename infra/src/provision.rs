//! `hubsync infra up|down`: every queue, dead-letter queue, table, parameter and bucket of AWS
//! mode, created and deleted idempotently, with the template's hardening (the same resources
//! as `infra/cloudformation.yaml`, whose per-service IAM policies `infra up` does not create):
//! encrypted queues and bucket, a public-access block, a TLS-only bucket policy, point-in-time
//! recovery on both tables, a TTL on done-markers, lifecycle rules for incomplete multipart
//! uploads and abandoned staging. Works in any region.

use anyhow::Context;
use aws::AwsNames;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, PointInTimeRecoverySpecification,
    ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_s3::config::Region;
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketLocationConstraint,
    CreateBucketConfiguration, ExpirationStatus, LifecycleExpiration, LifecycleRule, LifecycleRuleFilter,
    PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
};
use aws_sdk_sqs::types::QueueAttributeName;

/// Receives before a message moves to its dead-letter queue.
pub const MAX_RECEIVE_COUNT: u32 = 5;
/// Days after which staged files of an abandoned run expire: longer than a dead letter is
/// kept (14 days), so a merge task replayed late still finds its staged files.
pub const STAGING_EXPIRY_DAYS: i32 = 15;
/// Days after which an incomplete multipart upload (a merge that died mid-write) is aborted.
pub const MULTIPART_ABORT_DAYS: i32 = 2;
/// The attribute of the run table's TTL (done-markers and plan slices carry it).
pub const TTL_ATTRIBUTE: &str = "expires_at";

async fn queue_url(sqs: &aws_sdk_sqs::Client, name: &str) -> Option<String> {
    sqs.get_queue_url()
        .queue_name(name)
        .send()
        .await
        .ok()?
        .queue_url()
        .map(str::to_string)
}

/// Creates (or updates) every queue with its dead-letter queue, both tables, the flag parameter
/// and the lake bucket, then hardens the bucket.
pub async fn up(
    names: &AwsNames,
    bucket: &str,
    lake_prefix: &str,
    max_receive_count: u32,
) -> anyhow::Result<()> {
    let config = aws::sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    for (queue, dlq, fifo) in names.queues() {
        ensure_queue_with_dlq(&sqs, &queue, &dlq, fifo, max_receive_count).await?;
    }
    let dynamo = aws_sdk_dynamodb::Client::new(&config);
    ensure_tables(&dynamo, names).await?;
    let ssm = aws_sdk_ssm::Client::new(&config);
    ensure_flag_parameter(&ssm, &names.flag_parameter).await?;
    let s3 = aws_sdk_s3::Client::new(&config);
    ensure_bucket(&s3, bucket, config.region()).await?;
    harden_bucket(&s3, bucket, lake_prefix).await
}

/// Creates `queue`'s dead-letter queue, then creates `queue` (or updates it) to redrive there.
async fn ensure_queue_with_dlq(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    dlq: &str,
    fifo: bool,
    max_receive_count: u32,
) -> anyhow::Result<()> {
    let dlq_url = create_dlq(sqs, dlq, fifo).await?;
    let arn = queue_arn(sqs, &dlq_url).await?;
    let redrive =
        serde_json::json!({"deadLetterTargetArn": arn, "maxReceiveCount": max_receive_count}).to_string();
    match queue_url(sqs, queue).await {
        Some(url) => update_queue(sqs, queue, &url, redrive).await?,
        None => create_queue(sqs, queue, fifo, redrive).await?,
    }
    println!("queue {queue} (dead letters: {dlq}, after {max_receive_count} receives)");
    Ok(())
}

/// Creates the encrypted dead-letter queue `dlq` (or finds it) and returns its URL.
async fn create_dlq(sqs: &aws_sdk_sqs::Client, dlq: &str, fifo: bool) -> anyhow::Result<String> {
    let mut create_dlq = sqs
        .create_queue()
        .queue_name(dlq)
        .attributes(QueueAttributeName::SqsManagedSseEnabled, "true");
    if fifo {
        create_dlq = create_dlq.attributes(QueueAttributeName::FifoQueue, "true");
    }
    create_dlq
        .send()
        .await
        .with_context(|| format!("creating queue {dlq}"))?
        .queue_url()
        .map(str::to_string)
        .context("no queue URL")
}

/// The ARN of the dead-letter queue at `dlq_url`, which a redrive policy names.
async fn queue_arn(sqs: &aws_sdk_sqs::Client, dlq_url: &str) -> anyhow::Result<String> {
    sqs.get_queue_attributes()
        .queue_url(dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .context("no DLQ ARN")
}

/// Sets the redrive policy and encryption of the existing queue at `url`.
async fn update_queue(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    url: &str,
    redrive: String,
) -> anyhow::Result<()> {
    sqs.set_queue_attributes()
        .queue_url(url)
        .attributes(QueueAttributeName::RedrivePolicy, redrive)
        .attributes(QueueAttributeName::SqsManagedSseEnabled, "true")
        .send()
        .await
        .with_context(|| format!("updating queue {queue}"))?;
    Ok(())
}

/// Creates the encrypted queue `queue` with its redrive policy and visibility timeout.
async fn create_queue(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    fifo: bool,
    redrive: String,
) -> anyhow::Result<()> {
    let visibility = if fifo { "300" } else { "120" };
    let mut create = sqs
        .create_queue()
        .queue_name(queue)
        .attributes(QueueAttributeName::RedrivePolicy, redrive)
        .attributes(QueueAttributeName::VisibilityTimeout, visibility)
        .attributes(QueueAttributeName::SqsManagedSseEnabled, "true");
    if fifo {
        create = create.attributes(QueueAttributeName::FifoQueue, "true");
    }
    create
        .send()
        .await
        .with_context(|| format!("creating queue {queue}"))?;
    Ok(())
}

/// Creates the state and run tables if missing, with point-in-time recovery on both and the
/// TTL on the run table.
async fn ensure_tables(dynamo: &aws_sdk_dynamodb::Client, names: &AwsNames) -> anyhow::Result<()> {
    let tables = [
        (names.state_table.clone(), vec![("object_type", KeyType::Hash)]),
        (
            names.runs_table(),
            vec![("pk", KeyType::Hash), ("sk", KeyType::Range)],
        ),
    ];
    for (table, keys) in tables.clone() {
        ensure_table(dynamo, &table, keys).await?;
    }
    for (table, _) in &tables {
        enable_point_in_time_recovery(dynamo, table).await?;
    }
    enable_ttl(dynamo, &names.runs_table()).await?;
    println!(
        "tables: point-in-time recovery on, TTL on {}.{TTL_ATTRIBUTE}",
        names.runs_table()
    );
    Ok(())
}

/// Creates the on-demand table `table` with string keys `keys`, unless it exists.
async fn ensure_table(
    dynamo: &aws_sdk_dynamodb::Client,
    table: &str,
    keys: Vec<(&str, KeyType)>,
) -> anyhow::Result<()> {
    if dynamo.describe_table().table_name(table).send().await.is_ok() {
        println!("table {table} exists");
        return Ok(());
    }
    let mut create = dynamo
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest);
    for (name, kind) in keys {
        create = create
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(name)
                    .attribute_type(ScalarAttributeType::S)
                    .build()?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(name)
                    .key_type(kind)
                    .build()?,
            );
    }
    create
        .send()
        .await
        .with_context(|| format!("creating table {table}"))?;
    println!("table {table} created");
    Ok(())
}

/// Turns point-in-time recovery on for `table`.
async fn enable_point_in_time_recovery(dynamo: &aws_sdk_dynamodb::Client, table: &str) -> anyhow::Result<()> {
    dynamo
        .update_continuous_backups()
        .table_name(table)
        .point_in_time_recovery_specification(
            PointInTimeRecoverySpecification::builder()
                .point_in_time_recovery_enabled(true)
                .build()?,
        )
        .send()
        .await
        .with_context(|| format!("enabling point-in-time recovery on {table}"))?;
    Ok(())
}

/// Turns the TTL on [`TTL_ATTRIBUTE`] on for the run table `runs_table`; already on is fine.
async fn enable_ttl(dynamo: &aws_sdk_dynamodb::Client, runs_table: &str) -> anyhow::Result<()> {
    let ttl = dynamo
        .update_time_to_live()
        .table_name(runs_table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name(TTL_ATTRIBUTE)
                .enabled(true)
                .build()?,
        )
        .send()
        .await;
    match ttl {
        Ok(_) => Ok(()),
        // Asking again answers "TimeToLive is already enabled".
        Err(e)
            if format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(&e))
                .contains("already enabled") =>
        {
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!(
            "enabling the TTL on {}: {}",
            runs_table,
            aws_sdk_dynamodb::error::DisplayErrorContext(&e)
        )),
    }
}

/// Creates the flag parameter `name` as `false`, unless it exists (its value is kept).
async fn ensure_flag_parameter(ssm: &aws_sdk_ssm::Client, name: &str) -> anyhow::Result<()> {
    if ssm.get_parameter().name(name).send().await.is_err() {
        ssm.put_parameter()
            .name(name)
            .value("false")
            .r#type(aws_sdk_ssm::types::ParameterType::String)
            .send()
            .await
            .context("creating the flag parameter")?;
        println!("parameter {name} = false");
    } else {
        println!("parameter {name} exists");
    }
    Ok(())
}

/// Creates the bucket in `region` (the SDK's), unless it exists.
async fn ensure_bucket(s3: &aws_sdk_s3::Client, bucket: &str, region: Option<&Region>) -> anyhow::Result<()> {
    if s3.head_bucket().bucket(bucket).send().await.is_ok() {
        println!("bucket {bucket} exists");
        return Ok(());
    }
    let mut create = s3.create_bucket().bucket(bucket);
    // Outside us-east-1 S3 wants the bucket's region named.
    if let Some(region) = region
        .map(|r| r.as_ref().to_string())
        .filter(|r| r != "us-east-1")
    {
        create = create.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region.as_str()))
                .build(),
        );
    }
    create
        .send()
        .await
        .with_context(|| format!("creating bucket {bucket}"))?;
    println!("bucket {bucket} created");
    Ok(())
}

/// The bucket's encryption, public-access block, lifecycle rules and TLS-only policy.
async fn harden_bucket(s3: &aws_sdk_s3::Client, bucket: &str, lake_prefix: &str) -> anyhow::Result<()> {
    encrypt_bucket(s3, bucket).await?;
    block_public_access(s3, bucket).await?;
    set_lifecycle_rules(s3, bucket, lake_prefix).await?;
    // TLS only. Against a plain-HTTP endpoint (an emulator) such a policy would refuse every
    // request hubsync makes, so it is left out there, and said.
    if endpoint_is_plain_http() {
        println!("bucket {bucket}: encrypted, public access blocked, lifecycle rules set; TLS-only policy skipped (the endpoint is plain HTTP)");
        return Ok(());
    }
    set_tls_only_policy(s3, bucket).await?;
    println!("bucket {bucket}: encrypted, public access blocked, TLS only, lifecycle rules set");
    Ok(())
}

/// Encrypts the bucket's new objects by default (SSE-S3, with a bucket key).
async fn encrypt_bucket(s3: &aws_sdk_s3::Client, bucket: &str) -> anyhow::Result<()> {
    s3.put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(
                    ServerSideEncryptionRule::builder()
                        .apply_server_side_encryption_by_default(
                            ServerSideEncryptionByDefault::builder()
                                .sse_algorithm(ServerSideEncryption::Aes256)
                                .build()?,
                        )
                        .bucket_key_enabled(true)
                        .build(),
                )
                .build()?,
        )
        .send()
        .await
        .with_context(|| format!("encrypting bucket {bucket}"))?;
    Ok(())
}

/// Blocks every kind of public access to the bucket.
async fn block_public_access(s3: &aws_sdk_s3::Client, bucket: &str) -> anyhow::Result<()> {
    s3.put_public_access_block()
        .bucket(bucket)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .block_public_policy(true)
                .ignore_public_acls(true)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .with_context(|| format!("blocking public access to bucket {bucket}"))?;
    Ok(())
}

/// Aborts incomplete multipart uploads and expires abandoned staging under `lake_prefix`.
async fn set_lifecycle_rules(s3: &aws_sdk_s3::Client, bucket: &str, lake_prefix: &str) -> anyhow::Result<()> {
    let staging = match lake_prefix.trim_matches('/') {
        "" => format!("{}/", common::lake::STAGING_DIR),
        p => format!("{p}/{}/", common::lake::STAGING_DIR),
    };
    s3.put_bucket_lifecycle_configuration()
        .bucket(bucket)
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .rules(
                    LifecycleRule::builder()
                        .id("abort-incomplete-multipart-uploads")
                        .status(ExpirationStatus::Enabled)
                        .filter(LifecycleRuleFilter::builder().prefix("").build())
                        .abort_incomplete_multipart_upload(
                            AbortIncompleteMultipartUpload::builder()
                                .days_after_initiation(MULTIPART_ABORT_DAYS)
                                .build(),
                        )
                        .build()?,
                )
                .rules(
                    LifecycleRule::builder()
                        .id("expire-abandoned-staging")
                        .status(ExpirationStatus::Enabled)
                        .filter(LifecycleRuleFilter::builder().prefix(&staging).build())
                        .expiration(LifecycleExpiration::builder().days(STAGING_EXPIRY_DAYS).build())
                        .build()?,
                )
                .build()?,
        )
        .send()
        .await
        .with_context(|| format!("setting the lifecycle rules of bucket {bucket}"))?;
    Ok(())
}

/// Whether the S3 endpoint is configured as plain HTTP (an emulator).
fn endpoint_is_plain_http() -> bool {
    std::env::var("AWS_ENDPOINT_URL_S3")
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        .is_ok_and(|e| e.starts_with("http://"))
}

/// Sets the bucket policy that denies every request not made over TLS.
async fn set_tls_only_policy(s3: &aws_sdk_s3::Client, bucket: &str) -> anyhow::Result<()> {
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [format!("arn:aws:s3:::{bucket}"), format!("arn:aws:s3:::{bucket}/*")],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}
        }]
    });
    s3.put_bucket_policy()
        .bucket(bucket)
        .policy(policy.to_string())
        .send()
        .await
        .with_context(|| format!("setting the TLS-only policy of bucket {bucket}"))?;
    Ok(())
}

/// Deletes the queues, tables and parameter; the lake bucket only with `delete_bucket`
/// (it holds the data).
pub async fn down(names: &AwsNames, bucket: &str, delete_bucket: bool) -> anyhow::Result<()> {
    let config = aws::sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    for (queue, dlq, _) in names.queues() {
        for q in [queue, dlq] {
            if let Some(url) = queue_url(&sqs, &q).await {
                sqs.delete_queue()
                    .queue_url(url)
                    .send()
                    .await
                    .with_context(|| format!("deleting {q}"))?;
                println!("queue {q} deleted");
            }
        }
    }
    let dynamo = aws_sdk_dynamodb::Client::new(&config);
    for t in [names.state_table.clone(), names.runs_table()] {
        if dynamo.delete_table().table_name(&t).send().await.is_ok() {
            println!("table {t} deleted");
        }
    }
    let ssm = aws_sdk_ssm::Client::new(&config);
    if ssm
        .delete_parameter()
        .name(&names.flag_parameter)
        .send()
        .await
        .is_ok()
    {
        println!("parameter {} deleted", names.flag_parameter);
    }
    if delete_bucket {
        let lake = aws::s3_lake(bucket, "")?;
        let n = lake.delete_dir(&object_store::path::Path::default()).await?;
        let s3 = aws_sdk_s3::Client::new(&config);
        s3.delete_bucket()
            .bucket(bucket)
            .send()
            .await
            .with_context(|| format!("deleting bucket {bucket}"))?;
        println!("bucket {bucket} deleted ({n} objects)");
    } else {
        println!("bucket {bucket} kept (it holds the lake; pass --delete-bucket to remove it)");
    }
    Ok(())
}
