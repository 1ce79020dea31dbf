"""The corpus (issue 23's done-means): every preset by every event it takes by sample conversions
(with and without money, UTF-8 values, separators in values). For each, what `postback
preview` shows is the message ingest queues, byte for byte: both go through the one render
path, and this holds them to it."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest
from fakes import FakeConversionLog
from fakes.cli import FakeBackends
from typer.testing import Result

from postback_relay.domain.config import parse_config
from postback_relay.domain.conversion import MONEY_EVENTS, Conversion
from postback_relay.domain.events import REVERSALS, Event
from postback_relay.domain.presets import PRESETS
from postback_relay.services.ingest import IngestService

AFFILIATE = "1234567"
NOW = datetime(2026, 11, 25, 12, 0, 5, tzinfo=UTC)
# The click ID field takes the rest, so that a value may hold the separator.
VALUES = {
    "plain": "a1-T9-x-c123",
    "utf8": "aé1-T9-日本-clé-ü",
    "separators": "a1-T9-x-c&x=1?y/+ %20#z;,'\"",
}
SAMPLES = [(name, money) for name in VALUES for money in (True, False)]


def network_link(values: str) -> str:
    tracker = quote(f"trID_{values}_trID", safe="")
    return f"http://www.espace-plus.net/redir/rotation_redir.php?id_rotation=89&e=0&w=0&id={AFFILIATE}&e=1&w=0&tracker={tracker}"


def config_for(preset: str) -> Any:
    events = [e.value for e in Event if PRESETS[preset].refusal(e) is None]
    return parse_config(
        {
            "affiliate_id": AFFILIATE,
            "name": "Corpus",
            "tracker": {"fields": ["affid", "transid", "whateverid", "clickid"], "separator": "-", "rest": "clickid"},
            "postbacks": [
                {"events": events, "preset": preset, "url": PRESETS[preset].example_endpoint, "click_id": "clickid"}
            ],
        }
    )


def money_of(event: Event, money: bool) -> dict[str, str]:
    if money or event in MONEY_EVENTS:
        return {"amount": "25.00", "payout": "7.50", "currency": "EUR"}
    return {}


CASES = [
    (preset, event, sample, money)
    for preset in PRESETS
    for event in Event
    if PRESETS[preset].refusal(event) is None
    for sample, money in SAMPLES
    if money or event not in MONEY_EVENTS
]


@pytest.mark.parametrize(
    ("preset", "event", "sample", "money"),
    CASES,
    ids=[f"{p}-{e.value}-{s}-{'money' if m else 'none'}" for p, e, s, m in CASES],
)
def test_preview_shows_byte_for_byte_what_ingest_queues(
    postback: Callable[..., Result], backends: FakeBackends, preset: str, event: Event, sample: str, money: bool
) -> None:
    # GIVEN an affiliate on this preset, stored where both preview and ingest read it
    backends.affiliates.put(config_for(preset), expected_version=None, updated_by="ops")
    link = network_link(VALUES[sample])
    amounts = money_of(event, money)
    # WHEN ingest takes the conversion (a reversal: after its original, and without a link)
    log = FakeConversionLog()
    ingest = IngestService(backends.affiliates, log, clock=lambda: NOW)
    base: dict[str, Any] = {"offer": {"id": "89", "type": "revshare"}, "occurred_at": "2026-11-25T12:00:00Z"}
    if event in REVERSALS:
        original = Conversion.model_validate(
            {**base, "transaction_id": "ORIG-1", "event": "sale", "link": link, **money_of(Event.SALE, True)}
        )
        ingest.ingest([original])
        data = {"transaction_id": "TX-1", "event": event.value, "original_transaction_id": "ORIG-1", **amounts}
        data["occurred_at"] = base["occurred_at"]
    else:
        data = {**base, "transaction_id": "TX-1", "event": event.value, "link": link, **amounts}
    (answer,) = ingest.ingest([Conversion.model_validate(data)]).answers
    assert answer.result.outcome.value == "queued", answer.result.reason
    queued = log.outbox[-1]
    # AND ops preview the same conversion
    args = ["--json", "preview", AFFILIATE, "--event", event.value, "--link", link, "--offer-id", "89"]
    args += ["--transaction-id", "TX-1"]
    if amounts:
        args += ["--amount", amounts["amount"], "--payout", amounts["payout"], "--currency", amounts["currency"]]
    else:
        args += ["--without-money"]
    if event in REVERSALS:
        args += ["--original-transaction-id", "ORIG-1"]
    result = postback(*args)
    # THEN the preview is the queued message, byte for byte
    assert result.exit_code == 0, result.stderr + result.stdout
    (shown,) = json.loads(result.stdout)["postbacks"]
    assert (shown["method"], shown["url"], shown["body"], shown["content_type"]) == (
        queued.method.value,
        queued.url,
        queued.body,
        queued.content_type,
    )
    assert shown["url"].encode("utf-8") == queued.url.encode("utf-8")


def test_the_corpus_covers_every_preset_and_every_event_a_preset_takes() -> None:
    # THEN each preset appears, each with every event it takes, with money and without where allowed
    assert {p for p, *_ in CASES} == set(PRESETS)
    assert {(p, e) for p, e, *_ in CASES} == {(p, e) for p in PRESETS for e in Event if PRESETS[p].refusal(e) is None}
    assert len(CASES) > 150
