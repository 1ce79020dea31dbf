"""The test-link function's task plumbing: the Task payloads the state machine sends, the
service call each one makes, and the verdict metric (testlink_handler holds the entry point).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from postback_relay.domain.events import OfferType
from postback_relay.observability import handler_logger

if TYPE_CHECKING:
    from postback_relay.services.testlink import TestLinkService

logger = handler_logger()
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
task_adapter: TypeAdapter[TestLinkTask] = TypeAdapter(TestLinkTask, config=ConfigDict(defer_build=True))


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
