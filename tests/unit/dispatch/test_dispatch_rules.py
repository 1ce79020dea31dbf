"""The pure delivery rules: classification, retry schedule, Retry-After, circuit breaker."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from postback_relay.domain.config import ExpectedAnswer
from postback_relay.domain.delivery import (
    BASE_COOL_DOWN_S,
    FAILURE_THRESHOLD,
    MAX_ATTEMPTS,
    RETRY_SCHEDULE_S,
    AttemptOutcome,
    Circuit,
    CircuitStatus,
    circuit_after,
    circuit_trial,
    circuit_wait,
    classify,
    parse_retry_after,
    retry_delay,
)

MIDDLE = 0.5  # rand() value that gives no jitter


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, AttemptOutcome.DELIVERED),
        (204, AttemptOutcome.DELIVERED),
        (302, AttemptOutcome.FAILED),
        (400, AttemptOutcome.FAILED),
        (404, AttemptOutcome.FAILED),
        (408, AttemptOutcome.RETRY),
        (429, AttemptOutcome.RETRY),
        (500, AttemptOutcome.RETRY),
        (503, AttemptOutcome.RETRY),
    ],
)
def test_a_status_is_classified_by_the_contract(status: int, outcome: AttemptOutcome) -> None:
    # GIVEN no expectation beyond the default, WHEN an answer is classified, THEN the contract decides
    assert classify(status, "", None).outcome is outcome


@pytest.mark.parametrize(
    ("kind", "outcome"),
    [
        ("timeout", AttemptOutcome.RETRY),
        ("connection_error", AttemptOutcome.RETRY),
        ("unsafe_url", AttemptOutcome.FAILED),
    ],
)
def test_no_answer_is_retried_unless_the_address_was_refused(kind: str, outcome: AttemptOutcome) -> None:
    # GIVEN an attempt that got no HTTP answer, WHEN it is classified
    verdict = classify(None, None, None, error_kind=kind, error="why")
    # THEN transport errors retry, a refused address fails at once, with the reason kept
    assert (verdict.outcome, verdict.error_kind, verdict.reason) == (outcome, kind, "why")


def test_an_expected_status_list_replaces_2xx() -> None:
    # GIVEN an affiliate whose tracker answers 302 on success
    expect = ExpectedAnswer(status=(302,))
    # WHEN answers are classified, THEN 302 is delivered and 200 is not
    assert classify(302, "", expect).outcome is AttemptOutcome.DELIVERED
    assert classify(200, "", expect).outcome is AttemptOutcome.FAILED
    # AND a 503 is still worth a retry
    assert classify(503, "", expect).outcome is AttemptOutcome.RETRY


def test_a_success_without_the_expected_body_fails_at_once() -> None:
    # GIVEN a tracker that must answer success=true
    expect = ExpectedAnswer(body_contains="success=true")
    # WHEN it answers 200 success=false, THEN the postback failed (no retry: it was refused)
    verdict = classify(200, "success=false", expect)
    assert (verdict.outcome, verdict.error_kind) == (AttemptOutcome.FAILED, "unexpected_body")
    # AND the expected body is delivered
    assert classify(200, "ok success=true", expect).outcome is AttemptOutcome.DELIVERED


def test_the_schedule_without_jitter_is_the_documented_one() -> None:
    # GIVEN no jitter, WHEN each attempt fails, THEN the delays follow the schedule and end after the 8th
    delays = [retry_delay(n, rand=lambda: MIDDLE) for n in range(1, MAX_ATTEMPTS + 1)]
    assert delays == [5, 300, 1800, 7200, 18000, 36000, 36000, None]
    assert MAX_ATTEMPTS == 8


@pytest.mark.parametrize(("rand", "factor"), [(0.0, 0.8), (0.999999, 1.2)])
def test_jitter_stays_within_20_percent(rand: float, factor: float) -> None:
    # GIVEN the extremes of the random source, WHEN the 3rd attempt fails
    delay = retry_delay(3, rand=lambda: rand)
    # THEN the delay is the scheduled one within 20 %
    assert delay == pytest.approx(RETRY_SCHEDULE_S[2] * factor, abs=1)


@pytest.mark.parametrize(("status", "kind"), [(429, None), (None, "timeout")])
def test_a_throttle_or_timeout_waits_at_least_a_minute(status: int | None, kind: str | None) -> None:
    # GIVEN a first attempt answered 429 or timed out, WHEN its retry is scheduled, THEN it waits 60 s, not 5
    assert retry_delay(1, status=status, error_kind=kind, rand=lambda: MIDDLE) == 60


def test_retry_after_is_honoured_between_the_schedule_and_12_hours() -> None:
    # GIVEN Retry-After answers, WHEN the first attempt's retry is scheduled
    # THEN a longer wish is honoured, a shorter one never beats the schedule, a huge one is capped
    assert retry_delay(1, status=503, retry_after_s=120, rand=lambda: MIDDLE) == 120
    assert retry_delay(2, status=503, retry_after_s=1, rand=lambda: MIDDLE) == 300
    assert retry_delay(1, status=503, retry_after_s=10**9, rand=lambda: MIDDLE) == 12 * 3600


def test_the_local_scale_shrinks_every_delay_to_at_least_a_second() -> None:
    # GIVEN the local stack's scale, WHEN delays are computed, THEN they shrink, never below 1 s
    assert retry_delay(7, scale=0.0005, rand=lambda: MIDDLE) == 18
    assert retry_delay(1, scale=0.0005, rand=lambda: MIDDLE) == 1


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
    # GIVEN Retry-After values, WHEN read, THEN seconds and dates become seconds from now; garbage is ignored
    assert parse_retry_after("120", now=now) == 120
    assert parse_retry_after("Wed, 25 Nov 2026 12:02:00 GMT", now=now) == 120
    assert parse_retry_after("Wed, 25 Nov 2026 11:00:00 GMT", now=now) == 0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None, now=now) is None


def test_consecutive_failures_open_the_circuit_and_a_success_resets_the_count() -> None:
    # GIVEN a closed circuit
    circuit = Circuit("https://t.example:443")
    # WHEN it fails one time less than the threshold, then succeeds, then fails again up to the threshold
    for _ in range(FAILURE_THRESHOLD - 1):
        circuit = circuit_after(circuit, success=False, now=100)
    assert circuit.status is CircuitStatus.CLOSED
    circuit = circuit_after(circuit, success=True, now=100)
    for _ in range(FAILURE_THRESHOLD):
        circuit = circuit_after(circuit, success=False, now=100)
    # THEN it is open for the base cool-down
    assert circuit.status is CircuitStatus.OPEN
    assert circuit_wait(circuit, now=100) == BASE_COOL_DOWN_S


def test_a_failed_trial_reopens_for_longer_and_a_good_one_closes() -> None:
    # GIVEN an open circuit whose cool-down ended, taken for a trial
    opened = Circuit("e", CircuitStatus.OPEN, 5, opened_until=160, cool_down_s=60)
    assert circuit_wait(opened, now=161) == 0
    trial = circuit_trial(opened, now=161, trial_s=30)
    # THEN others wait while the trial runs
    assert circuit_wait(trial, now=162) == pytest.approx(29)
    # WHEN the trial fails, THEN it opens again for twice as long
    reopened = circuit_after(trial, success=False, now=170)
    assert (reopened.status, reopened.cool_down_s, reopened.opened_until) == (CircuitStatus.OPEN, 120, 290)
    # WHEN a trial succeeds, THEN it closes
    assert circuit_after(trial, success=True, now=170) == Circuit("e")
