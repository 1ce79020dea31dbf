"""Network links: the affiliate, the offer and the tracker, read from messy real links."""

import pytest

from postback_relay.domain.errors import LinkError, TrackerError
from postback_relay.domain.events import OfferType
from postback_relay.domain.links import (
    LinkInfo,
    expect_affiliate,
    is_network_link,
    link_host,
    read_link,
    read_tracker,
)

BASE = "http://www.espace-plus.net/redir/rotation_redir.php"
GUIDE_REVSHARE = (
    f"{BASE}?id_rotation=89&e=0&w=0&id=1234567&e=1&w=0&tracker=trID_#affid#-#TransID#-#clickId#-#whateverId#_trID"
)
GUIDE_PPS = (
    f"{BASE}?id_rotation=89&id=66013&e=1&w=0&;tracker=trID_1234567_#affid#-#TransID#-#clickId#-#whateverId#_trID"
)


def test_revshare_link_names_the_affiliate_in_id() -> None:
    # GIVEN a filled revshare link like the guide's, with the repeated e= parameter
    link = f"{BASE}?id_rotation=89&e=0&w=0&id=1234567&e=1&w=0&tracker=trID_a1-T9-c123-x_trID"
    # WHEN it is read
    info = read_link(link, OfferType.REVSHARE)
    # THEN id is the affiliate and the tracker holds only their values
    assert info == LinkInfo(
        affiliate_id="1234567", offer_id="89", values="a1-T9-c123-x", tracker="trID_a1-T9-c123-x_trID"
    )


def test_pps_link_with_the_guides_stray_semicolon() -> None:
    # GIVEN a filled PPS link with the guide's `&;tracker=`
    link = f"{BASE}?id_rotation=89&id=66013&e=1&w=0&;tracker=trID_1234567_a1-T9-c123-x_trID"
    # WHEN it is read
    info = read_link(link, OfferType.PPS)
    # THEN id is the offer and the affiliate comes first in the tracker
    assert info == LinkInfo(
        affiliate_id="1234567", offer_id="66013", values="a1-T9-c123-x", tracker="trID_1234567_a1-T9-c123-x_trID"
    )


def test_guides_revshare_link_keeps_its_placeholders_for_the_tracker_check() -> None:
    # GIVEN the guide's unfilled revshare link (an unencoded `#` is not a fragment here)
    # WHEN it is read
    info = read_link(GUIDE_REVSHARE, OfferType.REVSHARE)
    # THEN the placeholders reach the tracker, to be reported by parse_tracker
    assert info.values == "#affid#-#TransID#-#clickId#-#whateverId#"


def test_guides_pps_link_is_read() -> None:
    # GIVEN the guide's PPS link
    # WHEN it is read
    info = read_link(GUIDE_PPS, OfferType.PPS)
    # THEN the affiliate comes from the tracker
    assert (info.affiliate_id, info.offer_id) == ("1234567", "66013")


@pytest.mark.parametrize(
    "link",
    [
        "https://www.espace-plus.net/r.php?tracker=trID_a1-T9-c123-x_trID&w=0&id=1234567&id_rotation=89",  # any order
        f"{BASE}?id_rotation=89&id=1234567&tracker=trID%5Fa1-T9-c123-x%5FtrID",  # percent-encoded
        f"{BASE}?id_rotation=89&id=1234567&amp;tracker=trID_a1-T9-c123-x_trID",  # copied from HTML
        f"{BASE}?id_rotation=89&id=1234567&id=1234567&tracker=trID_a1-T9-c123-x_trID",  # harmless repeat
        f"{BASE}?id_rotation=89&id=1234567&TRACKER=trID_a1-T9-c123-x_trID",
        f"  {BASE}?id_rotation=89&id=1234567&tracker=trID_a1-T9-c123-x_trID#top  ",  # fragment, spaces
    ],
)
def test_messy_revshare_links_are_read(link: str) -> None:
    # GIVEN a real-world variant of a revshare link
    # WHEN it is read
    info = read_link(link, OfferType.REVSHARE)
    # THEN the affiliate and the values come out the same
    assert (info.affiliate_id, info.values) == ("1234567", "a1-T9-c123-x")


def test_percent_encoded_values_are_decoded_once() -> None:
    # GIVEN a tracker value with an encoded space
    link = f"{BASE}?id=1234567&tracker=trID_a1-T9-c%20123-x_trID"
    # WHEN it is read
    # THEN the value is what the affiliate's tracker put in
    assert read_link(link, OfferType.REVSHARE).values == "a1-T9-c 123-x"


@pytest.mark.parametrize(
    ("link", "reason"),
    [
        (f"{BASE}?id=1234567", "wrapper_missing"),
        (f"{BASE}?id=1234567&tracker=", "wrapper_missing"),
        (f"{BASE}?id=1234567&tracker=a1-T9-c123-x", "wrapper_missing"),
        (f"{BASE}?id=1234567&tracker=trID_a1-T9-c123-x", "wrapper_missing"),
        (f"{BASE}?id=1234567&tracker=TRID_a1-T9-c123-x_TRID", "wrapper_missing"),
        (f"{BASE}?id=1234567&tracker=trID_a1_trIDjunk", "wrapper_missing"),
        (f"{BASE}?id=1234567&tracker=trID_#affid#-#clickId#", "placeholder_unfilled"),
    ],
)
def test_missing_or_broken_tracker_is_a_tracker_error(link: str, reason: str) -> None:
    # GIVEN a link whose tracker is missing, empty or unwrapped
    # WHEN it is read
    with pytest.raises(TrackerError) as caught:
        read_link(link, OfferType.REVSHARE)
    # THEN the reason says which
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("tracker", "reason"),
    [
        ("trID_a1-T9-c123-x_trID", "wrapper_missing"),  # no affiliate ID prefix
        ("trID__a1-T9_trID", "empty_value"),
        ("trID_#affid#_a1-T9_trID", "placeholder_unfilled"),
        ("trID_#affid#-#TransID#_trID", "placeholder_unfilled"),
    ],
)
def test_pps_tracker_must_start_with_the_affiliate(tracker: str, reason: str) -> None:
    # GIVEN a PPS link whose tracker does not start with `<affiliate id>_`
    link = f"{BASE}?id=66013&tracker={tracker}"
    # WHEN it is read
    with pytest.raises(TrackerError) as caught:
        read_link(link, OfferType.PPS)
    # THEN it is a tracker error with that reason
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("link", "words"),
    [
        ("", "empty"),
        ("not a url", "http or https"),
        ("ftp://www.espace-plus.net/r.php?id=1&tracker=trID_a_trID", "http or https"),
        (f"{BASE}", "no query string"),
        (f"{BASE}?tracker=trID_a1-T9-c123-x_trID", "id=<your affiliate ID>"),
        (f"{BASE}?id=1&id=2&tracker=trID_a1-T9-c123-x_trID", "several different"),
        (f"{BASE}?id=#affid#&tracker=trID_a_trID", "unfilled placeholder #affid#"),
        ("http://[::1/?id=1", "not a valid URL"),
    ],
)
def test_unreadable_revshare_links_are_link_errors(link: str, words: str) -> None:
    # GIVEN a link that names no affiliate or is not a URL
    # WHEN it is read
    with pytest.raises((LinkError, TrackerError)) as caught:
        read_link(link, OfferType.REVSHARE)
    # THEN the error says why
    assert words in caught.value.message


def test_revshare_placeholder_in_id_is_a_link_error() -> None:
    # GIVEN a revshare link whose id was never filled (and is followed by the tracker)
    link = f"{BASE}?tracker=trID_a_trID&id=%23affid%23"
    # WHEN it is read
    with pytest.raises(LinkError) as caught:
        read_link(link, OfferType.REVSHARE)
    # THEN the placeholder is named
    assert "#affid#" in caught.value.message


def test_read_tracker_revshare_uses_the_conversions_affiliate() -> None:
    # GIVEN a revshare conversion carrying tracker and affiliate_id
    # WHEN the tracker is read
    info = read_tracker("trID_a1-T9-c123-x_trID", OfferType.REVSHARE, "1234567")
    # THEN the affiliate is the one sent with it
    assert info == LinkInfo(
        affiliate_id="1234567", offer_id=None, values="a1-T9-c123-x", tracker="trID_a1-T9-c123-x_trID"
    )


def test_read_tracker_revshare_needs_the_affiliate() -> None:
    # GIVEN a revshare tracker without affiliate_id
    # WHEN it is read
    # THEN it is refused
    with pytest.raises(LinkError):
        read_tracker("trID_a1-T9-c123-x_trID", OfferType.REVSHARE, None)


def test_read_tracker_pps_takes_the_affiliate_from_the_tracker() -> None:
    # GIVEN a PPS tracker, percent-encoded
    # WHEN it is read without affiliate_id
    info = read_tracker("trID%5F1234567%5Fa1-T9-c123-x%5FtrID", OfferType.PPS, None)
    # THEN the affiliate comes from the tracker
    assert (info.affiliate_id, info.values) == ("1234567", "a1-T9-c123-x")


def test_read_tracker_pps_with_a_different_affiliate_is_a_mismatch() -> None:
    # GIVEN a PPS tracker naming one affiliate and a conversion naming another
    # WHEN it is read
    with pytest.raises(TrackerError) as caught:
        read_tracker("trID_1234567_a1-T9-c123-x_trID", OfferType.PPS, "7654321")
    # THEN it is an affiliate mismatch
    assert caught.value.reason == "affiliate_mismatch"


def test_read_tracker_refuses_an_empty_tracker() -> None:
    # GIVEN an empty tracker
    # WHEN it is read
    with pytest.raises(TrackerError) as caught:
        read_tracker("  ", OfferType.PPS, None)
    # THEN the wrapper is missing
    assert caught.value.reason == "wrapper_missing"


def test_expect_affiliate() -> None:
    # GIVEN a link read for one affiliate
    info = read_link(f"{BASE}?id=1234567&tracker=trID_a1-T9-c123-x_trID", OfferType.REVSHARE)
    # WHEN it is checked against the same and another affiliate
    expect_affiliate(info, "1234567")
    with pytest.raises(TrackerError) as caught:
        expect_affiliate(info, "999")
    # THEN only the other is a mismatch
    assert caught.value.reason == "affiliate_mismatch"


@pytest.mark.parametrize(
    ("url", "host", "is_network"),
    [
        (f"{BASE}?id=1", "www.espace-plus.net", True),
        ("HTTPS://WWW.Espace-Plus.NET./x", "www.espace-plus.net", True),
        ("https://track.acme.example/click", "track.acme.example", False),
        ("https://www.espace-plus.net.evil.example/", "www.espace-plus.net.evil.example", False),
        ("not a url", "", False),
        ("http://[::1/", "", False),
    ],
)
def test_link_host_and_is_network_link(url: str, host: str, is_network: bool) -> None:
    # GIVEN a URL met while following a test link
    # WHEN its host is read and compared with the network's link hosts
    # THEN the host is lower-case without a trailing dot, and only exact hosts match
    assert link_host(url) == host
    assert is_network_link(url, ["www.espace-plus.net"]) is is_network
