"""The dispatcher: SQS postback messages -> the affiliates' servers (contract section 4).

The records of one batch are sent concurrently first (services.dispatch); Powertools'
BatchProcessor then reports each record's precomputed outcome (dispatch_sqs: the records,
the partial answer, the metrics). The dispatcher is built by postback_relay.wiring.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dispatch_sqs import count, count_circuits, logger, metrics, processor, received, reporter
from postback_relay import wiring
from postback_relay.batch import PartialItemFailureResponse, process_partial_response
from postback_relay.observability import LazyTracer
from postback_relay.settings import DispatchSettings, settings_from_environ

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from postback_relay.services.dispatch import Dispatcher


def load_settings(environ: Mapping[str, str]) -> DispatchSettings:
    return settings_from_environ(DispatchSettings, environ, function="dispatch")


settings = load_settings(os.environ)
# Patch only what this function calls: the default patches every library it finds and imports
# each one (requests, sqlite3, httplib...) at cold start.
tracer = LazyTracer(patch_modules=("botocore", "requests"))
# Built on the first batch, not at import, so that tests can start moto first.
dispatcher = wiring.OnFirstUse(lambda: wiring.dispatcher(settings))


@metrics.log_metrics
@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, service: Dispatcher | None = None
) -> PartialItemFailureResponse:
    """`service`: the dispatcher to use instead of the function's own (tests, the bench)."""
    built = service or dispatcher()
    # SQS allows a visibility up to 12 hours from this receipt, which Lambda's poller made at
    # most one batching window before this invocation (its SentTimestamp may be days older).
    received_by = time.time() - settings.batching_window_s
    records = [received(record, received_by=received_by) for record in event.get("Records", [])]
    # Lambda's clock of this invocation: no send starts that its timeout could cut off.
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    time_left = (lambda: remaining_ms() / 1000) if callable(remaining_ms) else None
    outcomes = built.dispatch_batch(records, time_left=time_left)
    count(outcomes)
    count_circuits(built.breakers.drain_transitions())
    return process_partial_response(
        event=event, record_handler=reporter(outcomes), processor=processor, context=context
    )
