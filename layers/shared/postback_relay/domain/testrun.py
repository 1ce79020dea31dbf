"""A test-link run (contract section 5): its steps, its verdict, and the limits it runs within.

The run record is what the TestRunsTable keeps and `postback test status` shows; the steps
that write it are in `services.testlink`, the workflow that drives them in
`statemachine/testlink.asl.json`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MAX_HOPS = 10
DEFAULT_DEADLINE_S = 35 * 60  # the network's guide promises an answer within 35 minutes
# Growing waits between delivery checks: quick checks catch a working server within a minute,
# later ones follow the dispatcher's retry schedule (5 s, then 5 min) without polling hard.
DEFAULT_WAITS_S: tuple[int, ...] = (30, 60, 120, 240, 300, 300, 300, 300, 300, 300, 300)


def next_wait_s(waits: Sequence[int], checks: int, remaining_s: float) -> int:
    """The wait before the next check: the `checks`-th of the waits (the last one repeats),
    never past the deadline, so that the last check lands on it."""
    planned = waits[min(checks, len(waits) - 1)] if waits else 0
    return max(0, min(planned, math.ceil(max(remaining_s, 0))))


class RunVerdict(StrEnum):
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"


class StepName(StrEnum):
    FOLLOW_LINK = "follow_link"
    CHECK_TRACKER = "check_tracker"
    FIRE_POSTBACKS = "fire_postbacks"
    CHECK_DELIVERY = "check_delivery"
    RECORD_VERDICT = "record_verdict"


class TestStep(BaseModel):
    """One entry of a run's log: what a step saw, for a person reading `test status`."""

    __test__ = False  # not a pytest test class, despite its name
    model_config = ConfigDict(frozen=True, defer_build=True)

    name: str
    at: datetime
    ok: bool
    details: dict[str, Any] = Field(default_factory=dict)


class TestRun(BaseModel):
    """One test-link run, as the TestRunsTable keeps it and `postback test status` shows it."""

    __test__ = False
    model_config = ConfigDict(frozen=True, defer_build=True)

    run_id: str
    affiliate_id: str
    started_by: str
    started_at: datetime
    verdict: RunVerdict = RunVerdict.RUNNING
    step: str | None = None  # the step that failed
    reason: str | None = None  # why, in a sentence the affiliate can act on
    finished_at: datetime | None = None
    steps: tuple[TestStep, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# How an execution ends when no step recorded the verdict: it failed past every Catch, timed out
# (the state machine's TimeoutSeconds) or was stopped.
ENDED_WITHOUT_VERDICT = frozenset({"FAILED", "TIMED_OUT", "ABORTED"})


@dataclass(frozen=True)
class WorkflowExecution:
    """What the workflow says of a run's execution: its status (Step Functions' RUNNING,
    SUCCEEDED, FAILED, TIMED_OUT, ABORTED) and, when it failed, its error and cause."""

    status: str
    error: str | None = None
    cause: str | None = None

    @property
    def ended_without_verdict(self) -> bool:
        return self.status in ENDED_WITHOUT_VERDICT

    def reason(self) -> str:
        """Why the run failed, for `test status`: how the execution ended, and its error."""
        detail = ": ".join(part for part in (self.error, self.cause) if part)
        ended = f"the test-link workflow ended {self.status.lower()} without a verdict"
        return ended + (f" ({detail})" if detail else "")
