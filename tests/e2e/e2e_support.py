"""What the end-to-end tests share: the local stack's process, the config script's result,
and waiting for a state that can only be read from outside."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

READY_PREFIX = "local stack ready "


@dataclass
class LocalStackProcess:
    """The running `python -m postback_ops.local` and what it said on stdout."""

    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return str(self.details["api_url"])

    @property
    def aws_endpoint(self) -> str:
        return str(self.details["aws_endpoint"])

    @property
    def outputs(self) -> dict[str, str]:
        return dict(self.details["outputs"])

    def read_output(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith(READY_PREFIX):
                self.details = json.loads(line[len(READY_PREFIX) :])
                self.ready.set()
        self.ready.set()  # the process ended: stop waiting either way

    def log_tail(self, count: int = 40) -> str:
        return "\n".join(self.lines[-count:])


@dataclass(frozen=True)
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def eventually[T](read: Callable[[], T], done: Callable[[T], bool], *, timeout_s: float = 60.0) -> T:
    """Read until `done` holds: the stack's state can only be polled from outside.

    The timeout is a loose bound (the scaled retry schedule ends within a minute), not a
    synchronisation: the test waits for the state, never for a fixed time.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = read()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.2)
