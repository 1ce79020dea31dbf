"""The outbox function: the conversions table's stream -> the postback queue (services.outbox).

Lambda's event source mapping hands it new conversion records (INSERT events of items that
carry postbacks: a filter on the mapping) in batches of up to 100. Their messages are sent
first, 10 per SendMessageBatch across records (services.outbox); Powertools' BatchProcessor
then reports the records not wholly queued as batch item failures (outbox_stream: the
records, the partial answer, the metrics). The service is built by postback_relay.wiring.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from outbox_stream import checker, count, logger, metrics, outbox_record, processor
from postback_relay import wiring
from postback_relay.batch import PartialItemFailureResponse, process_partial_response
from postback_relay.observability import LazyTracer
from postback_relay.settings import OutboxSettings, settings_from_environ

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from postback_relay.services.outbox import OutboxService


def load_settings(environ: Mapping[str, str]) -> OutboxSettings:
    return settings_from_environ(OutboxSettings, environ, function="outbox")


settings = load_settings(os.environ)
tracer = LazyTracer(patch_modules=("botocore",))
# Built on the first batch, not at import, so that tests can start moto first.
outbox_service = wiring.OnFirstUse(lambda: wiring.outbox_service(settings))


@metrics.log_metrics
@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, service: OutboxService | None = None
) -> PartialItemFailureResponse:
    """`service`: the outbox service to use instead of the function's own (tests, the bench)."""
    records = [outbox_record(record) for record in event.get("Records", [])]
    report = (service or outbox_service()).relay(records)
    count(report, records=len(records))
    return process_partial_response(event=event, record_handler=checker(report), processor=processor, context=context)
