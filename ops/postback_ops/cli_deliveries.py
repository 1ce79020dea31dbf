"""`postback deliveries`, `replay` and `endpoints`: what happened to the postbacks."""

import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console

from postback_ops.cli_affiliates import require_affiliate
from postback_ops.cli_context import UsageProblem, handle_errors, ops_of, people_table
from postback_ops.ports import Backends
from postback_relay.domain import messages
from postback_relay.domain.delivery import MAX_ATTEMPTS, Circuit, CircuitStatus, DeliveryState, circuit_wait
from postback_relay.domain.health import circuit_view
from postback_relay.domain.records import DeliveryRecord
from postback_relay.services.lookup import DeliveryLookup, replay_failed

# With a state filter the log is read wider than --limit, since the filter applies after the read.
_FILTER_READ_LIMIT = 1000


def delivery_row(record: DeliveryRecord) -> dict[str, Any]:
    """A delivery in the contract's field names (`attempts` is a count, `http_status` the last one's)."""
    message = record.message
    last = record.attempts[-1] if record.attempts else None
    return {
        "delivery_id": record.delivery_id,
        "transaction_id": message.transaction_id,
        "event": message.event.value,
        "affiliate_id": message.affiliate_id,
        "offer_id": message.offer_id,
        "method": message.method.value,
        "url": last.url if last else message.url,
        "state": record.state.value,
        "attempts": len(record.attempts),
        "http_status": record.http_status,
        "latency_ms": last.latency_ms if last else None,
        "last_error": record.last_error,
        "reason": delivery_reason(record),
        "replays": record.replays,
        "test_run_id": message.test_run_id,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        # Every attempt: time, status, latency, a short excerpt of the answer, the error kind.
        "attempt_log": [attempt.model_dump(mode="json", exclude_none=True) for attempt in record.attempts],
    }


def delivery_reason(record: DeliveryRecord) -> str | None:
    """Why a postback is not delivered, in words (`attempt 3 of 8: connection refused`, then the
    sender's sentence when it says more); None once delivered."""
    if record.state is DeliveryState.DELIVERED:
        return None
    if not record.attempts:
        return record.last_error or "not attempted yet"
    last = record.attempts[-1]
    seen = messages.attempt_seen(
        len(record.attempts), MAX_ATTEMPTS, status=last.status, error_kind=last.error_kind, detail=record.last_error
    )
    if record.last_error and last.status is not None:
        seen += f" ({record.last_error})"
    return seen


def lookup_of(backends: Backends) -> DeliveryLookup:
    """A transaction's postbacks: through its conversion records, or its test run's."""
    return DeliveryLookup(backends.deliveries, backends.kept_postbacks, backends.run_records)


@handle_errors
def deliveries(
    ctx: typer.Context,
    affiliate: Annotated[str | None, typer.Option("--affiliate", help="One affiliate's postbacks.")] = None,
    transaction: Annotated[str | None, typer.Option("--transaction", help="One conversion's postbacks.")] = None,
    state: Annotated[DeliveryState | None, typer.Option("--state", help="Only postbacks in this state.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many, newest first.", min=1)] = 50,
) -> None:
    """List postbacks newest first: state, attempts, last HTTP status, latency, URL.

    Without --affiliate or --transaction: every failed postback of the stack (what `replay`
    would send again); listing all recent postbacks of every affiliate would read the whole log.
    """
    ops = ops_of(ctx)
    if affiliate is not None:
        require_affiliate(ops, affiliate)  # an unknown ID exits 4, as `affiliate get` does
    backends = ops.backends
    read_limit = _FILTER_READ_LIMIT if state is not None else limit
    if affiliate is None and transaction is None and state in (None, DeliveryState.FAILED):
        state = DeliveryState.FAILED
    if state is DeliveryState.FAILED:
        records = lookup_of(backends).failed(affiliate_id=affiliate, transaction_id=transaction)
    elif transaction is not None:
        records = lookup_of(backends).by_transaction(transaction, limit=read_limit)
    elif affiliate is not None:
        records = backends.deliveries.by_affiliate(affiliate, limit=read_limit)
    else:
        raise UsageProblem(f"Postbacks {state.value if state else ''} are listed per --affiliate or --transaction.")
    selected = [
        r
        for r in records
        if (affiliate is None or r.message.affiliate_id == affiliate)
        and (transaction is None or r.message.transaction_id == transaction)
        and (state is None or r.state is state)
    ]
    selected.sort(key=lambda r: r.created_at, reverse=True)
    rows = [delivery_row(r) for r in selected[:limit]]

    def show(console: Console) -> None:
        if not rows:
            console.print("No postbacks match.", markup=False)
            return
        table = people_table(
            "created", "transaction", "event", "state", "attempts", "status", "latency", "reason", "url"
        )
        for row in rows:
            table.add_row(
                row["created_at"],
                row["transaction_id"],
                row["event"],
                row["state"],
                str(row["attempts"]),
                "" if row["http_status"] is None else str(row["http_status"]),
                "" if row["latency_ms"] is None else f"{row['latency_ms']} ms",
                row["reason"] or "",
                row["url"],
            )
        console.print(table)

    ops.emit(rows, show)


@handle_errors
def replay(
    ctx: typer.Context,
    affiliate: Annotated[
        str | None, typer.Option("--affiliate", help="Replay this affiliate's failed postbacks.")
    ] = None,
    transaction: Annotated[
        str | None, typer.Option("--transaction", help="Replay this conversion's failed ones.")
    ] = None,
) -> None:
    """Send failed postbacks again (all of them without a filter).

    Each goes back on the queue as pending; its earlier attempts stay in the log.
    """
    ops = ops_of(ctx)
    if affiliate is not None:
        require_affiliate(ops, affiliate)
    backends = ops.backends
    replayed = replay_failed(lookup_of(backends), backends.queue, affiliate_id=affiliate, transaction_id=transaction)
    data = {"replayed": len(replayed), "delivery_ids": list(replayed)}
    ops.emit(
        data,
        lambda console: console.print(
            f"{len(replayed)} failed postback(s) queued again." if replayed else "No failed postbacks to replay.",
            markup=False,
        ),
    )


def circuit_row(circuit: Circuit, *, now: float) -> dict[str, Any]:
    """A circuit as ops should read it now: an `open` whose cool-down is over shows as
    `half_open` (the next call is the trial); `cool_down_s` is the wait this opening applied,
    so that `opened_until` = the opening's time + `cool_down_s`."""
    view = circuit_view(circuit, circuit.endpoint, now=datetime.fromtimestamp(now, UTC))
    open_now = view.state is not CircuitStatus.CLOSED
    applied = circuit.opened_until - circuit.opened_at if circuit.opened_at else float(circuit.cool_down_s)
    return {
        "endpoint": circuit.endpoint,
        "state": view.state.value,
        "failures": circuit.failures,
        "opened_until": view.to_json()["open_until"],
        "cool_down_s": max(0, round(applied)) if open_now else None,
        # What the dispatcher does with a postback to this endpoint right now.
        "deferring_s": round(circuit_wait(circuit, now=now)),
        "affiliates": list(circuit.affiliates),
    }


@handle_errors
def endpoints(
    ctx: typer.Context,
    every: Annotated[bool, typer.Option("--all", help="Every endpoint on record, closed ones too.")] = False,
) -> None:
    """Show the endpoints whose circuit is open or half-open (every one with --all)."""
    ops = ops_of(ctx)
    now = time.time()
    circuits = sorted(ops.backends.endpoints.list(), key=lambda c: c.endpoint)
    rows = [circuit_row(c, now=now) for c in circuits]
    if not every:
        rows = [row for row in rows if row["state"] != CircuitStatus.CLOSED.value]

    def show(console: Console) -> None:
        if not rows:
            console.print(
                "No endpoint has a circuit state yet." if every else "No endpoint's circuit is open.", markup=False
            )
            return
        table = people_table("endpoint", "state", "failures", "open until", "cool-down", "deferring", "affiliates")
        for row in rows:
            table.add_row(
                row["endpoint"],
                row["state"],
                str(row["failures"]),
                row["opened_until"] or "",
                "" if row["cool_down_s"] is None else f"{row['cool_down_s']} s",
                f"{row['deferring_s']} s" if row["deferring_s"] else "",
                ", ".join(row["affiliates"]),
            )
        console.print(table)

    ops.emit(rows, show)
