"""The dispatcher's ports as fixtures (unit tests of services.dispatch and replay): the fakes
are tests/fakes'."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fakes import FakeDeliveryLog, FakeEndpointStore, FakeRetryControl, ScriptedSender
from fakes.clocks import Clock

from postback_relay.domain.delivery import PostbackMessage
from postback_relay.services.circuit import CircuitBreakers
from postback_relay.services.dispatch import Dispatcher

NO_JITTER = 0.5  # the middle of the retry schedule's jitter


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


@pytest.fixture
def dispatcher(
    deliveries: FakeDeliveryLog,
    sender: ScriptedSender,
    retries: FakeRetryControl,
    endpoints: FakeEndpointStore,
    clock: Clock,
) -> Dispatcher:
    """A dispatcher over the fakes above, its delays without jitter."""
    return Dispatcher(
        deliveries=deliveries,
        sender=sender,
        retries=retries,
        breakers=CircuitBreakers(endpoints, clock=clock),
        max_workers=4,
        rand=lambda: NO_JITTER,
        clock=clock.at,
    )
