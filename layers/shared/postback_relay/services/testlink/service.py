"""`TestLinkService`: the steps of a test-link run (contract section 5), over ports, and the
answers each gives the workflow.

A run is driven by the Step Functions workflow `statemachine/testlink.asl.json`: each Task
calls the test-link function with a `step`, which lands on one method of `TestLinkService`.
Every step appends its entry (what it saw: redirect chain, tracker values, postback URLs,
delivery states) to the run record. A step that fails also writes the verdict `failed` with
the step and a reason a person can act on, so the workflow only branches on the answer.

Nothing here knows boto3 or HTTP libraries: the redirects are followed through `HopClient`
(the dispatcher's `SafeHttpClient` in Lambda, a fake in unit tests). What each step does
lives beside it: `link` (steps 1 and 2), `postbacks` (step 3), `deliveries` (step 4).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from postback_relay.domain.config import AffiliateConfig
from postback_relay.domain.errors import InfrastructureError, PostbackRefused
from postback_relay.domain.events import OfferType
from postback_relay.domain.testrun import MAX_HOPS, RunVerdict, StepName, TestStep, next_wait_s
from postback_relay.ports import AffiliateStore, DeliveryLog, HopClient, PostbackQueue, TestRunStore
from postback_relay.services.testlink.deliveries import Delivery, judge, read_deliveries, summary_of
from postback_relay.services.testlink.link import follow_redirects, read_network_link
from postback_relay.services.testlink.postbacks import TestClick, fired_details, messages_for

NO_TEST_LINK = (
    "the affiliate's configuration has no test_link: add the URL of a click on your tracker, then start again"
)


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
        step = StepName.FOLLOW_LINK
        config = self._config(run_id, affiliate_id, step)
        if config is None:
            return FollowResult(ok=False)
        if not config.test_link:
            self._fail(run_id, step, NO_TEST_LINK, {})
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
            self._fail(run_id, step, outcome.reason or "the test link was not followed", details)
            return FollowResult(ok=False)
        self._ok(run_id, step, details)
        return FollowResult(ok=True, network_link=outcome.network_link)

    # step 2
    def check_tracker(self, run_id: str, affiliate_id: str, network_link: str) -> TrackerResult:
        step = StepName.CHECK_TRACKER
        config = self._config(run_id, affiliate_id, step)
        if config is None:
            return TrackerResult(ok=False)
        reading = read_network_link(network_link, config)
        if reading.reason is not None:
            self._fail(run_id, step, reading.reason, reading.details)
            return TrackerResult(ok=False)
        self._ok(run_id, step, reading.details)
        return TrackerResult(
            ok=True, offer_id=reading.offer_id, offer_type=reading.offer_type, tracker_values=reading.values
        )

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
        """Queue each of the affiliate's postbacks once, for its first event; a retried step
        addresses the same delivery items (`messages_for`)."""
        step = StepName.FIRE_POSTBACKS
        config = self._config(run_id, affiliate_id, step)
        if config is None:
            return DeliveryCheck(verdict=RunVerdict.FAILED)
        now = self._clock()
        click = TestClick(run_id, network_link, offer_id, offer_type, tracker_values)
        try:
            messages = messages_for(click, config, now=now, started_at=started_at, allow_loopback=self._allow_loopback)
        except PostbackRefused as exc:
            self._fail(run_id, step, exc.message, {"error_kind": exc.kind, "postback": exc.index})
            return DeliveryCheck(verdict=RunVerdict.FAILED)
        refused = self._queue.send(messages)
        if refused:
            # Raised, not recorded: the workflow retries the step, and only then records it failed.
            raise InfrastructureError(f"the postback queue refused {len(refused)} of {len(messages)} test postbacks")
        self._ok(run_id, step, fired_details(messages))
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
        now = self._clock()
        deliveries = read_deliveries(
            self._deliveries, affiliate_id=affiliate_id, started_at=started_at, delivery_ids=delivery_ids
        )
        # The deadline counts from the fire step, so that following the link never eats into it.
        deadline = (fired_at or started_at) + timedelta(seconds=deadline_s)
        verdict, reason = judge(deliveries, now=now, deadline=deadline, deadline_s=deadline_s)
        new_summary = summary_of(deliveries)
        if verdict is not RunVerdict.RUNNING or new_summary != summary:
            # Only changes are logged: a quiet loop of checks would fill the run record.
            self._record_check(run_id, now, checks + 1, deliveries, ok=verdict is not RunVerdict.FAILED)
        if verdict is not RunVerdict.RUNNING:
            self._finish_checks(run_id, now, verdict, reason)
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

    def _record_check(self, run_id: str, now: datetime, check: int, deliveries: list[Delivery], *, ok: bool) -> None:
        details = {"check": check, "deliveries": [d.to_json() for d in deliveries]}
        self._runs.append_step(run_id, TestStep(name=StepName.CHECK_DELIVERY, at=now, ok=ok, details=details))

    def _finish_checks(self, run_id: str, now: datetime, verdict: RunVerdict, reason: str | None) -> None:
        failed_step = StepName.CHECK_DELIVERY.value if verdict is RunVerdict.FAILED else None
        self._runs.finish(run_id, verdict, step=failed_step, reason=reason, at=now)


def _error_message(cause: str) -> str:
    """The message of a Lambda error cause (a JSON object with errorMessage), else the cause."""
    try:
        parsed = json.loads(cause)
    except ValueError:
        return cause[:300]
    if isinstance(parsed, dict) and isinstance(parsed.get("errorMessage"), str):
        return str(parsed["errorMessage"])[:300]
    return cause[:300]
