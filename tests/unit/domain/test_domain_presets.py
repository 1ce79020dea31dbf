"""Tracker presets (contract section 3): each preset's URL, parsed the way its tracker's own
postback documentation describes it. The expectations below are written from the trackers'
pages (named in each preset's `source`), not read from domain.presets: a preset that drifts
(a parameter renamed, a status word the tracker does not know) fails here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from postback_relay.domain.config import AffiliateConfig, load_config_text, parse_config
from postback_relay.domain.conversion import Conversion
from postback_relay.domain.errors import ConfigError
from postback_relay.domain.events import REVERSALS, Event
from postback_relay.domain.postbacks import postback_messages
from postback_relay.domain.presets import PRESETS

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples" / "presets"
NOW = datetime(2026, 11, 25, 12, 0, 5, tzinfo=UTC)
CLICK = "c123"
TRACKER = {"affid": "a1", "transid": "T9", "clickid": CLICK, "whateverid": "x"}


@dataclass(frozen=True)
class Documented:
    """What a tracker's postback documentation says a postback must look like."""

    click: str  # the parameter carrying the tracker's click ID (required)
    path: str | None = None  # the endpoint path the tracker documents, when it fixes one
    status: str | None = None  # the parameter carrying the status, if the preset sends one
    statuses: frozenset[str] = frozenset()  # the words the tracker knows
    transaction: str | None = None  # the parameter carrying the network's transaction ID
    money: str | None = None  # the parameter carrying the affiliate's payout
    reversal_transaction: str | None = None  # a reversal names its original here
    reversal_path: str | None = None  # reversals go to this path
    fixed: tuple[str, ...] = ()  # parameters the endpoint itself carries (nid, o, e, offer_id)


DOCUMENTED: dict[str, Documented] = {
    # doc.voluum.com: cid (required), payout, txid, currency, et; no reversal.
    "voluum": Documented(click="cid", path="/postback", transaction="txid", money="payout"),
    # docs.keitaro.io: subid (required), status lead/sale/rejected/rebill, payout, currency, tid.
    "keitaro": Documented(
        click="subid",
        status="status",
        statuses=frozenset({"lead", "sale", "rejected", "rebill"}),
        transaction="tid",
        money="payout",
        reversal_transaction="tid",
    ),
    # docs.binom.org: click.php?cnv_id=...&payout=...&cnv_status=... (signup, checkout, approve, reject).
    "binom": Documented(
        click="cnv_id",
        path="/click.php",
        status="cnv_status",
        statuses=frozenset({"signup", "checkout", "approve", "reject", "rebill"}),
        money="payout",
    ),
    # RedTrack: /postback?clickid=...; statuses Other, Approved, Pending, Declined; sum is the payout.
    "redtrack": Documented(
        click="clickid",
        path="/postback",
        status="status",
        statuses=frozenset({"Other", "Approved", "Pending", "Declined"}),
        money="sum",
    ),
    # BeMob: /postback?cid=...&payout=...&txid=...&status=... with New/Approved/Declined/Chargeback fields.
    "bemob": Documented(
        click="cid",
        path="/postback",
        status="status",
        statuses=frozenset({"new", "approved", "declined", "chargeback"}),
        transaction="txid",
        money="payout",
        reversal_transaction="txid",
    ),
    # PeerClick: /postback?cid=... (required), payout, status, txid, currency.
    "peerclick": Documented(click="cid", path="/postback", status="status", transaction="txid", money="payout"),
    # FunnelFlux Pro: /pb/?hit=...&tx=...&rev=...
    "funnelflux": Documented(click="hit", path="/pb/", transaction="tx", money="rev"),
    # Everflow: /?nid=...&transaction_id=<click>; reversal: /reversal?order_id=...
    "everflow": Documented(
        click="transaction_id",
        fixed=("nid",),
        transaction="order_id",
        reversal_transaction="order_id",
        reversal_path="/reversal",
    ),
    # CAKE: p.ashx?o=&e=&f=pb&r=<request id>&t=<transaction>&p=<amount>
    "cake": Documented(click="r", path="/p.ashx", fixed=("o", "e"), transaction="t", money="p"),
    # TUNE: aff_lsr?offer_id=&transaction_id=<click session>&amount=&adv_sub=
    "tune": Documented(
        click="transaction_id", path="/aff_lsr", fixed=("offer_id",), transaction="adv_sub", money="amount"
    ),
    # AdsBridge: /trackpixel/track?tid=<click>
    "adsbridge": Documented(click="tid", path="/trackpixel/track"),
}


def config_for(preset: str, events: list[Event]) -> AffiliateConfig:
    endpoint = PRESETS[preset].example_endpoint
    return parse_config(
        {
            "affiliate_id": "1234567",
            "name": "Preset test",
            "postbacks": [
                {"events": [e.value for e in events], "preset": preset, "url": endpoint, "click_id": "clickid"}
            ],
        }
    )


def conversion(event: Event) -> Conversion:
    data: dict[str, Any] = {
        "transaction_id": f"TX-{event.value}",
        "event": event.value,
        "offer": {"id": "89", "type": "revshare"},
        "amount": "25.00",
        "payout": "7.50",
        "currency": "EUR",
        "tracker": "trID_a1-T9-c123-x_trID",
        "affiliate_id": "1234567",
        "occurred_at": "2026-11-25T12:00:00Z",
    }
    if event in REVERSALS:
        data["original_transaction_id"] = "TX-sale"
    return Conversion.model_validate(data)


def taken(preset: str) -> list[Event]:
    return [event for event in Event if PRESETS[preset].refusal(event) is None]


CASES = [(preset, event) for preset in PRESETS for event in taken(preset)]


def test_every_preset_has_its_documentation_and_the_contracts_list_is_complete() -> None:
    # THEN the presets the contract names exist, each with its documentation's expectations here
    names = {"voluum", "keitaro", "binom", "redtrack", "bemob", "peerclick", "funnelflux", "everflow", "cake", "tune"}
    assert names | {"adsbridge"} <= set(PRESETS)
    assert set(DOCUMENTED) == set(PRESETS)
    for preset in PRESETS.values():
        assert "read 2026-" in preset.source and preset.source.startswith("https://"), preset.name


@pytest.mark.parametrize(("preset", "event"), CASES, ids=[f"{p}-{e.value}" for p, e in CASES])
def test_a_preset_url_parses_the_way_its_tracker_documents(preset: str, event: Event) -> None:
    # GIVEN a postback of this preset and a conversion of an event it takes
    documented = DOCUMENTED[preset]
    (message,) = postback_messages(conversion(event), config_for(preset, [event]), TRACKER, created_at=NOW)
    # WHEN its URL is read as the tracker reads it
    url = urlsplit(message.url)
    query = parse_qs(url.query, keep_blank_values=True)
    # THEN every parameter appears once, the click ID is where the tracker looks for it
    assert all(len(values) == 1 for values in query.values()), query
    reversal = event in REVERSALS
    if not (reversal and documented.reversal_path):  # a reversal endpoint names the order instead
        assert query[documented.click] == [CLICK]
    path = documented.reversal_path if reversal and documented.reversal_path else documented.path
    if path is not None:
        assert url.path == path
    for name in documented.fixed if not reversal or documented.reversal_path is None else ():
        assert name in query, f"{preset}: the endpoint's {name} was lost"
    # AND the status, when sent, is a word the tracker knows
    if documented.status is not None:
        word = query[documented.status][0]
        assert word in documented.statuses or (not documented.statuses and word == event.value), (preset, word)
    # AND the transaction: the original's for a reversal the tracker matches by transaction
    if reversal and documented.reversal_transaction is not None:
        assert query[documented.reversal_transaction] == ["TX-sale"]
    elif documented.transaction is not None:
        assert query[documented.transaction] == [f"TX-{event.value}"]
    # AND the payout, when the tracker takes one, is the affiliate's commission, not the amount
    if documented.money is not None and not (preset == "binom" and reversal):
        assert query[documented.money] == ["7.50"]


def test_everflow_reverses_on_its_reversal_endpoint_without_the_conversion_parameters() -> None:
    # WHEN a chargeback is rendered for an Everflow postback
    (message,) = postback_messages(
        conversion(Event.CHARGEBACK), config_for("everflow", [Event.CHARGEBACK]), TRACKER, created_at=NOW
    )
    # THEN it goes to /reversal on the same host, naming the original's order
    assert message.url == "https://www.acme-tracking.example/reversal?nid=123&order_id=TX-sale"


def test_tune_counts_a_postback_delivered_only_on_its_success_answer() -> None:
    # WHEN a TUNE postback is rendered, THEN its message expects TUNE's success answer
    (message,) = postback_messages(conversion(Event.SALE), config_for("tune", [Event.SALE]), TRACKER, created_at=NOW)
    assert message.expect is not None and message.expect.body_contains == "success=true"


def test_each_preset_has_an_example_config_that_loads() -> None:
    # GIVEN examples/presets/, WHEN each file is loaded, THEN it is valid and uses its own preset
    files = sorted(EXAMPLES.glob("*.yaml"))
    assert {f.stem for f in files} == set(PRESETS)
    for file in files:
        config = load_config_text(file.read_text(encoding="utf-8"), source=file.name)
        assert {p.preset for p in config.postbacks} == {file.stem}


def refused(data_changes: dict[str, Any]) -> list[tuple[str, str]]:
    postback = {"events": ["sale"], "preset": "keitaro", "url": "https://t.example/k/postback", "click_id": "clickid"}
    postback.update(data_changes)
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {"affiliate_id": "1", "name": "A", "postbacks": [{k: v for k, v in postback.items() if v is not None}]}
        )
    return caught.value.errors


def test_a_voluum_postback_subscribed_to_chargeback_is_refused_naming_the_preset_and_why() -> None:
    errors = refused({"preset": "voluum", "events": ["sale", "chargeback"], "url": "https://t.example/postback"})
    assert errors == [
        (
            "postbacks.0.events",
            "the voluum preset cannot take chargeback: Voluum's postback has no way to reverse a conversion",
        )
    ]


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"preset": "kietaro"}, "postbacks.0.preset", "is not a preset"),
        ({"click_id": None}, "postbacks.0.click_id", "names the tracker field"),
        ({"click_id": "cid"}, "postbacks.0.click_id", "is not a field of your tracker"),
        ({"url": "https://t.example/k/postback?x={clickid}"}, "postbacks.0.url", "without macros"),
        ({"url": "https://t.example/k/postback?subid=1"}, "postbacks.0.url", "writes ['subid'] itself"),
        ({"method": "POST"}, "postbacks.0.method", "is a GET"),
        ({"preset": None}, "postbacks.0.click_id", "goes with a preset"),
    ],
)
def test_a_wrong_preset_postback_is_refused_naming_the_field(changes: dict[str, Any], field: str, words: str) -> None:
    errors = refused(changes)
    assert any(path == field and words in reason for path, reason in errors), errors


def test_a_postbacks_own_statuses_win_over_its_presets() -> None:
    # GIVEN a Keitaro postback that calls a registration `reg` (a Keitaro custom status)
    config = parse_config(
        {
            "affiliate_id": "1",
            "name": "A",
            "postbacks": [
                {
                    "events": ["registration"],
                    "preset": "keitaro",
                    "url": "https://t.example/k/postback",
                    "click_id": "clickid",
                    "statuses": {"registration": "reg"},
                }
            ],
        }
    )
    lead = conversion(Event.SALE).model_copy(update={"event": Event.REGISTRATION})
    (message,) = postback_messages(lead, config, TRACKER, created_at=NOW)
    assert "status=reg" in message.url
