"""The dispatcher: SQS postback messages -> the affiliates' servers (contract section 4).

The records of one batch are sent concurrently first (services.dispatch); Powertools'
BatchProcessor then reports each record's precomputed outcome. A postback that must wait
(retry, circuit open, not due yet) has a delayed copy queued already, so its record is
deleted like a delivered, failed-for-good (logged + on the DLQ) or skipped one; only a wait
whose copy SQS refused stays on the queue as a batch item failure (its visibility set to the
next attempt), and a record whose processing crashed comes back after the queue's visibility
timeout.
"""

from __future__ import annotations

import functools
import os
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, ConfigDict, Field

from postback_relay.batch import (
    BatchProcessor,
    EventType,
    PartialItemFailureResponse,
    SQSRecord,
    process_partial_response,
)
from postback_relay.domain.notices import CircuitChange
from postback_relay.observability import LazyTracer
from postback_relay.settings import settings_from_environ

# The dispatcher, its domain, requests and the adapters load on the first batch, not at
# import (README, Benchmarks).
if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_dynamodb import DynamoDBClient

    from postback_relay.services.dispatch import Dispatcher, DispatchResult, ReceivedPostback

# The metrics this function emits (namespace POWERTOOLS_METRICS_NAMESPACE, dimension `service`);
# the dashboard in template.yaml shows them (tests/unit/template/test_dashboard.py checks both ways).
# Keyed by DispatchOutcome's values (a StrEnum: its members are these strings), so that the
# service loads on the first batch, not at import; a unit test checks each is an outcome.
DISPATCH_OUTCOMES = ("delivered", "retried", "failed", "deferred", "skipped")
OUTCOME_METRICS = dict(
    zip(
        DISPATCH_OUTCOMES,
        ("PostbacksDelivered", "PostbacksRetried", "PostbacksFailed", "PostbacksDeferred", "PostbacksSkipped"),
        strict=True,
    )
)
METRIC_CRASHED = "PostbacksCrashed"  # records whose dispatch raised: left on the queue
METRIC_LATENCY = "PostbackLatency"  # per attempt that got an answer or timed out
CIRCUIT_METRICS = {CircuitChange.OPENED: "CircuitsOpened", CircuitChange.CLOSED: "CircuitsClosed"}


class DispatchSettings(BaseModel):
    """The function's environment (template.yaml), checked at cold start."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    affiliates_table: str = Field(min_length=1)
    deliveries_table: str = Field(min_length=1)
    endpoints_table: str = Field(min_length=1)
    postback_queue_url: str = Field(min_length=1)
    dead_letter_queue_url: str = Field(min_length=1)
    alarm_topic_arn: str = Field(min_length=1)  # circuit notices (contract section 4)
    allow_loopback: bool = False
    delay_scale: float = Field(default=1.0, gt=0, le=1)
    connect_timeout_s: float = Field(default=3, gt=0, le=30)
    read_timeout_s: float = Field(default=10, gt=0, le=60)
    config_cache_seconds: float = Field(default=60, ge=0)
    max_workers: int = Field(default=10, ge=1, le=100)
    delivery_ttl_days: int = Field(default=30, ge=1)


def load_settings(environ: Mapping[str, str]) -> DispatchSettings:
    return settings_from_environ(DispatchSettings, environ, function="dispatch")


settings = load_settings(os.environ)
logger = Logger()
metrics = Metrics()
# Patch only what this function calls: the default patches every library it finds and imports
# each one (requests, sqlite3, httplib...) at cold start.
tracer = LazyTracer(patch_modules=("botocore", "requests"))
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


class PostbackNotDone(Exception):
    """Leaves a record on the queue: its next attempt (or deferral) is scheduled."""


@functools.cache
def dispatcher() -> Dispatcher:
    """Built on the first invocation, not at import, so that tests can start moto first."""
    from postback_relay.adapters.dynamodb_affiliates import CachedAffiliateStore, DynamoAffiliateStore
    from postback_relay.adapters.dynamodb_deliveries import DynamoDeliveryLog
    from postback_relay.adapters.dynamodb_endpoints import DynamoEndpointStore
    from postback_relay.adapters.http_sender import HttpPostbackSender, SafeHttpClient
    from postback_relay.adapters.sns_notifier import SnsNotifier, notice_client
    from postback_relay.adapters.sqs_retry import SqsRetryControl
    from postback_relay.services.dispatch import CircuitBreakers, Dispatcher

    dynamodb: DynamoDBClient = boto3.client("dynamodb")
    client = SafeHttpClient(
        settings.connect_timeout_s,
        settings.read_timeout_s,
        settings.allow_loopback,
        pool_size=settings.max_workers,
    )
    return Dispatcher(
        deliveries=DynamoDeliveryLog(settings.deliveries_table, client=dynamodb, ttl_days=settings.delivery_ttl_days),
        sender=HttpPostbackSender(client),
        retries=SqsRetryControl(settings.postback_queue_url, settings.dead_letter_queue_url),
        breakers=CircuitBreakers(
            DynamoEndpointStore(settings.endpoints_table, client=dynamodb),
            notifier=SnsNotifier(settings.alarm_topic_arn, client=notice_client()),
            scale=settings.delay_scale,
        ),
        affiliates=CachedAffiliateStore(
            DynamoAffiliateStore(settings.affiliates_table, client=dynamodb, allow_loopback=settings.allow_loopback),
            ttl_s=settings.config_cache_seconds,
        ),
        max_workers=settings.max_workers,
        delay_scale=settings.delay_scale,
    )


def received(record: Mapping[str, Any]) -> ReceivedPostback:
    from postback_relay.services.dispatch import ReceivedPostback

    attributes = record.get("attributes") or {}
    # The earliest of the message's timestamps bounds its receipt from below, for SQS's rule
    # that a visibility can't reach past 12 hours from the receipt (moto counts from the send).
    stamps = [
        int(attributes[name]) / 1000
        for name in ("SentTimestamp", "ApproximateFirstReceiveTimestamp")
        if str(attributes.get(name, "")).isdigit()
    ]
    return ReceivedPostback(
        message_id=str(record["messageId"]),
        receipt_handle=str(record["receiptHandle"]),
        receive_count=int(attributes.get("ApproximateReceiveCount", "1")),
        body=str(record.get("body") or ""),
        received_by=min(stamps) if stamps else None,
    )


def count(outcomes: Mapping[str, DispatchResult | Exception]) -> None:
    from postback_relay.services.dispatch import DispatchResult

    tally: Counter[str | None] = Counter(
        o.outcome.value if isinstance(o, DispatchResult) else None for o in outcomes.values()
    )
    for outcome in OUTCOME_METRICS:
        if tally[outcome]:
            metrics.add_metric(name=OUTCOME_METRICS[outcome], unit=MetricUnit.Count, value=tally[outcome])
    if tally[None]:
        metrics.add_metric(name=METRIC_CRASHED, unit=MetricUnit.Count, value=tally[None])
    for result in outcomes.values():
        if isinstance(result, DispatchResult) and result.latency_ms is not None:
            metrics.add_metric(name=METRIC_LATENCY, unit=MetricUnit.Milliseconds, value=result.latency_ms)


def count_circuits(transitions: Mapping[CircuitChange, int]) -> None:
    for change in CIRCUIT_METRICS:
        if transitions.get(change):
            metrics.add_metric(name=CIRCUIT_METRICS[change], unit=MetricUnit.Count, value=transitions[change])


@metrics.log_metrics
@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    records = [received(record) for record in event.get("Records", [])]
    built = dispatcher()
    outcomes = built.dispatch_batch(records)
    count(outcomes)
    count_circuits(built.breakers.drain_transitions())

    def report(record: SQSRecord) -> str:
        outcome = outcomes.get(record.message_id)
        if outcome is None:
            raise PostbackNotDone("not dispatched")
        if isinstance(outcome, Exception):
            logger.error("postback dispatch crashed", extra={"message_id": record.message_id}, exc_info=outcome)
            raise outcome
        if outcome.stays_on_queue:
            raise PostbackNotDone(outcome.outcome.value)
        return outcome.outcome.value

    return process_partial_response(event=event, record_handler=report, processor=processor, context=context)
