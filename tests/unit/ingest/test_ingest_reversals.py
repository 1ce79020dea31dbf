"""Reversals (contract section 2): a chargeback or a refund names its original and fires with
the original's affiliate, tracker values and offer, taken from the original's record."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fakes import (
    INGEST_AFFILIATE_ID,
    INGEST_PPS_LINK,
    FakeAffiliateStore,
    FakeConversionLog,
    ingest_config,
    ingest_config_data,
    ingest_conversion,
)

from postback_relay.domain.config import AffiliateConfig
from postback_relay.domain.conversion import Conversion, ConversionOutcome
from postback_relay.domain.errors import InvalidConversionRequest
from postback_relay.domain.events import Event
from postback_relay.services.ingest import IngestService, parse_conversion_request

NOW = datetime(2026, 11, 25, 12, 0, 5, tzinfo=UTC)
REVERSAL_URL = "https://track.acme.example/rev?cid={clickid}&st={status}&orig={original_transaction_id}&p={payout}&offer={offer_id}"


def config_with_reversals() -> AffiliateConfig:
    postbacks: list[Any] = list(ingest_config_data()["postbacks"])  # type: ignore[call-overload]
    reversals = {"events": ["chargeback", "refund"], "url": REVERSAL_URL, "statuses": {"chargeback": "rejected"}}
    return ingest_config(postbacks=[*postbacks, reversals])


class World:
    def __init__(self) -> None:
        self.affiliates = FakeAffiliateStore(config_with_reversals())
        self.log = FakeConversionLog()
        self.service = IngestService(self.affiliates, self.log, clock=lambda: NOW)


def reversal(event: str = "chargeback", original: str = "T-2026-000123", **changes: Any) -> Conversion:
    data: dict[str, Any] = {
        "transaction_id": f"CB-{original}",
        "event": event,
        "original_transaction_id": original,
        "amount": "25.00",
        "payout": "7.50",
        "currency": "EUR",
        "occurred_at": "2026-12-02T09:30:00Z",
    }
    data.update(changes)
    return Conversion.model_validate({k: v for k, v in data.items() if v is not None})


@pytest.fixture
def world() -> World:
    return World()


def test_a_chargeback_fires_with_the_originals_tracker_values_and_offer(world: World) -> None:
    # GIVEN a sale recorded through its link
    world.service.ingest([ingest_conversion(payout="7.50")])
    # WHEN its chargeback arrives with no link, tracker, affiliate or offer
    (answer,) = world.service.ingest([reversal()]).answers
    # THEN its postback is queued with the sale's click ID and offer, the tracker's word and the original's ID
    assert answer.result.outcome is ConversionOutcome.QUEUED
    assert answer.result.affiliate_id == INGEST_AFFILIATE_ID
    message = world.log.outbox[-1]
    assert message.event is Event.CHARGEBACK
    query = parse_qs(urlsplit(message.url).query, keep_blank_values=True)
    assert query == {"cid": ["c123"], "st": ["rejected"], "orig": ["T-2026-000123"], "p": ["7.50"], "offer": ["89"]}
    # AND the chargeback is recorded completed: the original's offer and tracker kept with it
    recorded, _ = world.log.records["CB-T-2026-000123#chargeback"]
    assert recorded.offer is not None and recorded.offer.id == "89"
    assert world.log.trackers["CB-T-2026-000123#chargeback"] == "trID_a1-T9-c123-x_trID"


def test_a_refund_of_a_pps_sale_reads_the_affiliate_from_the_kept_tracker(world: World) -> None:
    # GIVEN a PPS sale (the affiliate is inside its tracker)
    world.service.ingest([ingest_conversion(offer={"id": "66013", "type": "pps"}, link=INGEST_PPS_LINK)])
    # WHEN it is refunded, THEN the refund fires for that affiliate and offer, status its own name
    (answer,) = world.service.ingest([reversal("refund")]).answers
    assert answer.result.outcome is ConversionOutcome.QUEUED
    assert "st=refund" in world.log.outbox[-1].url
    assert "offer=66013" in world.log.outbox[-1].url


def test_a_reversal_of_an_unknown_transaction_is_recorded_and_fires_nothing(world: World) -> None:
    # WHEN a chargeback names a transaction never recorded (or older than the 400 days kept)
    (answer,) = world.service.ingest([reversal(original="T-NEVER")]).answers
    # THEN it is accepted with the outcome original_not_found, recorded, and nothing is queued
    assert answer.result.outcome is ConversionOutcome.ORIGINAL_NOT_FOUND
    assert "No conversion T-NEVER is on record" in (answer.result.reason or "")
    assert "400 days" in (answer.result.reason or "")
    assert "CB-T-NEVER#chargeback" in world.log.records
    assert world.log.outbox == []


def test_a_reversal_of_a_reversal_is_refused_naming_the_field_and_nothing_is_recorded(world: World) -> None:
    # GIVEN a sale and its chargeback recorded
    world.service.ingest([ingest_conversion(), reversal()])
    writes = world.log.writes
    # WHEN a refund names the chargeback as its original, in a batch after a valid sale
    other_sale = ingest_conversion(transaction_id="T-OTHER")
    with pytest.raises(InvalidConversionRequest) as caught:
        world.service.ingest([other_sale, reversal("refund", original="CB-T-2026-000123")], batch=True)
    # THEN the request is refused naming the batch item's field, and nothing of it is recorded
    ((field, message),) = [(e.field, e.message) for e in caught.value.errors]
    assert field == "conversions.1.original_transaction_id"
    assert "CB-T-2026-000123 is a chargeback" in message
    assert world.log.writes == writes
    # AND alone, the field is named without a batch prefix
    with pytest.raises(InvalidConversionRequest) as alone:
        world.service.ingest([reversal("refund", original="CB-T-2026-000123")])
    assert [e.field for e in alone.value.errors] == ["original_transaction_id"]


def test_a_reversal_of_a_conversion_recorded_without_a_tracker_fires_nothing(world: World) -> None:
    # GIVEN a sale whose link named no readable tracker (recorded, unknown affiliate)
    world.service.ingest([ingest_conversion(link="http://www.espace-plus.net/r.php?id=1234567")])
    # WHEN it is charged back, THEN original_not_found says why, and nothing is queued
    (answer,) = world.service.ingest([reversal()]).answers
    assert answer.result.outcome is ConversionOutcome.ORIGINAL_NOT_FOUND
    assert "without its tracker" in (answer.result.reason or "")
    assert world.log.outbox == []


def test_an_affiliate_not_subscribed_to_reversals_gets_event_not_subscribed(world: World) -> None:
    # GIVEN an old config (no reversal postback) and a sale recorded under it
    world.affiliates.put(ingest_config(), expected_version=1, updated_by="ops")
    world.service.ingest([ingest_conversion()])
    # WHEN it is charged back, THEN nothing fires, for the usual reason
    (answer,) = world.service.ingest([reversal()]).answers
    assert answer.result.outcome is ConversionOutcome.EVENT_NOT_SUBSCRIBED
    assert len(world.log.outbox) == 1


def test_a_chargeback_in_the_same_request_as_its_sale_finds_it(world: World) -> None:
    # WHEN a batch holds a chargeback before the sale it reverses
    answers = world.service.ingest([reversal(), ingest_conversion()], batch=True).answers
    # THEN both fire, the chargeback with the sale's values, and the log was not asked
    assert [a.result.outcome for a in answers] == [ConversionOutcome.QUEUED, ConversionOutcome.QUEUED]
    assert "cid=c123" in world.log.outbox[-1].url or "cid=c123" in world.log.outbox[0].url
    assert world.log.reads == []


def test_a_repeated_chargeback_is_a_repeat(world: World) -> None:
    # GIVEN a sale and its chargeback taken
    world.service.ingest([ingest_conversion(), reversal()])
    # WHEN the chargeback is posted again, THEN it answers its first result and queues nothing new
    (answer,) = world.service.ingest([reversal()]).answers
    assert answer.repeat is True
    assert len(world.log.outbox) == 2


@pytest.mark.parametrize(
    ("document", "field", "words"),
    [
        ({"event": "chargeback"}, "original_transaction_id", "send its original_transaction_id"),
        ({"event": "sale", "original_transaction_id": "T-1"}, "original_transaction_id", "only a chargeback"),
        ({"event": "refund", "original_transaction_id": "T-SELF"}, "original_transaction_id", "reverse itself"),
        ({"event": "sale", "offer": None}, "offer", "needs its offer"),
    ],
)
def test_reversal_fields_are_checked_at_the_door(document: dict[str, Any], field: str, words: str) -> None:
    # GIVEN a body whose reversal fields do not fit its event
    body: dict[str, Any] = {
        "transaction_id": "T-SELF",
        "offer": {"id": "89", "type": "revshare"},
        "amount": "1.00",
        "currency": "EUR",
        "link": "http://www.espace-plus.net/r.php?id=1&tracker=trID_a_trID",
        "occurred_at": "2026-11-25T12:00:00Z",
        **document,
    }
    import json

    raw = json.dumps({k: v for k, v in body.items() if v is not None}).encode()
    # WHEN it is parsed, THEN it is a 400 naming the field
    with pytest.raises(InvalidConversionRequest) as caught:
        parse_conversion_request(raw)
    assert any(e.field == field and words in e.message.lower() for e in caught.value.errors), caught.value.errors
