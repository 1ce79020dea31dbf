"""Bad input at the conversion API: property-based requests generated from docs/openapi.yaml
(schemathesis), and hand-made hostile bodies. Every request is signed, so that the signature
check never hides what the body validation does.

Holds: never a 5xx; nothing the schema refuses is accepted; a refused request records and
queues nothing."""

from __future__ import annotations

import base64
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fakes import INGEST_AFFILIATE_ID, ingest_config_data, ingest_conversion_data
from hypothesis import HealthCheck, given, settings
from integration.test_ingest_handler import SECRET, LambdaContext, check_documented, http_event
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from reliability.relay_harness import AwsFaults, Relay
from schemathesis import GenerationMode

import ingest_handler
from postback_relay.domain.signing import sign_conversion_request

ROOT = Path(__file__).resolve().parents[2]
SPEC_PATH = ROOT / "docs" / "openapi.yaml"
SCHEMA = schemathesis.openapi.from_path(str(SPEC_PATH))
OPERATION = SCHEMA["/conversions"]["POST"]
SPEC: dict[str, Any] = json.loads(json.dumps(SCHEMA.raw_schema))


def _ecma_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    """JSON Schema patterns are ECMA-262: `$` is the end of the text. Python's `$` also matches
    before a final newline, so jsonschema alone would call "EUR\n" a valid currency."""
    if isinstance(instance, str) and not re.search(pattern.replace("$", r"\Z"), instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


EcmaValidator = validators.extend(Draft202012Validator, {"pattern": _ecma_pattern})  # type: ignore[no-untyped-call]  # unannotated in types-jsonschema
REQUEST_SCHEMA = EcmaValidator(
    {"$ref": "urn:openapi#/paths/~1conversions/post/requestBody/content/application~1json/schema"},
    registry=Registry().with_resource("urn:openapi", Resource.from_contents(SPEC, DRAFT202012)),
    format_checker=Draft202012Validator.FORMAT_CHECKER,
)
WRITES = ("PutItem", "BatchWriteItem", "SendMessageBatch", "SendMessage")
NEGATIVE_EXAMPLES = 700
POSITIVE_EXAMPLES = 400


class Probe:
    """Posts one signed request to the handler and reports what it changed in AWS."""

    def __init__(self, relay: Relay, faults: AwsFaults) -> None:
        self.relay = relay
        self.faults = faults
        self.answers: Counter[int] = Counter()

    def post(
        self, body: bytes, *, content_type: str | None = "application/json", base64_body: bool = False
    ) -> tuple[int, dict[str, Any], Counter[str]]:
        stamp = int(self.relay.now)
        headers = {
            "x-postback-timestamp": str(stamp),
            "x-postback-signature": sign_conversion_request(SECRET, stamp, body),
        }
        try:
            text = body.decode()
        except UnicodeDecodeError:
            base64_body = True  # API Gateway hands a body that is not text over base64-encoded
        event = http_event(base64.b64encode(body).decode() if base64_body else text, headers)
        event["isBase64Encoded"] = base64_body
        if content_type is None:
            del event["headers"]["content-type"]
        else:
            event["headers"]["content-type"] = content_type
        before = Counter(self.faults.calls)
        response = ingest_handler.lambda_handler(event, LambdaContext())
        writes = Counter({op: n for op, n in (self.faults.calls - before).items() if op in WRITES})
        answer = json.loads(response["body"]) if response.get("body") else {}
        check_documented(response["statusCode"], answer, response.get("headers", {}))
        self.answers[response["statusCode"]] += 1
        return response["statusCode"], answer, writes


@pytest.fixture
def probe(relay: Relay, aws_faults: AwsFaults) -> Probe:
    # GIVEN affiliate 1234567 onboarded, so that a valid conversion really records and queues
    relay.add_affiliate(ingest_config_data(INGEST_AFFILIATE_ID))
    return Probe(relay, aws_faults)


def run_schemathesis(probe: Probe, mode: GenerationMode, examples: int, check: Callable[[Any, int, Any], None]) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=OPERATION.as_strategy(generation_mode=mode))
    def generated(case: Any) -> None:
        if isinstance(case.body, bytes):
            body = case.body  # schemathesis' negative mode also sends bodies that are not JSON
        else:
            body = json.dumps(case.body, ensure_ascii=False).encode() if case.body is not None else b""
        status, answer, writes = probe.post(body)
        # THEN never a 5xx; a 4xx writes nothing; what is accepted fits the schema
        assert status < 500, (status, answer, case.body)
        if status >= 400:
            # A 409's one PutItem is the conditional write the table refused: it changes nothing
            # (tests/integration/test_ingest_handler.py checks the record stays as it was).
            allowed = {"PutItem"} if status == 409 else set()
            assert not set(writes) - allowed, (status, writes, case.body)
        check(case.body, status, answer)

    generated()


def test_requests_generated_from_the_openapi_document_never_get_a_5xx_and_nothing_invalid_is_taken(
    probe: Probe,
) -> None:
    # GIVEN requests generated from docs/openapi.yaml that break the schema (negative), and
    # requests that fit it (positive), each signed
    def refused_unless_valid(body: Any, status: int, answer: Any) -> None:
        if status < 300:
            assert REQUEST_SCHEMA.is_valid(body), f"accepted a request the schema refuses: {json.dumps(body)[:500]}"

    def documented(body: Any, status: int, answer: Any) -> None:
        # 409: a valid conversion whose (transaction_id, event) was taken with other content
        # (the generator repeats IDs like "0"): contract section 2, nothing changed.
        assert status in (200, 202, 400, 409), (status, answer)

    # WHEN they are posted to the ingest handler
    run_schemathesis(probe, GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES, refused_unless_valid)
    run_schemathesis(probe, GenerationMode.POSITIVE, POSITIVE_EXAMPLES, documented)

    # THEN (checked per request above) and at least 1,000 requests were tried
    generated = sum(probe.answers.values())
    print(f"\nschemathesis: {generated} requests, answers {dict(probe.answers)}")
    assert generated >= 1000


# --- hostile bodies, one by one -------------------------------------------------------------

VALID = ingest_conversion_data()


def _with(text: str) -> bytes:
    return text.encode()


HOSTILE: dict[str, tuple[bytes, int]] = {
    "empty": (b"", 400),
    "whitespace": (b" \r\n\t ", 400),
    "truncated": (json.dumps(VALID).encode()[:-7], 400),
    "json-null": (b"null", 400),
    "json-array": (b"[1,2,3]", 400),
    "json-string": (b'"sale"', 400),
    "bom-prefixed": (("\ufeff" + json.dumps(VALID)).encode(), 400),
    "nested-arrays-10000": (b"[" * 10_000 + b"]" * 10_000, 400),
    "nested-objects-10000": (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, 400),
    "nested-in-a-field-10000": (
        _with(json.dumps({**VALID, "offer": "__X__"}).replace('"__X__"', '{"a":' * 10_000 + "1" + "}" * 10_000)),
        400,
    ),
    "nan": (_with(json.dumps(VALID).replace('"25.00"', "NaN")), 400),
    "infinity": (_with(json.dumps(VALID).replace('"25.00"', "Infinity")), 400),
    "minus-infinity": (_with(json.dumps(VALID).replace('"25.00"', "-Infinity")), 400),
    "huge-float": (_with(json.dumps(VALID).replace('"25.00"', "1e400")), 400),
    "huge-integer-5000-digits": (_with(json.dumps(VALID).replace('"25.00"', "9" * 5000)), 400),
    "tiny-float": (_with(json.dumps(VALID).replace('"25.00"', "1e-400")), 400),
    "huge-integer-transaction": (_with(json.dumps(VALID).replace('"T-2026-000123"', "9" * 5000)), 400),
    "lone-surrogate": (_with(json.dumps(VALID).replace("T-2026-000123", "T-\\ud800")), 400),
    "nul-in-transaction": (_with(json.dumps(VALID).replace("T-2026-000123", "T-\\u0000")), 400),
    "batch-of-non-objects": (b'{"conversions": [1, "a", null]}', 400),
    "batch-not-a-list": (b'{"conversions": {"0": {}}}', 400),
    "batch-with-extra-key": (_with(json.dumps({"conversions": [VALID], "x": 1})), 400),
    "101-conversions": (
        _with(json.dumps({"conversions": [ingest_conversion_data(transaction_id=f"T-{n}") for n in range(101)]})),
        400,
    ),
    "oversized": (b'{"a":"' + b"x" * ingest_handler.settings.max_body_bytes + b'"}', 413),
}


@pytest.mark.parametrize(("body", "expected"), HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_body_gets_a_clear_4xx_and_nothing_is_recorded_or_queued(
    probe: Probe, body: bytes, expected: int
) -> None:
    # WHEN a signed hostile body is posted
    status, answer, writes = probe.post(body)

    # THEN a 4xx that says what is wrong, and no write to any table or queue
    assert status == expected, answer
    assert answer["error"] in ("invalid_request", "payload_too_large")
    assert answer["message"]
    assert not writes
    assert probe.relay.conversion_ids() == set()


def test_a_body_that_is_not_utf8_gets_400(probe: Probe) -> None:
    # GIVEN a body API Gateway hands over base64-encoded because it is not text
    body = json.dumps(VALID).encode().replace(b"Dating FR", b"Dating \xff\xfe")

    # WHEN it is posted, THEN 400 and nothing written
    status, answer, writes = probe.post(body, base64_body=True)
    assert (status, answer["errors"][0]["field"]) == (400, "body")
    assert not writes


@pytest.mark.parametrize(
    "content_type",
    [None, "", "text/plain", "application/xml", "multipart/form-data; boundary=x", "application/json; charset=utf-16"],
)
def test_a_wrong_content_type_gets_415_and_nothing_is_recorded(probe: Probe, content_type: str | None) -> None:
    status, answer, writes = probe.post(json.dumps(VALID).encode(), content_type=content_type)
    assert (status, answer["error"]) == (415, "unsupported_media_type")
    assert not writes


def test_a_body_at_the_size_limit_is_read_and_one_byte_over_is_413(probe: Probe) -> None:
    # GIVEN a JSON body of exactly MAX_BODY_BYTES, and one a byte longer
    limit = ingest_handler.settings.max_body_bytes
    padding = limit - len(json.dumps({**VALID, "offer": {**VALID["offer"], "name": ""}}).encode())  # type: ignore[dict-item]
    at_limit = json.dumps({**VALID, "offer": {**VALID["offer"], "name": "x" * padding}}).encode()  # type: ignore[dict-item]
    assert len(at_limit) == limit

    # THEN the first is read (and refused for its 256-character name limit), the second is 413
    assert probe.post(at_limit)[0] == 400
    assert probe.post(at_limit + b" ")[0] == 413


def test_json_with_duplicate_keys_is_refused(probe: Probe) -> None:
    # GIVEN a conversion whose transaction_id appears twice with different values: parsers
    # disagree on which one counts, so the platform and the relay could see two conversions
    body = json.dumps(VALID).replace(
        '"transaction_id": "T-2026-000123"', '"transaction_id": "A", "transaction_id": "B"'
    )

    # WHEN it is posted, THEN 400 and nothing written
    status, _, writes = probe.post(body.encode())
    assert status == 400
    assert not writes


@pytest.mark.parametrize(
    "change",
    [
        # Python's `$` matches before a trailing newline: the domain's patterns use fullmatch.
        pytest.param({"currency": "EUR\n"}, id="currency-newline"),
        pytest.param({"amount": "25.00\n"}, id="amount-newline"),
        pytest.param({"offer": {"id": 89, "type": "revshare"}}, id="offer-id-number"),
        # pydantic's lax datetime would read unix seconds; the schema says an RFC 3339 string.
        pytest.param({"occurred_at": 1795608005}, id="occurred-at-number"),
    ],
)
def test_what_the_schema_refuses_the_handler_refuses(probe: Probe, change: dict[str, object]) -> None:
    # GIVEN a conversion the request schema refuses
    document = {**VALID, **change}
    assert not REQUEST_SCHEMA.is_valid(document)

    # WHEN it is posted, THEN 400 and nothing written
    status, answer, writes = probe.post(json.dumps(document).encode())
    assert status == 400, answer
    assert not writes
