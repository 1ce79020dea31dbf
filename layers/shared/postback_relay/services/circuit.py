"""Circuit breakers per endpoint (contract section 4): a dead endpoint is not called again
until its cool-down is over, and every instance of the dispatcher learns of it.

The rules (when a circuit opens, how long it stays open, the trial) are pure, in
`domain.delivery`; this module keeps each endpoint's circuit in memory, shares its
transitions through the EndpointStore, and tells ops once of an opening and a closing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from postback_relay.domain.delivery import Circuit, CircuitStatus, circuit_after, circuit_trial, circuit_wait
from postback_relay.domain.errors import DomainError
from postback_relay.domain.notices import CircuitChange, CircuitNotice
from postback_relay.ports import EndpointStore, Notifier

logger = logging.getLogger(__name__)

RECENT_FAILURES = 50  # per endpoint: what the notice of an opening names


@dataclass
class _Known:
    circuit: Circuit
    read_at: float  # when the shared store was last read for it; 0: never


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
            recent = self._remember(endpoint, success=success, affiliate_id=affiliate_id, reason=reason)
            known = self._known.get(endpoint) or _Known(Circuit(endpoint), 0.0)
            before = known.circuit
            after = _naming(circuit_after(before, success=success, now=now, scale=self._scale), recent)
            if after == before:
                return
            self._known[endpoint] = _Known(after, known.read_at)
        if after.status is not before.status:
            self._share(before, after, now=now, affiliate_id=affiliate_id)

    def _remember(
        self, endpoint: str, *, success: bool, affiliate_id: str | None, reason: str | None
    ) -> deque[tuple[str, str]] | None:
        """The endpoint's recent failures, this call's counted (under the lock): a success
        forgets them."""
        recent = self._recent.get(endpoint)
        if success:
            if recent:
                recent.clear()
        elif affiliate_id is not None:
            if recent is None:
                recent = self._recent[endpoint] = deque(maxlen=RECENT_FAILURES)
            recent.append((affiliate_id, reason or "failed"))
        return recent

    def _share(self, before: Circuit, after: Circuit, *, now: float, affiliate_id: str | None) -> None:
        """A change of status: written to the store, conditionally on the status before, so
        that of several instances seeing it the one whose write wins announces it."""
        change, condition = _change_of(before, after)
        won = self._save(after, only_from=condition)
        logger.info(
            "circuit %s", after.status.value, extra={"endpoint": after.endpoint, "cool_down_s": after.cool_down_s}
        )
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


def _naming(after: Circuit, recent: deque[tuple[str, str]] | None) -> Circuit:
    """An opening circuit names the affiliates and the reasons of the recent failures."""
    if after.status is not CircuitStatus.OPEN or not recent:
        return after
    return replace(
        after,
        affiliates=tuple(sorted({affiliate for affiliate, _ in recent})),
        failure_reasons=tuple(sorted(Counter(r for _, r in recent).items(), key=lambda item: (-item[1], item[0]))),
    )


def _change_of(before: Circuit, after: Circuit) -> tuple[CircuitChange | None, frozenset[CircuitStatus] | None]:
    """The change ops are told of, and the status the store must hold for its write."""
    if before.status is CircuitStatus.CLOSED:
        return CircuitChange.OPENED, _FROM_CLOSED
    if after.status is CircuitStatus.CLOSED:
        return CircuitChange.CLOSED, _FROM_OPEN
    return None, None  # a failed trial: open again, still the same outage
