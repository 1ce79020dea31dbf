"""The Lambda router under moto's ThreadedMotoServer in this process, as the local stack runs it:
a state machine's Lambda tasks reach the in-process handler through moto's own HTTP server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.core.config import default_user_config
from moto.server import ThreadedMotoServer

from postback_ops.local.lambda_router import enable_state_machine_execution, fake_function_arn, route, uninstall_routes

RUN_TIMEOUT_S = 30.0


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """GIVEN a moto server in this process, running state machines, boto3 pointed at it."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    # Recorded first, so that the process-wide settings are put back after the test.
    monkeypatch.setitem(default_user_config["stepfunctions"], "execute_state_machine", False)
    monkeypatch.setenv("MOTO_PORT", "5000")
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    enable_state_machine_execution(port)
    yield endpoint
    server.stop()


def run_echo(definition: dict[str, Any]) -> dict[str, Any]:
    sfn = boto3.client("stepfunctions")
    arn = sfn.create_state_machine(
        name=f"echo-{time.monotonic_ns()}",
        definition=json.dumps(definition),
        roleArn="arn:aws:iam::123456789012:role/local",
    )["stateMachineArn"]
    execution_arn = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"n": 41}))["executionArn"]
    give_up = time.monotonic() + RUN_TIMEOUT_S
    while (execution := sfn.describe_execution(executionArn=execution_arn))["status"] == "RUNNING":
        assert time.monotonic() < give_up, "the execution did not end"
        time.sleep(0.05)  # moto signals an execution's end no other way
    return dict(execution)


def echo_definition(function_name: str) -> dict[str, Any]:
    return {
        "StartAt": "Echo",
        "States": {
            "Echo": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": fake_function_arn(function_name), "Payload": {"n.$": "$.n"}},
                "OutputPath": "$.Payload",
                "End": True,
            }
        },
    }


def test_a_lambda_task_runs_the_routed_handler_through_the_server(moto_server: str) -> None:
    # GIVEN a function routed to a handler taking the event alone (the local stack's form)
    seen: list[dict[str, Any]] = []

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        seen.append(event)
        return {"n": event["n"] + 1}

    route("EchoFunction", invoke)
    try:
        # WHEN a state machine invokes it
        execution = run_echo(echo_definition("EchoFunction"))
    finally:
        uninstall_routes({"EchoFunction": None})
    # THEN the handler got the payload and its answer is the task's output
    assert execution["status"] == "SUCCEEDED"
    assert json.loads(execution["output"]) == {"n": 42}
    assert seen == [{"n": 41}]


def test_a_handler_error_is_the_tasks_error(moto_server: str) -> None:
    # GIVEN a routed handler that raises
    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        raise LookupError("no such thing")

    route("BrokenFunction", invoke)
    try:
        execution = run_echo(echo_definition("BrokenFunction"))
    finally:
        uninstall_routes({"BrokenFunction": None})
    # THEN the execution failed with the exception's type as the error name, as Lambda reports it
    assert execution["status"] == "FAILED"
    assert execution.get("error") == "LookupError"
