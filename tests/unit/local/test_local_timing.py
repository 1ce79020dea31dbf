"""The local stack's timings, from the domain's retry schedule and the local floors
(contract section 6: a whole retry schedule ends within a minute, and a test link locally sees
every attempt the real schedule makes within 35 minutes)."""

from __future__ import annotations

import math

from postback_ops.local import resources
from postback_ops.local.stack import LocalSettings
from postback_ops.local.timing import (
    LocalFloors,
    attempts_within,
    latest_local_start_s,
    local_testlink_deadline_s,
    retry_schedule_s,
)
from postback_relay.domain.delivery import RETRY_SCHEDULE_S, retry_delay
from postback_relay.domain.testrun import DEFAULT_DEADLINE_S


def template_floors() -> LocalFloors:
    """The floors the local stack runs with: the poller's 1 s receive wait, the dispatcher's
    batching window and timeouts, as template.yaml gives them."""
    dispatch = resources.load_template()["Resources"]["DispatchFunction"]["Properties"]
    (sqs_event,) = [e for e in dispatch["Events"].values() if e["Type"] == "SQS"]
    window = float(sqs_event["Properties"].get("MaximumBatchingWindowInSeconds", 0))
    env = dispatch["Environment"]["Variables"]
    return LocalFloors(pickup_s=1 + window, attempt_s=float(env["CONNECT_TIMEOUT_S"]) + float(env["READ_TIMEOUT_S"]))


def test_the_real_schedule_can_make_four_attempts_within_35_minutes() -> None:
    # GIVEN the real schedule, each retry as early as its jitter allows: 0, 4 s, 244 s, 1684 s
    earliest = [0.0]
    for failed in range(1, len(RETRY_SCHEDULE_S) + 1):
        earliest.append(earliest[-1] + (retry_delay(failed, rand=lambda: 0.0) or 0))
    # WHEN the attempts within the deadline are counted, THEN they are those four
    assert attempts_within(DEFAULT_DEADLINE_S) == sum(1 for at in earliest if at <= DEFAULT_DEADLINE_S) == 4


def test_the_local_test_deadline_covers_every_attempt_of_the_real_35_minutes() -> None:
    # GIVEN the default local stack
    scale, floors = LocalSettings().delay_scale, template_floors()

    # WHEN its test-link deadline is computed
    deadline = local_testlink_deadline_s(scale=scale, floors=floors)

    # THEN the fourth attempt starts and answers before it, however late the jitter and the poller
    assert deadline >= latest_local_start_s(4, scale=scale, floors=floors) + floors.attempt_s
    # AND it is not 35 minutes times the scale, which the 1 s floors alone exceed
    assert deadline > math.ceil(DEFAULT_DEADLINE_S * scale) + 3 * floors.pickup_s
    # AND a test schedule still ends within a minute
    assert deadline <= 60


def test_the_whole_local_retry_schedule_ends_within_a_minute() -> None:
    # GIVEN the default local stack; WHEN its retry schedule's latest end is computed
    # THEN all eight attempts have started within 60 s, however late the jitter and the poller
    assert retry_schedule_s(scale=LocalSettings().delay_scale, floors=template_floors()) <= 60
