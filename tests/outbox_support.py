"""The outbox in tests: the template's stream event source mapping, played by the local stack's
StreamPoller over moto's stream of the conversions table, invoking outbox_handler in-process."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import boto3
from template_support import TEMPLATE

import outbox_handler
from postback_ops.local.resources import LOCAL_ACCOUNT, LOCAL_REGION
from postback_ops.local.stream import StreamMapping, StreamPoller, stream_mapping
from postback_ops.template import template_value

OUTBOX_FUNCTION_ARN = f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT}:function:outbox"


class OutboxContext:
    function_name = "outbox"
    memory_limit_in_mb = 256
    invoked_function_arn = OUTBOX_FUNCTION_ARN
    aws_request_id = "outbox-test"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


def template_stream_mapping(outputs: Mapping[str, str]) -> StreamMapping:
    """OutboxFunction's `Type: DynamoDB` event as the template writes it, on this test's stack."""
    events = TEMPLATE["Resources"]["OutboxFunction"]["Properties"]["Events"]
    (props,) = [event["Properties"] for event in events.values() if event["Type"] == "DynamoDB"]
    failure_arn = f"arn:aws:sqs:{LOCAL_REGION}:{LOCAL_ACCOUNT}:outbox-failure"
    intrinsics = {
        "ConversionsTable": outputs["ConversionsStreamArn"],
        "OutboxFailureQueue": failure_arn,
    }

    def resolve(value: Any) -> Any:
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            return intrinsics[value["Fn::GetAtt"][0]]
        return template_value(TEMPLATE, value)  # a parameter: its default

    return stream_mapping(
        props,
        function_arn=OUTBOX_FUNCTION_ARN,
        resolve=resolve,
        queue_url_for_arn=lambda arn: outputs["OutboxFailureQueueUrl"],
    )


def invoke_outbox(event: dict[str, Any]) -> Any:
    return outbox_handler.lambda_handler(event, OutboxContext())


def outbox_poller(
    outputs: Mapping[str, str],
    *,
    invoke: Callable[[dict[str, Any]], Any] = invoke_outbox,
    clock: Callable[[], float] = time.time,
    batching_window: bool = False,
) -> StreamPoller:
    """A poller of the conversions table's stream for the outbox function (cold: its service is
    built afresh on the first batch). Without `batching_window`, a batch goes at once."""
    outbox_handler.outbox_service.reset()
    mapping = template_stream_mapping(outputs)
    if not batching_window:
        mapping = StreamMapping(**{**mapping.__dict__, "batching_window_s": 0.0})
    return StreamPoller(
        boto3.client("dynamodbstreams"), mapping, invoke, region=LOCAL_REGION, sqs=boto3.client("sqs"), clock=clock
    )


def run_outbox(poller: StreamPoller, *, max_batches: int = 1000) -> int:
    """Run the poller until the stream holds nothing it has not handled; returns the batches run."""
    for batches in range(max_batches):
        if poller.poll_once() is None:
            return batches
    raise AssertionError(f"the outbox did not catch up in {max_batches} batches")
