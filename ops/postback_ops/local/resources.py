"""Create the stack's tables, queues and secret on moto from template.yaml itself (read by
postback_ops.template, which awsrules reads it with too).

The template is the one source of truth for names, keys, indexes, TTL and redrive: the local
stack, the tests and the benchmarks all build their AWS resources through this module, so a
change to the template reaches them without a second schema to keep in step.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from secrets import token_urlsafe
from typing import Any

import boto3

from postback_ops.template import load_template, parameter_defaults, resources_of_type

LOCAL_REGION = "eu-west-1"
LOCAL_ACCOUNT = "123456789012"
SIGNING_SECRET_ID = "SigningSecret"  # noqa: S105 - the logical ID of the secret the platform signs with


@dataclass
class LocalStack:
    """Physical names of what was created, by logical ID, and the stack outputs."""

    stack_name: str
    refs: dict[str, str] = field(default_factory=dict)  # logical ID -> what !Ref gives
    attrs: dict[tuple[str, str], str] = field(default_factory=dict)  # (logical ID, attribute) -> value
    outputs: dict[str, str] = field(default_factory=dict)

    def resolve(self, value: Any, parameters: Mapping[str, str]) -> Any:
        """Resolve the intrinsic functions the template uses in environment values."""
        if isinstance(value, dict) and len(value) == 1:
            ((fn, arg),) = value.items()
            if fn == "Ref":
                if arg in parameters:
                    return parameters[arg]
                if arg == "AWS::Region":
                    return LOCAL_REGION
                if arg == "AWS::StackName":
                    return self.stack_name
                return self.refs.get(arg, f"{self.stack_name}-{arg}")
            if fn == "Fn::GetAtt":
                logical_id, attribute = arg
                return self.attrs.get((logical_id, attribute), f"{self.stack_name}-{logical_id}-{attribute}")
        return value


def create_resources(
    session: boto3.Session | None = None,
    *,
    stack_name: str = "postback-relay-local",
    signing_secret: str = "local-dev-secret",  # noqa: S107 - the local stack's documented secret
    template: Mapping[str, Any] | None = None,
) -> LocalStack:
    """Create every DynamoDB table, SQS queue and Secrets Manager secret of the template.

    Works against whatever endpoint the session's clients reach: moto in-process under
    `mock_aws`, or the local stack's moto server through AWS_ENDPOINT_URL.
    """
    template = template or load_template()
    session = session or boto3.Session(region_name=LOCAL_REGION)
    stack = LocalStack(stack_name=stack_name)
    parameters = parameter_defaults(template)
    _create_tables(session.client("dynamodb"), template, stack)
    _create_queues(session.client("sqs"), template, stack, parameters)
    _create_topics(session.client("sns"), template, stack)
    secrets = session.client("secretsmanager")
    for logical_id in resources_of_type(template, "AWS::SecretsManager::Secret"):
        name = f"{stack_name}-{logical_id}"
        # The signing secret is the documented local one; any other (the portal's) is generated,
        # as Secrets Manager generates it on AWS.
        value = signing_secret if logical_id == SIGNING_SECRET_ID else token_urlsafe(36)
        stack.refs[logical_id] = secrets.create_secret(Name=name, SecretString=value)["ARN"]
    _resolve_outputs(template, stack, parameters)
    return stack


def _table_request(name: str, props: Mapping[str, Any]) -> dict[str, Any]:
    """CreateTable's arguments for a template table's properties."""
    kwargs: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
    }
    if "GlobalSecondaryIndexes" in props:
        kwargs["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    if props.get("SSESpecification", {}).get("SSEEnabled"):
        kwargs["SSESpecification"] = {"Enabled": True}
    if "StreamSpecification" in props:
        kwargs["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": props["StreamSpecification"]["StreamViewType"],
        }
    return kwargs


def _create_tables(dynamodb: Any, template: Mapping[str, Any], stack: LocalStack) -> None:
    for logical_id, resource in resources_of_type(template, "AWS::DynamoDB::Table").items():
        props = resource["Properties"]
        name = f"{stack.stack_name}-{logical_id}"
        description = dynamodb.create_table(**_table_request(name, props))["TableDescription"]
        if "TimeToLiveSpecification" in props:
            dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification=props["TimeToLiveSpecification"])
        stack.refs[logical_id] = name
        stack.attrs[(logical_id, "Arn")] = f"arn:aws:dynamodb:{LOCAL_REGION}:{LOCAL_ACCOUNT}:table/{name}"
        if "LatestStreamArn" in description:
            stack.attrs[(logical_id, "StreamArn")] = description["LatestStreamArn"]


def _queue_attributes(props: Mapping[str, Any], stack: LocalStack, parameters: Mapping[str, str]) -> dict[Any, str]:
    """CreateQueue's attributes for a template queue's properties (keys are the template's,
    the names SQS knows)."""
    attributes: dict[Any, str] = {}
    for key in ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds", "ReceiveMessageWaitTimeSeconds"):
        if key in props:
            attributes[key] = str(props[key])
    if props.get("SqsManagedSseEnabled"):
        attributes["SqsManagedSseEnabled"] = "true"
    if "RedrivePolicy" in props:
        redrive = props["RedrivePolicy"]
        attributes["RedrivePolicy"] = json.dumps(
            {
                "deadLetterTargetArn": stack.resolve(redrive["deadLetterTargetArn"], parameters),
                "maxReceiveCount": int(redrive["maxReceiveCount"]),
            }
        )
    return attributes


def _create_queues(sqs: Any, template: Mapping[str, Any], stack: LocalStack, parameters: Mapping[str, str]) -> None:
    queues = resources_of_type(template, "AWS::SQS::Queue")
    # Dead-letter targets first, so that a RedrivePolicy can name their ARN.
    for logical_id in sorted(queues, key=lambda q: "RedrivePolicy" in queues[q].get("Properties", {})):
        name = f"{stack.stack_name}-{logical_id}"
        attributes = _queue_attributes(queues[logical_id].get("Properties", {}), stack, parameters)
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        stack.refs[logical_id] = url
        stack.attrs[(logical_id, "Arn")] = f"arn:aws:sqs:{LOCAL_REGION}:{LOCAL_ACCOUNT}:{name}"
        stack.attrs[(logical_id, "QueueName")] = name


def _create_topics(sns: Any, template: Mapping[str, Any], stack: LocalStack) -> None:
    for logical_id in resources_of_type(template, "AWS::SNS::Topic"):
        name = f"{stack.stack_name}-{logical_id}"
        stack.refs[logical_id] = sns.create_topic(Name=name)["TopicArn"]
        stack.attrs[(logical_id, "TopicName")] = name


def _resolve_outputs(template: Mapping[str, Any], stack: LocalStack, parameters: Mapping[str, str]) -> None:
    """The template's Outputs that name a created resource or a parameter."""
    for output_name, output in template.get("Outputs", {}).items():
        value = output["Value"]
        if isinstance(value, dict) and ("Ref" in value or "Fn::GetAtt" in value):
            ref = value.get("Ref")
            if ref is None or ref in stack.refs or ref in parameters:
                stack.outputs[output_name] = str(stack.resolve(value, parameters))


def function_environment(
    stack: LocalStack, function_logical_id: str, *, template: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """The environment variables the template gives a function (Globals, then its own)."""
    template = template or load_template()
    parameters = parameter_defaults(template)
    global_env = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    function = template["Resources"][function_logical_id]["Properties"]
    own_env = function.get("Environment", {}).get("Variables", {})
    merged = {**global_env, **own_env}
    return {key: str(stack.resolve(value, parameters)) for key, value in merged.items()}
