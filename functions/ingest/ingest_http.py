"""The conversion API's HTTP plumbing: the resolver, the body and content-type checks, the
signing secret, the error answers and the metrics (ingest_handler holds the route).

Every refusal is an error class of postback_relay.domain.errors answered here, by one
exception-handler registry on the resolver: a status code is never chosen by a message.
Infrastructure failures (DynamoDB, the secret) answer 503 with Retry-After; nothing the caller
sends gets a 5xx. The body, the secret and the signature are never logged.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from postback_relay.domain import messages
from postback_relay.domain.errors import (
    BODY_FIELD,
    DomainError,
    FieldError,
    InfrastructureError,
    InvalidConversionRequest,
    PayloadTooLarge,
    SignatureError,
    UnsupportedMediaType,
)
from postback_relay.http_api import HttpApiResolver, Response, content_types
from postback_relay.observability import handler_logger

if TYPE_CHECKING:
    from postback_relay.services.ingest import IngestReport

SECRET_MAX_AGE_S = 300
RETRY_AFTER_S = 10

logger = handler_logger()
metrics = Metrics()
app = HttpApiResolver()

# Every status code this function answers; docs/openapi.yaml documents each (a test checks).
RESPONSE_STATUSES = frozenset({200, 202, 400, 401, 409, 413, 415, 500, 503})

# The metrics this function emits (namespace POWERTOOLS_METRICS_NAMESPACE, dimension `service`);
# the dashboard in template.yaml shows them (tests/unit/template/test_dashboard.py checks both ways).
METRIC_CONVERSIONS = "Conversions"  # per conversion taken, dimensions `outcome` and `event`
METRIC_REPEATS = "ConversionRepeats"
METRIC_QUEUED = "PostbacksQueued"
REJECTED_METRICS = {
    400: "Rejected400",
    401: "Rejected401",
    413: "Rejected413",
    415: "Rejected415",
    500: "Rejected500",
    503: "Rejected503",
}


# --- the request -------------------------------------------------------------------------------


def signing_secret(name: str) -> str:
    """The secret the platform signs with, cached for SECRET_MAX_AGE_S."""
    from aws_lambda_powertools.utilities import parameters
    from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

    from postback_relay import wiring

    # Powertools' provider on the default boto3 session (its own session would load the
    # endpoint and service data a second time on the first request), on the functions' AWS budget.
    if "secrets" not in DEFAULT_PROVIDERS:
        DEFAULT_PROVIDERS["secrets"] = parameters.SecretsProvider(
            boto3_client=wiring.aws_client("secretsmanager", attempts=wiring.INGEST_AWS_ATTEMPTS)
        )
    try:
        secret = parameters.get_secret(name, max_age=SECRET_MAX_AGE_S)
    except parameters.exceptions.GetParameterError as exc:
        raise InfrastructureError("The signing secret cannot be read.") from exc
    if isinstance(secret, bytes):
        return secret.decode()
    if not isinstance(secret, str) or not secret:
        raise InfrastructureError("The signing secret is empty.")
    return secret


def raw_body(body: str | None, is_base64_encoded: bool, *, limit: int) -> bytes:
    """The bytes the caller signed. API Gateway hands binary bodies over base64-encoded."""
    text = body or ""
    # Refuse before decoding: base64 is 4 characters per 3 bytes, so this bound is safe.
    if is_base64_encoded and len(text) * 3 // 4 > limit + 2:
        raise PayloadTooLarge(f"The body is larger than {limit} bytes.")
    if is_base64_encoded:
        try:
            raw = base64.b64decode(text, validate=True)
        except binascii.Error as exc:
            raise InvalidConversionRequest([FieldError(BODY_FIELD, "The body is not valid base64.")]) from exc
    else:
        try:
            raw = text.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate (a \ud800 escape in the event JSON)
            raise InvalidConversionRequest([FieldError(BODY_FIELD, "The body is not UTF-8 text.")]) from exc
    if len(raw) > limit:
        raise PayloadTooLarge(f"The body is larger than {limit} bytes.")
    return raw


def check_content_type(content_type: str | None) -> None:
    media_type, _, parameters_text = (content_type or "").partition(";")
    media_type = media_type.strip().lower()
    if media_type != "application/json" and not (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        raise UnsupportedMediaType("Send the conversions as JSON: Content-Type: application/json.")
    for parameter in parameters_text.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise UnsupportedMediaType("The body must be UTF-8 JSON.")


def build_hot_path_models() -> None:
    """The models and modules a request needs, built ahead of it (SnapStart, provisioned concurrency)."""
    from postback_relay.domain.config import AffiliateConfig
    from postback_relay.domain.conversion import Conversion, ConversionResult
    from postback_relay.domain.delivery import PostbackMessage
    from postback_relay.domain.signing import verify_conversion_request  # noqa: F401 - imported for the snapshot

    for model in (Conversion, ConversionResult, AffiliateConfig, PostbackMessage):
        model.model_rebuild()


# --- the answers -------------------------------------------------------------------------------


def json_answer(status: int, document: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> Response[str]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(document, separators=(",", ":"), ensure_ascii=False),
        headers=headers,
    )


def conversions_answer(report: IngestReport, *, is_batch: bool) -> Response[str]:
    """202 when a conversion was taken now; else 409 when a repeat's content differs from the
    conversion first taken (contract section 2: nothing of it is changed); else 200.

    One conversion: its result (409: the first result, under `result`, with the fields that
    differ). A batch: one result per conversion, in the order sent; a differing repeat's result
    names its `differing` fields, whatever the batch's status (the others were taken)."""
    results = [answer.to_json() for answer in report.answers]
    if report.differing and not report.new_conversions:
        differing = sorted({name for answer in report.differing for name in answer.differing})
        document: dict[str, Any] = {
            "error": "differing_repeat",
            "message": messages.differing_repeat(differing),
            "differing": differing,
        }
        document.update({"results": results} if is_batch else {"result": results[0]})
        logger.info("Conversion request refused: differing repeat", extra={"differing": differing})
        return json_answer(409, document)
    return json_answer(200 if report.all_repeats else 202, {"results": results} if is_batch else results[0])


def count(report: IngestReport) -> None:
    """The metrics and the log line of the conversions taken."""
    repeats = sum(1 for answer in report.answers if answer.repeat)
    taken = Counter(
        (answer.result.outcome.value, answer.result.event.value) for answer in report.answers if not answer.repeat
    )
    metrics.add_metric(name=METRIC_REPEATS, unit=MetricUnit.Count, value=repeats)
    metrics.add_metric(name=METRIC_QUEUED, unit=MetricUnit.Count, value=report.postbacks_queued)
    for (outcome, event_name), conversions in taken.items():
        with single_metric(
            name=METRIC_CONVERSIONS,
            unit=MetricUnit.Count,
            value=conversions,
            default_dimensions=metrics.default_dimensions,
        ) as metric:
            metric.add_dimension(name="outcome", value=outcome)
            metric.add_dimension(name="event", value=event_name)
    logger.info(
        "Conversions taken",
        extra={
            "conversions": len(report.answers),
            "new": len(report.new_conversions),
            "repeats": repeats,
            "postbacks_queued": report.postbacks_queued,
            "outcomes": {f"{outcome}/{event_name}": n for (outcome, event_name), n in taken.items()},
        },
    )


def _rejected(status: int, error: DomainError) -> Response[str]:
    metrics.add_metric(name=REJECTED_METRICS[status], unit=MetricUnit.Count, value=1)
    return json_answer(status, {"error": error.kind, "message": error.message})


@app.exception_handler(PayloadTooLarge)
def payload_too_large(error: PayloadTooLarge) -> Response[str]:
    return _rejected(413, error)


@app.exception_handler(SignatureError)
def bad_signature(error: SignatureError) -> Response[str]:
    logger.warning("Conversion request refused: signature", extra={"reason": error.message})
    return _rejected(401, error)


@app.exception_handler(UnsupportedMediaType)
def unsupported_media_type(error: UnsupportedMediaType) -> Response[str]:
    return _rejected(415, error)


@app.exception_handler(InvalidConversionRequest)
def invalid_request(error: InvalidConversionRequest) -> Response[str]:
    field_errors = [{"field": e.field, "message": e.message} for e in error.errors]
    logger.info("Conversion request refused: invalid", extra={"errors": len(field_errors)})
    metrics.add_metric(name=REJECTED_METRICS[400], unit=MetricUnit.Count, value=1)
    message = "The request is invalid; nothing of it was recorded."
    return json_answer(400, {"error": error.kind, "message": message, "errors": field_errors})


@app.exception_handler(InfrastructureError)
def unavailable(error: InfrastructureError) -> Response[str]:
    logger.error("Conversion request failed: infrastructure", extra={"reason": error.message})
    metrics.add_metric(name=REJECTED_METRICS[503], unit=MetricUnit.Count, value=1)
    document = {
        "error": InfrastructureError.kind,
        "message": (
            "The relay cannot take conversions right now. Retry the same request: conversions of it "
            "already taken are answered as repeats, the others are taken."
        ),
    }
    return json_answer(503, document, headers={"Retry-After": str(RETRY_AFTER_S)})


@app.exception_handler(Exception)
def unexpected(error: Exception) -> Response[str]:
    # A fault of the relay, never of the request: logged with its traceback, answered without it.
    logger.exception("Conversion request failed: unexpected error")
    metrics.add_metric(name=REJECTED_METRICS[500], unit=MetricUnit.Count, value=1)
    document = {"error": "internal_error", "message": "The relay failed on this request. Retry it later."}
    return json_answer(500, document)
