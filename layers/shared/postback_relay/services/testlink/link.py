"""The test link: following its redirects to the network link (step 1), and reading the
tracker that network link carries (step 2).

Following goes through `HopClient` (the dispatcher's `SafeHttpClient` in Lambda, a fake in
unit tests); the network link itself is never requested. Reading is pure.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from postback_relay.domain.addresses import check_url, forbidden_reason, parse_host_ip
from postback_relay.domain.config import AffiliateConfig
from postback_relay.domain.errors import DeliveryTransportError, LinkError, TrackerError, UnsafeUrlError
from postback_relay.domain.events import OfferType
from postback_relay.domain.links import LinkInfo, is_network_link, read_link
from postback_relay.domain.testrun import MAX_HOPS
from postback_relay.domain.tracker import PLACEHOLDER, parse_tracker
from postback_relay.ports import HopAnswer, HopClient

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_TRACKER_TEXT = re.compile(r"trID_(.*?)_trID")


# --- following the test link ------------------------------------------------------------------


@dataclass(frozen=True)
class Hop:
    url: str
    status: int | None = None
    location: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "status": self.status, "location": self.location}


@dataclass(frozen=True)
class FollowOutcome:
    chain: list[Hop] = field(default_factory=list)
    network_link: str | None = None
    kind: str | None = None  # unsafe_url, redirect_loop, too_many_hops, unreachable, no_network_link
    reason: str | None = None


def follow_redirects(
    test_link: str,
    *,
    client: HopClient,
    network_hosts: Collection[str],
    allow_loopback: bool = False,
    max_hops: int = MAX_HOPS,
) -> FollowOutcome:
    """Follow the test link hop by hop until a URL on a network link host, which is never
    requested: the network's page would count a click and is none of our business."""
    return _Walk(client, network_hosts, allow_loopback, max_hops).follow(test_link)


class _Stopped(Exception):
    """The walk ends before a network link: why, in the outcome's kind and a sentence."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclass
class _Walk:
    """One following of a test link: the hops seen so far and the URLs requested."""

    client: HopClient
    network_hosts: Collection[str]
    allow_loopback: bool
    max_hops: int
    chain: list[Hop] = field(default_factory=list)
    requested: list[str] = field(default_factory=list)

    def follow(self, url: str) -> FollowOutcome:
        try:
            while not is_network_link(url, self.network_hosts):
                url = self._hop(url)
        except _Stopped as stop:
            return FollowOutcome(self.chain, kind=stop.kind, reason=stop.reason)
        self.chain.append(Hop(url))
        return FollowOutcome(self.chain, network_link=url)

    def _hop(self, url: str) -> str:
        """Request one URL of the chain; the URL it redirects to."""
        self._check_limits(url)
        self.requested.append(url)
        answer = self._request(url)
        location = _header(answer.headers, "location")
        self.chain.append(Hop(url, answer.status, location))
        if answer.status in REDIRECT_STATUSES and location:
            return urljoin(url, location.strip())
        raise _Stopped(
            "no_network_link",
            f"the test link stopped at {url} (HTTP {answer.status}) without redirecting to a network link on "
            f"{self._hosts_text}; only HTTP redirects are followed, not HTML or JavaScript ones",
        )

    def _check_limits(self, url: str) -> None:
        if url in self.requested:
            loop = " -> ".join([*self.requested[self.requested.index(url) :], url])
            raise _Stopped(
                "redirect_loop", f"the test link redirects in a loop ({loop}) and never reaches a network link"
            )
        if len(self.requested) >= self.max_hops:
            raise _Stopped(
                "too_many_hops",
                f"the test link took over {self.max_hops} redirects and never reached a network link on "
                f"{self._hosts_text}",
            )

    def _request(self, url: str) -> HopAnswer:
        try:
            # The client checks again after DNS resolution; this static check holds for any client.
            check_url(url, allow_loopback=self.allow_loopback)
            return self.client.request("GET", url)
        except UnsafeUrlError as exc:
            self.chain.append(Hop(url))
            first = len(self.requested) == 1
            raise _Stopped("unsafe_url", _unsafe_sentence(url, exc, self.allow_loopback, first=first)) from exc
        except DeliveryTransportError as exc:
            self.chain.append(Hop(url))
            what = "did not answer in time" if exc.kind == "timeout" else "could not be reached"
            raise _Stopped("unreachable", f"{url} {what} while following the test link ({exc.message})") from exc

    @property
    def _hosts_text(self) -> str:
        return ", ".join(sorted(self.network_hosts))


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _unsafe_sentence(url: str, exc: UnsafeUrlError, allow_loopback: bool, *, first: bool) -> str:
    verb = "points to" if first else "redirected to"
    host = urlsplit(url).hostname or ""
    ip = parse_host_ip(host) if host else None
    if ip is not None:
        kind = forbidden_reason(ip, allow_loopback=allow_loopback)
        if kind is not None:
            return f"the test link {verb} a {kind.replace('_', '-')} address ({ip})"
    return f"the test link {verb} {url}, which is refused: {exc.message}"


# --- reading the tracker ----------------------------------------------------------------------


def offer_type_of(network_link: str, affiliate_id: str) -> OfferType:
    """Which link format the network link uses (contract section 1).

    A PPS link's tracker starts with `<affiliate id>_`; a revshare tracker holds only the
    affiliate's values (its `id` is the affiliate). A revshare value that happened to start
    with the affiliate's ID and an underscore would be read as PPS and then fail the tracker
    check visibly, never pass wrongly.
    """
    match = _TRACKER_TEXT.search(unquote(network_link))
    if match and match.group(1).startswith(f"{affiliate_id}_"):
        return OfferType.PPS
    return OfferType.REVSHARE


def unfilled_placeholders(network_link: str) -> list[str]:
    match = _TRACKER_TEXT.search(unquote(network_link))
    return PLACEHOLDER.findall(match.group(1)) if match else []


@dataclass(frozen=True)
class TrackerReading:
    """What the tracker check saw (the step's details) and, when it fails, why."""

    offer_type: OfferType
    details: dict[str, Any]
    reason: str | None = None
    offer_id: str | None = None
    values: dict[str, str] = field(default_factory=dict)


def read_network_link(network_link: str, config: AffiliateConfig) -> TrackerReading:
    """The network link's offer and tracker values, checked against the affiliate's
    configuration: every placeholder filled, its affiliate ID, its tracker structure."""
    offer_type = offer_type_of(network_link, config.affiliate_id)
    details: dict[str, Any] = {"network_link": network_link, "offer_type": offer_type.value}
    placeholders = unfilled_placeholders(network_link)
    if placeholders:
        details["unfilled"] = placeholders
        return TrackerReading(offer_type, details, reason=_unfilled_sentence(placeholders))
    try:
        info = read_link(network_link, offer_type)
    except (LinkError, TrackerError) as exc:
        reason = f"the network link the test link reached cannot be read: {exc.message}"
        return TrackerReading(offer_type, details, reason=reason)
    details.update({"tracker": info.tracker, "link_affiliate_id": info.affiliate_id, "offer_id": info.offer_id})
    return _check_link_info(info, config, offer_type, details)


def _check_link_info(
    info: LinkInfo, config: AffiliateConfig, offer_type: OfferType, details: dict[str, Any]
) -> TrackerReading:
    """The link is the affiliate's, and its tracker values fit the affiliate's structure."""
    if info.affiliate_id != config.affiliate_id:
        reason = (
            f"the network link carries affiliate ID {info.affiliate_id}, not {config.affiliate_id}: "
            "your tracker sends traffic under another affiliate's link"
        )
        return TrackerReading(offer_type, details, reason=reason)
    try:
        values = parse_tracker(info.values, config.tracker)
    except TrackerError as exc:
        details["error_kind"] = exc.reason
        reason = f"the tracker {info.tracker} does not match your structure: {exc.message}"
        return TrackerReading(offer_type, details, reason=reason)
    details["tracker_values"] = values
    return TrackerReading(offer_type, details, offer_id=info.offer_id, values=values)


def _unfilled_sentence(placeholders: list[str]) -> str:
    names = ", ".join(placeholders)
    noun = "placeholder" if len(placeholders) == 1 else "placeholders"
    verb = "was" if len(placeholders) == 1 else "were"
    return f"{noun} {names} {verb} not filled by your tracker"
