//! The incremental-sync flag as the seed's SSM parameter.

use async_trait::async_trait;
use aws_sdk_ssm::error::DisplayErrorContext;
use aws_sdk_ssm::types::ParameterType;

use common::ports::flag::{FlagError, FlagSource};

#[derive(Debug, Clone)]
pub struct SsmFlag {
    client: aws_sdk_ssm::Client,
    name: String,
}

impl SsmFlag {
    pub fn new(client: aws_sdk_ssm::Client, name: &str) -> Self {
        SsmFlag {
            client,
            name: name.into(),
        }
    }
}

#[async_trait]
impl FlagSource for SsmFlag {
    async fn get(&self) -> Result<Option<String>, FlagError> {
        match self.client.get_parameter().name(&self.name).send().await {
            Ok(out) => Ok(out.parameter().and_then(|p| p.value()).map(str::to_string)),
            Err(e) => {
                let e = e.into_service_error();
                if e.is_parameter_not_found() {
                    Ok(None)
                } else {
                    Err(FlagError(format!(
                        "ssm:GetParameter {}: {}",
                        self.name,
                        DisplayErrorContext(&e)
                    )))
                }
            }
        }
    }

    async fn set(&self, value: &str) -> Result<(), FlagError> {
        self.client
            .put_parameter()
            .name(&self.name)
            .value(value)
            .r#type(ParameterType::String)
            .overwrite(true)
            .send()
            .await
            .map_err(|e| {
                FlagError(format!(
                    "ssm:PutParameter {}: {}",
                    self.name,
                    DisplayErrorContext(&e)
                ))
            })?;
        Ok(())
    }
}
