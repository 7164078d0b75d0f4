//! `hubsync infra up|down`: every queue, dead-letter queue, table, parameter and bucket of AWS
//! mode, created and deleted idempotently (the same resources as `infra/cloudformation.yaml`).

use anyhow::Context;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use aws_sdk_sqs::types::QueueAttributeName;
use common::aws::AwsNames;

/// Receives before a message moves to its dead-letter queue.
pub const MAX_RECEIVE_COUNT: u32 = 5;

async fn queue_url(sqs: &aws_sdk_sqs::Client, name: &str) -> Option<String> {
    sqs.get_queue_url()
        .queue_name(name)
        .send()
        .await
        .ok()?
        .queue_url()
        .map(str::to_string)
}

pub async fn up(names: &AwsNames, bucket: &str, max_receive_count: u32) -> anyhow::Result<()> {
    let config = common::aws::sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    for (queue, dlq, fifo) in names.queues() {
        let mut create_dlq = sqs.create_queue().queue_name(&dlq);
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
                    .send()
                    .await
                    .with_context(|| format!("updating queue {queue}"))?;
            }
            None => {
                let mut create = sqs
                    .create_queue()
                    .queue_name(&queue)
                    .attributes(QueueAttributeName::RedrivePolicy, redrive)
                    .attributes(QueueAttributeName::VisibilityTimeout, visibility);
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
    for (table, keys) in tables {
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
        s3.create_bucket()
            .bucket(bucket)
            .send()
            .await
            .with_context(|| format!("creating bucket {bucket}"))?;
        println!("bucket {bucket} created");
    } else {
        println!("bucket {bucket} exists");
    }
    Ok(())
}

/// Deletes the queues, tables and parameter; the lake bucket only with `delete_bucket`
/// (it holds the data).
pub async fn down(names: &AwsNames, bucket: &str, delete_bucket: bool) -> anyhow::Result<()> {
    let config = common::aws::sdk_config().await;
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
        let lake = common::aws::s3_lake(bucket, "")?;
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
