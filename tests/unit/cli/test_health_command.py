"""`postback health`: rows per affiliate, worst first; exit codes for a bad window and an unknown affiliate."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from fakes import Tried, delivery_record, message
from fakes.cli import FakeBackends
from rich.console import Console
from typer.testing import Result

from postback_ops.cli_health import hourly_bar
from postback_relay.domain.config import AffiliateConfig
from postback_relay.domain.delivery import Circuit, CircuitStatus, DeliveryState
from postback_relay.domain.health import HourlyCount
from postback_relay.domain.records import DeliveryRecord, StoredAffiliate


def onboard(backends: FakeBackends, affiliate_id: str, name: str, host: str) -> None:
    config = AffiliateConfig.model_validate(
        {"affiliate_id": affiliate_id, "name": name, "postbacks": [{"events": ["sale"], "url": f"https://{host}/pb"}]}
    )
    backends.affiliates.items[affiliate_id] = StoredAffiliate(config, 1, "2026-11-25T12:00:00Z")


def postback(
    n: int, affiliate_id: str, host: str, state: DeliveryState, statuses: Sequence[int | None], *, age: timedelta
) -> DeliveryRecord:
    """Postback n to `host`, created `age` ago, with one attempt per status."""
    created = datetime.now(UTC) - age
    sent = message(
        n, affiliate_id=affiliate_id, transaction_id=f"T{n}", url=f"https://{host}/pb?cid={n}", created_at=created
    )
    tries = [
        Tried(
            status,
            outcome="delivered" if status == 200 else "failed" if state is DeliveryState.FAILED else "retry",
            error_kind=None if status == 200 else ("http_status" if status else "timeout"),
            latency_ms=30 + n,
        )
        for status in statuses
    ]
    return delivery_record(sent, state, tries)


@pytest.fixture
def affiliates(backends: FakeBackends) -> FakeBackends:
    """GIVEN a healthy affiliate, one whose server answers 404, one behind an open circuit,
    and one with nothing in the last day."""
    onboard(backends, "100", "Healthy", "ok.example")
    onboard(backends, "200", "Four-oh-four", "gone.example")
    onboard(backends, "300", "Down", "down.example")
    onboard(backends, "400", "Quiet", "quiet.example")
    hour = timedelta(hours=1)
    records = [
        postback(1, "100", "ok.example", DeliveryState.DELIVERED, [200], age=hour),
        postback(2, "100", "ok.example", DeliveryState.DELIVERED, [200], age=2 * hour),
        postback(3, "200", "gone.example", DeliveryState.FAILED, [404], age=hour),
        postback(4, "200", "gone.example", DeliveryState.FAILED, [404], age=3 * hour),
        postback(5, "200", "gone.example", DeliveryState.DELIVERED, [200], age=3 * hour),
        postback(6, "300", "down.example", DeliveryState.PENDING, [503, 503, None], age=hour),
        postback(7, "400", "quiet.example", DeliveryState.FAILED, [404], age=48 * hour),
    ]
    backends.deliveries.records = {r.delivery_id: r for r in records}
    backends.endpoints.circuits = [
        Circuit("https://down.example:443", CircuitStatus.OPEN, 5, datetime.now(UTC).timestamp() + 600)
    ]
    return backends


def rows_of(result: Result) -> list[dict[str, object]]:
    assert result.exit_code == 0, result.stderr
    rows: list[dict[str, object]] = json.loads(result.stdout)
    return rows


@pytest.mark.usefixtures("affiliates")
def test_health_lists_affiliates_with_postbacks_in_the_window_worst_first(postback: Callable[..., Result]) -> None:
    # WHEN ops ask for the last day's health as JSON
    rows = rows_of(postback("health", "--json"))
    # THEN the affiliate behind an open circuit comes first, then the failing one, then the healthy one
    assert [r["affiliate_id"] for r in rows] == ["300", "200", "100"]
    down, failing, healthy = rows
    # AND each row has the contract's fields
    assert failing == {
        "affiliate_id": "200",
        "name": "Four-oh-four",
        "state": "failing",
        "total": 3,
        "delivered": 1,
        "retrying": 0,
        "pending": 0,
        "failed": 2,
        "success_rate": pytest.approx(1 / 3, abs=1e-4),
        "latency_ms": {"p50": 35, "p95": 35},
        "top_failures": [{"reason": "404", "count": 2}],
        "circuits": [{"endpoint": "https://gone.example:443", "state": "closed", "open_until": None}],
    }
    assert (healthy["success_rate"], healthy["top_failures"], healthy["state"]) == (1.0, [], "ok")
    assert (down["success_rate"], down["pending"], down["state"]) == (None, 1, "down")
    assert down["top_failures"] == [{"reason": "503", "count": 2}, {"reason": "timeout", "count": 1}]
    assert down["circuits"][0]["state"] == "open"  # type: ignore[index]


def test_health_reads_the_log_through_the_per_affiliate_path_from_the_windows_start(
    postback: Callable[..., Result], affiliates: FakeBackends
) -> None:
    # WHEN ops ask for the last 90 minutes of one affiliate
    before = datetime.now(UTC)
    rows = rows_of(postback("--json", "health", "--since", "90m", "--affiliate", "200"))
    # THEN the log is read once, for that affiliate, from 90 minutes ago
    ((affiliate_id, since),) = affiliates.deliveries.reads_since
    assert affiliate_id == "200"
    assert timedelta(minutes=89) < before - since < timedelta(minutes=91)
    # AND only the postback created in those 90 minutes counts
    assert [(r["affiliate_id"], r["failed"], r["delivered"]) for r in rows] == [("200", 1, 0)]


@pytest.mark.usefixtures("affiliates")
def test_an_affiliate_asked_for_is_shown_even_with_nothing_in_the_window(postback: Callable[..., Result]) -> None:
    rows = rows_of(postback("--json", "health", "--affiliate", "400"))
    assert [(r["affiliate_id"], r["state"], r["total"], r["success_rate"]) for r in rows] == [("400", "idle", 0, None)]


@pytest.mark.usefixtures("affiliates")
def test_health_table_shows_state_counts_and_reasons(postback: Callable[..., Result]) -> None:
    result = postback("health")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    down_line = next(i for i, line in enumerate(lines) if "Down" in line)
    failing_line = next(i for i, line in enumerate(lines) if "Four-oh-four" in line)
    assert down_line < failing_line
    assert "404 x2" in result.stdout
    assert "open https://down.example:443" in result.stdout
    assert "Quiet" not in result.stdout


@pytest.mark.usefixtures("affiliates")
def test_an_unknown_affiliate_exits_4_with_one_sentence(postback: Callable[..., Result]) -> None:
    result = postback("health", "--affiliate", "999")
    assert result.exit_code == 4
    assert result.stderr.strip() == "No affiliate 999 is onboarded."
    assert result.stdout == ""


@pytest.mark.usefixtures("affiliates")
@pytest.mark.parametrize("window", ["1.5h", "2w", "0h", "", "31d", "yesterday"])
def test_a_bad_duration_exits_2_naming_the_option(postback: Callable[..., Result], window: str) -> None:
    result = postback("health", "--since", window)
    assert result.exit_code == 2
    assert result.stderr.startswith("--since: ")
    assert "90m, 6h or 7d" in result.stderr or "30d" in result.stderr


def test_no_postbacks_in_the_window_is_said_plainly(postback: Callable[..., Result], backends: FakeBackends) -> None:
    onboard(backends, "100", "Healthy", "ok.example")
    table, data = postback("health", "--since", "6h"), postback("--json", "health")
    assert table.exit_code == 0
    assert "No postbacks were created in the last 6h." in table.stdout
    assert json.loads(data.stdout) == []


def test_the_hourly_bar_colours_delivered_and_failed_and_falls_back_without_colour() -> None:
    start = datetime(2026, 11, 29, tzinfo=UTC)
    hours = [
        HourlyCount(start, 4, 0),
        HourlyCount(start + timedelta(hours=1), 0, 0),
        HourlyCount(start + timedelta(hours=2), 2, 2),
        HourlyCount(start + timedelta(hours=3), 0, 1),
    ]
    coloured = hourly_bar(hours, console=Console(color_system="truecolor", force_terminal=True))
    assert coloured.plain == "█ █▂"
    assert [str(span.style) for span in coloured.spans] == ["green", "yellow", "red"]
    plain = hourly_bar(hours, console=Console(color_system=None, no_color=True))
    assert plain.plain in ("█ xx", "@ xx")
    # A week folds into at most 24 columns
    week = [HourlyCount(start + timedelta(hours=i), 1, 0) for i in range(168)]
    assert len(hourly_bar(week, console=Console(color_system=None)).plain) == 24
