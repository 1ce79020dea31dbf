"""Queue again the postbacks of stream batches the outbox gave up on (`postback outbox recover`).

Lambda writes one message to the OutboxFailureQueue per batch it discarded (retries or record
age exhausted). The message names the stream, the shard, the first and last sequence numbers
and the batch's size, not the conversions. The conversions are still in ConversionsTable, each
with its postbacks' messages, so recovery needs only to find them:

1. While the stream still holds the records (DynamoDB Streams keeps 24 hours; the mapping
   gives up after MaximumRecordAgeInSeconds), read the shard from the first sequence number
   until a record at or past the last one, or until the shard closes (no NextShardIterator).
   A page may be empty while records follow: AWS's GetRecords reference says "If there are no
   stream records available in the portion of the shard that the iterator points to,
   GetRecords returns an empty list. Note that it might take multiple calls to get to a
   portion of the shard that contains stream records." So an empty page never ends the read;
   `max_pages` GetRecords calls per range do (the range is then reported unfinished). The new
   images of the range's INSERT records that carry postbacks are the conversion records.
2. Past that, the records are trimmed: the conversions recorded within the batch's arrival
   window (a minute of margin either side) are read from the table instead (a Scan with a
   filter on `received_at`: it reads the whole table, so it is the slow, rare path). It may
   find conversions that were queued already.

Their messages go to the postback queue again (SendMessageBatch, 10 at a time). A postback
queued twice is still sent once: the dispatcher finds a delivered one in the delivery log.

A failure message is deleted only when its range was read to the end, as many conversions
were found as the batch held (`batchSize`), each was readable, and the queue took every
message. Otherwise it stays (visible again at once, for the next run) and the batch says what
is missing. One failure message that cannot be handled (unreadable, an AWS error) is reported
with its error; the others are still recovered.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from postback_relay.adapters.dynamodb_conversions import POSTBACKS, messages_of_item
from postback_relay.domain.delivery import PostbackMessage
from postback_relay.domain.errors import DomainError
from postback_relay.domain.records import OutboxRecord
from postback_relay.domain.times import parse_utc, utc_exact
from postback_relay.ports import ParkedRecords, PostbackQueue

WINDOW_MARGIN = timedelta(minutes=1)
MAX_PAGES = 1000  # GetRecords calls per range before the range is reported unfinished
_TRIMMED = ("TrimmedDataAccessException", "ResourceNotFoundException", "ValidationException")
# What one failure message's recovery may raise; it is reported on that batch, the run goes on.
_ITEM_ERRORS = (ClientError, BotoCoreError, DomainError, KeyError, ValueError, TypeError)


def received(sqs: Any, queue_url: str, limit: int) -> Iterator[tuple[str, str]]:
    """(receipt handle, body) of up to `limit` messages, each hidden 5 minutes while handled."""
    seen = 0
    while seen < limit:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=300).get("Messages", [])
        if not got:
            return
        for message in got:
            seen += 1
            yield message["ReceiptHandle"], message["Body"]


def release(sqs: Any, queue_url: str, receipt_handles: list[str]) -> None:
    """Messages kept for a later run: visible again at once."""
    for receipt_handle in receipt_handles:
        sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=0)


@dataclass
class RecoveredBatch:
    """One failure message and what came of it."""

    shard_id: str
    start_sequence_number: str
    end_sequence_number: str
    condition: str
    batch_size: int = 0  # conversions the batch held (the failure message's batchSize)
    source: str = ""  # "stream" or "table"
    conversions: list[str] = field(default_factory=list)
    parked: list[str] = field(default_factory=list)  # unreadable conversions, parked for `outbox parked`
    postbacks: int = 0
    refused: int = 0
    get_records_calls: int = 0
    empty_pages: int = 0
    missing: list[str] = field(default_factory=list)  # why the failure message stays
    error: str = ""  # the failure message could not be handled at all
    deleted: bool = False

    @property
    def whole(self) -> bool:
        """Every conversion of the range found and every message queued."""
        return not self.missing and not self.error


@dataclass
class StreamRange:
    """What reading one range of a shard found."""

    images: list[Mapping[str, Any]] = field(default_factory=list)
    finished: bool = False  # a record at or past the end was read, or the shard closed
    calls: int = 0
    empty_pages: int = 0
    last_read: str = ""  # the last sequence number read


@dataclass
class OutboxRecovery:
    """Reads the on-failure queue, finds each batch's conversions, queues their postbacks."""

    dynamodb: Any
    streams: Any
    sqs: Any
    conversions_table: str
    failure_queue_url: str
    queue: PostbackQueue
    max_pages: int = MAX_PAGES
    parking: ParkedRecords | None = None  # where an unreadable conversion is parked

    def recover(self, *, dry_run: bool = False, max_batches: int = 1000) -> list[RecoveredBatch]:
        batches: list[RecoveredBatch] = []
        kept: list[str] = []  # failure messages left for a later run, shown again at the end
        for receipt_handle, body in received(self.sqs, self.failure_queue_url, max_batches):
            batch = self._recover_one(body, dry_run=dry_run)
            if not dry_run and batch.whole:
                self.sqs.delete_message(QueueUrl=self.failure_queue_url, ReceiptHandle=receipt_handle)
                batch.deleted = True
            else:
                kept.append(receipt_handle)
            batches.append(batch)
        release(self.sqs, self.failure_queue_url, kept)
        return batches

    def _recover_one(self, body: str, *, dry_run: bool) -> RecoveredBatch:
        """One failure message; an error is reported on it, never raised."""
        try:
            failure = json.loads(body)
            info = failure["DDBStreamBatchInfo"]
            batch = RecoveredBatch(
                shard_id=str(info["shardId"]),
                start_sequence_number=str(info["startSequenceNumber"]),
                end_sequence_number=str(info["endSequenceNumber"]),
                condition=str(failure.get("requestContext", {}).get("condition", "")),
                batch_size=int(info.get("batchSize", 0)),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return RecoveredBatch("?", "?", "?", "", error=f"not a stream batch's failure message: {exc!r}")
        try:
            self._find_and_queue(batch, info, dry_run=dry_run)
        except _ITEM_ERRORS as exc:
            batch.error = f"{type(exc).__name__}: {exc}"
        return batch

    def _find_and_queue(self, batch: RecoveredBatch, info: Mapping[str, Any], *, dry_run: bool) -> None:
        found = self._from_stream(info)
        items: list[Mapping[str, Any]] = []
        if found is not None:
            batch.source = "stream"
            batch.get_records_calls, batch.empty_pages = found.calls, found.empty_pages
            items = found.images
            if not found.finished:
                batch.missing.append(
                    f"the stream was read through {found.calls} GetRecords calls ({found.empty_pages} empty pages)"
                    f" up to sequence number {found.last_read or batch.start_sequence_number}, short of"
                    f" {batch.end_sequence_number}: run it again"
                )
        if found is None or (found.finished and not items):
            batch.source = "table"
            items = self._from_table(info)
        messages = self._messages(batch, items, dry_run=dry_run)
        accounted = len(batch.conversions) + len(batch.parked)
        if accounted < batch.batch_size:
            batch.missing.append(
                f"{batch.batch_size - accounted} of the batch's {batch.batch_size} conversions not found"
            )
        batch.postbacks = len(messages)
        if messages and not dry_run:
            batch.refused = len(self.queue.send(messages))
            if batch.refused:
                batch.missing.append(f"the queue refused {batch.refused} of {batch.postbacks} postbacks: run it again")

    def _messages(
        self, batch: RecoveredBatch, items: list[Mapping[str, Any]], *, dry_run: bool
    ) -> list[PostbackMessage]:
        """Each readable item's messages. An unreadable one is parked, as the outbox parks it
        (`postback outbox parked`: fix the item, re-queue), or, with no parking or when parking
        fails, named in `missing`."""
        messages: list[PostbackMessage] = []
        unreadable: list[OutboxRecord] = []
        for item in items:
            conversion_id = str(item.get("conversion_id", {}).get("S", "?"))
            try:
                messages.extend(messages_of_item(item))
            except (ValueError, ValidationError, TypeError) as exc:
                reason = f"its postbacks cannot be read ({exc})"[:300]
                unreadable.append(OutboxRecord("", conversion_id, unreadable=reason, image=json.dumps(item)))
                continue
            batch.conversions.append(conversion_id)
        left = unreadable
        if unreadable and self.parking is not None and not dry_run:
            left = self.parking.park(unreadable)
            batch.parked.extend(r.conversion_id for r in unreadable if r not in left)
        batch.missing.extend(f"conversion {r.conversion_id}: {r.unreadable}" for r in left)
        return messages

    def _from_stream(self, info: Mapping[str, Any]) -> StreamRange | None:
        """The range's records, read through empty pages; None when the stream no longer has them."""
        end = int(info["endSequenceNumber"])
        found = StreamRange()
        try:
            iterator = self.streams.get_shard_iterator(
                StreamArn=info["streamArn"],
                ShardId=info["shardId"],
                ShardIteratorType="AT_SEQUENCE_NUMBER",
                SequenceNumber=info["startSequenceNumber"],
            )["ShardIterator"]
            while iterator and found.calls < self.max_pages:
                answer = self.streams.get_records(ShardIterator=iterator, Limit=1000)
                found.calls += 1
                records = answer.get("Records", [])
                found.empty_pages += not records
                if self._take(records, end, found):
                    found.finished = True
                    return found
                iterator = answer.get("NextShardIterator")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _TRIMMED:
                return None
            raise
        found.finished = not iterator  # the shard closed: nothing follows
        return found

    @staticmethod
    def _take(records: list[Mapping[str, Any]], end: int, found: StreamRange) -> bool:
        """Adds the page's outbox records up to `end`; True once a record at or past it is read."""
        for record in records:
            number = record["dynamodb"]["SequenceNumber"]
            found.last_read = str(number)
            if int(number) > end:
                return True
            image = record["dynamodb"].get("NewImage")
            if record.get("eventName") == "INSERT" and image and POSTBACKS in image:
                found.images.append(image)
            if int(number) == end:
                return True
        return False

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


# --- parked records (`postback outbox parked`) ------------------------------------------------


@dataclass
class ParkedRecord:
    """One record the outbox parked, and what came of it."""

    conversion_id: str
    sequence_number: str
    reason: str  # why the outbox could not read it
    image_cut: bool = False  # the parked image was cut to fit the message
    now: str = ""  # what the table holds now (with --requeue): readable, or why not
    postbacks: int = 0
    refused: int = 0
    requeued: bool = False  # its postbacks were queued and the parked message deleted


@dataclass
class ParkedRecovery:
    """Shows the OutboxParkedQueue; with `requeue`, reads each parked conversion from the table
    again and, once it is readable (fixed), queues its postbacks and deletes the parked message."""

    dynamodb: Any
    sqs: Any
    conversions_table: str
    parked_queue_url: str
    queue: PostbackQueue

    def run(self, *, requeue: bool = False, max_records: int = 1000) -> list[ParkedRecord]:
        records: list[ParkedRecord] = []
        kept: list[str] = []
        for receipt_handle, body in received(self.sqs, self.parked_queue_url, max_records):
            record = self._parked(body)
            if requeue and record.conversion_id:
                self._requeue(record)
            if record.requeued:
                self.sqs.delete_message(QueueUrl=self.parked_queue_url, ReceiptHandle=receipt_handle)
            else:
                kept.append(receipt_handle)
            records.append(record)
        release(self.sqs, self.parked_queue_url, kept)
        return records

    @staticmethod
    def _parked(body: str) -> ParkedRecord:
        try:
            document = json.loads(body)
            return ParkedRecord(
                conversion_id=str(document["conversion_id"]),
                sequence_number=str(document.get("sequence_number", "")),
                reason=str(document.get("reason", "")),
                image_cut=bool(document.get("image_cut", False)),
            )
        except (ValueError, KeyError, TypeError) as exc:
            return ParkedRecord("", "", f"not a parked record: {exc!r}")

    def _requeue(self, record: ParkedRecord) -> None:
        """Queues the conversion's postbacks if the table's item is readable now; says why not."""
        try:
            answer = self.dynamodb.get_item(
                TableName=self.conversions_table,
                Key={"conversion_id": {"S": record.conversion_id}},
                ConsistentRead=True,
            )
            item = answer.get("Item")
            if item is None:
                record.now = "not in the conversions table"
                return
            messages = messages_of_item(item)
            record.now = "readable"
            record.postbacks = len(messages)
            record.refused = len(self.queue.send(messages)) if messages else 0
        except (ValueError, ValidationError, TypeError) as exc:
            record.now = f"still unreadable: {exc}"[:300]
            return
        except _ITEM_ERRORS as exc:
            record.now = f"{type(exc).__name__}: {exc}"[:300]
            return
        record.requeued = record.refused == 0
        if record.refused:
            record.now = f"the queue refused {record.refused} of {record.postbacks} postbacks: run it again"
