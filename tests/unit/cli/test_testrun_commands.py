"""`postback test start [--wait]` and `test status`: verdicts and exit codes."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fakes.cli import OPS_ARN, FakeBackends
from typer.testing import CliRunner, Result

from postback_ops.cli import app
from postback_ops.cli_testruns import scaled_schedule
from postback_ops.target import Target, pinned
from postback_relay.domain.testrun import DEFAULT_DEADLINE_S, DEFAULT_WAITS_S, TestRun

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "affiliates"
RUN_ID = "20261125T120000-abcd1234"


def run(verdict: str, steps: int, **extra: Any) -> TestRun:
    names = ["follow_link", "check_tracker", "fire_postbacks", "check_delivery"]
    at = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    return TestRun.model_validate(
        {
            "run_id": RUN_ID,
            "affiliate_id": "1234567",
            "started_by": OPS_ARN,
            "started_at": at,
            "verdict": verdict,
            "steps": [{"name": names[i], "at": at, "ok": True, "details": {"n": i}} for i in range(steps)],
            **extra,
        }
    )


@pytest.fixture
def acme(postback: Callable[..., Result]) -> None:
    """GIVEN an affiliate with a test link."""
    assert postback("affiliate", "put", str(EXAMPLES / "revshare-default.yaml")).exit_code == 0


@pytest.mark.usefixtures("acme")
def test_start_without_wait_prints_the_run_id(postback: Callable[..., Result], backends: FakeBackends) -> None:
    # WHEN ops start a test on a deployed stack
    result = postback("--json", "test", "start", "1234567")
    # THEN the run starts with the full schedule, by the caller, and its ID is printed
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {
        "run_id": RUN_ID,
        "verdict": "running",
        "step": None,
        "reason": None,
        "affiliate_id": "1234567",
    }
    assert backends.test_runs.started == [("1234567", OPS_ARN, list(DEFAULT_WAITS_S), DEFAULT_DEADLINE_S)]


@pytest.mark.usefixtures("acme")
def test_wait_shows_progress_then_passes(postback: Callable[..., Result], backends: FakeBackends) -> None:
    # GIVEN a run that goes through its steps, then passes
    backends.test_runs.script = [run("running", 1), run("running", 3), run("passed", 4)]
    # WHEN ops wait for it
    result = postback("--json", "test", "start", "1234567", "--wait", "--poll-interval", "0")
    # THEN every step is shown once on stderr, the verdict is the JSON on stdout, and it exits 0
    assert result.exit_code == 0, result.stderr
    for name in ("follow_link", "check_tracker", "fire_postbacks", "check_delivery"):
        assert result.stderr.count(f"{name}: ok") == 1
    verdict = json.loads(result.stdout)
    assert (verdict["run_id"], verdict["verdict"], verdict["step"], verdict["reason"]) == (RUN_ID, "passed", None, None)


@pytest.mark.usefixtures("acme")
def test_wait_exits_1_on_a_failed_verdict(postback: Callable[..., Result], backends: FakeBackends) -> None:
    # GIVEN a run that fails at the tracker check
    backends.test_runs.script = [run("failed", 2, step="check_tracker", reason="placeholder #clickId# was not filled")]
    # WHEN ops wait for it
    result = postback("test", "start", "1234567", "--wait", "--poll-interval", "0")
    # THEN the step and the reason are printed and it exits 1
    assert result.exit_code == 1
    assert "failed at step check_tracker: placeholder #clickId# was not filled" in result.stdout


def test_the_local_stack_scales_the_schedule(backends: FakeBackends, postback: Callable[..., Result]) -> None:
    # GIVEN the affiliate on the local stack, whose delays run 1000 times faster
    assert postback("affiliate", "put", str(EXAMPLES / "revshare-default.yaml")).exit_code == 0
    with pinned(Target.from_outputs({"DelayScale": "0.001"}, local=True, name="local")):
        # WHEN ops start a test there
        result = CliRunner().invoke(app, ["test", "start", "1234567"])
    # THEN every wait and the deadline are scaled, never below a second
    assert result.exit_code == 0, result.stderr
    _, _, waits, deadline = backends.test_runs.started[0]
    assert waits == [1] * len(DEFAULT_WAITS_S)
    assert deadline == 3  # 2100 s * 0.001, rounded up


def test_the_local_stack_gives_the_deadline_it_computed_from_its_floors(
    backends: FakeBackends, postback: Callable[..., Result]
) -> None:
    # GIVEN a local stack that publishes the deadline its retry schedule and floors need
    assert postback("affiliate", "put", str(EXAMPLES / "revshare-default.yaml")).exit_code == 0
    outputs = {"DelayScale": "0.00025", "TestLinkDeadlineSeconds": "24"}
    with pinned(Target.from_outputs(outputs, local=True, name="local")):
        # WHEN ops start a test there
        result = CliRunner().invoke(app, ["test", "start", "1234567"])
    # THEN the run waits until that deadline, not 2100 s * 0.00025
    assert result.exit_code == 0, result.stderr
    _, _, _, deadline = backends.test_runs.started[0]
    assert deadline == 24


def test_start_needs_a_known_affiliate_with_a_test_link(
    postback: Callable[..., Result], backends: FakeBackends
) -> None:
    # GIVEN an affiliate without a test link
    assert postback("affiliate", "put", str(EXAMPLES / "post-json.yaml")).exit_code == 0
    # WHEN ops start tests for it and for an unknown affiliate
    no_link = postback("test", "start", "2468135")
    unknown = postback("test", "start", "404")
    # THEN neither starts: exit 2 and 4
    assert no_link.exit_code == 2
    assert "has no test_link" in no_link.stderr
    assert unknown.exit_code == 4
    assert backends.test_runs.started == []


def test_status_shows_the_verdict(postback: Callable[..., Result], backends: FakeBackends) -> None:
    # GIVEN a failed run
    backends.test_runs.script = [run("failed", 4, step="check_delivery", reason="the endpoint answered 500")]
    # WHEN ops ask for its status, and for an unknown run
    result = postback("--json", "test", "status", RUN_ID)
    unknown = postback("test", "status", "nope")
    # THEN the contract's verdict fields come first and it exits 1; an unknown run exits 4
    assert result.exit_code == 1
    verdict = json.loads(result.stdout)
    assert list(verdict)[:4] == ["run_id", "verdict", "step", "reason"]
    assert verdict["step"] == "check_delivery"
    assert unknown.exit_code == 4


@pytest.mark.parametrize("scale", [1.0, 0.5, 2.0])
def test_the_schedule_is_multiplied_by_the_delay_scale(scale: float) -> None:
    # GIVEN a stack's DelayScale; WHEN the run's schedule is built; THEN every delay is multiplied
    waits, deadline_s = scaled_schedule(scale)
    assert waits == [round(w * scale) for w in DEFAULT_WAITS_S]
    assert deadline_s == round(DEFAULT_DEADLINE_S * scale)


def _check_step(check: int, seen: str, *, ok: bool = True) -> dict[str, Any]:
    at = datetime(2026, 11, 25, 12, 1, tzinfo=UTC)
    url = "http://127.0.0.1:9/postback?cid=c123&payout=25.00&cur=EUR&ev=sale&offer=89&a-long-query=" + "x" * 60
    delivery = {"n": 1, "state": "pending", "attempts": check, "http_status": None, "url": url, "seen": seen}
    return {"name": "check_delivery", "at": at, "ok": ok, "details": {"check": check, "deliveries": [delivery]}}


@pytest.mark.usefixtures("acme")
def test_wait_says_what_each_check_saw_not_ok(postback: Callable[..., Result], backends: FakeBackends) -> None:
    # GIVEN a run whose postback's attempts fail with connection refused, then for good
    at = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    base = run("running", 3).model_dump()
    seen = [f"postback 1: attempt {n} of 8: connection refused" for n in (1, 2, 3)]
    steps = [*base["steps"], *(_check_step(n, seen[n - 1]) for n in (1, 2))]
    failing = TestRun.model_validate({**base, "steps": steps})
    final = TestRun.model_validate(
        {
            **base,
            "steps": [*steps, _check_step(3, seen[2], ok=False)],
            "verdict": "failed",
            "step": "check_delivery",
            "reason": "postback 1 failed for good",
            "finished_at": at,
        }
    )
    backends.test_runs.script = [failing, final]

    # WHEN ops wait for it, stderr not a terminal
    result = postback("test", "start", "1234567", "--wait", "--poll-interval", "0")

    # THEN each check's line says what its attempt saw, never a bare "ok"
    lines = result.stderr.splitlines()
    for n in (1, 2, 3):
        assert f"check_delivery (check {n}): postback 1: attempt {n} of 8: connection refused" in lines, lines
    assert not [line for line in lines if line.startswith("check_delivery") and ": ok" in line]
    # AND the verdict's table shows them too
    assert "attempt 3 of 8: connection refused" in result.stdout
    # AND no line was wrapped (every line of a step is whole)
    assert all(
        line.startswith(("follow_link", "check_tracker", "fire_postbacks", "check_delivery")) for line in lines if line
    )


def test_the_spinner_counts_the_steps_shown() -> None:
    from postback_ops.cli_testruns import progress_text

    assert progress_text("R", 0) == "Test run R: running, 0 steps so far"
    assert progress_text("R", 1) == "Test run R: running, 1 step so far"
    assert progress_text("R", 3) == "Test run R: running, 3 steps so far"
