"""The steps of a test-link run (contract section 5), over ports.

A run is driven by the Step Functions workflow `statemachine/testlink.asl.json`: each Task
calls the test-link function with a `step`, which lands on one method of `TestLinkService`.
Every step appends its entry (what it saw: redirect chain, tracker values, postback URLs,
delivery states) to the run record. A step that fails also writes the verdict `failed` with
the step and a reason a person can act on, so the workflow only branches on the answer.

Nothing here knows boto3 or HTTP libraries: the redirects are followed through `HopClient`
(the dispatcher's `SafeHttpClient` in Lambda, a fake in unit tests).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from postback_relay.domain.addresses import check_url, forbidden_reason, parse_host_ip
from postback_relay.domain.config import AffiliateConfig
from postback_relay.domain.conversion import Conversion, Offer
from postback_relay.domain.delivery import (
    Attempt,
    DeliveryRef,
    DeliveryState,
    DeliveryTransportError,
    PostbackMessage,
    key_time,
    postback_message,
)
from postback_relay.domain.errors import InfrastructureError, LinkError, TrackerError, UnsafeUrlError
from postback_relay.domain.events import OfferType
from postback_relay.domain.links import is_network_link, read_link
from postback_relay.domain.render import macro_values, render_postback
from postback_relay.domain.testrun import (
    MAX_HOPS,
    RunVerdict,
    StepName,
    TestStep,
)
from postback_relay.domain.tracker import PLACEHOLDER, parse_tracker
from postback_relay.ports import AffiliateStore, DeliveryLog, DeliveryRecord, HopClient, PostbackQueue, TestRunStore

TEST_AMOUNT = Decimal(0)
TEST_CURRENCY = "EUR"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_TRACKER_TEXT = re.compile(r"trID_(.*?)_trID")


# --- answers to the workflow (the Task results the state machine branches on) ---------------


class FollowResult(BaseModel):
    model_config = ConfigDict(defer_build=True)

    ok: bool
    network_link: str | None = None


class TrackerResult(BaseModel):
    model_config = ConfigDict(defer_build=True)

    ok: bool
    offer_id: str | None = None
    offer_type: OfferType | None = None
    tracker_values: dict[str, str] = Field(default_factory=dict)


class DeliveryCheck(BaseModel):
    """The loop's state: carried by the workflow from one check to the next."""

    model_config = ConfigDict(defer_build=True)

    verdict: RunVerdict
    delivery_ids: list[str] = Field(default_factory=list)
    checks: int = 0
    next_wait_s: int = 0
    summary: str = ""
    # When the postbacks were fired: the deadline counts from here, so that the time spent
    # following the link (unscaled on the local stack) never eats into the delivery checks.
    fired_at: datetime | None = None


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
    chain: list[Hop] = []
    requested: list[str] = []
    hosts_text = ", ".join(sorted(network_hosts))
    url = test_link
    while True:
        if is_network_link(url, network_hosts):
            chain.append(Hop(url))
            return FollowOutcome(chain, network_link=url)
        if url in requested:
            loop = " -> ".join([*requested[requested.index(url) :], url])
            return FollowOutcome(
                chain,
                kind="redirect_loop",
                reason=f"the test link redirects in a loop ({loop}) and never reaches a network link",
            )
        if len(requested) >= max_hops:
            return FollowOutcome(
                chain,
                kind="too_many_hops",
                reason=(
                    f"the test link took over {max_hops} redirects and never reached a network link on {hosts_text}"
                ),
            )
        requested.append(url)
        try:
            # The client checks again after DNS resolution; this static check holds for any client.
            check_url(url, allow_loopback=allow_loopback)
            answer = client.request("GET", url)
        except UnsafeUrlError as exc:
            chain.append(Hop(url))
            return FollowOutcome(
                chain, kind="unsafe_url", reason=_unsafe_sentence(url, exc, allow_loopback, first=len(requested) == 1)
            )
        except DeliveryTransportError as exc:
            chain.append(Hop(url))
            what = "did not answer in time" if exc.kind == "timeout" else "could not be reached"
            return FollowOutcome(
                chain, kind="unreachable", reason=f"{url} {what} while following the test link ({exc.message})"
            )
        location = _header(answer.headers, "location")
        chain.append(Hop(url, answer.status, location))
        if answer.status in REDIRECT_STATUSES and location:
            url = urljoin(url, location.strip())
            continue
        return FollowOutcome(
            chain,
            kind="no_network_link",
            reason=(
                f"the test link stopped at {url} (HTTP {answer.status}) without redirecting to a network link on "
                f"{hosts_text}; only HTTP redirects are followed, not HTML or JavaScript ones"
            ),
        )


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


# --- checking delivery ------------------------------------------------------------------------


def next_wait_s(waits: Sequence[int], checks: int, remaining_s: float) -> int:
    """The wait before the next check: the `checks`-th of the waits (the last one repeats),
    never past the deadline, so that the last check lands on it."""
    planned = waits[min(checks, len(waits) - 1)] if waits else 0
    return max(0, min(planned, math.ceil(max(remaining_s, 0))))


def describe_duration(seconds: int) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        minutes = seconds // 60
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


_ERROR_TEXT = {
    "timeout": "did not answer in time",
    "connection_error": "could not be reached",
    "unsafe_url": "is at a refused address",
    "circuit_open": "was not called (too many failures in a row)",
}


def _describe_attempt(attempt: Attempt) -> str:
    if attempt.status is not None:
        if attempt.error_kind == "unexpected_body":
            return f"answered {attempt.status} without the expected body"
        return f"answered {attempt.status}"
    return _ERROR_TEXT.get(attempt.error_kind or "", f"failed ({attempt.error_kind})")


def describe_attempts(attempts: Sequence[Attempt]) -> str:
    if not attempts:
        return "no attempt was made yet"
    texts = [_describe_attempt(a) for a in attempts]
    count = len(attempts)
    plural = "s" if count != 1 else ""
    if len(set(texts)) == 1:
        return f"your server {texts[0]} on {count} attempt{plural}"
    return f"your server {texts[-1]} on the last of {count} attempts"


def _postback_label(n: int, record: DeliveryRecord | None) -> str:
    if record is None:
        return f"postback {n}"
    return f"postback {n} ({record.message.method.value} {record.message.url})"


# --- the service ------------------------------------------------------------------------------


class TestLinkService:
    """The steps of a run; each records what it saw on the run and answers the workflow."""

    __test__ = False

    def __init__(
        self,
        *,
        runs: TestRunStore,
        affiliates: AffiliateStore,
        queue: PostbackQueue,
        deliveries: DeliveryLog,
        http: HopClient,
        network_hosts: Collection[str],
        allow_loopback: bool = False,
        max_hops: int = MAX_HOPS,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._runs = runs
        self._affiliates = affiliates
        self._queue = queue
        self._deliveries = deliveries
        self._http = http
        self._network_hosts = frozenset(h.lower() for h in network_hosts)
        self._allow_loopback = allow_loopback
        self._max_hops = max_hops
        self._clock = clock or (lambda: datetime.now(UTC))

    # step 1
    def follow_link(self, run_id: str, affiliate_id: str) -> FollowResult:
        config = self._config(run_id, affiliate_id, StepName.FOLLOW_LINK)
        if config is None:
            return FollowResult(ok=False)
        if not config.test_link:
            self._fail(
                run_id,
                StepName.FOLLOW_LINK,
                "the affiliate's configuration has no test_link: "
                "add the URL of a click on your tracker, then start again",
                {},
            )
            return FollowResult(ok=False)
        outcome = follow_redirects(
            config.test_link,
            client=self._http,
            network_hosts=self._network_hosts,
            allow_loopback=self._allow_loopback,
            max_hops=self._max_hops,
        )
        details: dict[str, Any] = {
            "test_link": config.test_link,
            "redirect_chain": [hop.to_json() for hop in outcome.chain],
            "network_link": outcome.network_link,
        }
        if outcome.network_link is None:
            details["error_kind"] = outcome.kind
            self._fail(run_id, StepName.FOLLOW_LINK, outcome.reason or "the test link was not followed", details)
            return FollowResult(ok=False)
        self._ok(run_id, StepName.FOLLOW_LINK, details)
        return FollowResult(ok=True, network_link=outcome.network_link)

    # step 2
    def check_tracker(self, run_id: str, affiliate_id: str, network_link: str) -> TrackerResult:
        step = StepName.CHECK_TRACKER
        config = self._config(run_id, affiliate_id, step)
        if config is None:
            return TrackerResult(ok=False)
        offer_type = offer_type_of(network_link, config.affiliate_id)
        details: dict[str, Any] = {"network_link": network_link, "offer_type": offer_type.value}
        placeholders = unfilled_placeholders(network_link)
        if placeholders:
            details["unfilled"] = placeholders
            names = ", ".join(placeholders)
            noun = "placeholder" if len(placeholders) == 1 else "placeholders"
            verb = "was" if len(placeholders) == 1 else "were"
            self._fail(run_id, step, f"{noun} {names} {verb} not filled by your tracker", details)
            return TrackerResult(ok=False)
        try:
            info = read_link(network_link, offer_type)
        except (LinkError, TrackerError) as exc:
            self._fail(run_id, step, f"the network link the test link reached cannot be read: {exc.message}", details)
            return TrackerResult(ok=False)
        details.update({"tracker": info.tracker, "link_affiliate_id": info.affiliate_id, "offer_id": info.offer_id})
        if info.affiliate_id != config.affiliate_id:
            self._fail(
                run_id,
                step,
                f"the network link carries affiliate ID {info.affiliate_id}, not {config.affiliate_id}: "
                "your tracker sends traffic under another affiliate's link",
                details,
            )
            return TrackerResult(ok=False)
        try:
            values = parse_tracker(info.values, config.tracker)
        except TrackerError as exc:
            details["error_kind"] = exc.reason
            self._fail(
                run_id, step, f"the tracker {info.tracker} does not match your structure: {exc.message}", details
            )
            return TrackerResult(ok=False)
        details["tracker_values"] = values
        self._ok(run_id, step, details)
        return TrackerResult(ok=True, offer_id=info.offer_id, offer_type=offer_type, tracker_values=values)

    # step 3
    def fire_postbacks(
        self,
        run_id: str,
        affiliate_id: str,
        *,
        network_link: str,
        offer_id: str | None,
        offer_type: OfferType,
        tracker_values: Mapping[str, str],
        waits: Sequence[int],
        deadline_s: int,
        started_at: datetime,
    ) -> DeliveryCheck:
        """Queue each of the affiliate's postbacks once, for its first event.

        The delivery IDs are deterministic and every message's `created_at` is the run's start
        (not the step's clock), so a retried step addresses the same delivery items."""
        step = StepName.FIRE_POSTBACKS
        config = self._config(run_id, affiliate_id, step)
        if config is None:
            return DeliveryCheck(verdict=RunVerdict.FAILED)
        now = self._clock()
        link_offer = offer_id or "test"
        messages: list[PostbackMessage] = []
        for index, spec in enumerate(config.postbacks):
            event = spec.events[0]
            # A postback limited to other offers would never fire for this link's offer: test
            # it with its first offer, so that every postback is checked.
            offer = link_offer if spec.offers is None or link_offer in spec.offers else spec.offers[0]
            conversion = Conversion(
                transaction_id=f"test-{run_id}-{index + 1}",
                event=event,
                offer=Offer(id=offer, type=offer_type, name="test link"),
                amount=TEST_AMOUNT,
                amount_text="0",
                currency=TEST_CURRENCY,
                link=network_link,
                occurred_at=now,
            )
            rendered = render_postback(spec, macro_values(conversion, config.affiliate_id, tracker_values))
            messages.append(
                postback_message(conversion, config, index, spec, rendered, created_at=started_at, test_run_id=run_id)
            )
        refused = self._queue.send(messages)
        if refused:
            # Raised, not recorded: the workflow retries the step, and only then records it failed.
            raise InfrastructureError(f"the postback queue refused {len(refused)} of {len(messages)} test postbacks")
        details = {
            "postbacks": [
                {
                    "n": n,
                    "event": m.event.value,
                    "offer_id": m.offer_id,
                    "transaction_id": m.transaction_id,
                    "method": m.method.value,
                    "url": m.url,
                    "delivery_id": m.delivery_id,
                    "created_at": key_time(m.created_at),
                }
                for n, m in enumerate(messages, start=1)
            ]
        }
        self._ok(run_id, step, details)
        return DeliveryCheck(
            verdict=RunVerdict.RUNNING,
            delivery_ids=[m.delivery_id for m in messages],
            checks=0,
            next_wait_s=next_wait_s(waits, 0, deadline_s),
            fired_at=now,
        )

    # step 4, in a loop
    def check_delivery(
        self,
        run_id: str,
        *,
        affiliate_id: str,
        delivery_ids: Sequence[str],
        checks: int,
        summary: str,
        waits: Sequence[int],
        deadline_s: int,
        started_at: datetime,
        fired_at: datetime | None = None,
    ) -> DeliveryCheck:
        step = StepName.CHECK_DELIVERY
        now = self._clock()
        # The fire step created every test postback at the run's start: that and the
        # affiliate address each one in the delivery log.
        records = [self._deliveries.get(DeliveryRef(affiliate_id, started_at, d)) for d in delivery_ids]
        states = [r.state if r is not None else DeliveryState.PENDING for r in records]
        new_summary = ", ".join(
            f"{n}:{state.value}/{len(r.attempts) if r else 0}"
            for n, (state, r) in enumerate(zip(states, records, strict=True), 1)
        )
        deadline = (fired_at or started_at) + timedelta(seconds=deadline_s)
        within = describe_duration(deadline_s)
        reason: str | None = None
        if all(state is DeliveryState.DELIVERED for state in states):
            verdict = RunVerdict.PASSED
        elif any(state is DeliveryState.FAILED for state in states):
            verdict = RunVerdict.FAILED
            reason = "; ".join(
                f"{_postback_label(n, r)} failed for good: {describe_attempts(r.attempts)}"
                + (f" ({r.last_error})" if r.last_error else "")
                for n, (state, r) in enumerate(zip(states, records, strict=True), 1)
                if state is DeliveryState.FAILED and r is not None
            )
        elif now >= deadline:
            verdict = RunVerdict.FAILED
            reason = "; ".join(
                f"{_postback_label(n, r)} was not delivered: {describe_attempts(r.attempts)} over {within}"
                if r is not None and r.attempts
                else f"{_postback_label(n, r)} was not delivered within {within}: no attempt was made"
                for n, (state, r) in enumerate(zip(states, records, strict=True), 1)
                if state is not DeliveryState.DELIVERED
            )
        else:
            verdict = RunVerdict.RUNNING
        ok = verdict is not RunVerdict.FAILED
        if verdict is not RunVerdict.RUNNING or new_summary != summary:
            # Only changes are logged: a quiet loop of checks would fill the run record.
            details = {
                "check": checks + 1,
                "deliveries": [
                    {
                        "n": n,
                        "delivery_id": delivery_id,
                        "state": state.value,
                        "attempts": len(r.attempts) if r else 0,
                        "http_status": r.http_status if r else None,
                        "url": r.message.url if r else None,
                    }
                    for n, (delivery_id, state, r) in enumerate(zip(delivery_ids, states, records, strict=True), 1)
                ],
            }
            self._runs.append_step(run_id, TestStep(name=step, at=now, ok=ok, details=details))
        if verdict is not RunVerdict.RUNNING:
            self._runs.finish(run_id, verdict, step=None if ok else step.value, reason=reason, at=now)
        return DeliveryCheck(
            verdict=verdict,
            delivery_ids=list(delivery_ids),
            checks=checks + 1,
            next_wait_s=next_wait_s(waits, checks + 1, (deadline - now).total_seconds()),
            summary=new_summary,
            fired_at=fired_at,
        )

    # the Catch of every Task: an error becomes a verdict, never a stuck run
    def record_verdict(self, run_id: str, *, failed_step: str, error: str, cause: str) -> DeliveryCheck:
        now = self._clock()
        message = _error_message(cause)
        reason = (
            f"the {failed_step} step could not complete ({error}): {message}"
            if message
            else f"the {failed_step} step could not complete ({error})"
        )
        self._runs.append_step(
            run_id,
            TestStep(name=StepName.RECORD_VERDICT, at=now, ok=False, details={"error": error, "cause": cause[:1000]}),
        )
        self._runs.finish(run_id, RunVerdict.FAILED, step=failed_step, reason=reason, at=now)
        return DeliveryCheck(verdict=RunVerdict.FAILED)

    # --- helpers

    def _config(self, run_id: str, affiliate_id: str, step: StepName) -> AffiliateConfig | None:
        stored = self._affiliates.get(affiliate_id)
        if stored is None:
            self._fail(run_id, step, f"affiliate {affiliate_id} has no postback configuration", {})
            return None
        return stored.config

    def _ok(self, run_id: str, step: StepName, details: dict[str, Any]) -> None:
        self._runs.append_step(run_id, TestStep(name=step, at=self._clock(), ok=True, details=details))

    def _fail(self, run_id: str, step: StepName, reason: str, details: dict[str, Any]) -> None:
        now = self._clock()
        self._runs.append_step(run_id, TestStep(name=step, at=now, ok=False, details={**details, "reason": reason}))
        self._runs.finish(run_id, RunVerdict.FAILED, step=step.value, reason=reason, at=now)


def _error_message(cause: str) -> str:
    """The message of a Lambda error cause (a JSON object with errorMessage), else the cause."""
    try:
        parsed = json.loads(cause)
    except ValueError:
        return cause[:300]
    if isinstance(parsed, dict) and isinstance(parsed.get("errorMessage"), str):
        return str(parsed["errorMessage"])[:300]
    return cause[:300]
