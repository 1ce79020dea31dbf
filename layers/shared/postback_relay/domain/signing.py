"""Request signatures: the platform's conversion requests (checked on ingest) and, optionally,
the postbacks we send (Standard Webhooks, so that an affiliate can verify them with any of
its libraries).
"""

import base64
import hashlib
import hmac
import re

from postback_relay.domain.config import signing_key
from postback_relay.domain.errors import ConfigError, SignatureError

SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_S = 300
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_HEX_SIGNATURE = re.compile(r"^[0-9a-f]{64}$")


def _conversion_mac(secret: str, timestamp: str, body: bytes) -> str:
    message = timestamp.encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign_conversion_request(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-Postback-Signature` value for a conversion request: `v1=<hex HMAC-SHA256>` of
    `"<timestamp>.<raw body>"`."""
    return f"{SIGNATURE_VERSION}={_conversion_mac(secret, str(timestamp), body)}"


def verify_conversion_request(
    secret: str,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    *,
    now: float,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> None:
    """Raise SignatureError unless the request is signed with `secret` within `tolerance_s` of `now`.

    The signature header may carry several `v1=<hex>` values separated by commas or spaces
    (while a secret is rotated, the platform signs with both); one matching is enough.
    """
    if not secret:
        raise SignatureError("no signing secret is configured")
    if timestamp is None or not timestamp.strip():
        raise SignatureError("the X-Postback-Timestamp header is missing")
    if signature is None or not signature.strip():
        raise SignatureError("the X-Postback-Signature header is missing")
    stamp = timestamp.strip()
    if not _TIMESTAMP.fullmatch(stamp):
        raise SignatureError("X-Postback-Timestamp must be unix seconds (an integer)")
    if abs(now - int(stamp)) > tolerance_s:
        raise SignatureError(f"X-Postback-Timestamp is more than {tolerance_s} seconds away from the server's time")
    expected = _conversion_mac(secret, stamp, body)
    candidates = [part for part in re.split(r"[,\s]+", signature.strip()) if part]
    matched = False
    for candidate in candidates:
        version, _, value = candidate.partition("=")
        if version == SIGNATURE_VERSION and _HEX_SIGNATURE.fullmatch(value.lower()):
            # Compare every candidate (no early exit) so timing says nothing about which matched.
            matched |= hmac.compare_digest(value.lower(), expected)
    if not matched:
        raise SignatureError("the X-Postback-Signature does not match: expected v1=<hex HMAC-SHA256>")


def webhook_headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Standard Webhooks headers for one postback: webhook-id, webhook-timestamp, webhook-signature.

    `secret` is `whsec_<base64 key>` (the prefix is optional). The signed content is
    `"<id>.<timestamp>.<body>"`, the signature `v1,<base64 HMAC-SHA256>`.
    """
    try:
        key = signing_key(secret)
    except ValueError as exc:
        raise ConfigError(str(exc), field="signing_secret") from exc
    content = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": f"v1,{base64.b64encode(digest).decode('ascii')}",
    }
