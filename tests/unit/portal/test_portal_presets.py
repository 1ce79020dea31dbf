"""The portal's preset picker: a postback on a tracker preset, its click ID field, the reversal
events and status words, saved as `self_service` says and refused in `affiliate put`'s words;
its live preview is, byte for byte, what ingest queues for the same conversion."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

import pytest
from fakes import FakeConversionLog
from unit.portal.portal_support import A, Portal, build_portal
from unit.portal.test_portal_handler import call, entered, event

from postback_relay.domain.config import SelfService, dump_config, parse_config
from postback_relay.domain.conversion import Conversion
from postback_relay.domain.errors import ConfigError
from postback_relay.domain.events import Event
from postback_relay.domain.presets import PRESETS
from postback_relay.services.ingest import IngestService
from postback_relay.services.portal import PostbackEdit, sample_conversion, sample_tracker_values

KEITARO = "https://tracker.acme.example/a1b2c3d/postback"
SAMPLE_SALE = (
    f"{KEITARO}?subid=clickid123&status=sale&payout=7.50&currency=EUR&tid=sample-0001"  # Keitaro's word for sale
)
VOLUUM_REFUSES = "the voluum preset cannot take chargeback: Voluum's postback has no way to reverse a conversion"


def keitaro(events: tuple[str, ...] = ("sale", "chargeback"), **changes: Any) -> list[PostbackEdit]:
    """The form: postback 1 switched to the Keitaro preset, postback 2 as stored, the blank new one."""
    first: dict[str, Any] = {"preset": "keitaro", "click_id": "clickid", "statuses": {}} | changes
    return [
        PostbackEdit(0, KEITARO, events, **first),
        PostbackEdit(1, "https://track.acme.example/lead?cid={clickid}", ("registration",), "89"),
        PostbackEdit(2, "", ()),
    ]


def keitaro_postback(*events: str) -> dict[str, object]:
    """Postback 1 on Keitaro as the submitted config holds it (status word for sale: deposit)."""
    return {
        "events": list(events),
        "url": KEITARO,
        "preset": "keitaro",
        "click_id": "clickid",
        "statuses": {"sale": "deposit"},
        "method": "GET",
    }


def test_picking_a_preset_saves_it_pending_under_approve(portal: Portal) -> None:
    # GIVEN affiliate A (self_service left out: approve), whose postback 1 is a URL template
    session = portal.session()
    # WHEN it picks Keitaro for postback 1, with its click ID field, a reversal and a status word
    outcome = portal.service.save_postbacks(session, keitaro(statuses={"sale": "deposit", "rebill": " "}))
    # THEN the change is pending: it holds the preset postback, the stored config is unchanged
    assert outcome.state == "pending" and outcome.change is not None
    assert outcome.change.config["postbacks"][0] == keitaro_postback("sale", "chargeback")
    assert "+ postback 1, preset: keitaro" in outcome.change.diff
    stored = portal.affiliates.get(A)
    assert stored is not None and stored.config.postbacks[0].preset is None


def test_choosing_no_preset_again_drops_the_preset_and_its_click_id() -> None:
    # GIVEN a postback saved on the Keitaro preset (self_service direct)
    portal = build_portal(SelfService.DIRECT)
    session = portal.session()
    assert portal.service.save_postbacks(session, keitaro()).state == "applied"
    # WHEN the form picks "none" again, with a URL template and the click ID field still chosen
    own = "https://track.acme.example/pb?cid={clickid}"
    form = keitaro(("sale",))
    form[0] = PostbackEdit(0, own, ("sale",), preset="", click_id="clickid", statuses={})
    outcome = portal.service.save_postbacks(session, form)
    # THEN the postback is a URL template again, without preset or click ID field
    assert outcome.state == "applied"
    stored = portal.affiliates.get(A)
    assert stored is not None
    assert (stored.config.postbacks[0].url, stored.config.postbacks[0].preset) == (own, None)
    assert stored.config.postbacks[0].click_id is None


def test_a_preset_that_cannot_take_a_reversal_is_refused_in_affiliate_puts_words(portal: Portal) -> None:
    # GIVEN the form with Voluum (no reversal) subscribed to chargeback
    form = keitaro()
    form[0] = PostbackEdit(0, "https://acme.voluumtrk.com/postback", ("sale", "chargeback"), preset="voluum",
                           click_id="clickid", statuses={})  # fmt: skip
    # AND what `affiliate put` says of the same config
    document = dump_config(portal.affiliates.get(A).config)  # type: ignore[union-attr]
    document["postbacks"] = [{"events": ["sale", "chargeback"], "url": form[0].url, "preset": "voluum",
                              "click_id": "clickid"}]  # fmt: skip
    with pytest.raises(ConfigError) as put:
        parse_config(document, allow_loopback=True)  # the fake stack, as the portal under test
    assert put.value.errors == [("postbacks.0.events", VOLUUM_REFUSES)]
    # WHEN the affiliate saves it, and previews it
    session = portal.session()
    outcome = portal.service.save_postbacks(session, form)
    preview = portal.service.preview(session, form)
    # THEN nothing is submitted; the events field carries the same message, and so does the preview
    assert outcome.state == "refused" and portal.store.listed() == []
    assert outcome.fields == {"pb-0-events": VOLUUM_REFUSES}
    assert outcome.problems == (f"postback 1, events: {VOLUUM_REFUSES}",)
    assert [(line.index, line.url, line.problem) for line in preview] == [
        (0, None, f"postback 1, events: {VOLUUM_REFUSES}")
    ]


def test_the_preset_preview_is_what_ingest_queues_byte_for_byte() -> None:
    # GIVEN postback 1 saved on the Keitaro preset, with sale and chargeback (self_service direct)
    portal = build_portal(SelfService.DIRECT)
    session = portal.session()
    form = keitaro(statuses={"sale": "deposit"})
    preview = {line.event: line.url for line in portal.service.preview(session, form) if line.index == 0}
    assert portal.service.save_postbacks(session, form).state == "applied"
    stored = portal.affiliates.get(A)
    assert stored is not None
    config, spec = stored.config, stored.config.postbacks[0]
    # WHEN ingest takes the preview's sample sale (its tracker in a network link), then the
    # sample chargeback of it
    values = sample_tracker_values(config)
    tracker = "-".join(values[name] for name in config.tracker.fields)
    link = (
        "http://www.espace-plus.net/redir/rotation_redir.php?id_rotation=89&e=0&w=0"
        f"&id={A}&e=1&w=0&tracker={quote(f'trID_{tracker}_trID', safe='')}"
    )
    log = FakeConversionLog()
    ingest = IngestService(portal.affiliates, log, clock=portal.clock.at)
    queued: dict[str, str] = {}
    for kind in (Event.SALE, Event.CHARGEBACK):
        sample = sample_conversion(config, spec, kind, portal.clock.at())
        data: dict[str, Any] = sample.model_dump(mode="json", exclude_none=True, exclude={"amount_text", "payout_text"})
        data.pop("tracker")
        data.pop("affiliate_id")
        if kind is Event.SALE:
            data["link"] = link
        (answer,) = ingest.ingest([Conversion.model_validate(data)]).answers
        assert answer.result.outcome.value == "queued", answer.result.reason
        queued[kind.value] = log.outbox[-1].url
    # THEN the preview showed, byte for byte, the URLs ingest queued (Keitaro's reversal by the
    # original's tid, with its word for a reversal)
    assert preview["sale"] == queued["sale"] == SAMPLE_SALE.replace("status=sale", "status=deposit")
    assert preview["chargeback"] is not None
    assert preview["chargeback"].encode("utf-8") == queued["chargeback"].encode("utf-8")
    assert "status=rejected" in queued["chargeback"] and queued["chargeback"].endswith("tid=sample-0001")


def test_the_page_offers_every_preset_and_the_form_saves_one(portal: Portal) -> None:
    # GIVEN A's page
    cookie = entered(portal)
    page = call(portal, event("GET", "/portal/home", cookie=cookie))["body"]
    # THEN each postback has a labelled preset picker with "none" and the 11 presets, a click ID
    # field picker of the tracker's fields, and a status word per event
    assert page.count('<label for="pb-0-preset">Tracker preset</label>') == 1
    options = page.split('id="pb-0-preset"', 1)[1].split("</select>", 1)[0]
    assert options.count("<option") == 1 + len(PRESETS) == 12
    assert all(f'value="{name}"' in options for name in PRESETS)
    # AND picking Voluum says, in `affiliate put`'s words, that it takes no reversal
    voluum = options.split('value="voluum"', 1)[1].split(">", 1)[0]
    assert f"Refused: {VOLUUM_REFUSES}.".replace("'", "&#39;") in voluum
    assert '<label for="pb-0-click_id">' in page and '<label for="pb-0-status-refund">' in page
    assert 'id="pb-0-ev-chargeback"' in page and 'id="pb-0-ev-refund"' in page
    # WHEN the form sends postback 1 on Keitaro
    csrf = portal.service.csrf(portal.service.session(cookie))
    form = {
        "csrf": csrf,
        "count": "2",
        "pb-0-preset": "keitaro",
        "pb-0-url": KEITARO,
        "pb-0-click_id": "clickid",
        "pb-0-events": ["sale", "refund"],
        "pb-0-status-sale": "deposit",
        "pb-1-preset": "",
        "pb-1-url": "https://track.acme.example/lead?cid={clickid}",
        "pb-1-events": "registration",
    }
    answer = call(portal, event("POST", "/portal/postbacks", form=urlencode(form, doseq=True), cookie=cookie))
    # THEN it is pending, with the preset postback as sent
    assert answer["statusCode"] == 303 and "notice=pending" in answer["headers"]["Location"]
    (change,) = portal.store.listed()
    assert change.config["postbacks"][0] == keitaro_postback("sale", "refund")
