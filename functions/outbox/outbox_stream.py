"""The outbox function's stream plumbing: stream records in, the batch's partial answer and
the metrics out (outbox_handler holds the entry point).

A record not wholly queued is a batch item failure (its sequence number): Lambda retries the
batch from the first of them. A record retried past the mapping's MaximumRecordAgeInSeconds
lands on the on-failure queue (see docs/operations.md: "Recover postbacks from the outbox's on-failure
queue"). A record whose postbacks cannot be read is parked (services.outbox) with its raw
image: OutboxRecordsParked counts them, and the parked queue's alarm tells ops.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

from postback_relay import wiring
from postback_relay.batch import BatchProcessor, DynamoDBRecord, EventType
from postback_relay.domain.errors import PostbacksNotQueued
from postback_relay.domain.records import OutboxRecord
from postback_relay.observability import handler_logger

if TYPE_CHECKING:
    from postback_relay.services.outbox import OutboxReport

# The metrics this function emits (namespace POWERTOOLS_METRICS_NAMESPACE, dimension `service`);
# the dashboard in template.yaml shows them (tests/unit/template/test_dashboard.py checks both ways).
METRIC_QUEUED = "OutboxPostbacksQueued"
METRIC_RETRIED = "OutboxRecordsRetried"
METRIC_PARKED = "OutboxRecordsParked"

logger = handler_logger()
metrics = Metrics()
# Every record failing is still a partial answer: Lambda retries from the first failed record
# either way, and a function error would also split the batch for nothing.
processor = BatchProcessor(event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False)


def outbox_record(record: Mapping[str, Any]) -> OutboxRecord:
    """A stream record as the outbox reads it: its sequence number and its item's messages
    (or why they cannot be read, with the raw image to park); the ConversionsTable adapter's
    translation, handed over by the wiring (loaded on the first batch, not at import)."""
    return wiring.outbox_record_reader()(record)


def checker(report: OutboxReport) -> Callable[[DynamoDBRecord], None]:
    """The BatchProcessor's record handler: a record the outbox did not wholly queue fails."""

    def check(record: DynamoDBRecord) -> None:
        if record.dynamodb is None or record.dynamodb.sequence_number in report.failed:
            raise PostbacksNotQueued(record.event_id)

    return check


def count(report: OutboxReport, *, records: int) -> None:
    metrics.add_metric(name=METRIC_QUEUED, unit=MetricUnit.Count, value=report.queued)
    if report.parked:
        metrics.add_metric(name=METRIC_PARKED, unit=MetricUnit.Count, value=len(report.parked))
        logger.error(
            "Stream records whose postbacks cannot be read were parked; see `postback outbox parked`",
            extra={"parked": list(report.parked), "reasons": list(report.reasons)},
        )
    if report.failed:
        metrics.add_metric(name=METRIC_RETRIED, unit=MetricUnit.Count, value=len(report.failed))
        logger.warning(
            "Postbacks not queued; the stream retries from the first record not queued",
            extra={"records": records, "failed": len(report.failed), "reasons": list(report.reasons)},
        )
