"""docs/openapi.yaml stays true: a valid document whose schemas accept the sample events and
whose responses cover every status the handler answers (test_ingest_handler validates each
answer it gets against this document too)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from fakes import ingest_conversion_data
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

import ingest_http

ROOT = Path(__file__).resolve().parents[2]
SPEC: dict[str, Any] = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())
OPERATION = SPEC["paths"]["/conversions"]["post"]
REGISTRY: Registry[Any] = Registry().with_resource("urn:openapi", Resource.from_contents(SPEC, DRAFT202012))
REQUEST_POINTER = "/paths/~1conversions/post/requestBody/content/application~1json/schema"


def validator(pointer: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"urn:openapi#{pointer}"}, registry=REGISTRY)


def response_validator(status: int) -> Draft202012Validator:
    return validator(f"/paths/~1conversions/post/responses/{status}/content/application~1json/schema")


def test_the_document_is_valid_openapi_3_1() -> None:
    validate(SPEC)
    assert SPEC["openapi"].startswith("3.1")


def test_every_status_the_handler_answers_is_documented_and_nothing_more() -> None:
    documented = {int(status) for status in OPERATION["responses"]}
    assert documented == set(ingest_http.RESPONSE_STATUSES)


@pytest.mark.parametrize("name", ["revshare", "pps", "batch"])
def test_sample_event_bodies_match_the_request_schema(name: str) -> None:
    event = json.loads((ROOT / "events" / f"ingest_{name}.json").read_text())
    validator(REQUEST_POINTER).validate(json.loads(event["body"]))


def test_documented_examples_match_the_request_schema() -> None:
    examples = OPERATION["requestBody"]["content"]["application/json"]["examples"]
    for example in examples.values():
        validator(REQUEST_POINTER).validate(example["value"])


@pytest.mark.parametrize(
    "document",
    [
        ingest_conversion_data(event="upsell"),
        ingest_conversion_data(currency="eur"),
        ingest_conversion_data(amount="-1"),
        {"conversions": []},
        {"conversions": [ingest_conversion_data()] * 101},
        {**ingest_conversion_data(), "colour": "blue"},
        ingest_conversion_data(amount=None, currency=None),
        ingest_conversion_data(event="rebill", amount=None),
        ingest_conversion_data(event="registration", amount=None),
        ingest_conversion_data(event="trial", currency=None),
        {**ingest_conversion_data(event="registration"), "amount": None, "currency": None},
    ],
    ids=[
        "event",
        "currency",
        "amount",
        "empty-batch",
        "batch-over-100",
        "unknown-field",
        "sale-without-money",
        "rebill-without-amount",
        "currency-without-amount",
        "amount-without-currency",
        "null-money",
    ],
)
def test_the_request_schema_refuses_what_the_handler_refuses(document: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        validator(REQUEST_POINTER).validate(document)


def test_retry_after_is_documented_on_503() -> None:
    assert "Retry-After" in OPERATION["responses"]["503"]["headers"]


@pytest.mark.parametrize("event", ["registration", "trial"])
def test_a_registration_or_trial_may_leave_out_amount_and_currency(event: str) -> None:
    # GIVEN a conversion that carries no money; THEN the documented schema accepts it
    validator(REQUEST_POINTER).validate(ingest_conversion_data(event=event, amount=None, currency=None))
