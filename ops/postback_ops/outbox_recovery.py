"""Queue again the postbacks of stream batches the outbox gave up on (`postback outbox recover`).

Lambda writes one message to the OutboxFailureQueue per batch it discarded (retries or record
age exhausted). The message names the stream, the shard and the first and last sequence
numbers, not the conversions. The conversions are still in ConversionsTable, each with its
postbacks' messages, so recovery needs only to find them:

1. While the stream still holds the records (DynamoDB Streams keeps 24 hours; the mapping
   gives up after MaximumRecordAgeInSeconds, an hour), read the shard from the first sequence
   number to the last: their new images are the conversion records, messages included.
2. Past that, the records are trimmed: the conversions recorded within the batch's arrival
   window (a minute of margin either side) are read from the table instead (a Scan with a
   filter on `received_at`: it reads the whole table, so it is the slow, rare path). It may
   find conversions that were queued already.

Their messages go to the postback queue again (SendMessageBatch, 10 at a time). A postback
queued twice is still sent once: the dispatcher finds a delivered one in the delivery log.
The failure message is deleted once every message of its batch is queued; one the queue
refuses stays for the next run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from botocore.exceptions import ClientError

from postback_relay.adapters.dynamodb import parse_utc, utc_exact
from postback_relay.adapters.dynamodb_conversions import POSTBACKS, messages_of_item
from postback_relay.domain.delivery import PostbackMessage
from postback_relay.ports import PostbackQueue

WINDOW_MARGIN = timedelta(minutes=1)
_TRIMMED = ("TrimmedDataAccessException", "ResourceNotFoundException", "ValidationException")


@dataclass
class RecoveredBatch:
    """One failure message and what came of it."""

    shard_id: str
    start_sequence_number: str
    end_sequence_number: str
    condition: str
    source: str = ""  # "stream" or "table"
    conversions: list[str] = field(default_factory=list)
    postbacks: int = 0
    refused: int = 0
    deleted: bool = False


@dataclass
class OutboxRecovery:
    """Reads the on-failure queue, finds each batch's conversions, queues their postbacks."""

    dynamodb: Any
    streams: Any
    sqs: Any
    conversions_table: str
    failure_queue_url: str
    queue: PostbackQueue

    def recover(self, *, dry_run: bool = False, max_batches: int = 1000) -> list[RecoveredBatch]:
        batches: list[RecoveredBatch] = []
        kept: list[str] = []  # failure messages left for a later run, shown again at the end
        for receipt_handle, failure in self._failures(max_batches):
            batch = self._recover_one(failure, dry_run=dry_run)
            if not dry_run and batch.refused == 0:
                self.sqs.delete_message(QueueUrl=self.failure_queue_url, ReceiptHandle=receipt_handle)
                batch.deleted = True
            else:
                kept.append(receipt_handle)
            batches.append(batch)
        for receipt_handle in kept:
            self.sqs.change_message_visibility(
                QueueUrl=self.failure_queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=0
            )
        return batches

    def _failures(self, max_batches: int) -> Iterator[tuple[str, Mapping[str, Any]]]:
        seen = 0
        while seen < max_batches:
            got = self.sqs.receive_message(
                QueueUrl=self.failure_queue_url, MaxNumberOfMessages=10, VisibilityTimeout=300
            ).get("Messages", [])
            if not got:
                return
            for message in got:
                seen += 1
                yield message["ReceiptHandle"], json.loads(message["Body"])

    def _recover_one(self, failure: Mapping[str, Any], *, dry_run: bool) -> RecoveredBatch:
        info = failure["DDBStreamBatchInfo"]
        batch = RecoveredBatch(
            shard_id=info["shardId"],
            start_sequence_number=info["startSequenceNumber"],
            end_sequence_number=info["endSequenceNumber"],
            condition=str(failure.get("requestContext", {}).get("condition", "")),
        )
        items = self._from_stream(info)
        batch.source = "stream"
        if items is None:
            items = self._from_table(info)
            batch.source = "table"
        messages: list[PostbackMessage] = []
        for item in items:
            batch.conversions.append(str(item["conversion_id"]["S"]))
            messages.extend(messages_of_item(item))
        batch.postbacks = len(messages)
        if messages and not dry_run:
            batch.refused = len(self.queue.send(messages))
        return batch

    def _from_stream(self, info: Mapping[str, Any]) -> list[Mapping[str, Any]] | None:
        """The new images of the batch's records, or None when the stream no longer has them."""
        start, end = int(info["startSequenceNumber"]), int(info["endSequenceNumber"])
        try:
            iterator = self.streams.get_shard_iterator(
                StreamArn=info["streamArn"],
                ShardId=info["shardId"],
                ShardIteratorType="AT_SEQUENCE_NUMBER",
                SequenceNumber=info["startSequenceNumber"],
            )["ShardIterator"]
            items: list[Mapping[str, Any]] = []
            while iterator:
                answer = self.streams.get_records(ShardIterator=iterator, Limit=1000)
                records = answer.get("Records", [])
                for record in records:
                    number = int(record["dynamodb"]["SequenceNumber"])
                    if number > end:
                        return items
                    image = record["dynamodb"].get("NewImage")
                    if start <= number and record.get("eventName") == "INSERT" and image and POSTBACKS in image:
                        items.append(image)
                if not records:
                    break
                iterator = answer.get("NextShardIterator")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _TRIMMED:
                return None
            raise
        return items or None

    def _from_table(self, info: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        """The conversions with postbacks recorded within the batch's arrival window."""
        first = parse_utc(info["approximateArrivalOfFirstRecord"]) - WINDOW_MARGIN
        last = parse_utc(info["approximateArrivalOfLastRecord"]) + WINDOW_MARGIN
        items: list[Mapping[str, Any]] = []
        request: dict[str, Any] = {
            "TableName": self.conversions_table,
            "FilterExpression": "received_at BETWEEN :first AND :last AND attribute_exists(#postbacks)",
            "ExpressionAttributeNames": {"#postbacks": POSTBACKS},
            # Written as `received_at` is, so that the bounds compare with it as text.
            "ExpressionAttributeValues": {":first": {"S": utc_exact(first)}, ":last": {"S": utc_exact(last)}},
        }
        while True:
            answer = self.dynamodb.scan(**request)
            items.extend(answer.get("Items", []))
            if "LastEvaluatedKey" not in answer:
                return items
            request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
