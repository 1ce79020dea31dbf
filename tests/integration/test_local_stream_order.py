"""The local stream, as DynamoDB Streams numbers it: each record once, increasing, even when
several threads write the table (ingest writes a request's conversions from a pool of threads).

moto 5.x numbers a record before it appends it, with no lock; a mixed-fault run hung 25 minutes
in the stream poller on two records sharing one number. `postback_ops.local.moto_patches`
takes a lock (tests/conftest.py and the local stack apply it), and the poller stops with a
plain error on a record served out of order rather than read it for ever."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import boto3
import pytest
from moto import mock_aws
from race_support import all_at_once

from postback_ops.local.stream import StreamMapping, StreamPoller

WRITERS = 8
WRITES = 150


@pytest.fixture
def streamed_table() -> Iterator[str]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="eu-west-1")
        arn = dynamodb.create_table(
            TableName="streamed",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
        )["TableDescription"]["LatestStreamArn"]
        yield arn


def test_records_written_from_many_threads_get_one_sequence_number_each(streamed_table: str) -> None:
    # GIVEN eight threads writing the one table at once, switching as often as Python allows
    dynamodb = boto3.client("dynamodb", region_name="eu-west-1")

    def write(writer: int) -> None:
        for n in range(WRITES):
            dynamodb.put_item(TableName="streamed", Item={"pk": {"S": f"{writer}-{n}"}, "body": {"S": "x" * 200}})

    all_at_once(write, WRITERS)

    # WHEN the stream is read from its start, page after page (at most a page per record)
    streams = boto3.client("dynamodbstreams", region_name="eu-west-1")
    shard = streams.describe_stream(StreamArn=streamed_table)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=streamed_table, ShardId=shard, ShardIteratorType="TRIM_HORIZON")[
        "ShardIterator"
    ]
    numbers: list[int] = []
    for _ in range(WRITERS * WRITES + 1):
        page = streams.get_records(ShardIterator=iterator, Limit=100)
        iterator = page["NextShardIterator"]
        if not page["Records"]:
            break
        numbers += [int(r["dynamodb"]["SequenceNumber"]) for r in page["Records"]]

    # THEN every write is there once, numbered once, in increasing order
    assert len(numbers) == WRITERS * WRITES
    assert numbers == sorted(set(numbers))


class _Replaying:
    """A stream client that serves the same record on every page: what moto's unpatched stream
    did after two records shared one sequence number."""

    def __init__(self, record: Mapping[str, Any]) -> None:
        self.record = record
        self.calls = 0

    def describe_stream(self, **_: Any) -> dict[str, Any]:
        return {"StreamDescription": {"Shards": [{"ShardId": "shard-1"}]}}

    def get_shard_iterator(self, **_: Any) -> dict[str, Any]:
        return {"ShardIterator": "it-0"}

    def get_records(self, **_: Any) -> dict[str, Any]:
        self.calls += 1
        if self.calls > 50:
            raise AssertionError("the poller read the same record 50 times: it would never stop")
        return {"Records": [self.record], "NextShardIterator": f"it-{self.calls}"}


def test_the_poller_stops_on_a_record_served_again_instead_of_reading_it_for_ever() -> None:
    # GIVEN a stream whose every page is the same record
    record = {
        "eventID": "1",
        "eventName": "INSERT",
        "eventSource": "aws:dynamodb",
        "dynamodb": {"SequenceNumber": "1100000000017454423009", "Keys": {"pk": {"S": "a"}}},
    }
    streams = _Replaying(record)
    mapping = StreamMapping(
        function_arn="arn:aws:lambda:eu-west-1:123456789012:function:outbox",
        stream_arn="arn:aws:dynamodb:eu-west-1:123456789012:table/t/stream/1",
        batching_window_s=0.0,
    )
    poller = StreamPoller(streams, mapping, lambda event: None, region="eu-west-1")

    # WHEN the poller reads it, THEN it stops on the second copy with the reason
    with pytest.raises(RuntimeError, match="served sequence number 1100000000017454423009 after"):
        poller.poll_once()
    assert streams.calls == 2
