"""TestRunStore in a dict."""

from __future__ import annotations

from datetime import datetime

from postback_relay.domain.testrun import RunVerdict, TestRun, TestStep
from postback_relay.ports import TestRunStore


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
