"""The static half of SSRF protection: which URLs a postback or a test link may ever call."""

import ipaddress

import pytest

from postback_relay.domain.addresses import UrlTarget, check_url, forbidden_reason, parse_host_ip
from postback_relay.domain.errors import UnsafeUrlError


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),  # decimal
        ("0177.0.0.1", "127.0.0.1"),  # octal
        ("0x7f.1", "127.0.0.1"),  # hex, short form
        ("0x7f000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),  # short form
        ("10.1.1", "10.1.0.1"),
        ("127.0.0.1.", "127.0.0.1"),  # trailing dot
        ("[::1]", "::1"),
        ("::ffff:127.0.0.1", "::ffff:127.0.0.1"),
        ("fe80::1%eth0", "fe80::1"),  # zone dropped
    ],
)
def test_parse_host_ip_reads_every_spelling(host: str, expected: str) -> None:
    # GIVEN an IP literal in one of the spellings HTTP clients accept
    # WHEN it is parsed
    ip = parse_host_ip(host)
    # THEN it is the address a client would connect to
    assert ip == ipaddress.ip_address(expected)


@pytest.mark.parametrize("host", ["example.com", "track.acme.example", "1e5", "", "256.1.1.1.1", "0x.example"])
def test_parse_host_ip_returns_none_for_names(host: str) -> None:
    # GIVEN a DNS name (or nothing that is an IP literal)
    # WHEN it is parsed
    # THEN it is not an IP address
    assert parse_host_ip(host) is None


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link_local"),
        ("fe80::1", "link_local"),
        ("100.64.0.1", "cgnat"),
        ("100.127.255.254", "cgnat"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("0.1.2.3", "this_network"),
        ("255.255.255.255", "broadcast"),
        ("192.0.2.1", "documentation"),
        ("198.51.100.1", "documentation"),
        ("203.0.113.1", "documentation"),
        ("2001:db8::1", "documentation"),
        ("240.0.0.1", "reserved"),
        ("fc00::1", "unique_local"),
        ("fd12:3456::1", "unique_local"),
        ("fec0::1", "site_local"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:169.254.169.254", "link_local"),
        ("::10.0.0.1", "private"),  # IPv4-compatible
        ("64:ff9b::10.0.0.1", "private"),  # NAT64
        ("64:ff9b::127.0.0.1", "loopback"),
        ("2002:a9fe:a9fe::", "link_local"),  # 6to4 of 169.254.169.254
        ("2002:c0a8:101::1", "private"),  # 6to4 of 192.168.1.1
        ("64:ff9b:1::1", "private"),  # local-use NAT64
        ("2001::1", "reserved"),  # Teredo
    ],
)
def test_forbidden_reason_names_the_range(address: str, reason: str) -> None:
    # GIVEN an address that must never be called
    ip = ipaddress.ip_address(address)
    # WHEN it is classified
    # THEN the reason names its range
    assert forbidden_reason(ip) == reason


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "93.184.216.34", "2606:4700::1111", "64:ff9b::8.8.8.8", "2002:808:808::"]
)
def test_public_addresses_are_allowed(address: str) -> None:
    # GIVEN a public address (also embedded in NAT64 or 6to4)
    # WHEN it is classified
    # THEN nothing forbids it
    assert forbidden_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("10.0.0.1", False),
        ("169.254.169.254", False),
        ("0.0.0.0", False),
        ("192.168.0.1", False),
        ("fc00::1", False),
    ],
)
def test_allow_loopback_permits_only_loopback(address: str, allowed: bool) -> None:
    # GIVEN the local stack's permission to call loopback
    ip = ipaddress.ip_address(address)
    # WHEN an address is classified
    reason = forbidden_reason(ip, allow_loopback=True)
    # THEN only loopback passes
    assert (reason is None) is allowed


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/pb",
        "http://2130706433/pb",
        "http://0177.0.0.1/pb",
        "http://0x7f.1/pb",
        "http://127.1/pb",
        "http://127.0.0.1./pb",
        "http://[::1]/pb",
        "http://[::ffff:127.0.0.1]/pb",
        "http://[::ffff:7f00:1]/pb",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:a9fe:a9fe]/latest/meta-data/",
        "http://[fe80::1%25eth0]/",
        "http://10.0.0.1/",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "http://0/",
        "http://localhost/",
        "http://LOCALHOST./",
        "http://api.localhost/",
        "http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/",  # full-width digits fold to 127.0.0.1
        "https://[64:ff9b::a00:1]/",
        "https://[2002:7f00:1::]/",
    ],
)
def test_check_url_refuses_internal_targets_in_every_spelling(url: str) -> None:
    # GIVEN a URL pointing at an internal address
    # WHEN it is checked
    # THEN it is refused
    with pytest.raises(UnsafeUrlError):
        check_url(url)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://example.com/", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("javascript:alert(1)", "only http and https"),
        ("http:///path", "no host"),
        ("http://user:pw@example.com/", "credentials"),
        ("http://example.com@127.0.0.1/", "credentials"),
        ("http://example.com\\@127.0.0.1/", "backslash"),
        ("http://exa mple.com/", "whitespace"),
        ("http://example.com/\n", "whitespace"),
        ("http://example.com:0/", "port 0"),
        ("http://example.com:99999/", "not a valid URL"),
        ("http://[not-ipv6]/", "not a valid URL"),
        ("http://[1.2.3.4]/", "not a valid URL"),
        ("http://999.1.1.1/", "looks like an IP"),
        ("http://1.2.3.4.5/", "looks like an IP"),
        ("http://exa%6dple.com/", "percent-encoded"),
        ("http://-bad-.com/", "not a valid DNS name"),
        ("http://" + "a" * 2050 + ".com/", "longer than"),
    ],
)
def test_check_url_refuses_malformed_urls_with_a_reason(url: str, words: str) -> None:
    # GIVEN a malformed or dangerous URL
    # WHEN it is checked
    with pytest.raises(UnsafeUrlError) as caught:
        check_url(url)
    # THEN the error says why
    assert words in caught.value.message


def test_check_url_describes_a_public_name() -> None:
    # GIVEN a public https URL with a port
    # WHEN it is checked
    target = check_url("HTTPS://Track.Acme.Example.:8443/postback?cid=1")
    # THEN the target is normalised and left for DNS resolution at send time
    assert target == UrlTarget(scheme="https", host="track.acme.example", port=8443, ip=None)


def test_check_url_describes_a_public_ip_with_default_port() -> None:
    # GIVEN a public IP literal without a port
    # WHEN it is checked
    target = check_url("http://8.8.8.8/pb")
    # THEN the port is the scheme's default and the IP is known
    assert target == UrlTarget(scheme="http", host="8.8.8.8", port=80, ip=ipaddress.IPv4Address("8.8.8.8"))


def test_check_url_idna_names_are_encoded() -> None:
    # GIVEN an internationalised host name
    # WHEN it is checked
    target = check_url("https://bücher.example/pb")
    # THEN the host is what the HTTP client will send
    assert target.host == "xn--bcher-kva.example"


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/pb", "http://localhost:3000/", "http://[::1]:9/", "http://0x7f.1/"]
)
def test_check_url_allows_loopback_only_when_asked(url: str) -> None:
    # GIVEN a loopback URL and the local stack's permission
    # WHEN it is checked
    target = check_url(url, allow_loopback=True)
    # THEN it passes
    assert target.scheme == "http"


@pytest.mark.parametrize("url", ["http://10.0.0.1/", "http://169.254.169.254/", "http://[fc00::1]/", "http://0.0.0.0/"])
def test_allow_loopback_does_not_open_other_ranges(url: str) -> None:
    # GIVEN a non-loopback internal URL and the local stack's permission
    # WHEN it is checked
    # THEN it is still refused
    with pytest.raises(UnsafeUrlError):
        check_url(url, allow_loopback=True)
