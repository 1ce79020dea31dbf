"""The conversion the platform posts: amounts kept exactly, and every field checked."""

import json
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from postback_relay.domain.conversion import Conversion
from postback_relay.domain.events import Event, OfferType

LINK = "http://www.espace-plus.net/redir/rotation_redir.php?id_rotation=89&e=0&w=0&id=1234567&e=1&w=0&tracker=trID_a1-T9-c123-x_trID"


def conversion_data(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "transaction_id": "T-2026-000123",
        "event": "sale",
        "offer": {"id": "89", "type": "revshare", "name": "Dating FR"},
        "amount": "25.00",
        "currency": "EUR",
        "link": LINK,
        "occurred_at": "2026-11-25T12:00:00Z",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def errors_of(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        Conversion.model_validate(data)
    return {".".join(str(p) for p in e["loc"]): e["msg"] for e in caught.value.errors()}


def test_contract_example_is_accepted() -> None:
    # GIVEN the contract's example conversion
    # WHEN it is validated
    conversion = Conversion.model_validate(conversion_data())
    # THEN the amount is an exact Decimal with its text, and the identity is transaction#event
    assert conversion.amount == Decimal("25.00")
    assert conversion.amount_text == "25.00"
    assert conversion.event is Event.SALE
    assert conversion.conversion_id == "T-2026-000123#sale"
    assert conversion.occurred_at.utcoffset() is not None


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        ("25.00", "25.00"),
        ("0", "0"),
        ("0.123456", "0.123456"),
        (25, "25"),
        (25.5, "25.5"),
        (0.1, "0.1"),  # the float's shortest repr, not 0.1000000000000000055511151231257827
        (Decimal("19.90"), "19.90"),
    ],
)
def test_amount_keeps_the_text_that_was_sent(amount: object, text: str) -> None:
    # GIVEN an amount as a string, an int, a float or a Decimal
    # WHEN the conversion is validated
    conversion = Conversion.model_validate(conversion_data(amount=amount))
    # THEN the amount is never a float and its text is as sent
    assert isinstance(conversion.amount, Decimal)
    assert conversion.amount_text == text
    assert conversion.amount == Decimal(text)


def test_json_number_parsed_as_decimal_keeps_trailing_zeros() -> None:
    # GIVEN a body whose amount is the JSON number 25.00, parsed as the ingest should
    body = json.dumps(conversion_data()).replace('"25.00"', "25.00")
    data = json.loads(body, parse_float=Decimal)
    # WHEN validated
    conversion = Conversion.model_validate(data)
    # THEN 25.00 stays 25.00
    assert conversion.amount_text == "25.00"


def test_amount_text_cannot_be_forged() -> None:
    # GIVEN a caller sending its own amount_text
    # WHEN validated
    conversion = Conversion.model_validate(conversion_data(amount="10.00", amount_text="99"))
    # THEN amount_text is the amount that was sent
    assert conversion.amount_text == "10.00"


@pytest.mark.parametrize(
    "amount",
    [
        "-1",
        "-0.01",
        "1e3",
        "1E+2",
        "NaN",
        "Infinity",
        "",
        " 1",
        "1.",
        ".5",
        "1,5",
        "0.1234567",
        "1" * 16,
        True,
        float("nan"),
        float("inf"),
        1e-7,
        1e20,
        [1],
        None,
    ],
)
def test_bad_amounts_are_refused(amount: object) -> None:
    # GIVEN an amount that is negative, not a plain decimal, or not finite
    data = conversion_data()
    data["amount"] = amount
    # WHEN validated
    errors = errors_of(data)
    # THEN the amount field is at fault
    assert "amount" in errors


@pytest.mark.parametrize("currency", ["eur", "EURO", "E1R", "", "€"])
def test_currency_must_be_iso_4217(currency: str) -> None:
    # GIVEN a currency that is not three upper-case letters
    # WHEN validated
    errors = errors_of(conversion_data(currency=currency))
    # THEN the currency is refused with an example
    assert "ISO 4217" in errors["currency"]


def test_naive_occurred_at_is_refused() -> None:
    # GIVEN a time without a timezone
    # WHEN validated
    errors = errors_of(conversion_data(occurred_at="2026-11-25T12:00:00"))
    # THEN occurred_at is at fault
    assert "timezone" in errors["occurred_at"]


def test_link_and_tracker_together_are_refused() -> None:
    # GIVEN both link and tracker
    # WHEN validated
    errors = errors_of(conversion_data(tracker="trID_a_trID", affiliate_id="1"))
    # THEN the tracker field says to send one
    assert "not both" in errors["tracker"]


def test_neither_link_nor_tracker_is_refused() -> None:
    # GIVEN neither link nor tracker
    data = conversion_data()
    del data["link"]
    # WHEN validated
    errors = errors_of(data)
    # THEN the tracker field says what is needed
    assert "needs its network link" in errors["tracker"]


def test_revshare_tracker_needs_affiliate_id() -> None:
    # GIVEN a revshare conversion with a tracker and no affiliate_id
    data = conversion_data(tracker="trID_a1-T9-c123-x_trID")
    del data["link"]
    # WHEN validated
    errors = errors_of(data)
    # THEN affiliate_id is required
    assert "affiliate_id" in errors


def test_pps_tracker_without_affiliate_id_is_accepted() -> None:
    # GIVEN a PPS conversion with a tracker carrying the affiliate ID
    data = conversion_data(offer={"id": "66013", "type": "pps"}, tracker="trID_1234567_a1-T9-c123-x_trID")
    del data["link"]
    # WHEN validated
    conversion = Conversion.model_validate(data)
    # THEN it is accepted
    assert conversion.offer is not None
    assert (conversion.offer.type, conversion.offer.id) == (OfferType.PPS, "66013")


def test_a_numeric_offer_id_is_refused() -> None:
    # GIVEN an offer ID sent as a JSON number (the API's schema says a string)
    data = conversion_data(offer={"id": 66013, "type": "pps"})
    # WHEN validated, THEN the offer's id is the field at fault
    assert "offer.id" in errors_of(data)


@pytest.mark.parametrize("transaction_id", ["T 1", "T\t1", "T\n1", "", "T\x00"])
def test_transaction_id_must_be_printable_without_whitespace(transaction_id: str) -> None:
    # GIVEN a transaction ID with whitespace or control characters
    # WHEN validated
    errors = errors_of(conversion_data(transaction_id=transaction_id))
    # THEN it is refused
    assert "transaction_id" in errors


def test_unknown_fields_and_events_are_refused() -> None:
    # GIVEN an unknown event and an unknown field
    # WHEN validated
    errors = errors_of(conversion_data(event="purchase", colour="blue"))
    # THEN both are named
    assert set(errors) >= {"event", "colour"}


def test_lone_surrogates_are_refused() -> None:
    # GIVEN a link with a lone surrogate (possible from a JSON \\udc80 escape)
    # WHEN validated
    errors = errors_of(conversion_data(link=LINK + "\udc80"))
    # THEN it is refused rather than crashing later
    assert "link" in errors
