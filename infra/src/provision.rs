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
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
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

pub async fn up(
    names: &AwsNames,
    bucket: &str,
    lake_prefix: &str,
    max_receive_count: u32,
) -> anyhow::Result<()> {
    let config = aws::sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    for (queue, dlq, fifo) in names.queues() {
        let mut create_dlq = sqs
            .create_queue()
            .queue_name(&dlq)
            .attributes(QueueAttributeName::SqsManagedSseEnabled, "true");
        if fifo {
            create_dlq = create_dlq.attributes(QueueAttributeName::FifoQueue, "true");
        }
        let dlq_url = create_dlq
            .send()
            .await
            .with_context(|| format!("creating queue {dlq}"))?
            .queue_url()
            .map(str::to_string)
            .context("no queue URL")?;
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await?
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .context("no DLQ ARN")?;
        let redrive =
            serde_json::json!({"deadLetterTargetArn": arn, "maxReceiveCount": max_receive_count}).to_string();
        let visibility = if fifo { "300" } else { "120" };
        match queue_url(&sqs, &queue).await {
            Some(url) => {
                sqs.set_queue_attributes()
                    .queue_url(url)
                    .attributes(QueueAttributeName::RedrivePolicy, redrive)
                    .attributes(QueueAttributeName::SqsManagedSseEnabled, "true")
                    .send()
                    .await
                    .with_context(|| format!("updating queue {queue}"))?;
            }
            None => {
                let mut create = sqs
                    .create_queue()
                    .queue_name(&queue)
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
            }
        }
        println!("queue {queue} (dead letters: {dlq}, after {max_receive_count} receives)");
    }

    let dynamo = aws_sdk_dynamodb::Client::new(&config);
    let tables = [
        (names.state_table.clone(), vec![("object_type", KeyType::Hash)]),
        (
            names.runs_table(),
            vec![("pk", KeyType::Hash), ("sk", KeyType::Range)],
        ),
    ];
    for (table, keys) in tables.clone() {
        if dynamo.describe_table().table_name(&table).send().await.is_ok() {
            println!("table {table} exists");
            continue;
        }
        let mut create = dynamo
            .create_table()
            .table_name(&table)
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
    }
    for (table, _) in &tables {
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
    }
    let ttl = dynamo
        .update_time_to_live()
        .table_name(names.runs_table())
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name(TTL_ATTRIBUTE)
                .enabled(true)
                .build()?,
        )
        .send()
        .await;
    match ttl {
        Ok(_) => {}
        // Asking again answers "TimeToLive is already enabled".
        Err(e)
            if format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(&e))
                .contains("already enabled") => {}
        Err(e) => {
            return Err(anyhow::anyhow!(
                "enabling the TTL on {}: {}",
                names.runs_table(),
                aws_sdk_dynamodb::error::DisplayErrorContext(&e)
            ))
        }
    }
    println!(
        "tables: point-in-time recovery on, TTL on {}.{TTL_ATTRIBUTE}",
        names.runs_table()
    );

    let ssm = aws_sdk_ssm::Client::new(&config);
    if ssm
        .get_parameter()
        .name(&names.flag_parameter)
        .send()
        .await
        .is_err()
    {
        ssm.put_parameter()
            .name(&names.flag_parameter)
            .value("false")
            .r#type(aws_sdk_ssm::types::ParameterType::String)
            .send()
            .await
            .context("creating the flag parameter")?;
        println!("parameter {} = false", names.flag_parameter);
    } else {
        println!("parameter {} exists", names.flag_parameter);
    }

    let s3 = aws_sdk_s3::Client::new(&config);
    if s3.head_bucket().bucket(bucket).send().await.is_err() {
        let mut create = s3.create_bucket().bucket(bucket);
        // Outside us-east-1 S3 wants the bucket's region named.
        if let Some(region) = config
            .region()
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
    } else {
        println!("bucket {bucket} exists");
    }
    harden_bucket(&s3, bucket, lake_prefix).await
}

/// The bucket's encryption, public-access block, lifecycle rules and TLS-only policy.
async fn harden_bucket(s3: &aws_sdk_s3::Client, bucket: &str, lake_prefix: &str) -> anyhow::Result<()> {
    use aws_sdk_s3::types::{
        AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, ExpirationStatus, LifecycleExpiration,
        LifecycleRule, LifecycleRuleFilter, PublicAccessBlockConfiguration, ServerSideEncryption,
        ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    };
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
    // TLS only. Against a plain-HTTP endpoint (an emulator) such a policy would refuse every
    // request hubsync makes, so it is left out there, and said.
    let plain_http = std::env::var("AWS_ENDPOINT_URL_S3")
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        .is_ok_and(|e| e.starts_with("http://"));
    if plain_http {
        println!("bucket {bucket}: encrypted, public access blocked, lifecycle rules set; TLS-only policy skipped (the endpoint is plain HTTP)");
        return Ok(());
    }
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
    println!("bucket {bucket}: encrypted, public access blocked, TLS only, lifecycle rules set");
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
