"""services.testlink.runs and .tracker over the fakes: a run is recorded before its execution
starts, a run that cannot start is failed with the reason, and a run whose execution ended
without a verdict is failed when read."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fakes import FakeTestRunStore, FakeTestWorkflow

from postback_relay.domain.errors import InfrastructureError, NotFoundError
from postback_relay.domain.testrun import RunVerdict, WorkflowExecution
from postback_relay.services.testlink.tracker import TestRunTracker

NOW = datetime(2026, 12, 6, 12, 0, 0, 123_456, tzinfo=UTC)


@pytest.fixture
def workflow() -> FakeTestWorkflow:
    return FakeTestWorkflow()


@pytest.fixture
def runs() -> FakeTestRunStore:
    return FakeTestRunStore()


@pytest.fixture
def tracker(workflow: FakeTestWorkflow, runs: FakeTestRunStore) -> TestRunTracker:
    return TestRunTracker(workflow, runs, clock=lambda: NOW)


def test_a_run_is_recorded_running_then_its_execution_started_with_its_schedule(
    tracker: TestRunTracker, workflow: FakeTestWorkflow, runs: FakeTestRunStore
) -> None:
    # WHEN a run starts
    run_id = tracker.start("1234567", "ops@example", [5, 10], 60)
    # THEN it is recorded running, its start kept to the millisecond, and its execution started
    run = runs.runs[run_id]
    assert (run.verdict, run.affiliate_id, run.started_by) == (RunVerdict.RUNNING, "1234567", "ops@example")
    assert run.started_at == NOW.replace(microsecond=123_000)
    assert run_id.startswith("20261206T120000-")
    assert workflow.started == [
        (
            run_id,
            {
                "run_id": run_id,
                "affiliate_id": "1234567",
                "waits": [5, 10],
                "deadline_s": 60,
                "started_at": "2026-12-06T12:00:00.123000+00:00",
            },
        )
    ]


def test_no_waits_is_one_check_at_once(tracker: TestRunTracker, workflow: FakeTestWorkflow) -> None:
    tracker.start("1234567", "ops", [], 0)
    assert workflow.started[0][1]["waits"] == [0]


def test_negative_waits_are_refused_before_anything_is_recorded(
    tracker: TestRunTracker, runs: FakeTestRunStore
) -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        tracker.start("1234567", "ops", [-1], 60)
    assert runs.runs == {}


def test_a_run_whose_execution_cannot_start_is_failed_with_the_reason(
    tracker: TestRunTracker, workflow: FakeTestWorkflow, runs: FakeTestRunStore
) -> None:
    # GIVEN a workflow that refuses to start
    workflow.refusal = "the test-link workflow could not be started: AccessDenied"
    # WHEN a run starts, THEN the refusal is raised and the run is failed at its start, saying why
    with pytest.raises(InfrastructureError, match="AccessDenied"):
        tracker.start("1234567", "ops", [1], 60)
    (run,) = runs.runs.values()
    assert (run.verdict, run.step, run.reason) == (RunVerdict.FAILED, "start", workflow.refusal)


@pytest.mark.parametrize("status", ["FAILED", "TIMED_OUT", "ABORTED"])
def test_a_run_whose_execution_ended_without_a_verdict_is_failed_when_read(
    tracker: TestRunTracker, workflow: FakeTestWorkflow, status: str
) -> None:
    # GIVEN a running run whose execution ended without recording a verdict
    run_id = tracker.start("1234567", "ops", [1], 60)
    workflow.executions[run_id] = WorkflowExecution(status, error="Oops", cause="broken")
    # WHEN it is read
    run = tracker.status(run_id)
    # THEN it is failed by the workflow, with how the execution ended
    assert (run.verdict, run.step, run.finished_at) == (RunVerdict.FAILED, "workflow", NOW)
    assert run.reason == f"the test-link workflow ended {status.lower()} without a verdict (Oops: broken)"


@pytest.mark.parametrize("execution", [None, WorkflowExecution("RUNNING"), WorkflowExecution("SUCCEEDED")])
def test_a_run_whose_execution_runs_on_or_is_unknown_is_read_as_recorded(
    tracker: TestRunTracker, workflow: FakeTestWorkflow, execution: WorkflowExecution | None
) -> None:
    run_id = tracker.start("1234567", "ops", [1], 60)
    workflow.executions.pop(run_id)
    if execution is not None:
        workflow.executions[run_id] = execution
    assert tracker.status(run_id).verdict is RunVerdict.RUNNING


def test_a_run_with_a_verdict_is_not_reconciled(
    tracker: TestRunTracker, workflow: FakeTestWorkflow, runs: FakeTestRunStore
) -> None:
    # GIVEN a run that passed, whose execution then shows failed
    run_id = tracker.start("1234567", "ops", [1], 60)
    runs.finish(run_id, RunVerdict.PASSED, step=None, reason=None, at=NOW)
    workflow.executions[run_id] = WorkflowExecution("FAILED")
    # WHEN it is read, THEN its verdict stands
    assert tracker.status(run_id).verdict is RunVerdict.PASSED


def test_an_unknown_run_is_not_found(tracker: TestRunTracker) -> None:
    with pytest.raises(NotFoundError):
        tracker.status("nope")


def test_the_reason_without_error_or_cause_says_how_it_ended() -> None:
    assert WorkflowExecution("ABORTED").reason() == "the test-link workflow ended aborted without a verdict"
