"""`postback preview`: the postbacks a conversion would produce, sent nowhere."""

from __future__ import annotations

import json
from collections.abc import Callable
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
    # THEN the registration postback for offer 90 is shown
    assert result.exit_code == 0, result.stderr
    assert "https://track.acme.example/lead?cid=c77&offer=90" in result.stdout


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
