"""postback_relay.batch answers as Powertools' BatchProcessor does, on the same events."""

from __future__ import annotations

from typing import Any

import pytest
from aws_lambda_powertools.utilities import batch as powertools_batch

from postback_relay import batch


def _sqs_event(*ids: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": i,
                "receiptHandle": f"rh-{i}",
                "body": f"body-{i}",
                "attributes": {},
                "eventSource": "aws:sqs",
            }
            for i in ids
        ]
    }


def _stream_event(*sequence_numbers: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "eventID": f"e-{n}",
                "eventName": "INSERT",
                "eventSource": "aws:dynamodb",
                "dynamodb": {"SequenceNumber": n, "Keys": {"id": {"S": n}}, "NewImage": {"id": {"S": n}}},
            }
            for n in sequence_numbers
        ]
    }


def _failing_on(*bad: str) -> Any:
    def handler(record: Any) -> str:
        key: str = getattr(record, "message_id", None) or record.dynamodb.sequence_number
        if key in bad:
            raise RuntimeError(f"fail {key}")
        return key

    return handler


def _ours_failing_on(*bad: str) -> Any:
    def handler(record: Any) -> str:
        key = record.message_id if isinstance(record, batch.SQSRecord) else record.sequence_number
        if key in bad:
            raise RuntimeError(f"fail {key}")
        return key

    return handler


@pytest.mark.parametrize(
    ("event", "kind", "bad"),
    [
        (_sqs_event("a", "b", "c"), "SQS", ()),
        (_sqs_event("a", "b", "c"), "SQS", ("b",)),
        (_sqs_event("a", "b", "c"), "SQS", ("a", "c")),
        (_stream_event("1", "2", "3"), "DynamoDBStreams", ("2",)),
        (_stream_event("1", "2"), "DynamoDBStreams", ()),
    ],
)
def test_partial_failures_match_powertools(event: dict[str, Any], kind: str, bad: tuple[str, ...]) -> None:
    # GIVEN the same event and a record handler failing on the same records
    theirs = powertools_batch.process_partial_response(
        event=event,
        record_handler=_failing_on(*bad),
        processor=powertools_batch.BatchProcessor(event_type=powertools_batch.EventType[kind]),
    )
    # WHEN our processor reports it
    ours = batch.process_partial_response(
        event=event, record_handler=_ours_failing_on(*bad), processor=batch.BatchProcessor(batch.EventType[kind])
    )
    # THEN the answers are the same
    assert ours == theirs


def test_entire_batch_failure_raises_unless_told_not_to() -> None:
    event = _sqs_event("a", "b")
    with pytest.raises(batch.BatchProcessingError) as raised:
        batch.process_partial_response(event, _ours_failing_on("a", "b"), batch.BatchProcessor(batch.EventType.SQS))
    assert len(raised.value.child_exceptions) == 2
    quiet = batch.BatchProcessor(batch.EventType.SQS, raise_on_entire_batch_failure=False)
    answer = batch.process_partial_response(event, _ours_failing_on("a", "b"), quiet)
    assert answer == {"batchItemFailures": [{"itemIdentifier": "a"}, {"itemIdentifier": "b"}]}


@pytest.mark.parametrize("event", [{}, {"Records": []}, {"Records": "nope"}])
def test_an_event_without_records_is_refused_as_powertools_refuses_it(event: dict[str, Any]) -> None:
    with pytest.raises(powertools_batch.exceptions.UnexpectedBatchTypeError):
        powertools_batch.process_partial_response(
            event=event,
            record_handler=lambda record: None,
            processor=powertools_batch.BatchProcessor(powertools_batch.EventType.SQS),
        )
    with pytest.raises(batch.UnexpectedBatchTypeError):
        batch.process_partial_response(event, lambda record: None, batch.BatchProcessor(batch.EventType.SQS))


def test_sqs_record_reads_the_fields_the_dispatcher_uses() -> None:
    record = batch.SQSRecord(_sqs_event("m-1")["Records"][0])
    assert (record.message_id, record.receipt_handle, record.body) == ("m-1", "rh-m-1", "body-m-1")
