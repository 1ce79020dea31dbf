"""The config script's backends in memory (the Protocols of postback_ops.cli_context, no AWS)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from fakes.affiliates import FakeAffiliateStore
from fakes.conversions import FakeConversionLog
from fakes.deliveries import FakeDeliveryLog, Tried, delivery_record, message
from fakes.portal import FakePortalStore
from fakes.queues import FakePostbackQueue
from fakes.testruns import FakeTestRunStore
from postback_ops.ports import Backends, EndpointDirectory, TestRunner
from postback_relay.domain import messages
from postback_relay.domain.delivery import Circuit, DeliveryState
from postback_relay.domain.errors import NotFoundError
from postback_relay.domain.records import DeliveryRecord
from postback_relay.domain.testrun import TestRun

OPS_ARN = "arn:aws:iam::123456789012:user/ops"
RUN_ID = "20261125T120000-abcd1234"
PORTAL_SECRET = b"a-portal-secret-for-the-tests-only"


class FakeTestRunner(TestRunner):
    """Answers `status` from a script of successive states, the last one repeating."""

    __test__ = False  # not a test class, whatever pytest makes of its name

    def __init__(self) -> None:
        self.started: list[tuple[str, str, list[int], int]] = []
        self.script: list[TestRun] = []
        self.polls = 0

    def start(self, affiliate_id: str, started_by: str, waits: Sequence[int], deadline_s: int) -> str:
        self.started.append((affiliate_id, started_by, list(waits), deadline_s))
        return RUN_ID

    def status(self, run_id: str) -> TestRun:
        if run_id != RUN_ID:
            raise NotFoundError(messages.no_test_run(run_id))
        self.polls += 1
        return self.script[min(self.polls, len(self.script)) - 1]


class FakeEndpoints(EndpointDirectory):
    def __init__(self) -> None:
        self.circuits: list[Circuit] = []

    def list(self) -> list[Circuit]:
        return self.circuits


@dataclass
class FakeBackends:
    affiliates: FakeAffiliateStore = field(default_factory=FakeAffiliateStore)
    deliveries: FakeDeliveryLog = field(default_factory=FakeDeliveryLog)
    queue: FakePostbackQueue = field(default_factory=FakePostbackQueue)
    test_runs: FakeTestRunner = field(default_factory=FakeTestRunner)
    endpoints: FakeEndpoints = field(default_factory=FakeEndpoints)
    portal: FakePortalStore = field(default_factory=FakePortalStore)
    kept_postbacks: FakeConversionLog = field(default_factory=FakeConversionLog)
    run_records: FakeTestRunStore = field(default_factory=FakeTestRunStore)

    @property
    def portal_access(self) -> FakePortalStore:
        return self.portal

    @property
    def changes(self) -> FakePortalStore:
        return self.portal

    def portal_secret(self) -> bytes:
        return PORTAL_SECRET

    def caller(self) -> str:
        return OPS_ARN


_: Backends = FakeBackends()  # mypy checks FakeBackends against the Protocol (its members are properties)


def delivery(
    n: int,
    *,
    state: DeliveryState = DeliveryState.DELIVERED,
    affiliate_id: str = "1234567",
    transaction_id: str | None = None,
    statuses: Sequence[int | None] = (200,),
) -> DeliveryRecord:
    """Postback n, created at 12:n on 2026-11-25, with one attempt per status."""
    postback = message(
        n,
        affiliate_id=affiliate_id,
        transaction_id=transaction_id,
        created_at=datetime(2026, 11, 25, 12, n, tzinfo=UTC),
    )
    return delivery_record(postback, state, [Tried(status, latency_ms=40 + i) for i, status in enumerate(statuses)])
