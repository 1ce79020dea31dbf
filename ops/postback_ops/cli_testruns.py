"""`postback test start|status`: test-link runs and their verdicts."""

import time
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import typer
from rich.console import Console

from postback_ops.cli_affiliates import require_affiliate
from postback_ops.cli_context import ExitCode, Ops, UsageProblem, WholeSummaries, handle_errors, ops_of, people_table
from postback_relay import wiring
from postback_relay.domain.testrun import TestRun

test_app = typer.Typer(
    cls=WholeSummaries,
    # Plain help: no `<bool>` beside every flag, and summaries kept to their first line.
    rich_markup_mode=None,
    help="Test-link runs: follow an affiliate's test link and fire its postbacks.",
    no_args_is_help=True,
)

# How long `--wait` keeps polling past the run's own deadline before giving up on it.
_WAIT_MARGIN_S = 120.0


def scaled_schedule(delay_scale: float, deadline_s: int | None = None) -> tuple[list[int], int]:
    """The run's waits and deadline on this stack (wiring.run_schedule: the portal's too)."""
    return wiring.run_schedule(delay_scale, deadline_s)


def verdict_of(run: TestRun) -> dict[str, Any]:
    """The contract's verdict fields (run_id, verdict, step, reason), then the rest of the run."""
    data = run.to_json()
    verdict = {key: data.pop(key, None) for key in ("run_id", "verdict", "step", "reason")}
    return {**verdict, **data}


def _run_status(ops: Ops, run_id: str) -> dict[str, Any]:
    return verdict_of(ops.backends.test_runs.status(run_id))


def _step_outcome(step: Mapping[str, Any]) -> str:
    """What the step saw: for a delivery check each postback's last attempt (`postback 1:
    attempt 3 of 8: connection refused`), never a bare "ok" while attempts fail; else ok or
    failed, with the reason."""
    details = step.get("details") or {}
    deliveries = details.get("deliveries") or []
    seen = [str(d["seen"]) for d in deliveries if isinstance(d, Mapping) and d.get("seen")]
    if seen:
        return "; ".join(seen)
    if step.get("ok"):
        return "ok"
    return f"failed: {details['reason']}" if details.get("reason") else "failed"


def step_line(step: Mapping[str, Any]) -> str:
    """One step as a line: its name, what it saw, its other details."""
    details = step.get("details") or {}
    check = f" (check {details['check']})" if details.get("check") else ""
    shown = ", ".join(
        f"{key}={value}"
        for key, value in details.items()
        if key not in ("check", "reason") and not isinstance(value, (list, dict))
    )
    return f"{step.get('name')}{check}: {_step_outcome(step)}" + (f" ({shown})" if shown else "")


def _exit_for(verdict: Mapping[str, Any]) -> None:
    if verdict.get("verdict") == "failed":
        raise typer.Exit(int(ExitCode.FAILED))


def _show_verdict(console: Console, verdict: Mapping[str, Any]) -> None:
    table = people_table("step", "outcome", "at")
    steps: Sequence[Mapping[str, Any]] = verdict.get("steps") or ()
    for step in steps:
        table.add_row(str(step.get("name")), _step_outcome(step), str(step.get("at", "")))
    if steps:
        console.print(table)
    line = f"Test run {verdict['run_id']} of affiliate {verdict.get('affiliate_id', '?')}: {verdict['verdict']}"
    if verdict.get("verdict") == "failed":
        line += f" at step {verdict.get('step')}: {verdict.get('reason')}"
    console.print(line, markup=False)


@test_app.command("start")
@handle_errors
def start(
    ctx: typer.Context,
    affiliate_id: Annotated[str, typer.Argument(help="The affiliate to test.")],
    wait: Annotated[
        bool, typer.Option("--wait", help="Show progress until the verdict; exit 0 passed, 1 failed.")
    ] = False,
    poll_interval: Annotated[
        float | None, typer.Option("--poll-interval", help="Seconds between status checks with --wait.", min=0.0)
    ] = None,
) -> None:
    """Start a test-link run: follow the affiliate's test_link, check its tracker, fire its postbacks."""
    ops = ops_of(ctx)
    stored = require_affiliate(ops, affiliate_id)
    if not stored.config.test_link:
        raise UsageProblem(f"Affiliate {affiliate_id} has no test_link in its config: add one and put it again.")
    published = ops.target.outputs.get("TestLinkDeadlineSeconds")
    waits, deadline_s = scaled_schedule(ops.target.delay_scale, int(published) if published else None)
    backends = ops.backends
    run_id = backends.test_runs.start(affiliate_id, backends.caller(), waits, deadline_s)
    if not wait:
        data = {"run_id": run_id, "verdict": "running", "step": None, "reason": None, "affiliate_id": affiliate_id}
        ops.emit(data, lambda console: console.print(f"Test run {run_id} started.", markup=False))
        return
    interval = poll_interval if poll_interval is not None else min(5.0, max(0.2, 5.0 * ops.target.delay_scale))
    verdict = _wait_for_verdict(ops, run_id, interval=interval, give_up_after_s=deadline_s + _WAIT_MARGIN_S)
    ops.emit(verdict, lambda console: _show_verdict(console, verdict))
    if verdict.get("verdict") == "running":
        raise typer.Exit(int(ExitCode.FAILED))
    _exit_for(verdict)


def progress_text(run_id: str, steps: int) -> str:
    """The spinner's line: how many steps have been shown so far."""
    return f"Test run {run_id}: running, {steps} step{'s' if steps != 1 else ''} so far"


def _wait_for_verdict(ops: Ops, run_id: str, *, interval: float, give_up_after_s: float) -> dict[str, Any]:
    # Progress goes to stderr so that `--json` keeps stdout for the verdict alone; never wrapped,
    # so that a URL in a step line stays whole when stderr is not a terminal.
    progress = Console(stderr=True, highlight=False, soft_wrap=True)
    give_up_at = time.monotonic() + give_up_after_s
    shown = 0
    with progress.status(progress_text(run_id, 0)) as status:
        while True:
            verdict = _run_status(ops, run_id)
            steps: Sequence[Mapping[str, Any]] = verdict.get("steps") or ()
            for step in steps[shown:]:
                progress.print(step_line(step), markup=False)
            shown = max(shown, len(steps))
            status.update(progress_text(run_id, shown))
            if verdict.get("verdict") != "running":
                return verdict
            if time.monotonic() >= give_up_at:
                progress.print(f"Test run {run_id} still running; check it later with `postback test status`.")
                return verdict
            time.sleep(interval)


@test_app.command("status")
@handle_errors
def status(ctx: typer.Context, run_id: Annotated[str, typer.Argument(help="The run ID `test start` printed.")]) -> None:
    """Show a test run's verdict (running, passed, failed), the failed step and why; exit 1 if failed."""
    ops = ops_of(ctx)
    verdict = _run_status(ops, run_id)
    ops.emit(verdict, lambda console: _show_verdict(console, verdict))
    _exit_for(verdict)
