"""The `make run` terminal: the stack's own readable lines, no raw JSON logs, no tracebacks, no
library dumps; POSTBACK_LOCAL_LOG=json shows the full JSON logs."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import boto3
import pytest

from postback_ops.local import __main__ as local_main
from postback_ops.local.runtime import MetricLinesFilter
from postback_ops.local.stack import LocalRelay, LocalSettings, _attempt_words
from postback_relay.adapters.dynamodb_testruns import DynamoTestRunStore
from postback_relay.domain.testrun import TestRun, TestStep

JSON_LOG = '{"level":"WARNING","location":"x:1","message":"Postback not delivered","service":"dispatch"}'
EMF = '{"_aws":{"Timestamp":1}}'
OWN = "postback  T-1 sale affiliate=1234567 GET http://127.0.0.1:9/p -> retrying: attempt 1 of 8: connection refused"


def test_the_terminal_keeps_the_stacks_own_lines_and_drops_json_logs() -> None:
    # GIVEN the terminal's stdout as `make run` sets it up, without and with POSTBACK_LOCAL_LOG=json
    quiet, verbose = io.StringIO(), io.StringIO()
    for target, json_logs in ((quiet, False), (verbose, True)):
        MetricLinesFilter(target, json_logs=json_logs).write(f"{JSON_LOG}\n{EMF}\n{OWN}\n")
    # THEN by default only the stack's line shows; with json the log record shows too (never EMF)
    assert quiet.getvalue() == f"{OWN}\n"
    assert verbose.getvalue() == f"{JSON_LOG}\n{OWN}\n"


def test_postback_lines_give_the_reason_of_a_failed_attempt() -> None:
    # GIVEN the delivery log's item after a refused connection, and one after a 503
    refused = {
        "state": "retrying",
        "attempts": [{"attempt": 1, "error_kind": "connection_error"}] * 3,
        "last_error": "127.0.0.1: connection refused",
    }
    busy = {"state": "failed", "http_status": 503, "attempts": [{"status": 503, "error_kind": "http_status"}]}
    delivered = {"state": "delivered", "http_status": 200, "attempts": [{"status": 200}]}
    # THEN the line's reason says what the last attempt saw
    assert _attempt_words(refused) == (None, "attempt 3 of 8: connection refused")
    assert _attempt_words(busy) == (503, "attempt 1 of 8: HTTP 503")
    assert _attempt_words(delivered) == (200, None)


def test_a_function_error_is_one_line_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSTBACK_LOCAL_LOG", raising=False)
    lines: list[str] = []
    relay = LocalRelay(LocalSettings(), log=lines.append)
    trace = "Traceback (most recent call last):\n  File \"x.py\", line 1, in f\nKeyError: 'run_id'\n"
    relay._log_function_error(trace)
    assert lines == ["function error: KeyError: 'run_id' (POSTBACK_LOCAL_LOG=json shows the traceback)"]


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging.getLogger("moto").level)
    yield
    root.handlers = saved[0]
    root.setLevel(saved[1])
    logging.getLogger("moto").setLevel(saved[2])


@pytest.mark.usefixtures("root_logging")
def test_library_warnings_are_one_short_line_and_moto_s_failed_executions_are_silent(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN the terminal's logging as `make run` sets it up
    local_main.quiet_libraries()
    # WHEN moto logs a failed execution (the 1,142-character FailureEventException) and botocore warns
    logging.getLogger("moto.stepfunctions.parser").exception("FailureEventException " + "x" * 1142)
    logging.getLogger("botocore.credentials").warning("a warning\nwith a second line " + "y" * 400)
    # THEN moto says nothing, the warning is one line of at most 160 characters of text
    err = capsys.readouterr().err
    assert "FailureEventException" not in err
    (line,) = err.splitlines()
    assert line.startswith("warning   botocore.credentials: a warning")
    assert len(line) <= len("warning   botocore.credentials: ") + local_main.MAX_LINE


def test_each_test_step_is_one_line_of_what_it_saw(aws: dict[str, str]) -> None:
    # GIVEN a test run whose delivery check saw a refused connection, in the stack's table
    store = DynamoTestRunStore(aws["TestRunsTableName"], client=boto3.client("dynamodb"))
    at = datetime(2026, 11, 25, 12, tzinfo=UTC)
    store.create(TestRun(run_id="R-1", affiliate_id="1234567", started_by="ops", started_at=at))
    seen = "postback 1: attempt 3 of 8: connection refused"
    details = {"check": 2, "deliveries": [{"n": 1, "state": "retrying", "attempts": 3, "seen": seen}]}
    store.append_step("R-1", TestStep(name="check_delivery", at=at, ok=True, details=details))
    lines: list[str] = []
    relay = LocalRelay(LocalSettings(), log=lines.append)
    relay._session = boto3.Session()
    relay.outputs = {"TestRunsTableName": aws["TestRunsTableName"]}

    # WHEN the test-link function's step returns (as the state machine invokes it)
    answer = relay._logged_test_step(lambda event: {"verdict": "running"})({"run_id": "R-1", "step": "check_delivery"})

    # THEN the function's answer is untouched and the terminal says what the step saw
    assert answer == {"verdict": "running"}
    assert lines == [f"test      R-1 check_delivery (check 2): {seen}"]
