"""The conversion API: `POST /conversions` (contract section 2), HTTP API payload v2.

Checks in this order, each cheap before the next: size (413), signature (401), content type
(415), body (400); then the ingest service records each conversion with its postbacks in one
write (202, or 200 for repeats); the table's stream queues them. Ingest never calls SQS.
Infrastructure failures (DynamoDB) answer 503 with Retry-After; nothing the caller sends gets a 5xx.
The body, the secret and the signature are never logged.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from pydantic import BaseModel, ConfigDict, Field

from postback_relay.coldstart import after_restore, credentials_refresh_themselves, prime, reseed_random
from postback_relay.domain.errors import DomainError, InfrastructureError, SignatureError
from postback_relay.http_api import HttpApiResolver, Response, content_types
from postback_relay.observability import LazyTracer
from postback_relay.services.ingest_request_errors import BODY_FIELD, FieldError, InvalidConversionRequest
from postback_relay.settings import settings_from_environ

# The service, its domain, models and adapters load on the first request (or at init under
# SnapStart, see the end of this module), not at import: README, Benchmarks.
if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_dynamodb import DynamoDBClient

    from postback_relay.adapters.dynamodb_affiliates import CachedAffiliateStore
    from postback_relay.adapters.dynamodb_conversions import DynamoConversionLog
    from postback_relay.domain.conversion import Conversion
    from postback_relay.services.ingest import IngestReport, IngestService

SIGNATURE_TOLERANCE_S = 300
SECRET_MAX_AGE_S = 300
RETRY_AFTER_S = 10

_ErrorAnswer = TypeVar("_ErrorAnswer", bound=Callable[..., Any])


class IngestSettings(BaseModel):
    """The function's environment (template.yaml), checked at cold start."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    affiliates_table: str = Field(min_length=1)
    conversions_table: str = Field(min_length=1)
    signing_secret_name: str = Field(min_length=1)
    config_cache_seconds: float = Field(default=60, ge=0)
    allow_loopback: bool = False
    max_body_bytes: int = Field(default=262144, gt=0)


def load_settings(environ: Mapping[str, str]) -> IngestSettings:
    return settings_from_environ(IngestSettings, environ, function="ingest")


settings = load_settings(os.environ)
logger = Logger()
metrics = Metrics()
# Patch only what this function calls: the default patches every library it finds and imports
# each one (requests, sqlite3, httplib...) at cold start.
tracer = LazyTracer(patch_modules=("botocore",))
app = HttpApiResolver()

# Unix seconds; tests replace it to check signatures made at a fixed time and to age the cache.
clock: Callable[[], float] = time.time

# Every status code this function answers; docs/openapi.yaml documents each (a test checks).
RESPONSE_STATUSES = frozenset({200, 202, 400, 401, 413, 415, 500, 503})

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


def answers(exc_class: type[Exception]) -> Callable[[_ErrorAnswer], _ErrorAnswer]:
    """Register an answer for an error type (a typed face on app.exception_handler)."""

    def register(answer: _ErrorAnswer) -> _ErrorAnswer:
        app.exception_handler(exc_class)(answer)
        return answer

    return register


class PayloadTooLarge(DomainError):
    kind = "payload_too_large"


class UnsupportedMediaType(DomainError):
    kind = "unsupported_media_type"


@dataclass(frozen=True)
class Adapters:
    dynamodb: DynamoDBClient
    affiliates: CachedAffiliateStore
    conversions: DynamoConversionLog


@functools.cache
def adapters() -> Adapters:
    """Built on the first invocation, not at import, so that tests can start moto first."""
    from postback_relay.adapters.dynamodb_affiliates import CachedAffiliateStore, DynamoAffiliateStore
    from postback_relay.adapters.dynamodb_conversions import DynamoConversionLog

    dynamodb = boto3.client("dynamodb")
    return Adapters(
        dynamodb=dynamodb,
        affiliates=CachedAffiliateStore(
            DynamoAffiliateStore(settings.affiliates_table, client=dynamodb, allow_loopback=settings.allow_loopback),
            ttl_s=settings.config_cache_seconds,
            clock=lambda: clock(),
        ),
        conversions=DynamoConversionLog(settings.conversions_table, client=dynamodb, clock=_now),
    )


@functools.cache
def ingest_service() -> IngestService:
    from postback_relay.services.ingest import IngestService

    built = adapters()
    return IngestService(built.affiliates, built.conversions, clock=_now, allow_loopback=settings.allow_loopback)


def _now() -> datetime:
    return datetime.fromtimestamp(clock(), UTC)


def signing_secret() -> str:
    from aws_lambda_powertools.utilities import parameters
    from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

    # Powertools' provider on the default boto3 session: its own session would load the
    # endpoint and service data a second time on the first request.
    if "secrets" not in DEFAULT_PROVIDERS:
        DEFAULT_PROVIDERS["secrets"] = parameters.SecretsProvider(boto3_client=boto3.client("secretsmanager"))
    try:
        secret = parameters.get_secret(settings.signing_secret_name, max_age=SECRET_MAX_AGE_S)
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


@app.post("/conversions")
def post_conversions() -> Response[str]:
    from postback_relay.domain.signing import verify_conversion_request
    from postback_relay.services.ingest import parse_conversion_request

    event = app.current_event
    body = raw_body(event.body, bool(event.is_base64_encoded), limit=settings.max_body_bytes)
    verify_conversion_request(
        signing_secret(),
        event.headers.get("x-postback-timestamp"),
        event.headers.get("x-postback-signature"),
        body,
        now=clock(),
        tolerance_s=SIGNATURE_TOLERANCE_S,
    )
    check_content_type(event.headers.get("content-type"))
    request = parse_conversion_request(body)
    if not request.is_batch:
        logger.set_correlation_id(request.conversions[0].transaction_id)
    report = ingest(request.conversions)
    _count(report)
    status = 200 if report.all_repeats else 202
    answers = [answer.to_json() for answer in report.answers]
    return _json(status, {"results": answers} if request.is_batch else answers[0])


# Traced here rather than on the route: the route's refusals (401, 400) are not worth a
# traceback in the logs, which the tracer writes for every exception it sees.
@tracer.capture_method(capture_response=False)
def ingest(conversions: Sequence[Conversion]) -> IngestReport:
    return ingest_service().ingest(conversions)


def _count(report: IngestReport) -> None:
    repeats = sum(1 for answer in report.answers if answer.repeat)
    taken = Counter(
        (answer.result.outcome.value, answer.result.event.value) for answer in report.answers if not answer.repeat
    )
    metrics.add_metric(name=METRIC_REPEATS, unit=MetricUnit.Count, value=repeats)
    metrics.add_metric(name=METRIC_QUEUED, unit=MetricUnit.Count, value=report.postbacks_queued)
    for (outcome, event_name), count in taken.items():
        with single_metric(
            name=METRIC_CONVERSIONS, unit=MetricUnit.Count, value=count, default_dimensions=metrics.default_dimensions
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
            "outcomes": {f"{outcome}/{event_name}": count for (outcome, event_name), count in taken.items()},
        },
    )


def _json(status: int, document: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> Response[str]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(document, separators=(",", ":"), ensure_ascii=False),
        headers=headers,
    )


def _rejected(status: int, error: DomainError, **extra: Any) -> Response[str]:
    metrics.add_metric(name=REJECTED_METRICS[status], unit=MetricUnit.Count, value=1)
    return _json(status, {"error": error.kind, "message": error.message, **extra})


@answers(PayloadTooLarge)
def _payload_too_large(error: PayloadTooLarge) -> Response[str]:
    return _rejected(413, error)


@answers(SignatureError)
def _bad_signature(error: SignatureError) -> Response[str]:
    logger.warning("Conversion request refused: signature", extra={"reason": error.message})
    return _rejected(401, error)


@answers(UnsupportedMediaType)
def _unsupported_media_type(error: UnsupportedMediaType) -> Response[str]:
    return _rejected(415, error)


@answers(InvalidConversionRequest)
def _invalid_request(error: InvalidConversionRequest) -> Response[str]:
    field_errors = [{"field": e.field, "message": e.message} for e in error.errors]
    logger.info("Conversion request refused: invalid", extra={"errors": len(field_errors)})
    metrics.add_metric(name=REJECTED_METRICS[400], unit=MetricUnit.Count, value=1)
    message = "The request is invalid; nothing of it was recorded."
    return _json(400, {"error": error.kind, "message": message, "errors": field_errors})


@answers(InfrastructureError)
def _unavailable(error: InfrastructureError) -> Response[str]:
    logger.error("Conversion request failed: infrastructure", extra={"reason": error.message})
    metrics.add_metric(name=REJECTED_METRICS[503], unit=MetricUnit.Count, value=1)
    document = {
        "error": InfrastructureError.kind,
        "message": (
            "The relay cannot take conversions right now. Retry the same request: conversions of it "
            "already taken are answered as repeats, the others are taken."
        ),
    }
    return _json(503, document, headers={"Retry-After": str(RETRY_AFTER_S)})


@answers(Exception)
def _unexpected(error: Exception) -> Response[str]:
    # A fault of the relay, never of the request: logged with its traceback, answered without it.
    logger.exception("Conversion request failed: unexpected error")
    metrics.add_metric(name=REJECTED_METRICS[500], unit=MetricUnit.Count, value=1)
    document = {"error": "internal_error", "message": "The relay failed on this request. Retry it later."}
    return _json(500, document)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)


def _build_hot_path() -> None:
    """The service, its clients and the hot path's models, built ahead of the first request."""
    from postback_relay.domain.config import AffiliateConfig
    from postback_relay.domain.conversion import Conversion, ConversionResult
    from postback_relay.domain.delivery import PostbackMessage
    from postback_relay.domain.signing import verify_conversion_request  # noqa: F401 - imported for the snapshot

    ingest_service()
    for model in (Conversion, ConversionResult, AffiliateConfig, PostbackMessage):
        model.model_rebuild()


# SnapStart (template parameter IngestSnapStart) or provisioned concurrency: that work is
# done at init, into the snapshot; on demand, on first use.
prime(_build_hot_path)


@after_restore
def _refresh_after_restore() -> None:
    from aws_lambda_powertools.utilities import parameters

    reseed_random()
    # The secret is read again: it may have rotated since the snapshot was taken.
    parameters.clear_caches()  # type: ignore[no-untyped-call]
    if not credentials_refresh_themselves(boto3.DEFAULT_SESSION):
        # Clients holding the snapshot's fixed credentials: built again on the next request.
        boto3.setup_default_session()
        adapters.cache_clear()
        ingest_service.cache_clear()
