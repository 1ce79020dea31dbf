"""Delivery health per affiliate (`postback health`, contract section 6): pure.

Computed from the delivery log's records of the postbacks created in a window and from the
circuit breakers of the affiliate's endpoints; the config script reads both and prints what
`affiliate_health` and `worst_first` make of them.

- counts: postbacks created in the window, by their current state;
- `success_rate`: delivered / (delivered + failed), None when both are 0 (postbacks still
  retrying or pending are not judged yet);
- latency: p50 and p95 (nearest rank) of the delivered attempts;
- top failures: the attempts that did not deliver, by reason (the HTTP status, or the error
  kind when there was no usable answer: `timeout`, `connection_error`, `unsafe_url`,
  `unexpected_body`), most frequent first;
- hourly: delivered and failed attempts per hour of the window, for the table's bar.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from postback_relay.domain.addresses import DEFAULT_PORTS
from postback_relay.domain.delivery import (
    AttemptOutcome,
    Circuit,
    CircuitStatus,
    DeliveryState,
    endpoint_of,
    failure_reason,
)
from postback_relay.domain.errors import DurationError
from postback_relay.domain.times import parse_utc

if TYPE_CHECKING:
    from postback_relay.domain.records import DeliveryRecord

DEFAULT_WINDOW = "24h"
_DURATION = re.compile(r"(?P<amount>[1-9][0-9]{0,5})(?P<unit>[mhd])")
_UNIT_S = {"m": 60, "h": 3600, "d": 86400}
MAX_WINDOW = timedelta(days=30)  # the delivery log keeps a postback 30 days (its TTL)
TOP_FAILURES = 3
# Below this share of delivered postbacks (of those judged), an affiliate is `failing`.
FAILING_BELOW = 0.9


def parse_duration(text: str) -> timedelta:
    """`90m`, `6h`, `7d` -> a timedelta; DurationError for anything else (`0h`, `1.5h`, `2w`)."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise DurationError(f"{text!r} is not a duration: write minutes, hours or days, like 90m, 6h or 7d.")
    window = timedelta(seconds=int(match["amount"]) * _UNIT_S[match["unit"]])
    if window > MAX_WINDOW:
        raise DurationError(f"{text!r} is longer than the delivery log keeps postbacks (30d).")
    return window


class HealthState(StrEnum):
    """How an affiliate's postbacks are doing, worst first."""

    DOWN = "down"  # a circuit of one of its endpoints is open (or half-open): postbacks wait
    FAILING = "failing"  # fewer than 90% of the judged postbacks delivered
    DEGRADED = "degraded"  # some failed or are being retried
    OK = "ok"
    IDLE = "idle"  # nothing in the window


_RANK = {state: rank for rank, state in enumerate(HealthState)}


@dataclass(frozen=True)
class CircuitView:
    """An endpoint's circuit as ops should read it now: an `open` whose cool-down is over is
    `half_open` (the next call is the trial)."""

    endpoint: str
    state: CircuitStatus
    open_until: datetime | None  # while open or half-open: when calls may go again

    def to_json(self) -> dict[str, object]:
        return {
            "endpoint": self.endpoint,
            "state": self.state.value,
            "open_until": self.open_until.astimezone(UTC).isoformat(timespec="seconds") if self.open_until else None,
        }


def circuit_view(circuit: Circuit | None, endpoint: str, *, now: datetime) -> CircuitView:
    if circuit is None or circuit.status is CircuitStatus.CLOSED:
        return CircuitView(endpoint, CircuitStatus.CLOSED, None)
    until = datetime.fromtimestamp(circuit.opened_until, UTC) if circuit.opened_until else None
    if circuit.status is CircuitStatus.OPEN and (until is None or until > now):
        return CircuitView(endpoint, CircuitStatus.OPEN, until)
    return CircuitView(endpoint, CircuitStatus.HALF_OPEN, until)


@dataclass(frozen=True)
class HourlyCount:
    start: datetime
    delivered: int = 0
    failed: int = 0


@dataclass(frozen=True)
class AffiliateHealth:
    affiliate_id: str
    name: str | None
    delivered: int = 0
    retrying: int = 0
    pending: int = 0
    failed: int = 0
    latency_p50_ms: int | None = None
    latency_p95_ms: int | None = None
    top_failures: tuple[tuple[str, int], ...] = ()
    circuits: tuple[CircuitView, ...] = ()
    hourly: tuple[HourlyCount, ...] = field(default=(), compare=False)

    @property
    def total(self) -> int:
        return self.delivered + self.retrying + self.pending + self.failed

    @property
    def success_rate(self) -> float | None:
        judged = self.delivered + self.failed
        return None if judged == 0 else self.delivered / judged

    @property
    def state(self) -> HealthState:
        if any(c.state is not CircuitStatus.CLOSED for c in self.circuits):
            return HealthState.DOWN
        rate = self.success_rate
        if rate is not None and rate < FAILING_BELOW:
            return HealthState.FAILING
        if self.failed or self.retrying:
            return HealthState.DEGRADED
        return HealthState.OK if self.total else HealthState.IDLE

    def to_json(self) -> dict[str, object]:
        """The contract's row (section 6), with `state` and `total` besides."""
        rate = self.success_rate
        return {
            "affiliate_id": self.affiliate_id,
            "name": self.name,
            "state": self.state.value,
            "total": self.total,
            "delivered": self.delivered,
            "retrying": self.retrying,
            "pending": self.pending,
            "failed": self.failed,
            "success_rate": None if rate is None else round(rate, 4),
            "latency_ms": {"p50": self.latency_p50_ms, "p95": self.latency_p95_ms},
            "top_failures": [{"reason": reason, "count": count} for reason, count in self.top_failures],
            "circuits": [circuit.to_json() for circuit in self.circuits],
        }


def percentile(values: Sequence[int], share: float) -> int | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def affiliate_health(
    affiliate_id: str,
    name: str | None,
    records: Iterable[DeliveryRecord],
    circuits: Iterable[CircuitView],
    *,
    since: datetime,
    now: datetime,
) -> AffiliateHealth:
    """One affiliate's row from its records (those created before `since` are left out)."""
    states: Counter[DeliveryState] = Counter()
    latencies: list[int] = []
    reasons: Counter[str] = Counter()
    hours = _hours(since, now)
    delivered_by_hour = [0] * len(hours)
    failed_by_hour = [0] * len(hours)
    for record in records:
        if record.message.affiliate_id != affiliate_id or parse_utc(record.created_at) < since:
            continue
        states[record.state] += 1
        for attempt in record.attempts:
            bucket = _bucket(attempt.at, since, len(hours))
            if attempt.outcome == AttemptOutcome.DELIVERED.value:
                if attempt.latency_ms is not None:
                    latencies.append(attempt.latency_ms)
                if bucket is not None:
                    delivered_by_hour[bucket] += 1
            elif attempt.outcome:  # retry or failed: an answer (or none) that was not a delivery
                reasons[failure_reason(attempt.status, attempt.error_kind)] += 1
                if bucket is not None:
                    failed_by_hour[bucket] += 1
    top = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))[:TOP_FAILURES]
    return AffiliateHealth(
        affiliate_id=affiliate_id,
        name=name,
        delivered=states[DeliveryState.DELIVERED],
        retrying=states[DeliveryState.RETRYING],
        pending=states[DeliveryState.PENDING],
        failed=states[DeliveryState.FAILED],
        latency_p50_ms=percentile(latencies, 0.5),
        latency_p95_ms=percentile(latencies, 0.95),
        top_failures=tuple(top),
        circuits=tuple(sorted(circuits, key=lambda c: c.endpoint)),
        hourly=tuple(HourlyCount(start, delivered_by_hour[i], failed_by_hour[i]) for i, start in enumerate(hours)),
    )


def worst_first(rows: Iterable[AffiliateHealth]) -> list[AffiliateHealth]:
    """Down, then failing, degraded, ok; within a state the lowest success rate, then the most
    postbacks not delivered, first."""

    def badness(row: AffiliateHealth) -> tuple[int, float, int, str]:
        rate = row.success_rate
        return (_RANK[row.state], 1.0 if rate is None else rate, -(row.failed + row.retrying), row.affiliate_id)

    return sorted(rows, key=badness)


def endpoint_of_url(url: str) -> str | None:
    """`scheme://host:port` of a URL (the circuit breaker's key); None when it has no host or
    its host is still a macro (`{sub}.example.com`)."""
    try:
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORTS.get(parts.scheme, 0)
    except ValueError:
        return None
    if not parts.hostname or "{" in parts.hostname:
        return None
    return endpoint_of(parts.scheme, parts.hostname, port)


def _hours(since: datetime, now: datetime) -> list[datetime]:
    count = max(1, math.ceil((now - since).total_seconds() / 3600))
    return [since + timedelta(hours=i) for i in range(count)]


def _bucket(at: datetime, since: datetime, count: int) -> int | None:
    index = int((_aware(at) - since).total_seconds() // 3600)
    return index if 0 <= index < count else None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
