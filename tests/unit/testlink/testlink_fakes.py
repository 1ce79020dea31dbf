"""In-memory ports for the test-link service: runs, delivery log and a scripted HTTP client."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from fakes import FakeAffiliateStore, FakePostbackQueue

from postback_relay.domain.config import AffiliateConfig, parse_config
from postback_relay.domain.delivery import Attempt, DeliveryRef, DeliveryState, PostbackMessage
from postback_relay.domain.testrun import RunVerdict, TestRun, TestStep
from postback_relay.ports import DeliveryRecord
from postback_relay.services.testlink import TestLinkService

AFFILIATE_ID = "1234567"
NETWORK_HOST = "www.espace-plus.net"
NETWORK_LINK = (
    "http://www.espace-plus.net/redir/rotation_redir.php?id_rotation=89&e=0&w=0&id=1234567&e=1&w=0"
    "&tracker=trID_a1-T9-c123-x_trID"
)
START = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


class FakeTestRunStore:
    __test__ = False

    def __init__(self) -> None:
        self.runs: dict[str, TestRun] = {}

    def create(self, run: TestRun) -> None:
        assert run.run_id not in self.runs
        self.runs[run.run_id] = run

    def get(self, run_id: str) -> TestRun | None:
        return self.runs.get(run_id)

    def append_step(self, run_id: str, step: TestStep) -> None:
        run = self.runs[run_id]
        self.runs[run_id] = run.model_copy(update={"steps": (*run.steps, step)})

    def finish(self, run_id: str, verdict: RunVerdict, *, step: str | None, reason: str | None, at: datetime) -> bool:
        run = self.runs[run_id]
        if run.verdict is not RunVerdict.RUNNING:
            return False
        self.runs[run_id] = run.model_copy(
            update={"verdict": verdict, "step": step, "reason": reason, "finished_at": at}
        )
        return True


class FakeDeliveryLog:
    """Only `get` is used by the test-link service; `set` plays the dispatcher."""

    def __init__(self) -> None:
        self.records: dict[str, DeliveryRecord] = {}

    def get(self, ref: DeliveryRef) -> DeliveryRecord | None:
        # As DynamoDB addresses the item: the whole key (affiliate, created_at, ID) must match.
        record = self.records.get(ref.delivery_id)
        return record if record is not None and record.ref.sort_key == ref.sort_key else None

    def set(self, message: PostbackMessage, state: DeliveryState, statuses: list[int | None]) -> None:
        attempts = tuple(
            Attempt(
                attempt=n,
                at=START,
                url=message.url,
                method=message.method,
                status=status,
                error_kind=None if status is not None else "timeout",
            )
            for n, status in enumerate(statuses, 1)
        )
        self.records[message.delivery_id] = DeliveryRecord(
            delivery_id=message.delivery_id,
            message=message,
            state=state,
            attempts=attempts,
            created_at="2026-11-25T12:00:00Z",
            updated_at="2026-11-25T12:00:00Z",
        )


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)


class ScriptedHttp:
    """Answers by URL: a redirect target, a status, or an exception; records every request."""

    def __init__(self, script: Mapping[str, str | int | Exception]) -> None:
        self.script = script
        self.requested: list[str] = []

    def request(self, method: str, url: str) -> Answer:
        self.requested.append(url)
        step = self.script.get(url, 404)
        if isinstance(step, Exception):
            raise step
        if isinstance(step, int):
            return Answer(step)
        return Answer(302, {"Location": step})


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
