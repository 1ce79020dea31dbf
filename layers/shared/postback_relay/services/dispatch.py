"""Deliver postback messages (contract section 4): at least once, once delivered never again,
retried on a schedule, failed for good with a reason, and never held up by one dead endpoint.

`Dispatcher.dispatch_batch` takes the records of one SQS batch, sends their postbacks
concurrently (a bounded thread pool) and returns each record's outcome; the handler reports
those that stay on the queue as batch item failures. Every decision is made here, over ports;
the rules themselves (classification, schedule, circuit transitions) are pure, in
`domain.delivery`.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit

from aws_lambda_powertools import Logger
from pydantic import ValidationError

from postback_relay.domain.delivery import (
    EXCERPT_CHARS,
    Attempt,
    AttemptOutcome,
    Circuit,
    CircuitStatus,
    DeliveryState,
    PostbackMessage,
    WaitSchedule,
    circuit_after,
    circuit_trial,
    circuit_wait,
    classify,
    endpoint_of,
    failure_reason,
    hop_delay,
    retry_delay,
    visibility_within_receipt,
)
from postback_relay.domain.errors import ConflictError, DomainError
from postback_relay.domain.notices import CircuitChange, CircuitNotice
from postback_relay.domain.signing import webhook_headers
from postback_relay.ports import (
    AffiliateStore,
    DeliveryRecord,
    DispatchDeliveryLog,
    EndpointStore,
    Notifier,
    PostbackSender,
    RetryControl,
    SendResult,
)

logger = Logger(child=True)

# Receives of a postback's message (its re-sent copies' included, see WaitSchedule.receives)
# from which it is attempted even with its circuit open: a postback is never deferred for
# ever, and one message never reaches the queue's maxReceiveCount (50, template.yaml) by
# deferrals alone.
MAX_DEFERRED_RECEIVES = 30
# A copy received this little before its due time is due: SQS delays count whole seconds.
EARLY_TOLERANCE_S = 1.0
# How long a first receive of a `failed` delivery is held: time for `postback replay` to
# mark the deliveries it queued (one write each, after the whole queue send).
REPLAY_SETTLE_S = 60


# --- circuit breakers ----------------------------------------------------------------------


@dataclass
class _Known:
    circuit: Circuit
    read_at: float  # when the shared store was last read for it; 0: never


RECENT_FAILURES = 50  # per endpoint: what the notice of an opening names


class CircuitBreakers:
    """Circuit breakers per endpoint: in memory, shared through the EndpointStore.

    A healthy endpoint costs no store access: the store is read only for an endpoint that
    failed here (at most every `cache_s`), and written only on a transition (open, trial,
    closed). So an instance that has only seen successes calls an endpoint another instance
    found dead once, learns of the open circuit from that failure, and defers after it.

    When a circuit opens (from closed) and when it closes, ops are told once: the write that
    records the transition is conditional on the state before, so of several instances that
    see the same transition one alone wins the write, and that one sends the notice. A notice
    that cannot be sent is logged and dropped: it never touches a postback.
    """

    def __init__(
        self,
        store: EndpointStore,
        *,
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.time,
        cache_s: float = 5.0,
        trial_s: float = 30.0,
        scale: float = 1.0,
    ) -> None:
        self._store = store
        self._notifier = notifier
        self._clock = clock
        self._cache_s = cache_s
        self._trial_s = trial_s
        self._scale = scale
        self._known: dict[str, _Known] = {}
        self._recent: dict[str, deque[tuple[str, str]]] = {}  # endpoint -> (affiliate, reason) of failures
        self._transitions: Counter[CircuitChange] = Counter()
        self._lock = threading.Lock()

    def admit(self, endpoint: str) -> float:
        """0 when a call to the endpoint may go now; else the seconds it must wait."""
        now = self._clock()
        with self._lock:
            known = self._known.get(endpoint)
        looks_unhealthy = known is not None and (
            known.circuit.failures > 0 or known.circuit.status is not CircuitStatus.CLOSED
        )
        if known is not None and looks_unhealthy and now - known.read_at >= self._cache_s:
            known = self._refresh(endpoint, known, now)
        if known is None:
            return 0.0
        circuit = known.circuit
        wait = circuit_wait(circuit, now=now)
        if wait > 0 or circuit.status is CircuitStatus.CLOSED:
            return wait
        # The cool-down is over: this call is the trial, if no other instance took it first.
        trial = circuit_trial(circuit, now=now, trial_s=max(1.0, self._trial_s * self._scale))
        with self._lock:
            current = self._known.get(endpoint)
            if current is None or current.circuit != circuit:
                return circuit_wait(current.circuit, now=now) if current else 0.0
            self._known[endpoint] = _Known(trial, now)
        if self._save(trial, expected_opened_until=circuit.opened_until) is False:
            known = self._refresh(endpoint, _Known(trial, now), now)
            return max(circuit_wait(known.circuit, now=now), 1.0)
        logger.info("circuit half-open: trial call", extra={"endpoint": endpoint})
        return 0.0

    def record(
        self, endpoint: str, *, success: bool, affiliate_id: str | None = None, reason: str | None = None
    ) -> None:
        """One call's outcome; a failure's affiliate and reason are kept for the notices."""
        now = self._clock()
        with self._lock:
            recent = self._recent.get(endpoint)
            if success:
                if recent:
                    recent.clear()
            elif affiliate_id is not None:
                if recent is None:
                    recent = self._recent[endpoint] = deque(maxlen=RECENT_FAILURES)
                recent.append((affiliate_id, reason or "failed"))
            known = self._known.get(endpoint) or _Known(Circuit(endpoint), 0.0)
            before = known.circuit
            after = circuit_after(before, success=success, now=now, scale=self._scale)
            if after.status is CircuitStatus.OPEN and recent:
                after = replace(
                    after,
                    affiliates=tuple(sorted({affiliate for affiliate, _ in recent})),
                    failure_reasons=tuple(
                        sorted(Counter(r for _, r in recent).items(), key=lambda item: (-item[1], item[0]))
                    ),
                )
            if after == before:
                return
            self._known[endpoint] = _Known(after, known.read_at)
        if after.status is before.status:
            return
        change: CircuitChange | None = None
        if before.status is CircuitStatus.CLOSED:
            change, condition = CircuitChange.OPENED, _FROM_CLOSED
        elif after.status is CircuitStatus.CLOSED:
            change, condition = CircuitChange.CLOSED, _FROM_OPEN
        else:  # a failed trial: open again, still the same outage
            condition = None
        won = self._save(after, only_from=condition)
        logger.info("circuit %s", after.status.value, extra={"endpoint": endpoint, "cool_down_s": after.cool_down_s})
        if change is not None and won:
            self._announce(change, before, after, now=now, affiliate_id=affiliate_id)

    def drain_transitions(self) -> dict[CircuitChange, int]:
        """Openings and closings this instance recorded (and announced) since the last call."""
        with self._lock:
            counts = dict(self._transitions)
            self._transitions.clear()
        return counts

    def _announce(
        self, change: CircuitChange, before: Circuit, after: Circuit, *, now: float, affiliate_id: str | None
    ) -> None:
        with self._lock:
            self._transitions[change] += 1
        noted = after if change is CircuitChange.OPENED else before
        affiliates = noted.affiliates or ((affiliate_id,) if affiliate_id else ())
        notice = CircuitNotice(
            endpoint=after.endpoint,
            change=change,
            affiliates=affiliates,
            failure_reasons=noted.failure_reasons,
            at=datetime.fromtimestamp(now, UTC),
            open_until=datetime.fromtimestamp(after.opened_until, UTC) if change is CircuitChange.OPENED else None,
        )
        if self._notifier is None:
            return
        try:
            self._notifier.notify(notice)
        except Exception as exc:  # noqa: BLE001 - a notice must never cost a postback
            logger.warning(
                "circuit notice not sent", extra={"endpoint": after.endpoint, "change": change.value, "error": str(exc)}
            )
        else:
            logger.info("circuit notice sent", extra={"endpoint": after.endpoint, "change": change.value})

    def _save(
        self,
        circuit: Circuit,
        *,
        expected_opened_until: float | None = None,
        only_from: frozenset[CircuitStatus] | None = None,
    ) -> bool | None:
        """Share a transition: True when written, False when its condition failed, None when
        the store could not be reached. Then this instance goes on with its own view (the
        breaker must never be the reason a postback is lost or sent twice) and announces
        nothing (it cannot know whether another instance did)."""
        try:
            return self._store.save(circuit, expected_opened_until=expected_opened_until, only_from=only_from)
        except DomainError as exc:
            logger.warning("circuit state not shared", extra={"endpoint": circuit.endpoint, "error": exc.message})
            return None

    def _refresh(self, endpoint: str, known: _Known, now: float) -> _Known:
        try:
            stored = self._store.get(endpoint)
        except DomainError as exc:
            logger.warning("circuit state not read", extra={"endpoint": endpoint, "error": exc.message})
            stored = None
        if stored is not None and stored.status is not CircuitStatus.CLOSED:
            merged = stored
        elif known.circuit.status is CircuitStatus.CLOSED:
            merged = known.circuit  # keep the local count of consecutive failures
        else:
            merged = Circuit(endpoint)  # another instance closed it
        fresh = _Known(merged, now)
        with self._lock:
            self._known[endpoint] = fresh
        return fresh


_FROM_CLOSED = frozenset({CircuitStatus.CLOSED})
_FROM_OPEN = frozenset({CircuitStatus.OPEN, CircuitStatus.HALF_OPEN})


# --- dispatch ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedPostback:
    """One SQS record as the dispatcher needs it."""

    message_id: str
    receipt_handle: str
    receive_count: int
    body: str
    # A lower bound of this receipt (epoch seconds): the message's SentTimestamp (or
    # ApproximateFirstReceiveTimestamp). SQS refuses a visibility past 12 hours from the
    # receipt; None counts the receipt as now.
    received_by: float | None = None


class DispatchOutcome(StrEnum):
    DELIVERED = "delivered"
    RETRIED = "retried"  # another attempt is scheduled (a delayed copy queued, or the message hidden)
    FAILED = "failed"  # failed for good: logged, on the DLQ, removed from the queue
    DEFERRED = "deferred"  # circuit open: not called, back when it may be
    WAITING = "waiting"  # received before its due time (a wait past 15 minutes): queued again, not called
    SKIPPED = "skipped"  # already delivered, failed for good, or a copy in the same batch: nothing to do


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
        return self.outcome in waits and not self.requeued


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
        rand: Callable[[], float] = random.random,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._deliveries = deliveries
        self._sender = sender
        self._retries = retries
        self._breakers = breakers
        self._affiliates = affiliates
        self._max_workers = max_workers
        self._scale = delay_scale
        self._rand = rand
        self._clock = clock

    @property
    def breakers(self) -> CircuitBreakers:
        return self._breakers

    def dispatch_batch(self, records: Sequence[ReceivedPostback]) -> dict[str, DispatchResult | Exception]:
        """Each record's outcome by message ID; an exception means the record's fate is
        unknown (nothing or not everything was recorded): the caller must leave it on the queue.

        Records of the batch that carry the same delivery (a postback queued twice, e.g. by
        the platform's retry after SQS took part of a conversion's postbacks) are sent once:
        the first is dispatched, each other one is a SKIPPED duplicate, deleted whatever the
        first's outcome. When the first stays on the queue (retried, deferred, crashed) it
        carries the delivery on by itself, on its schedule; keeping the copy as well would
        add an attempt off the schedule each time it came back.
        """
        if not records:
            return {}
        first_of: dict[str, ReceivedPostback] = {}
        duplicates: list[tuple[ReceivedPostback, ReceivedPostback]] = []
        to_send: list[ReceivedPostback] = []
        for record in records:
            delivery_id = _valid_delivery_id(record.body)
            first = first_of.get(delivery_id) if delivery_id is not None else None
            if first is not None:
                duplicates.append((record, first))
                continue
            if delivery_id is not None:
                first_of[delivery_id] = record
            to_send.append(record)
        outcomes: dict[str, DispatchResult | Exception] = {}
        workers = min(self._max_workers, len(to_send))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="postback") as pool:
            futures = {record.message_id: pool.submit(self.dispatch, record) for record in to_send}
            for message_id, future in futures.items():
                error = future.exception()
                outcomes[message_id] = error if isinstance(error, Exception) else future.result()
        for record, first in duplicates:
            first_outcome = outcomes[first.message_id]
            delivery_id = _valid_delivery_id(record.body)
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
        return outcomes

    def dispatch(self, record: ReceivedPostback) -> DispatchResult:
        """Deliver one postback message: at most one call to the affiliate's server."""
        try:
            message = PostbackMessage.model_validate_json(record.body)
        except ValidationError as exc:
            # It can never be sent; the DLQ keeps it for a person to look at.
            problem = f"invalid postback message: {exc.error_count()} error(s)"
            self._retries.dead_letter(record.body, reason=problem, delivery_id=_delivery_id_in(record.body))
            return DispatchResult(DispatchOutcome.FAILED, reason=problem)
        if message.schedule is not None:
            record = replace(record, receive_count=message.schedule.receives + record.receive_count)
            early = self._wait_on(record, message, message.schedule)
            if early is not None:
                return early

        # The log is read (consistently) before every call, a first receive included. A
        # redelivery may have been delivered, or failed for good, by a run that crashed before
        # it could report. And ApproximateReceiveCount = 1 means "first receive of this SQS
        # message", not "first copy of this postback": a postback can be queued as several
        # messages. The outbox's stream hands a record over at least once (a batch retried or
        # bisected after a failure, a SendMessageBatch whose answer was lost: each sends the
        # messages again); SQS's standard queue may itself deliver a message twice; and
        # `postback replay` queues a stored message again. Skipping the read on a first receive
        # would leave only the conditional UpdateItem after the send, which can refuse to log
        # a second delivery but cannot take back the call: each copy would reach the affiliate,
        # and a copy of a postback failed for good (a 404, an unexpected body) would be sent
        # again without anyone replaying it. So the read stays: one read unit (item < 4 KB),
        # $0.14 per million postbacks on demand in eu-west-1; a conditional write before the
        # send, the other sound guard, would cost five times that. What stays open is two
        # copies in flight at the same moment in different instances: both read `pending` and
        # both call. That is accepted as at-least-once; the conditional write still logs the
        # delivery once.
        attempt_number = 1
        existing = self._deliveries.get(message.ref)
        if existing is not None:
            if existing.state is DeliveryState.DELIVERED or (
                existing.state is DeliveryState.FAILED and record.receive_count > 1
            ):
                return DispatchResult(DispatchOutcome.SKIPPED, message.delivery_id, reason=existing.state.value)
            if existing.state is DeliveryState.FAILED:
                return self._hold_failed(record, message)
            attempt_number = _next_attempt(existing)

        endpoint = _endpoint(message.url)
        # A message deferred again and again would reach the queue's maxReceiveCount (50) and
        # be moved to the DLQ with no reason logged: past a bound it is attempted regardless.
        may_defer = endpoint is not None and record.receive_count < MAX_DEFERRED_RECEIVES
        wait = self._breakers.admit(endpoint) if endpoint and may_defer else 0.0
        if wait > 0:
            delay = max(1, int(wait + 0.999))
            deferral = f"circuit open for {endpoint}"
            try:
                self._deliveries.mark_deferred(message.scheduled(None), reason=deferral)
            except ConflictError:
                return DispatchResult(DispatchOutcome.SKIPPED, message.delivery_id, reason="delivered meanwhile")
            requeued = self._wait(record, message, delay)
            return DispatchResult(
                DispatchOutcome.DEFERRED, message.delivery_id, delay_s=delay, reason=deferral, requeued=requeued
            )

        started_at = self._clock()
        result = self._sender.send(message, headers=self._signature(message, started_at))
        verdict = classify(
            result.status, result.excerpt, message.expect, error_kind=result.error_kind, error=result.error
        )
        if endpoint and result.error_kind != "unsafe_url":
            # A 4xx or an unexpected body still proves the endpoint up: only outages count.
            self._breakers.record(
                endpoint,
                success=verdict.outcome is not AttemptOutcome.RETRY,
                affiliate_id=message.affiliate_id,
                reason=failure_reason(result.status, verdict.error_kind),
            )

        delay_s: int | None = None
        if verdict.outcome is AttemptOutcome.RETRY:
            delay_s = retry_delay(
                attempt_number,
                status=result.status,
                error_kind=verdict.error_kind,
                retry_after_s=result.retry_after_s,
                scale=self._scale,
                rand=self._rand,
            )
        final = verdict.outcome is AttemptOutcome.FAILED or (
            verdict.outcome is AttemptOutcome.RETRY and delay_s is None
        )
        outcome_text = AttemptOutcome.FAILED.value if final else verdict.outcome.value
        reason = verdict.reason
        if final and verdict.outcome is AttemptOutcome.RETRY:
            reason = f"{reason} (attempt {attempt_number}, the last)"
        attempt = _attempt(message, attempt_number, started_at, result, verdict.error_kind, outcome_text)
        log_fields = {
            "delivery_id": message.delivery_id,
            "transaction_id": message.transaction_id,
            "affiliate_id": message.affiliate_id,
            "endpoint": _loggable(message.url),
            "attempt": attempt_number,
            "status": result.status,
            "latency_ms": result.latency_ms,
            "outcome": outcome_text,
        }

        if verdict.outcome is AttemptOutcome.DELIVERED:
            self._record(message, attempt, DeliveryState.DELIVERED, None)
            logger.info("postback delivered", extra=log_fields)
            return DispatchResult(
                DispatchOutcome.DELIVERED, message.delivery_id, attempt_number, result.status, result.latency_ms
            )
        if not final:
            assert delay_s is not None
            if not self._record(message, attempt, DeliveryState.RETRYING, reason):
                return DispatchResult(DispatchOutcome.SKIPPED, message.delivery_id, reason="delivered meanwhile")
            requeued = self._wait(record, message, delay_s)
            logger.info("postback retried", extra=log_fields | {"delay_s": delay_s, "reason": reason})
            return DispatchResult(
                DispatchOutcome.RETRIED,
                message.delivery_id,
                attempt_number,
                result.status,
                result.latency_ms,
                delay_s,
                reason,
                requeued,
            )
        # The DLQ first: if logging the failure then fails, the redelivered message is tried
        # once more rather than dropped with no trace on the DLQ. It gets the postback as
        # queued, without the schedule of its last wait.
        body = record.body if message.schedule is None else message.scheduled(None).model_dump_json()
        self._retries.dead_letter(body, reason=reason or "failed", delivery_id=message.delivery_id)
        if not self._record(message, attempt, DeliveryState.FAILED, reason):
            return DispatchResult(DispatchOutcome.SKIPPED, message.delivery_id, reason="delivered meanwhile")
        logger.warning("postback failed", extra=log_fields | {"reason": reason})
        return DispatchResult(
            DispatchOutcome.FAILED, message.delivery_id, attempt_number, result.status, result.latency_ms, None, reason
        )

    def _hold_failed(self, record: ReceivedPostback, message: PostbackMessage) -> DispatchResult:
        """A first receive of a delivery failed for good: no call, but not deleted yet.

        It is either a second copy of the postback, or a replay: `postback replay` queues the
        message first and marks the delivery `pending` after, so its message can arrive
        while the log still says `failed`. Deleting it then would leave the delivery
        `pending` with no message. Held once, it comes back as a redelivery: sent if it was
        a replay (marked meanwhile), skipped if still failed.
        """
        delay = max(1, int(REPLAY_SETTLE_S * self._scale))
        # The copy that comes back counts this receive: it is skipped then if still failed.
        requeued = self._wait(record, message, delay)
        return DispatchResult(
            DispatchOutcome.DEFERRED,
            message.delivery_id,
            delay_s=delay,
            reason="failed for good; held once",
            requeued=requeued,
        )

    def _record(self, message: PostbackMessage, attempt: Attempt, state: DeliveryState, reason: str | None) -> bool:
        """False when the delivery was found delivered already (another run got there first)."""
        try:
            self._deliveries.record_attempt(message.scheduled(None), attempt, state, reason=reason)
        except ConflictError:
            return False
        return True

    # --- waits ----------------------------------------------------------------------------

    def _wait(self, record: ReceivedPostback, message: PostbackMessage, seconds: int) -> bool:
        """Have the postback come back in `seconds` without holding one of the queue's
        in-flight slots. True: a delayed copy is queued and the received message may be
        deleted; False: the received message stays, hidden (the caller reports it as a batch
        item failure).

        The copy carries when it is due and the receives so far (this one included); a wait
        past SQS's 15-minute delay is a chain of hops (`_wait_on`).
        """
        schedule = WaitSchedule(not_before=self._clock() + timedelta(seconds=seconds), receives=record.receive_count)
        return self._requeue(record, message.scheduled(schedule), seconds)

    def _wait_on(
        self, record: ReceivedPostback, message: PostbackMessage, schedule: WaitSchedule
    ) -> DispatchResult | None:
        """A copy received before its due time is queued again for the rest of its wait (at
        most 15 minutes a hop), with no read of the log and no call; None when it is due.
        A hop is not a receive of the postback: the copy keeps the count it came with."""
        remaining = (schedule.not_before - self._clock()).total_seconds()
        if remaining <= EARLY_TOLERANCE_S:
            return None
        carried = message.scheduled(schedule.model_copy(update={"receives": record.receive_count - 1}))
        requeued = self._requeue(record, carried, math.ceil(remaining))
        return DispatchResult(
            DispatchOutcome.WAITING,
            message.delivery_id,
            delay_s=math.ceil(remaining),
            reason="not due yet",
            requeued=requeued,
        )

    def _requeue(self, record: ReceivedPostback, copy: PostbackMessage, seconds: int) -> bool:
        """The new copy first: only once SQS took it may the received one be deleted. If the
        send fails, the received message stays and is hidden instead (in flight, as far as
        SQS's 12 hours from its receipt allow); a crash before its delete leaves two copies,
        and the log's delivered-once guard sends the postback once."""
        try:
            self._retries.requeue(copy.model_dump_json(), delay_s=hop_delay(seconds))
        except DomainError as exc:
            logger.warning("could not queue the postback's next copy; hiding it", extra={"error": exc.message})
        else:
            return True
        now = self._clock().timestamp()
        visibility = visibility_within_receipt(seconds, received_by=record.received_by, now=now)
        if visibility < 1:
            # SQS would refuse any longer visibility: the queue's visibility timeout applies.
            return False
        try:
            self._retries.delay(record.receipt_handle, visibility)
        except DomainError as exc:
            # The attempt is logged; without the delay the message still comes back, only
            # sooner (after the queue's visibility timeout).
            logger.warning("could not delay the message", extra={"error": exc.message})
        return False

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


def _next_attempt(existing: DeliveryRecord) -> int:
    if not existing.attempts:
        return 1
    last = existing.attempts[-1]
    # A replay starts a new round: the last attempt before it ended the previous one.
    return 1 if last.outcome == AttemptOutcome.FAILED.value else last.attempt + 1


def _attempt(
    message: PostbackMessage,
    number: int,
    at: datetime,
    result: SendResult,
    error_kind: str | None,
    outcome: str,
) -> Attempt:
    excerpt = result.excerpt if result.excerpt is not None else result.error
    return Attempt(
        attempt=number,
        at=at,
        url=message.url,
        method=message.method,
        status=result.status,
        latency_ms=result.latency_ms,
        excerpt=excerpt[:EXCERPT_CHARS] if excerpt else None,
        error_kind=error_kind,
        outcome=outcome,
    )


def _endpoint(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme, 0)
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


def _valid_delivery_id(body: str) -> str | None:
    """The delivery of a message that can be sent; None for one that cannot (it is dead
    lettered on its own, never taken for a copy of another)."""
    try:
        return PostbackMessage.model_validate_json(body).delivery_id
    except ValidationError:
        return None


def _delivery_id_in(body: str) -> str | None:
    try:
        value = json.loads(body).get("delivery_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None
