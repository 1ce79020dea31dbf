"""Strict JSON reading shared by the conversion API and the config loader.

JSON parsers disagree on which of two equal keys wins, and NaN or Infinity are no JSON at all:
a signed body or a saved config must mean one thing to every reader.
"""

from typing import Any


def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`object_pairs_hook` for json.loads: an object naming a key twice is refused."""
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise ValueError(f"the key {key!r} appears twice in one object")
        document[key] = value
    return document


def refuse_constant(name: str) -> Any:
    """`parse_constant` for json.loads: NaN, Infinity and -Infinity are refused."""
    raise ValueError(f"{name} is not a valid JSON value")
