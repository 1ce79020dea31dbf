"""In-memory fakes of the dispatcher's ports (unit tests of services.dispatch and replay)."""

from __future__ import annotations

import threading
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pytest

from postback_relay.domain.delivery import Attempt, Circuit, CircuitStatus, DeliveryRef, DeliveryState, PostbackMessage
from postback_relay.domain.errors import ConflictError, InfrastructureError
from postback_relay.ports import DeliveryRecord, SendResult


class FakeDeliveryLog:
    """The DeliveryLog port, with the same 'never touch a delivered one' condition."""

    def __init__(self) -> None:
        self.records: dict[str, DeliveryRecord] = {}
        self.reads = 0
        self._lock = threading.Lock()

    def get(self, ref: DeliveryRef) -> DeliveryRecord | None:
        self.reads += 1
        # As DynamoDB addresses the item: the whole key (affiliate, created_at, ID) must match.
        record = self.records.get(ref.delivery_id)
        return record if record is not None and record.ref.sort_key == ref.sort_key else None

    def record_attempt(
        self, message: PostbackMessage, attempt: Attempt, state: DeliveryState, *, reason: str | None = None
    ) -> None:
        with self._lock:
            current = self._writable(message)
            self.records[message.delivery_id] = replace(
                current, state=state, attempts=(*current.attempts, attempt), last_error=reason
            )

    def mark_deferred(self, message: PostbackMessage, *, reason: str) -> None:
        with self._lock:
            current = self._writable(message)
            self.records[message.delivery_id] = replace(current, state=DeliveryState.PENDING, last_error=reason)

    def mark_replayed(self, ref: DeliveryRef) -> None:
        delivery_id = ref.delivery_id
        with self._lock:
            current = self.records[delivery_id]
            assert current.ref == ref
            if current.state is not DeliveryState.FAILED:
                raise ConflictError("not failed")
            self.records[delivery_id] = replace(
                current, state=DeliveryState.PENDING, replays=current.replays + 1, last_error=None
            )

    def failed(self, *, affiliate_id: str | None = None, transaction_id: str | None = None) -> list[DeliveryRecord]:
        return [
            r
            for r in self.records.values()
            if r.state is DeliveryState.FAILED
            and affiliate_id in (None, r.message.affiliate_id)
            and transaction_id in (None, r.message.transaction_id)
        ]

    def by_affiliate(self, affiliate_id: str, *, limit: int = 100) -> list[DeliveryRecord]:
        return [r for r in self.records.values() if r.message.affiliate_id == affiliate_id][:limit]

    def created_since(self, affiliate_id: str, since: datetime) -> list[DeliveryRecord]:
        return [r for r in self.records.values() if r.message.affiliate_id == affiliate_id]

    def by_transaction(self, transaction_id: str, *, limit: int = 100) -> list[DeliveryRecord]:
        return [r for r in self.records.values() if r.message.transaction_id == transaction_id][:limit]

    def _writable(self, message: PostbackMessage) -> DeliveryRecord:
        current = self.records.get(message.delivery_id)
        if current is None:
            return DeliveryRecord(message.delivery_id, message, DeliveryState.PENDING, (), "now", "now")
        if current.state is DeliveryState.DELIVERED:
            raise ConflictError("delivered already")
        return current


@dataclass
class FakeRetryControl:
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


@dataclass
class FakeEndpointStore:
    circuits: dict[str, Circuit] = field(default_factory=dict)
    reads: int = 0
    writes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, endpoint: str) -> Circuit | None:
        self.reads += 1
        return self.circuits.get(endpoint)

    def save(
        self,
        circuit: Circuit,
        *,
        expected_opened_until: float | None = None,
        only_from: Collection[CircuitStatus] | None = None,
    ) -> bool:
        with self._lock:
            return self._save(circuit, expected_opened_until, only_from)

    def _save(
        self, circuit: Circuit, expected_opened_until: float | None, only_from: Collection[CircuitStatus] | None
    ) -> bool:
        current = self.circuits.get(circuit.endpoint)
        if expected_opened_until is not None and current is not None and current.opened_until != expected_opened_until:
            return False
        if only_from is not None and (current.status if current else CircuitStatus.CLOSED) not in only_from:
            return False
        self.writes += 1
        self.circuits[circuit.endpoint] = circuit
        return True

    def list(self) -> list[Circuit]:
        return list(self.circuits.values())


class ScriptedSender:
    """Answers per URL path from a script (the last answer repeats); records every call."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[SendResult]] = {}
        self.calls: list[tuple[PostbackMessage, dict[str, str] | None]] = []
        self._lock = threading.Lock()

    def answer(self, url: str, *results: SendResult) -> None:
        self.scripts[url] = list(results)

    def send(self, message: PostbackMessage, *, headers: dict[str, str] | None = None) -> SendResult:
        with self._lock:
            self.calls.append((message, headers))
            script = self.scripts.get(message.url) or [SendResult(200, 5, "OK")]
            return script.pop(0) if len(script) > 1 else script[0]

    def calls_to(self, url: str) -> int:
        return sum(1 for message, _ in self.calls if message.url == url)


class Clock:
    """A settable clock for the circuit breakers (epoch seconds); `at()` is the same clock as
    the dispatcher reads it (a datetime)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def at(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)


def make_message(n: int = 1, *, url: str | None = None, **changes: Any) -> PostbackMessage:
    fields: dict[str, Any] = {
        "delivery_id": f"d{n:031d}",
        "affiliate_id": "1234567",
        "transaction_id": f"T-{n}",
        "event": "sale",
        "offer_id": "89",
        "url": url or f"https://track{n}.example/pb?cid=c{n}",
        "created_at": datetime(2026, 11, 25, 12, tzinfo=UTC),
    }
    return PostbackMessage.model_validate(fields | changes)


@pytest.fixture
def deliveries() -> FakeDeliveryLog:
    return FakeDeliveryLog()


@pytest.fixture
def retries() -> FakeRetryControl:
    return FakeRetryControl()


@pytest.fixture
def endpoints() -> FakeEndpointStore:
    return FakeEndpointStore()


@pytest.fixture
def sender() -> ScriptedSender:
    return ScriptedSender()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def new_message() -> Any:
    """make_message(n, url=..., **fields): a postback message numbered n."""
    return make_message
