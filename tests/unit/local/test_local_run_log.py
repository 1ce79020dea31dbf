"""The local stack's run log (`make run`): one line a person reads per request and conversion."""

from __future__ import annotations

import json
from typing import Any, cast

from postback_ops.local.apigw import HttpRequest, HttpResponse, Route
from postback_ops.local.stack import LocalRelay, LocalSettings

ROUTE = cast(Route, object())  # the log line only asks whether a route matched


def logged(status: int, answer: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    relay = LocalRelay(LocalSettings(), log=lines.append)
    request = HttpRequest("POST", "/conversions", (), b"{}", "127.0.0.1")
    relay._log_request(request, ROUTE, HttpResponse(status, (), json.dumps(answer).encode()), 0.012)
    return lines


def test_a_repeat_for_an_unknown_affiliate_reads_as_one_sentence() -> None:
    # GIVEN the API's answer to a repeat of a conversion for an affiliate nobody onboarded
    answer = {
        "transaction_id": "T-1",
        "event": "sale",
        "affiliate_id": "1234567",
        "outcome": "unknown_affiliate",
        "postbacks_queued": 0,
        "reason": "No postback configuration for affiliate 1234567.",
        "repeat": True,
    }
    # WHEN it is logged, THEN no stray period sits inside the sentence
    (line,) = logged(200, answer)
    assert "affiliate 1234567., " not in line
    assert "No postback configuration for affiliate 1234567 (a repeat" in line


def test_a_refused_request_is_one_readable_line_not_json() -> None:
    # GIVEN the API's 400 naming two fields
    answer = {
        "error": "invalid_request",
        "message": "The request body is invalid.",
        "errors": [
            {"field": "event", "message": "Input should be 'registration', 'trial', 'sale' or 'rebill'"},
            {"field": "amount", "message": "a sale needs its amount"},
        ],
    }
    # WHEN it is logged
    (line,) = logged(400, answer)
    # THEN one line gives the message and each field's reason, without the JSON punctuation
    assert line.startswith("api       POST /conversions -> 400 (12 ms) The request body is invalid (event: ")
    assert "amount: a sale needs its amount)" in line
    assert "{" not in line and '"' not in line
