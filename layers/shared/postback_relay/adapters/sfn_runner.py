"""The test-link workflow on Step Functions (ports.TestWorkflow): start a run's execution, and
read how it ended.

The execution is named after the run: its ARN follows from the state machine's, and starting
the same run twice is refused by Step Functions. Starting and reconciling runs is
services.testlink.runs' (TestRunStarter).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from postback_relay.domain.errors import InfrastructureError
from postback_relay.domain.testrun import WorkflowExecution

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions.client import SFNClient


def execution_arn(state_machine_arn: str, run_id: str) -> str:
    return f"{state_machine_arn.replace(':stateMachine:', ':execution:', 1)}:{run_id}"


class SfnTestWorkflow:
    def __init__(self, state_machine_arn: str, *, client: SFNClient) -> None:
        self._state_machine_arn = state_machine_arn
        self._client = client

    def start(self, run_id: str, execution_input: Mapping[str, object]) -> None:
        try:
            self._client.start_execution(
                stateMachineArn=self._state_machine_arn, name=run_id, input=json.dumps(execution_input)
            )
        except (ClientError, BotoCoreError) as exc:
            raise InfrastructureError(f"the test-link workflow could not be started: {exc}") from exc

    def execution(self, run_id: str) -> WorkflowExecution | None:
        try:
            execution = self._client.describe_execution(executionArn=execution_arn(self._state_machine_arn, run_id))
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ExecutionDoesNotExist":
                return None
            raise InfrastructureError(f"cannot read the execution of test run {run_id}: {exc}") from exc
        except BotoCoreError as exc:
            raise InfrastructureError(f"cannot read the execution of test run {run_id}: {exc}") from exc
        return WorkflowExecution(execution["status"], execution.get("error"), execution.get("cause"))
