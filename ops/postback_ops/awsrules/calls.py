"""An AWS API call as IAM authorizes it: the action(s) and the resource ARN(s).

A few operations are authorized under another action name (Lambda's Invoke is
lambda:InvokeFunction; SQS batches are authorized per message action), and some are
authorized per table or per item (DynamoDB's batch and transaction calls). Resource ARNs are
built from the call's parameters the way the service builds them for IAM.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

DEFAULT_ACCOUNT = "123456789012"  # moto's account, and the local stack's

# botocore's signing name or endpoint prefix -> the IAM service prefix, where they differ.
IAM_PREFIX = {"monitoring": "cloudwatch", "dynamodbstreams": "dynamodb", "email": "ses"}

# Operations authorized as another action (batch -> per message, Invoke -> InvokeFunction).
ACTION_OF = {
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
    "lambda:Invoke": "lambda:InvokeFunction",
    "lambda:InvokeAsync": "lambda:InvokeFunction",
    "lambda:InvokeWithResponseStream": "lambda:InvokeFunction",
    "s3:HeadObject": "s3:GetObject",
    "s3:HeadBucket": "s3:ListBucket",
}

# Calls every principal may make: no IAM permission is checked for them.
UNAUTHORIZED_ACTIONS = frozenset({"sts:GetCallerIdentity"})

_TRANSACT_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
    "Get": "dynamodb:GetItem",
}


@dataclass(frozen=True, order=True)
class Authorization:
    """One (action, resource) pair IAM evaluates for a call."""

    action: str
    resource: str


def account_id() -> str:
    return os.environ.get("MOTO_ACCOUNT_ID", DEFAULT_ACCOUNT)


def _dynamodb_table(name_or_arn: str, region: str, account: str) -> str:
    if name_or_arn.startswith("arn:"):
        return name_or_arn
    return f"arn:aws:dynamodb:{region}:{account}:table/{name_or_arn}"


def _sqs_queue(url_or_name: str, region: str, account: str) -> str:
    if url_or_name.startswith("http"):
        parts = urlsplit(url_or_name)
        segments = [s for s in parts.path.split("/") if s]
        host_region = re.match(r"^(?:sqs\.)?([a-z]{2}-[a-z]+-\d)\.", parts.netloc)
        queue_region = host_region.group(1) if host_region else region
        if len(segments) >= 2:
            return f"arn:aws:sqs:{queue_region}:{segments[-2]}:{segments[-1]}"
        return f"arn:aws:sqs:{queue_region}:{account}:{segments[-1]}"
    return f"arn:aws:sqs:{region}:{account}:{url_or_name}"


def _secret(secret_id: str, region: str, account: str) -> str:
    if secret_id.startswith("arn:"):
        return secret_id
    return f"arn:aws:secretsmanager:{region}:{account}:secret:{secret_id}"


def _function(name_or_arn: str, region: str, account: str) -> str:
    if name_or_arn.startswith("arn:"):
        return ":".join(name_or_arn.split(":")[:7])
    name = name_or_arn.split(":", 1)[0]
    return f"arn:aws:lambda:{region}:{account}:function:{name}"


def authorizations(
    service: str, operation: str, params: Mapping[str, Any], *, region: str, account: str | None = None
) -> Iterator[Authorization]:
    """Each (action, resource) IAM checks for this call. `service` is botocore's signing name."""
    account = account or account_id()
    prefix = IAM_PREFIX.get(service, service)
    action = ACTION_OF.get(f"{prefix}:{operation}", f"{prefix}:{operation}")
    if action in UNAUTHORIZED_ACTIONS:
        return
    resolve = _RESOURCES_OF.get(prefix, _any_resource)
    yield from resolve(_Call(action, operation, params, region, account))


@dataclass(frozen=True)
class _Call:
    """One call as the per-service resource rules below read it."""

    action: str
    operation: str
    params: Mapping[str, Any]
    region: str
    account: str

    def param(self, *names: str) -> str | None:
        """The first of `names` the call sets, as a string (None when it sets none)."""
        for name in names:
            value = self.params.get(name)
            if value:
                return str(value)
        return None

    def on(self, resource: str | None) -> Authorization:
        """The call's action on `resource`, or on `*` when the call names none."""
        return Authorization(self.action, resource or "*")


def _any_resource(call: _Call) -> Iterator[Authorization]:
    yield call.on(None)


def _dynamodb_call(call: _Call) -> Iterator[Authorization]:
    yield from _dynamodb(call.action, call.operation, call.params, call.region, call.account)


def _sqs_call(call: _Call) -> Iterator[Authorization]:
    target = call.param("QueueUrl", "QueueName")
    yield call.on(_sqs_queue(target, call.region, call.account) if target else None)


def _secretsmanager_call(call: _Call) -> Iterator[Authorization]:
    secret = call.param("SecretId")
    yield call.on(_secret(secret, call.region, call.account) if secret else None)


def _lambda_call(call: _Call) -> Iterator[Authorization]:
    function = call.param("FunctionName")
    yield call.on(_function(function, call.region, call.account) if function else None)


def _states_call(call: _Call) -> Iterator[Authorization]:
    yield call.on(call.param("executionArn", "stateMachineArn", "resourceArn"))


def _sns_call(call: _Call) -> Iterator[Authorization]:
    yield call.on(call.param("TopicArn", "TargetArn"))


def _ssm_call(call: _Call) -> Iterator[Authorization]:
    name = call.param("Name")
    yield call.on(f"arn:aws:ssm:{call.region}:{call.account}:parameter/{name.lstrip('/')}" if name else None)


def _cloudformation_call(call: _Call) -> Iterator[Authorization]:
    stack = call.param("StackName")
    if stack and stack.startswith("arn:"):
        yield call.on(stack)
    else:
        yield call.on(f"arn:aws:cloudformation:{call.region}:{call.account}:stack/{stack}/*" if stack else None)


def _scheduler_call(call: _Call) -> Iterator[Authorization]:
    group = call.params.get("GroupName") or "default"
    name = call.params.get("Name")
    yield call.on(f"arn:aws:scheduler:{call.region}:{call.account}:schedule/{group}/{name}" if name else None)
    # A schedule runs as the role it names: creating or updating it needs iam:PassRole on
    # that role, which moto never asks for.
    role = (call.params.get("Target") or {}).get("RoleArn")
    if role and call.operation in ("CreateSchedule", "UpdateSchedule"):
        yield Authorization("iam:PassRole", str(role))


def _events_call(call: _Call) -> Iterator[Authorization]:
    bus = call.params.get("EventBusName") or "default"
    yield call.on(f"arn:aws:events:{call.region}:{call.account}:event-bus/{bus}")


# IAM service prefix -> how a call to that service names its resource(s); others are on `*`.
_RESOURCES_OF: dict[str, Callable[[_Call], Iterator[Authorization]]] = {
    "dynamodb": _dynamodb_call,
    "sqs": _sqs_call,
    "secretsmanager": _secretsmanager_call,
    "lambda": _lambda_call,
    "states": _states_call,
    "sns": _sns_call,
    "ssm": _ssm_call,
    "cloudformation": _cloudformation_call,
    "scheduler": _scheduler_call,
    "events": _events_call,
}


def _dynamodb(
    action: str, operation: str, params: Mapping[str, Any], region: str, account: str
) -> Iterator[Authorization]:
    if operation in ("BatchGetItem", "BatchWriteItem"):
        for table in params.get("RequestItems", {}):
            yield Authorization(action, _dynamodb_table(table, region, account))
        return
    if operation in ("TransactWriteItems", "TransactGetItems"):
        for item in params.get("TransactItems", []):
            for kind, body in item.items():
                yield Authorization(_TRANSACT_ACTIONS[kind], _dynamodb_table(body["TableName"], region, account))
        return
    if "StreamArn" in params:
        yield Authorization(action, str(params["StreamArn"]))
        return
    if "ShardIterator" in params:  # GetRecords names no stream; the stream is in the iterator
        yield Authorization(action, _stream_of_iterator(str(params["ShardIterator"])))
        return
    table = params.get("TableName")
    if not table:
        yield Authorization(action, "*")
        return
    arn = _dynamodb_table(str(table), region, account)
    index = params.get("IndexName")
    yield Authorization(action, f"{arn}/index/{index}" if index else arn)


def _stream_of_iterator(iterator: str) -> str:
    """The stream a GetRecords call reads, which IAM authorizes it on: DynamoDB Streams' shard
    iterators (AWS's and moto's alike) begin with the stream's ARN, then `|`. An iterator of
    another shape is checked as `*`, which only a policy allowing every resource covers."""
    head = iterator.split("|", 1)[0]
    return head if head.startswith("arn:") and "/stream/" in head and "|" in iterator else "*"
