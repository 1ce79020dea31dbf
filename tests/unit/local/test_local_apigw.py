"""The local HTTP API builds the events API Gateway (HTTP API, payload format 2.0) would build."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from postback_ops.local.apigw import HttpRequest, Route, api_routes, build_event, build_response, routes_from_functions
from postback_ops.local.runtime import FunctionSpec, LocalFunction
from postback_ops.template import condition_holds, load_template, with_parameters


def _function(events: dict[str, Any] | None = None) -> LocalFunction:
    spec = FunctionSpec(
        logical_id="IngestFunction",
        code_dir=Path("functions/ingest"),
        module="ingest_handler",
        attribute="lambda_handler",
        environment={},
        timeout_s=10,
        memory_mb=512,
        events=events or {},
    )
    return LocalFunction(spec, lambda event, context: None, region="eu-west-1", account="123456789012")


def _request(**overrides: Any) -> HttpRequest:
    fields: dict[str, Any] = {
        "method": "POST",
        "target": "/conversions?dry=1&tag=a&tag=b",
        "headers": [
            ("Content-Type", "application/json"),
            ("X-Postback-Signature", "v1=abc"),
            ("X-Forwarded-For", "10.0.0.1"),
            ("x-forwarded-for", "10.0.0.2"),
            ("Cookie", "a=1; b=2"),
        ],
        "body": b'{"transaction_id": "T-1"}',
        "source_ip": "127.0.0.1",
    }
    fields.update(overrides)
    return HttpRequest(**fields)


def test_a_post_becomes_a_format_2_event() -> None:
    # GIVEN the POST /conversions route and a signed JSON request
    route = Route("POST", "/conversions", _function())

    # WHEN the request is translated
    event = build_event(_request(), route, {}, host="127.0.0.1:3000")

    # THEN the event has API Gateway's v2 shape: lower-cased, comma-joined headers, raw path and query
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /conversions"
    assert event["rawPath"] == "/conversions"
    assert event["rawQueryString"] == "dry=1&tag=a&tag=b"
    assert event["queryStringParameters"] == {"dry": "1", "tag": "a,b"}
    assert event["headers"]["x-postback-signature"] == "v1=abc"
    assert event["headers"]["x-forwarded-for"] == "10.0.0.1,10.0.0.2"
    assert "cookie" not in event["headers"]
    assert event["cookies"] == ["a=1", "b=2"]
    http = event["requestContext"]["http"]
    assert (http["method"], http["path"], http["sourceIp"]) == ("POST", "/conversions", "127.0.0.1")
    assert event["requestContext"]["stage"] == "$default"
    # AND a JSON body arrives as text, byte for byte (the signature covers the raw body)
    assert event["body"] == '{"transaction_id": "T-1"}'
    assert event["isBase64Encoded"] is False


def test_a_binary_body_arrives_base64_encoded() -> None:
    # GIVEN a body that is not text
    route = Route("POST", "/conversions", _function())
    raw = b"\x00\xff\x10binary"

    # WHEN it is translated
    event = build_event(_request(headers=[("Content-Type", "application/octet-stream")], body=raw), route, {}, host="h")

    # THEN it is base64, flagged as such
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == raw


def test_a_request_without_body_has_no_body_key() -> None:
    # GIVEN a GET without a body
    route = Route("GET", "/health", _function())

    # WHEN it is translated
    event = build_event(_request(method="GET", target="/health", body=b""), route, {}, host="h")

    # THEN the event carries no body and no query parameters, as API Gateway's does
    assert "body" not in event
    assert "queryStringParameters" not in event


def test_a_response_object_is_written_as_is() -> None:
    # GIVEN a function answer in the v2 response shape
    answer = {"statusCode": 202, "headers": {"Content-Type": "application/json"}, "body": '{"ok": true}'}

    # WHEN it becomes the HTTP answer
    response = build_response(answer)

    # THEN status, headers and body are the function's
    assert response.status == 202
    assert ("Content-Type", "application/json") in response.headers
    assert response.body == b'{"ok": true}'


def test_a_base64_response_is_decoded() -> None:
    # GIVEN a base64-encoded answer
    answer = {"statusCode": 200, "body": base64.b64encode(b"\x01\x02").decode(), "isBase64Encoded": True}

    # WHEN it becomes the HTTP answer
    response = build_response(answer)

    # THEN the bytes are sent decoded
    assert response.body == b"\x01\x02"


def test_any_other_return_value_is_inferred_as_200_json() -> None:
    # GIVEN a function that returns a plain dict (format 2.0 infers the response)
    answer = {"hello": "world"}

    # WHEN it becomes the HTTP answer
    response = build_response(answer)

    # THEN it is a 200 with the dict as JSON
    assert response.status == 200
    assert json.loads(response.body) == answer


def test_routes_come_from_the_functions_httpapi_events() -> None:
    # GIVEN a function with the template's HttpApi event and one with a parameterised route
    ingest = _function(
        {"PostConversions": {"Type": "HttpApi", "Properties": {"Method": "post", "Path": "/conversions"}}}
    )
    other = _function({"Any": {"Type": "HttpApi", "Properties": {"Method": "ANY", "Path": "/things/{id}"}}})

    # WHEN the routes are built
    routes = routes_from_functions([other, ingest])

    # THEN the exact route comes first and each matches what API Gateway would match
    assert [r.route_key for r in routes] == ["POST /conversions", "ANY /things/{id}"]
    assert routes[0].match("POST", "/conversions") == {}
    assert routes[0].match("GET", "/conversions") is None
    assert routes[0].match("POST", "/conversions/x") is None
    assert routes[1].match("DELETE", "/things/42") == {"id": "42"}
    assert routes[1].match("GET", "/things/42/more") is None


def test_a_greedy_parameter_takes_the_rest_of_the_path() -> None:
    # GIVEN a {proxy+} route
    route = Route("ANY", "/api/{proxy+}", _function())

    # WHEN a deep path is matched
    # THEN the parameter holds every segment
    assert route.match("GET", "/api/a/b/c") == {"proxy": "a/b/c"}


def _template_functions(template: dict[str, Any]) -> dict[str, LocalFunction]:
    events = template["Resources"]["IngestFunction"]["Properties"]["Events"]
    return {"IngestFunction": _function(events)}


def test_the_http_api_front_serves_ingest_on_its_route_by_default() -> None:
    # GIVEN the template at its defaults (IngestFront=HttpApi)
    template = load_template()
    # WHEN the front's routes are built THEN ingest is on POST /conversions and has no URL
    assert not condition_holds(template, "IngestOnFunctionUrl")
    assert [r.route_key for r in api_routes(template, _template_functions(template))] == ["POST /conversions"]


def test_the_function_url_front_serves_ingest_on_every_path_with_a_url_s_event() -> None:
    # GIVEN the template deployed with IngestFront=FunctionUrl
    template = with_parameters(load_template(), {"IngestFront": "FunctionUrl"})
    functions = _template_functions(template)
    # WHEN the front's routes are built
    assert condition_holds(template, "IngestOnFunctionUrl")
    (route,) = api_routes(template, functions)
    # THEN ingest is reached through its URL alone: every method and path, route key $default
    assert route.function is functions["IngestFunction"]
    assert route.route_key == "$default"
    assert route.match("POST", "/conversions") == {}
    # AND the event is the payload 2.0 event a URL sends: the path as requested, $default
    event = build_event(_request(), route, {}, host="abc.lambda-url.eu-west-1.on.aws")
    assert (event["version"], event["routeKey"], event["rawPath"]) == ("2.0", "$default", "/conversions")
    assert event["requestContext"]["http"]["method"] == "POST"
