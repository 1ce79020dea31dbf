"""The portal's HTTP plumbing: the request (form, query, cookies), the answers (pages rendered
by Jinja2 with autoescape, every one with the security headers), the session cookie, the
portal secret and the error pages. The routes are in portal_handler.

Nothing here logs a request's query, body or cookies: they carry the link and the session.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from postback_relay.domain.errors import InfrastructureError
from postback_relay.observability import handler_logger

if TYPE_CHECKING:
    from jinja2 import Environment

logger = handler_logger()

HERE = Path(__file__).resolve().parent
PREFIX = "/portal"
COOKIE = "portal_session"
MAX_FORM_BYTES = 65536
MAX_FIELDS = 400
SECRET_MAX_AGE_S = 300
# No inline script or style anywhere: the one script and the one style sheet are files.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
STATIC = {"portal.css": "text/css; charset=utf-8", "portal.js": "text/javascript; charset=utf-8"}


class FormTooLarge(Exception):
    """A form body over MAX_FORM_BYTES (answered 413)."""


class PortalRequest:
    """The parts of an HTTP API (2.0) event the portal reads."""

    def __init__(self, event: Mapping[str, Any]) -> None:
        context = event.get("requestContext") or {}
        self.method = str((context.get("http") or {}).get("method", "GET")).upper()
        path = str(event.get("rawPath") or "")
        stage = context.get("stage", "$default")
        if stage and stage != "$default":
            path = path.removeprefix("/" + stage)
        self.path = path.rstrip("/") or "/"
        self.headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
        self.query: dict[str, str] = {
            str(k): str(v) for k, v in (event.get("queryStringParameters") or {}).items() if isinstance(v, str)
        }
        self.cookies = _cookies(event.get("cookies") or [], self.headers.get("cookie", ""))
        self._event = event
        self._form: dict[str, list[str]] | None = None

    @property
    def https(self) -> bool:
        return self.headers.get("x-forwarded-proto", "").lower() == "https"

    @property
    def form(self) -> dict[str, list[str]]:
        """The urlencoded form body (fields may repeat: checkboxes)."""
        if self._form is None:
            body = self._event.get("body") or ""
            if len(body) > MAX_FORM_BYTES * 2:
                raise FormTooLarge
            if self._event.get("isBase64Encoded"):
                try:
                    body = base64.b64decode(body, validate=False).decode("utf-8", errors="replace")
                except (binascii.Error, ValueError):
                    body = ""
            if len(body.encode("utf-8", errors="replace")) > MAX_FORM_BYTES:
                raise FormTooLarge
            try:
                self._form = parse_qs(body, keep_blank_values=True, max_num_fields=MAX_FIELDS)
            except ValueError as exc:
                raise FormTooLarge from exc
        return self._form

    def field(self, name: str) -> str:
        values = self.form.get(name) or [""]
        return values[0]

    def fields(self, name: str) -> list[str]:
        return self.form.get(name) or []

    def optional(self, name: str) -> str | None:
        """The field's value, or None when the form did not send it."""
        return self.field(name) if name in self.form else None


def _cookies(listed: list[Any], header: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in [*map(str, listed), *header.split(";")]:
        name, sep, value = part.strip().partition("=")
        if sep and name and name not in found:
            found[name] = value
    return found


class Answer:
    """One HTTP answer in payload format 2.0, with the security headers."""

    def __init__(
        self,
        status: int,
        body: str = "",
        *,
        content_type: str = "text/html; charset=utf-8",
        headers: Mapping[str, str] | None = None,
        cookies: list[str] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.headers = {**SECURITY_HEADERS, "Content-Type": content_type, **(headers or {})}
        self.cookies = cookies or []

    def to_payload(self) -> dict[str, Any]:
        return {
            "statusCode": self.status,
            "body": self.body,
            "isBase64Encoded": False,
            "headers": self.headers,
            "cookies": self.cookies,
        }


def redirect(location: str, *, cookies: list[str] | None = None) -> Answer:
    return Answer(303, "", headers={"Location": location}, cookies=cookies)


def session_cookie(value: str, *, max_age_s: int, https: bool) -> str:
    """HttpOnly, SameSite=Strict, the portal's path only; Secure on https."""
    cookie = f"{COOKIE}={value}; Path={PREFIX}; Max-Age={max(0, max_age_s)}; HttpOnly; SameSite=Strict"
    return cookie + ("; Secure" if https else "")


def json_answer(status: int, data: object) -> Answer:
    return Answer(status, json.dumps(data), content_type="application/json")


def static_answer(name: str) -> Answer | None:
    content_type = STATIC.get(name)
    if content_type is None:
        return None
    body = (HERE / "static" / name).read_text(encoding="utf-8")
    return Answer(200, body, content_type=content_type, headers={"Cache-Control": "public, max-age=300"})


_environment: list[Environment] = []


def pages() -> Environment:
    """Jinja2, autoescaping every template, loaded on the first page (not at cold start)."""
    if not _environment:
        from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

        _environment.append(
            Environment(
                loader=FileSystemLoader(HERE / "templates"),
                autoescape=select_autoescape(default=True, default_for_string=True),
                undefined=StrictUndefined,
                trim_blocks=True,
                lstrip_blocks=True,
            )
        )
    return _environment[0]


def page(status: int, template: str, **values: Any) -> Answer:
    return Answer(status, pages().get_template(template).render(prefix=PREFIX, **values))


def message_page(status: int, title: str, message: str) -> Answer:
    """A page that says one thing (an expired link, a refused form) and nothing else."""
    return page(status, "message.html", title=title, message=message)


_providers: list[Any] = []


def portal_secret(name: str) -> bytes:
    """The stack's portal secret, cached for SECRET_MAX_AGE_S. The function's own provider, not
    Powertools' shared default: in one process (the local stack) ingest keeps its own."""
    from aws_lambda_powertools.utilities import parameters

    from postback_relay import wiring

    if not _providers:
        _providers.append(parameters.SecretsProvider(boto3_client=wiring.aws_client("secretsmanager")))
    try:
        secret = _providers[0].get(name, max_age=SECRET_MAX_AGE_S)
    except parameters.exceptions.GetParameterError as exc:
        raise InfrastructureError("The portal secret cannot be read.") from exc
    value = secret if isinstance(secret, bytes) else str(secret or "").encode()
    if len(value) < 16:
        raise InfrastructureError("The portal secret is missing or too short.")
    return value


Route = Callable[[PortalRequest], Answer]
