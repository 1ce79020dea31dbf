"""Start test-link runs on the Step Functions workflow, and read their verdicts (the CLI's side).

The run record is written `running` before the execution starts, so `test status` finds a
run the moment its ID is printed. The execution is named after the run: its ARN follows
from the state machine's, and starting the same run twice is refused by Step Functions.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from postback_relay.domain import messages
from postback_relay.domain.errors import InfrastructureError, NotFoundError
from postback_relay.domain.testrun import DEFAULT_DEADLINE_S, DEFAULT_WAITS_S, RunVerdict, TestRun
from postback_relay.domain.times import utc_now
from postback_relay.ports import TestRunStore

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions.client import SFNClient

_ENDED_WITHOUT_VERDICT = frozenset({"FAILED", "TIMED_OUT", "ABORTED"})


def new_run_id(now: datetime) -> str:
    """Sortable by start, unique, and valid as an execution name and inside a transaction ID."""
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"


def execution_arn(state_machine_arn: str, run_id: str) -> str:
    return f"{state_machine_arn.replace(':stateMachine:', ':execution:', 1)}:{run_id}"


class TestRunStarter:
    __test__ = False  # not a pytest test class, despite its name

    def __init__(
        self,
        sfn_client: SFNClient,
        state_machine_arn: str,
        runs: TestRunStore,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._sfn = sfn_client
        self._state_machine_arn = state_machine_arn
        self._runs = runs
        self._clock = clock or utc_now

    def start(
        self,
        affiliate_id: str,
        started_by: str,
        waits: Sequence[int] = DEFAULT_WAITS_S,
        deadline_s: int = DEFAULT_DEADLINE_S,
    ) -> str:
        """Record the run `running` and start its execution; returns the run ID.

        `waits`: seconds between delivery checks, one per check, the last repeating (the local
        stack scales them down); `deadline_s`: when undelivered postbacks fail the run."""
        if any(w < 0 for w in waits) or deadline_s < 0:
            raise ValueError("waits and deadline_s must not be negative")
        now = self._clock()
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # as the run record keeps it
        run_id = new_run_id(now)
        self._runs.create(TestRun(run_id=run_id, affiliate_id=affiliate_id, started_by=started_by, started_at=now))
        execution_input = {
            "run_id": run_id,
            "affiliate_id": affiliate_id,
            "waits": [int(w) for w in waits] or [0],
            "deadline_s": int(deadline_s),
            "started_at": now.astimezone(UTC).isoformat(),
        }
        try:
            self._sfn.start_execution(
                stateMachineArn=self._state_machine_arn, name=run_id, input=json.dumps(execution_input)
            )
        except (ClientError, BotoCoreError) as exc:
            reason = f"the test-link workflow could not be started: {exc}"
            self._runs.finish(run_id, RunVerdict.FAILED, step="start", reason=reason, at=self._clock())
            raise InfrastructureError(reason) from exc
        return run_id

    def status(self, run_id: str) -> TestRun:
        """The run as recorded; a run whose execution ended without recording a verdict (it
        crashed past every Catch, timed out or was stopped) is marked failed here."""
        run = self._runs.get(run_id)
        if run is None:
            raise NotFoundError(messages.no_test_run(run_id))
        if run.verdict is not RunVerdict.RUNNING:
            return run
        try:
            execution = self._sfn.describe_execution(executionArn=execution_arn(self._state_machine_arn, run_id))
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ExecutionDoesNotExist":
                return run
            raise InfrastructureError(f"cannot read the execution of test run {run_id}: {exc}") from exc
        except BotoCoreError as exc:
            raise InfrastructureError(f"cannot read the execution of test run {run_id}: {exc}") from exc
        status = execution["status"]
        if status not in _ENDED_WITHOUT_VERDICT:
            return run
        detail = ": ".join(part for part in (execution.get("error"), execution.get("cause")) if part)
        reason = f"the test-link workflow ended {status.lower()} without a verdict" + (f" ({detail})" if detail else "")
        self._runs.finish(run_id, RunVerdict.FAILED, step="workflow", reason=reason, at=self._clock())
        return self._runs.get(run_id) or run
