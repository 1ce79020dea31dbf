"""Partial batch responses (`ReportBatchItemFailures`) for SQS and DynamoDB Streams triggers.

The same face and answers as Powertools' `BatchProcessor` / `process_partial_response` for
these two sources (tests/unit/test_batch.py runs both on the same events), without its import:
`aws_lambda_powertools.utilities.batch` imports asyncio (for its async processor) and every
event data class on the way, about a seventh of a cold start (docs/benchmarks.md).
Left out: the async processor, pydantic record models, Kinesis and Kafka, FIFO short-circuit.

Each record goes to the record handler in turn; an exception marks it failed and the next
record still runs. The answer lists the failed records (`messageId` for SQS, the stream
record's `SequenceNumber` for DynamoDB); when every record failed, BatchProcessingError is
raised unless `raise_on_entire_batch_failure=False`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from enum import Enum
from typing import Any, TypedDict

logger = logging.getLogger(__name__)


class EventType(Enum):
    SQS = "SQS"
    DynamoDBStreams = "DynamoDBStreams"


class PartialItemFailures(TypedDict):
    itemIdentifier: str


class PartialItemFailureResponse(TypedDict):
    batchItemFailures: list[PartialItemFailures]


class BatchProcessingError(Exception):
    """Every record of the batch failed (and the processor was asked to raise)."""

    def __init__(self, msg: str, child_exceptions: Sequence[BaseException]) -> None:
        super().__init__(msg)
        self.child_exceptions = list(child_exceptions)


class UnexpectedBatchTypeError(BatchProcessingError):
    """The event holds no list of records (or an empty one), as Powertools refuses it."""


class SQSRecord:
    """One SQS record of the event, read where it is used."""

    def __init__(self, raw_event: Mapping[str, Any]) -> None:
        self.raw_event = raw_event

    @property
    def message_id(self) -> str:
        return str(self.raw_event["messageId"])

    @property
    def receipt_handle(self) -> str:
        return str(self.raw_event["receiptHandle"])

    @property
    def body(self) -> str:
        return str(self.raw_event.get("body") or "")

    @property
    def attributes(self) -> Mapping[str, str]:
        return self.raw_event.get("attributes") or {}


class StreamRecord:
    """The `dynamodb` part of a stream record, as Powertools' data class names it."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = raw

    @property
    def sequence_number(self) -> str:
        return str(self.raw["SequenceNumber"])


class DynamoDBRecord:
    """One DynamoDB Streams record of the event (images in DynamoDB JSON, as sent)."""

    def __init__(self, raw_event: Mapping[str, Any]) -> None:
        self.raw_event = raw_event

    @property
    def event_id(self) -> str:
        return str(self.raw_event.get("eventID", ""))

    @property
    def dynamodb(self) -> StreamRecord | None:
        change = self.raw_event.get("dynamodb")
        return StreamRecord(change) if change is not None else None

    @property
    def event_name(self) -> str:
        return str(self.raw_event.get("eventName", ""))

    @property
    def sequence_number(self) -> str:
        return str(self.raw_event["dynamodb"]["SequenceNumber"])

    @property
    def keys(self) -> Mapping[str, Any]:
        return self.raw_event.get("dynamodb", {}).get("Keys") or {}

    @property
    def new_image(self) -> Mapping[str, Any]:
        return self.raw_event.get("dynamodb", {}).get("NewImage") or {}

    @property
    def old_image(self) -> Mapping[str, Any]:
        return self.raw_event.get("dynamodb", {}).get("OldImage") or {}


_RECORD_TYPES: dict[EventType, type[SQSRecord] | type[DynamoDBRecord]] = {
    EventType.SQS: SQSRecord,
    EventType.DynamoDBStreams: DynamoDBRecord,
}


class BatchProcessor:
    def __init__(self, event_type: EventType, *, raise_on_entire_batch_failure: bool = True) -> None:
        self.event_type = event_type
        self.raise_on_entire_batch_failure = raise_on_entire_batch_failure

    def _identifier(self, record: SQSRecord | DynamoDBRecord) -> str:
        return record.message_id if isinstance(record, SQSRecord) else record.sequence_number

    def process(
        self, records: Sequence[Mapping[str, Any]], record_handler: Callable[[Any], Any]
    ) -> PartialItemFailureResponse:
        record_type = _RECORD_TYPES[self.event_type]
        failures: list[PartialItemFailures] = []
        exceptions: list[BaseException] = []
        for raw in records:
            record = record_type(raw)
            try:
                record_handler(record)
            except Exception as exc:
                logger.debug("record failed processing", exc_info=exc)
                exceptions.append(exc)
                failures.append({"itemIdentifier": self._identifier(record)})
        if records and len(exceptions) == len(records) and self.raise_on_entire_batch_failure:
            raise BatchProcessingError(
                f"All records failed processing. {len(exceptions)} individual errors logged separately below.",
                exceptions,
            )
        return {"batchItemFailures": failures}


def process_partial_response(
    event: Mapping[str, Any],
    record_handler: Callable[[Any], Any],
    processor: BatchProcessor,
    context: Any = None,
) -> PartialItemFailureResponse:
    """Powertools' function of the same name: the batch's failures, for Lambda to retry."""
    records = event.get("Records") if isinstance(event, Mapping) else None
    if not records or not isinstance(records, list):
        raise UnexpectedBatchTypeError(f"Expected a non-empty list of {processor.event_type.value} records.", [])
    return processor.process(records, record_handler)
