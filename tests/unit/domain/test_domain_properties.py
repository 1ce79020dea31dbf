"""Properties of the domain, checked on generated input (hypothesis).

- any tracker values render and parse back exactly;
- no value changes a rendered URL's scheme, host, path or parameter names;
- the parsers raise nothing but DomainError subclasses, whatever they are given;
- every spelling of an IPv4 address is classified the same.
"""

import contextlib
import ipaddress
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from postback_relay.domain.addresses import check_url, forbidden_reason, parse_host_ip
from postback_relay.domain.config import PostbackSpec, load_config_text, parse_config
from postback_relay.domain.conversion import Conversion
from postback_relay.domain.errors import DomainError, TrackerError, UnsafeUrlError
from postback_relay.domain.events import OfferType
from postback_relay.domain.links import is_network_link, link_host, read_link, read_tracker
from postback_relay.domain.render import render_postback
from postback_relay.domain.tracker import (
    MAX_VALUE_LENGTH,
    TrackerStructure,
    find_placeholder,
    parse_tracker,
    render_tracker,
)

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

field_names = st.from_regex(r"[a-z_][a-z0-9_]{0,11}", fullmatch=True)
separators = st.sampled_from(["-", "_", "|", ".", "~", ":", "--", "::", "-_-", "/"])
text = st.text(min_size=0, max_size=60)
bytes_text = st.binary(max_size=200).map(lambda b: b.decode("utf-8", errors="surrogateescape"))
any_text = st.one_of(text, bytes_text)


@st.composite
def structures_and_values(draw: st.DrawFn) -> tuple[TrackerStructure, dict[str, str]]:
    fields = draw(st.lists(field_names, min_size=1, max_size=6, unique=True))
    separator = draw(separators)
    rest = draw(st.one_of(st.none(), st.sampled_from(fields)))
    structure = TrackerStructure(fields=tuple(fields), separator=separator, rest=rest)
    values: dict[str, str] = {}
    for name in fields:
        if name == rest:
            # The rest field is where separators belong (a UUID click ID): make them common.
            value = draw(st.lists(st.text(max_size=8), min_size=1, max_size=5).map(separator.join))
            assume(value != "")
        else:
            value = draw(st.text(min_size=1, max_size=40))
        assume(find_placeholder(value) is None)
        assume(name == rest or separator not in value)
        values[name] = value
    return structure, values


@PROPERTY
@given(structures_and_values())
def test_rendered_trackers_parse_back_exactly(case: tuple[TrackerStructure, dict[str, str]]) -> None:
    # GIVEN any structure and values that fit it
    structure, values = case
    # WHEN the values are rendered into a tracker
    try:
        rendered = render_tracker(values, structure)
    except TrackerError:
        # Only where joining truly makes the values ambiguous: a multi-character separator
        # overlapping a value's edge, or a placeholder formed across the separator.
        joined = structure.separator.join(values[f] for f in structure.fields)
        assert len(structure.separator) > 1 or find_placeholder(joined) is not None
        return
    # THEN parsing it gives back exactly the same values
    assert parse_tracker(rendered, structure) == values


@PROPERTY
@given(st.lists(st.uuids().map(str), min_size=1, max_size=1), st.text(min_size=1, max_size=20))
def test_uuid_rest_field_round_trips(uuids: list[str], other: str) -> None:
    # GIVEN a UUID click ID (it contains the separator) in a rest field
    assume("-" not in other and find_placeholder(other) is None)
    structure = TrackerStructure(fields=("affid", "clickid", "sub"), rest="clickid")
    values = {"affid": other, "clickid": uuids[0], "sub": other}
    # WHEN rendered and parsed
    # THEN the UUID comes back whole
    assert parse_tracker(render_tracker(values, structure), structure) == values


TEMPLATES = [
    "https://track.acme.example/postback?cid={clickid}&payout={amount}&ev={event}",
    "http://track.acme.example:8080/pb/{clickid}/{event}?a={amount}",
    "https://track.acme.example/pb/{clickid}",
    "https://track.acme.example/pb?x=1&cid={clickid}{amount}&y=2",
    "https://track.acme.example/p{clickid}x/?q={clickid}",
]
macro_value = st.text(max_size=80).filter(lambda v: len(v) <= MAX_VALUE_LENGTH)


@PROPERTY
@given(st.sampled_from(TEMPLATES), macro_value, macro_value, macro_value)
def test_no_value_changes_the_urls_shape(template: str, clickid: str, amount: str, event: str) -> None:
    # GIVEN a postback URL template and arbitrary values
    spec = PostbackSpec(events=("sale",), url=template)
    values = {"clickid": clickid, "amount": amount, "event": event}
    shape = urlsplit(template.replace("{", "").replace("}", ""))
    # WHEN it is rendered
    url = render_postback(spec, values).url
    # THEN scheme, host, port, path segments and parameter names are the template's
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.fragment) == (shape.scheme, shape.netloc, "")
    assert parts.path.count("/") == shape.path.count("/")
    assert not {".", ".."} & set(parts.path.split("/"))
    assert sorted(parse_qs(parts.query, keep_blank_values=True)) == sorted(
        parse_qs(shape.query, keep_blank_values=True)
    )
    # AND a value alone in a query parameter reads back exactly
    if "cid={clickid}&" in template or template.endswith("cid={clickid}"):
        decoded = parse_qs(parts.query, keep_blank_values=True, errors="surrogatepass")["cid"][0]
        assert decoded == clickid


def _only_domain_errors(call: Any, *args: Any) -> None:
    with contextlib.suppress(DomainError):
        call(*args)


@PROPERTY
@given(any_text, st.sampled_from(list(OfferType)))
def test_read_link_raises_only_domain_errors(link: str, offer_type: OfferType) -> None:
    # GIVEN any text as a link
    # WHEN it is read
    # THEN the only errors are domain errors
    _only_domain_errors(read_link, link, offer_type)


link_pieces = st.sampled_from(
    [
        "id=",
        "1234567",
        "tracker=",
        "trID_",
        "_trID",
        "#",
        "%",
        "%23",
        "%5F",
        "&",
        ";",
        "amp;",
        "=",
        "-",
        "_",
        "#clickId#",
        "id_rotation=89",
        "?",
        "/",
        "[",
        "]",
        "e=0",
        "\u00e9",
        "\x00",
        " ",
    ]
)


@PROPERTY
@given(
    st.sampled_from(["http://www.espace-plus.net/r.php?", "https://x/?", "http://[::1]/?"]),
    st.lists(st.one_of(link_pieces, text), max_size=20),
    st.sampled_from(list(OfferType)),
)
def test_read_link_raises_only_domain_errors_on_link_like_text(
    base: str, pieces: list[str], offer_type: OfferType
) -> None:
    # GIVEN text built from the parts of real links
    # WHEN it is read
    # THEN the only errors are domain errors
    _only_domain_errors(read_link, base + "".join(pieces), offer_type)


@PROPERTY
@given(
    st.one_of(any_text, st.lists(link_pieces, max_size=12).map("".join)),
    st.sampled_from(list(OfferType)),
    st.one_of(st.none(), text),
)
def test_read_tracker_raises_only_domain_errors(tracker: str, offer_type: OfferType, affiliate_id: str | None) -> None:
    # GIVEN any text as a tracker
    # WHEN it is read
    # THEN the only errors are domain errors
    _only_domain_errors(read_tracker, tracker, offer_type, affiliate_id)


@PROPERTY
@given(any_text, structures_and_values())
def test_parse_tracker_raises_only_tracker_errors(values: str, case: tuple[TrackerStructure, dict[str, str]]) -> None:
    # GIVEN any text and any structure
    # WHEN the text is parsed as tracker values
    # THEN the only error is a TrackerError
    with contextlib.suppress(TrackerError):
        parse_tracker(values, case[0])


@PROPERTY
@given(any_text)
def test_check_url_raises_only_unsafe_url_errors(url: str) -> None:
    # GIVEN any text as a URL, also after an http:// prefix
    for candidate in (url, "http://" + url, "https://" + url + "/pb"):
        # WHEN it is checked
        try:
            target = check_url(candidate)
        except UnsafeUrlError:
            continue
        # THEN either it is refused, or it points at a public address or a name
        assert target.scheme in {"http", "https"}
        assert target.ip is None or forbidden_reason(target.ip) is None


@PROPERTY
@given(any_text)
def test_host_helpers_never_raise(host: str) -> None:
    # GIVEN any text
    # WHEN it is read as a host or URL by the helpers
    # THEN they answer without raising
    parse_host_ip(host)
    link_host(host)
    is_network_link(host, ["www.espace-plus.net"])


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), text),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(text, children, max_size=4)),
    max_leaves=20,
)
config_keys = st.sampled_from(
    [
        "affiliate_id",
        "name",
        "enabled",
        "tracker",
        "postbacks",
        "test_link",
        "signing_secret",
        "fields",
        "separator",
        "rest",
        "events",
        "url",
        "offers",
        "method",
        "body",
        "content_type",
        "expect",
        "status",
        "body_contains",
    ]
)
config_like = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        text,
        st.sampled_from(["sale", "POST", "https://x.example/?a={clickid}"]),
    ),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(config_keys, children, max_size=6)),
    max_leaves=25,
)


@PROPERTY
@given(st.one_of(any_text, json_values.map(json.dumps), config_like.map(json.dumps)))
def test_load_config_text_raises_only_config_errors(document: str) -> None:
    # GIVEN any text, JSON or config-shaped JSON
    # WHEN it is loaded as a config
    # THEN the only errors are domain errors
    _only_domain_errors(load_config_text, document)


@PROPERTY
@given(st.dictionaries(config_keys, config_like, max_size=8))
def test_parse_config_raises_only_config_errors(data: dict[str, Any]) -> None:
    # GIVEN any config-shaped mapping
    # WHEN it is validated
    # THEN the only errors are domain errors
    _only_domain_errors(parse_config, data)


@PROPERTY
@given(st.dictionaries(st.sampled_from([*Conversion.model_fields, "x"]), json_values, max_size=10))
def test_conversion_validation_raises_only_validation_errors(data: dict[str, Any]) -> None:
    # GIVEN any conversion-shaped mapping
    # WHEN it is validated
    # THEN only pydantic's ValidationError (the API's 400) is raised
    with contextlib.suppress(ValidationError):
        Conversion.model_validate(data)


def _spellings(ip: ipaddress.IPv4Address) -> list[str]:
    a, b, c, d = ip.packed
    value = int(ip)
    return [
        str(ip),
        str(value),
        hex(value),
        f"0{a:o}.0{b:o}.0{c:o}.0{d:o}",
        f"{a}.{b}.{(c << 8) | d}",
        f"{a}.{(b << 16) | (c << 8) | d}",
        f"{hex(a)}.{b}.{c}.{d}",
        f"{ip}.",
        f"[::ffff:{ip}]",
    ]


@PROPERTY
@given(st.ip_addresses(v=4))
def test_every_spelling_of_an_ipv4_address_is_judged_alike(ip: ipaddress.IPv4Address) -> None:
    # GIVEN an IPv4 address in every spelling a client accepts
    reason = forbidden_reason(ip)
    for spelling in _spellings(ip):
        # WHEN its URL is checked
        url = f"http://{spelling}/pb"
        if reason is None:
            target = check_url(url)
            # THEN a public address passes in every spelling, and is the same address
            assert target.ip is not None
            assert target.ip in (ip, ipaddress.IPv6Address(f"::ffff:{ip}"))
        else:
            # THEN a forbidden address is refused in every spelling
            with pytest.raises(UnsafeUrlError):
                check_url(url)
        assert parse_host_ip(spelling.strip("[]")) in (ip, ipaddress.IPv6Address(f"::ffff:{ip}"))
