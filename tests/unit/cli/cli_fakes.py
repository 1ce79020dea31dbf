"""In-memory backends for the config script's unit tests (the adapters' Protocols, no AWS)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from postback_relay.domain.config import AffiliateConfig
from postback_relay.domain.delivery import Attempt, Circuit, DeliveryRef, DeliveryState, PostbackMessage
from postback_relay.domain.errors import ConflictError, NotFoundError
from postback_relay.domain.events import Event
from postback_relay.domain.testrun import TestRun
from postback_relay.ports import DeliveryRecord, StoredAffiliate

OPS_ARN = "arn:aws:iam::123456789012:user/ops"


class FakeAffiliateStore:
    """Versions and conditional writes as the DynamoDB store does them."""

    def __init__(self) -> None:
        self.items: dict[str, StoredAffiliate] = {}
        self.writes = 0
        # Simulates someone else saving between this command's read and its write.
        self.interleaved_write: AffiliateConfig | None = None

    def get(self, affiliate_id: str) -> StoredAffiliate | None:
        stored = self.items.get(affiliate_id)
        if self.interleaved_write is not None and stored is not None:
            other, self.interleaved_write = self.interleaved_write, None
            self.items[affiliate_id] = replace(stored, config=other, version=stored.version + 1, updated_by="other")
        return stored

    def put(self, config: AffiliateConfig, *, expected_version: int | None, updated_by: str) -> StoredAffiliate:
        current = self.items.get(config.affiliate_id)
        current_version = current.version if current else None
        if current_version != expected_version:
            raise ConflictError(f"Affiliate {config.affiliate_id} changed since version {expected_version}.")
        stored = StoredAffiliate(config, (expected_version or 0) + 1, "2026-11-25T12:00:00Z", updated_by)
        self.items[config.affiliate_id] = stored
        self.writes += 1
        return stored

    def list(self) -> list[StoredAffiliate]:
        return list(self.items.values())

    def set_enabled(self, affiliate_id: str, enabled: bool, *, updated_by: str) -> StoredAffiliate:
        current = self.items.get(affiliate_id)
        if current is None:
            raise NotFoundError(f"Affiliate {affiliate_id} does not exist.")
        config = current.config.model_copy(update={"enabled": enabled})
        stored = StoredAffiliate(config, current.version + 1, "2026-11-25T12:30:00Z", updated_by)
        self.items[affiliate_id] = stored
        self.writes += 1
        return stored


class FakeDeliveryLog:
    def __init__(self, records: Sequence[DeliveryRecord] = ()) -> None:
        self.records = {r.delivery_id: r for r in records}
        self.reads_since: list[tuple[str, datetime]] = []

    def get(self, ref: DeliveryRef) -> DeliveryRecord | None:
        record = self.records.get(ref.delivery_id)
        return record if record is not None and record.ref == ref else None

    def record_attempt(
        self, message: PostbackMessage, attempt: Attempt, state: DeliveryState, *, reason: str | None = None
    ) -> None:
        raise NotImplementedError

    def _newest_first(self) -> list[DeliveryRecord]:
        # As the table's sort key reads: by created_at, descending.
        return sorted(self.records.values(), key=lambda r: r.created_at, reverse=True)

    def by_affiliate(self, affiliate_id: str, *, limit: int = 100) -> list[DeliveryRecord]:
        return [r for r in self._newest_first() if r.message.affiliate_id == affiliate_id][:limit]

    def created_since(self, affiliate_id: str, since: datetime) -> list[DeliveryRecord]:
        self.reads_since.append((affiliate_id, since))
        return [
            r
            for r in self._newest_first()
            if r.message.affiliate_id == affiliate_id and datetime.fromisoformat(r.created_at) >= since
        ]

    def by_transaction(self, transaction_id: str, *, limit: int = 100) -> list[DeliveryRecord]:
        return [r for r in self._newest_first() if r.message.transaction_id == transaction_id][:limit]

    def failed(self, *, affiliate_id: str | None = None, transaction_id: str | None = None) -> list[DeliveryRecord]:
        return [
            r
            for r in self.records.values()
            if r.state is DeliveryState.FAILED
            and affiliate_id in (None, r.message.affiliate_id)
            and transaction_id in (None, r.message.transaction_id)
        ]

    def mark_replayed(self, ref: DeliveryRef) -> None:
        record = self.records[ref.delivery_id]
        assert record.ref == ref
        self.records[ref.delivery_id] = replace(record, state=DeliveryState.PENDING, replays=record.replays + 1)


class FakeQueue:
    def __init__(self) -> None:
        self.sent: list[PostbackMessage] = []

    def send(self, messages: Sequence[PostbackMessage]) -> list[PostbackMessage]:
        self.sent.extend(messages)
        return []


class FakeTestRunner:
    """Answers `status` from a script of successive states, the last one repeating."""

    def __init__(self) -> None:
        self.started: list[tuple[str, str, list[int], int]] = []
        self.script: list[TestRun] = []
        self.polls = 0

    def start(self, affiliate_id: str, started_by: str, waits: Sequence[int], deadline_s: int) -> str:
        self.started.append((affiliate_id, started_by, list(waits), deadline_s))
        return "20261125T120000-abcd1234"

    def status(self, run_id: str) -> TestRun:
        if run_id != "20261125T120000-abcd1234":
            raise NotFoundError(f"no test run {run_id}")
        self.polls += 1
        return self.script[min(self.polls, len(self.script)) - 1]


class FakeEndpoints:
    def __init__(self) -> None:
        self.circuits: list[Circuit] = []

    def list(self) -> list[Circuit]:
        return self.circuits


@dataclass
class FakeBackends:
    affiliates: FakeAffiliateStore = field(default_factory=FakeAffiliateStore)
    deliveries: FakeDeliveryLog = field(default_factory=FakeDeliveryLog)
    queue: FakeQueue = field(default_factory=FakeQueue)
    test_runs: FakeTestRunner = field(default_factory=FakeTestRunner)
    endpoints: FakeEndpoints = field(default_factory=FakeEndpoints)

    def caller(self) -> str:
        return OPS_ARN


def delivery(
    n: int,
    *,
    state: DeliveryState = DeliveryState.DELIVERED,
    affiliate_id: str = "1234567",
    transaction_id: str | None = None,
    statuses: Sequence[int | None] = (200,),
) -> DeliveryRecord:
    created = datetime(2026, 11, 25, 12, n, tzinfo=UTC)
    url = f"https://track.acme.example/postback?cid=c{n}"
    message = PostbackMessage(
        delivery_id=f"d{n}",
        affiliate_id=affiliate_id,
        transaction_id=transaction_id or f"T-{n}",
        event=Event.SALE,
        offer_id="89",
        url=url,
        created_at=created,
    )
    attempts = tuple(
        Attempt(attempt=i + 1, at=created, url=url, method=message.method, status=status, latency_ms=40 + i)
        for i, status in enumerate(statuses)
    )
    return DeliveryRecord(f"d{n}", message, state, attempts, created.isoformat(), created.isoformat())
