"""The test postbacks (step 3): one per postback of the affiliate, for its first event, and
what the run record shows of them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from postback_relay.domain.config import AffiliateConfig, PostbackSpec
from postback_relay.domain.conversion import Conversion, Offer
from postback_relay.domain.delivery import DeliveryRef, PostbackMessage, key_time
from postback_relay.domain.events import REVERSALS, OfferType
from postback_relay.domain.postbacks import postback_messages
from postback_relay.domain.testrun import StepName, TestRun
from postback_relay.domain.times import parse_utc

TEST_TRANSACTION_PREFIX = "test-"  # a test postback's transaction: `test-<run_id>-<n>`
TEST_AMOUNT = Decimal(0)
TEST_PAYOUT = Decimal(0)
TEST_CURRENCY = "EUR"


@dataclass(frozen=True)
class TestClick:
    """What the first two steps found: the network link, its offer and tracker values."""

    __test__ = False  # not a pytest test class, despite its name

    run_id: str
    network_link: str
    offer_id: str | None
    offer_type: OfferType
    tracker_values: Mapping[str, str]


def messages_for(
    click: TestClick, config: AffiliateConfig, *, now: datetime, started_at: datetime, allow_loopback: bool = False
) -> list[PostbackMessage]:
    """One message per postback, rendered and checked by the one render path ingest uses
    (domain.postbacks). The delivery IDs are deterministic and every message's `created_at`
    is the run's start (not the step's clock), so a retried step addresses the same delivery
    items. Raises PostbackRefused, with the reason ingest would give, for a postback that
    cannot be sent."""
    messages: list[PostbackMessage] = []
    for index, spec in enumerate(config.postbacks):
        messages.extend(
            postback_messages(
                _test_conversion(click, spec, index, now),
                config,
                click.tracker_values,
                created_at=started_at,
                allow_loopback=allow_loopback,
                postbacks=[(index, spec)],
                test_run_id=click.run_id,
            )
        )
    return messages


def _test_conversion(click: TestClick, spec: PostbackSpec, index: int, now: datetime) -> Conversion:
    link_offer = click.offer_id or "test"
    # A postback limited to other offers would never fire for this link's offer: test it with
    # its first offer, so that every postback is checked.
    offer = link_offer if spec.offers is None or link_offer in spec.offers else spec.offers[0]
    transaction_id = f"{TEST_TRANSACTION_PREFIX}{click.run_id}-{index + 1}"
    event = spec.events[0]
    return Conversion(
        transaction_id=transaction_id,
        event=event,
        # A postback whose first event is a chargeback or refund reverses a conversion: the test
        # names a made-up original, so that `{original_transaction_id}` renders as it will.
        original_transaction_id=f"{transaction_id}-original" if event in REVERSALS else None,
        offer=Offer(id=offer, type=click.offer_type, name="test link"),
        amount=TEST_AMOUNT,
        amount_text="0",
        payout=TEST_PAYOUT,
        payout_text="0",
        currency=TEST_CURRENCY,
        link=click.network_link,
        occurred_at=now,
    )


def fired_details(messages: list[PostbackMessage]) -> dict[str, Any]:
    """The fire step's entry in the run record: each postback as it was queued."""
    return {
        "postbacks": [
            {
                "n": n,
                "event": m.event.value,
                "offer_id": m.offer_id,
                "transaction_id": m.transaction_id,
                "method": m.method.value,
                "url": m.url,
                "delivery_id": m.delivery_id,
                "created_at": key_time(m.created_at),
            }
            for n, m in enumerate(messages, start=1)
        ]
    }


def fired_refs(run: TestRun, transaction_id: str) -> list[DeliveryRef]:
    """Where a test postback is logged, as its run's fire step recorded it (`fired_details`):
    its delivery ID and creation time (the run's start for an entry that has none)."""
    return [
        DeliveryRef(
            run.affiliate_id,
            parse_utc(str(postback.get("created_at") or run.started_at.isoformat())),
            str(postback["delivery_id"]),
        )
        for step in run.steps
        if step.name == StepName.FIRE_POSTBACKS
        for postback in step.details.get("postbacks", [])
        if postback.get("transaction_id") == transaction_id
    ]
