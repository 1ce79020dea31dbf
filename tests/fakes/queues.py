"""The postback queue as ingest and the outbox fill it, and as the dispatcher steers it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from postback_relay.domain.delivery import PostbackMessage
from postback_relay.domain.errors import InfrastructureError
from postback_relay.domain.records import OutboxRecord
from postback_relay.ports import ParkedRecords, PostbackQueue, RetryControl


class FakePostbackQueue(PostbackQueue):
    """PostbackQueue in a list. `refuse` decides per message whether the queue refuses it;
    `down` makes `send` raise InfrastructureError."""

    def __init__(self) -> None:
        self.sent: list[PostbackMessage] = []
        self.calls = 0
        self.down = False
        self.refuse: Callable[[PostbackMessage], bool] = lambda message: False

    def send(self, messages: Sequence[PostbackMessage]) -> list[PostbackMessage]:
        self.calls += 1
        if self.down:
            raise InfrastructureError("the queue is down")
        refused = [message for message in messages if self.refuse(message)]
        self.sent.extend(message for message in messages if not self.refuse(message))
        return refused


@dataclass
class FakeParkedRecords(ParkedRecords):
    """The outbox's parking in a list. `refuse` decides per record whether parking fails for
    it; `down` makes `park` raise InfrastructureError."""

    parked: list[OutboxRecord] = field(default_factory=list)
    down: bool = False
    refuse: Callable[[OutboxRecord], bool] = lambda record: False

    def park(self, records: Sequence[OutboxRecord]) -> list[OutboxRecord]:
        if self.down:
            raise InfrastructureError("the parking queue is down")
        self.parked.extend(record for record in records if not self.refuse(record))
        return [record for record in records if self.refuse(record)]


@dataclass
class FakeRetryControl(RetryControl):
    """The queue as the dispatcher steers it: delayed copies, visibility changes, the DLQ.
    `refuse_requeue` plays SQS refusing the copy (the dispatcher falls back to visibility)."""

    requeued: list[tuple[str, int]] = field(default_factory=list)  # (body, DelaySeconds)
    delays: list[tuple[str, int]] = field(default_factory=list)
    dead_letters: list[tuple[str, str, str | None]] = field(default_factory=list)
    refuse_requeue: bool = False

    def requeue(self, body: str, *, delay_s: int) -> None:
        if self.refuse_requeue:
            raise InfrastructureError("SQS refused the copy")
        assert 0 <= delay_s <= 900, delay_s  # SQS's DelaySeconds range
        self.requeued.append((body, delay_s))

    def delay(self, receipt_handle: str, seconds: int) -> None:
        assert 0 <= seconds <= 43_200, seconds
        self.delays.append((receipt_handle, seconds))

    def copies(self) -> list[PostbackMessage]:
        return [PostbackMessage.model_validate_json(body) for body, _ in self.requeued]

    def dead_letter(self, body: str, *, reason: str, delivery_id: str | None) -> None:
        self.dead_letters.append((body, reason, delivery_id))
