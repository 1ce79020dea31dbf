"""The dispatch function's SQS plumbing: records in, the batch's partial answer and the
metrics out (dispatch_handler holds the entry point).

A postback that must wait (retry, circuit open, not due yet) has a delayed copy queued
already, so its record is deleted like a delivered, failed-for-good (logged + on the DLQ) or
skipped one; only a wait whose copy SQS refused stays on the queue as a batch item failure
(its visibility set to the next attempt), and a record whose processing crashed comes back
after the queue's visibility timeout.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

from postback_relay.batch import BatchProcessor, EventType, SQSRecord
from postback_relay.domain.errors import PostbackNotDone
from postback_relay.domain.notices import CircuitChange
from postback_relay.observability import handler_logger

# The dispatcher, its domain, requests and the adapters load on the first batch, not at
# import (docs/benchmarks.md).
if TYPE_CHECKING:
    from postback_relay.domain.records import ReceivedPostback
    from postback_relay.services.dispatch import DispatchResult

logger = handler_logger()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

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


def received(record: Mapping[str, Any], *, received_by: float | None = None) -> ReceivedPostback:
    """The record as the dispatcher reads it. `received_by` (epoch seconds) bounds this receipt
    from below: the invocation's start less the batching window (the handler's)."""
    from postback_relay.domain.records import ReceivedPostback

    attributes = record.get("attributes") or {}
    return ReceivedPostback(
        message_id=str(record["messageId"]),
        receipt_handle=str(record["receiptHandle"]),
        receive_count=int(attributes.get("ApproximateReceiveCount", "1")),
        body=str(record.get("body") or ""),
        received_by=received_by,
    )


def reporter(outcomes: Mapping[str, DispatchResult | Exception]) -> Callable[[SQSRecord], str]:
    """The BatchProcessor's record handler: each record's outcome, computed already."""

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

    return report


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
