"""In-memory stand-ins for AWS that keep nothing: the warm timings and the peak-RSS runs.

tests/fakes.py keeps every record for the tests to inspect; here thousands of invocations
run through the same fakes, so they only count (a growing dict would show up as the
handler's memory).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from postback_relay.domain.changes import ChangeState, ConfigChange, HistoryEntry
from postback_relay.domain.config import AffiliateConfig
from postback_relay.domain.conversion import Conversion, ConversionResult
from postback_relay.domain.delivery import Attempt, Circuit, CircuitStatus, DeliveryRef, DeliveryState, PostbackMessage
from postback_relay.domain.portal import PortalPass
from postback_relay.domain.records import DeliveryRecord, FirstRecord, OriginalConversion, StoredAffiliate
from postback_relay.domain.testrun import RunVerdict, TestRun, TestStep


class AffiliateStoreFake:
    """The configs given, read-only; `gets` counts reads that reached the store."""

    def __init__(self, *configs: AffiliateConfig) -> None:
        self._items = {
            c.affiliate_id: StoredAffiliate(config=c, version=1, updated_at="2026-11-26T00:00:00Z") for c in configs
        }
        self.gets = 0

    def get(self, affiliate_id: str) -> StoredAffiliate | None:
        self.gets += 1
        return self._items.get(affiliate_id)

    def put(self, config: AffiliateConfig, *, expected_version: int | None, updated_by: str) -> StoredAffiliate:
        raise NotImplementedError("the benchmark never writes configs")

    def list(self) -> list[StoredAffiliate]:
        return list(self._items.values())

    def set_enabled(self, affiliate_id: str, enabled: bool, *, updated_by: str) -> StoredAffiliate:
        raise NotImplementedError("the benchmark never writes configs")


class ConversionLogFake:
    """Every conversion is new; nothing is kept."""

    def __init__(self) -> None:
        self.writes = 0
        self.messages = 0  # postback messages written into the outbox

    def record(
        self,
        conversion: Conversion,
        result: ConversionResult,
        messages: Sequence[PostbackMessage] = (),
        *,
        received_at: datetime | None = None,
        tracker: str | None = None,
    ) -> FirstRecord | None:
        self.writes += 1
        self.messages += len(messages)
        return None

    def original(self, transaction_id: str) -> OriginalConversion | None:
        return None  # nothing is kept: every reversal's original is unknown


class PostbackQueueFake:
    """Accepts everything; counts calls and messages."""

    def __init__(self) -> None:
        self.calls = 0
        self.messages = 0

    def send(self, messages: Sequence[PostbackMessage]) -> list[PostbackMessage]:
        self.calls += 1
        self.messages += len(messages)
        return []


class DeliveryLogFake:
    """First receives only: no delivery is known; attempts are counted, not kept."""

    def __init__(self) -> None:
        self.attempts = 0

    def get(self, ref: DeliveryRef) -> DeliveryRecord | None:
        return None

    def record_attempt(
        self, message: PostbackMessage, attempt: Attempt, state: DeliveryState, *, reason: str | None = None
    ) -> None:
        self.attempts += 1

    def mark_deferred(self, message: PostbackMessage, *, reason: str) -> None:
        self.attempts += 1

    def by_affiliate(self, affiliate_id: str, *, limit: int = 100) -> list[DeliveryRecord]:
        return []

    def created_since(self, affiliate_id: str, since: datetime, *, at_least: int = 0) -> list[DeliveryRecord]:
        return []

    def at(self, refs: Sequence[DeliveryRef]) -> list[DeliveryRecord]:
        return []

    def failed(self, *, affiliate_id: str | None = None) -> list[DeliveryRecord]:
        return []

    def mark_replayed(self, ref: DeliveryRef) -> None:
        raise NotImplementedError("the benchmark never replays")


class RetryControlFake:
    def __init__(self) -> None:
        self.requeued = 0
        self.delays = 0
        self.dead_letters = 0

    def requeue(self, body: str, *, delay_s: int) -> None:
        self.requeued += 1

    def delay(self, receipt_handle: str, seconds: int) -> None:
        self.delays += 1

    def dead_letter(self, body: str, *, reason: str, delivery_id: str | None) -> None:
        self.dead_letters += 1


class EndpointStoreFake:
    """No circuit is on record anywhere."""

    def get(self, endpoint: str) -> Circuit | None:
        return None

    def save(
        self,
        circuit: Circuit,
        *,
        expected_opened_until: float | None = None,
        only_from: Collection[CircuitStatus] | None = None,
    ) -> bool:
        return True

    def list(self) -> list[Circuit]:
        return []


# --- the portal's reads (bench.portal_page): given records, nothing written -------------------


class PortalDeliveriesFake(DeliveryLogFake):
    """The given records (newest first), read as the DynamoDB log reads them."""

    def __init__(self, records: Sequence[DeliveryRecord]) -> None:
        super().__init__()
        self._records = list(records)

    def get(self, ref: DeliveryRef) -> DeliveryRecord | None:
        return next((r for r in self._records if r.ref == ref), None)

    def by_affiliate(self, affiliate_id: str, *, limit: int = 100) -> list[DeliveryRecord]:
        return [r for r in self._records if r.message.affiliate_id == affiliate_id][:limit]

    def created_since(self, affiliate_id: str, since: datetime, *, at_least: int = 0) -> list[DeliveryRecord]:
        newest = self.by_affiliate(affiliate_id, limit=10**6)
        recent = [r for r in newest if r.message.created_at >= since]
        return recent if len(recent) >= at_least else newest[:at_least]


class PortalStoreFake:
    """No link used, no revocation, no change on record; writes refused (the pages only read)."""

    def epoch(self, affiliate_id: str) -> int:
        return 0

    def revoke(self, affiliate_id: str) -> int:
        raise NotImplementedError("the benchmark never revokes")

    def link_used(self, link: PortalPass) -> bool:
        return False

    def use_link(self, link: PortalPass) -> bool:
        return True

    def end_session(self, session: PortalPass) -> None:
        raise NotImplementedError("the benchmark never signs out")

    def session_ended(self, session: PortalPass) -> bool:
        return False

    def submit(self, change: ConfigChange) -> None:
        raise NotImplementedError("the benchmark never saves a change")

    def get(self, change_id: str) -> ConfigChange | None:
        return None

    def listed(self, *, state: ChangeState | None = None) -> list[ConfigChange]:
        return []

    def latest(self, affiliate_id: str) -> ConfigChange | None:
        return None

    def decide(
        self, change: ConfigChange, state: ChangeState, *, by: str, at: str, reason: str | None = None
    ) -> ConfigChange:
        raise NotImplementedError("the benchmark never decides a change")

    def record(self, entry: HistoryEntry) -> None:
        raise NotImplementedError("the benchmark never saves a change")

    def history(self, affiliate_id: str) -> list[HistoryEntry]:
        return []


class TestRunStoreFake:
    __test__ = False  # not a test class

    def create(self, run: TestRun) -> None:
        raise NotImplementedError("the benchmark never starts a test")

    def get(self, run_id: str) -> TestRun | None:
        return None

    def append_step(self, run_id: str, step: TestStep) -> None:
        raise NotImplementedError("the benchmark never starts a test")

    def finish(self, run_id: str, verdict: RunVerdict, *, step: str | None, reason: str | None, at: datetime) -> bool:
        raise NotImplementedError("the benchmark never starts a test")


class TestRunLauncherFake:
    __test__ = False  # not a test class

    def start(self, affiliate_id: str, started_by: str, waits: Sequence[int], deadline_s: int) -> str:
        raise NotImplementedError("the benchmark never starts a test")
