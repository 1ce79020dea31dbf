"""A local API Gateway HTTP API: each request becomes a payload format 2.0 event.

The server matches the request against the routes the template declares (`HttpApi` events
of the functions; with IngestFront=FunctionUrl, the ingest function's URL: every method and
path, route key `$default`, the same payload 2.0 event a Function URL sends), builds the
event API Gateway would build, invokes the function in-process
and writes its answer back, with API Gateway's own answers for what never reaches a
function (404 for an unknown route, 413 over 10 MB, 500 for an event over Lambda's 6 MB
invoke payload) and 500 when the function raises.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from postback_ops.local.runtime import LocalFunction
from postback_ops.template import condition_holds, resources_of_type

# API Gateway's HTTP API refuses larger payloads itself, before any function runs.
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
# Lambda's synchronous invoke takes a request payload (the event's JSON) of 6 MB at most; a
# larger one is refused (RequestEntityTooLargeException, 413) and the HTTP API answers the
# caller 500 {"message": "Internal Server Error"}: "If the Lambda API rejects the invocation
# request, API Gateway returns a 500 error code" (Lambda developer guide, "Handling Lambda
# errors with an API Gateway API"). So a body between about 6 and 10 MB gets a 5xx from AWS
# itself, the function never running (docs/openapi.yaml, README).
MAX_INVOKE_PAYLOAD_BYTES = 6 * 1024 * 1024

# Bodies of these types reach the function as text; anything else is base64, as API Gateway does.
_TEXT_TYPES = re.compile(r"^(text/.*|application/(json|.*\+json|xml|.*\+xml|x-www-form-urlencoded|javascript))", re.I)


@dataclass(frozen=True)
class Route:
    """One `METHOD /path` route of the HTTP API and the function behind it."""

    method: str  # upper case, or ANY
    path: str  # may hold {name} and {name+} parameters; "$default" matches everything
    function: LocalFunction

    @property
    def route_key(self) -> str:
        return "$default" if self.path == "$default" else f"{self.method} {self.path}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if self.path == "$default":
            return {}
        if self.method not in ("ANY", method):
            return None
        pattern = re.sub(
            r"\\\{([A-Za-z0-9_]+)(\\\+)?\\\}",
            lambda m: f"(?P<{m.group(1)}>.+)" if m.group(2) else f"(?P<{m.group(1)}>[^/]+)",
            re.escape(self.path),
        )
        found = re.fullmatch(pattern, path)
        return found.groupdict() if found else None


def routes_from_functions(functions: Sequence[LocalFunction]) -> list[Route]:
    """The HttpApi routes the template gives the functions, most specific first."""
    routes: list[Route] = []
    for function in functions:
        for event in function.spec.events.values():
            if event.get("Type") != "HttpApi":
                continue
            props = event.get("Properties") or {}
            path = str(props.get("Path", "$default"))
            method = str(props.get("Method", "ANY")).upper()
            routes.append(Route("ANY" if method in ("*", "ANY") else method, path, function))
    # API Gateway prefers exact routes over parameterised ones and $default last.
    return sorted(routes, key=lambda r: (r.path == "$default", "{" in r.path, -len(r.path)))


def function_url_routes(template: Mapping[str, Any], functions: Mapping[str, LocalFunction]) -> list[Route]:
    """A function URL the template creates (its Condition holding) as a `$default` route: every
    method and path reach the function, with the payload 2.0 event a URL sends (routeKey
    `$default`), which the HTTP API's is too."""
    routes = []
    for logical_id, resource in resources_of_type(template, "AWS::Lambda::Url").items():
        condition = resource.get("Condition")
        if condition and not condition_holds(template, condition):
            continue
        target = resource["Properties"]["TargetFunctionArn"]
        name = str(target.get("Ref") or target.get("Fn::GetAtt", [""])[0]).split(".", 1)[0]
        if name not in functions:
            raise ValueError(f"{logical_id}: its target {name} is no function of the template")
        routes.append(Route("ANY", "$default", functions[name]))
    return routes


def api_routes(template: Mapping[str, Any], functions: Mapping[str, LocalFunction]) -> list[Route]:
    """What the stack's front serves: the HTTP API's routes, except that a function with a URL
    (IngestFront=FunctionUrl) is reached through its URL alone, as the platform then calls it."""
    urls = function_url_routes(template, functions)
    behind_urls = {id(route.function) for route in urls}
    routes = [r for r in routes_from_functions(list(functions.values())) if id(r.function) not in behind_urls]
    return [*routes, *urls]


@dataclass(frozen=True)
class HttpRequest:
    method: str
    target: str  # path and query as on the request line
    headers: Sequence[tuple[str, str]]
    body: bytes
    source_ip: str
    protocol: str = "HTTP/1.1"


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Sequence[tuple[str, str]]
    body: bytes


def build_event(request: HttpRequest, route: Route, path_parameters: Mapping[str, str], *, host: str) -> dict[str, Any]:
    """The API Gateway HTTP API (payload format 2.0) event for one request."""
    split = urlsplit(request.target)
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        # Repeated headers arrive comma-joined in format 2.0.
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    query: dict[str, str] = {}
    for name, value in parse_qsl(split.query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    now = datetime.now(UTC)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": split.path,
        "rawQueryString": split.query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": host,
            "domainPrefix": host.split(".", 1)[0],
            "http": {
                "method": request.method,
                "path": split.path,
                "protocol": request.protocol,
                "sourceIp": request.source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": uuid.uuid4().hex[:16],
            "routeKey": route.route_key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    if request.body:
        content_type = headers.get("content-type", "")
        try:
            text = request.body.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None and (not content_type or _TEXT_TYPES.match(content_type)):
            event["body"] = text
        else:
            event["body"] = base64.b64encode(request.body).decode("ascii")
            event["isBase64Encoded"] = True
    return event


def build_response(result: Any) -> HttpResponse:
    """Turn what the function returned into the HTTP answer, as API Gateway (format 2.0) does."""
    if not (isinstance(result, dict) and "statusCode" in result):
        # Format 2.0 infers a 200 JSON answer from anything that is not a response object.
        body = result if isinstance(result, str) else json.dumps(result)
        return HttpResponse(200, [("content-type", "application/json")], body.encode())
    headers: list[tuple[str, str]] = [(k, str(v)) for k, v in (result.get("headers") or {}).items()]
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((name, str(v)) for v in values)
    headers.extend(("set-cookie", c) for c in result.get("cookies") or [])
    raw = result.get("body")
    if raw is None:
        payload = b""
    elif result.get("isBase64Encoded"):
        payload = base64.b64decode(raw)
    else:
        payload = str(raw).encode()
    return HttpResponse(int(result["statusCode"]), headers, payload)


def invoke_payload_too_large(event: Mapping[str, Any]) -> bool:
    """Whether Lambda would refuse to be invoked with this event (over its 6 MB payload)."""
    return len(json.dumps(event, ensure_ascii=False).encode()) > MAX_INVOKE_PAYLOAD_BYTES


def _gateway_answer(status: int, message: str) -> HttpResponse:
    body = json.dumps({"message": message}).encode()
    return HttpResponse(status, [("content-type", "application/json")], body)


RequestLog = Callable[[HttpRequest, Route | None, HttpResponse, float], None]


class _GatewayHandler(BaseHTTPRequestHandler):
    """One connection to the local HTTP API: read the request as API Gateway does (its payload
    limit included), hand it to `api`, write the answer. A subclass sets `api` and `default_host`."""

    protocol_version = "HTTP/1.1"
    api: LocalHttpApi
    default_host: str

    def _serve(self) -> None:
        body = self._read_body()
        if body is None:
            self._write(_gateway_answer(413, "Request Entity Too Large"), close=True)
            return
        request = HttpRequest(
            method=self.command,
            target=self.path,
            headers=list(self.headers.items()),
            body=body,
            source_ip=self.client_address[0],
            protocol=self.request_version,
        )
        self._write(self.api.handle(request, host=self.headers.get("host") or self.default_host))

    def _read_body(self) -> bytes | None:
        """The request body, chunked or not; None when it is over API Gateway's limit."""
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            return self._read_chunked()
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_PAYLOAD_BYTES:
            self._discard(length)
            return None
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes | None:
        chunks: list[bytes] = []
        total = 0
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            total += size
            if total > MAX_PAYLOAD_BYTES:
                return None
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline().strip():  # trailers
            pass
        return b"".join(chunks)

    def _discard(self, length: int) -> None:
        """Read an oversized body off the socket anyway (within reason): closing on unread data
        resets the connection, and the client would never see the 413."""
        remaining = min(length, 4 * MAX_PAYLOAD_BYTES)
        while remaining > 0 and (chunk := self.rfile.read(min(remaining, 65536))):
            remaining -= len(chunk)

    def _write(self, response: HttpResponse, *, close: bool = False) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("content-length", str(len(response.body)))
        if close:
            # The unread body is still on the socket: this connection cannot be reused.
            self.send_header("connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are logged one per line by `on_request`, not on stderr."""


class LocalHttpApi:
    """The HTTP API on 127.0.0.1: `start()`, `url`, `stop()`."""

    def __init__(
        self,
        routes: Sequence[Route],
        *,
        host: str = "127.0.0.1",
        port: int = 3000,
        on_request: RequestLog | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.routes = list(routes)
        self._on_request = on_request
        self._on_error = on_error

        class Handler(_GatewayHandler):
            pass

        Handler.api = self
        Handler.default_host = f"{host}:{port}"
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def handle(self, request: HttpRequest, *, host: str) -> HttpResponse:
        started = time.monotonic()
        path = urlsplit(request.target).path
        for route in self.routes:
            params = route.match(request.method, path)
            if params is None:
                continue
            event = build_event(request, route, params, host=host)
            if invoke_payload_too_large(event):
                response = _gateway_answer(500, "Internal Server Error")
                break
            try:
                response = build_response(route.function.invoke(event))
            except Exception:  # noqa: BLE001 - API Gateway answers 500 for any function error
                if self._on_error:
                    self._on_error(traceback.format_exc())
                response = _gateway_answer(500, "Internal Server Error")
            break
        else:
            route = None
            response = _gateway_answer(404, "Not Found")
        if self._on_request:
            self._on_request(request, route, response, time.monotonic() - started)
        return response

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-http-api", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)
