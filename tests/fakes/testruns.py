"""TestRunStore in a dict; the test-link workflow (TestWorkflow) as a script."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from postback_relay.domain.errors import InfrastructureError
from postback_relay.domain.testrun import RunVerdict, TestRun, TestStep, WorkflowExecution
from postback_relay.ports import TestRunStore, TestWorkflow


class FakeTestRunStore(TestRunStore):
    __test__ = False  # not a test class, whatever pytest makes of its name

    def __init__(self) -> None:
        self.runs: dict[str, TestRun] = {}

    def create(self, run: TestRun) -> None:
        assert run.run_id not in self.runs
        self.runs[run.run_id] = run

    def get(self, run_id: str) -> TestRun | None:
        return self.runs.get(run_id)

    def append_step(self, run_id: str, step: TestStep) -> None:
        run = self.runs[run_id]
        self.runs[run_id] = run.model_copy(update={"steps": (*run.steps, step)})

    def finish(self, run_id: str, verdict: RunVerdict, *, step: str | None, reason: str | None, at: datetime) -> bool:
        run = self.runs[run_id]
        if run.verdict is not RunVerdict.RUNNING:
            return False
        self.runs[run_id] = run.model_copy(
            update={"verdict": verdict, "step": step, "reason": reason, "finished_at": at}
        )
        return True


class FakeTestWorkflow(TestWorkflow):
    """Records each execution started (run ID, input); `refusal` makes `start` fail with it;
    `executions` says how each run's execution stands (none: no execution known)."""

    __test__ = False

    def __init__(self) -> None:
        self.started: list[tuple[str, dict[str, object]]] = []
        self.refusal: str | None = None
        self.executions: dict[str, WorkflowExecution] = {}

    def start(self, run_id: str, execution_input: Mapping[str, object]) -> None:
        if self.refusal is not None:
            raise InfrastructureError(self.refusal)
        self.started.append((run_id, dict(execution_input)))
        self.executions[run_id] = WorkflowExecution("RUNNING")

    def execution(self, run_id: str) -> WorkflowExecution | None:
        return self.executions.get(run_id)
