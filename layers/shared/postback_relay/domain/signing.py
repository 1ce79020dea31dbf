"""Request signatures: the platform's conversion requests (checked on ingest) and, optionally,
the postbacks we send (Standard Webhooks, so that an affiliate can verify them with any of
its libraries).
"""

import base64
import hashlib
import hmac
import re

from postback_relay.domain import messages
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

    The refusal says which part is wrong, as far as that can be told without helping anyone
    who does not hold the secret (docs/architecture.md, "What a 401 says"): a missing header,
    a malformed timestamp or signature, a stale timestamp (checks on what was sent, the secret
    unused), and, for a signature that does not match, the common mistake of signing the body
    alone or without the full stop (which only a caller holding the secret can make). Never
    whether the secret or the body was wrong.
    """
    if not secret:
        raise SignatureError(messages.signing_secret_missing())
    if timestamp is None or not timestamp.strip():
        raise SignatureError(messages.signature_header_missing("X-Postback-Timestamp"))
    if signature is None or not signature.strip():
        raise SignatureError(messages.signature_header_missing("X-Postback-Signature"))
    stamp = timestamp.strip()
    if not _TIMESTAMP.fullmatch(stamp):
        raise SignatureError(messages.signature_timestamp_malformed())
    if abs(now - int(stamp)) > tolerance_s:
        raise SignatureError(messages.signature_timestamp_stale(tolerance_s))
    values = _signature_values(signature)
    if not values:
        raise SignatureError(messages.signature_malformed())
    expected = _conversion_mac(secret, stamp, body)
    # Compare every candidate (no early exit) so timing says nothing about which matched.
    matched = False
    for value in values:
        matched |= hmac.compare_digest(value, expected)
    if matched:
        return
    raise SignatureError(_mismatch_reason(secret, stamp, body, values))


def _signature_values(signature: str) -> list[str]:
    """The hex digests of the header's well-formed `v1=<64 hex>` values, lower-cased."""
    values = []
    for candidate in re.split(r"[,\s]+", signature.strip()):
        version, _, value = candidate.partition("=")
        if version == SIGNATURE_VERSION and _HEX_SIGNATURE.fullmatch(value.lower()):
            values.append(value.lower())
    return values


def _mismatch_reason(secret: str, stamp: str, body: bytes, values: list[str]) -> str:
    """Why a well-formed signature does not match. Only a digest made with the secret can match
    one of the mistakes checked, so naming the mistake tells nothing to anyone without it."""
    mistakes = {
        "body": hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest(),
        "no-dot": hmac.new(secret.encode("utf-8"), stamp.encode("ascii") + body, hashlib.sha256).hexdigest(),
    }
    found = {name for name, digest in mistakes.items() for value in values if hmac.compare_digest(value, digest)}
    if "body" in found:
        return messages.signature_over_body_alone()
    if "no-dot" in found:
        return messages.signature_without_dot()
    return messages.signature_mismatch()


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
