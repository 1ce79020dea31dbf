"""`postback preview`: the postbacks a conversion would produce, sent nowhere."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fakes.cli import FakeBackends
from typer.testing import Result

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "affiliates"
LINK = (
    "http://www.espace-plus.net/redir/rotation_redir.php?id_rotation=89&e=0&w=0&id=1234567&e=1&w=0"
    "&tracker=trID_a1-T9-c123-x_trID"
)


@pytest.fixture
def acme(postback: Callable[..., Result]) -> None:
    """GIVEN the revshare example affiliate stored."""
    assert postback("affiliate", "put", str(EXAMPLES / "revshare-default.yaml")).exit_code == 0


@pytest.mark.usefixtures("acme")
def test_preview_renders_the_postback_a_sale_would_fire(
    postback: Callable[..., Result], backends: FakeBackends
) -> None:
    # WHEN ops preview a sale through the affiliate's link
    result = postback(
        "--json", "preview", "1234567", "--event", "sale", "--link", LINK, "--amount", "25.00", "--currency", "EUR"
    )
    # THEN the URL carries the tracker's click ID, the amount and the offer from the link; nothing is queued
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["tracker"] == {"affid": "a1", "transid": "T9", "clickid": "c123", "whateverid": "x"}
    assert data["postbacks"] == [
        {
            "index": 0,
            "n": 1,
            "method": "GET",
            "url": "https://track.acme.example/postback?cid=c123&payout=25.00&cur=EUR&ev=sale&offer=89",
            "body": None,
            "content_type": None,
        }
    ]
    assert backends.queue.sent == []


@pytest.mark.usefixtures("acme")
def test_preview_from_a_tracker_alone_with_an_offer(postback: Callable[..., Result]) -> None:
    # WHEN the platform would send the tracker instead of the link
    result = postback(
        "preview", "1234567", "--event", "registration", "--tracker", "trID_a1-T9-c77-x_trID", "--offer-id", "90"
    )
    # THEN the registration postback for offer 90 is shown, numbered as people count: the
    # config's second postback is 2 (not its list index 1)
    assert result.exit_code == 0, result.stderr
    assert "https://track.acme.example/lead?cid=c77&offer=90" in result.stdout
    (row,) = [line for line in result.stdout.splitlines() if "lead?cid=c77" in line]
    assert row.split("│")[1].strip() == "2", row


@pytest.mark.usefixtures("acme")
def test_preview_says_when_no_postback_fires(postback: Callable[..., Result]) -> None:
    # WHEN the event is not subscribed for this offer (registration: offers 89 and 90 only)
    result = postback("preview", "1234567", "--event", "registration", "--link", LINK.replace("=89", "=91"))
    # THEN the answer says so, and succeeds
    assert result.exit_code == 0, result.stderr
    assert "No postback of affiliate 1234567 fires for registration on offer 91." in result.stdout


@pytest.mark.usefixtures("acme")
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--link", LINK.replace("c123", "#clickId#")], "placeholder_unfilled"),
        (["--link", LINK.replace("id=1234567", "id=555")], "affiliate 555"),
        (["--link", LINK, "--amount", "1e3"], "amount"),
        (["--link", "not a link"], "The link cannot be read"),
        ([], "Give exactly one of --link or --tracker."),
    ],
)
def test_preview_refuses_what_a_conversion_could_not_carry(
    postback: Callable[..., Result], args: list[str], expected: str
) -> None:
    # WHEN the link, the tracker or the amount is wrong
    result = postback("preview", "1234567", "--event", "sale", *args)
    # THEN it exits 2 saying why
    assert result.exit_code == 2
    assert expected in result.stderr


def test_preview_of_an_unknown_affiliate_exits_4(postback: Callable[..., Result]) -> None:
    result = postback("preview", "404", "--event", "sale", "--link", LINK)
    assert result.exit_code == 4
    assert "No affiliate 404" in result.stderr


def test_preview_refuses_what_ingest_would_refuse_with_ingests_reason(
    postback: Callable[..., Result], backends: FakeBackends
) -> None:
    # GIVEN a config saved on the local stack (loopback allowed there) pointing at this machine
    from fakes import FakeConversionLog, ingest_config

    from postback_relay.domain.conversion import Conversion
    from postback_relay.services.ingest import IngestService

    local = ingest_config(postbacks=[{"events": ["sale"], "url": "http://127.0.0.1:9/pb?cid={clickid}"}])
    backends.affiliates.put(local, expected_version=None, updated_by="ops")
    # WHEN ops preview a sale against a deployed stack
    result = postback("--json", "preview", "1234567", "--event", "sale", "--link", LINK, "--amount", "25.00")
    # THEN no URL is promised: the preview says it is refused, and why
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["postbacks"] == []
    assert data["refused"]["kind"] == "unsafe_url"
    assert "Postback 1 renders to a URL that may not be called" in data["refused"]["reason"]
    # AND the reason is the one a deployed ingest records for the same conversion
    log = FakeConversionLog()
    ingest = IngestService(backends.affiliates, log, clock=lambda: datetime.now(UTC))
    sale = Conversion.model_validate(
        {
            "transaction_id": "preview-transaction",
            "event": "sale",
            "offer": {"id": "89", "type": "revshare"},
            "amount": "25.00",
            "currency": "EUR",
            "link": LINK,
            "occurred_at": "2026-11-25T12:00:00Z",
        }
    )
    (answer,) = ingest.ingest([sale]).answers
    assert answer.result.reason == data["refused"]["reason"]
    assert log.outbox == []
    # AND the words are shown to a person too
    shown = postback("preview", "1234567", "--event", "sale", "--link", LINK)
    assert "Ingest would refuse" in shown.stdout


@pytest.mark.usefixtures("acme")
def test_preview_renders_a_payout_and_a_conversion_without_money(postback: Callable[..., Result]) -> None:
    # WHEN ops preview a registration without money, and a sale with a payout
    lead = postback("--json", "preview", "1234567", "--event", "registration", "--link", LINK, "--without-money")
    sale = postback("--json", "preview", "1234567", "--event", "sale", "--link", LINK, "--payout", "7.50")
    # THEN both render (the sample config uses {amount}: the sale's is the default 0.00)
    assert lead.exit_code == 0, lead.stderr
    assert json.loads(lead.stdout)["postbacks"][0]["url"] == "https://track.acme.example/lead?cid=c123&offer=89"
    assert sale.exit_code == 0, sale.stderr
    assert "payout=0.00" in json.loads(sale.stdout)["postbacks"][0]["url"]
    # AND a bad payout is refused naming it
    bad = postback("preview", "1234567", "--event", "sale", "--link", LINK, "--payout", "-3")
    assert bad.exit_code != 0
    assert "payout" in bad.stdout + bad.stderr
