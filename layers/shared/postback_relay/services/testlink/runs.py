"""Start test-link runs (`postback test`, the portal's test button); services.testlink.tracker
reads them back reconciled with their workflow (`postback test status`).

The run record is written `running` before its workflow execution starts, so `test status`
finds a run the moment its ID is printed; an execution that could not start fails the run at
once, with the reason.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from postback_relay.domain.errors import InfrastructureError
from postback_relay.domain.testrun import DEFAULT_DEADLINE_S, DEFAULT_WAITS_S, RunVerdict, TestRun
from postback_relay.domain.times import utc_now
from postback_relay.ports import TestRunStore, TestWorkflow


def new_run_id(now: datetime) -> str:
    """Sortable by start, unique, and valid as an execution name and inside a transaction ID."""
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"


class TestRunStarter:
    """Starts runs (ports.TestRunLauncher)."""

    __test__ = False  # not a pytest test class, despite its name

    def __init__(
        self, workflow: TestWorkflow, runs: TestRunStore, *, clock: Callable[[], datetime] | None = None
    ) -> None:
        self._workflow = workflow
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
            self._workflow.start(run_id, execution_input)
        except InfrastructureError as exc:
            self._runs.finish(run_id, RunVerdict.FAILED, step="start", reason=exc.message, at=self._clock())
            raise
        return run_id
