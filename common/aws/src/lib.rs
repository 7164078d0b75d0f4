//! AWS mode's adapters: SQS queues, DynamoDB sync state and run ledger, the SSM flag and the
//! S3 lake. Everything comes from the standard AWS configuration chain (region, credentials,
//! `AWS_ENDPOINT_URL`), so the same binaries run against AWS or a local emulator.
//!
//! # Layout
//!
//! - `sqs`: the `Queue` port on SQS (standard and FIFO queues, their dead-letter queues).
//! - `dynamo`: the seed's `hubspot-sync-state` table and the run ledger on DynamoDB (item
//!   keys and parsers, the calls they are made of, the `Ledger` port), with write metering.
//! - `ssm`: the seed's incremental-sync flag in Parameter Store.
//! - `s3`: the lake on S3 through `object_store`.
//! - `glue`: the lake's tables in Glue's Data Catalog (Athena reads them), kept by each commit.
//! - `names`: every resource name, derived from one prefix.
//! - [`pipeline`]: all of them as the bundle every role is given.

mod dynamo;
mod glue;
mod names;
mod s3;
mod sqs;
mod ssm;

pub use dynamo::{item_size, write_units, DynamoLedger, DynamoState, Meter, WriteStats};
pub use glue::GlueMetastore;
pub use names::AwsNames;
pub use s3::s3_lake;
pub use sqs::SqsQueue;
pub use ssm::SsmFlag;

use std::sync::Arc;

use common::catalog::Catalog;
use common::clock::SharedClock;
use common::pipeline::{Pipeline, Settings};
use common::ports::Queue;

#[derive(Debug, thiserror::Error)]
#[error("AWS: {0}")]
pub struct AwsError(pub String);

/// Connecting to an AWS endpoint takes at most this.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// One attempt at an SDK call takes at most this: above SQS's longest long poll (20 s).
pub const ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// An SDK call, retries included, takes at most this.
pub const OPERATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(90);
/// One S3 request (a staged file, a merged partition's part) takes at most this.
pub const S3_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// The SDK configuration from the standard chain, with a deadline on every call: a request
/// that hangs fails and is retried rather than stalling its worker past its visibility.
pub async fn sdk_config() -> aws_config::SdkConfig {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts)
        .load()
        .await
}

/// A pipeline on AWS: queues resolved by name, tables, parameter and bucket from `names`.
pub async fn pipeline(
    names: &AwsNames,
    lake_bucket: &str,
    lake_prefix: &str,
    catalog: Catalog,
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
        metastore: Some(Arc::new(GlueMetastore::new(
            &config,
            &names.glue_database(),
            lake_bucket,
            lake_prefix,
        ))),
        clock,
        settings,
        indexes: Default::default(),
        hooks: None,
    })
}
