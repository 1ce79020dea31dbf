"""The services log with the standard library; in a function those lines are Powertools JSON."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from aws_lambda_powertools import Logger

from postback_relay import observability


@pytest.fixture
def library_logger() -> Iterator[logging.Logger]:
    """The `postback_relay` logger as it was, put back after the test."""
    tree = logging.getLogger(observability.LIBRARY_LOGGER)
    saved = (list(tree.handlers), tree.level, tree.propagate)
    known = list(observability._function_loggers)
    yield tree
    tree.handlers, tree.propagate = saved[0], saved[2]
    tree.setLevel(saved[1])
    observability._function_loggers[:] = known


def test_a_line_a_service_logs_comes_out_as_the_function_s_powertools_json_with_its_extra_fields(
    library_logger: logging.Logger,
) -> None:
    # GIVEN a function's Powertools Logger writing into a buffer, its keys for this invocation,
    # and the library's log tree formatted through it
    stream = io.StringIO()
    function_logger = Logger(service="probe-function", stream=stream)
    function_logger.append_keys(run_id="R-1")
    observability.format_library_logs(function_logger)
    # ...and a service module's logger made only afterwards (as a service imported on the first call)
    service_logger = logging.getLogger("postback_relay.services.probe_after_config")

    # WHEN the service logs as the services do (the standard library, `extra` fields), in an
    # invocation of the function
    with observability.invocation_logs(function_logger):
        service_logger.info("postback delivered", extra={"delivery_id": "D-1", "status": 200})
        service_logger.debug("below the function's level")

    # THEN exactly one line came out, Powertools' JSON with the service, the invocation's keys and
    # the extra fields; nothing went to the root logger's handlers as well
    (line,) = stream.getvalue().splitlines()
    document = json.loads(line)
    assert document["message"] == "postback delivered"
    assert document["level"] == "INFO"
    assert document["service"] == "probe-function"
    assert document["run_id"] == "R-1"
    assert document["delivery_id"] == "D-1"
    assert document["status"] == 200
    assert library_logger.propagate is False


def test_every_handler_formats_the_library_logs_with_its_own_logger(library_logger: logging.Logger) -> None:
    # GIVEN a handler module imported (its Logger built at import), its output in a buffer
    import dispatch_sqs

    handler = dispatch_sqs.logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    previous = handler.setStream(stream)

    # WHEN it configures the tree again (as each handler does at import) and a service logs
    # during one of its invocations
    try:
        observability.format_library_logs(dispatch_sqs.logger)
        with observability.invocation_logs(dispatch_sqs.logger):
            logging.getLogger("postback_relay.services.probe").info("through dispatch")
    finally:
        handler.setStream(previous)

    # THEN the line went through that Logger's own handler, as its JSON
    assert _library_line(stream, "through dispatch")["service"] == dispatch_sqs.logger.service
    assert library_logger.level <= dispatch_sqs.logger.log_level


def _library_line(stream: io.StringIO, message: str) -> dict[str, object]:
    (line,) = [json.loads(text) for text in stream.getvalue().splitlines() if json.loads(text)["message"] == message]
    document: dict[str, object] = line
    return document


def test_a_warm_invocation_never_carries_the_keys_of_the_one_before(library_logger: logging.Logger) -> None:
    # GIVEN a function whose invocation appends a key (the test link's run_id), as on a warm instance
    stream = io.StringIO()
    logger = observability.FunctionLogger(service="probe-warm", stream=stream)
    observability.format_library_logs(logger)
    service = logging.getLogger("postback_relay.services.probe_warm")

    @logger.inject_lambda_context
    def handler(event: dict[str, str], context: object) -> None:
        if "run_id" in event:
            logger.append_keys(run_id=event["run_id"])
        service.info(event["say"])

    # WHEN it is invoked with a run, then without one
    handler({"run_id": "R-1", "say": "first"}, LambdaContext())
    handler({"say": "second"}, LambdaContext())

    # THEN the second invocation's line has none of the first's keys
    assert _library_line(stream, "first")["run_id"] == "R-1"
    assert "run_id" not in _library_line(stream, "second")


def test_functions_in_one_process_never_log_with_each_others_keys(library_logger: logging.Logger) -> None:
    # GIVEN two functions in one process (the local stack): ingest's Logger built first, the test
    # link's last (as the local stack imports them), the test link having appended its run_id
    ingest_stream, testlink_stream = io.StringIO(), io.StringIO()
    ingest_logger = observability.FunctionLogger(service="probe-ingest", stream=ingest_stream)
    observability.format_library_logs(ingest_logger)
    testlink_logger = observability.FunctionLogger(service="probe-testlink", stream=testlink_stream)
    observability.format_library_logs(testlink_logger)
    service = logging.getLogger("postback_relay.services.probe_ingest")

    @testlink_logger.inject_lambda_context
    def testlink(event: dict[str, str], context: object) -> None:
        testlink_logger.append_keys(run_id=event["run_id"])
        service.info("test step")

    @ingest_logger.inject_lambda_context
    def ingest(event: dict[str, str], context: object) -> None:
        service.info("conversion taken")

    # WHEN the test link runs, then ingest takes a conversion; and a line is written outside both
    testlink({"run_id": "R-OLD"}, LambdaContext())
    ingest({}, LambdaContext())
    service.info("between invocations")

    # THEN ingest's line is ingest's alone: its service, no run_id; the test link's line is its own
    taken = _library_line(ingest_stream, "conversion taken")
    assert taken["service"] == "probe-ingest"
    assert "run_id" not in taken
    assert _library_line(testlink_stream, "test step")["run_id"] == "R-OLD"
    assert "conversion taken" not in testlink_stream.getvalue()
    # AND a line outside any invocation carries neither function's keys
    assert "between invocations" not in ingest_stream.getvalue() + testlink_stream.getvalue()


class LambdaContext:
    function_name = "probe"
    memory_limit_in_mb = 128
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:probe"
    aws_request_id = "00000000-0000-0000-0000-000000000000"


def test_configuring_twice_adds_no_second_handler(library_logger: logging.Logger) -> None:
    logger = Logger(service="probe-twice", stream=io.StringIO())
    observability.format_library_logs(logger)
    observability.format_library_logs(logger)
    assert len(library_logger.handlers) == 1


@pytest.mark.parametrize(
    ("lambda_level", "powertools_level", "expected"),
    [("INFO", "WARNING", logging.WARNING), ("INFO", "DEBUG", logging.INFO), ("WARN", "INFO", logging.WARNING)],
)
def test_the_function_logs_at_the_stricter_of_lambda_s_and_its_own_level(
    monkeypatch: pytest.MonkeyPatch, lambda_level: str, powertools_level: str, expected: int
) -> None:
    # GIVEN Lambda's application log level (the template's INFO, which lets the metric lines
    # through) and the function's own LogLevel
    monkeypatch.setenv("AWS_LAMBDA_LOG_LEVEL", lambda_level)
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", powertools_level)
    logger = Logger(service=f"probe-level-{lambda_level}-{powertools_level}", stream=io.StringIO())
    # WHEN the handler's level is settled
    level = observability.keep_the_stricter_level(logger)
    # THEN it is the stricter of the two: an INFO line never reaches CloudWatch under WARNING
    assert level == logger.log_level == expected
