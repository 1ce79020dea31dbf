"""Every command of the config script runs through typer's CliRunner against in-memory
backends (tests/fakes/cli.py), with no AWS at all."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fakes.cli import FakeBackends
from typer.testing import CliRunner, Result

from postback_ops import cli_context
from postback_ops.cli import app
from postback_ops.target import Target, pinned


@pytest.fixture
def backends(monkeypatch: pytest.MonkeyPatch) -> FakeBackends:
    fakes = FakeBackends()
    monkeypatch.setattr(cli_context, "build_backends", lambda target: fakes)
    return fakes


@pytest.fixture
def deployed() -> Iterator[Target]:
    """GIVEN the script pointed at a deployed stack (no loopback postbacks, real delays)."""
    with pinned(Target.from_outputs({"ApiUrl": "https://api.example"}, name="relay-prod")) as target:
        yield target


@pytest.fixture
def postback(backends: FakeBackends, deployed: Target) -> Callable[..., Result]:
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(app, list(args))

    return invoke
