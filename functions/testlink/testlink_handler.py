"""The test-link function: one Task of the test-link workflow per call (contract section 5).

The state machine (statemachine/testlink.asl.json) sends `{"step": ..., "run_id": ...}` and
branches on the answer. Domain outcomes (a tracker left unfilled, a dead endpoint) are
answers, recorded on the run; only infrastructure errors are raised, for the workflow's Retry
and, past it, its Catch (which records the verdict `failed` with the step).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from postback_relay.domain.events import OfferType
from postback_relay.observability import LazyTracer
from postback_relay.settings import settings_from_environ

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from postback_relay.services.testlink import TestLinkService

# services.testlink.MAX_HOPS, written out so that the service loads on the first call, not
# at import (a unit test keeps the two equal).
DEFAULT_MAX_HOPS = 10


class TestLinkSettings(BaseModel):
    """The function's environment (template.yaml), checked at cold start."""

    __test__ = False  # not a pytest test class, despite its name
    model_config = ConfigDict(frozen=True, extra="ignore")

    affiliates_table: str = Field(min_length=1)
    deliveries_table: str = Field(min_length=1)
    test_runs_table: str = Field(min_length=1)
    postback_queue_url: str = Field(min_length=1)
    network_link_hosts: tuple[str, ...] = Field(min_length=1)
    allow_loopback: bool = False
    max_hops: int = Field(default=DEFAULT_MAX_HOPS, ge=1, le=30)
    connect_timeout_s: float = Field(default=3, gt=0)
    read_timeout_s: float = Field(default=10, gt=0)

    @field_validator("network_link_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(host.strip().lower() for host in value.split(",") if host.strip())
        return value


def load_settings(environ: Mapping[str, str]) -> TestLinkSettings:
    return settings_from_environ(TestLinkSettings, environ, function="test-link")


settings = load_settings(os.environ)
logger = Logger()
# Patch only what this function calls: the default patches every library it finds and imports
# each one (requests, sqlite3, httplib...) at cold start.
tracer = LazyTracer(patch_modules=("botocore", "requests"))
metrics = Metrics()

# The metric this function emits (namespace POWERTOOLS_METRICS_NAMESPACE, dimensions `service`
# and `verdict`), once per run, from the step whose answer carries its final verdict; the
# dashboard in template.yaml shows it (tests/unit/template/test_dashboard.py checks both ways).
METRIC_VERDICTS = "TestRunVerdicts"
FINAL_VERDICTS = frozenset({"passed", "failed"})


# --- the Task payloads the state machine sends --------------------------------------------


class _Task(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", defer_build=True)

    run_id: str = Field(min_length=1, max_length=80)
    affiliate_id: str = Field(min_length=1, max_length=32)


class _Timing(_Task):
    waits: list[Annotated[int, Field(ge=0)]] = Field(min_length=1)
    deadline_s: int = Field(ge=0)
    started_at: datetime


class FollowLinkTask(_Task):
    step: Literal["follow_link"]


class CheckTrackerTask(_Task):
    step: Literal["check_tracker"]
    network_link: str


class FirePostbacksTask(_Timing):
    step: Literal["fire_postbacks"]
    network_link: str
    offer_id: str | None = None
    offer_type: OfferType
    tracker_values: dict[str, str]


class CheckDeliveryTask(_Timing):
    step: Literal["check_delivery"]
    delivery_ids: list[str]
    checks: int = Field(ge=0)
    summary: str = ""
    fired_at: datetime | None = None  # absent from runs started before the deadline counted from it


class RecordVerdictTask(_Task):
    step: Literal["record_verdict"]
    failed_step: str
    error: dict[str, Any] = Field(default_factory=dict)  # the Catch's {"Error": ..., "Cause": ...}


TestLinkTask = Annotated[
    FollowLinkTask | CheckTrackerTask | FirePostbacksTask | CheckDeliveryTask | RecordVerdictTask,
    Field(discriminator="step"),
]
# Built on the first validation, not at import (defer_build).
_task_adapter: TypeAdapter[TestLinkTask] = TypeAdapter(TestLinkTask, config=ConfigDict(defer_build=True))


@functools.cache
def service() -> TestLinkService:
    """Built on the first invocation, not at import, so that tests can start moto first."""
    # The adapters (and requests) load on the first call, not at import (README, Benchmarks).
    from postback_relay.adapters.dynamodb_affiliates import DynamoAffiliateStore
    from postback_relay.adapters.dynamodb_deliveries import DynamoDeliveryLog
    from postback_relay.adapters.dynamodb_testruns import DynamoTestRunStore
    from postback_relay.adapters.http_sender import SafeHttpClient
    from postback_relay.adapters.sqs_queue import SqsPostbackQueue
    from postback_relay.services.testlink import TestLinkService

    dynamodb = boto3.client("dynamodb")
    return TestLinkService(
        runs=DynamoTestRunStore(settings.test_runs_table, client=dynamodb),
        affiliates=DynamoAffiliateStore(
            settings.affiliates_table, client=dynamodb, allow_loopback=settings.allow_loopback, consistent_read=True
        ),
        queue=SqsPostbackQueue(settings.postback_queue_url, client=boto3.client("sqs")),
        deliveries=DynamoDeliveryLog(settings.deliveries_table, client=dynamodb),
        http=SafeHttpClient(settings.connect_timeout_s, settings.read_timeout_s, settings.allow_loopback),
        network_hosts=settings.network_link_hosts,
        allow_loopback=settings.allow_loopback,
        max_hops=settings.max_hops,
    )


def run_task(task: TestLinkTask, service: TestLinkService) -> dict[str, Any]:
    match task:
        case FollowLinkTask():
            return service.follow_link(task.run_id, task.affiliate_id).model_dump(mode="json")
        case CheckTrackerTask():
            return service.check_tracker(task.run_id, task.affiliate_id, task.network_link).model_dump(mode="json")
        case FirePostbacksTask():
            return service.fire_postbacks(
                task.run_id,
                task.affiliate_id,
                network_link=task.network_link,
                offer_id=task.offer_id,
                offer_type=task.offer_type,
                tracker_values=task.tracker_values,
                waits=task.waits,
                deadline_s=task.deadline_s,
                started_at=task.started_at,
            ).model_dump(mode="json")
        case CheckDeliveryTask():
            return service.check_delivery(
                task.run_id,
                affiliate_id=task.affiliate_id,
                delivery_ids=task.delivery_ids,
                checks=task.checks,
                summary=task.summary,
                waits=task.waits,
                deadline_s=task.deadline_s,
                started_at=task.started_at,
                fired_at=task.fired_at,
            ).model_dump(mode="json")
        case RecordVerdictTask():
            return service.record_verdict(
                task.run_id,
                failed_step=task.failed_step,
                error=str(task.error.get("Error", "States.TaskFailed")),
                cause=str(task.error.get("Cause", "")),
            ).model_dump(mode="json")


def count_verdict(answer: Mapping[str, Any]) -> None:
    verdict = answer.get("verdict")
    if verdict not in FINAL_VERDICTS:
        return
    with single_metric(
        name=METRIC_VERDICTS, unit=MetricUnit.Count, value=1, default_dimensions=metrics.default_dimensions
    ) as metric:
        metric.add_dimension(name="verdict", value=str(verdict))


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)  # answers carry tracker values and URLs
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    task = _task_adapter.validate_python(event)
    logger.append_keys(run_id=task.run_id, step=task.step)
    answer = run_task(task, service())
    logger.info("test-link step done", extra={"answer_verdict": answer.get("verdict"), "answer_ok": answer.get("ok")})
    count_verdict(answer)
    return answer
