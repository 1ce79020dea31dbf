"""Postback messages and delivery rules (contract section 4).

Pure: the classification of one attempt (delivered / retry / failed), the retry schedule
(jitter, Retry-After, the floor after a 429 or a timeout) and the circuit breaker's
transitions. The dispatch service applies them; adapters do the I/O.

A 2xx whose body lacks the expected text (`expect.body_contains`, e.g. `success=true`) is
`failed` at once, as Everflow does: the tracker answered, and refused the postback (unknown
click, duplicate); sending it again would not change its mind and could double-count if it
did record it. Ops can replay it after fixing the cause.
"""

import hashlib
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from postback_relay.domain.config import ExpectedAnswer, HttpMethod

if TYPE_CHECKING:
    from postback_relay.domain.config import AffiliateConfig, PostbackSpec
    from postback_relay.domain.conversion import Conversion
    from postback_relay.domain.render import RenderedPostback
from postback_relay.domain.events import Event
from postback_relay.domain.times import utc_millis


class DeliveryState(StrEnum):
    PENDING = "pending"
    RETRYING = "retrying"
    DELIVERED = "delivered"
    FAILED = "failed"


class WaitSchedule(BaseModel):
    """Where a waiting postback stands, carried in its message while it waits off the queue's
    in-flight count (re-sent with DelaySeconds rather than hidden by its visibility timeout).

    The attempt number is not here: the delivery log keeps it (read before every call).
    """

    model_config = ConfigDict(frozen=True)

    not_before: datetime  # the next attempt is due then; a copy received earlier is re-sent
    # Receives of the earlier copies that count as receives of the postback's message (each
    # attempt, deferral or hold; not a hop of a long wait): the rules that read a message's
    # receive count (the deferral bound, the hold of a failed delivery) go on counting from
    # there, as they did when one message was hidden and received again.
    receives: int = Field(default=0, ge=0)


# A moment as the delivery log's keys hold it: UTC, milliseconds, fixed width, so that keys
# sort as text in time order (`2026-11-25T12:00:00.000Z`).
key_time = utc_millis


@dataclass(frozen=True)
class DeliveryRef:
    """Where one postback is logged: the delivery log is partitioned by affiliate and sorted by
    the postback's creation time, so its key is (affiliate_id, `<created_at>#<delivery_id>`).

    Everything here is fixed when the message is built (ingest, the test-link fire step) and
    travels with it (the queue, replay), so that every copy and every redelivery of a postback
    addresses the same item; `created_at` is never the time of a dispatch."""

    affiliate_id: str
    created_at: datetime
    delivery_id: str

    @property
    def sort_key(self) -> str:
        return f"{key_time(self.created_at)}#{self.delivery_id}"


class PostbackMessage(BaseModel):
    """The SQS body of one postback: everything needed to send it, and to replay it.

    `schedule` is set only on a message re-sent to wait (dispatch); a new or replayed
    postback has none, and its JSON then has no `schedule` key at all.

    `created_at` is when the postback was created: the conversion's acceptance at ingest, the
    run's start for a test-link postback. It is part of the delivery log's key (`ref`); replay
    keeps it. Every message since v1 carries it."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    v: int = 1
    delivery_id: str
    affiliate_id: str
    transaction_id: str
    event: Event
    offer_id: str
    method: HttpMethod = HttpMethod.GET
    url: str
    body: str | None = None
    content_type: str | None = None
    expect: ExpectedAnswer | None = None
    signed: bool = False
    test_run_id: str | None = None
    created_at: datetime
    schedule: WaitSchedule | None = None

    @model_serializer(mode="wrap")
    def _without_empty_schedule(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        data: dict[str, object] = handler(self)
        if data.get("schedule") is None:
            data.pop("schedule", None)
        return data

    def scheduled(self, schedule: WaitSchedule | None) -> "PostbackMessage":
        return self.model_copy(update={"schedule": schedule})

    @property
    def ref(self) -> DeliveryRef:
        return DeliveryRef(self.affiliate_id, self.created_at, self.delivery_id)


class Attempt(BaseModel):
    """One call to the affiliate's server, as the delivery log keeps it."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    attempt: int = Field(ge=1)
    at: datetime
    url: str
    method: HttpMethod
    status: int | None = None  # None: no HTTP answer (timeout, connection error, refused)
    latency_ms: int | None = None
    excerpt: str | None = None  # the first bytes of the answer, for a person
    error_kind: str | None = None  # timeout, connection_error, unsafe_url, http_status, unexpected_body, circuit_open
    outcome: str = ""  # delivered, retry, failed


def postback_message(
    conversion: "Conversion",
    config: "AffiliateConfig",
    index: int,
    spec: "PostbackSpec",
    rendered: "RenderedPostback",
    *,
    created_at: datetime,
    test_run_id: str | None = None,
) -> PostbackMessage:
    """The message of postback `index` of `config` for this conversion, once rendered.

    `created_at` must be the same for every build of the same postback (the conversion's
    acceptance, the test run's start): it is part of the delivery log's key."""
    return PostbackMessage(
        delivery_id=delivery_id_for(conversion.transaction_id, conversion.event, config.affiliate_id, index),
        affiliate_id=config.affiliate_id,
        transaction_id=conversion.transaction_id,
        event=conversion.event,
        offer_id=conversion.offer_id,
        method=rendered.method,
        url=rendered.url,
        body=rendered.body,
        content_type=rendered.content_type,
        expect=spec.expected_answer,
        signed=config.signing_secret is not None,
        test_run_id=test_run_id,
        created_at=created_at,
    )


def delivery_id_for(transaction_id: str, event: Event, affiliate_id: str, index: int) -> str:
    """The ID of one postback of one conversion: deterministic, so that a message queued twice
    (the platform retried after a partial failure) is still one delivery."""
    key = f"{transaction_id}|{event.value}|{affiliate_id}|{index}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


# --- classification ------------------------------------------------------------------------

EXCERPT_CHARS = 200  # what the delivery log keeps of an answer: enough for a person, cheap to store


class AttemptOutcome(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True)
class AttemptVerdict:
    """What one attempt means for the delivery."""

    outcome: AttemptOutcome
    error_kind: str | None = None  # None when delivered
    reason: str | None = None  # a sentence for ops; None when delivered


_RETRYABLE_ERRORS = frozenset({"timeout", "connection_error"})


def is_retryable_status(status: int) -> bool:
    """408, 429 and 5xx: the server is busy or broken now, not refusing this postback."""
    return status in (408, 429) or 500 <= status <= 599


def classify(
    status: int | None,
    excerpt: str | None,
    expect: ExpectedAnswer | None,
    *,
    error_kind: str | None = None,
    error: str | None = None,
) -> AttemptVerdict:
    """Classify one attempt from the answer (or the transport error when there was none)."""
    if status is None:
        kind = error_kind or "connection_error"
        reason = error or kind.replace("_", " ")
        # An address refused at send time (the name now points somewhere private) is a
        # refusal, not an outage: retrying would knock on the same forbidden door.
        outcome = AttemptOutcome.RETRY if kind in _RETRYABLE_ERRORS else AttemptOutcome.FAILED
        return AttemptVerdict(outcome, kind, reason)
    accepted = status in expect.status if expect and expect.status else 200 <= status <= 299
    if not accepted:
        outcome = AttemptOutcome.RETRY if is_retryable_status(status) else AttemptOutcome.FAILED
        return AttemptVerdict(outcome, "http_status", f"answered HTTP {status}")
    if expect and expect.body_contains and expect.body_contains not in (excerpt or ""):
        return AttemptVerdict(
            AttemptOutcome.FAILED, "unexpected_body", f"answered HTTP {status} without {expect.body_contains!r}"
        )
    return AttemptVerdict(AttemptOutcome.DELIVERED)


# --- retry schedule ------------------------------------------------------------------------

# Seconds to wait after each failed attempt: 8 attempts in all, about 27 hours.
RETRY_SCHEDULE_S: tuple[int, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
MAX_ATTEMPTS = len(RETRY_SCHEDULE_S) + 1
JITTER = 0.2
THROTTLE_FLOOR_S = 60  # after a 429 or a timeout: the server is struggling, give it a minute
MAX_DELAY_S = 12 * 3600  # the longest wait (a Retry-After is honoured up to this)
MIN_DELAY_S = 1
MAX_MESSAGE_DELAY_S = 900  # SQS's DelaySeconds limit: one hop of a longer wait
# SQS's visibility limit: a message can't be hidden past 12 hours from its receipt; a longer
# ChangeMessageVisibility is rejected, not clamped.
MAX_VISIBILITY_S = 12 * 3600
VISIBILITY_MARGIN_S = 60  # clock skew between SQS and Lambda, and the call's own latency


def retry_delay(
    attempt: int,
    *,
    status: int | None = None,
    error_kind: str | None = None,
    retry_after_s: float | None = None,
    scale: float = 1.0,
    rand: Callable[[], float] = random.random,
) -> int | None:
    """Seconds before the next attempt after attempt number `attempt` failed, or None when
    that was the last one.

    `rand` returns a float in [0, 1) (injectable for tests); `scale` shrinks every delay on the
    local stack (DELAY_SCALE) with a floor of 1 s.
    """
    if attempt >= MAX_ATTEMPTS:
        return None
    scheduled = RETRY_SCHEDULE_S[max(attempt, 1) - 1]
    delay = scheduled * (1 + JITTER * (2 * rand() - 1))
    if status == 429 or error_kind == "timeout":
        delay = max(delay, THROTTLE_FLOOR_S)
    if retry_after_s is not None:
        # The server's own wish wins, but never sooner than our schedule nor beyond SQS's cap.
        delay = max(delay, retry_after_s)
    delay = min(delay, MAX_DELAY_S)
    return min(max(MIN_DELAY_S, math.ceil(delay * scale)), MAX_DELAY_S)


def hop_delay(remaining_s: float) -> int:
    """DelaySeconds of the next hop of a wait with `remaining_s` left: a whole second at least
    (SQS counts whole seconds), one SQS delay (15 minutes) at most."""
    return min(MAX_MESSAGE_DELAY_S, max(MIN_DELAY_S, math.ceil(remaining_s)))


def visibility_within_receipt(seconds: int, *, received_by: float | None, now: float) -> int:
    """The longest visibility, up to `seconds`, that SQS accepts for a message received no
    earlier than `received_by` (epoch seconds): what is left of its 12 hours, less a margin.

    `received_by` must be a lower bound of this receipt (the invocation's start less the
    batching window); None counts the receipt as now. 0 means no change is
    possible: the message comes back after the queue's visibility timeout.
    """
    start = now if received_by is None else min(received_by, now)
    left = math.floor(start + MAX_VISIBILITY_S - VISIBILITY_MARGIN_S - now)
    return max(0, min(seconds, left))


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """`Retry-After` as seconds from now: delay-seconds or an HTTP date; None when absent or
    unreadable (a bad header must not break the delivery)."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


# --- circuit breaker -----------------------------------------------------------------------


class CircuitStatus(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


FAILURE_THRESHOLD = 5  # consecutive failures that open an endpoint's circuit
BASE_COOL_DOWN_S = 60
MAX_COOL_DOWN_S = 3600


@dataclass(frozen=True)
class Circuit:
    """The circuit breaker of one endpoint (`scheme://host:port`).

    Closed: calls go through. Open until `opened_until` (epoch seconds): calls are deferred.
    After that, half-open: one trial call goes through (`trial_until` guards it so that only
    one caller at a time tries); its success closes the circuit, its failure opens it again
    for twice as long.
    """

    endpoint: str
    status: CircuitStatus = CircuitStatus.CLOSED
    failures: int = 0  # consecutive
    opened_until: float = 0.0
    cool_down_s: int = 0  # of the last opening, before scaling: grows while the endpoint stays down
    trial_until: float = 0.0
    opened_at: float = 0.0  # when it last opened: `opened_until - opened_at` is the wait applied
    # What failed there when it opened, for the notices to ops (services.dispatch):
    affiliates: tuple[str, ...] = ()  # whose postbacks failed
    failure_reasons: tuple[tuple[str, int], ...] = ()  # (reason, count), most frequent first


def endpoint_of(scheme: str, host: str, port: int) -> str:
    return f"{scheme}://{host.lower()}:{port}"


def circuit_wait(circuit: Circuit, *, now: float) -> float:
    """Seconds a call to this endpoint must wait now; 0 when it may go."""
    if circuit.status is CircuitStatus.CLOSED:
        return 0.0
    if now < circuit.opened_until:
        return circuit.opened_until - now
    if circuit.status is CircuitStatus.HALF_OPEN and now < circuit.trial_until:
        return circuit.trial_until - now
    return 0.0


def circuit_trial(circuit: Circuit, *, now: float, trial_s: float) -> Circuit:
    """The open circuit's cool-down is over: let this one call through as the trial."""
    return replace(circuit, status=CircuitStatus.HALF_OPEN, trial_until=now + trial_s)


def circuit_after(circuit: Circuit, *, success: bool, now: float, scale: float = 1.0) -> Circuit:
    """The circuit after one call's outcome (a 4xx counts as success: the endpoint is up)."""
    if success:
        return Circuit(circuit.endpoint)
    failures = circuit.failures + 1
    if circuit.status is CircuitStatus.HALF_OPEN or (
        circuit.status is CircuitStatus.CLOSED and failures >= FAILURE_THRESHOLD
    ):
        grown = circuit.cool_down_s * 2 if circuit.cool_down_s else BASE_COOL_DOWN_S
        cool_down = min(grown, MAX_COOL_DOWN_S)
        return Circuit(
            circuit.endpoint,
            CircuitStatus.OPEN,
            failures,
            opened_until=now + max(MIN_DELAY_S, cool_down * scale),
            cool_down_s=cool_down,
            opened_at=now,
            affiliates=circuit.affiliates,
            failure_reasons=circuit.failure_reasons,
        )
    return replace(circuit, failures=failures)


def failure_reason(status: int | None, error_kind: str | None) -> str:
    """What a call that did not deliver is counted under (health, circuit notices): its HTTP
    status, or the error kind when the answer was no verdict on its own (none at all, or a 2xx
    without the expected text)."""
    if status is not None and error_kind in (None, "http_status"):
        return str(status)
    return error_kind or "connection_error"
