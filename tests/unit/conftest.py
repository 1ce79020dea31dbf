"""The unit suite reaches nothing beyond loopback: pytest-socket refuses every other connect
(the tests' own HTTP servers listen on 127.0.0.1; AWS is moto, in-process)."""

from __future__ import annotations

from pathlib import Path

import pytest

LOOPBACK = ["127.0.0.0/8", "::1"]  # all of loopback: a test may use 127.0.0.2 as a dead address
UNIT = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every conftest sees every item of the session: mark the unit suite's only.
    for item in items:
        if item.path.is_relative_to(UNIT):
            item.add_marker(pytest.mark.allow_hosts(LOOPBACK))
