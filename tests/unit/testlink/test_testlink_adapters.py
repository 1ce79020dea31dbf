"""The test-run store and the run starter on moto, and the handler's payloads and settings."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from pathlib import Path

import boto3
import pytest
from unit.testlink.testlink_fakes import AFFILIATE_ID, START

import testlink_handler
import testlink_tasks
from postback_relay.adapters.dynamodb_testruns import DynamoTestRunStore
from postback_relay.adapters.sfn_runner import SfnTestWorkflow, execution_arn
from postback_relay.domain.errors import ConflictError, InfrastructureError, NotFoundError, SettingsError
from postback_relay.domain.testrun import RunVerdict, TestRun, TestStep
from postback_relay.services.testlink.tracker import TestRunTracker

EVENTS = Path(__file__).resolve().parents[3] / "events"
ROLE = "arn:aws:iam::123456789012:role/testlink"


@pytest.fixture
def store(aws: dict[str, str]) -> DynamoTestRunStore:
    return DynamoTestRunStore(aws["TestRunsTableName"], client=boto3.client("dynamodb"))


def new_run(run_id: str = "run-1") -> TestRun:
    return TestRun(run_id=run_id, affiliate_id=AFFILIATE_ID, started_by="ops@example", started_at=START)


def test_a_run_is_kept_with_its_steps_and_its_first_verdict(store: DynamoTestRunStore) -> None:
    # GIVEN a run with a step
    store.create(new_run())
    step = TestStep(name="follow_link", at=START, ok=True, details={"redirect_chain": [{"url": "u", "status": 302}]})
    store.append_step("run-1", step)
    # WHEN it is finished twice
    first = store.finish("run-1", RunVerdict.FAILED, step="check_tracker", reason="placeholder #x#", at=START)
    second = store.finish("run-1", RunVerdict.PASSED, step=None, reason=None, at=START)
    # THEN the first verdict stands, with the steps as written
    run = store.get("run-1")
    assert (first, second) == (True, False)
    assert run is not None
    assert (run.verdict, run.step, run.reason, run.finished_at) == (
        RunVerdict.FAILED,
        "check_tracker",
        "placeholder #x#",
        START,
    )
    assert run.steps == (step,)


def test_a_run_expires_after_90_days(aws: dict[str, str], store: DynamoTestRunStore) -> None:
    store.create(new_run())
    item = boto3.client("dynamodb").get_item(TableName=aws["TestRunsTableName"], Key={"run_id": {"S": "run-1"}})["Item"]
    assert int(item["expires_at"]["N"]) == int((START + timedelta(days=90)).timestamp())


def test_a_run_id_is_never_reused(store: DynamoTestRunStore) -> None:
    store.create(new_run())
    with pytest.raises(ConflictError):
        store.create(new_run())


def test_steps_of_an_unknown_run_are_refused(store: DynamoTestRunStore) -> None:
    with pytest.raises(ConflictError):
        store.append_step("nope", TestStep(name="follow_link", at=START, ok=True))
    assert store.get("nope") is None


def starter_on(state_machine_arn: str, store: DynamoTestRunStore) -> TestRunTracker:
    """The run starter over the Step Functions workflow (moto) and the run store."""
    return TestRunTracker(SfnTestWorkflow(state_machine_arn, client=boto3.client("stepfunctions")), store)


def create_machine(definition: dict[str, object]) -> str:
    sfn = boto3.client("stepfunctions")
    return sfn.create_state_machine(name="testlink", definition=json.dumps(definition), roleArn=ROLE)["stateMachineArn"]


def test_start_records_the_run_and_starts_its_execution(store: DynamoTestRunStore) -> None:
    # GIVEN a state machine without Lambda tasks (only the start is under test)
    arn = create_machine({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})
    starter = starter_on(arn, store)
    # WHEN a run starts
    run_id = starter.start(AFFILIATE_ID, "ops@example", [1, 2], 30)
    # THEN it is running, its execution named after it with the schedule as input
    run = starter.status(run_id)
    assert (run.verdict, run.affiliate_id, run.started_by) == (RunVerdict.RUNNING, AFFILIATE_ID, "ops@example")
    execution = boto3.client("stepfunctions").describe_execution(executionArn=execution_arn(arn, run_id))
    execution_input = json.loads(execution["input"])
    assert execution_input["run_id"] == run_id
    assert (execution_input["waits"], execution_input["deadline_s"]) == ([1, 2], 30)
    assert datetime.fromisoformat(execution_input["started_at"]) == run.started_at


def test_an_execution_ending_without_a_verdict_is_a_failed_run(store: DynamoTestRunStore) -> None:
    # GIVEN an execution that fails before any step recorded a verdict
    arn = create_machine({"StartAt": "Boom", "States": {"Boom": {"Type": "Fail", "Error": "Oops", "Cause": "broken"}}})
    starter = starter_on(arn, store)
    run_id = starter.start(AFFILIATE_ID, "ops@example", [1], 30)
    sfn = boto3.client("stepfunctions")
    give_up = time.monotonic() + 30
    while sfn.describe_execution(executionArn=execution_arn(arn, run_id))["status"] == "RUNNING":
        assert time.monotonic() < give_up, "the execution did not end"
        time.sleep(0.01)  # moto runs it in a thread and signals its end no other way
    # WHEN its status is read
    run = starter.status(run_id)
    # THEN the run is failed, saying so
    assert (run.verdict, run.step) == (RunVerdict.FAILED, "workflow")
    assert run.reason == "the test-link workflow ended failed without a verdict (Oops: broken)"


def test_a_run_that_cannot_start_is_failed_and_reported(store: DynamoTestRunStore, aws: dict[str, str]) -> None:
    starter = starter_on("arn:aws:states:eu-west-1:123456789012:stateMachine:missing", store)
    with pytest.raises(InfrastructureError):
        starter.start(AFFILIATE_ID, "ops@example", [1], 30)
    runs = boto3.client("dynamodb").scan(TableName=aws["TestRunsTableName"])["Items"]
    assert [(r["verdict"]["S"], r["step"]["S"]) for r in runs] == [("failed", "start")]


def test_an_unknown_run_is_not_found(store: DynamoTestRunStore) -> None:
    starter = starter_on("arn:aws:states:eu-west-1:123456789012:stateMachine:x", store)
    with pytest.raises(NotFoundError):
        starter.status("nope")


@pytest.mark.parametrize("path", sorted(EVENTS.glob("testlink_*.json")), ids=lambda p: p.name)
def test_the_sample_events_are_valid_task_payloads(path: Path) -> None:
    event = json.loads(path.read_text())
    if path.name == "testlink_start_execution.json":
        # the execution input: what every Task payload takes its run, schedule and start from
        assert set(event) == {"run_id", "affiliate_id", "waits", "deadline_s", "started_at"}
        return
    task = testlink_tasks.task_adapter.validate_python(event)
    assert task.run_id == event["run_id"]


def test_settings_read_the_network_hosts_and_refuse_a_missing_table() -> None:
    env = {
        "AFFILIATES_TABLE": "a",
        "DELIVERIES_TABLE": "d",
        "TEST_RUNS_TABLE": "t",
        "POSTBACK_QUEUE_URL": "q",
        "NETWORK_LINK_HOSTS": "www.espace-plus.net, Links.Example.com",
    }
    assert testlink_handler.load_settings(env).network_link_hosts == ("www.espace-plus.net", "links.example.com")
    with pytest.raises(SettingsError, match="TEST_RUNS_TABLE"):
        testlink_handler.load_settings({k: v for k, v in env.items() if k != "TEST_RUNS_TABLE"})


def test_a_payload_without_a_known_step_is_refused() -> None:
    with pytest.raises(ValueError, match="step"):
        testlink_tasks.task_adapter.validate_python({"step": "dance", "run_id": "r", "affiliate_id": "1"})
