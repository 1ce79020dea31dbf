"""template.yaml as data for the tests that check its promises."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from postback_ops.template import load_template

TEMPLATE = load_template()


def walk(node: Any) -> Iterator[Any]:
    """Every node of a parsed template (or part of one), depth first."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)
