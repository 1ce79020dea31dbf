"""`postback health`'s figures (domain.health): pure, over delivery records and circuits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
from fakes import Tried, delivery_record, message

from postback_relay.domain.delivery import Circuit, CircuitStatus, DeliveryState
from postback_relay.domain.errors import DurationError
from postback_relay.domain.health import (
    AffiliateHealth,
    CircuitView,
    HealthState,
    affiliate_health,
    circuit_view,
    endpoint_of_url,
    parse_duration,
    percentile,
    worst_first,
)
from postback_relay.domain.records import DeliveryRecord

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
SINCE = NOW - timedelta(hours=24)
URL = "https://track.acme.example/pb?cid=1"

Try = tuple[int | None, str, str | None, int]  # status, outcome, error kind, latency


def record(
    n: int,
    state: DeliveryState,
    tries: Sequence[Try],
    *,
    affiliate_id: str = "A1",
    created: datetime | None = None,
) -> DeliveryRecord:
    """Postback n (T{n}, to URL), its attempts a minute apart."""
    postback = message(
        n, affiliate_id=affiliate_id, transaction_id=f"T{n}", url=URL, created_at=created or NOW - timedelta(hours=1)
    )
    attempts = [Tried(status, outcome, kind, latency) for status, outcome, kind, latency in tries]
    return delivery_record(postback, state, attempts, spacing=timedelta(minutes=1))


DELIVERED: Try = (200, "delivered", None, 40)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90m", timedelta(minutes=90)), ("6h", timedelta(hours=6)), ("7d", timedelta(days=7)), (" 24h ", timedelta(1))],
)
def test_durations_in_minutes_hours_and_days_are_read(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "0h", "1.5h", "2w", "h", "-3h", "6 h", "6H", "24", "31d", "1e3m", "٣h"])
def test_anything_else_is_refused_with_a_sentence(text: str) -> None:
    with pytest.raises(DurationError, match=r"90m, 6h or 7d|30d"):
        parse_duration(text)


def test_counts_are_by_current_state_of_postbacks_created_in_the_window() -> None:
    # GIVEN postbacks in every state, one created before the window, one of another affiliate
    records = [
        record(1, DeliveryState.DELIVERED, [DELIVERED]),
        record(2, DeliveryState.DELIVERED, [(503, "retry", "http_status", 30), (200, "delivered", None, 60)]),
        record(3, DeliveryState.RETRYING, [(None, "retry", "timeout", 10_000)]),
        record(4, DeliveryState.PENDING, []),
        record(5, DeliveryState.FAILED, [(404, "failed", "http_status", 20)]),
        record(6, DeliveryState.FAILED, [DELIVERED], created=SINCE - timedelta(minutes=1)),
        record(7, DeliveryState.FAILED, [(404, "failed", "http_status", 20)], affiliate_id="B2"),
    ]
    # WHEN the affiliate's health is computed
    row = affiliate_health("A1", "Acme", records, [], since=SINCE, now=NOW)
    # THEN each postback of the window counts once, by the state it is in now
    assert (row.delivered, row.retrying, row.pending, row.failed) == (2, 1, 1, 1)
    assert row.success_rate == pytest.approx(2 / 3)
    # AND the latency is that of the delivered attempts only
    assert (row.latency_p50_ms, row.latency_p95_ms) == (40, 60)
    # AND every attempt that did not deliver counts under its status or error kind
    assert row.top_failures == (("404", 1), ("503", 1), ("timeout", 1))
    top_failures = cast(list[dict[str, object]], row.to_json()["top_failures"])
    assert top_failures[0] == {"reason": "404", "count": 1}


def test_success_rate_is_null_until_something_is_judged() -> None:
    row = affiliate_health(
        "A1", None, [record(1, DeliveryState.RETRYING, [(500, "retry", "http_status", 5)])], [], since=SINCE, now=NOW
    )
    assert row.success_rate is None
    assert row.to_json()["success_rate"] is None
    assert row.to_json()["latency_ms"] == {"p50": None, "p95": None}


def test_top_failures_keep_the_three_most_frequent() -> None:
    tries: list[Try] = [
        *[(503, "retry", "http_status", 5)] * 4,
        *[(None, "retry", "connection_error", 5)] * 3,
        *[(200, "failed", "unexpected_body", 5)] * 2,
        (None, "failed", "unsafe_url", 0),
    ]
    row = affiliate_health("A1", None, [record(1, DeliveryState.FAILED, tries)], [], since=SINCE, now=NOW)
    assert row.top_failures == (("503", 4), ("connection_error", 3), ("unexpected_body", 2))


def test_hourly_buckets_split_delivered_and_failed_attempts() -> None:
    records = [
        record(1, DeliveryState.DELIVERED, [DELIVERED], created=NOW - timedelta(minutes=30)),
        record(
            2, DeliveryState.FAILED, [(404, "failed", "http_status", 5)], created=NOW - timedelta(hours=5, minutes=1)
        ),
    ]
    row = affiliate_health("A1", None, records, [], since=SINCE, now=NOW)
    assert len(row.hourly) == 24
    assert (row.hourly[-1].delivered, row.hourly[-1].failed) == (1, 0)
    assert (row.hourly[-6].delivered, row.hourly[-6].failed) == (0, 1)
    assert sum(h.delivered + h.failed for h in row.hourly) == 2


def test_percentiles_are_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([7], 0.95) == 7
    values = list(range(1, 101))
    assert (percentile(values, 0.5), percentile(values, 0.95)) == (50, 95)


def test_an_expired_open_circuit_reads_half_open() -> None:
    endpoint = "https://a.example:443"
    stamp = NOW.timestamp()
    assert circuit_view(None, endpoint, now=NOW) == CircuitView(endpoint, CircuitStatus.CLOSED, None)
    still_open = circuit_view(Circuit(endpoint, CircuitStatus.OPEN, 5, stamp + 60), endpoint, now=NOW)
    assert (still_open.state, still_open.open_until) == (CircuitStatus.OPEN, NOW + timedelta(seconds=60))
    expired = circuit_view(Circuit(endpoint, CircuitStatus.OPEN, 5, stamp - 1), endpoint, now=NOW)
    assert expired.state is CircuitStatus.HALF_OPEN
    assert expired.to_json()["open_until"] == "2026-11-29T11:59:59+00:00"


def _row(affiliate_id: str, delivered: int, failed: int, *, retrying: int = 0, down: bool = False) -> AffiliateHealth:
    circuits = (CircuitView("https://x.example:443", CircuitStatus.OPEN, NOW),) if down else ()
    return AffiliateHealth(affiliate_id, None, delivered=delivered, failed=failed, retrying=retrying, circuits=circuits)


def test_worst_first_puts_open_circuits_then_low_success_rates_first() -> None:
    rows = [
        _row("ok", 10, 0),
        _row("degraded", 99, 1),
        _row("failing", 1, 9),
        _row("down", 100, 0, down=True),
        _row("worse", 0, 10),
        _row("retrying", 5, 0, retrying=3),
    ]
    ordered = worst_first(rows)
    assert [r.affiliate_id for r in ordered] == ["down", "worse", "failing", "degraded", "retrying", "ok"]
    assert [r.state for r in ordered] == [
        HealthState.DOWN,
        HealthState.FAILING,
        HealthState.FAILING,
        HealthState.DEGRADED,
        HealthState.DEGRADED,
        HealthState.OK,
    ]


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("https://Track.Acme.example/pb?x=1", "https://track.acme.example:443"),
        ("http://127.0.0.1:8080/p", "http://127.0.0.1:8080"),
        ("https://{sub}.acme.example/pb", None),
        ("not a url", None),
    ],
)
def test_endpoint_of_a_url_is_scheme_host_and_port(url: str, endpoint: str | None) -> None:
    assert endpoint_of_url(url) == endpoint
