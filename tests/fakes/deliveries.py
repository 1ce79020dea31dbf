"""The delivery log in a dict, and the one builder of the delivery records tests read."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from postback_relay.domain.delivery import Attempt, DeliveryRef, DeliveryState, PostbackMessage
from postback_relay.domain.errors import ConflictError
from postback_relay.domain.events import Event
from postback_relay.domain.records import DeliveryRecord
from postback_relay.domain.times import utc_exact
from postback_relay.ports import DispatchDeliveryLog


@dataclass(frozen=True)
class Tried:
    """One attempt as a test states it: the answer's status (None: no answer) and the rest."""

    status: int | None
    outcome: str = ""
    error_kind: str | None = None
    latency_ms: int | None = None


def message(
    n: int,
    *,
    affiliate_id: str = "1234567",
    transaction_id: str | None = None,
    url: str | None = None,
    created_at: datetime | None = None,
) -> PostbackMessage:
    """Postback n: delivery d{n} of transaction T-{n}, a sale of offer 89."""
    return PostbackMessage(
        delivery_id=f"d{n}",
        affiliate_id=affiliate_id,
        transaction_id=transaction_id or f"T-{n}",
        event=Event.SALE,
        offer_id="89",
        url=url or f"https://track.acme.example/postback?cid=c{n}",
        created_at=created_at or datetime(2026, 11, 25, 12, tzinfo=UTC),
    )


def delivery_record(
    postback: PostbackMessage,
    state: DeliveryState,
    tries: Sequence[Tried | int | None] = (),
    *,
    spacing: timedelta = timedelta(0),
    first_at: datetime | None = None,
) -> DeliveryRecord:
    """The delivery log's record of `postback`, with one attempt per try (a bare status is a
    try with nothing else), the first at `first_at` (the postback's creation by default), the
    next ones `spacing` apart. Its times are written as the DynamoDB log writes them."""
    start = first_at or postback.created_at
    attempts = tuple(
        Attempt(
            attempt=i + 1,
            at=start + i * spacing,
            url=postback.url,
            method=postback.method,
            status=attempt.status,
            latency_ms=attempt.latency_ms,
            error_kind=attempt.error_kind,
            outcome=attempt.outcome,
        )
        for i, attempt in enumerate(t if isinstance(t, Tried) else Tried(t) for t in tries)
    )
    created = utc_exact(postback.created_at)
    return DeliveryRecord(postback.delivery_id, postback, state, attempts, created, created)


class FakeDeliveryLog(DispatchDeliveryLog):
    """The delivery log, keyed by delivery ID, with the DynamoDB log's conditions: a delivered
    one is never touched, only a failed one is replayed, a read needs the whole key. It reads
    newest first, as the table's sort key does. `reads` counts `get`s, `reads_since` the
    per-affiliate reads of `created_since`, `listings` every read of an affiliate's postbacks
    (`by_affiliate` and `created_since`: each one a Query of every partition on DynamoDB)."""

    def __init__(self, records: Sequence[DeliveryRecord] = ()) -> None:
        self.records: dict[str, DeliveryRecord] = {r.delivery_id: r for r in records}
        self.reads = 0
        self.reads_since: list[tuple[str, datetime]] = []
        self.listings: list[str] = []
        self._lock = threading.Lock()

    def set(self, postback: PostbackMessage, state: DeliveryState, statuses: Sequence[int | None]) -> None:
        """Play the dispatcher: `postback` is in `state` after one attempt per status (None: a timeout)."""
        tries = [Tried(status, error_kind=None if status is not None else "timeout") for status in statuses]
        self.records[postback.delivery_id] = delivery_record(postback, state, tries)

    # --- the port ---------------------------------------------------------------------------

    def get(self, ref: DeliveryRef) -> DeliveryRecord | None:
        self.reads += 1
        # As DynamoDB addresses the item: the whole key (affiliate, created_at, ID) must match.
        record = self.records.get(ref.delivery_id)
        return record if record is not None and record.ref == ref else None

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
        with self._lock:
            current = self.records[ref.delivery_id]
            assert current.ref == ref
            if current.state is not DeliveryState.FAILED:
                raise ConflictError(f"Delivery {ref.delivery_id} is not failed (any more).")
            self.records[ref.delivery_id] = replace(
                current, state=DeliveryState.PENDING, replays=current.replays + 1, last_error=None
            )

    def failed(self, *, affiliate_id: str | None = None) -> list[DeliveryRecord]:
        return [
            r
            for r in self.records.values()
            if r.state is DeliveryState.FAILED and affiliate_id in (None, r.message.affiliate_id)
        ]

    def at(self, refs: Sequence[DeliveryRef]) -> list[DeliveryRecord]:
        # A key is the affiliate and `<created_at>#<delivery_id>` (milliseconds), as the table's.
        by_key = {(r.ref.affiliate_id, r.ref.sort_key): r for r in self.records.values()}
        found = (by_key.get((ref.affiliate_id, ref.sort_key)) for ref in dict.fromkeys(refs))
        return [r for r in found if r is not None]

    def by_affiliate(self, affiliate_id: str, *, limit: int = 100) -> list[DeliveryRecord]:
        self.listings.append(affiliate_id)
        return [r for r in self._newest_first() if r.message.affiliate_id == affiliate_id][:limit]

    def created_since(self, affiliate_id: str, since: datetime, *, at_least: int = 0) -> list[DeliveryRecord]:
        self.reads_since.append((affiliate_id, since))
        self.listings.append(affiliate_id)
        newest = [r for r in self._newest_first() if r.message.affiliate_id == affiliate_id]
        recent = [r for r in newest if datetime.fromisoformat(r.created_at) >= since]
        return recent if len(recent) >= at_least else newest[:at_least]

    def _newest_first(self) -> list[DeliveryRecord]:
        return sorted(self.records.values(), key=lambda r: datetime.fromisoformat(r.created_at), reverse=True)

    def _writable(self, message: PostbackMessage) -> DeliveryRecord:
        current = self.records.get(message.delivery_id)
        if current is None:
            return delivery_record(message, DeliveryState.PENDING)
        if current.state is DeliveryState.DELIVERED:
            raise ConflictError(f"Delivery {message.delivery_id} is delivered already.")
        return current
