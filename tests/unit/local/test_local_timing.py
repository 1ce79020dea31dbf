"""The local stack's timings, checked against the retry schedule as documented (not the
domain's constants, which the timing module itself reads) and the local floors (contract
section 6: a whole retry schedule ends within a minute, and a test link locally sees every
attempt the real schedule makes within 35 minutes)."""

from __future__ import annotations

import math

from postback_ops.local.stack import LocalSettings
from postback_ops.local.timing import LocalFloors, attempts_within, local_testlink_deadline_s, retry_schedule_s
from postback_ops.template import load_template, template_value
from postback_relay.domain.testrun import DEFAULT_DEADLINE_S

# The schedule as README and docs/architecture.md (Retry) state it, written out here so that
# the expected values never come from the code under test: seconds after each failed attempt,
# +/-20% jitter, never under 1 s locally (SQS counts whole seconds); a test link's verdict
# within 35 minutes (the network's guide).
DOCUMENTED_SCHEDULE_S = (5, 300, 1800, 7200, 18000, 36000, 36000)
DOCUMENTED_JITTER = 0.2
LOCAL_FLOOR_S = 1
REAL_DEADLINE_S = 35 * 60


def documented_local_starts(scale: float, floors: LocalFloors) -> list[float]:
    """The latest moment each attempt (1..8) starts locally: each delay as late as its jitter
    allows, scaled, rounded up to whole seconds and floored at 1 s, plus the pickup."""
    starts: list[float] = []
    waited = 0
    for attempt, delay in enumerate((0, *DOCUMENTED_SCHEDULE_S), start=1):
        if delay:
            waited += max(LOCAL_FLOOR_S, math.ceil(delay * (1 + DOCUMENTED_JITTER) * scale))
        starts.append(waited + attempt * floors.pickup_s)
    return starts


def template_floors() -> LocalFloors:
    """The floors the local stack runs with: the poller's 1 s receive wait, the dispatcher's
    batching window and timeouts, as template.yaml gives them."""
    template = load_template()
    dispatch = template["Resources"]["DispatchFunction"]["Properties"]
    (sqs_event,) = [e for e in dispatch["Events"].values() if e["Type"] == "SQS"]
    window = float(template_value(template, sqs_event["Properties"].get("MaximumBatchingWindowInSeconds", 0)))
    env = dispatch["Environment"]["Variables"]
    return LocalFloors(pickup_s=1 + window, attempt_s=float(env["CONNECT_TIMEOUT_S"]) + float(env["READ_TIMEOUT_S"]))


def test_the_real_schedule_can_make_four_attempts_within_35_minutes() -> None:
    # GIVEN the documented schedule, each retry as early as its jitter allows: 0, 4 s, 244 s, 1684 s
    earliest = [0.0]
    for delay in DOCUMENTED_SCHEDULE_S:
        earliest.append(earliest[-1] + delay * (1 - DOCUMENTED_JITTER))
    assert sum(1 for at in earliest if at <= REAL_DEADLINE_S) == 4
    # WHEN the timing module counts the attempts within the deadline, THEN it finds those four
    assert DEFAULT_DEADLINE_S == REAL_DEADLINE_S
    assert attempts_within(DEFAULT_DEADLINE_S) == 4


def test_the_local_test_deadline_covers_every_attempt_of_the_real_35_minutes() -> None:
    # GIVEN the default local stack, and when its fourth attempt starts at the latest, from
    # the documented schedule: 1 + 1 + 1 s of (floored) delays and four pickups
    scale, floors = LocalSettings().delay_scale, template_floors()
    fourth_start = documented_local_starts(scale, floors)[3]

    # WHEN its test-link deadline is computed
    deadline = local_testlink_deadline_s(scale=scale, floors=floors)

    # THEN the fourth attempt starts and answers (within the dispatcher's timeouts) before it
    assert deadline >= fourth_start + floors.attempt_s
    # AND it is not 35 minutes times the scale, which the 1 s floors alone exceed
    assert deadline > math.ceil(REAL_DEADLINE_S * scale) + 3 * floors.pickup_s
    # AND a test schedule still ends within a minute
    assert deadline <= 60


def test_the_whole_local_retry_schedule_ends_within_a_minute() -> None:
    # GIVEN the default local stack, and when its eighth attempt starts at the latest, from
    # the documented schedule
    scale, floors = LocalSettings().delay_scale, template_floors()
    eighth_start = documented_local_starts(scale, floors)[7]
    # WHEN the timing module bounds the schedule, THEN its bound covers that start, and all
    # eight attempts have started within 60 s
    bound = retry_schedule_s(scale=scale, floors=floors)
    assert eighth_start <= bound <= 60
