"""Signatures: the platform's conversion requests, and Standard Webhooks headers on postbacks."""

import base64
import hashlib
import hmac

import pytest

from postback_relay.domain.errors import ConfigError, SignatureError
from postback_relay.domain.signing import sign_conversion_request, verify_conversion_request, webhook_headers

SECRET = "local-dev-secret"
BODY = b'{"transaction_id": "T-1"}'
NOW = 1_790_000_000


def test_signature_is_hmac_of_timestamp_dot_body() -> None:
    # GIVEN a secret, a timestamp and a body
    # WHEN the request is signed
    signature = sign_conversion_request(SECRET, NOW, BODY)
    # THEN it is v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert signature == f"v1={expected}"


def test_a_correct_signature_verifies() -> None:
    # GIVEN a request signed 200 s ago
    signature = sign_conversion_request(SECRET, NOW - 200, BODY)
    # WHEN verified now
    # THEN it passes
    verify_conversion_request(SECRET, str(NOW - 200), signature, BODY, now=NOW)


def test_one_matching_signature_among_several_is_enough() -> None:
    # GIVEN a header with an old and a new signature (secret rotation)
    header = f"v1={'0' * 64}, {sign_conversion_request(SECRET, NOW, BODY)}"
    # WHEN verified
    # THEN it passes
    verify_conversion_request(SECRET, str(NOW), header, BODY, now=NOW)


@pytest.mark.parametrize(
    ("timestamp", "signature", "body", "words"),
    [
        (None, "v1=00", BODY, "Timestamp header is missing"),
        (str(NOW), None, BODY, "Signature header is missing"),
        ("", "v1=00", BODY, "missing"),
        ("12.5", "v1=00", BODY, "integer"),
        ("abc", "v1=00", BODY, "integer"),
        ("-5", "v1=00", BODY, "integer"),
        ("9" * 40, "v1=00", BODY, "integer"),
        (str(NOW - 301), sign_conversion_request(SECRET, NOW - 301, BODY), BODY, "300 seconds"),
        (str(NOW + 301), sign_conversion_request(SECRET, NOW + 301, BODY), BODY, "300 seconds"),
        (str(NOW), sign_conversion_request(SECRET, NOW, BODY), BODY + b" ", "does not match"),
        (str(NOW), sign_conversion_request("other-secret", NOW, BODY), BODY, "does not match"),
        (str(NOW), sign_conversion_request(SECRET, NOW - 1, BODY), BODY, "does not match"),
        (str(NOW), "v2=" + "0" * 64, BODY, "holds no v1=<hex digest>"),
        (str(NOW), "garbage", BODY, "holds no v1=<hex digest>"),
        (str(NOW), sign_conversion_request(SECRET, NOW, BODY).removeprefix("v1="), BODY, "holds no v1="),
    ],
)
def test_bad_signatures_are_refused(timestamp: str | None, signature: str | None, body: bytes, words: str) -> None:
    # GIVEN a request with a missing, malformed, expired or wrong signature
    # WHEN verified
    with pytest.raises(SignatureError) as caught:
        verify_conversion_request(SECRET, timestamp, signature, body, now=NOW)
    # THEN it is refused with a reason
    assert words in caught.value.message


def test_tolerance_edge_is_inclusive() -> None:
    # GIVEN a request exactly 300 s old
    signature = sign_conversion_request(SECRET, NOW - 300, BODY)
    # WHEN verified
    # THEN it still passes
    verify_conversion_request(SECRET, str(NOW - 300), signature, BODY, now=NOW)


def test_webhook_headers_follow_standard_webhooks() -> None:
    # GIVEN a whsec_ secret, a message ID, a timestamp and a body
    key = bytes(range(32))
    secret = "whsec_" + base64.b64encode(key).decode()
    # WHEN the headers are computed
    headers = webhook_headers(secret, "msg_1", NOW, BODY)
    # THEN the signature is v1,<base64 HMAC-SHA256(key, "id.timestamp.body")>
    digest = hmac.new(key, b"msg_1." + str(NOW).encode() + b"." + BODY, hashlib.sha256).digest()
    assert headers == {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(NOW),
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }
    # AND the prefix is optional
    assert webhook_headers(base64.b64encode(key).decode(), "msg_1", NOW, BODY) == headers


def test_webhook_headers_refuse_a_malformed_secret() -> None:
    # GIVEN a secret that is not base64
    # WHEN headers are computed
    # THEN it is a config error on signing_secret
    with pytest.raises(ConfigError) as caught:
        webhook_headers("whsec_???", "m", NOW, BODY)
    assert caught.value.field == "signing_secret"


def _refusal(timestamp: str, signature: str, body: bytes = BODY) -> str:
    with pytest.raises(SignatureError) as caught:
        verify_conversion_request(SECRET, timestamp, signature, body, now=NOW)
    return caught.value.message


def test_each_refusal_says_what_to_sign() -> None:
    # GIVEN a missing, malformed, stale and wrong signature
    refusals = [
        _refusal("", "v1=00"),
        _refusal(str(NOW), "sha256=abc"),
        _refusal(str(NOW - 301), sign_conversion_request(SECRET, NOW - 301, BODY)),
        _refusal(str(NOW), sign_conversion_request("other-secret", NOW, BODY)),
    ]
    # THEN each names the signed content, "<timestamp>.<raw body>"
    for refusal in refusals:
        assert '"<timestamp>.<raw body>"' in refusal, refusal
    # AND they are four different sentences: each says which part is wrong
    assert len(set(refusals)) == 4


def test_a_signature_of_the_body_alone_or_without_the_dot_is_named_as_such() -> None:
    # GIVEN a caller holding the secret who signed the body alone, or timestamp+body without the dot
    body_alone = "v1=" + hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    no_dot = "v1=" + hmac.new(SECRET.encode(), str(NOW).encode() + BODY, hashlib.sha256).hexdigest()
    # WHEN verified, THEN the refusal names the mistake
    assert "of the body alone" in _refusal(str(NOW), body_alone)
    assert "without the full stop" in _refusal(str(NOW), no_dot)


def test_a_wrong_secret_and_a_changed_body_read_the_same() -> None:
    # GIVEN a signature made with another secret, and a right one over another body
    wrong_secret = _refusal(str(NOW), sign_conversion_request("other-secret", NOW, BODY))
    changed_body = _refusal(str(NOW), sign_conversion_request(SECRET, NOW, BODY), BODY + b" ")
    # THEN the refusal does not tell which: that would help someone guessing the secret
    assert wrong_secret == changed_body
    assert "does not match" in wrong_secret
