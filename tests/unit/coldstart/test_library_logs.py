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
    yield tree
    tree.handlers, tree.propagate = saved[0], saved[2]
    tree.setLevel(saved[1])


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

    # WHEN the service logs as the services do: the standard library, `extra` fields
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
    # GIVEN a handler module imported (its Logger built at import)
    import dispatch_sqs

    # WHEN it configures the tree again (as each handler does at import)
    observability.format_library_logs(dispatch_sqs.logger)

    # THEN the library's lines go through that Logger's own handler, at its level
    assert library_logger.handlers == [dispatch_sqs.logger.registered_handler]
    assert library_logger.level == dispatch_sqs.logger.log_level


def test_configuring_twice_adds_no_second_handler(library_logger: logging.Logger) -> None:
    logger = Logger(service="probe-twice", stream=io.StringIO())
    observability.format_library_logs(logger)
    observability.format_library_logs(logger)
    assert len(library_logger.handlers) == 1
