"""The outbox function: the conversions table's stream -> the postback queue (services.outbox).

Lambda's event source mapping hands it new conversion records (INSERT events of items that
carry postbacks: a filter on the mapping) in batches of up to 100. Their messages are sent
first, 10 per SendMessageBatch across records (services.outbox); Powertools' BatchProcessor
then reports the records not wholly queued as batch item failures (their sequence numbers),
and Lambda retries the batch from the first of them. A record retried past the mapping's
MaximumRetryAttempts or MaximumRecordAgeInSeconds lands on the on-failure queue (see the
README: "Recover postbacks from the outbox's on-failure queue").
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from postback_relay.adapters.dynamodb_conversions import messages_of_item
from postback_relay.adapters.sqs_queue import SqsPostbackQueue
from postback_relay.batch import (
    BatchProcessor,
    DynamoDBRecord,
    EventType,
    PartialItemFailureResponse,
    process_partial_response,
)
from postback_relay.observability import LazyTracer
from postback_relay.ports import OutboxRecord
from postback_relay.services.outbox import OutboxReport, OutboxService
from postback_relay.settings import settings_from_environ

MAX_REASON_CHARS = 300
# The metrics this function emits (namespace POWERTOOLS_METRICS_NAMESPACE, dimension `service`);
# the dashboard in template.yaml shows them (tests/unit/template/test_dashboard.py checks both ways).
METRIC_QUEUED = "OutboxPostbacksQueued"
METRIC_RETRIED = "OutboxRecordsRetried"


class OutboxSettings(BaseModel):
    """The function's environment (template.yaml), checked at cold start."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    postback_queue_url: str = Field(min_length=1)


def load_settings(environ: Mapping[str, str]) -> OutboxSettings:
    return settings_from_environ(OutboxSettings, environ, function="outbox")


settings = load_settings(os.environ)
logger = Logger()
metrics = Metrics()
tracer = LazyTracer(patch_modules=("botocore",))
# Every record failing is still a partial answer: Lambda retries from the first failed record
# either way, and a function error would also split the batch for nothing.
processor = BatchProcessor(event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False)


class PostbacksNotQueued(Exception):
    """Reports a record as a batch item failure: Lambda retries the batch from it."""


@functools.cache
def outbox_service() -> OutboxService:
    """Built on the first invocation, not at import, so that tests can start moto first."""
    return OutboxService(SqsPostbackQueue(settings.postback_queue_url, client=boto3.client("sqs")))


def outbox_record(record: Mapping[str, Any]) -> OutboxRecord:
    """A stream record as the outbox reads it: its sequence number and its item's messages."""
    change = record.get("dynamodb") or {}
    image = change.get("NewImage") or {}
    conversion_id = str(image.get("conversion_id", {}).get("S", "?"))
    sequence_number = str(change.get("SequenceNumber", ""))
    try:
        messages = tuple(messages_of_item(image))
    except (ValueError, ValidationError, TypeError) as exc:
        return OutboxRecord(sequence_number, conversion_id, unreadable=str(exc)[:MAX_REASON_CHARS])
    return OutboxRecord(sequence_number, conversion_id, messages)


@metrics.log_metrics
@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    records = [outbox_record(record) for record in event.get("Records", [])]
    report = outbox_service().relay(records)
    count(report, records=len(records))

    def check(record: DynamoDBRecord) -> None:
        if record.dynamodb is None or record.dynamodb.sequence_number in report.failed:
            raise PostbacksNotQueued(record.event_id)

    return process_partial_response(event=event, record_handler=check, processor=processor, context=context)


def count(report: OutboxReport, *, records: int) -> None:
    metrics.add_metric(name=METRIC_QUEUED, unit=MetricUnit.Count, value=report.queued)
    if report.failed:
        metrics.add_metric(name=METRIC_RETRIED, unit=MetricUnit.Count, value=len(report.failed))
        logger.warning(
            "Postbacks not queued; the stream retries from the first record not queued",
            extra={"records": records, "failed": len(report.failed), "reasons": list(report.reasons)},
        )
