#!/usr/bin/env python3
"""Prints the message body infra/schedule.yaml's schedule sends to the requests queue.

    schedule_input.py [TEMPLATE] [--table deals] [--mode MODE] [--execution-id ID]
                      [--scheduled-time 2026-12-03T18:00:00Z] [--attempt-number 1]
                      [--region us-east-1] [--account 123456789012]

Reads the template (default: infra/schedule.yaml beside this repository's tests/), takes the
Target Input of its AWS::Scheduler::Schedule, resolves its !Sub (Table and every other parameter
from the options or the parameter's default, AWS:: pseudo parameters), then replaces the
placeholders EventBridge Scheduler fills in at each invocation (<aws.scheduler.execution-id>:
a random UUID unless given, <aws.scheduler.scheduled-time>, <aws.scheduler.schedule-arn>,
<aws.scheduler.attempt-number>) and prints the result, one line, for the Rust test to decode with
the producer's decoder. Exits 1 when the template has no such input, when a placeholder is left,
or when the result is not JSON. Needs PyYAML only.
"""

import argparse
import json
import os
import re
import sys
import uuid

import yaml


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


def sub(value, variables):
    """CloudFormation's Fn::Sub over a string or [string, {name: value}]: ${Name} replaced,
    ${!Literal} written as ${Literal}."""
    if isinstance(value, list):
        text, extra = value[0], value[1]
        variables = {**variables, **{k: v for k, v in extra.items() if isinstance(v, str)}}
    else:
        text = value

    def one(m):
        name = m.group(1)
        if name.startswith("!"):
            return "${" + name[1:] + "}"
        if name not in variables:
            sys.exit(f"the input's ${{{name}}} is neither a parameter nor a pseudo parameter")
        return str(variables[name])

    return re.sub(r"\$\{([^}]*)\}", one, text)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("template", nargs="?", default=os.path.join(here, "..", "..", "infra", "schedule.yaml"))
    ap.add_argument("--table", default="deals")
    ap.add_argument("--mode", help="the Mode parameter (default: the template's default)")
    ap.add_argument("--execution-id", default=None, help="default: a random UUID")
    ap.add_argument("--scheduled-time", default="2026-12-03T18:00:00Z")
    ap.add_argument("--attempt-number", default="1")
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--account", default="123456789012")
    ap.add_argument("--schedule-name", default="hubsync-schedule-deals-Schedule-1A2B3C4D5E6F")
    args = ap.parse_args()

    with open(args.template) as f:
        template = yaml.load(f, Loader=_CfnLoader)
    schedules = [r for r in template.get("Resources", {}).values() if r.get("Type") == "AWS::Scheduler::Schedule"]
    if len(schedules) != 1:
        sys.exit(f"{args.template}: expected one AWS::Scheduler::Schedule, found {len(schedules)}")
    raw = schedules[0]["Properties"]["Target"].get("Input")
    if raw is None:
        sys.exit(f"{args.template}: the schedule's target has no Input")

    variables = {k: p.get("Default") for k, p in template.get("Parameters", {}).items() if "Default" in p}
    variables["Table"] = args.table
    if args.mode is not None:
        variables["Mode"] = args.mode
    variables.update({
        "AWS::Region": args.region, "AWS::AccountId": args.account, "AWS::Partition": "aws",
        "AWS::StackName": f"hubsync-schedule-{args.table}", "AWS::URLSuffix": "amazonaws.com",
    })
    if isinstance(raw, dict) and "Fn::Sub" in raw:
        text = sub(raw["Fn::Sub"], variables)
    elif isinstance(raw, str):
        text = raw
    else:
        sys.exit(f"{args.template}: the Input is {raw!r}, neither a string nor a !Sub")

    context = {
        "<aws.scheduler.execution-id>": args.execution_id or str(uuid.uuid4()),
        "<aws.scheduler.scheduled-time>": args.scheduled_time,
        "<aws.scheduler.schedule-arn>": f"arn:aws:scheduler:{args.region}:{args.account}:schedule/default/{args.schedule_name}",
        "<aws.scheduler.attempt-number>": str(args.attempt_number),
    }
    for placeholder, value in context.items():
        text = text.replace(placeholder, value)
    left = re.findall(r"<aws\.scheduler\.[^>]*>", text)
    if left:
        sys.exit(f"placeholders Scheduler does not fill in: {left}")
    try:
        json.loads(text)
    except ValueError as e:
        sys.exit(f"the input is not JSON ({e}): {text}")
    print(text)


if __name__ == "__main__":
    main()
