"""Network links: who the affiliate is and what their tracker says (contract section 1).

revshare: `...rotation_redir.php?id_rotation=89&e=0&w=0&id=1234567&e=1&w=0&tracker=trID_<values>_trID`
          `id` is the affiliate's ID.
PPS:      `...rotation_redir.php?id_rotation=89&id=66013&e=1&w=0&;tracker=trID_1234567_<values>_trID`
          `id` is the offer's ID; the tracker starts with the affiliate's ID and `_`.

Real links are messy and are read leniently where the meaning is still certain: the guide's
own `&;tracker=`, `&amp;` copied from HTML, repeated parameters, a percent-encoded tracker, any
parameter order, and an unencoded `#` (an unfilled `#clickId#` must be reported as such, not
lost as a URL fragment).
"""

from collections.abc import Collection
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from postback_relay.domain.errors import LinkError, TrackerError
from postback_relay.domain.events import OfferType
from postback_relay.domain.tracker import TRACKER_PREFIX, TRACKER_SUFFIX, find_placeholder

MAX_LINK_LENGTH = 8192
MAX_TRACKER_LENGTH = 4096
MAX_ID_LENGTH = 64


@dataclass(frozen=True)
class LinkInfo:
    """What a network link (or a conversion's tracker) tells about the affiliate."""

    affiliate_id: str
    offer_id: str | None
    values: str  # the affiliate's values inside the tracker (PPS: after `<affiliate id>_`)
    tracker: str  # the whole `trID_..._trID` string


def _query_params(query: str) -> list[tuple[str, str]]:
    params: list[tuple[str, str]] = []
    for piece in query.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        # `&;tracker=` (the guide) and `&amp;tracker=` (a link copied from HTML) name `tracker`.
        name = unquote(name).strip().lstrip(";").strip()
        while name.lower().startswith("amp;"):
            name = name[4:]
        params.append((name.lower(), value))
    return params


def _single(params: list[tuple[str, str]], name: str) -> str | None:
    """The one value of a parameter; repeats are fine when they agree."""
    found = {value for key, value in params if key == name}
    if len(found) > 1:
        raise LinkError(f"the link has several different {name!r} parameters: {sorted(found)}")
    return found.pop() if found else None


def _drop_fragment(value: str) -> str:
    return value.split("#", 1)[0]


def _unwrap(tracker: str) -> str:
    """The inside of `trID_..._trID`, with anything after the closing `_trID` that is a URL fragment dropped."""
    if len(tracker) > MAX_TRACKER_LENGTH:
        raise TrackerError(f"the tracker is longer than {MAX_TRACKER_LENGTH} characters", reason="value_too_long")
    if not tracker.startswith(TRACKER_PREFIX):
        if tracker.lower().startswith(TRACKER_PREFIX.lower()):
            raise TrackerError(
                f"the tracker must start with {TRACKER_PREFIX!r} exactly (case matters)", reason="wrapper_missing"
            )
        raise TrackerError(
            f"the tracker must start with {TRACKER_PREFIX!r} and end with {TRACKER_SUFFIX!r}; got {tracker[:60]!r}",
            reason="wrapper_missing",
        )
    end = tracker.rfind(TRACKER_SUFFIX)
    if end < len(TRACKER_PREFIX):
        placeholder = find_placeholder(tracker)
        if placeholder is not None:
            raise TrackerError(
                f"placeholder {placeholder} was not filled by your tracker, and the tracker does not end "
                f"with {TRACKER_SUFFIX!r}",
                reason="placeholder_unfilled",
            )
        raise TrackerError(f"the tracker must end with {TRACKER_SUFFIX!r}", reason="wrapper_missing")
    trailing = tracker[end + len(TRACKER_SUFFIX) :]
    if trailing and not trailing.startswith("#"):
        raise TrackerError(
            f"the tracker must end with {TRACKER_SUFFIX!r}; {trailing[:40]!r} follows it", reason="wrapper_missing"
        )
    return tracker[len(TRACKER_PREFIX) : end]


def _decode_tracker(raw: str) -> str:
    """A tracker as sent, or percent-decoded when it was sent encoded (`trID%5F...`)."""
    if raw.startswith(TRACKER_PREFIX):
        return raw
    decoded = unquote(raw)
    return decoded if decoded.startswith(TRACKER_PREFIX) else raw


def _split_pps(inside: str, tracker: str) -> LinkInfo:
    affiliate_id, sep, values = inside.partition("_")
    if not sep:
        placeholder = find_placeholder(inside)
        if placeholder is not None:
            raise TrackerError(
                f"placeholder {placeholder} was not filled by your tracker, and the PPS tracker does not start "
                "with your affiliate ID and '_'",
                reason="placeholder_unfilled",
            )
        raise TrackerError(
            "a PPS tracker must start with your affiliate ID and '_': trID_<affiliate id>_<values>_trID",
            reason="wrapper_missing",
        )
    placeholder = find_placeholder(affiliate_id)
    if placeholder is not None:
        raise TrackerError(
            f"placeholder {placeholder} was not filled by your tracker: put your affiliate ID there",
            reason="placeholder_unfilled",
        )
    if not affiliate_id:
        raise TrackerError("the affiliate ID at the start of the PPS tracker is empty", reason="empty_value")
    if len(affiliate_id) > MAX_ID_LENGTH:
        raise TrackerError("the affiliate ID at the start of the PPS tracker is too long", reason="value_too_long")
    return LinkInfo(affiliate_id=affiliate_id, offer_id=None, values=values, tracker=tracker)


def read_tracker(tracker: str, offer_type: OfferType, affiliate_id: str | None) -> LinkInfo:
    """Read a tracker the conversion carried instead of a link.

    For a revshare offer the affiliate ID comes with it; for a PPS offer it is in the tracker,
    and must agree with `affiliate_id` when that is given too.
    """
    if not isinstance(tracker, str) or not tracker.strip():
        raise TrackerError("the tracker is empty", reason="wrapper_missing")
    whole = _decode_tracker(tracker.strip())
    inside = _unwrap(whole)
    if offer_type is OfferType.PPS:
        info = _split_pps(inside, whole)
        if affiliate_id and affiliate_id != info.affiliate_id:
            raise TrackerError(
                f"the tracker names affiliate {info.affiliate_id} but the conversion names {affiliate_id}",
                reason="affiliate_mismatch",
            )
        return info
    if not affiliate_id:
        raise LinkError("a revshare conversion sent with a tracker must also carry affiliate_id")
    return LinkInfo(affiliate_id=affiliate_id, offer_id=None, values=inside, tracker=whole)


def read_link(link: str, offer_type: OfferType) -> LinkInfo:
    """Read the affiliate, the offer and the tracker from a network link.

    Raises LinkError when the link is not a network link that names an affiliate, TrackerError
    when its tracker is missing or malformed.
    """
    if not isinstance(link, str) or not link.strip():
        raise LinkError("the link is empty")
    link = link.strip()
    if len(link) > MAX_LINK_LENGTH:
        raise LinkError(f"the link is longer than {MAX_LINK_LENGTH} characters")
    try:
        parts = urlsplit(link)
    except ValueError as exc:
        raise LinkError(f"the link is not a valid URL ({exc})") from exc
    if parts.scheme.lower() not in {"http", "https"} or not parts.netloc:
        raise LinkError("the link must be an http or https URL")
    # Everything after the first `?`, fragment included: an unencoded `#` belongs to the tracker
    # far more often (`#clickId#` left unfilled) than to a real fragment.
    _, question, query = link.partition("?")
    if not question:
        raise LinkError("the link has no query string: it carries neither id nor tracker")
    params = _query_params(query)

    link_id = _id_param(params, "id")
    rotation_id = _id_param(params, "id_rotation")

    raw_tracker = _single(params, "tracker")
    if raw_tracker is None:
        raise TrackerError("the link has no tracker parameter (tracker=trID_..._trID)", reason="wrapper_missing")
    # A query value is percent-decoded once, as the network's own page reads it: `c%20x` is `c x`.
    tracker = unquote(raw_tracker.strip())
    if not tracker:
        raise TrackerError("the link's tracker is empty (tracker=trID_..._trID)", reason="wrapper_missing")
    inside = _unwrap(tracker)
    whole = tracker[: len(TRACKER_PREFIX) + len(inside) + len(TRACKER_SUFFIX)]

    if offer_type is OfferType.PPS:
        info = _split_pps(inside, whole)
        return LinkInfo(
            affiliate_id=info.affiliate_id,
            offer_id=link_id or None,
            values=info.values,
            tracker=whole,
        )
    if not link_id:
        raise LinkError("a revshare link must carry id=<your affiliate ID>")
    return LinkInfo(
        affiliate_id=link_id,
        offer_id=rotation_id or None,
        values=inside,
        tracker=whole,
    )


def _id_param(params: list[tuple[str, str]], name: str) -> str:
    """An ID parameter's value ('' when absent), refusing an unfilled placeholder."""
    raw = _single(params, name)
    if raw is None:
        return ""
    value = unquote(raw).strip()
    placeholder = find_placeholder(value)
    if placeholder is not None:
        raise LinkError(f"the link's {name} is the unfilled placeholder {placeholder}")
    value = _drop_fragment(value).strip()
    if len(value) > MAX_ID_LENGTH:
        raise LinkError(f"the link's {name} is longer than {MAX_ID_LENGTH} characters")
    return value


def expect_affiliate(info: LinkInfo, affiliate_id: str) -> None:
    """Raise TrackerError (affiliate_mismatch) when a link or tracker names another affiliate."""
    if info.affiliate_id != affiliate_id:
        raise TrackerError(
            f"the link names affiliate {info.affiliate_id}, not {affiliate_id}", reason="affiliate_mismatch"
        )


def link_host(url: str) -> str:
    """The lower-case host of a URL, without a trailing dot; empty when there is none."""
    try:
        host = urlsplit(url.strip()).hostname or ""
    except ValueError:
        return ""
    return host.lower().rstrip(".")


def is_network_link(url: str, hosts: Collection[str]) -> bool:
    """Whether a URL is on one of the network's link hosts (a test link's journey ends there)."""
    host = link_host(url)
    return bool(host) and host in {h.strip().lower().rstrip(".") for h in hosts}
