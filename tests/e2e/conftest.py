"""End-to-end fixtures: the local stack in its own process, driven only from outside.

The stack runs as `python -m postback_ops.local` (what `make run` runs) on free ports; the
tests reach it over HTTP (the conversion API), through the config script (`postback --local`
as a subprocess) and through an affiliate receiver they run on 127.0.0.1.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from e2e.e2e_support import CliResult, LocalStackProcess

from postback_ops.local.receiver import Receiver

START_TIMEOUT_S = 120


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tests' stack records itself, never a developer's .local-stack/."""
    return tmp_path_factory.mktemp("local-stack")


@pytest.fixture(scope="session")
def local_stack(state_dir: Path) -> Iterator[LocalStackProcess]:
    """GIVEN the whole system running locally, as `make run` starts it, on free ports."""
    env = {
        **os.environ,
        "POSTBACK_LOCAL_API_PORT": "0",
        "POSTBACK_LOCAL_AWS_PORT": "0",
        "POSTBACK_LOCAL_RECEIVER_PORT": "off",
        "POSTBACK_LOCAL_STATE_DIR": str(state_dir),
        "PYTHONUNBUFFERED": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "postback_ops.local"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    stack = LocalStackProcess(process)
    reader = threading.Thread(target=stack.read_output, daemon=True)
    reader.start()
    try:
        assert stack.ready.wait(START_TIMEOUT_S), f"the local stack did not start:\n{stack.log_tail()}"
        assert stack.details, f"the local stack exited before it was ready:\n{stack.log_tail()}"
        yield stack
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        reader.join(timeout=5)
    assert process.returncode == 0, f"the local stack did not stop cleanly on SIGTERM:\n{stack.log_tail()}"


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    """GIVEN an affiliate server on 127.0.0.1 that records every postback."""
    with Receiver() as running:
        yield running


@pytest.fixture(scope="session")
def postback_script(local_stack: LocalStackProcess, state_dir: Path) -> Callable[..., CliResult]:
    """The config script in its own process, finding the stack as a developer's shell does:
    through the stack record (`extra_env` adds or, with None, removes variables)."""
    script = Path(sys.executable).with_name("postback")
    base = {**os.environ, "POSTBACK_LOCAL_STATE_DIR": str(state_dir)}
    for name in ("AWS_ENDPOINT_URL", "POSTBACK_LOCAL_ENDPOINT"):
        base.pop(name, None)

    def run(*args: str, extra_env: dict[str, str | None] | None = None) -> CliResult:
        env = dict(base)
        for name, value in (extra_env or {}).items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        done = subprocess.run(  # noqa: S603 - the project's own console script
            [str(script), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=180,
            check=False,
        )
        return CliResult(done.returncode, done.stdout, done.stderr)

    return run


@pytest.fixture(scope="session")
def postback(local_stack: LocalStackProcess, postback_script: Callable[..., CliResult]) -> Callable[..., CliResult]:
    """The config script as ops run it: `postback --local --json ...` in its own process."""

    def run(*args: str) -> CliResult:
        return postback_script(
            "--local", "--json", *args, extra_env={"POSTBACK_LOCAL_ENDPOINT": local_stack.aws_endpoint}
        )

    return run
