"""The portal's service over in-memory fakes: affiliate A (1234567) with a failed and a
delivered postback, affiliate B (7654321) with a failed one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fakes.affiliates import FakeAffiliateStore
from fakes.cli import FakeTestRunner
from fakes.clocks import Clock
from fakes.deliveries import FakeDeliveryLog, Tried, delivery_record, message
from fakes.endpoints import FakeEndpointStore
from fakes.portal import FakePortalStore
from fakes.queues import FakePostbackQueue
from fakes.samples import ingest_config
from fakes.testruns import FakeTestRunStore

from postback_relay.domain.config import SelfService
from postback_relay.domain.delivery import DeliveryState
from postback_relay.domain.portal import PortalPass, new_link, sign_pass
from postback_relay.services.portal import PortalService

A = "1234567"
B = "7654321"
SECRET = b"portal-secret-for-unit-tests-only"
NOW = datetime(2026, 11, 25, 12, 30, tzinfo=UTC)


@dataclass
class Portal:
    service: PortalService
    affiliates: FakeAffiliateStore
    store: FakePortalStore
    deliveries: FakeDeliveryLog
    queue: FakePostbackQueue
    runs: FakeTestRunStore
    launcher: FakeTestRunner
    clock: Clock

    def link(self, affiliate_id: str = A, *, lifetime: timedelta = timedelta(days=7)) -> tuple[PortalPass, str]:
        link = new_link(affiliate_id, epoch=self.store.epoch(affiliate_id), lifetime=lifetime, now=self.clock())
        return link, sign_pass(link, SECRET)

    def session(self, affiliate_id: str = A) -> PortalPass:
        link, token = self.link(affiliate_id)
        return self.service.session(self.service.enter(token, self.service.csrf(link)))


def build_portal(mode: SelfService | None = None) -> Portal:
    clock = Clock(NOW.timestamp())
    test_link = "http://127.0.0.1:9/click"
    affiliates = FakeAffiliateStore(
        ingest_config(A, self_service=mode.value if mode else None, test_link=test_link), ingest_config(B)
    )
    deliveries = FakeDeliveryLog(
        [
            delivery_record(message(1, affiliate_id=A, created_at=NOW - timedelta(hours=1)), DeliveryState.FAILED,
                            [Tried(500), Tried(500)]),
            delivery_record(message(2, affiliate_id=A, created_at=NOW - timedelta(minutes=30)),
                            DeliveryState.DELIVERED, [Tried(200)]),
            delivery_record(message(3, affiliate_id=B, created_at=NOW - timedelta(minutes=20)), DeliveryState.FAILED,
                            [Tried(404)]),
        ]
    )  # fmt: skip
    store, queue, runs, launcher = FakePortalStore(), FakePostbackQueue(), FakeTestRunStore(), FakeTestRunner()
    service = PortalService(
        affiliates=affiliates,
        access=store,
        changes=store,
        deliveries=deliveries,
        queue=queue,
        runs=runs,
        launcher=launcher,
        endpoints=FakeEndpointStore(),
        secret=lambda: SECRET,
        clock=clock.at,
        schedule=lambda: ([1, 2], 30),
        allow_loopback=True,
    )
    return Portal(service, affiliates, store, deliveries, queue, runs, launcher, clock)
