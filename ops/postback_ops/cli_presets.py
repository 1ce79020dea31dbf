"""`postback presets`: the tracker presets, each with the URL it produces for a sample sale."""

from datetime import UTC, datetime
from typing import Any

import typer
from rich.console import Console

from postback_ops.cli_context import handle_errors, ops_of, people_table
from postback_relay.domain.config import parse_config
from postback_relay.domain.conversion import Conversion
from postback_relay.domain.events import REVERSALS, Event
from postback_relay.domain.postbacks import postback_messages
from postback_relay.domain.presets import PRESETS, Preset

SAMPLE_CLICK = "c123"
SAMPLE_TRACKER = {"affid": "a1", "transid": "T9", "clickid": SAMPLE_CLICK, "whateverid": "x"}


def example_url(preset: Preset, event: Event) -> str:
    """The URL the preset produces for a sample conversion of `event` (sent nowhere), through
    the one render path ingest uses."""
    config = parse_config(
        {
            "affiliate_id": "1234567",
            "name": "example",
            "postbacks": [
                {"events": [event.value], "preset": preset.name, "url": preset.example_endpoint, "click_id": "clickid"}
            ],
        }
    )
    reversal = event in REVERSALS
    conversion = Conversion.model_validate(
        {
            "transaction_id": "CB-000123" if reversal else "T-000123",
            "event": event.value,
            "offer": {"id": "89", "type": "revshare"},
            "amount": "25.00",
            "payout": "7.50",
            "currency": "EUR",
            "tracker": "trID_a1-T9-c123-x_trID",
            "affiliate_id": "1234567",
            "original_transaction_id": "T-000123" if reversal else None,
            "occurred_at": "2026-11-25T12:00:00Z",
        }
    )
    (message,) = postback_messages(conversion, config, SAMPLE_TRACKER, created_at=datetime.now(UTC))
    return message.url


def preset_rows() -> list[dict[str, Any]]:
    rows = []
    for preset in PRESETS.values():
        reversal = next((e for e in (Event.CHARGEBACK, Event.REFUND) if preset.refusal(e) is None), None)
        rows.append(
            {
                "name": preset.name,
                "tracker": preset.tracker,
                "example_url": example_url(preset, Event.SALE),
                "reversal_example_url": example_url(preset, reversal) if reversal is not None else None,
                "statuses": {event.value: preset.statuses.get(event, event.value) for event in Event},
                "cannot_take": {event.value: preset.refusal(event) for event in preset.refused_events},
                "source": preset.source,
                "note": preset.note,
            }
        )
    return rows


@handle_errors
def presets(ctx: typer.Context) -> None:
    """List the tracker presets: each with the URL it produces for a sample sale (and reversal),
    its status words, and the events it cannot take."""
    ops = ops_of(ctx)
    rows = preset_rows()

    def show(console: Console) -> None:
        table = people_table("preset", "example URL (a sale)", "statuses", "cannot take")
        for row in rows:
            words = ", ".join(f"{event} {word}" for event, word in row["statuses"].items() if event != word)
            cannot = "; ".join(f"{event}: {why}" for event, why in row["cannot_take"].items())
            table.add_row(row["name"], row["example_url"], words or "the event's name", cannot or "-")
        console.print(table)

    ops.emit(rows, show)
