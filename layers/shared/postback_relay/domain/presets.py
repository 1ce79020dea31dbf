"""Tracker presets (contract section 3): a postback that names its tracker gives the tracker's
endpoint and the tracker field holding the tracker's click ID; the preset writes the query in
that tracker's documented parameter names, with its status words.

Each preset was built from its tracker's own postback documentation, named in `source` with
the date it was read. What a preset cannot do is said, never guessed: a tracker whose postback
cannot reverse a conversion refuses a config subscribing it to `chargeback` or `refund`, with
the reason; a tracker that reverses on another endpoint (Everflow) says so in `reversal_path`.

A preset's query is a list of (parameter, value template); `{click}` stands for the macro of
the postback's `click_id` field. Reversals (`chargeback`, `refund`) use `reversal_query`, so a
tracker that identifies the reversed conversion by its transaction gets the original's ID.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from postback_relay.domain.events import REVERSALS, Event

CLICK = "{click}"
NO_REVERSAL = "postback has no way to reverse a conversion"

type Query = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Preset:
    """One tracker's postback, as its documentation describes it."""

    name: str
    tracker: str  # the product's name, for people
    source: str  # the documentation page(s) it follows, and when they were read
    example_endpoint: str  # what `url` looks like for this tracker (no query unless noted)
    query: Query  # for every event it takes but reversals
    statuses: Mapping[Event, str] = field(default_factory=dict)  # {status}; absent: the event's name
    known_statuses: frozenset[str] = frozenset()  # the words the tracker's docs name (drift test)
    reversal_query: Query | None = None  # None: cannot take chargeback or refund
    reversal_path: str | None = None  # reversals go to this path on the same host
    cannot: Mapping[Event, str] = field(default_factory=dict)  # event -> why it cannot take it
    expect_body: str | None = None  # what the tracker answers on success, when it says
    note: str = ""  # what a person setting it up must know

    def query_for(self, event: Event) -> Query:
        if event in REVERSALS:
            if self.reversal_query is None:
                raise ValueError(f"{self.name} cannot take {event.value}")
            return self.reversal_query
        return self.query

    def refusal(self, event: Event) -> str | None:
        """Why this preset cannot take `event`, or None."""
        if event in self.cannot:
            return self.cannot[event]
        if event in REVERSALS and self.reversal_query is None:
            return f"{self.tracker}'s {NO_REVERSAL}"
        return None

    def refusal_message(self, event: Event) -> str | None:
        """Why a postback of this preset subscribed to `event` is refused, as `affiliate put`
        (and the portal) say it; None when the preset takes the event."""
        reason = self.refusal(event)
        return None if reason is None else f"the {self.name} preset cannot take {event.value}: {reason}"

    @property
    def refused_events(self) -> list[Event]:
        return [event for event in Event if self.refusal(event) is not None]


def _statuses(**words: str) -> Mapping[Event, str]:
    return MappingProxyType({Event(name): word for name, word in words.items()})


_PRESETS = (
    Preset(
        name="voluum",
        tracker="Voluum",
        source=(
            "https://doc.voluum.com/en/tracking_conversions_postback.html and "
            "https://doc.voluum.com/article/parameters-in-postback-urls, read 2026-12-06"
        ),
        example_endpoint="https://acme.voluumtrk.com/postback",
        query=(("cid", CLICK), ("payout", "{payout}"), ("txid", "{transaction_id}"), ("currency", "{currency}")),
        note=(
            "cid is required; payout, txid and currency are optional. Voluum's custom conversion "
            "types (et) are the account's own names: write a URL template to send them."
        ),
    ),
    Preset(
        name="keitaro",
        tracker="Keitaro",
        source="https://docs.keitaro.io/en/conversions/postback.html, read 2026-12-06",
        example_endpoint="https://tracker.acme.example/a1b2c3d/postback",
        query=(
            ("subid", CLICK),
            ("status", "{status}"),
            ("payout", "{payout}"),
            ("currency", "{currency}"),
            ("tid", "{transaction_id}"),
        ),
        # Keitaro finds the conversion to reject by its subid and tid: the original's ID.
        reversal_query=(
            ("subid", CLICK),
            ("status", "{status}"),
            ("payout", "{payout}"),
            ("currency", "{currency}"),
            ("tid", "{original_transaction_id}"),
        ),
        statuses=_statuses(
            registration="lead", trial="lead", sale="sale", rebill="rebill", chargeback="rejected", refund="rejected"
        ),
        known_statuses=frozenset({"lead", "sale", "rejected", "rebill"}),
        note="subid is required; a rebill needs the offer's Rebill setting and a unique tid.",
    ),
    Preset(
        name="binom",
        tracker="Binom",
        source="https://docs.binom.org/postback-url.php, read 2026-12-06",
        example_endpoint="https://tracker.acme.example/click.php",
        query=(("cnv_id", CLICK), ("payout", "{payout}"), ("cnv_status", "{status}"), ("cnv_currency", "{currency}")),
        # Binom updates the click's conversion: the same cnv_id with the reversal's status.
        reversal_query=(
            ("cnv_id", CLICK),
            ("payout", "0"),
            ("cnv_status", "{status}"),
            ("cnv_currency", "{currency}"),
        ),
        statuses=_statuses(
            registration="signup", trial="signup", sale="approve", rebill="rebill", chargeback="reject", refund="reject"
        ),
        known_statuses=frozenset({"signup", "checkout", "approve", "reject", "rebill"}),
        note="cnv_id is required; cnv_status is free text in Binom (the docs name signup, checkout, approve, reject).",
    ),
    Preset(
        name="redtrack",
        tracker="RedTrack",
        source=(
            "https://help.redtrack.io/knowledgebase/kb/basic-setup-9785/supported-dynamic-parameters/ and "
            "https://docs.redtrack.io/knowledgebase/tracking-event-types/, read 2026-12-06"
        ),
        example_endpoint="https://acme.rdtk.io/postback",
        query=(("clickid", CLICK), ("sum", "{payout}"), ("status", "{status}"), ("currency", "{currency}")),
        reversal_query=(("clickid", CLICK), ("sum", "{payout}"), ("status", "{status}"), ("currency", "{currency}")),
        statuses=_statuses(
            registration="Pending",
            trial="Pending",
            sale="Approved",
            rebill="Approved",
            chargeback="Declined",
            refund="Declined",
        ),
        known_statuses=frozenset({"Other", "Approved", "Pending", "Declined"}),
        note="clickid is required; RedTrack's four statuses are Other, Approved, Pending and Declined.",
    ),
    Preset(
        name="bemob",
        tracker="BeMob",
        source=(
            "https://help.bemob.com/docs/using-postback-statuses and "
            "https://docs.bemob.com/en/postbacks-for-selected-statuses, read 2026-12-06"
        ),
        example_endpoint="https://acme.bemobtrk.com/postback",
        query=(("cid", CLICK), ("payout", "{payout}"), ("txid", "{transaction_id}"), ("status", "{status}")),
        reversal_query=(
            ("cid", CLICK),
            ("payout", "{payout}"),
            ("txid", "{original_transaction_id}"),
            ("status", "{status}"),
        ),
        statuses=_statuses(
            registration="new",
            trial="new",
            sale="approved",
            rebill="approved",
            chargeback="chargeback",
            refund="declined",
        ),
        known_statuses=frozenset({"new", "approved", "declined", "chargeback"}),
        note=(
            "Tick 'Use conversion statuses' in BeMob's affiliate network settings and enter new, approved, "
            "declined and chargeback in its New, Approved, Declined and Chargeback fields."
        ),
    ),
    Preset(
        name="peerclick",
        tracker="PeerClick",
        source="https://help-center.peerclick.com/en/articles/10512589, read 2026-12-06",
        example_endpoint="https://pstb.peerclick.com/postback",
        query=(
            ("cid", CLICK),
            ("payout", "{payout}"),
            ("status", "{status}"),
            ("txid", "{transaction_id}"),
            ("currency", "{currency}"),
        ),
        note="cid is required; status is the conversion type, the event's name unless mapped with statuses.",
    ),
    Preset(
        name="funnelflux",
        tracker="FunnelFlux Pro",
        source="https://help.funnelflux.pro/en/article/tracking-conversions-1vtfnp5/, read 2026-12-06",
        example_endpoint="https://track.acme.example/pb/",
        query=(("hit", CLICK), ("tx", "{transaction_id}"), ("rev", "{payout}")),
        note="hit (FunnelFlux's hit ID, its {hit} token) is required; a conversion is removed by hand only.",
    ),
    Preset(
        name="everflow",
        tracker="Everflow",
        source=(
            "https://helpdesk.everflow.io/customer/understanding-tracking-with-server-to-server-postbacks, "
            "https://helpdesk.everflow.io/customer/accessing-editing-s2s-postback-urls and "
            "https://helpdesk.everflow.io/customer/reversal-postback-setup-for-processing-canceled-transactions, "
            "read 2026-12-06"
        ),
        example_endpoint="https://www.acme-tracking.example/?nid=123",
        query=(("transaction_id", CLICK), ("amount", "{amount}"), ("order_id", "{transaction_id}")),
        # Everflow reverses on its /reversal endpoint, by the order ID the conversion carried.
        reversal_path="/reversal",
        reversal_query=(("order_id", "{original_transaction_id}"),),
        note=(
            "Give the tracking domain with your network ID as url (https://<domain>/?nid=<nid>); transaction_id "
            "is Everflow's click ID. Reversals go to https://<domain>/reversal?order_id=<the original's ID>."
        ),
    ),
    Preset(
        name="cake",
        tracker="CAKE",
        source="https://support.getcake.com/support/solutions/articles/5000546124-conversion-pixel-variables, "
        "read 2026-12-06",
        example_endpoint="https://track.acme.example/p.ashx?o=42&e=1",
        query=(("f", "pb"), ("r", CLICK), ("t", "{transaction_id}"), ("p", "{payout}")),
        note=(
            "Give the pixel's endpoint with its offer (o) and event (e) as url; r is CAKE's request ID. "
            "CAKE changes a conversion through its API, not its postback."
        ),
    ),
    Preset(
        name="tune",
        tracker="TUNE (HasOffers)",
        source="https://support.tune.com/hc/en-us/articles/4413247665431-Receiving-Conversions-via-Postback-URL, "
        "read 2026-12-06",
        example_endpoint="https://acme.go2cloud.org/aff_lsr?offer_id=26",
        query=(("transaction_id", CLICK), ("amount", "{payout}"), ("adv_sub", "{transaction_id}")),
        expect_body="success=true",
        note=(
            "transaction_id is TUNE's click session ID; TUNE answers success=true, or success=false with a "
            "reason (the relay counts only success=true as delivered)."
        ),
    ),
    Preset(
        name="adsbridge",
        tracker="AdsBridge",
        source="https://www.adsbridge.com/guide/user-menu/ (Tracking pixels: S2S postback), read 2026-12-06",
        example_endpoint="https://acme.adsbtrk.com/trackpixel/track",
        query=(("tid", CLICK),),
        note=(
            "tid is AdsBridge's click ID; the page read names no other parameter, so none is sent: "
            "add one with a URL template if your AdsBridge account shows it."
        ),
    ),
)

PRESETS: Mapping[str, Preset] = MappingProxyType({preset.name: preset for preset in _PRESETS})


def preset_query_text(query: Query, click_macro: str) -> str:
    """The query as a URL template: `{click}` becomes the click ID field's macro."""
    return "&".join(f"{name}={value.replace(CLICK, '{' + click_macro + '}')}" for name, value in query)
