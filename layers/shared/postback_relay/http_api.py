"""A resolver for a function behind an HTTP API route (payload format 2.0), on the raw event.

The ingest function has one route. Powertools' `APIGatewayHttpResolver` does what is needed
here (route, an exception-handler registry, the 2.0 answer), but importing it runs
`aws_lambda_powertools.event_handler/__init__`, which imports every resolver (AppSync's
brings asyncio) and every event data class: about a tenth of a cold start, for one route
(measured in docs/benchmarks.md). This module keeps the same face (`app.post`,
`app.exception_handler`, `app.current_event`, `app.append_context`/`app.context`, `Response`)
and answers the same way:
`{"statusCode", "body", "isBase64Encoded", "headers", "cookies"}`, exception handlers looked
up along the exception's MRO, 404 for a route it does not have. What it leaves out: CORS,
compression, middlewares, OpenAPI validation and path parameters (none of them used here).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

_NOT_FOUND = '{"statusCode": 404, "message": "Not found"}'
Handler = TypeVar("Handler", bound=Callable[..., Any])


class content_types:
    APPLICATION_JSON = "application/json"
    TEXT_PLAIN = "text/plain"


class Response[T]:
    """An answer: status, body (text) and headers; `content_type` becomes `Content-Type`."""

    def __init__(
        self,
        status_code: int,
        content_type: str | None = None,
        body: T | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status_code = status_code
        self.body = body
        self.headers: dict[str, str] = dict(headers) if headers else {}
        if content_type:
            self.headers.setdefault("Content-Type", content_type)

    def to_payload(self) -> dict[str, Any]:
        """The payload format 2.0 answer API Gateway turns into the HTTP response."""
        return {
            "statusCode": self.status_code,
            "body": "" if self.body is None else str(self.body),
            "isBase64Encoded": False,
            "headers": self.headers,
            "cookies": [],
        }


class HttpApiRequest:
    """The parts of an HTTP API 2.0 event a route reads. Header names are lower case (as API
    Gateway sends them in 2.0; lowered again here for events built by hand)."""

    def __init__(self, event: Mapping[str, Any]) -> None:
        self.raw_event = event
        self.body: str | None = event.get("body")
        self.is_base64_encoded = bool(event.get("isBase64Encoded", False))
        self.headers: dict[str, str] = {str(k).lower(): v for k, v in (event.get("headers") or {}).items()}
        request_context = event.get("requestContext") or {}
        http = request_context.get("http") or {}
        self.method = str(http.get("method", "")).upper()
        path = str(event.get("rawPath") or "")
        stage = request_context.get("stage", "$default")
        if stage and stage != "$default":
            path = path.removeprefix("/" + stage)  # as Powertools' event: a named stage leads the raw path
        self.path = path


class HttpApiResolver:
    """Routes an HTTP API event to the function registered for its method and path."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], Callable[[], Response[Any]]] = {}
        self._exception_handlers: dict[type[BaseException], Callable[[Any], Response[Any]]] = {}
        self._current_event: HttpApiRequest | None = None
        self.lambda_context: Any = None
        # What the entry point hands the route for one event (an injected service); cleared
        # after each event, as Powertools' resolvers do.
        self.context: dict[str, Any] = {}

    def append_context(self, **values: Any) -> None:
        self.context.update(values)

    @property
    def current_event(self) -> HttpApiRequest:
        if self._current_event is None:
            raise RuntimeError("current_event is only set while an event is resolved")
        return self._current_event

    def route(self, method: str, path: str) -> Callable[[Handler], Handler]:
        def register(function: Handler) -> Handler:
            self._routes[(method.upper(), path)] = function
            return function

        return register

    def post(self, path: str) -> Callable[[Handler], Handler]:
        return self.route("POST", path)

    def exception_handler(self, exc_class: type[BaseException]) -> Callable[[Handler], Handler]:
        def register(function: Handler) -> Handler:
            self._exception_handlers[exc_class] = function
            return function

        return register

    def resolve(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        request = HttpApiRequest(event)
        self._current_event, self.lambda_context = request, context
        try:
            route = self._routes.get((request.method, request.path))
            if route is None:
                answer: Response[Any] = Response(404, content_types.APPLICATION_JSON, _NOT_FOUND)
            else:
                try:
                    answer = route()
                except Exception as exc:
                    handler = self._lookup_exception_handler(type(exc))
                    if handler is None:
                        raise
                    answer = handler(exc)
            return answer.to_payload()
        finally:
            self._current_event = None
            self.context.clear()

    def _lookup_exception_handler(self, exc_class: type[BaseException]) -> Callable[[Any], Response[Any]] | None:
        for cls in exc_class.__mro__:
            if cls in self._exception_handlers:
                return self._exception_handlers[cls]
        return None
