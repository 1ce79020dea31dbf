"""postback_relay.http_api answers as Powertools' APIGatewayHttpResolver does for one route."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler import Response as PowertoolsResponse

from postback_relay.http_api import HttpApiResolver, Response, content_types

EVENT = json.loads((Path(__file__).resolve().parents[3] / "events" / "ingest_revshare.json").read_text())


class Refused(Exception):
    pass


class Teapot(Refused):
    pass


def _apps() -> tuple[Any, Any]:
    theirs, ours = APIGatewayHttpResolver(), HttpApiResolver()
    for app, response in ((theirs, PowertoolsResponse), (ours, Response)):

        def bind(app: Any = app, response: Any = response) -> None:
            def post() -> Any:
                event = app.current_event
                body = event.body or ""
                if body == "refuse":
                    raise Teapot("no")
                if body == "crash":
                    raise KeyError("boom")
                headers = {"X-Seen": event.headers.get("x-postback-timestamp", "-")}
                return response(202, content_types.APPLICATION_JSON, '{"ok":true}', headers)

            def refused(error: Refused) -> Any:
                return response(418, content_types.APPLICATION_JSON, json.dumps({"error": str(error)}))

            # Registered without the decorator syntax: `app` is either resolver, so typed Any.
            app.post("/conversions")(post)
            app.exception_handler(Refused)(refused)

        bind()
    return theirs, ours


def _event(body: str, **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = copy.deepcopy(EVENT)
    event["body"] = body
    event.update(changes)
    return event


@pytest.mark.parametrize("body", ["{}", "refuse"])
def test_answers_match_powertools(body: str) -> None:
    theirs, ours = _apps()
    assert ours.resolve(_event(body), None) == theirs.resolve(_event(body), None)


def test_an_unhandled_error_propagates_as_with_powertools() -> None:
    theirs, ours = _apps()
    with pytest.raises(KeyError):
        theirs.resolve(_event("crash"), None)
    with pytest.raises(KeyError):
        ours.resolve(_event("crash"), None)


def test_another_route_is_404_and_a_named_stage_is_stripped() -> None:
    _, ours = _apps()
    assert ours.resolve(_event("{}", rawPath="/other"), None)["statusCode"] == 404
    staged = _event("{}", rawPath="/prod/conversions")
    staged["requestContext"] = {**staged["requestContext"], "stage": "prod"}
    assert ours.resolve(staged, None)["statusCode"] == 202


def test_headers_are_read_case_insensitively() -> None:
    _, ours = _apps()
    event = _event("{}")
    event["headers"] = {"X-Postback-Timestamp": "123"}
    assert ours.resolve(event, None)["headers"]["X-Seen"] == "123"
