"""Lambda's DynamoDB Streams event source mapping, played locally (beside poller.py's SQS one).

One thread per mapping reads the table's stream (DescribeStream, GetShardIterator, GetRecords:
moto serves them) and does what Lambda does with a shard, as the template's `Type: DynamoDB`
event sets it:

- FilterCriteria: a record no filter pattern matches is skipped (and counts as processed).
- BatchSize and MaximumBatchingWindowInSeconds: a batch waits for more records up to the window.
- The batch is handed to the function as `{"Records": [...]}`, records as Lambda shapes them
  (ApproximateCreationDateTime in unix seconds, eventSourceARN set).
- ReportBatchItemFailures: the shard's checkpoint moves to the first failed record, and the
  batch is retried from there. Without it, or when the function raises or answers something
  unreadable, the whole batch is retried.
- BisectBatchOnFunctionError: a function error splits the batch in two; the first half is
  retried alone (a split does not count as a retry).
- MaximumRetryAttempts and MaximumRecordAgeInSeconds: the records retried past them, or older
  than the age when a batch is read, are discarded, and a record describing them (shard,
  first and last sequence numbers, arrival times, batch size) goes to the on-failure
  destination (an SQS queue), as Lambda writes it.

`clock` is the poller's idea of now (unix seconds): tests move it forward to age records.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from postback_ops.local.poller import failed_ids_from
from postback_ops.local.runtime import LocalFunction
from postback_relay.domain.times import utc_seconds

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

RECORD_AGE_EXCEEDED = "RecordAgeExceeded"  # the condition the local stack writes for an expired record
RETRIES_EXHAUSTED = "RetryAttemptsExhausted"
_GET_RECORDS_LIMIT = 1000  # DynamoDB Streams' own limit per GetRecords call


@dataclass(frozen=True)
class StreamMapping:
    """The DynamoDB stream event of a function, with the template's settings."""

    stream_arn: str
    function_arn: str = ""
    batch_size: int = 100
    batching_window_s: float = 0.0
    report_batch_item_failures: bool = False
    bisect_on_function_error: bool = False
    maximum_record_age_s: int = -1  # -1: no limit
    maximum_retry_attempts: int = -1  # -1: no limit
    filter_patterns: tuple[Mapping[str, Any], ...] = ()
    on_failure_queue_url: str | None = None
    starting_position: str = "TRIM_HORIZON"


@dataclass(frozen=True)
class StreamBatchOutcome:
    """What happened to one batch: the records handed over, those to retry, those discarded."""

    records: Sequence[Mapping[str, Any]]
    failed: frozenset[str] = frozenset()  # sequence numbers the function reported (or all, on error)
    error: str | None = None
    discarded: tuple[Mapping[str, Any], ...] = ()  # on-failure records sent for this batch


def stream_mappings_for(
    function: LocalFunction,
    *,
    resolve: Callable[[Any], Any],
    queue_url_for_arn: Callable[[str], str],
) -> list[StreamMapping]:
    """The DynamoDB stream event source mappings the template declares on a function."""
    return [
        stream_mapping(
            event["Properties"], function_arn=function.arn, resolve=resolve, queue_url_for_arn=queue_url_for_arn
        )
        for event in function.spec.events.values()
        if event.get("Type") == "DynamoDB"
    ]


def stream_mapping(
    props: Mapping[str, Any],
    *,
    function_arn: str,
    resolve: Callable[[Any], Any],
    queue_url_for_arn: Callable[[str], str],
) -> StreamMapping:
    """One `Type: DynamoDB` event's properties as a mapping. `resolve` turns the template's
    intrinsics (`!GetAtt Table.StreamArn`) into values."""
    patterns = tuple(
        json.loads(str(resolve(entry["Pattern"]))) for entry in (props.get("FilterCriteria") or {}).get("Filters", [])
    )
    destination = ((props.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
    return StreamMapping(
        stream_arn=str(resolve(props["Stream"])),
        function_arn=function_arn,
        batch_size=int(resolve(props.get("BatchSize", 100))),
        batching_window_s=float(resolve(props.get("MaximumBatchingWindowInSeconds", 0))),
        report_batch_item_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
        bisect_on_function_error=bool(resolve(props.get("BisectBatchOnFunctionError", False))),
        maximum_record_age_s=int(resolve(props.get("MaximumRecordAgeInSeconds", -1))),
        maximum_retry_attempts=int(resolve(props.get("MaximumRetryAttempts", -1))),
        filter_patterns=patterns,
        on_failure_queue_url=queue_url_for_arn(str(resolve(destination))) if destination else None,
        starting_position=str(resolve(props.get("StartingPosition", "TRIM_HORIZON"))),
    )


def matches(pattern: Any, value: Any) -> bool:
    """Lambda's event filtering (the EventBridge pattern subset the template uses): nested
    objects, lists of accepted literal values, and `{"exists": true|false}`."""
    if isinstance(pattern, dict):
        if not isinstance(value, dict):
            return False
        for key, sub_pattern in pattern.items():
            if isinstance(sub_pattern, list) and any(isinstance(c, dict) and "exists" in c for c in sub_pattern):
                wanted = next(c["exists"] for c in sub_pattern if isinstance(c, dict) and "exists" in c)
                if (key in value and not isinstance(value[key], (dict, list))) != bool(wanted):
                    return False
                continue
            if key not in value or not matches(sub_pattern, value[key]):
                return False
        return True
    if isinstance(pattern, list):
        return value in pattern
    return bool(pattern == value)


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


def _arrival(epoch: float) -> str:
    """An approximate arrival time as this emulation writes it to the failure record: whole seconds."""
    return utc_seconds(datetime.fromtimestamp(epoch, UTC))


def to_lambda_record(record: Mapping[str, Any], *, stream_arn: str, region: str) -> dict[str, Any]:
    """One GetRecords record as Lambda puts it in an event's `Records`."""
    change = dict(record["dynamodb"])
    if "ApproximateCreationDateTime" in change:
        change["ApproximateCreationDateTime"] = _epoch(change["ApproximateCreationDateTime"])
    lambda_record = {key: value for key, value in record.items() if key != "dynamodb"}
    lambda_record.update({"dynamodb": change, "eventSourceARN": stream_arn, "awsRegion": region})
    return lambda_record


@dataclass
class _Shard:
    shard_id: str
    iterator: str | None
    pending: list[dict[str, Any]] = field(default_factory=list)  # read, not yet checkpointed
    retries: int = 0  # failed tries of the batch at the head of `pending`
    invokes: int = 0
    limit: int = 0  # the batch size now (bisect halves it)
    last_read: int = -1  # the sequence number of the last record read


def _after(last: int, record: Mapping[str, Any]) -> int:
    """The record's sequence number, which must follow `last`: DynamoDB Streams numbers each
    record of a shard once, increasing. A record served again would be read for ever (moto's
    unpatched stream can do it: `postback_ops.local.moto_patches`), so it stops the reader."""
    number = int(record["dynamodb"]["SequenceNumber"])
    if number <= last:
        raise RuntimeError(
            f"the stream served sequence number {number} after {last}; a shard numbers each record"
            " once, increasing (is moto's stream patched? see postback_ops.local.moto_patches)"
        )
    return number


class StreamPoller:
    """Play one mapping on one table stream, in one thread (a shard's batches go in order)."""

    def __init__(
        self,
        streams: Any,  # a boto3 dynamodbstreams client (no stubs are pinned for it)
        mapping: StreamMapping,
        invoke: Callable[[dict[str, Any]], Any],
        *,
        region: str,
        sqs: SQSClient | None = None,
        on_batch: Callable[[StreamBatchOutcome], None] | None = None,
        clock: Callable[[], float] = time.time,
        poll_interval_s: float = 0.25,  # Lambda polls a shard 4 times a second
    ) -> None:
        self._streams = streams
        self.mapping = mapping
        self._invoke = invoke
        self._region = region
        self._sqs = sqs
        self._on_batch = on_batch
        self.clock = clock
        self._poll_interval_s = poll_interval_s
        self._shards: dict[str, _Shard] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.discarded: list[dict[str, Any]] = []  # every on-failure record, in order

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="stream-poller", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 15.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
            self._thread = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                if self.poll_once() is None:
                    self._stopping.wait(self._poll_interval_s)
            except Exception:  # noqa: BLE001 - a poller survives a failed call, as Lambda's does
                if self._on_batch:
                    self._on_batch(StreamBatchOutcome((), error=traceback.format_exc()))
                self._stopping.wait(1.0)

    # --- reading the stream -----------------------------------------------------------------

    def _shard_list(self) -> list[_Shard]:
        description = self._streams.describe_stream(StreamArn=self.mapping.stream_arn)["StreamDescription"]
        for shard in description.get("Shards", []):
            shard_id = shard["ShardId"]
            if shard_id not in self._shards:
                iterator = self._streams.get_shard_iterator(
                    StreamArn=self.mapping.stream_arn,
                    ShardId=shard_id,
                    ShardIteratorType=self.mapping.starting_position,
                )["ShardIterator"]
                self._shards[shard_id] = _Shard(shard_id, iterator, limit=self.mapping.batch_size)
        return list(self._shards.values())

    def _read(self, shard: _Shard) -> None:
        """Append what the shard holds past its iterator, filtered."""
        while shard.iterator:
            answer = self._streams.get_records(ShardIterator=shard.iterator, Limit=_GET_RECORDS_LIMIT)
            shard.iterator = answer.get("NextShardIterator")
            records = answer.get("Records", [])
            for record in records:
                shard.last_read = _after(shard.last_read, record)
                lambda_record = to_lambda_record(dict(record), stream_arn=self.mapping.stream_arn, region=self._region)
                if not self.mapping.filter_patterns or any(
                    matches(pattern, lambda_record) for pattern in self.mapping.filter_patterns
                ):
                    shard.pending.append(lambda_record)
            if not records:
                return

    def _fill(self, shard: _Shard) -> None:
        """Read until the batch is full or the batching window is spent."""
        self._read(shard)
        if not shard.pending or self.mapping.batching_window_s <= 0:
            return
        deadline = time.monotonic() + self.mapping.batching_window_s
        while len(shard.pending) < shard.limit and not self._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._stopping.wait(min(self._poll_interval_s, remaining))
            self._read(shard)

    # --- one batch ----------------------------------------------------------------------------

    def poll_once(self) -> StreamBatchOutcome | None:
        """Read, invoke one batch of the first shard holding records, and checkpoint."""
        for shard in self._shard_list():
            if not shard.pending:
                self._fill(shard)
            elif len(shard.pending) < shard.limit:
                self._read(shard)
            if shard.pending:
                outcome = self._run_batch(shard)
                if self._on_batch:
                    self._on_batch(outcome)
                return outcome
        return None

    def _run_batch(self, shard: _Shard) -> StreamBatchOutcome:
        discarded: list[dict[str, Any]] = []
        expired = self._expired_prefix(shard)
        if expired:
            discarded.append(self._discard(shard, expired, RECORD_AGE_EXCEEDED, function_error=None))
            if not shard.pending:
                return StreamBatchOutcome((), discarded=tuple(discarded))
        batch = shard.pending[: shard.limit]
        sequence_numbers = [r["dynamodb"]["SequenceNumber"] for r in batch]
        shard.invokes += 1
        error: str | None = None
        try:
            answer = self._invoke({"Records": batch})
        except Exception:  # noqa: BLE001 - a function error: the batch is retried (or split)
            error = traceback.format_exc()
            return self._function_error(shard, batch, error, discarded)
        if not self.mapping.report_batch_item_failures:
            failed: frozenset[str] = frozenset()
        else:
            by_id = [{"messageId": number} for number in sequence_numbers]
            failed = failed_ids_from(answer, by_id)
            if failed == frozenset(sequence_numbers) and not _lists_each(answer, failed):
                error = f"unreadable batch answer, the whole batch is retried: {answer!r:.200}"
        if not failed:
            del shard.pending[: len(batch)]
            shard.retries, shard.invokes, shard.limit = 0, 0, self.mapping.batch_size
            return StreamBatchOutcome(batch, discarded=tuple(discarded))
        # The checkpoint moves to the first failed record; the batch is retried from it.
        first = min(sequence_numbers.index(number) for number in failed)
        del shard.pending[:first]
        if first > 0:
            shard.retries = 0
        shard.retries += 1
        if 0 <= self.mapping.maximum_retry_attempts < shard.retries:
            discarded.append(
                self._discard(
                    shard, batch[first:], RETRIES_EXHAUSTED, function_error=None if not error else "Unhandled"
                )
            )
        return StreamBatchOutcome(batch, failed, error, tuple(discarded))

    def _function_error(
        self, shard: _Shard, batch: list[dict[str, Any]], error: str, discarded: list[dict[str, Any]]
    ) -> StreamBatchOutcome:
        failed = frozenset(r["dynamodb"]["SequenceNumber"] for r in batch)
        if self.mapping.bisect_on_function_error and len(batch) > 1:
            shard.limit = max(1, len(batch) // 2)  # a split is not a retry
            return StreamBatchOutcome(batch, failed, error, tuple(discarded))
        shard.retries += 1
        if 0 <= self.mapping.maximum_retry_attempts < shard.retries:
            discarded.append(self._discard(shard, batch, RETRIES_EXHAUSTED, function_error="Unhandled"))
        return StreamBatchOutcome(batch, failed, error, tuple(discarded))

    def _expired_prefix(self, shard: _Shard) -> list[dict[str, Any]]:
        if self.mapping.maximum_record_age_s < 0:
            return []
        now = self.clock()
        expired = []
        for record in shard.pending:
            created = record["dynamodb"].get("ApproximateCreationDateTime")
            if created is None or now - float(created) <= self.mapping.maximum_record_age_s:
                break
            expired.append(record)
        return expired

    def _discard(
        self, shard: _Shard, records: list[dict[str, Any]], condition: str, *, function_error: str | None
    ) -> dict[str, Any]:
        """Drop `records` (the head of the shard's pending records) and write what Lambda writes
        to the on-failure destination about them."""
        del shard.pending[: len(records)]
        created = [float(r["dynamodb"].get("ApproximateCreationDateTime", self.clock())) for r in records]
        response: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
        if function_error:
            response["functionError"] = function_error
        failure = {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": self.mapping.function_arn,
                "condition": condition,
                "approximateInvokeCount": shard.invokes,
            },
            "responseContext": response,
            "version": "1.0",
            "timestamp": datetime.fromtimestamp(self.clock(), UTC).isoformat(timespec="milliseconds"),
            "DDBStreamBatchInfo": {
                "shardId": shard.shard_id,
                "startSequenceNumber": records[0]["dynamodb"]["SequenceNumber"],
                "endSequenceNumber": records[-1]["dynamodb"]["SequenceNumber"],
                "approximateArrivalOfFirstRecord": _arrival(min(created)),
                "approximateArrivalOfLastRecord": _arrival(max(created)),
                "batchSize": len(records),
                "streamArn": self.mapping.stream_arn,
            },
        }
        shard.retries, shard.invokes, shard.limit = 0, 0, self.mapping.batch_size
        self.discarded.append(failure)
        if self._sqs is not None and self.mapping.on_failure_queue_url:
            self._sqs.send_message(QueueUrl=self.mapping.on_failure_queue_url, MessageBody=json.dumps(failure))
        return failure


def _lists_each(answer: Any, failed: frozenset[str]) -> bool:
    """Whether a ReportBatchItemFailures answer names each of `failed` itself."""
    if not isinstance(answer, dict) or not isinstance(answer.get("batchItemFailures"), list):
        return False
    named = {f.get("itemIdentifier") for f in answer["batchItemFailures"] if isinstance(f, dict)}
    return failed <= named
