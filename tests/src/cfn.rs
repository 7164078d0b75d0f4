//! Deploying CloudFormation templates (`infra/cloudformation.yaml`) into a [`Moto`] server,
//! through boto3 in a short Python script.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;

use crate::moto::Moto;

/// Creates the stack, waits until it is complete and prints its outputs as one JSON object.
/// Arguments: stack name, template path, parameters as a JSON object.
const DEPLOY_SCRIPT: &str = r#"
import json, sys, time
import boto3
stack, template_path, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
cfn = boto3.client("cloudformation")
with open(template_path) as f:
    body = f.read()
cfn.create_stack(
    StackName=stack,
    TemplateBody=body,
    Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
    Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
)
deadline = time.time() + 120
while True:
    desc = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    status = desc["StackStatus"]
    if not status.endswith("_IN_PROGRESS"):
        break
    if time.time() > deadline:
        sys.exit(f"stack {stack} still {status} after 120 s")
    time.sleep(0.2)
if status != "CREATE_COMPLETE":
    events = cfn.describe_stack_events(StackName=stack)["StackEvents"]
    for e in events:
        print(e.get("LogicalResourceId"), e.get("ResourceType"), e.get("ResourceStatus"),
              e.get("ResourceStatusReason", ""), file=sys.stderr)
    sys.exit(f"stack {stack} ended in {status}: {desc.get('StackStatusReason', '')}")
print(json.dumps({o["OutputKey"]: o["OutputValue"] for o in desc.get("Outputs", [])}))
"#;

/// Deletes the stack and waits until it is gone. Argument: stack name.
const DELETE_SCRIPT: &str = r#"
import sys, time
import boto3
stack = sys.argv[1]
cfn = boto3.client("cloudformation")
cfn.delete_stack(StackName=stack)
deadline = time.time() + 120
while True:
    try:
        stacks = cfn.describe_stacks(StackName=stack)["Stacks"]
    except cfn.exceptions.ClientError:
        break
    if not stacks or stacks[0]["StackStatus"] == "DELETE_COMPLETE":
        break
    if stacks[0]["StackStatus"] == "DELETE_FAILED":
        sys.exit(f"deleting stack {stack} failed: {stacks[0].get('StackStatusReason', '')}")
    if time.time() > deadline:
        sys.exit(f"stack {stack} still {stacks[0]['StackStatus']} after 120 s")
    time.sleep(0.2)
"#;

/// Deploys `template_path` into `moto` as stack `stack` with `params` (CloudFormation
/// parameter name, value) and returns the stack's outputs (output name → value).
pub fn deploy(
    moto: &Moto,
    template_path: &Path,
    stack: &str,
    params: &[(&str, &str)],
) -> anyhow::Result<BTreeMap<String, String>> {
    let template = template_path
        .canonicalize()
        .with_context(|| format!("template {}", template_path.display()))?;
    let params: serde_json::Map<String, serde_json::Value> = params
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
        .collect();
    let out = moto
        .run_python(
            DEPLOY_SCRIPT,
            &[
                stack,
                &template.to_string_lossy(),
                &serde_json::Value::Object(params).to_string(),
            ],
        )
        .with_context(|| format!("deploying {} as stack {stack}", template.display()))?;
    let line = out
        .lines()
        .last()
        .ok_or_else(|| anyhow::anyhow!("the deploy script printed nothing"))?;
    serde_json::from_str(line).with_context(|| format!("stack outputs: {line}"))
}

/// Deletes stack `stack` from `moto` and waits until it is gone.
pub fn delete(moto: &Moto, stack: &str) -> anyhow::Result<()> {
    moto.run_python(DELETE_SCRIPT, &[stack])
        .with_context(|| format!("deleting stack {stack}"))?;
    Ok(())
}
