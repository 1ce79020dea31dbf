"""Postback rendering: macros replaced by values encoded for where they go."""

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from postback_relay.domain.config import BUILTIN_MACROS, HttpMethod, PostbackSpec
from postback_relay.domain.conversion import Conversion
from postback_relay.domain.errors import ConfigError
from postback_relay.domain.render import RenderedPostback, macro_values, render_postback


def conversion(**changes: Any) -> Conversion:
    data: dict[str, Any] = {
        "transaction_id": "T-2026-000123",
        "event": "sale",
        "offer": {"id": "89", "type": "revshare", "name": "Dating FR"},
        "amount": "25.00",
        "currency": "EUR",
        "link": "http://www.espace-plus.net/r.php?id=1234567&tracker=trID_a1-T9-c123-x_trID",
        "occurred_at": "2026-11-25T12:00:00Z",
    }
    data.update(changes)
    return Conversion.model_validate(data)


TRACKER = {"affid": "a1", "transid": "T9", "clickid": "c123", "whateverid": "x"}


def test_macro_values_cover_every_builtin() -> None:
    # GIVEN the contract's conversion and its tracker values
    # WHEN the macro values are computed
    values = macro_values(conversion(), "1234567", TRACKER)
    # THEN every built-in macro has its value, formatted as the contract says
    assert set(values) == BUILTIN_MACROS | set(TRACKER)
    assert values["amount"] == "25.00"
    assert values["occurred_at"] == "2026-11-25T12:00:00Z"
    assert values["timestamp"] == str(int(datetime(2026, 11, 25, 12, tzinfo=UTC).timestamp()))
    assert (values["event"], values["offer_type"], values["offer_name"]) == ("sale", "revshare", "Dating FR")
    assert values["affiliate_id"] == "1234567"


def test_occurred_at_is_rendered_in_utc() -> None:
    # GIVEN a conversion stamped in UTC+02:00
    paris = datetime(2026, 11, 25, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    # WHEN its macro values are computed
    values = macro_values(conversion(occurred_at=paris), "1", {})
    # THEN occurred_at is the same instant in UTC, RFC 3339 with Z
    assert values["occurred_at"] == "2026-11-25T12:00:00Z"


def test_builtins_win_over_tracker_fields() -> None:
    # GIVEN tracker values that name a built-in macro
    # WHEN the macro values are computed
    values = macro_values(conversion(), "1", {"event": "forged"})
    # THEN the built-in value is used
    assert values["event"] == "sale"


def test_amount_is_rendered_exactly_as_sent() -> None:
    # GIVEN amounts sent with various scales
    # WHEN rendered
    # THEN each keeps its text
    assert [macro_values(conversion(amount=a), "1", {})["amount"] for a in ("7", "7.5", "7.500000")] == [
        "7",
        "7.5",
        "7.500000",
    ]
    assert macro_values(conversion(amount=Decimal("19.90")), "1", {})["amount"] == "19.90"


def test_get_postback_renders_the_contract_example() -> None:
    # GIVEN the contract's sale postback
    spec = PostbackSpec(
        events=("sale",),
        url="https://track.acme.example/postback?cid={clickid}&payout={amount}&cur={currency}&ev={event}&offer={offer_id}",
    )
    # WHEN rendered for the example conversion
    rendered = render_postback(spec, macro_values(conversion(), "1234567", TRACKER))
    # THEN the URL carries the values
    assert rendered == RenderedPostback(
        method=HttpMethod.GET,
        url="https://track.acme.example/postback?cid=c123&payout=25.00&cur=EUR&ev=sale&offer=89",
        body=None,
        content_type=None,
    )


@pytest.mark.parametrize(
    "clickid",
    ["a&admin=1", "x#frag", "a/../../b", "a?b=c", "@evil.example", "{amount}", "100%", "a b+c", "..", "é"],
)
def test_values_cannot_add_parameters_or_change_the_path(clickid: str) -> None:
    # GIVEN a hostile click ID
    spec = PostbackSpec(events=("sale",), url="https://track.acme.example/pb/{clickid}?cid={clickid}&e={event}")
    # WHEN rendered
    rendered = render_postback(spec, {"clickid": clickid, "event": "sale"})
    # THEN host, path segments and parameters are unchanged, and the value reads back whole
    parts = urlsplit(rendered.url)
    assert parts.netloc == "track.acme.example"
    assert parts.path.count("/") == 2
    assert ".." not in parts.path.split("/")
    assert parts.fragment == ""
    assert parse_qs(parts.query, keep_blank_values=True) == {"cid": [clickid], "e": ["sale"]}


def test_substitution_is_one_pass() -> None:
    # GIVEN a value that looks like a macro
    spec = PostbackSpec(events=("sale",), url="https://x.example/?a={clickid}&b={amount}")
    # WHEN rendered
    rendered = render_postback(spec, {"clickid": "{amount}", "amount": "1"})
    # THEN it is not expanded
    assert rendered.url == "https://x.example/?a=%7Bamount%7D&b=1"


def test_form_body_values_are_percent_encoded() -> None:
    # GIVEN a POST postback with a form body (the default content type)
    spec = PostbackSpec(events=("sale",), url="https://x.example/pb", method="POST", body="cid={clickid}&amt={amount}")
    # WHEN rendered with a value holding & and =
    rendered = render_postback(spec, {"clickid": "a&b=c d", "amount": "1.50"})
    # THEN the body keeps two fields and the content type is form
    assert rendered.body == "cid=a%26b%3Dc%20d&amt=1.50"
    assert parse_qs(rendered.body) == {"cid": ["a&b=c d"], "amt": ["1.50"]}
    assert rendered.content_type == "application/x-www-form-urlencoded"


def test_json_body_values_are_json_escaped() -> None:
    # GIVEN a POST postback with a JSON body
    spec = PostbackSpec(
        events=("sale",),
        url="https://x.example/pb",
        method="POST",
        content_type="application/json",
        body='{"cid": "{clickid}", "amount": "{amount}"}',
    )
    hostile = 'x", "admin": true, "y": "\\\n\u2028'
    # WHEN rendered with a value holding quotes, backslashes and newlines
    rendered = render_postback(spec, {"clickid": hostile, "amount": "2"})
    # THEN the body is valid JSON with exactly the template's keys
    assert rendered.body is not None
    assert json.loads(rendered.body) == {"cid": hostile, "amount": "2"}
    assert rendered.content_type == "application/json"


def test_post_without_body() -> None:
    # GIVEN a POST postback without a body
    spec = PostbackSpec(events=("sale",), url="https://x.example/pb?c={clickid}", method="POST")
    # WHEN rendered
    rendered = render_postback(spec, {"clickid": "c"})
    # THEN there is no body and no content type
    assert (rendered.method, rendered.body, rendered.content_type) == (HttpMethod.POST, None, None)


def test_missing_macro_value_is_a_config_error() -> None:
    # GIVEN values lacking a macro the template uses
    spec = PostbackSpec(events=("sale",), url="https://x.example/?c={clickid}")
    # WHEN rendered
    # THEN a domain error names the macro
    with pytest.raises(ConfigError, match="clickid"):
        render_postback(spec, {})
