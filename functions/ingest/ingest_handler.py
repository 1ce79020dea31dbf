"""The conversion API: `POST /conversions` (contract section 2), HTTP API payload v2.

Checks in this order, each cheap before the next: size (413), signature (401), content type
(415), body (400); then the ingest service records each conversion with its postbacks in one
write (202, or 200 for repeats); the table's stream queues them. Ingest never calls SQS.
The HTTP plumbing (checks, error answers, metrics) is in ingest_http; the service is built
by postback_relay.wiring.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging import correlation_paths

from ingest_http import (
    app,
    build_hot_path_models,
    check_content_type,
    conversions_answer,
    count,
    logger,
    metrics,
    raw_body,
    signing_secret,
)
from postback_relay import wiring
from postback_relay.coldstart import after_restore, prime
from postback_relay.http_api import Response
from postback_relay.observability import LazyTracer
from postback_relay.settings import IngestSettings, settings_from_environ

# The service, its domain, models and adapters load on the first request (or at init under
# SnapStart, see the end of this module), not at import: docs/benchmarks.md.
if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from postback_relay.domain.conversion import Conversion
    from postback_relay.services.ingest import IngestReport, IngestService

SIGNATURE_TOLERANCE_S = 300


def load_settings(environ: Mapping[str, str]) -> IngestSettings:
    return settings_from_environ(IngestSettings, environ, function="ingest")


settings = load_settings(os.environ)
# Patch only what this function calls: the default patches every library it finds and imports
# each one (requests, sqlite3, httplib...) at cold start.
tracer = LazyTracer(patch_modules=("botocore",))
# Unix seconds; tests replace it to check signatures made at a fixed time and to age the cache.
clock: Callable[[], float] = time.time
ingest_service = wiring.OnFirstUse(lambda: wiring.ingest_service(settings, clock=lambda: clock()))


@app.post("/conversions")
def post_conversions() -> Response[str]:
    from postback_relay.domain.signing import verify_conversion_request
    from postback_relay.services.ingest import parse_conversion_request

    event = app.current_event
    body = raw_body(event.body, bool(event.is_base64_encoded), limit=settings.max_body_bytes)
    verify_conversion_request(
        signing_secret(settings.signing_secret_name),
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
    report = ingest(app.context.get("service") or ingest_service(), request.conversions, batch=request.is_batch)
    count(report)
    return conversions_answer(report, is_batch=request.is_batch)


# Traced here rather than on the route: the route's refusals (401, 400) are not worth a
# traceback in the logs, which the tracer writes for every exception it sees.
@tracer.capture_method(capture_response=False)
def ingest(service: IngestService, conversions: Sequence[Conversion], *, batch: bool = False) -> IngestReport:
    return service.ingest(conversions, batch=batch)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, service: IngestService | None = None
) -> dict[str, Any]:
    """`service`: the ingest service to use instead of the function's own (tests, the bench)."""
    if service is not None:
        app.append_context(service=service)
    return app.resolve(event, context)


# SnapStart (template parameter IngestSnapStart) or provisioned concurrency: the service, its
# clients and the hot path's models are built at init, into the snapshot; on demand, on first use.
prime(ingest_service, build_hot_path_models)

after_restore(wiring.refresh_after_restore)  # the secret is read again, the clients built again if need be
