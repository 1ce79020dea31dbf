"""How long the retry schedule and a test link take on the local stack.

The local stack scales every delay by DELAY_SCALE, but its machinery has floors of its own
that do not scale: a retry waits at least MIN_DELAY_S (SQS counts in whole seconds), and a
message that is visible again reaches the dispatcher only after the poller's receive wait
and the function's batching window. A test link's deadline is computed here from the
domain's own schedule (`retry_delay`) and those floors, never as 35 minutes times the scale,
so that locally it covers every attempt the real schedule makes within 35 minutes and a
verdict never contradicts the delivery log (contract section 6).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from postback_relay.domain.delivery import MAX_ATTEMPTS, retry_delay
from postback_relay.domain.testrun import DEFAULT_DEADLINE_S


def _earliest() -> float:
    return 0.0  # every retry as early as its jitter allows


def _latest() -> float:
    return 1.0  # every retry as late as its jitter allows (random() < 1: an upper bound)


@dataclass(frozen=True)
class LocalFloors:
    """What the local stack adds to each attempt, whatever the scale."""

    pickup_s: float  # visible again -> in the dispatcher's hands: the poller's receive wait + batching window
    attempt_s: float  # the longest one attempt can take: the dispatcher's connect + read timeouts


def attempts_within(seconds: float) -> int:
    """The most attempts the real (unscaled) schedule can make within `seconds` of the first."""
    attempts, at = 1, 0.0
    while True:
        delay = retry_delay(attempts, rand=_earliest)
        if delay is None or at + delay > seconds:
            return attempts
        at += delay
        attempts += 1


def latest_local_start_s(attempt: int, *, scale: float, floors: LocalFloors) -> float:
    """The latest moment, after the message is first queued, that attempt `attempt` starts locally."""
    delays = 0
    for failed in range(1, attempt):
        delay = retry_delay(failed, scale=scale, rand=_latest)
        assert delay is not None, "attempt is beyond the schedule"
        delays += delay
    return delays + attempt * floors.pickup_s


def local_testlink_deadline_s(*, scale: float, floors: LocalFloors, real_deadline_s: int = DEFAULT_DEADLINE_S) -> int:
    """The local test-link deadline: every attempt the real schedule can make within the real
    deadline has started and, answering within the dispatcher's timeouts, been logged."""
    attempts = attempts_within(real_deadline_s)
    return math.ceil(latest_local_start_s(attempts, scale=scale, floors=floors) + floors.attempt_s)


def retry_schedule_s(*, scale: float, floors: LocalFloors) -> float:
    """The latest moment the last attempt of a postback that never succeeds starts locally
    (each answer taking a moment, not the whole timeout)."""
    return latest_local_start_s(MAX_ATTEMPTS, scale=scale, floors=floors)
