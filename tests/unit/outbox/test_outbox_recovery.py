"""`postback outbox recover` against the stream as AWS serves it: pages that are empty while
records follow, shards that stay open, records that cannot be read, and failure messages that
cannot be handled. moto never serves an empty page, so the stream is botocore's Stubber."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from fakes import FakeParkedRecords, FakePostbackQueue, message

from postback_ops.outbox_recovery import OutboxRecovery

STREAM_ARN = "arn:aws:dynamodb:eu-west-1:123456789012:table/relay-ConversionsTable/stream/2026-11-25T00:00:00.000"
SHARD = "shardId-00000001764000000000-0a1b2c3d"
FIRST = 4100000000000000000001


def image(n: int, *, postbacks: str | None = None) -> dict[str, Any]:
    """Conversion T-{n}'s new image, with its one postback (or `postbacks` as written)."""
    text = postbacks if postbacks is not None else json.dumps([message(n).model_dump(mode="json")])
    return {"conversion_id": {"S": f"T-{n}#sale"}, "postbacks": {"S": text}}


def record(n: int, new_image: dict[str, Any], event_name: str = "INSERT") -> dict[str, Any]:
    return {
        "eventID": f"e{n}",
        "eventName": event_name,
        "dynamodb": {"SequenceNumber": str(FIRST + n), "NewImage": new_image, "StreamViewType": "NEW_IMAGE"},
    }


def failure_message(first: int, last: int, batch_size: int) -> str:
    return json.dumps(
        {
            "requestContext": {"condition": "RecordAgeExceeded"},
            "DDBStreamBatchInfo": {
                "shardId": SHARD,
                "startSequenceNumber": str(FIRST + first),
                "endSequenceNumber": str(FIRST + last),
                "approximateArrivalOfFirstRecord": "2026-11-25T12:00:00Z",
                "approximateArrivalOfLastRecord": "2026-11-25T12:00:01Z",
                "batchSize": batch_size,
                "streamArn": STREAM_ARN,
            },
        }
    )


@dataclass
class FailureQueue:
    """The OutboxFailureQueue as the recovery uses it: receive, delete, make visible again."""

    bodies: list[str]
    deleted: list[str] = field(default_factory=list)
    made_visible: list[str] = field(default_factory=list)
    _received: bool = False

    def receive_message(self, **_: Any) -> dict[str, Any]:
        if self._received:
            return {}
        self._received = True
        return {"Messages": [{"ReceiptHandle": f"r{i}", "Body": body} for i, body in enumerate(self.bodies)]}

    def delete_message(self, *, QueueUrl: str, ReceiptHandle: str) -> None:
        self.deleted.append(ReceiptHandle)

    def change_message_visibility(self, *, QueueUrl: str, ReceiptHandle: str, VisibilityTimeout: int) -> None:
        self.made_visible.append(ReceiptHandle)


@dataclass
class Stream:
    """A shard served page by page through Stubber: each page's records and whether it is the last."""

    client: Any = field(default_factory=lambda: boto3.client("dynamodbstreams", region_name="eu-west-1"))

    def __post_init__(self) -> None:
        self.stub = Stubber(self.client)

    def pages(self, *pages: list[dict[str, Any]], closes: bool = False, start: int = 0) -> None:
        self.stub.add_response(
            "get_shard_iterator",
            {"ShardIterator": "it-0"},
            {
                "StreamArn": STREAM_ARN,
                "ShardId": SHARD,
                "ShardIteratorType": "AT_SEQUENCE_NUMBER",
                "SequenceNumber": str(FIRST + start),
            },
        )
        for index, records in enumerate(pages):
            answer: dict[str, Any] = {"Records": records}
            if not (closes and index == len(pages) - 1):
                answer["NextShardIterator"] = f"it-{index + 1}"
            self.stub.add_response("get_records", answer, {"ShardIterator": f"it-{index}", "Limit": ANY})

    def fails(self, code: str) -> None:
        self.stub.add_client_error("get_shard_iterator", service_error_code=code)


@pytest.fixture
def queue() -> FakePostbackQueue:
    return FakePostbackQueue()


@contextmanager
def recovery(
    stream: Stream, failures: FailureQueue, queue: FakePostbackQueue, *, max_pages: int = 1000
) -> Iterator[tuple[OutboxRecovery, Any]]:
    """The recovery over the stubbed stream; the table is a Stubber too, with nothing queued on it
    (a Scan raises), so a recovery that falls back to the table when it should not fails."""
    dynamodb = boto3.client("dynamodb", region_name="eu-west-1")
    with stream.stub, Stubber(dynamodb) as table:
        yield (
            OutboxRecovery(
                dynamodb=dynamodb,
                streams=stream.client,
                sqs=failures,
                conversions_table="relay-ConversionsTable",
                failure_queue_url="https://sqs.eu-west-1.amazonaws.com/123456789012/relay-OutboxFailureQueue",
                queue=queue,
                max_pages=max_pages,
            ),
            table,
        )


def test_empty_pages_before_the_range_do_not_end_the_read(queue: FakePostbackQueue) -> None:
    # GIVEN a batch of 3 conversions given up on, and a shard that serves 5 empty pages first
    # (AWS: "it might take multiple calls to get to a portion of the shard that contains stream records")
    stream = Stream()
    empty: list[dict[str, Any]] = []
    stream.pages(empty, empty, empty, empty, empty, [record(n, image(n)) for n in range(3)])
    failures = FailureQueue([failure_message(0, 2, batch_size=3)])

    # WHEN ops run the recovery
    with recovery(stream, failures, queue) as (run, _):
        (batch,) = run.recover()

    # THEN it read through the empty pages, found all 3 in the stream, queued them and deleted the message
    assert (batch.source, batch.conversions, batch.get_records_calls, batch.empty_pages) == (
        "stream",
        ["T-0#sale", "T-1#sale", "T-2#sale"],
        6,
        5,
    )
    assert [m.transaction_id for m in queue.sent] == ["T-0", "T-1", "T-2"]
    assert (batch.missing, batch.deleted, failures.deleted) == ([], True, ["r0"])


def test_a_range_split_by_an_empty_page_is_read_to_its_end(queue: FakePostbackQueue) -> None:
    # GIVEN a range whose records come on two pages with an empty page between them
    stream = Stream()
    stream.pages([record(0, image(0))], [], [record(1, image(1)), record(2, image(2))])
    failures = FailureQueue([failure_message(0, 2, batch_size=3)])

    # WHEN ops run the recovery
    with recovery(stream, failures, queue) as (run, _):
        (batch,) = run.recover()

    # THEN every conversion after the empty page is queued too
    assert [m.transaction_id for m in queue.sent] == ["T-0", "T-1", "T-2"]
    assert batch.deleted


def test_a_shard_that_never_reaches_the_end_stops_at_the_bound_and_keeps_the_message(queue: FakePostbackQueue) -> None:
    # GIVEN an open shard serving only empty pages past the first record of a 2-record range
    stream = Stream()
    stream.pages([record(0, image(0))], [], [], [])
    failures = FailureQueue([failure_message(0, 1, batch_size=2)])

    # WHEN ops run the recovery with a bound of 4 GetRecords calls
    with recovery(stream, failures, queue, max_pages=4) as (run, _):
        (batch,) = run.recover()

    # THEN it stopped after 4 calls, queued what it found, and kept the message, saying why
    assert (batch.get_records_calls, batch.empty_pages) == (4, 3)
    assert [m.transaction_id for m in queue.sent] == ["T-0"]
    assert not batch.deleted and failures.deleted == [] and failures.made_visible == ["r0"]
    assert f"up to sequence number {FIRST}, short of {FIRST + 1}" in batch.missing[0]
    assert "1 of the batch's 2 conversions not found" in batch.missing[1]


def test_a_closed_shard_ends_the_read(queue: FakePostbackQueue) -> None:
    # GIVEN a shard that closes (no NextShardIterator) after the range's only record
    stream = Stream()
    stream.pages([], [record(0, image(0))], closes=True)
    failures = FailureQueue([failure_message(0, 0, batch_size=1)])
    # WHEN ops run the recovery
    with recovery(stream, failures, queue) as (run, _):
        (batch,) = run.recover()
    # THEN the range is whole
    assert (batch.conversions, batch.get_records_calls, batch.deleted) == (["T-0#sale"], 2, True)


def test_fewer_conversions_than_the_batch_held_keep_the_message(queue: FakePostbackQueue) -> None:
    # GIVEN a range of 3 records of which only 2 carry postbacks, for a batch of 3
    stream = Stream()
    stream.pages([record(0, image(0)), record(1, {"conversion_id": {"S": "T-1#sale"}}), record(2, image(2))])
    failures = FailureQueue([failure_message(0, 2, batch_size=3)])

    # WHEN ops run the recovery
    with recovery(stream, failures, queue) as (run, _):
        (batch,) = run.recover()

    # THEN what was found is queued, and the message stays: one conversion is missing
    assert [m.transaction_id for m in queue.sent] == ["T-0", "T-2"]
    assert (batch.deleted, batch.missing) == (False, ["1 of the batch's 3 conversions not found"])


def test_an_unreadable_record_is_parked_and_the_others_are_queued(queue: FakePostbackQueue) -> None:
    # GIVEN a range whose middle record's postbacks are not readable
    stream = Stream()
    stream.pages([record(0, image(0)), record(1, image(1, postbacks="{not json")), record(2, image(2))])
    failures = FailureQueue([failure_message(0, 2, batch_size=3)])
    parking = FakeParkedRecords()

    # WHEN ops run the recovery
    with recovery(stream, failures, queue) as (run, _):
        run.parking = parking
        (batch,) = run.recover()

    # THEN the readable ones are queued, the bad one is parked with its image (as the outbox
    # parks it), and the batch is whole: its failure message is deleted
    assert [m.transaction_id for m in queue.sent] == ["T-0", "T-2"]
    assert [(r.conversion_id, json.loads(r.image)["postbacks"]) for r in parking.parked] == [
        ("T-1#sale", {"S": "{not json"})
    ]
    assert (batch.parked, batch.missing, batch.deleted) == (["T-1#sale"], [], True)


def test_an_unreadable_record_that_cannot_be_parked_keeps_the_message(queue: FakePostbackQueue) -> None:
    # GIVEN a range whose middle record's postbacks are not readable
    stream = Stream()
    stream.pages([record(0, image(0)), record(1, image(1, postbacks="{not json")), record(2, image(2))])
    failures = FailureQueue([failure_message(0, 2, batch_size=3)])

    # WHEN ops run the recovery, with the parked queue refusing
    with recovery(stream, failures, queue) as (run, _):
        run.parking = FakeParkedRecords(down=False, refuse=lambda r: True)
        (batch,) = run.recover()

    # THEN the readable ones are queued, the bad one is named, and the message stays
    assert [m.transaction_id for m in queue.sent] == ["T-0", "T-2"]
    assert not batch.deleted
    assert batch.missing[0].startswith("conversion T-1#sale: its postbacks cannot be read")


def test_one_failure_message_that_cannot_be_handled_does_not_stop_the_others(queue: FakePostbackQueue) -> None:
    # GIVEN a failure message that is not one, one whose shard read is denied, then a good one
    stream = Stream()
    stream.fails("AccessDeniedException")
    stream.pages([record(5, image(5))], start=5)
    failures = FailureQueue(["not json", failure_message(0, 0, batch_size=1), failure_message(5, 5, batch_size=1)])

    # WHEN ops run the recovery
    with recovery(stream, failures, queue) as (run, _):
        batches = run.recover()

    # THEN each bad one is reported with its error and kept; the good one is recovered
    assert [bool(b.error) for b in batches] == [True, True, False]
    assert "AccessDeniedException" in batches[1].error
    assert [m.transaction_id for m in queue.sent] == ["T-5"]
    assert failures.deleted == ["r2"] and failures.made_visible == ["r0", "r1"]
