"""The tracer costs nothing when tracing is off, and builds Powertools' Tracer once when on."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from postback_relay import coldstart, observability


def test_tracing_off_hands_the_function_back_and_never_builds_a_tracer() -> None:
    tracer = observability.LazyTracer(patch_modules=("botocore",), enabled=False)

    def handler(event: Any, context: Any) -> str:
        return "done"

    assert tracer.capture_lambda_handler(handler) is handler
    assert tracer.capture_method(capture_response=False)(handler) is handler
    assert tracer._tracer is None


def test_tracing_on_builds_the_tracer_on_the_first_call_only(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[tuple[str, ...]] = []

    class FakeTracer:
        def __init__(self, patch_modules: tuple[str, ...], disabled: bool) -> None:
            built.append(patch_modules)

        def capture_lambda_handler(self, function: Any, **options: Any) -> Any:
            return lambda *args, **kwargs: ("traced", function(*args, **kwargs))

    monkeypatch.setattr(observability, "Tracer", FakeTracer)
    tracer = observability.LazyTracer(patch_modules=("botocore",), enabled=True)

    def echo(event: Any, context: Any) -> Any:
        return event

    handler = tracer.capture_lambda_handler(capture_response=False)(echo)
    assert built == []  # nothing at import
    assert handler(1, None) == ("traced", 1)
    assert handler(2, None) == ("traced", 2)
    assert built == [("botocore",)]


@pytest.mark.parametrize(
    ("environment", "enabled"),
    [
        ({"LAMBDA_TASK_ROOT": "/var/task"}, True),
        ({"LAMBDA_TASK_ROOT": "/var/task", "TRACING_MODE": "PassThrough"}, False),
        ({"LAMBDA_TASK_ROOT": "/var/task", "TRACING_MODE": "Active"}, True),
        ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "true"}, False),
        ({}, False),  # outside Lambda
    ],
)
def test_tracing_follows_powertools_rule_and_passthrough(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], enabled: bool
) -> None:
    for name in ("LAMBDA_TASK_ROOT", "TRACING_MODE", "POWERTOOLS_TRACE_DISABLED", "AWS_SAM_LOCAL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert observability.tracing_enabled() is enabled


def test_importing_a_handler_with_tracing_off_never_imports_the_xray_sdk() -> None:
    # tests/conftest.py gives the handlers POWERTOOLS_TRACE_DISABLED=true, as sam local does.
    code = "import sys, ingest_handler, dispatch_handler, testlink_handler; print('aws_xray_sdk' in sys.modules)"
    functions = Path(__file__).resolve().parents[3] / "functions"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(functions / f) for f in ("ingest", "dispatch", "testlink"))}
    out = subprocess.run(  # noqa: S603 - this interpreter, a fixed snippet
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "False"


def test_priming_runs_only_when_the_init_is_off_the_callers_path(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[str] = []
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
    assert coldstart.prime(lambda: ran.append("x")) is False
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "snap-start")
    assert coldstart.prime(lambda: ran.append("x")) is True
    assert ran == ["x"]


def test_deferred_models_are_built_by_the_priming_step() -> None:
    from pydantic import BaseModel, ConfigDict

    class Deferred(BaseModel):
        model_config = ConfigDict(defer_build=True)
        n: int

    assert not Deferred.__pydantic_complete__
    coldstart.build_models([Deferred])()
    assert Deferred.__pydantic_complete__


def test_reseeding_changes_the_random_stream() -> None:
    random.seed(1)
    first = random.random()
    random.seed(1)
    coldstart.reseed_random()
    assert random.random() != first


def test_dispatch_outcome_metrics_are_keyed_by_real_outcomes() -> None:
    import dispatch_sqs
    from postback_relay.services.dispatch import DispatchOutcome

    # keyed by strings so that the service loads on the first batch; each must stay an outcome
    assert set(dispatch_sqs.OUTCOME_METRICS) <= {outcome.value for outcome in DispatchOutcome}


def test_the_test_link_handler_default_hops_are_the_service_s() -> None:
    from postback_relay.domain.testrun import MAX_HOPS
    from postback_relay.settings import DEFAULT_MAX_HOPS

    assert DEFAULT_MAX_HOPS == MAX_HOPS
