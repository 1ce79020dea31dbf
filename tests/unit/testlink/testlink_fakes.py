"""In-memory ports for the test-link service: runs, delivery log and a scripted HTTP client."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fakes import FakeAffiliateStore, FakeDeliveryLog, FakePostbackQueue, FakeTestRunStore, ScriptedHttp

from postback_relay.domain.config import AffiliateConfig, parse_config
from postback_relay.domain.testrun import TestRun
from postback_relay.services.testlink import TestLinkService

AFFILIATE_ID = "1234567"
NETWORK_HOST = "www.espace-plus.net"
NETWORK_LINK = (
    "http://www.espace-plus.net/redir/rotation_redir.php?id_rotation=89&e=0&w=0&id=1234567&e=1&w=0"
    "&tracker=trID_a1-T9-c123-x_trID"
)
START = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def make_config(**overrides: object) -> AffiliateConfig:
    data: dict[str, object] = {
        "affiliate_id": AFFILIATE_ID,
        "name": "Acme Media",
        "tracker": {"fields": ["affid", "transid", "clickid", "whateverid"], "separator": "-"},
        "postbacks": [
            {"events": ["sale", "rebill"], "url": "https://track.acme.example/pb?cid={clickid}&amount={amount}"},
            {"events": ["registration"], "url": "https://track.acme.example/lead?cid={clickid}&offer={offer_id}"},
        ],
        "test_link": "https://click.acme.example/c?camp=42",
    }
    data.update(overrides)
    return parse_config(data)


@dataclass
class World:
    runs: FakeTestRunStore
    affiliates: FakeAffiliateStore
    queue: FakePostbackQueue
    deliveries: FakeDeliveryLog
    clock: Clock
    make_service: Callable[[ScriptedHttp], TestLinkService]

    def service(self, script: Mapping[str, str | int | Exception] | None = None) -> TestLinkService:
        return self.make_service(ScriptedHttp(script or {}))

    def new_run(self, run_id: str = "run-1") -> str:
        self.runs.create(TestRun(run_id=run_id, affiliate_id=AFFILIATE_ID, started_by="ops", started_at=START))
        return run_id

    def run(self, run_id: str = "run-1") -> TestRun:
        run = self.runs.get(run_id)
        assert run is not None
        return run


def build_world() -> World:
    runs = FakeTestRunStore()
    affiliates = FakeAffiliateStore(make_config())
    queue = FakePostbackQueue()
    deliveries = FakeDeliveryLog()
    clock = Clock()

    def make_service(http: ScriptedHttp) -> TestLinkService:
        return TestLinkService(
            runs=runs,
            affiliates=affiliates,
            queue=queue,
            deliveries=deliveries,
            http=http,
            network_hosts=[NETWORK_HOST],
            clock=clock,
        )

    return World(runs, affiliates, queue, deliveries, clock, make_service)
