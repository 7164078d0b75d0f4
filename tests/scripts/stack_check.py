#!/usr/bin/env python3
"""Deploys hubsync's stacks into a moto server and checks what they create.

    stack_check.py ENDPOINT DATA_TEMPLATE SERVICES_TEMPLATE SCHEDULE_TEMPLATE
                   [--prefix hubsync] [--bucket LAKE] [--table deals] [--data-stack NAME]

Creates the data stack (infra/cloudformation.yaml; or reads the outputs of an existing one with
--data-stack), a Secrets Manager secret for the HubSpot token, a VPC, a subnet and a security
group, then the services stack (infra/services.yaml) twice, once per token store (Secrets
Manager; SSM Parameter Store under the prefix `<prefix>-ssm`), and one schedule stack
(infra/schedule.yaml) for --table. Checks the ECS cluster, services and task definitions
(entry point, StopTimeout, the token only as a secret, the environment), the IAM roles (trust,
attached and inline policies), the log groups, and which resources moto's CloudFormation
created and which it skipped (it has no ApplicationAutoScaling, CloudWatch alarm or Scheduler
resources, and drops some properties: what it does not keep is checked in the template).

Prints one JSON line (the summary; "ok": false with "failures" when a check failed) and exits
1 on any failure. Credentials and region come from the environment (AWS_ACCESS_KEY_ID, ...,
AWS_REGION), defaulting to moto's ("testing", us-east-1). Needs boto3 and PyYAML (both come
with moto).
"""

import argparse
import json
import os
import sys
import time

import boto3
import yaml

START = time.time()


# ---------------------------------------------------------------- templates
class _CfnLoader(yaml.SafeLoader):
    """A YAML loader that reads CloudFormation's short forms (!Ref, !Sub, ...) as the long ones."""


def _cfn_tag(loader, suffix, node):
    name = "Ref" if suffix == "Ref" else "Fn::" + suffix
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _cfn_tag)


def load_template(path):
    with open(path) as f:
        return yaml.load(f, Loader=_CfnLoader)


# ---------------------------------------------------------------- AWS
def clients(endpoint):
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    session = boto3.session.Session(
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
        region_name=region,
    )
    return lambda service: session.client(service, endpoint_url=endpoint)


def deploy(cfn, stack, template_path, params):
    with open(template_path) as f:
        body = f.read()
    cfn.create_stack(
        StackName=stack,
        TemplateBody=body,
        Parameters=[{"ParameterKey": k, "ParameterValue": str(v)} for k, v in params.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
    )
    deadline = time.time() + 120
    while True:
        desc = cfn.describe_stacks(StackName=stack)["Stacks"][0]
        if not desc["StackStatus"].endswith("_IN_PROGRESS"):
            break
        if time.time() > deadline:
            sys.exit(f"stack {stack} still {desc['StackStatus']} after 120 s")
        time.sleep(0.2)
    if desc["StackStatus"] != "CREATE_COMPLETE":
        for e in cfn.describe_stack_events(StackName=stack)["StackEvents"]:
            print(e.get("LogicalResourceId"), e.get("ResourceType"), e.get("ResourceStatus"),
                  e.get("ResourceStatusReason", ""), file=sys.stderr)
        sys.exit(f"stack {stack} ended in {desc['StackStatus']}: {desc.get('StackStatusReason', '')}")
    return {o["OutputKey"]: o["OutputValue"] for o in desc.get("Outputs", [])}


def outputs_of(cfn, stack):
    desc = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in desc.get("Outputs", [])}


def created_and_skipped(cfn, stack, template):
    """Template resources moto created (type -> logical ids) and those it skipped."""
    listed = {r["LogicalResourceId"]: r for r in cfn.list_stack_resources(StackName=stack)["StackResourceSummaries"]}
    created, skipped = {}, {}
    for logical, res in template["Resources"].items():
        r = listed.get(logical)
        ok = r is not None and r.get("PhysicalResourceId") and r["ResourceStatus"] == "CREATE_COMPLETE"
        (created if ok else skipped).setdefault(res["Type"], []).append(logical)
    physical = {k: v.get("PhysicalResourceId") for k, v in listed.items() if k}
    return created, skipped, physical


def policy_doc(raw):
    """A policy document as moto returns it: a dict, JSON text, or (CloudFormation's inline
    policies) a Python repr; the `None` an `!If [..., !Ref AWS::NoValue]` leaves is dropped."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            import ast
            raw = ast.literal_eval(raw)
    statements = raw.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    raw["Statement"] = [s for s in statements if s]
    return raw


def as_list(v):
    return v if isinstance(v, list) else [v]


class Checks:
    def __init__(self):
        self.failures = []

    def that(self, ok, what):
        if not ok:
            self.failures.append(what)
        return ok

    def equal(self, got, want, what):
        return self.that(got == want, f"{what}: got {got!r}, want {want!r}")


# ---------------------------------------------------------------- the services stack
SERVICES = ("producer", "consumer", "merger")
POLICY_OUTPUT = {"producer": "ProducerPolicyArn", "consumer": "ConsumerPolicyArn", "merger": "MergerPolicyArn"}


def check_services(c, client, template, stack, params, prefix, data, token_arn, lake, summary_key, summary):
    cfn, ecs, iam, logs = client("cloudformation"), client("ecs"), client("iam"), client("logs")
    created, skipped, physical = created_and_skipped(cfn, stack, template)
    res = template["Resources"]
    by_type = lambda t: [k for k, v in res.items() if v["Type"] == t]

    # Cluster and services.
    clusters = ecs.describe_clusters(clusters=[prefix])["clusters"]
    c.that(len(clusters) == 1 and clusters[0]["status"] == "ACTIVE", f"{stack}: cluster {prefix} missing")
    listed = ecs.list_services(cluster=prefix)["serviceArns"]
    c.equal(sorted(a.rsplit("/", 1)[1] for a in listed), sorted(f"{prefix}-{s}" for s in SERVICES),
            f"{stack}: services of cluster {prefix}")
    services = {s["serviceName"]: s for s in ecs.describe_services(cluster=prefix, services=listed)["services"]}
    desired = {"producer": params["ProducerCount"], "consumer": params["ConsumerMinCount"],
               "merger": params["MergerMinCount"]}

    task_roles, service_summary = {}, {}
    for svc in SERVICES:
        name = f"{prefix}-{svc}"
        s = services.get(name, {})
        c.equal(s.get("desiredCount"), int(desired[svc]), f"{stack}: {name} desiredCount")
        td_arn = s.get("taskDefinition", "")
        c.that(f":task-definition/{prefix}-{svc}:" in td_arn, f"{stack}: {name} runs {td_arn!r}")
        td = ecs.describe_task_definition(taskDefinition=td_arn or f"{prefix}-{svc}")["taskDefinition"]
        containers = td["containerDefinitions"]
        c.equal([x["name"] for x in containers], [svc], f"{stack}: containers of {svc}")
        cd = containers[0]
        env = {e["name"]: e["value"] for e in cd.get("environment", [])}
        secrets = {e["name"]: e["valueFrom"] for e in cd.get("secrets", [])}
        c.equal(cd.get("image"), params["Image"], f"{stack}: {svc} image")
        c.equal(cd.get("entryPoint"), [svc], f"{stack}: {svc} entryPoint")
        c.that(not cd.get("command"), f"{stack}: {svc} has a command {cd.get('command')!r}")
        c.equal(cd.get("stopTimeout"), 120, f"{stack}: {svc} stopTimeout")
        c.that("HUBSPOT_TOKEN" not in env, f"{stack}: {svc} has HUBSPOT_TOKEN in its plain environment")
        c.that(not any(token_arn in v for v in env.values()), f"{stack}: {svc}'s environment names the token")
        if svc == "merger":
            c.equal(secrets, {}, f"{stack}: merger secrets (it never calls HubSpot)")
            c.equal(env.get("HUBSYNC_MERGE_MEMORY_MB"), str(params["MergeMemoryMb"]), f"{stack}: merger HUBSYNC_MERGE_MEMORY_MB")
        else:
            c.equal(secrets, {"HUBSPOT_TOKEN": token_arn}, f"{stack}: {svc} secrets")
            c.equal(env.get("HUBSYNC_RATE_LIMIT"), str(params["RateLimit"]), f"{stack}: {svc} HUBSYNC_RATE_LIMIT")
            c.equal(env.get("HUBSYNC_SEARCH_RATE"), str(params["SearchRate"]), f"{stack}: {svc} HUBSYNC_SEARCH_RATE")
        c.equal(env.get("HUBSYNC_LAKE"), lake, f"{stack}: {svc} HUBSYNC_LAKE")
        c.equal(env.get("HUBSYNC_PREFIX"), prefix, f"{stack}: {svc} HUBSYNC_PREFIX")
        c.that(bool(env.get("AWS_REGION")), f"{stack}: {svc} AWS_REGION")
        c.equal(env.get("HUBSYNC_METRICS_NAMESPACE"), "hubsync", f"{stack}: {svc} HUBSYNC_METRICS_NAMESPACE")
        lc = cd.get("logConfiguration", {})
        group = lc.get("options", {}).get("awslogs-group")
        c.equal(lc.get("logDriver"), "awslogs", f"{stack}: {svc} log driver")
        c.equal(group, f"/ecs/{prefix}/{svc}", f"{stack}: {svc} log group")
        found = logs.describe_log_groups(logGroupNamePrefix=group or "-")["logGroups"]
        found = [g for g in found if g["logGroupName"] == group]
        c.that(len(found) == 1, f"{stack}: log group {group} missing")
        if found:
            c.equal(found[0].get("retentionInDays"), int(params["LogRetentionDays"]), f"{stack}: {group} retention")

        # The task role. moto's CloudFormation keeps neither a task definition's TaskRoleArn,
        # ExecutionRoleArn, NetworkMode, Cpu nor RequiresCompatibilities: read them from the
        # template when moto has none.
        (logical_td,) = [k for k in by_type("AWS::ECS::TaskDefinition")
                         if res[k]["Properties"]["ContainerDefinitions"][0]["Name"] == svc]
        props = res[logical_td]["Properties"]
        c.equal(props.get("RequiresCompatibilities"), ["FARGATE"], f"{stack}: {svc} compatibilities (template)")
        c.equal(props.get("NetworkMode"), "awsvpc", f"{stack}: {svc} network mode (template)")
        role_logical = (props.get("TaskRoleArn") or {}).get("Fn::GetAtt", [None])[0]
        exec_logical = (props.get("ExecutionRoleArn") or {}).get("Fn::GetAtt", [None])[0]
        c.that(res.get(role_logical, {}).get("Type") == "AWS::IAM::Role", f"{stack}: {svc} task role (template)")
        c.that(res.get(exec_logical, {}).get("Type") == "AWS::IAM::Role", f"{stack}: {svc} execution role (template)")
        role_name = physical.get(role_logical)
        role = iam.get_role(RoleName=role_name)["Role"] if role_name else {}
        if td.get("taskRoleArn"):
            c.equal(td["taskRoleArn"], role.get("Arn"), f"{stack}: {svc} taskRoleArn")
        trust = policy_doc(role.get("AssumeRolePolicyDocument", {}))
        principals = [p for st in trust["Statement"] for p in as_list(st.get("Principal", {}).get("Service", []))]
        c.equal(principals, ["ecs-tasks.amazonaws.com"], f"{stack}: {svc} task role trust")
        want_policy = data[POLICY_OUTPUT[svc]]
        attached = [p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]] if role_name else []
        inline = iam.list_role_policies(RoleName=role_name)["PolicyNames"] if role_name else []
        c.equal(inline, [], f"{stack}: {svc} task role inline policies")
        if attached:
            source = "moto"
            c.equal(attached, [want_policy], f"{stack}: {svc} task role's attached policies")
        else:
            # moto's CloudFormation ignores a role's ManagedPolicyArns.
            source = "template"
            managed = res[role_logical]["Properties"].get("ManagedPolicyArns", [])
            c.equal(managed, [{"Ref": POLICY_OUTPUT[svc]}], f"{stack}: {svc} task role's ManagedPolicyArns (template)")
            c.equal(params.get(POLICY_OUTPUT[svc]), want_policy, f"{stack}: {svc} policy parameter")
        task_roles[svc] = role_name
        service_summary[svc] = {
            "service": name, "desired": s.get("desiredCount"), "task_definition": td_arn,
            "task_role": role_name, "policy": want_policy, "policy_checked_in": source,
            "entry_point": cd.get("entryPoint"), "stop_timeout": cd.get("stopTimeout"),
            "secrets": sorted(secrets), "environment": sorted(env), "log_group": group,
        }
    c.equal(len(set(task_roles.values())), 3, f"{stack}: one task role per service")

    # The execution role: pull, logs, the token and nothing else.
    exec_name = physical.get("ExecutionRole")
    c.that(bool(exec_name), f"{stack}: execution role missing")
    token_actions = []
    if exec_name:
        names = iam.list_role_policies(RoleName=exec_name)["PolicyNames"]
        c.equal(len(names), 1, f"{stack}: execution role inline policies")
        doc = policy_doc(iam.get_role_policy(RoleName=exec_name, PolicyName=names[0])["PolicyDocument"])
        for st in doc["Statement"]:
            if token_arn in as_list(st.get("Resource", [])):
                token_actions += as_list(st["Action"])
                c.equal(as_list(st["Resource"]), [token_arn], f"{stack}: token statement's resources")
        want = "secretsmanager:GetSecretValue" if ":secretsmanager:" in token_arn else "ssm:GetParameters"
        c.equal(token_actions, [want], f"{stack}: execution role's grant on the token")
        logs_resources = [r for st in doc["Statement"] if "logs:PutLogEvents" in as_list(st["Action"])
                          for r in as_list(st["Resource"])]
        c.that(logs_resources and all(f":log-group:/ecs/{prefix}/" in r for r in logs_resources),
               f"{stack}: execution role writes other logs: {logs_resources}")
        kms = [st for st in doc["Statement"] if "kms:Decrypt" in as_list(st["Action"])]
        c.equal(kms, [], f"{stack}: kms grant without HubSpotTokenKmsKeyArn")

    # What moto left out: scaling and alarms, checked in the template.
    alarms = {k: res[k]["Properties"] for k in by_type("AWS::CloudWatch::Alarm")}
    dlq_queues = sorted(p["Dimensions"][0]["Value"]["Fn::Sub"] for p in alarms.values()
                        if p["MetricName"] == "ApproximateNumberOfMessagesVisible" and "-dlq" in json.dumps(p["Dimensions"]))
    c.equal(dlq_queues, ["${Prefix}-merges-dlq.fifo", "${Prefix}-pages-dlq", "${Prefix}-requests-dlq"], f"{stack}: DLQ alarms")
    metrics = sorted((p["MetricName"], tuple((d["Name"], d["Value"]) for d in p.get("Dimensions", [])))
                     for p in alarms.values() if p["Namespace"] == {"Ref": "MetricsNamespace"})
    c.equal(metrics, [("hubsync_max_seconds_since_last_commit", (("service", "producer"),)),
                      ("hubsync_runs_past_lease", (("service", "producer"),))],
            f"{stack}: service metrics alarmed on")
    targets = {res[k]["Properties"]["ResourceId"]["Fn::Sub"] for k in by_type("AWS::ApplicationAutoScaling::ScalableTarget")}
    c.equal(targets, {"service/${Cluster}/${ConsumerService.Name}", "service/${Cluster}/${MergerService.Name}"},
            f"{stack}: scalable targets")
    # If moto ever creates these, they must be there.
    alarm_names = sorted(p["AlarmName"]["Fn::Sub"].replace("${Prefix}", prefix) for p in alarms.values())
    if "AWS::CloudWatch::Alarm" in created:
        cw = client("cloudwatch").describe_alarms(AlarmNames=alarm_names)["MetricAlarms"]
        c.equal(sorted(a["AlarmName"] for a in cw), alarm_names, f"{stack}: alarms in CloudWatch")
    scaling = client("application-autoscaling").describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"]
    scaling = [t for t in scaling if t["ResourceId"].startswith(f"service/{prefix}/")]
    if "AWS::ApplicationAutoScaling::ScalableTarget" in created:
        c.equal(len(scaling), 2, f"{stack}: scalable targets in Application Auto Scaling")

    summary[summary_key] = {
        "stack": stack, "cluster": prefix, "services": service_summary,
        "execution_role": exec_name, "token_grant": token_actions,
        "created": created, "skipped": skipped,
        "alarms": alarm_names,
        "service_metrics": [{"namespace": "hubsync", "name": m, "dimensions": dict(d)} for m, d in metrics],
    }


# ---------------------------------------------------------------- the schedule stack
def check_schedule(c, client, template, stack, table, queue_arn, summary):
    cfn, iam = client("cloudformation"), client("iam")
    created, skipped, physical = created_and_skipped(cfn, stack, template)
    role_name = physical.get("SchedulerRole")
    c.that(bool(role_name), f"{stack}: scheduler role missing")
    grants = []
    if role_name:
        role = iam.get_role(RoleName=role_name)["Role"]
        trust = policy_doc(role["AssumeRolePolicyDocument"])
        principals = [p for st in trust["Statement"] for p in as_list(st.get("Principal", {}).get("Service", []))]
        c.equal(principals, ["scheduler.amazonaws.com"], f"{stack}: scheduler role trust")
        c.equal(iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"], [], f"{stack}: attached policies")
        for name in iam.list_role_policies(RoleName=role_name)["PolicyNames"]:
            doc = policy_doc(iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"])
            grants += [(a, r) for st in doc["Statement"] for a in as_list(st["Action"]) for r in as_list(st["Resource"])]
        c.equal(grants, [("sqs:SendMessage", queue_arn)], f"{stack}: scheduler role grants")
    props = template["Resources"]["Schedule"]["Properties"]
    c.equal(props["Target"]["Arn"], {"Ref": "RequestsQueueArn"}, f"{stack}: schedule target (template)")
    c.equal(props["Target"]["RoleArn"], {"Fn::GetAtt": ["SchedulerRole", "Arn"]}, f"{stack}: schedule role (template)")
    c.that("SqsParameters" not in props["Target"], f"{stack}: a standard queue takes no message group")
    schedules = client("scheduler").list_schedules().get("Schedules", [])
    if "AWS::Scheduler::Schedule" in created:
        c.that(len(schedules) == 1, f"{stack}: schedule in Scheduler")
    summary["schedule"] = {
        "stack": stack, "table": table, "role": role_name, "grants": [list(g) for g in grants],
        "created": created, "skipped": skipped,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("endpoint", help="moto's endpoint URL, e.g. http://127.0.0.1:5000")
    ap.add_argument("data_template", help="infra/cloudformation.yaml")
    ap.add_argument("services_template", help="infra/services.yaml")
    ap.add_argument("schedule_template", help="infra/schedule.yaml")
    ap.add_argument("--prefix", default="hubsync", help="the data stack's Prefix (default hubsync)")
    ap.add_argument("--bucket", help="the lake bucket (default <prefix>-lake)")
    ap.add_argument("--table", default="deals", help="the scheduled table (default deals)")
    ap.add_argument("--data-stack", help="an existing data stack to use (its Prefix must be --prefix)")
    args = ap.parse_args()
    prefix, bucket = args.prefix, args.bucket or f"{args.prefix}-lake"
    client = clients(args.endpoint)
    cfn = client("cloudformation")
    c = Checks()
    summary = {}

    if args.data_stack:
        data = outputs_of(cfn, args.data_stack)
        bucket = data["LakeBucketName"]
    else:
        data = deploy(cfn, prefix, args.data_template, {"Prefix": prefix, "LakeBucketName": bucket})
    summary["data_stack"] = args.data_stack or prefix
    lake = f"s3://{bucket}/data"

    ec2 = client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=f"{prefix}-services", Description="hubsync services",
                                      VpcId=vpc)["GroupId"]
    secret_arn = client("secretsmanager").create_secret(Name=f"{prefix}/hubspot-token",
                                                        SecretString="pat-na1-test")["ARN"]
    ssm = client("ssm")
    ssm.put_parameter(Name=f"/{prefix}/hubspot-token", Value="pat-na1-test", Type="SecureString")
    region = ec2.meta.region_name
    account = client("sts").get_caller_identity()["Account"]
    ssm_arn = f"arn:aws:ssm:{region}:{account}:parameter/{prefix}/hubspot-token"

    services_template = load_template(args.services_template)
    for key, svc_prefix, token in (("services", prefix, secret_arn), ("services_ssm", f"{prefix}-ssm", ssm_arn)):
        params = {
            "Prefix": svc_prefix, "LakeBucketName": bucket, "LakePrefix": "data",
            "ProducerPolicyArn": data["ProducerPolicyArn"], "ConsumerPolicyArn": data["ConsumerPolicyArn"],
            "MergerPolicyArn": data["MergerPolicyArn"],
            "Image": f"{account}.dkr.ecr.{region}.amazonaws.com/hubsync:test",
            "HubSpotTokenArn": token, "Subnets": subnet, "SecurityGroups": group,
            "RateLimit": 100, "SearchRate": 4, "ProducerCount": 1, "ConsumerMinCount": 2, "ConsumerMaxCount": 6,
            "MergerMinCount": 1, "MergerMaxCount": 3, "LogRetentionDays": 14, "MergeMemoryMb": 1536,
        }
        stack = f"{svc_prefix}-services"
        deploy(cfn, stack, args.services_template, params)
        # The second stack's services use the lake of the first; HUBSYNC_LAKE is the same.
        check_services(c, client, services_template, stack, params, svc_prefix, data, token, lake, key, summary)

    sqs = client("sqs")
    queue_arn = sqs.get_queue_attributes(QueueUrl=data["RequestsQueueUrl"], AttributeNames=["QueueArn", "FifoQueue"])["Attributes"]
    c.that(queue_arn.get("FifoQueue") != "true", "the requests queue is FIFO: the schedule needs a message group")
    queue_arn = queue_arn["QueueArn"]
    stack = f"{prefix}-schedule-{args.table}"
    deploy(cfn, stack, args.schedule_template, {"Table": args.table, "RequestsQueueArn": queue_arn})
    check_schedule(c, client, load_template(args.schedule_template), stack, args.table, queue_arn, summary)

    summary["ok"] = not c.failures
    if c.failures:
        summary["failures"] = c.failures
    summary["seconds"] = round(time.time() - START, 2)
    print(json.dumps(summary, sort_keys=True))
    sys.exit(0 if summary["ok"] else 1)


if __name__ == "__main__":
    main()
