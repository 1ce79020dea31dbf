"""SSRF protection, the static half: which URLs and IP addresses a postback may ever call.

The dynamic half (DNS resolution, then `forbidden_reason` on every resolved address, then
connecting to that very address) lives with the HTTP sender. Here nothing touches the network.

IP literals are read the way C's `inet_aton` and the WHATWG URL parser read them, because that
is how HTTP clients and the resolver will read them: `2130706433`, `0177.0.0.1`, `0x7f.1` and
`127.1` all mean 127.0.0.1.
"""

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from urllib.parse import urlsplit

from postback_relay.domain.errors import UnsafeUrlError

type IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048
ALLOWED_SCHEMES = frozenset({"http", "https"})
# The one default-port table: a URL without a port means this one for its scheme.
DEFAULT_PORTS: Mapping[str, int] = MappingProxyType({"http": 80, "https": 443})

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# Checked in this order; the first match names the reason. Anything else that Python does not
# consider globally reachable is refused as "reserved" (the catch-all below).
_V4_RANGES: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_V4("0.0.0.0/32"), "unspecified"),
    (_V4("0.0.0.0/8"), "this_network"),
    (_V4("127.0.0.0/8"), "loopback"),
    (_V4("10.0.0.0/8"), "private"),
    (_V4("172.16.0.0/12"), "private"),
    (_V4("192.168.0.0/16"), "private"),
    (_V4("100.64.0.0/10"), "cgnat"),
    (_V4("169.254.0.0/16"), "link_local"),
    (_V4("224.0.0.0/4"), "multicast"),
    (_V4("255.255.255.255/32"), "broadcast"),
    (_V4("192.0.2.0/24"), "documentation"),
    (_V4("198.51.100.0/24"), "documentation"),
    (_V4("203.0.113.0/24"), "documentation"),
    (_V4("198.18.0.0/15"), "benchmarking"),
    (_V4("192.0.0.0/24"), "reserved"),
    (_V4("240.0.0.0/4"), "reserved"),
)
_V6_RANGES: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_V6("::/128"), "unspecified"),
    (_V6("::1/128"), "loopback"),
    (_V6("fe80::/10"), "link_local"),
    (_V6("fec0::/10"), "site_local"),
    (_V6("fc00::/7"), "unique_local"),
    (_V6("ff00::/8"), "multicast"),
    (_V6("2001:db8::/32"), "documentation"),
    (_V6("3fff::/20"), "documentation"),
    (_V6("64:ff9b:1::/48"), "private"),  # local-use NAT64
    (_V6("100::/64"), "reserved"),  # discard-only
)
# IPv6 forms that carry an IPv4 address: they are judged by the address they carry.
_NAT64 = _V6("64:ff9b::/96")
_SIX_TO_FOUR = _V6("2002::/16")
_COMPATIBLE = _V6("::/96")  # deprecated IPv4-compatible ::a.b.c.d
_TRANSLATED = _V6("::ffff:0:0:0/96")  # SIIT IPv4-translated ::ffff:0:a.b.c.d

_LOOPBACK_NAME = re.compile(r"^(?:.+\.)?localhost$")
# A DNS name as an HTTP client will send it (after IDNA): labels of letters, digits, `-`, `_`.
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"^(?=.{{1,253}}$)(?:{_LABEL}\.)*{_LABEL}$")
_V4_PART = re.compile(r"^(?:0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*)$")
_NUMERIC_LABEL = re.compile(r"^(?:0[xX][0-9a-fA-F]*|[0-9]+)$")


@dataclass(frozen=True)
class UrlTarget:
    """Where a URL points: what the sender must connect to, and check again after DNS."""

    scheme: str
    host: str  # lower-case, no brackets, no trailing dot, IDNA-encoded
    port: int
    ip: IPAddress | None  # None: a DNS name, to be resolved and checked at send time


def _parse_v4_parts(host: str) -> ipaddress.IPv4Address | None:
    """inet_aton: 1 to 4 parts, each decimal, octal (leading 0) or hex (0x); the last fills the rest."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_V4_PART.fullmatch(p) for p in parts):
        return None
    numbers: list[int] = []
    for part in parts:
        if part[:2].lower() == "0x":
            numbers.append(int(part[2:] or "0", 16))
        elif len(part) > 1 and part.startswith("0"):
            numbers.append(int(part, 8))
        else:
            numbers.append(int(part))
    *leading, last = numbers
    if any(n > 255 for n in leading) or last >= 256 ** (4 - len(leading)):
        return None
    value = last
    for i, n in enumerate(leading):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def parse_host_ip(host: str) -> IPAddress | None:
    """The IP address a URL host means, in any spelling; None for a DNS name."""
    candidate = host.strip()
    if candidate.startswith("[") and candidate.endswith("]"):
        candidate = candidate[1:-1]
    if candidate.endswith(".") and not candidate.endswith(".."):
        candidate = candidate[:-1]
    if not candidate:
        return None
    if ":" in candidate:
        try:
            v6 = ipaddress.IPv6Address(candidate)
        except ValueError:
            return None
        # A zone (fe80::1%eth0) does not change where the address points.
        return ipaddress.IPv6Address(v6.packed) if v6.scope_id else v6
    return _parse_v4_parts(candidate)


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _SIX_TO_FOUR:
        return ip.sixtofour
    if ip in _NAT64 or ip in _TRANSLATED or (ip in _COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def forbidden_reason(ip: IPAddress, *, allow_loopback: bool = False) -> str | None:
    """Why a postback must not be sent to this address, or None when it is public.

    `allow_loopback` (the local stack only) permits loopback and nothing else.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_v4(ip)
        if embedded is not None:
            return forbidden_reason(embedded, allow_loopback=allow_loopback)
        ranges: tuple[tuple[ipaddress.IPv4Network, str], ...] | tuple[tuple[ipaddress.IPv6Network, str], ...] = (
            _V6_RANGES
        )
    else:
        ranges = _V4_RANGES
    for network, reason in ranges:
        if ip in network:
            if reason == "loopback" and allow_loopback:
                return None
            return reason
    if not ip.is_global:
        return "reserved"
    return None


def _refuse(url: str, reason: str) -> UnsafeUrlError:
    shown = url if len(url) <= 200 else url[:200] + "..."
    return UnsafeUrlError(f"{shown!r} cannot be called: {reason}")


def _normalise_host(raw_host: str) -> str:
    """The host as an HTTP client will send it: IDNA-encoded, lower-case, one trailing dot dropped."""
    host = raw_host
    if not host.isascii():
        try:
            # IDNA also folds look-alikes such as full-width digits into ASCII, which is exactly
            # what must happen before the host is checked for an IP literal.
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ValueError("the host name is not a valid internationalised name") from exc
    host = host.lower()
    if host.endswith(".") and not host.endswith(".."):
        host = host[:-1]
    return host


def _check_text(url: str) -> None:
    """Refuse what no parser may read differently from another: a URL that is not text, too
    long, or holds whitespace, control characters or a backslash."""
    if not isinstance(url, str):
        raise UnsafeUrlError("the URL must be text")
    if len(url) > MAX_URL_LENGTH:
        raise _refuse(url, f"longer than {MAX_URL_LENGTH} characters")
    # Parsers disagree about whitespace, control characters and backslashes (some drop them,
    # some read `\` as `/`): refusing them keeps this check and the HTTP client in agreement.
    if any(ch.isspace() or not ch.isprintable() for ch in url) or "\\" in url:
        raise _refuse(url, "it contains whitespace, control characters or a backslash")


def _host_of(url: str, raw_host: str | None) -> str:
    """The URL's host as an HTTP client will send it; refused when missing or unreadable."""
    if not raw_host:
        raise _refuse(url, "the URL has no host")
    if "%" in raw_host:
        raise _refuse(url, "percent-encoded characters are not allowed in the host")
    try:
        return _normalise_host(raw_host)
    except ValueError as exc:
        raise _refuse(url, str(exc)) from exc


@dataclass(frozen=True)
class _Authority:
    scheme: str
    host: str  # as _normalise_host leaves it: an IP literal in any spelling, or a DNS name
    port: int  # the scheme's default when the URL names none
    bracketed: bool  # the host was written `[...]`


def _authority(url: str) -> _Authority:
    """Where the URL points, before any address is judged: an http(s) scheme, no credentials,
    a readable host, a real port."""
    try:
        parts = urlsplit(url)
        port = parts.port
        raw_host = parts.hostname
    except ValueError as exc:
        raise _refuse(url, f"it is not a valid URL ({exc})") from exc
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise _refuse(url, "only http and https URLs are allowed")
    if "@" in parts.netloc:
        raise _refuse(url, "credentials in the URL are not allowed")
    host = _host_of(url, raw_host)
    if port == 0:
        raise _refuse(url, "port 0 is not a valid port")
    return _Authority(
        scheme=scheme,
        host=host,
        port=port if port is not None else DEFAULT_PORTS[scheme],
        bracketed=parts.netloc.rsplit("@", 1)[-1].startswith("["),
    )


def _check_host_name(url: str, host: str, *, allow_loopback: bool) -> None:
    """Refuse a DNS name that is malformed, that only looks like an IP address, or that names
    loopback (unless allowed)."""
    if not _HOST_NAME.fullmatch(host):
        raise _refuse(url, "the host is not a valid DNS name or IP address")
    # WHATWG: a host whose last label is a number is an IPv4 address, or invalid. A browser or
    # resolver might read it differently from us, so it is refused rather than resolved.
    if _NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]):
        raise _refuse(url, "the host looks like an IP address but is not a valid one")
    if _LOOPBACK_NAME.fullmatch(host) and not allow_loopback:
        raise _refuse(url, f"{host} is a loopback name")


def check_url(url: str, *, allow_loopback: bool = False) -> UrlTarget:
    """Refuse a URL that must never be called; otherwise say where it points.

    Raises UnsafeUrlError. A DNS name passes here (ip None): the sender checks what it resolves to.
    """
    _check_text(url)
    where = _authority(url)
    ip = parse_host_ip(where.host)
    if where.bracketed and not isinstance(ip, ipaddress.IPv6Address):
        raise _refuse(url, "brackets in a host are for IPv6 addresses only")
    if ip is not None:
        reason = forbidden_reason(ip, allow_loopback=allow_loopback)
        if reason is not None:
            raise _refuse(url, f"{ip} is not a public address ({reason.replace('_', '-')})")
        return UrlTarget(scheme=where.scheme, host=str(ip), port=where.port, ip=ip)
    _check_host_name(url, where.host, allow_loopback=allow_loopback)
    return UrlTarget(scheme=where.scheme, host=where.host, port=where.port, ip=None)
