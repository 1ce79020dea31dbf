"""A settable clock, as the dispatcher and its circuit breakers read the time."""

from __future__ import annotations

from datetime import UTC, datetime


class Clock:
    """A settable clock for the circuit breakers (epoch seconds); `at()` is the same clock as
    the dispatcher reads it (a datetime)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def at(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)
