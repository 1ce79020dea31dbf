"""Read test-link runs back, reconciled with their workflow (`postback test`, `test status`).

A run still `running` whose execution ended without recording a verdict (it crashed past
every Catch, timed out or was stopped) is marked failed when it is read. Apart from the
starter (services.testlink.runs), so that what only starts runs (the portal) never reads
executions.
"""

from __future__ import annotations

from postback_relay.domain import messages
from postback_relay.domain.errors import NotFoundError
from postback_relay.domain.testrun import RunVerdict, TestRun
from postback_relay.services.testlink.runs import TestRunStarter


class TestRunTracker(TestRunStarter):
    """Starts runs and reads them back (the CLI's test runner)."""

    __test__ = False

    def status(self, run_id: str) -> TestRun:
        """The run as recorded; a run whose execution ended without recording a verdict is
        marked failed here, with what the workflow says of its end."""
        run = self._runs.get(run_id)
        if run is None:
            raise NotFoundError(messages.no_test_run(run_id))
        if run.verdict is not RunVerdict.RUNNING:
            return run
        execution = self._workflow.execution(run_id)
        if execution is None or not execution.ended_without_verdict:
            return run
        self._runs.finish(run_id, RunVerdict.FAILED, step="workflow", reason=execution.reason(), at=self._clock())
        return self._runs.get(run_id) or run
