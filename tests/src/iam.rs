//! IAM, enforced on the emulator: `infra/cloudformation.yaml` deployed as a stack, one IAM user
//! per managed policy of the stack (producer, consumer, merger, operator) with its own access
//! key, then every request checked against its signer's policies. The AWS-mode tests give each
//! service process its own user's key, so a service that needs a permission its policy lacks
//! fails there as it would on AWS (moto's own checks are made resource-aware by the server
//! script in [`crate::moto`]; conditions are not evaluated, see the README).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;

use crate::moto::{AwsKeys, Moto};

/// The template every deployment runs under.
pub const TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/cloudformation.yaml");

/// The roles and the stack output naming each one's policy.
pub const ROLES: [(&str, &str); 4] = [
    ("producer", "ProducerPolicyArn"),
    ("consumer", "ConsumerPolicyArn"),
    ("merger", "MergerPolicyArn"),
    ("operator", "OperatorPolicyArn"),
];

/// Creates an administrator, deploys the stack, creates one user per role with the stack's
/// policy attached and prints every user's key as JSON. Arguments: stack name, template path,
/// parameters (JSON object), roles (JSON object: role → output name).
const SETUP_SCRIPT: &str = r#"
import json, sys, time
import boto3
stack, template_path, params, roles = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
iam = boto3.client("iam")
keys = {}
def user(name):
    iam.create_user(UserName=name)
    k = iam.create_access_key(UserName=name)["AccessKey"]
    keys[name] = {"access_key_id": k["AccessKeyId"], "secret_access_key": k["SecretAccessKey"]}
user("admin")
iam.put_user_policy(UserName="admin", PolicyName="everything", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
cfn = boto3.client("cloudformation")
with open(template_path) as f:
    body = f.read()
cfn.create_stack(StackName=stack, TemplateBody=body,
                 Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
                 Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"])
deadline = time.time() + 120
while True:
    desc = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    if not desc["StackStatus"].endswith("_IN_PROGRESS"):
        break
    if time.time() > deadline:
        sys.exit(f"stack {stack} still {desc['StackStatus']} after 120 s")
    time.sleep(0.2)
if desc["StackStatus"] != "CREATE_COMPLETE":
    sys.exit(f"stack {stack} ended in {desc['StackStatus']}: {desc.get('StackStatusReason', '')}")
outputs = {o["OutputKey"]: o["OutputValue"] for o in desc.get("Outputs", [])}
# moto's CloudFormation skips AWS::Glue::Database (it warns); made here as the template has it.
boto3.client("glue").create_database(DatabaseInput={"Name": params["GlueDatabaseName"]})
for role, output in roles.items():
    user(role)
    iam.attach_user_policy(UserName=role, PolicyArn=outputs[output])
print(json.dumps(keys))
"#;

/// Deploys the template as stack `prefix` (its resources named `<prefix>-*`, the lake in bucket
/// `bucket` under `lake_prefix`), creates the administrator and the role users, and enforces
/// IAM. Returns every user's key by name (`admin` and the [`ROLES`]).
pub fn enforce(
    moto: &Moto,
    prefix: &str,
    bucket: &str,
    lake_prefix: &str,
) -> anyhow::Result<BTreeMap<String, AwsKeys>> {
    anyhow::ensure!(!moto.enforced(), "IAM is enforced on this emulator already");
    let template = Path::new(TEMPLATE)
        .canonicalize()
        .context("the CloudFormation template")?;
    let params = serde_json::json!({
        "Prefix": prefix,
        "LakeBucketName": bucket,
        "LakePrefix": lake_prefix,
        "GlueDatabaseName": aws::AwsNames { prefix: prefix.into(), ..Default::default() }.glue_database(),
    });
    let roles: serde_json::Map<String, serde_json::Value> = ROLES
        .iter()
        .map(|(role, output)| (role.to_string(), serde_json::Value::String(output.to_string())))
        .collect();
    let out = moto
        .run_python(
            SETUP_SCRIPT,
            &[
                prefix,
                &template.to_string_lossy(),
                &params.to_string(),
                &serde_json::Value::Object(roles).to_string(),
            ],
        )
        .context("deploying the stack and its IAM users")?;
    let line = out.lines().last().context("the IAM setup printed nothing")?;
    let keys: BTreeMap<String, AwsKeys> =
        serde_json::from_str(line).with_context(|| format!("IAM keys: {line}"))?;
    let admin = keys.get("admin").cloned().context("no admin key")?;
    moto.enforce(admin)?;
    Ok(keys)
}
