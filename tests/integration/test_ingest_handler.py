"""The conversion API end to end in-process: HTTP API v2 events -> ingest_handler -> moto."""

from __future__ import annotations

import base64
import io
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.client
import pytest
import yaml
from aws_lambda_powertools.utilities import parameters
from botocore.exceptions import ClientError
from fakes import INGEST_AFFILIATE_ID, ingest_config, ingest_conversion_data
from jsonschema import Draft202012Validator
from outbox_support import outbox_poller, run_outbox
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

import ingest_handler
import ingest_http
from postback_relay import wiring
from postback_relay.adapters.dynamodb_affiliates import DynamoAffiliateStore
from postback_relay.domain.delivery import PostbackMessage
from postback_relay.domain.signing import sign_conversion_request

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
OPENAPI: dict[str, Any] = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())
OPENAPI_REGISTRY: Registry[Any] = Registry().with_resource("urn:openapi", Resource.from_contents(OPENAPI, DRAFT202012))
SECRET = "local-dev-secret"
EVENT_TIME = 1795608005  # the time the sample events in events/ were signed at
# The sample link of affiliate 1234567 with another tracker value
INGEST_PPS_LINK_FOR_REPEAT = (
    "http://www.espace-plus.net/redir/rotation_redir.php?id_rotation=89&e=0&w=0&id=1234567&e=1&w=0"
    "&tracker=trID_a1-T9-c999-x_trID"
)


@dataclass
class LambdaContext:
    function_name: str = "ingest"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:ingest"
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e812345678"


def check_documented(status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
    """Every answer must be one docs/openapi.yaml describes: status, body schema, headers."""
    responses = OPENAPI["paths"]["/conversions"]["post"]["responses"]
    assert str(status) in responses, f"status {status} is not documented"
    pointer = f"/paths/~1conversions/post/responses/{status}/content/application~1json/schema"
    Draft202012Validator({"$ref": f"urn:openapi#{pointer}"}, registry=OPENAPI_REGISTRY).validate(body)
    for header in responses[str(status)].get("headers", {}):
        assert header in headers, f"{header} is documented on {status} but missing"


def sample_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / f"ingest_{name}.json").read_text())
    return event


def http_event(body: str, headers: dict[str, str], *, base64_encoded: bool = False) -> dict[str, Any]:
    event = sample_event("revshare")
    event["headers"] = {"content-type": "application/json", **headers}
    event["body"] = body
    event["isBase64Encoded"] = base64_encoded
    return event


class Api:
    """Posts conversions to the handler, signed at the fake clock's time."""

    def __init__(self, outputs: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
        self.outputs = outputs
        self.now = float(EVENT_TIME)
        monkeypatch.setattr(ingest_handler, "clock", lambda: self.now)
        # The function's service, built by the wiring as the function builds it, on a client of
        # its own (a test makes that client fail), handed to the handler on each invocation.
        self.service_dynamodb = boto3.client("dynamodb")
        self.service = wiring.ingest_service(
            ingest_handler.settings, dynamodb=self.service_dynamodb, clock=lambda: self.now
        )
        self.affiliates = DynamoAffiliateStore(
            outputs["AffiliatesTableName"], client=boto3.client("dynamodb"), allow_loopback=True
        )
        self.sqs = boto3.client("sqs")
        self.dynamodb = boto3.client("dynamodb")
        self.outbox = outbox_poller(outputs)

    def invoke(self, event: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        response = ingest_handler.lambda_handler(event, LambdaContext(), service=self.service)
        body = json.loads(response["body"]) if response.get("body") else {}
        headers = response.get("headers", {})
        check_documented(response["statusCode"], body, headers)
        return response["statusCode"], body, headers

    def post(self, document: object, **headers: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        return self.post_raw(json.dumps(document), **headers)

    def post_raw(self, body: str, **headers: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        stamp = int(self.now)
        signed = {
            "x-postback-timestamp": str(stamp),
            "x-postback-signature": sign_conversion_request(SECRET, stamp, body.encode()),
        }
        signed.update({name.replace("_", "-"): value for name, value in headers.items()})
        return self.invoke(http_event(body, signed))

    def queued(self) -> list[PostbackMessage]:
        """What reached the postback queue: the outbox function runs over the table's stream first."""
        run_outbox(self.outbox)
        messages: list[PostbackMessage] = []
        while True:
            answer = self.sqs.receive_message(QueueUrl=self.outputs["PostbackQueueUrl"], MaxNumberOfMessages=10)
            if not answer.get("Messages"):
                return messages
            for message in answer["Messages"]:
                messages.append(PostbackMessage.model_validate_json(message["Body"]))
                self.sqs.delete_message(
                    QueueUrl=self.outputs["PostbackQueueUrl"], ReceiptHandle=message["ReceiptHandle"]
                )

    def records(self) -> dict[str, dict[str, Any]]:
        items = self.dynamodb.scan(TableName=self.outputs["ConversionsTableName"])["Items"]
        return {item["conversion_id"]["S"]: item for item in items}


@pytest.fixture
def api(aws: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Api:
    # GIVEN a fresh stack, a cold function (a new service: no cached configs; no cached secret)
    # and affiliate 1234567
    parameters.clear_caches()  # type: ignore[no-untyped-call]
    api = Api(aws, monkeypatch)
    api.affiliates.put(ingest_config(), expected_version=None, updated_by="test")
    return api


# --- the sample events ------------------------------------------------------------------


def test_sample_revshare_event_queues_the_sale_postback(api: Api) -> None:
    # WHEN the platform posts the sample revshare sale
    status, body, headers = api.invoke(sample_event("revshare"))

    # THEN it is accepted with one postback queued, recorded, and the message is on the queue
    assert status == 202
    assert headers["Content-Type"] == "application/json"
    assert body == {
        "transaction_id": "T-2026-000123",
        "event": "sale",
        "affiliate_id": INGEST_AFFILIATE_ID,
        "outcome": "queued",
        "postbacks_queued": 1,
        "reason": None,
        "error_kind": None,
        "repeat": False,
    }
    (message,) = api.queued()
    assert message.url.startswith("https://track.acme.example/postback?cid=c123&payout=25.00")
    record = api.records()["T-2026-000123#sale"]
    assert record["amount_text"]["S"] == "25.00"
    assert json.loads(record["result"]["S"])["outcome"] == "queued"


def test_sample_pps_event_queues_for_the_tracker_affiliate(api: Api) -> None:
    status, body, _ = api.invoke(sample_event("pps"))
    assert (status, body["outcome"], body["affiliate_id"]) == (202, "queued", INGEST_AFFILIATE_ID)
    assert "offer=66013" in api.queued()[0].url


def test_sample_batch_event_answers_one_result_per_conversion(api: Api) -> None:
    # WHEN the sample batch (registration on offer 89, sale, rebill by tracker) is posted
    status, body, _ = api.invoke(sample_event("batch"))

    # THEN each is queued, in the order sent
    assert status == 202
    assert [(r["transaction_id"], r["outcome"], r["repeat"]) for r in body["results"]] == [
        ("T-2026-000125", "queued", False),
        ("T-2026-000126", "queued", False),
        ("T-2026-000127", "queued", False),
    ]
    assert sorted(m.transaction_id for m in api.queued()) == ["T-2026-000125", "T-2026-000126", "T-2026-000127"]


def test_sample_events_are_signed_with_the_local_secret() -> None:
    # The events serve `sam local invoke` too: their signature must match their body.
    for name in ("revshare", "pps", "batch"):
        event = sample_event(name)
        stamp = int(event["headers"]["x-postback-timestamp"])
        expected = sign_conversion_request(SECRET, stamp, event["body"].encode())
        assert event["headers"]["x-postback-signature"] == expected


# --- repeats ----------------------------------------------------------------------------


def test_repeat_answers_200_with_the_first_result_and_queues_nothing(api: Api) -> None:
    # GIVEN a sale already taken
    _, first, _ = api.invoke(sample_event("revshare"))
    api.queued()

    # WHEN the same conversion is posted again, the same instant written with another offset
    status, again, _ = api.post(ingest_conversion_data(occurred_at="2026-11-25T13:00:00+01:00"))

    # THEN 200 with the first result, marked as a repeat, and nothing new on the queue
    assert status == 200
    assert again == {**first, "repeat": True}
    assert api.queued() == []


@pytest.mark.parametrize(
    ("changes", "differing"),
    [
        ({"amount": "99.00"}, ["amount"]),
        ({"amount": "25.0"}, ["amount"]),  # renders differently: the exact text is compared
        ({"link": INGEST_PPS_LINK_FOR_REPEAT}, ["link"]),
        ({"offer": {"id": "90", "type": "revshare"}}, ["offer.id", "offer.name"]),
        ({"currency": "USD", "occurred_at": "2026-11-25T12:00:01Z"}, ["currency", "occurred_at"]),
    ],
)
def test_a_repeat_with_other_content_is_a_409_with_the_first_result_and_changes_nothing(
    api: Api, changes: dict[str, object], differing: list[str]
) -> None:
    # GIVEN a sale already taken
    _, first, _ = api.invoke(sample_event("revshare"))
    api.queued()
    record = api.records()["T-2026-000123#sale"]

    # WHEN the same (transaction_id, event) is posted with other content
    status, answer, _ = api.post(ingest_conversion_data(**changes))

    # THEN 409 naming the fields that differ, with the first result; nothing queued or changed
    assert status == 409, answer
    assert answer["error"] == "differing_repeat"
    assert answer["differing"] == differing
    assert answer["result"] == {**first, "repeat": True, "differing": differing}
    assert "nothing was changed" in answer["message"]
    assert api.queued() == []
    assert api.records()["T-2026-000123#sale"] == record


def test_a_batch_decides_each_repeat_on_its_own(api: Api) -> None:
    # GIVEN a sale taken
    api.post(ingest_conversion_data())
    api.queued()

    # WHEN a batch repeats it with another amount, next to a new rebill
    batch = {"conversions": [ingest_conversion_data(amount="99.00"), ingest_conversion_data(event="rebill")]}
    status, body, _ = api.post(batch)

    # THEN 202 (the rebill was taken), the differing repeat's result names its field
    assert status == 202
    assert [(r["repeat"], r.get("differing")) for r in body["results"]] == [(True, ["amount"]), (False, None)]
    assert [m.event.value for m in api.queued()] == ["rebill"]

    # WHEN a batch holds only repeats, one of them differing, THEN 409 with every result
    status, body, _ = api.post(
        {"conversions": [ingest_conversion_data(event="rebill"), ingest_conversion_data(currency="USD")]}
    )
    assert status == 409
    assert body["differing"] == ["currency"]
    assert [r.get("differing") for r in body["results"]] == [None, ["currency"]]

    # AND the same identity twice in one batch with other content is a differing repeat of the first
    status, body, _ = api.post(
        {
            "conversions": [
                ingest_conversion_data(transaction_id="T-9"),
                ingest_conversion_data(transaction_id="T-9", amount="1.00"),
            ]
        }
    )
    assert status == 202
    assert [(r["repeat"], r.get("differing")) for r in body["results"]] == [(False, None), (True, ["amount"])]


def test_batch_with_some_repeats_is_202_and_all_repeats_200(api: Api) -> None:
    # GIVEN one sale taken
    api.post(ingest_conversion_data())
    api.queued()
    batch = {"conversions": [ingest_conversion_data(), ingest_conversion_data(event="rebill")]}

    # WHEN a batch repeats it with a new rebill, THEN 202 with the repeat flagged per item
    status, body, _ = api.post(batch)
    assert status == 202
    assert [r["repeat"] for r in body["results"]] == [True, False]
    assert [m.event.value for m in api.queued()] == ["rebill"]

    # WHEN the same batch comes once more, THEN every item is a repeat: 200
    status, body, _ = api.post(batch)
    assert status == 200
    assert all(r["repeat"] for r in body["results"])


# --- outcomes without postbacks ---------------------------------------------------------


def test_unknown_affiliate_is_accepted_and_recorded(api: Api) -> None:
    link = str(ingest_conversion_data()["link"]).replace("id=1234567", "id=7654321")
    status, body, _ = api.post(ingest_conversion_data(link=link))
    assert (status, body["outcome"], body["postbacks_queued"]) == (202, "unknown_affiliate", 0)
    assert "T-2026-000123#sale" in api.records()
    assert api.queued() == []


def test_an_affiliate_onboarded_after_a_miss_gets_its_postbacks_within_5_seconds(api: Api) -> None:
    # GIVEN a warm function that answered unknown_affiliate for 7654321 (the README's order:
    # post the example, then onboard)
    link = str(ingest_conversion_data()["link"]).replace("id=1234567", "id=7654321")
    first = api.post(ingest_conversion_data(transaction_id="T-NEW-1", link=link))[1]
    assert first["outcome"] == "unknown_affiliate"

    # WHEN ops onboard it and the next conversion comes 5 s later
    api.affiliates.put(
        ingest_config().model_copy(update={"affiliate_id": "7654321"}), expected_version=None, updated_by="ops"
    )
    api.now += 5

    # THEN its postbacks are queued: the miss was not cached for CONFIG_CACHE_SECONDS
    assert ingest_handler.settings.config_cache_seconds > 5
    second = api.post(ingest_conversion_data(transaction_id="T-NEW-2", link=link))[1]
    assert (second["outcome"], second["postbacks_queued"]) == ("queued", 1), second


def test_a_free_registration_without_amount_or_currency_is_queued_with_empty_macros(api: Api) -> None:
    # GIVEN an affiliate whose registration postback carries {amount} and {currency}
    api.affiliates.put(
        ingest_config(
            "5550001",
            postbacks=[
                {"events": ["registration"], "url": "https://t.example/lead?c={clickid}&p={amount}&cur={currency}"}
            ],
        ),
        expected_version=None,
        updated_by="test",
    )
    link = str(ingest_conversion_data()["link"]).replace("id=1234567", "id=5550001")

    # WHEN the platform posts a free registration with no money at all
    status, body, _ = api.post(ingest_conversion_data(event="registration", amount=None, currency=None, link=link))

    # THEN it is taken, and both macros render empty
    assert (status, body["outcome"], body["postbacks_queued"]) == (202, "queued", 1), body
    assert [m.url for m in api.queued()] == ["https://t.example/lead?c=c123&p=&cur="]

    # AND a sale without them is refused naming both fields
    status, body, _ = api.post(ingest_conversion_data(transaction_id="T-NOMONEY", amount=None, currency=None))
    assert status == 400
    assert {e["field"] for e in body["errors"]} >= {"amount", "currency"}, body


def test_tracker_mismatch_is_accepted_with_its_kind(api: Api) -> None:
    link = str(ingest_conversion_data()["link"]).replace("c123", "#clickId#")
    status, body, _ = api.post(ingest_conversion_data(link=link))
    assert (status, body["outcome"], body["error_kind"]) == (202, "tracker_mismatch", "placeholder_unfilled")
    assert body["reason"]
    assert api.queued() == []


def test_disabled_affiliate_is_accepted_without_postbacks(api: Api) -> None:
    api.affiliates.set_enabled(INGEST_AFFILIATE_ID, False, updated_by="ops")
    status, body, _ = api.post(ingest_conversion_data())
    assert (status, body["outcome"]) == (202, "affiliate_disabled")
    assert api.queued() == []


def test_event_not_subscribed(api: Api) -> None:
    status, body, _ = api.post(ingest_conversion_data(event="trial"))
    assert (status, body["outcome"]) == (202, "event_not_subscribed")


# --- refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"x-postback-signature": None, "x-postback-timestamp": None},
        {"x-postback-signature": None},
        {"x-postback-signature": "v1=" + "0" * 64},
        {"x-postback-timestamp": str(EVENT_TIME - 301)},
    ],
    ids=["no-headers", "no-signature", "wrong-signature", "expired"],
)
def test_unsigned_wrongly_signed_or_stale_requests_get_401(api: Api, headers: dict[str, str | None]) -> None:
    # GIVEN the sample request with its signature headers removed or altered
    event = sample_event("revshare")
    for name, value in headers.items():
        if value is None:
            del event["headers"][name]
        else:
            event["headers"][name] = value

    # WHEN it is posted, THEN 401 and nothing is recorded
    status, body, _ = api.invoke(event)
    assert status == 401
    assert body["error"] == "bad_signature"
    assert api.records() == {}


def test_signature_over_another_body_is_refused(api: Api) -> None:
    # GIVEN a valid signature of the sample body, on a body with another amount
    event = sample_event("revshare")
    event["body"] = event["body"].replace("25.00", "2500.00")
    assert api.invoke(event)[0] == 401


def test_clock_skew_within_five_minutes_is_accepted(api: Api) -> None:
    api.now = EVENT_TIME + 299
    assert api.invoke(sample_event("revshare"))[0] == 202


def test_oversized_body_gets_413_before_anything_else(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a body one byte over MAX_BODY_BYTES, even unsigned
    limit = ingest_handler.settings.max_body_bytes
    event = http_event("x" * (limit + 1), {})

    # THEN 413
    status, body, _ = api.invoke(event)
    assert (status, body["error"]) == (413, "payload_too_large")


def test_base64_body_is_verified_on_its_decoded_bytes(api: Api) -> None:
    # GIVEN API Gateway handing the body over base64-encoded
    raw = json.dumps(ingest_conversion_data()).encode()
    stamp = int(api.now)
    headers = {
        "x-postback-timestamp": str(stamp),
        "x-postback-signature": sign_conversion_request(SECRET, stamp, raw),
    }
    event = http_event(base64.b64encode(raw).decode(), headers, base64_encoded=True)

    # THEN the signature checks out against the decoded bytes
    assert api.invoke(event)[0] == 202


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"]
)
def test_body_not_sent_as_json_gets_415(api: Api, content_type: str) -> None:
    status, body, _ = api.post(ingest_conversion_data(), content_type=content_type)
    assert (status, body["error"]) == (415, "unsupported_media_type")


def test_json_variants_of_content_type_are_accepted(api: Api) -> None:
    assert api.post(ingest_conversion_data(), content_type="application/json; charset=UTF-8")[0] == 202


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("{oops", "body"),
        ("[]", "body"),
        (
            json.dumps({"conversions": [ingest_conversion_data(transaction_id=f"T-{n}") for n in range(101)]}),
            "conversions",
        ),
        (
            json.dumps({"conversions": [ingest_conversion_data(), ingest_conversion_data(currency="euro")]}),
            "conversions.1.currency",
        ),
        (json.dumps(ingest_conversion_data(amount=None)), "amount"),
    ],
    ids=["invalid-json", "not-an-object", "batch-over-100", "one-invalid-item", "missing-field"],
)
def test_invalid_body_gets_400_with_field_errors_and_nothing_is_taken(api: Api, body: str, field: str) -> None:
    # WHEN a signed but invalid body is posted
    status, answer, _ = api.post_raw(body)

    # THEN 400 names the field, and nothing of the request is recorded or queued
    assert status == 400
    assert answer["error"] == "invalid_request"
    assert field in [e["field"] for e in answer["errors"]]
    assert api.records() == {}
    assert api.queued() == []


# --- infrastructure failures --------------------------------------------------------------


def test_ingest_never_calls_sqs_and_a_repeat_adds_nothing_to_the_stream(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN SQS refusing every call of this process
    def refusing(self: Any, operation_name: str, api_params: Any) -> Any:
        if self.meta.service_model.service_name == "sqs":
            raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "down"}}, operation_name)
        return real_call(self, operation_name, api_params)

    real_call = botocore.client.BaseClient._make_api_call  # type: ignore[attr-defined]  # not in botocore-stubs
    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", refusing)

    # WHEN the sample sale is posted, then posted again
    first = api.invoke(sample_event("revshare"))
    again = api.invoke(sample_event("revshare"))

    # THEN it is taken (202), then a repeat (200): SQS down changes nothing at ingest
    assert (first[0], first[1]["postbacks_queued"]) == (202, 1)
    assert (again[0], again[1]["repeat"]) == (200, True)

    # WHEN SQS is back and the outbox reads the table's stream
    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", real_call)

    # THEN the postback is queued once: the repeat wrote nothing, so it added no stream record
    assert [m.transaction_id for m in api.queued()] == ["T-2026-000123"]


def test_dynamodb_failure_answers_503(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the conversions table refuses writes
    dynamodb = api.service_dynamodb

    def failing(**kwargs: Any) -> Any:
        raise ClientError({"Error": {"Code": "InternalServerError", "Message": "down"}}, "PutItem")

    monkeypatch.setattr(dynamodb, "put_item", failing)

    # THEN 503 with Retry-After, and nothing queued
    status, _, headers = api.invoke(sample_event("revshare"))
    assert status == 503
    assert "Retry-After" in headers
    assert api.queued() == []


def test_unexpected_error_answers_500_without_a_traceback(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a bug deep in the service
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(api.service, "ingest", broken)

    # THEN a plain 500 that says nothing of the internals
    status, body, _ = api.invoke(sample_event("revshare"))
    assert status == 500
    assert "secret internals" not in json.dumps(body)
    assert "Traceback" not in json.dumps(body)


# --- cost and caching -------------------------------------------------------------------


def test_warm_happy_path_reads_nothing_and_writes_once(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a warm function (the affiliate's config is cached), and every AWS call of this
    # process counted, whatever client makes it
    api.invoke(sample_event("pps"))
    calls: Counter[str] = Counter()
    real_call = botocore.client.BaseClient._make_api_call  # type: ignore[attr-defined]  # not in botocore-stubs

    def counted(self: Any, operation_name: str, api_params: Any) -> Any:
        calls[f"{self.meta.service_model.service_name}:{operation_name}"] += 1
        return real_call(self, operation_name, api_params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", counted)

    # WHEN the next conversion arrives
    assert api.invoke(sample_event("revshare"))[0] == 202

    # THEN the AWS work is one PutItem: no read, no SQS call
    assert calls == Counter({"dynamodb:PutItem": 1})


def test_config_change_takes_effect_when_the_cache_expires(api: Api) -> None:
    # GIVEN a warm function that has read affiliate 1234567's config
    assert api.post(ingest_conversion_data(transaction_id="T-1"))[1]["outcome"] == "queued"

    # WHEN ops disable the affiliate and a conversion arrives within CONFIG_CACHE_SECONDS
    api.affiliates.set_enabled(INGEST_AFFILIATE_ID, False, updated_by="ops")
    api.now += ingest_handler.settings.config_cache_seconds - 1
    assert api.post(ingest_conversion_data(transaction_id="T-2"))[1]["outcome"] == "queued"

    # THEN once the cache entry expired the change shows
    api.now += 2
    assert api.post(ingest_conversion_data(transaction_id="T-3"))[1]["outcome"] == "affiliate_disabled"


def test_logs_never_hold_the_body_the_secret_or_the_signature(
    api: Api, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the function's log stream captured (the Logger bound its stream at import)
    logs = io.StringIO()
    monkeypatch.setattr(ingest_http.logger.registered_handler, "stream", logs)

    # WHEN a conversion is taken and another refused
    event = sample_event("revshare")
    api.invoke(event)
    wrong = sample_event("pps")
    wrong["headers"]["x-postback-signature"] = "v1=" + "a" * 64
    api.invoke(wrong)

    # THEN the logs carry the transaction as correlation ID but none of the secrets or the link
    output = logs.getvalue() + capsys.readouterr().out
    assert "T-2026-000123" in output
    for forbidden in (SECRET, event["headers"]["x-postback-signature"], "a" * 64, "trID_", "espace-plus"):
        assert forbidden not in output


def test_metrics_count_conversions_per_outcome_and_event(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    # WHEN a batch with a queued sale and an unsubscribed trial is taken
    api.post({"conversions": [ingest_conversion_data(), ingest_conversion_data(event="trial")]})

    # THEN the EMF output has one Conversions count per (outcome, event)
    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    counted = {(b["outcome"], b["event"]): b["Conversions"] for b in blobs if "Conversions" in b}
    assert counted == {("queued", "sale"): [1.0], ("event_not_subscribed", "trial"): [1.0]}


def test_body_with_a_lone_surrogate_is_a_400_not_a_crash(api: Api) -> None:
    # GIVEN an event whose body string cannot be encoded as UTF-8 (never from API Gateway, but cheap to refuse)
    event = http_event('{"transaction_id": "\ud800"}', {"x-postback-timestamp": "1", "x-postback-signature": "v1=0"})

    # THEN the answer is a 400 on the body
    status, body, _ = api.invoke(event)
    assert (status, body["errors"][0]["field"]) == (400, "body")


# --- reversals (contract section 2) -------------------------------------------------------


def reversal_document(original: str, **changes: Any) -> dict[str, Any]:
    return {
        "transaction_id": f"CB-{original}",
        "event": "chargeback",
        "original_transaction_id": original,
        "amount": "25.00",
        "payout": "7.50",
        "currency": "EUR",
        "occurred_at": "2026-12-02T09:30:00Z",
        **changes,
    }


def test_a_chargeback_without_a_link_fires_from_the_sales_record_on_dynamodb(api: Api) -> None:
    # GIVEN affiliate 1234567 subscribed to chargebacks, and a sale with a payout taken
    config = ingest_config(
        postbacks=[
            {"events": ["sale"], "url": "https://track.acme.example/pb?cid={clickid}&p={payout}&st={status}"},
            {
                "events": ["chargeback"],
                "url": "https://track.acme.example/pb?cid={clickid}&p={payout}&st={status}&o={original_transaction_id}",
                "statuses": {"chargeback": "rejected"},
            },
        ]
    )
    api.affiliates.put(config, expected_version=1, updated_by="test")
    sale = ingest_conversion_data(transaction_id="T-REV-1", payout="7.50")
    assert api.post(sale)[0] == 202
    # WHEN its chargeback arrives with none of link, tracker, affiliate or offer
    status, body, _ = api.post(reversal_document("T-REV-1"))
    # THEN it is accepted and its postback reaches the queue with the sale's click ID
    assert (status, body["outcome"], body["affiliate_id"]) == (202, "queued", INGEST_AFFILIATE_ID)
    urls = sorted(m.url for m in api.queued())
    assert urls == [
        "https://track.acme.example/pb?cid=c123&p=7.50&st=rejected&o=T-REV-1",
        "https://track.acme.example/pb?cid=c123&p=7.50&st=sale",
    ]
    # AND the sale's record keeps its tracker and payout; the chargeback's its original and offer
    records = api.records()
    assert records["T-REV-1#sale"]["tracker"]["S"] == "trID_a1-T9-c123-x_trID"
    assert records["T-REV-1#sale"]["payout_text"]["S"] == "7.50"
    assert records["CB-T-REV-1#chargeback"]["original_transaction_id"]["S"] == "T-REV-1"
    assert records["CB-T-REV-1#chargeback"]["offer_id"]["S"] == "89"


def test_a_reversal_of_an_unknown_transaction_is_202_original_not_found(api: Api) -> None:
    # WHEN a refund names a transaction the relay never took
    status, body, _ = api.post(reversal_document("T-NEVER", event="refund"))
    # THEN it is accepted, recorded with original_not_found, and nothing is queued
    assert (status, body["outcome"]) == (202, "original_not_found")
    assert "CB-T-NEVER#refund" in api.records()
    assert api.queued() == []


def test_a_reversal_of_a_reversal_is_a_400_naming_the_field_in_the_batch(api: Api) -> None:
    # GIVEN a sale and its chargeback taken
    api.post(ingest_conversion_data(transaction_id="T-REV-2"))
    api.post(reversal_document("T-REV-2"))
    before = set(api.records())
    # WHEN a batch holds a new sale and a refund of the chargeback
    batch = {
        "conversions": [
            ingest_conversion_data(transaction_id="T-REV-3"),
            reversal_document("CB-T-REV-2", event="refund", transaction_id="RF-1"),
        ]
    }
    status, body, _ = api.post(batch)
    # THEN 400 names the refund's original_transaction_id, and nothing of the batch is recorded
    assert status == 400
    assert [e["field"] for e in body["errors"]] == ["conversions.1.original_transaction_id"]
    assert set(api.records()) == before
