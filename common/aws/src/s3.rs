//! The lake on S3 through `object_store`, configured from the same environment as the SDK
//! (`AWS_ENDPOINT_URL`, region, credentials).

use std::sync::Arc;

use object_store::aws::AmazonS3Builder;

use crate::AwsError;
use common::lake::Lake;

pub fn s3_lake(bucket: &str, prefix: &str) -> Result<Lake, AwsError> {
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    // Every call has a deadline: a request that hangs (a network partition) fails and is
    // retried instead of holding its message until its visibility lapses. (The options are
    // set first: they replace the builder's, `allow_http` included.)
    let mut options = object_store::ClientOptions::new()
        .with_connect_timeout(crate::CONNECT_TIMEOUT)
        .with_timeout(crate::S3_REQUEST_TIMEOUT);
    let endpoint = std::env::var("AWS_ENDPOINT_URL_S3").or_else(|_| std::env::var("AWS_ENDPOINT_URL"));
    if let Ok(endpoint) = &endpoint {
        options = options.with_allow_http(endpoint.starts_with("http://"));
    }
    builder = builder.with_client_options(options);
    if let Ok(endpoint) = endpoint {
        builder = builder.with_endpoint(&endpoint);
    }
    if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err() {
        builder = builder.with_region("us-east-1");
    }
    let store = builder
        .build()
        .map_err(|e| AwsError(format!("S3 lake s3://{bucket}/{prefix}: {e}")))?;
    let uri = if prefix.is_empty() {
        format!("s3://{bucket}")
    } else {
        format!("s3://{bucket}/{prefix}")
    };
    Ok(Lake::new(Arc::new(store), prefix, uri))
}
