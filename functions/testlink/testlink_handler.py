"""The test-link function: one Task of the test-link workflow per call (contract section 5).

The state machine (statemachine/testlink.asl.json) sends `{"step": ..., "run_id": ...}` and
branches on the answer (testlink_tasks: the payloads, the service call of each step, the
verdict metric). Domain outcomes (a tracker left unfilled, a dead endpoint) are answers,
recorded on the run; only infrastructure errors are raised, for the workflow's Retry and,
past it, its Catch (which records the verdict `failed` with the step). The service is built
by postback_relay.wiring.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from postback_relay import wiring
from postback_relay.observability import LazyTracer
from postback_relay.settings import TestLinkSettings, settings_from_environ
from testlink_tasks import count_verdict, logger, run_task, task_adapter

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from postback_relay.services.testlink import TestLinkService


def load_settings(environ: Mapping[str, str]) -> TestLinkSettings:
    return settings_from_environ(TestLinkSettings, environ, function="test-link")


settings = load_settings(os.environ)
# Patch only what this function calls: the default patches every library it finds and imports
# each one (requests, sqlite3, httplib...) at cold start.
tracer = LazyTracer(patch_modules=("botocore", "requests"))
# Built on the first call, not at import, so that tests can start moto first; the adapters
# (and requests) load then too (docs/benchmarks.md).
testlink_service = wiring.OnFirstUse(lambda: wiring.link_test_service(settings))


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)  # answers carry tracker values and URLs
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, service: TestLinkService | None = None
) -> dict[str, Any]:
    """`service`: the test-link service to use instead of the function's own (tests)."""
    task = task_adapter.validate_python(event)
    logger.append_keys(run_id=task.run_id, step=task.step)
    answer = run_task(task, service or testlink_service())
    logger.info("test-link step done", extra={"answer_verdict": answer.get("verdict"), "answer_ok": answer.get("ok")})
    count_verdict(answer)
    return answer
