"""Lambda's SQS event source mapping, played locally.

Each poller thread receives up to the batch size within the batching window, invokes the
function with the `{"Records": [...]}` event Lambda builds, and then does what Lambda does
with the answer: with ReportBatchItemFailures it deletes only the records not listed in
`batchItemFailures` (an answer it cannot read fails the whole batch); without it, it deletes
the whole batch when the function returns. A function that raises deletes nothing. Messages
left undeleted come back when their visibility timeout ends, and the queue's RedrivePolicy
moves them to the dead-letter queue: the SQS server (moto) does both, as SQS does.
"""

from __future__ import annotations

import base64
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from postback_ops.local.runtime import LocalFunction

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

_MAX_RECEIVE = 10  # SQS's own limit per ReceiveMessage call


@dataclass(frozen=True)
class EventSourceMapping:
    """The SQS event of a function, with the template's settings."""

    queue_url: str
    queue_arn: str
    batch_size: int = 10
    batching_window_s: float = 0.0
    report_batch_item_failures: bool = False
    concurrency: int = 2


@dataclass(frozen=True)
class BatchOutcome:
    """What happened to one batch: the records sent, and those left on the queue."""

    records: Sequence[Mapping[str, Any]]
    failed_ids: frozenset[str]
    error: str | None = None  # the function raised or answered something unreadable

    @property
    def succeeded(self) -> list[Mapping[str, Any]]:
        return [r for r in self.records if r["messageId"] not in self.failed_ids]


def mapping_for(
    function: LocalFunction,
    *,
    resolve: Callable[[Any], Any],
    queue_url_for_arn: Callable[[str], str],
    concurrency: int = 2,
) -> list[EventSourceMapping]:
    """The SQS event source mappings the template declares on a function.

    `resolve` turns the template's intrinsics (`!GetAtt Queue.Arn`, `!Ref Parameter`) into values.
    """
    mappings = []
    for event in function.spec.events.values():
        if event.get("Type") != "SQS":
            continue
        props = event["Properties"]
        queue_arn = str(resolve(props["Queue"]))
        scaling = props.get("ScalingConfig") or {}
        maximum = int(resolve(scaling["MaximumConcurrency"])) if "MaximumConcurrency" in scaling else concurrency
        mappings.append(
            EventSourceMapping(
                queue_url=queue_url_for_arn(queue_arn),
                queue_arn=queue_arn,
                batch_size=int(resolve(props.get("BatchSize", 10))),
                batching_window_s=float(resolve(props.get("MaximumBatchingWindowInSeconds", 0))),
                report_batch_item_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
                concurrency=min(concurrency, maximum),
            )
        )
    return mappings


def to_lambda_record(message: Mapping[str, Any], *, queue_arn: str, region: str) -> dict[str, Any]:
    """One SQS message as Lambda puts it in an event's `Records`."""
    attributes = message.get("Attributes", {})
    message_attributes = {}
    for name, value in (message.get("MessageAttributes") or {}).items():
        binary = value.get("BinaryValue")
        message_attributes[name] = {
            "stringValue": value.get("StringValue"),
            "binaryValue": base64.b64encode(binary).decode() if binary is not None else None,
            "stringListValues": list(value.get("StringListValues", [])),
            "binaryListValues": [base64.b64encode(b).decode() for b in value.get("BinaryListValues", [])],
            "dataType": value["DataType"],
        }
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {
            key: str(attributes[key])
            for key in (
                "ApproximateReceiveCount",
                "SentTimestamp",
                "SenderId",
                "ApproximateFirstReceiveTimestamp",
                "MessageGroupId",
                "MessageDeduplicationId",
                "SequenceNumber",
            )
            if key in attributes
        },
        "messageAttributes": message_attributes,
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def failed_ids_from(answer: Any, records: Sequence[Mapping[str, Any]]) -> frozenset[str]:
    """The records a ReportBatchItemFailures answer leaves on the queue.

    Like Lambda: no answer or an empty list is full success; an entry whose itemIdentifier is
    missing, empty or not in the batch fails the whole batch.
    """
    all_ids = frozenset(r["messageId"] for r in records)
    if answer is None:
        return frozenset()
    if not isinstance(answer, dict):
        return all_ids
    failures = answer.get("batchItemFailures")
    if failures is None:
        return frozenset()
    if not isinstance(failures, list):
        return all_ids
    failed: set[str] = set()
    for entry in failures:
        identifier = entry.get("itemIdentifier") if isinstance(entry, dict) else None
        if not isinstance(identifier, str) or identifier not in all_ids:
            return all_ids
        failed.add(identifier)
    return frozenset(failed)


class SqsPoller:
    """Poll one queue for one function, in `mapping.concurrency` threads, until stopped."""

    def __init__(
        self,
        sqs: SQSClient,
        mapping: EventSourceMapping,
        invoke: Callable[[dict[str, Any]], Any],
        *,
        region: str,
        on_batch: Callable[[BatchOutcome], None] | None = None,
        max_wait_s: int = 1,
    ) -> None:
        self._sqs = sqs
        self.mapping = mapping
        self._invoke = invoke
        self._region = region
        self._on_batch = on_batch
        # Lambda long-polls 20 s; a short wait keeps stop() prompt and costs nothing on moto.
        self._max_wait_s = max_wait_s
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def pickup_s(self) -> float:
        """The longest a message that became visible waits before the function has it: the
        receive wait, then the batching window (local timing floors, ops/.../local/timing.py)."""
        return self._max_wait_s + self.mapping.batching_window_s

    def start(self) -> None:
        for index in range(max(1, self.mapping.concurrency)):
            thread = threading.Thread(target=self._run, name=f"sqs-poller-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout_s: float = 15.0) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=timeout_s)
        self._threads.clear()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                if self.poll_once() is None and self._max_wait_s == 0:
                    self._stopping.wait(0.05)  # short polling: do not spin on an empty queue
            except Exception:  # noqa: BLE001 - a poller survives a failed call, as Lambda's does
                if self._on_batch:
                    self._on_batch(BatchOutcome((), frozenset(), error=traceback.format_exc()))
                self._stopping.wait(1.0)

    def receive_batch(self) -> list[MessageTypeDef]:
        """Up to batch size messages: the first receive waits up to `max_wait_s` for any (none:
        an empty list), then the batching window, if any, is spent filling the batch."""
        messages: list[MessageTypeDef] = []
        deadline: float | None = None
        while len(messages) < self.mapping.batch_size and not self._stopping.is_set():
            if deadline is None:
                wait = self._max_wait_s
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                wait = min(self._max_wait_s, int(remaining))
            received = self._sqs.receive_message(
                QueueUrl=self.mapping.queue_url,
                MaxNumberOfMessages=min(_MAX_RECEIVE, self.mapping.batch_size - len(messages)),
                WaitTimeSeconds=wait,
                AttributeNames=["All"],
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            messages.extend(received)
            if not messages:
                break  # nothing this time: the caller polls again
            if deadline is None:
                if self.mapping.batching_window_s <= 0:
                    break
                deadline = time.monotonic() + self.mapping.batching_window_s
            elif not received and wait == 0:
                self._stopping.wait(min(0.05, max(0.0, deadline - time.monotonic())))
        return messages

    def poll_once(self) -> BatchOutcome | None:
        """Receive one batch, invoke the function, delete what succeeded."""
        messages = self.receive_batch()
        if not messages:
            return None
        records = [to_lambda_record(m, queue_arn=self.mapping.queue_arn, region=self._region) for m in messages]
        all_ids = frozenset(r["messageId"] for r in records)
        error: str | None = None
        try:
            answer = self._invoke({"Records": records})
        except Exception:  # noqa: BLE001 - a function error leaves the whole batch on the queue
            failed, error = all_ids, traceback.format_exc()
        else:
            if self.mapping.report_batch_item_failures:
                failed = failed_ids_from(answer, records)
                if not _well_formed(answer, all_ids):
                    error = f"unreadable batch answer, the whole batch stays on the queue: {answer!r:.200}"
            else:
                failed = frozenset()
        outcome = BatchOutcome(records, failed, error)
        self._delete(outcome.succeeded)
        if self._on_batch:
            self._on_batch(outcome)
        return outcome

    def _delete(self, records: Sequence[Mapping[str, Any]]) -> None:
        for start in range(0, len(records), _MAX_RECEIVE):
            chunk = records[start : start + _MAX_RECEIVE]
            self._sqs.delete_message_batch(
                QueueUrl=self.mapping.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": r["receiptHandle"]} for i, r in enumerate(chunk)],
            )


def _well_formed(answer: Any, ids: frozenset[str]) -> bool:
    if answer is None:
        return True
    if not isinstance(answer, dict):
        return False
    failures = answer.get("batchItemFailures")
    if failures is None:
        return True
    if not isinstance(failures, list):
        return False
    return all(isinstance(f, dict) and f.get("itemIdentifier") in ids for f in failures)
