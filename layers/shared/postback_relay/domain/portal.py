"""The affiliate's portal: signed links, sessions and CSRF tokens (contract section 7).

A link and a session are the same kind of token: `<payload>.<mac>`, both base64url, the
payload a small JSON object and the mac an HMAC-SHA256 of it with the stack's portal secret
(each kind under its own label, so a link is never taken for a session). Both carry the
affiliate, an ID, an expiry (unix seconds) and the affiliate's revocation epoch when made:
`postback portal revoke` raises the epoch, which ends every earlier link and session.
A CSRF token is an HMAC of the session's ID (or, on the link's page, of the link's ID).
"""

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from postback_relay.domain.errors import DurationError, PortalAccessError

MAX_LINK_LIFETIME = timedelta(days=30)
DEFAULT_LINK_LIFETIME = "7d"
SESSION_LIFETIME_S = 8 * 3600  # a session never outlives its link either
_TOKEN_CHARS = 2048
_LIFETIME = re.compile(r"(?P<amount>\d{1,6})(?P<unit>[mhd])")
_UNIT_MINUTES = {"m": 1, "h": 60, "d": 1440}


class AccessProblem(StrEnum):
    INVALID = "invalid"
    EXPIRED = "expired"
    REVOKED = "revoked"
    USED = "used"
    SIGNED_OUT = "signed_out"


_MESSAGES = {
    AccessProblem.INVALID: "This link is not valid. Ask your contact at the network for a new one.",
    AccessProblem.EXPIRED: "This link has expired. Ask your contact at the network for a new one.",
    AccessProblem.REVOKED: "This link has been revoked. Ask your contact at the network for a new one.",
    AccessProblem.USED: (
        "This link has already been used. Each link opens the portal once: ask your contact for a new one."
    ),
    AccessProblem.SIGNED_OUT: "This session has ended. Ask your contact at the network for a new link.",
}
_SESSION_MESSAGES = {
    AccessProblem.INVALID: "Your session is not valid. Open the portal again from your link.",
    AccessProblem.EXPIRED: "Your session has expired. Ask your contact at the network for a new link.",
    AccessProblem.REVOKED: "Your session has been ended by the network. Ask your contact for a new link.",
    AccessProblem.SIGNED_OUT: "You have signed out. To come back, ask your contact at the network for a new link.",
}


def refused(problem: AccessProblem, *, session: bool = False) -> PortalAccessError:
    messages = _SESSION_MESSAGES if session else _MESSAGES
    return PortalAccessError(problem.value, messages.get(problem, _MESSAGES[problem]))


@dataclass(frozen=True)
class PortalPass:
    """A link (`kind` "link") or a session (`kind` "session") of one affiliate."""

    kind: str
    affiliate_id: str
    pass_id: str
    expires_at: int
    epoch: int


def link_lifetime(text: str) -> timedelta:
    """`--expires`: `90m`, `12h`, `7d`, at most 30 days; DurationError otherwise."""
    match = _LIFETIME.fullmatch(text.strip())
    if match is None or int(match["amount"]) == 0:
        raise DurationError(f"{text!r} is not a duration: write minutes, hours or days, like 90m, 12h or 7d.")
    lifetime = timedelta(minutes=int(match["amount"]) * _UNIT_MINUTES[match["unit"]])
    if lifetime > MAX_LINK_LIFETIME:
        raise DurationError(f"{text!r} is longer than a portal link may last (30d).")
    return lifetime


def new_pass_id() -> str:
    return secrets.token_hex(16)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, kind: str, payload: str) -> str:
    return _b64(hmac.new(secret, f"portal-{kind}|{payload}".encode(), hashlib.sha256).digest())


def sign_pass(portal_pass: PortalPass, secret: bytes) -> str:
    body = {
        "a": portal_pass.affiliate_id,
        "i": portal_pass.pass_id,
        "e": portal_pass.expires_at,
        "v": portal_pass.epoch,
    }
    payload = _b64(json.dumps(body, separators=(",", ":")).encode())
    return f"{payload}.{_mac(secret, portal_pass.kind, payload)}"


def read_pass(token: str | None, kind: str, secret: bytes, *, now: float) -> PortalPass:
    """The pass a token carries, if its mac is right and it has not expired (the epoch and
    one-time use are the store's to check). PortalAccessError otherwise."""
    session = kind == "session"
    if not token or len(token) > _TOKEN_CHARS or token.count(".") != 1:
        raise refused(AccessProblem.INVALID, session=session)
    payload, mac = token.split(".")
    if not hmac.compare_digest(mac.encode(), _mac(secret, kind, payload).encode()):
        raise refused(AccessProblem.INVALID, session=session)
    try:
        body = json.loads(_unb64(payload))
        found = PortalPass(kind, str(body["a"]), str(body["i"]), int(body["e"]), int(body["v"]))
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise refused(AccessProblem.INVALID, session=session) from exc
    if found.expires_at <= now:
        raise refused(AccessProblem.EXPIRED, session=session)
    return found


def new_link(affiliate_id: str, *, epoch: int, lifetime: timedelta, now: float) -> PortalPass:
    return PortalPass("link", affiliate_id, new_pass_id(), int(now + lifetime.total_seconds()), epoch)


def link_url(api_url: str, token: str) -> str:
    """Where a link opens: the portal's link page, the token in the query (API Gateway's access
    log writes the path only, and the portal never logs a query)."""
    return f"{api_url.rstrip('/')}/portal/link?t={token}"


def csrf_token(secret: bytes, pass_id: str) -> str:
    return hmac.new(secret, f"portal-csrf|{pass_id}".encode(), hashlib.sha256).hexdigest()[:40]


def csrf_ok(secret: bytes, pass_id: str, token: str | None) -> bool:
    # Bytes: compare_digest refuses str with characters beyond ASCII, which a form may carry.
    return bool(token) and hmac.compare_digest(str(token).encode(), csrf_token(secret, pass_id).encode())
