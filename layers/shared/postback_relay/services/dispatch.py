"""Deliver postback messages (contract section 4): at least once, once delivered never again,
retried on a schedule, failed for good with a reason, and never held up by one dead endpoint.

`Dispatcher.dispatch_batch` takes the records of one SQS batch, sends their postbacks
concurrently (a bounded thread pool) and returns each record's outcome; the handler reports
those that stay on the queue as batch item failures. Every decision is made here, over ports;
the rules themselves (classification, schedule, circuit transitions) are pure, in
`domain.delivery`.
"""

from __future__ import annotations

import contextvars
import json
import logging
import random
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from urllib.parse import urlsplit

from pydantic import ValidationError

from postback_relay.domain.addresses import DEFAULT_PORTS
from postback_relay.domain.delivery import (
    EXCERPT_CHARS,
    Attempt,
    AttemptOutcome,
    AttemptVerdict,
    DeliveryState,
    PostbackMessage,
    classify,
    endpoint_of,
    failure_reason,
    retry_delay,
)
from postback_relay.domain.errors import ConflictError
from postback_relay.domain.records import DeliveryRecord, ReceivedPostback, SendResult
from postback_relay.domain.signing import webhook_headers
from postback_relay.ports import AffiliateStore, DispatchDeliveryLog, PostbackSender, RetryControl
from postback_relay.services.circuit import CircuitBreakers
from postback_relay.services.waits import Wait, Waits

logger = logging.getLogger(__name__)

# Receives of a postback's message (its re-sent copies' included, see WaitSchedule.receives)
# from which it is attempted even with its circuit open: a postback is never deferred for
# ever, and one message never reaches the queue's maxReceiveCount (50, template.yaml) by
# deferrals alone.
MAX_DEFERRED_RECEIVES = 30


class DispatchOutcome(StrEnum):
    DELIVERED = "delivered"
    RETRIED = "retried"  # another attempt is scheduled (a delayed copy queued, or the message hidden)
    FAILED = "failed"  # failed for good: logged, on the DLQ, removed from the queue
    DEFERRED = "deferred"  # circuit open: not called, back when it may be
    WAITING = "waiting"  # received before its due time (a wait past 15 minutes): queued again, not called
    SKIPPED = "skipped"  # already delivered, failed for good, or a copy in the same batch: nothing to do
    # Too little of the invocation left for a send and its record: untouched, back after the
    # queue's visibility timeout (a batch item failure). Never sent, so never sent twice.
    POSTPONED = "postponed"


@dataclass(frozen=True)
class DispatchResult:
    outcome: DispatchOutcome
    delivery_id: str | None = None
    attempt: int | None = None
    status: int | None = None
    latency_ms: int | None = None
    delay_s: int | None = None
    reason: str | None = None
    # The wait went on in a new, delayed copy of the message: the received one is deleted.
    requeued: bool = False

    @property
    def stays_on_queue(self) -> bool:
        """Report the record as a batch item failure: SQS hands it back after its visibility
        timeout. Only a wait whose requeue failed stays (hidden, in flight)."""
        waits = (DispatchOutcome.RETRIED, DispatchOutcome.DEFERRED, DispatchOutcome.WAITING)
        return self.outcome is DispatchOutcome.POSTPONED or (self.outcome in waits and not self.requeued)


@dataclass(frozen=True)
class _Due:
    """A postback past the pre-check: to be attempted now, unless its circuit is open."""

    record: ReceivedPostback  # its receive count counts the receives of its earlier copies
    message: PostbackMessage
    attempt: int  # the number of this attempt
    endpoint: str | None  # its circuit's key; None for a URL that names no host


@dataclass(frozen=True)
class _Sent:
    started_at: datetime
    result: SendResult


@dataclass(frozen=True)
class _Decision:
    """What an answer comes to: its verdict (FAILED for a retry past the schedule's last
    attempt) and, for a retry, the seconds before the next attempt."""

    verdict: AttemptVerdict
    delay_s: int | None = None

    @property
    def outcome(self) -> AttemptOutcome:
        return self.verdict.outcome


class Dispatcher:
    def __init__(
        self,
        *,
        deliveries: DispatchDeliveryLog,
        sender: PostbackSender,
        retries: RetryControl,
        breakers: CircuitBreakers,
        affiliates: AffiliateStore | None = None,
        max_workers: int = 10,
        delay_scale: float = 1.0,
        send_budget_s: float = 0.0,
        record_budget_s: float = 0.0,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        waits: Waits | None = None,
    ) -> None:
        """`send_budget_s`: the longest one send takes (its connect and read timeouts);
        `record_budget_s`: the longest its record write takes (one AWS call, retries
        included). A batch given the invocation's time left starts no send with less left
        than the two together. `waits`: how a postback waits (`wiring.dispatcher` builds
        them on the same queue, scale and clock); when not given, they are built so here."""
        self._deliveries = deliveries
        self._sender = sender
        self._retries = retries
        self._breakers = breakers
        self._affiliates = affiliates
        self._max_workers = max_workers
        self._scale = delay_scale
        self._time_needed_s = send_budget_s + record_budget_s
        self._rand = rand
        self._clock = clock
        self._waits = waits or Waits(retries=retries, delay_scale=delay_scale, clock=clock)

    @property
    def breakers(self) -> CircuitBreakers:
        return self._breakers

    def dispatch_batch(
        self, records: Sequence[ReceivedPostback], *, time_left: Callable[[], float] | None = None
    ) -> dict[str, DispatchResult | Exception]:
        """Each record's outcome by message ID; an exception means the record's fate is
        unknown (nothing or not everything was recorded): the caller must leave it on the queue.

        `time_left`: the seconds left in the invocation (Lambda's context). A record is
        POSTPONED, untouched, when less is left than a send and its record write need, both
        when its turn comes and again just before its send: a send cut off by the function's
        timeout, its log write never made, would be sent again by the redelivered message
        (and the batch's partial answer, lost with the timeout, would bring back every other
        record too, waits already re-queued included).

        Records of the batch that carry the same delivery (a postback queued twice, e.g. by
        the platform's retry after SQS took part of a conversion's postbacks) are sent once:
        the first is dispatched, each other one is a SKIPPED duplicate, deleted whatever the
        first's outcome. When the first stays on the queue (retried, deferred, crashed) it
        carries the delivery on by itself, on its schedule; keeping the copy as well would
        add an attempt off the schedule each time it came back.

        Each record's message is parsed once, here; a message that cannot be parsed is dead
        lettered on its own, never taken for a copy of another.
        """
        if not records:
            return {}
        first_of: dict[str, ReceivedPostback] = {}
        duplicates: list[tuple[ReceivedPostback, ReceivedPostback, str]] = []
        to_send: list[tuple[ReceivedPostback, PostbackMessage | ValidationError]] = []
        for record in records:
            message = _read(record.body)
            if isinstance(message, PostbackMessage):
                first = first_of.get(message.delivery_id)
                if first is not None:
                    duplicates.append((record, first, message.delivery_id))
                    continue
                first_of[message.delivery_id] = record
            to_send.append((record, message))
        outcomes: dict[str, DispatchResult | Exception] = {}
        workers = min(self._max_workers, len(to_send))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="postback") as pool:
            # Each in a copy of this invocation's context: its log lines keep the invocation's keys.
            futures = {
                record.message_id: pool.submit(
                    contextvars.copy_context().run, self._dispatch, record, message, time_left
                )
                for record, message in to_send
            }
            for message_id, future in futures.items():
                error = future.exception()
                outcomes[message_id] = error if isinstance(error, Exception) else future.result()
        for record, first, delivery_id in duplicates:
            first_outcome = outcomes[first.message_id]
            logger.info(
                "postback queued twice in one batch: sent once",
                extra={
                    "delivery_id": delivery_id,
                    "first_outcome": (
                        first_outcome.outcome.value if isinstance(first_outcome, DispatchResult) else "crashed"
                    ),
                },
            )
            outcomes[record.message_id] = DispatchResult(
                DispatchOutcome.SKIPPED, delivery_id, reason=f"duplicate of {first.message_id}"
            )
        postponed = sum(1 for o in outcomes.values() if isinstance(o, DispatchResult) and o.outcome is _POSTPONED)
        if postponed:
            logger.warning(
                "too little time left in this invocation: postbacks left on the queue, unsent",
                extra={"postponed": postponed, "batch": len(records)},
            )
        return outcomes

    def dispatch(self, record: ReceivedPostback) -> DispatchResult:
        """Deliver one postback message: at most one call to the affiliate's server."""
        return self._dispatch(record, _read(record.body))

    def _dispatch(
        self,
        record: ReceivedPostback,
        message: PostbackMessage | ValidationError,
        time_left: Callable[[], float] | None = None,
    ) -> DispatchResult:
        """The four steps of one postback: the pre-check (can it be sent, is it due, is it
        still to deliver), the deferral (its endpoint's circuit open), the send, the record;
        none started with too little of the invocation left for a send and its record."""
        if self._out_of_time(time_left):
            return _postponed(message)
        due = self._pre_check(record, message)
        if isinstance(due, DispatchResult):
            return due
        deferred = self._defer(due)
        if deferred is not None:
            return deferred
        if self._out_of_time(time_left):
            return _postponed(message)
        return self._record(due, self._send(due))

    def _out_of_time(self, time_left: Callable[[], float] | None) -> bool:
        return time_left is not None and time_left() < self._time_needed_s

    # --- step 1: the pre-check ----------------------------------------------------------------

    def _pre_check(self, record: ReceivedPostback, message: PostbackMessage | ValidationError) -> _Due | DispatchResult:
        """The postback as due for its next attempt; or what became of it without a call:
        dead lettered (unreadable), queued again (not due yet), skipped (delivered or failed
        for good already) or held (failed for good, perhaps being replayed)."""
        if isinstance(message, ValidationError):
            # It can never be sent; the DLQ keeps it for a person to look at.
            problem = f"invalid postback message: {message.error_count()} error(s)"
            self._retries.dead_letter(record.body, reason=problem, delivery_id=_delivery_id_in(record.body))
            return DispatchResult(DispatchOutcome.FAILED, reason=problem)
        if message.schedule is not None:
            record = replace(record, receive_count=message.schedule.receives + record.receive_count)
            early = self._waits.until_due(record, message, message.schedule)
            if early is not None:
                return _waiting(DispatchOutcome.WAITING, message, early, "not due yet")
        attempt = self._next_attempt_in_log(record, message)
        if isinstance(attempt, DispatchResult):
            return attempt
        return _Due(record, message, attempt, _endpoint(message.url))

    def _next_attempt_in_log(self, record: ReceivedPostback, message: PostbackMessage) -> int | DispatchResult:
        """The number of the attempt due, from the delivery log; or the result of a delivery
        that is settled already.

        The log is read (consistently) before every call, a first receive included. A
        redelivery may have been delivered, or failed for good, by a run that crashed before
        it could report. And ApproximateReceiveCount = 1 means "first receive of this SQS
        message", not "first copy of this postback": a postback can be queued as several
        messages. The outbox's stream hands a record over at least once (a batch retried or
        bisected after a failure, a SendMessageBatch whose answer was lost: each sends the
        messages again); SQS's standard queue may itself deliver a message twice; and
        `postback replay` queues a stored message again. Skipping the read on a first receive
        would leave only the conditional UpdateItem after the send, which can refuse to log
        a second delivery but cannot take back the call: each copy would reach the affiliate,
        and a copy of a postback failed for good (a 404, an unexpected body) would be sent
        again without anyone replaying it. So the read stays: one read unit (item < 4 KB),
        $0.14 per million postbacks on demand in eu-west-1; a conditional write before the
        send, the other sound guard, would cost five times that. What stays open is two
        copies in flight at the same moment in different instances: both read `pending` and
        both call. That is accepted as at-least-once; the conditional write still logs the
        delivery once.
        """
        existing = self._deliveries.get(message.ref)
        if existing is None:
            return 1
        if existing.state is DeliveryState.DELIVERED or (
            existing.state is DeliveryState.FAILED and record.receive_count > 1
        ):
            return DispatchResult(DispatchOutcome.SKIPPED, message.delivery_id, reason=existing.state.value)
        if existing.state is DeliveryState.FAILED:
            held = self._waits.hold_failed(record, message)
            return _waiting(DispatchOutcome.DEFERRED, message, held, "failed for good; held once")
        return _next_attempt(existing)

    # --- step 2: the deferral -----------------------------------------------------------------

    def _defer(self, due: _Due) -> DispatchResult | None:
        """A postback whose endpoint's circuit is open is not called: a delayed copy comes
        back when it may be. None: the call may go."""
        # A message deferred again and again would reach the queue's maxReceiveCount (50) and
        # be moved to the DLQ with no reason logged: past a bound it is attempted regardless.
        if not due.endpoint or due.record.receive_count >= MAX_DEFERRED_RECEIVES:
            return None
        wait = self._breakers.admit(due.endpoint)
        if wait <= 0:
            return None
        message = due.message
        delay = max(1, int(wait + 0.999))
        deferral = f"circuit open for {due.endpoint}"
        try:
            self._deliveries.mark_deferred(message.scheduled(None), reason=deferral)
        except ConflictError:
            return DispatchResult(DispatchOutcome.SKIPPED, message.delivery_id, reason="delivered meanwhile")
        requeued = self._waits.wait(due.record, message, delay)
        return DispatchResult(
            DispatchOutcome.DEFERRED, message.delivery_id, delay_s=delay, reason=deferral, requeued=requeued
        )

    # --- step 3: the send ---------------------------------------------------------------------

    def _send(self, due: _Due) -> _Sent:
        """The one call to the affiliate's server (signed when its config asks)."""
        started_at = self._clock()
        result = self._sender.send(due.message, headers=self._signature(due.message, started_at))
        return _Sent(started_at, result)

    # --- step 4: the record -------------------------------------------------------------------

    def _record(self, due: _Due, sent: _Sent) -> DispatchResult:
        """What the answer means, logged: delivered, retried (a delayed copy queued) or failed
        for good (dead lettered)."""
        decision = self._decide(due, sent.result)
        attempt = _attempt(due.message, due.attempt, sent.started_at, sent.result, decision)
        log_fields = {
            "delivery_id": due.message.delivery_id,
            "transaction_id": due.message.transaction_id,
            "affiliate_id": due.message.affiliate_id,
            "endpoint": _loggable(due.message.url),
            "attempt": due.attempt,
            "status": sent.result.status,
            "latency_ms": sent.result.latency_ms,
            "outcome": decision.outcome.value,
        }
        if decision.outcome is AttemptOutcome.DELIVERED:
            self._write_attempt(due.message, attempt, DeliveryState.DELIVERED, None)
            logger.info("postback delivered", extra=log_fields)
            return DispatchResult(
                DispatchOutcome.DELIVERED,
                due.message.delivery_id,
                due.attempt,
                sent.result.status,
                sent.result.latency_ms,
            )
        if decision.outcome is AttemptOutcome.RETRY:
            return self._retry(due, sent.result, attempt, decision, log_fields)
        return self._fail(due, sent.result, attempt, decision, log_fields)

    def _decide(self, due: _Due, result: SendResult) -> _Decision:
        """Classify the answer, tell the endpoint's circuit, and schedule the next attempt: a
        retry past the schedule's last attempt fails for good."""
        verdict = classify(
            result.status, result.excerpt, due.message.expect, error_kind=result.error_kind, error=result.error
        )
        if due.endpoint and result.error_kind != "unsafe_url":
            # A 4xx or an unexpected body still proves the endpoint up: only outages count.
            self._breakers.record(
                due.endpoint,
                success=verdict.outcome is not AttemptOutcome.RETRY,
                affiliate_id=due.message.affiliate_id,
                reason=failure_reason(result.status, verdict.error_kind),
            )
        if verdict.outcome is not AttemptOutcome.RETRY:
            return _Decision(verdict)
        delay_s = retry_delay(
            due.attempt,
            status=result.status,
            error_kind=verdict.error_kind,
            retry_after_s=result.retry_after_s,
            scale=self._scale,
            rand=self._rand,
        )
        if delay_s is None:
            last = f"{verdict.reason} (attempt {due.attempt}, the last)"
            return _Decision(replace(verdict, outcome=AttemptOutcome.FAILED, reason=last))
        return _Decision(verdict, delay_s)

    def _retry(
        self, due: _Due, result: SendResult, attempt: Attempt, decision: _Decision, log_fields: dict[str, object]
    ) -> DispatchResult:
        message = due.message
        assert decision.delay_s is not None
        reason = decision.verdict.reason
        if not self._write_attempt(message, attempt, DeliveryState.RETRYING, reason):
            return DispatchResult(DispatchOutcome.SKIPPED, message.delivery_id, reason="delivered meanwhile")
        requeued = self._waits.wait(due.record, message, decision.delay_s)
        logger.info("postback retried", extra=log_fields | {"delay_s": decision.delay_s, "reason": reason})
        return DispatchResult(
            DispatchOutcome.RETRIED,
            message.delivery_id,
            due.attempt,
            result.status,
            result.latency_ms,
            decision.delay_s,
            reason,
            requeued,
        )

    def _fail(
        self, due: _Due, result: SendResult, attempt: Attempt, decision: _Decision, log_fields: dict[str, object]
    ) -> DispatchResult:
        message = due.message
        reason = decision.verdict.reason
        # The DLQ first: if logging the failure then fails, the redelivered message is tried
        # once more rather than dropped with no trace on the DLQ. It gets the postback as
        # queued, without the schedule of its last wait.
        body = due.record.body if message.schedule is None else message.scheduled(None).model_dump_json()
        self._retries.dead_letter(body, reason=reason or "failed", delivery_id=message.delivery_id)
        if not self._write_attempt(message, attempt, DeliveryState.FAILED, reason):
            return DispatchResult(DispatchOutcome.SKIPPED, message.delivery_id, reason="delivered meanwhile")
        logger.warning("postback failed", extra=log_fields | {"reason": reason})
        return DispatchResult(
            DispatchOutcome.FAILED, message.delivery_id, due.attempt, result.status, result.latency_ms, None, reason
        )

    def _write_attempt(
        self, message: PostbackMessage, attempt: Attempt, state: DeliveryState, reason: str | None
    ) -> bool:
        """False when the delivery was found delivered already (another run got there first)."""
        try:
            self._deliveries.record_attempt(message.scheduled(None), attempt, state, reason=reason)
        except ConflictError:
            return False
        return True

    def _signature(self, message: PostbackMessage, now: datetime) -> dict[str, str] | None:
        if not message.signed:
            return None
        stored = self._affiliates.get(message.affiliate_id) if self._affiliates else None
        secret = stored.config.signing_secret if stored else None
        if not secret:
            logger.warning("signed postback without a signing secret", extra={"affiliate_id": message.affiliate_id})
            return None
        body = (message.body or "").encode()
        return webhook_headers(secret, message.delivery_id, int(now.timestamp()), body)


_POSTPONED = DispatchOutcome.POSTPONED


def _postponed(message: PostbackMessage | ValidationError) -> DispatchResult:
    delivery_id = message.delivery_id if isinstance(message, PostbackMessage) else None
    return DispatchResult(_POSTPONED, delivery_id, reason="too little time left in this invocation")


def _waiting(outcome: DispatchOutcome, message: PostbackMessage, wait: Wait, reason: str) -> DispatchResult:
    """A postback that waits, no call made: how long, and whether a delayed copy carries it."""
    return DispatchResult(outcome, message.delivery_id, delay_s=wait.delay_s, reason=reason, requeued=wait.requeued)


def _next_attempt(existing: DeliveryRecord) -> int:
    if not existing.attempts:
        return 1
    last = existing.attempts[-1]
    # A replay starts a new round: the last attempt before it ended the previous one.
    return 1 if last.outcome == AttemptOutcome.FAILED.value else last.attempt + 1


def _attempt(message: PostbackMessage, number: int, at: datetime, result: SendResult, decision: _Decision) -> Attempt:
    excerpt = result.excerpt if result.excerpt is not None else result.error
    return Attempt(
        attempt=number,
        at=at,
        url=message.url,
        method=message.method,
        status=result.status,
        latency_ms=result.latency_ms,
        excerpt=excerpt[:EXCERPT_CHARS] if excerpt else None,
        error_kind=decision.verdict.error_kind,
        outcome=decision.outcome.value,
    )


def _endpoint(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORTS.get(parts.scheme, 0)
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return endpoint_of(parts.scheme, parts.hostname, port)


def _loggable(url: str) -> str:
    """Host and path only: the query carries the affiliate's values."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unreadable url>"
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}{parts.path}"


def _read(body: str) -> PostbackMessage | ValidationError:
    """The message a record carries, parsed once; the error when it cannot be sent."""
    try:
        return PostbackMessage.model_validate_json(body)
    except ValidationError as exc:
        return exc


def _delivery_id_in(body: str) -> str | None:
    try:
        value = json.loads(body).get("delivery_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None
