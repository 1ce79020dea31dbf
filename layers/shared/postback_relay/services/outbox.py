"""The outbox: new conversion records from the conversions table's stream -> the postback queue.

Ingest writes each conversion with its rendered postback messages in one conditional put; the
table's stream (INSERT only, items that carry postbacks) brings each new record here, and
this use case sends the messages in groups of 10 (one SendMessageBatch each), across records.

A record whose messages cannot be read is parked first (its keys, the reason and its raw
image, where ops see it: `postback outbox parked`), and the batch carries on without it: a
poison record never holds back the good ones behind it. Retrying it would not help (the item
does not change), and Lambda would discard it, with every record after it in the batch, once
the retries ran out.

Records are taken in stream order, and sending stops at the first record that could not be
parked or whose group the queue refuses (in part or whole): that record and every record
after it are reported failed. Lambda retries a stream batch from its first failed record (the
shard's checkpoint), so nothing after it is skipped. A message accepted on the failed try is
sent again on the next, with the same delivery ID: the dispatcher sends a delivered postback
once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from postback_relay.domain.delivery import PostbackMessage
from postback_relay.domain.errors import InfrastructureError
from postback_relay.domain.records import OutboxRecord
from postback_relay.ports import ParkedRecords, PostbackQueue

GROUP = 10  # messages per SendMessageBatch, SQS's limit


@dataclass(frozen=True)
class OutboxReport:
    """What one batch of stream records came to."""

    queued: int = 0  # messages the queue accepted
    failed: frozenset[str] = field(default_factory=frozenset)  # sequence numbers to retry
    reasons: tuple[str, ...] = ()  # why, for the log
    parked: tuple[str, ...] = ()  # conversion IDs of the records parked as unreadable


class OutboxService:
    """Queues the postback messages of new conversion records; parks the unreadable ones."""

    def __init__(self, queue: PostbackQueue, parking: ParkedRecords) -> None:
        self._queue = queue
        self._parking = parking

    def relay(self, records: Sequence[OutboxRecord]) -> OutboxReport:
        """Park the unreadable records, send every other record's messages, in order; report
        the records not wholly queued (from the first one not parked or not queued)."""
        reasons: list[str] = []
        stop, parked = self._park(records, reasons)
        readable = [(index, record) for index, record in enumerate(records[:stop]) if record.unreadable is None]
        pending: list[tuple[int, PostbackMessage]] = [
            (index, message) for index, record in readable for message in record.messages
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
        failed = frozenset(record.sequence_number for record in records[stop:]) if stop is not None else frozenset()
        return OutboxReport(queued=queued, failed=failed, reasons=tuple(reasons), parked=parked)

    def _park(self, records: Sequence[OutboxRecord], reasons: list[str]) -> tuple[int | None, tuple[str, ...]]:
        """Parks the unreadable records: (the index of the first one not parked, or None; the
        conversion IDs parked)."""
        unreadable = [record for record in records if record.unreadable is not None]
        if not unreadable:
            return None, ()
        try:
            left = {id(record) for record in self._parking.park(unreadable)}
        except InfrastructureError as exc:
            left = {id(record) for record in unreadable}
            reasons.append(f"parking failed: {exc}")
        for record in unreadable:
            outcome = "not parked" if id(record) in left else "parked"
            reasons.append(f"conversion {record.conversion_id}: {record.unreadable} ({outcome})")
        stop = next((index for index, record in enumerate(records) if id(record) in left), None)
        return stop, tuple(record.conversion_id for record in unreadable if id(record) not in left)
