"""Reading the request body: one conversion or a batch, every field error at once."""

from __future__ import annotations

import json

import pytest
from fakes import ingest_conversion_data

from postback_relay.domain.errors import InvalidConversionRequest
from postback_relay.services.ingest import (
    MAX_BATCH,
    MAX_FIELD_ERRORS,
    Answer,
    parse_conversion_request,
)


def body(document: object) -> bytes:
    return json.dumps(document).encode()


def errors_of(raw: bytes) -> list[tuple[str, str]]:
    with pytest.raises(InvalidConversionRequest) as failure:
        parse_conversion_request(raw)
    return [(e.field, e.message) for e in failure.value.errors]


def test_single_conversion() -> None:
    # WHEN the body is one conversion, THEN it is read as a single request
    request = parse_conversion_request(body(ingest_conversion_data()))
    assert request.is_batch is False
    assert request.conversions[0].transaction_id == "T-2026-000123"


def test_amount_as_json_number_keeps_its_exact_text() -> None:
    # GIVEN an amount sent as the JSON number 25.10
    raw = body(ingest_conversion_data(amount="__AMOUNT__")).replace(b'"__AMOUNT__"', b"25.10")

    # THEN it is read as the decimal text 25.10, never a float
    conversion = parse_conversion_request(raw).conversions[0]
    assert conversion.amount_text == "25.10"


def test_batch() -> None:
    # WHEN the body holds {"conversions": [...]}, THEN each is read in order
    request = parse_conversion_request(
        body({"conversions": [ingest_conversion_data(), ingest_conversion_data(event="rebill")]})
    )
    assert request.is_batch is True
    assert [c.event.value for c in request.conversions] == ["sale", "rebill"]


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "UTF-8"),
        (b"[1, 2]", "JSON object"),
        (b'"text"', "JSON object"),
        (b'{"amount": NaN}', "not acceptable JSON"),
        (b"[" * 100_000, "not acceptable JSON"),
    ],
    ids=["syntax", "not-utf8", "array", "string", "nan", "too-deep"],
)
def test_body_that_is_not_a_json_object(raw: bytes, fragment: str) -> None:
    # WHEN the body cannot be a conversion at all, THEN one error on `body` says why
    ((field, message),) = errors_of(raw)
    assert field == "body"
    assert fragment in message


def test_every_field_error_of_a_single_conversion() -> None:
    # GIVEN a conversion with a bad event, a negative amount and a lower-case currency
    raw = body(ingest_conversion_data(event="upsell", amount="-1", currency="eur"))

    # THEN each is reported with its field
    fields = {field for field, _ in errors_of(raw)}
    assert fields == {"event", "amount", "currency"}


def test_batch_errors_carry_the_item_index() -> None:
    # GIVEN a batch whose item 3 lacks its amount and item 5 has an unknown offer type
    items = [ingest_conversion_data(transaction_id=f"T-{n}") for n in range(6)]
    del items[3]["amount"]
    items[5]["offer"] = {"id": "89", "type": "cpa"}

    # THEN the errors name conversions.3.amount and conversions.5.offer.type
    fields = [field for field, _ in errors_of(body({"conversions": items}))]
    assert fields == ["conversions.3.amount", "conversions.5.offer.type"]


def test_conversion_without_link_or_tracker() -> None:
    # WHEN neither a link nor a tracker is sent, THEN the error says a link or tracker is needed
    errors = errors_of(body(ingest_conversion_data(link=None)))
    assert any("link" in message or "tracker" in message for _, message in errors)


@pytest.mark.parametrize("count", [0, MAX_BATCH + 1])
def test_batch_size_out_of_bounds(count: int) -> None:
    # WHEN a batch holds 0 or 101 conversions, THEN `conversions` is refused with the count
    items = [ingest_conversion_data(transaction_id=f"T-{n}") for n in range(count)]
    ((field, message),) = errors_of(body({"conversions": items}))
    assert field == "conversions"
    assert str(count) in message


def test_batch_of_exactly_the_limit_is_read() -> None:
    items = [ingest_conversion_data(transaction_id=f"T-{n}") for n in range(MAX_BATCH)]
    assert len(parse_conversion_request(body({"conversions": items})).conversions) == MAX_BATCH


def test_batch_with_other_keys_or_not_an_array() -> None:
    # WHEN a batch carries an unknown key and `conversions` is not an array
    errors = errors_of(body({"conversions": {"a": 1}, "extra": True}))

    # THEN both are reported
    assert [field for field, _ in errors] == ["extra", "conversions"]


def test_batch_item_that_is_not_an_object() -> None:
    errors = errors_of(body({"conversions": [ingest_conversion_data(), 42]}))
    assert errors == [("conversions.1", "A conversion must be a JSON object.")]


def test_unknown_field_in_a_conversion_is_refused() -> None:
    errors = errors_of(body(ingest_conversion_data(colour="blue")))
    assert [field for field, _ in errors] == ["colour"]


def test_answer_json_has_the_documented_fields() -> None:
    # GIVEN any result, WHEN it is answered, THEN exactly the documented fields appear
    from postback_relay.domain.conversion import ConversionOutcome, ConversionResult
    from postback_relay.domain.events import Event

    result = ConversionResult(transaction_id="T", event=Event.SALE, affiliate_id="1", outcome=ConversionOutcome.QUEUED)
    assert set(Answer(result).to_json()) == {
        "transaction_id",
        "event",
        "affiliate_id",
        "outcome",
        "postbacks_queued",
        "reason",
        "error_kind",
        "repeat",
    }


def test_field_errors_are_capped_so_the_answer_stays_small() -> None:
    # GIVEN a conversion with 5000 unknown fields
    document = ingest_conversion_data()
    document.update({f"x{n}": 0 for n in range(5000)})

    # THEN at most MAX_FIELD_ERRORS are listed, and a last one says how many more there were
    errors = errors_of(body(document))
    assert len(errors) == MAX_FIELD_ERRORS + 1
    assert errors[-1] == ("body", f"{5000 - MAX_FIELD_ERRORS} more errors not shown.")
