"""Payout and status words (contract sections 2 and 3): `{payout}`, `{status}` with a
postback's `statuses:` map, `{original_transaction_id}`; old configs and calls unchanged."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from fakes import ingest_config_data, ingest_conversion, ingest_conversion_data
from pydantic import ValidationError

from postback_relay.domain.config import PostbackSpec, parse_config
from postback_relay.domain.conversion import Conversion
from postback_relay.domain.errors import ConfigError
from postback_relay.domain.render import macro_values, render_postback


def errors_of(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        Conversion.model_validate(data)
    return {".".join(str(p) for p in e["loc"]): e["msg"] for e in caught.value.errors()}


def test_payout_keeps_the_text_sent_like_the_amount() -> None:
    # GIVEN a sale with a payout sent as a string and one sent as a JSON number read as Decimal
    for sent in ("7.50", Decimal("7.50")):
        # WHEN it is validated
        conversion = ingest_conversion(payout=sent)
        # THEN the payout is exact and renders as sent
        assert conversion.payout == Decimal("7.50")
        assert macro_values(conversion, "1", {})["payout"] == "7.50"


@pytest.mark.parametrize(
    ("payout", "words"),
    [("-1", "cannot be negative"), ("1e3", "plain decimal"), (True, "not a boolean"), (None, "cannot be null")],
)
def test_a_bad_payout_is_refused_naming_the_payout(payout: object, words: str) -> None:
    # GIVEN a sale whose payout is not a plain non-negative decimal
    data = {**ingest_conversion_data(), "payout": payout}
    # WHEN it is validated, THEN the error is on `payout`, in its own words
    errors = errors_of(data)
    assert list(errors) == ["payout"]
    assert words in errors["payout"]
    assert "payout" in errors["payout"] or payout is None


def test_a_payout_needs_its_currency_and_a_lead_may_carry_a_payout_alone() -> None:
    # GIVEN a registration with a payout but no currency
    errors = errors_of(ingest_conversion_data(event="registration", amount=None, currency=None, payout="2.00"))
    # THEN the currency is asked for
    assert "a payout needs its currency" in errors["currency"]
    # AND a registration paying its affiliate 2.00 EUR (CPL) without a customer amount is accepted
    lead = ingest_conversion(event="registration", amount=None, currency="EUR", payout="2.00")
    values = macro_values(lead, "1", {})
    assert (values["amount"], values["payout"], values["currency"]) == ("", "2.00", "EUR")


def test_without_a_payout_the_macro_renders_empty_and_old_values_are_unchanged() -> None:
    # GIVEN the contract's sample conversion, sent as before (no payout)
    values = macro_values(ingest_conversion(), "1234567", {"clickid": "c1"})
    # THEN {payout} is empty, {status} is the event's name, {original_transaction_id} empty
    assert (values["payout"], values["status"], values["original_transaction_id"]) == ("", "sale", "")
    # AND the macros every old config used have their old values
    assert (values["amount"], values["currency"], values["event"], values["offer_id"]) == ("25.00", "EUR", "sale", "89")


def test_status_words_map_events_per_postback() -> None:
    # GIVEN a postback mapping registration to `lead`, and one without a map
    mapped = PostbackSpec.model_validate(
        {
            "events": ["registration", "sale"],
            "url": "https://t.example/pb?st={status}&ev={event}",
            "statuses": {"registration": "lead"},
        }
    )
    plain = PostbackSpec.model_validate({"events": ["registration"], "url": "https://t.example/pb?st={status}"})
    # WHEN each renders a registration and a sale
    lead = macro_values(ingest_conversion(event="registration", amount=None, currency=None), "1", {})
    sale = macro_values(ingest_conversion(), "1", {})
    # THEN the mapped event uses the tracker's word, the others the event's own name
    assert render_postback(mapped, lead).url == "https://t.example/pb?st=lead&ev=registration"
    assert render_postback(mapped, sale).url == "https://t.example/pb?st=sale&ev=sale"
    assert render_postback(plain, lead).url == "https://t.example/pb?st=registration"


def test_a_status_word_is_percent_encoded_like_any_value() -> None:
    # GIVEN a status word with a separator and a space
    spec = PostbackSpec.model_validate(
        {"events": ["sale"], "url": "https://t.example/pb?st={status}", "statuses": {"sale": "a&b=c d"}}
    )
    # WHEN it renders, THEN it cannot add a parameter
    assert (
        render_postback(spec, macro_values(ingest_conversion(), "1", {})).url == "https://t.example/pb?st=a%26b%3Dc%20d"
    )


@pytest.mark.parametrize(
    ("statuses", "field", "words"),
    [
        ({"upsell": "x"}, "postbacks.0.statuses", "upsell"),
        ({"sale": ""}, "postbacks.0.statuses.sale", "status word"),
        ({"sale": "a\nb"}, "postbacks.0.statuses.sale", "status word"),
    ],
)
def test_a_bad_statuses_map_refuses_the_config(statuses: dict[str, str], field: str, words: str) -> None:
    # GIVEN a config whose statuses map names an unknown event or an empty or unprintable word
    data = ingest_config_data()
    postbacks: list[dict[str, object]] = list(data["postbacks"])  # type: ignore[call-overload]
    data["postbacks"] = [{**postbacks[0], "statuses": statuses}, *postbacks[1:]]
    # WHEN it is parsed, THEN it is refused naming the field
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert any(path.startswith(field) and words in reason for path, reason in caught.value.errors), caught.value.errors


def test_an_old_config_without_statuses_round_trips_unchanged() -> None:
    # GIVEN the sample config as old configs are written (no statuses, no preset)
    config = parse_config(ingest_config_data())
    # THEN its stored form has no new keys
    from postback_relay.domain.config import dump_config

    assert dump_config(config) == parse_config(ingest_config_data()).model_dump(mode="json", exclude_none=True)
    assert all("statuses" not in p for p in dump_config(config)["postbacks"])  # type: ignore[attr-defined]
