"""The local HTTP API serves requests over loopback through the function, as API Gateway does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from postback_ops.local.apigw import LocalHttpApi, Route
from postback_ops.local.runtime import FunctionSpec, LocalFunction


class EchoHandler:
    """An ingest stand-in: answers 202 with what it saw, or raises when told to."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.contexts: list[Any] = []

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.events.append(event)
        self.contexts.append(context)
        if event.get("body") == "crash":
            raise RuntimeError("the function crashed")
        return {
            "statusCode": 202,
            "headers": {"content-type": "application/json", "x-request": event["requestContext"]["requestId"]},
            "body": json.dumps({"seen": event.get("body")}),
        }


@pytest.fixture
def served() -> Iterator[tuple[LocalHttpApi, EchoHandler]]:
    handler = EchoHandler()
    spec = FunctionSpec("IngestFunction", Path("."), "ingest_handler", "lambda_handler", {}, 10, 512, {})
    function = LocalFunction(spec, handler, region="eu-west-1", account="123456789012")
    errors: list[str] = []
    api = LocalHttpApi([Route("POST", "/conversions", function)], port=0, on_error=errors.append)
    api.start()
    try:
        yield api, handler
    finally:
        api.stop()


def test_a_request_reaches_the_function_and_its_answer_comes_back(served: tuple[LocalHttpApi, EchoHandler]) -> None:
    # GIVEN the API in front of a function
    api, handler = served

    # WHEN a JSON body is posted
    answer = requests.post(
        f"{api.url}/conversions", data=b'{"a": 1}', headers={"Content-Type": "application/json"}, timeout=5
    )

    # THEN the function got it byte for byte with a Lambda context, and its answer is the HTTP answer
    assert answer.status_code == 202
    assert answer.json() == {"seen": '{"a": 1}'}
    assert answer.headers["x-request"] == handler.events[0]["requestContext"]["requestId"]
    assert handler.contexts[0].function_name == "local-IngestFunction"
    assert handler.contexts[0].get_remaining_time_in_millis() > 0


def test_an_unknown_route_is_api_gateways_404(served: tuple[LocalHttpApi, EchoHandler]) -> None:
    # GIVEN the API
    api, handler = served

    # WHEN a route the template does not declare is called
    answer = requests.get(f"{api.url}/conversions", timeout=5)

    # THEN API Gateway's own 404 comes back and the function is not invoked
    assert answer.status_code == 404
    assert answer.json() == {"message": "Not Found"}
    assert handler.events == []


def test_a_function_that_raises_is_api_gateways_500(served: tuple[LocalHttpApi, EchoHandler]) -> None:
    # GIVEN the API in front of a function that will crash
    api, _ = served

    # WHEN it is called
    answer = requests.post(f"{api.url}/conversions", data=b"crash", headers={"Content-Type": "text/plain"}, timeout=5)

    # THEN the caller gets API Gateway's 500, not a traceback
    assert answer.status_code == 500
    assert answer.json() == {"message": "Internal Server Error"}


def test_a_chunked_body_reaches_the_function_whole(served: tuple[LocalHttpApi, EchoHandler]) -> None:
    # GIVEN the API
    api, handler = served

    # WHEN a body is sent with chunked transfer encoding (no Content-Length)
    answer = requests.post(
        f"{api.url}/conversions",
        data=iter([b'{"a": ', b"1}"]),
        headers={"Content-Type": "application/json"},
        timeout=5,
    )

    # THEN the function gets the whole body
    assert answer.status_code == 202
    assert handler.events[0]["body"] == '{"a": 1}'


def test_a_payload_over_api_gateways_limit_is_refused_before_the_function(
    served: tuple[LocalHttpApi, EchoHandler],
) -> None:
    # GIVEN the API
    api, handler = served

    # WHEN a body over 10 MB is posted
    answer = requests.post(f"{api.url}/conversions", data=b"x" * (10 * 1024 * 1024 + 1), timeout=30)

    # THEN API Gateway's own 413 comes back and the function never runs
    assert answer.status_code == 413
    assert handler.events == []


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"x" * (7 * 1024 * 1024), "application/json"),  # over 6 MB as it is
        (b"\x00" * (5 * 1024 * 1024), "application/octet-stream"),  # 5 MB, base64-encoded past 6 MB
    ],
    ids=["7-MB-text", "5-MB-binary"],
)
def test_a_payload_over_lambdas_invoke_limit_is_aws_own_500_before_the_function(
    served: tuple[LocalHttpApi, EchoHandler], body: bytes, content_type: str
) -> None:
    # GIVEN the API
    api, handler = served

    # WHEN a body under API Gateway's 10 MB but making an event over Lambda's 6 MB is posted
    answer = requests.post(f"{api.url}/conversions", data=body, headers={"Content-Type": content_type}, timeout=30)

    # THEN the caller gets what AWS answers then: the HTTP API's 500, Lambda having refused the
    # invoke (413 RequestEntityTooLargeException); the function never runs
    assert answer.status_code == 500
    assert answer.json() == {"message": "Internal Server Error"}
    assert handler.events == []


def test_a_payload_just_under_lambdas_invoke_limit_reaches_the_function(
    served: tuple[LocalHttpApi, EchoHandler],
) -> None:
    # GIVEN the API
    api, handler = served

    # WHEN a 5 MB text body is posted (its event stays under 6 MB)
    answer = requests.post(
        f"{api.url}/conversions", data=b"x" * (5 * 1024 * 1024), headers={"Content-Type": "text/plain"}, timeout=30
    )

    # THEN the function gets it (ingest answers it 413 itself, over MAX_BODY_BYTES)
    assert answer.status_code == 202
    assert len(handler.events) == 1
