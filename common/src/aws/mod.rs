//! AWS mode's adapters: SQS queues, DynamoDB sync state and run ledger, the SSM flag and the
//! S3 lake. Everything comes from the standard AWS configuration chain (region, credentials,
//! `AWS_ENDPOINT_URL`), so the same binaries run against AWS or a local emulator.

mod dynamo;
mod names;
mod s3;
mod sqs;
mod ssm;

pub use dynamo::{DynamoLedger, DynamoState};
pub use names::AwsNames;
pub use s3::s3_lake;
pub use sqs::SqsQueue;
pub use ssm::SsmFlag;

use std::sync::Arc;

use crate::catalog::Catalog;
use crate::clock::SharedClock;
use crate::hubspot::HubSpotClient;
use crate::pipeline::{Pipeline, Settings};
use crate::ports::Queue;

#[derive(Debug, thiserror::Error)]
#[error("AWS: {0}")]
pub struct AwsError(pub String);

/// The SDK configuration from the standard chain.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_from_env().await
}

/// A pipeline on AWS: queues resolved by name, tables, parameter and bucket from `names`.
pub async fn pipeline(
    names: &AwsNames,
    lake_bucket: &str,
    lake_prefix: &str,
    catalog: Catalog,
    hubspot: HubSpotClient,
    clock: SharedClock,
    settings: Settings,
) -> Result<Pipeline, AwsError> {
    let config = sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let dynamo = aws_sdk_dynamodb::Client::new(&config);
    let ssm = aws_sdk_ssm::Client::new(&config);
    let (max, visibility) = (settings.max_receive_count, settings.visibility_timeout);
    let queue = |name: String, dlq: String| {
        let sqs = sqs.clone();
        async move {
            let q = SqsQueue::connect(sqs, &name, &dlq, max).await?;
            Ok::<Arc<dyn Queue>, AwsError>(Arc::new(q.with_visibility(visibility)))
        }
    };
    let requests = queue(names.requests(), names.requests_dlq()).await?;
    let pages = queue(names.pages(), names.pages_dlq()).await?;
    let merges = queue(names.merges(), names.merges_dlq()).await?;
    Ok(Pipeline {
        catalog: Arc::new(catalog),
        lake: s3_lake(lake_bucket, lake_prefix)?,
        ledger: Arc::new(DynamoLedger::new(
            dynamo.clone(),
            &names.runs_table(),
            settings.lease_ms,
        )),
        state: Arc::new(DynamoState::new(dynamo, &names.state_table)),
        flag: Arc::new(SsmFlag::new(ssm, &names.flag_parameter)),
        requests,
        pages,
        merges,
        hubspot,
        clock,
        settings,
    })
}
