"""`postback health`: delivery health per affiliate over a window, worst first (contract 6).

Reads, per affiliate, the postbacks created in the window through the delivery log's
per-affiliate access path (`DeliveryLog.created_since`), the circuit breakers once (one scan
of the small EndpointsTable), and leaves every figure to `domain.health`.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from postback_ops.cli_context import UsageProblem, handle_errors, ops_of, people_table
from postback_ops.ports import Backends
from postback_relay.domain import messages
from postback_relay.domain.delivery import Circuit, CircuitStatus
from postback_relay.domain.errors import DurationError, NotFoundError
from postback_relay.domain.health import (
    DEFAULT_WINDOW,
    AffiliateHealth,
    HealthState,
    HourlyCount,
    circuit_view,
    parse_duration,
    worst_first,
)
from postback_relay.domain.records import StoredAffiliate
from postback_relay.services.health import health_row

READ_WORKERS = 8  # affiliates read at once (one Query + BatchGetItems each)
BAR_COLUMNS = 24  # the hourly bar folds longer windows into this many columns

STATE_STYLE = {
    HealthState.DOWN: "bold red",
    HealthState.FAILING: "red",
    HealthState.DEGRADED: "yellow",
    HealthState.OK: "green",
    HealthState.IDLE: "dim",
}
CIRCUIT_STYLE = {CircuitStatus.OPEN: "bold red", CircuitStatus.HALF_OPEN: "yellow", CircuitStatus.CLOSED: "green"}
_BLOCKS = "▁▂▃▄▅▆▇█"
_ASCII_BLOCKS = ".:-=+*#@"


@handle_errors
def health(
    ctx: typer.Context,
    since: Annotated[
        str, typer.Option("--since", help="The window: postbacks created in the last 90m, 6h, 7d...")
    ] = DEFAULT_WINDOW,
    affiliate: Annotated[str | None, typer.Option("--affiliate", help="Only this affiliate.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")] = False,
) -> None:
    """Delivery health per affiliate, worst first: postbacks by state, success rate, latency,
    the top failure reasons and the endpoints' circuits."""
    ops = ops_of(ctx)
    if json_output:
        ops.json = True
    try:
        window = parse_duration(since)
    except DurationError as exc:
        raise UsageProblem(f"--since: {exc}") from None
    now = datetime.now(UTC)
    rows = health_rows(ops.backends, affiliate=affiliate, since=now - window, now=now)

    def show(console: Console) -> None:
        if not rows:
            console.print(f"No postbacks were created in the last {since}.", markup=False)
            return
        console.print(health_table(rows, console=console, window=since))

    ops.emit([row.to_json() for row in rows], show)


def health_rows(backends: Backends, *, affiliate: str | None, since: datetime, now: datetime) -> list[AffiliateHealth]:
    """Every affiliate with postbacks in the window (or the one asked for), worst first."""
    if affiliate is not None:
        stored = backends.affiliates.get(affiliate)
        if stored is None:
            raise NotFoundError(messages.no_affiliate(affiliate))
        affiliates: Sequence[StoredAffiliate] = [stored]
    else:
        affiliates = backends.affiliates.list()
    circuits = {circuit.endpoint: circuit for circuit in backends.endpoints.list()}

    def row_of(stored: StoredAffiliate) -> AffiliateHealth:
        records = backends.deliveries.created_since(stored.config.affiliate_id, since)
        return health_row(stored.config, records, circuits.get, since=since, now=now)

    with ThreadPoolExecutor(max_workers=max(1, min(READ_WORKERS, len(affiliates)))) as pool:
        rows = list(pool.map(row_of, affiliates))
    return worst_first(row for row in rows if row.total or affiliate is not None)


def health_table(rows: Sequence[AffiliateHealth], *, console: Console, window: str) -> object:
    table = people_table(
        "state", "affiliate", "name", "delivered", "retrying", "pending", "failed", "success", "p50/p95",
        "top failures", "circuits", f"per hour, last {window}",
    )  # fmt: skip
    for row in rows:
        rate = row.success_rate
        table.add_row(
            Text(row.state.value, style=STATE_STYLE[row.state]),
            row.affiliate_id,
            row.name or "",
            str(row.delivered),
            str(row.retrying),
            str(row.pending),
            str(row.failed),
            "" if rate is None else f"{rate:.0%}",
            _latency(row),
            ", ".join(f"{reason} x{count}" for reason, count in row.top_failures),
            _circuits(row),
            hourly_bar(row.hourly, console=console),
        )
    return table


def _latency(row: AffiliateHealth) -> str:
    if row.latency_p50_ms is None:
        return ""
    return f"{row.latency_p50_ms}/{row.latency_p95_ms} ms"


def _circuits(row: AffiliateHealth) -> Text:
    text = Text()
    for circuit in row.circuits:
        if circuit.state is CircuitStatus.CLOSED:
            continue
        if text:
            text.append("\n")
        text.append(f"{circuit.state.value} ", style=CIRCUIT_STYLE[circuit.state])
        text.append(circuit.endpoint)
    return text or Text("closed", style=CIRCUIT_STYLE[CircuitStatus.CLOSED])


def hourly_bar(hours: Sequence[HourlyCount], *, console: Console) -> Text:
    """One column per hour (folded to BAR_COLUMNS): its height the attempts, green when all
    delivered, red when none, yellow between. Without colour a column with failures is `x`;
    without UTF-8 the heights are ASCII."""
    if not hours:
        return Text()
    per_column = -(-len(hours) // BAR_COLUMNS)
    columns = [
        (sum(h.delivered for h in hours[i : i + per_column]), sum(h.failed for h in hours[i : i + per_column]))
        for i in range(0, len(hours), per_column)
    ]
    peak = max((delivered + failed for delivered, failed in columns), default=0)
    coloured = console.color_system is not None and not console.no_color
    blocks = _BLOCKS if (console.encoding or "").lower().startswith("utf") else _ASCII_BLOCKS
    bar = Text()
    for delivered, failed in columns:
        total = delivered + failed
        if total == 0:
            bar.append(" ")
            continue
        glyph = blocks[min(len(blocks) - 1, (total * len(blocks) - 1) // peak)]
        if not coloured:
            bar.append("x" if failed else glyph)
            continue
        style = "green" if failed == 0 else "red" if delivered == 0 else "yellow"
        bar.append(glyph, style=style)
    return bar


def circuit_is_open_now(circuit: Circuit, *, now: datetime) -> bool:
    """Open or half-open as ops read it (an expired `open` is `half_open`)."""
    return circuit_view(circuit, circuit.endpoint, now=now).state is not CircuitStatus.CLOSED
