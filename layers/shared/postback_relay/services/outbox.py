"""The outbox: new conversion records from the conversions table's stream -> the postback queue.

Ingest writes each conversion with its rendered postback messages in one conditional put; the
table's stream (INSERT only, items that carry postbacks) brings each new record here, and
this use case sends the messages in groups of 10 (one SendMessageBatch each), across records.

Records are taken in stream order, and sending stops at the first record that cannot be read
or whose group the queue refuses (in part or whole): that record and every record after it
are reported failed. Lambda retries a stream batch from its first failed record (the shard's
checkpoint), so nothing after it is skipped. A message accepted on the failed try is sent again
on the next, with the same delivery ID: the dispatcher sends a delivered postback once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from postback_relay.domain.delivery import PostbackMessage
from postback_relay.ports import OutboxRecord, PostbackQueue

GROUP = 10  # messages per SendMessageBatch, SQS's limit


@dataclass(frozen=True)
class OutboxReport:
    """What one batch of stream records came to."""

    queued: int = 0  # messages the queue accepted
    failed: frozenset[str] = field(default_factory=frozenset)  # sequence numbers to retry
    reasons: tuple[str, ...] = ()  # why, for the log


class OutboxService:
    """Queues the postback messages of new conversion records."""

    def __init__(self, queue: PostbackQueue) -> None:
        self._queue = queue

    def relay(self, records: Sequence[OutboxRecord]) -> OutboxReport:
        """Send every record's messages, in order; report the records not wholly queued."""
        readable = records
        reasons: list[str] = []
        stop = next((index for index, record in enumerate(records) if record.unreadable is not None), None)
        if stop is not None:
            readable = records[:stop]
            reasons.append(f"conversion {records[stop].conversion_id}: {records[stop].unreadable}")

        pending: list[tuple[int, PostbackMessage]] = [
            (index, message) for index, record in enumerate(readable) for message in record.messages
        ]
        queued = 0
        for start in range(0, len(pending), GROUP):
            group = pending[start : start + GROUP]
            refused = {id(message) for message in self._queue.send([message for _, message in group])}
            queued += len(group) - len(refused)
            if refused:
                first = min(index for index, message in group if id(message) in refused)
                stop = first if stop is None else min(stop, first)
                reasons.append(f"the queue refused {len(refused)} of {len(group)} postbacks")
                break
        if stop is None:
            return OutboxReport(queued=queued)
        failed = frozenset(record.sequence_number for record in records[stop:])
        return OutboxReport(queued=queued, failed=failed, reasons=tuple(reasons))
