"""The test postbacks' deliveries (step 4): their states in the delivery log, the run's
verdict they give, and the sentences that explain it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from postback_relay.domain import messages
from postback_relay.domain.delivery import MAX_ATTEMPTS, Attempt, DeliveryRef, DeliveryState
from postback_relay.domain.records import DeliveryRecord
from postback_relay.domain.testrun import RunVerdict
from postback_relay.ports import DeliveryLog


@dataclass(frozen=True)
class Delivery:
    """The `n`-th test postback as the delivery log has it (None: not recorded yet)."""

    n: int
    delivery_id: str
    record: DeliveryRecord | None

    @property
    def state(self) -> DeliveryState:
        return self.record.state if self.record is not None else DeliveryState.PENDING

    @property
    def attempt_count(self) -> int:
        return len(self.record.attempts) if self.record is not None else 0

    @property
    def summary(self) -> str:
        return f"{self.n}:{self.state.value}/{self.attempt_count}"

    @property
    def label(self) -> str:
        if self.record is None:
            return f"postback {self.n}"
        return f"postback {self.n} ({self.record.message.method.value} {self.record.message.url})"

    @property
    def seen(self) -> str:
        """What its last attempt saw, in words: `postback 1: attempt 3 of 8: connection refused`."""
        record = self.record
        if record is None or not record.attempts:
            return f"postback {self.n}: not attempted yet"
        last = record.attempts[-1]
        attempt = messages.attempt_seen(
            len(record.attempts), MAX_ATTEMPTS, status=last.status, error_kind=last.error_kind, detail=record.last_error
        )
        return f"postback {self.n}: {attempt}"

    def to_json(self) -> dict[str, Any]:
        record = self.record
        return {
            "n": self.n,
            "delivery_id": self.delivery_id,
            "state": self.state.value,
            "attempts": self.attempt_count,
            "http_status": record.http_status if record is not None else None,
            "url": record.message.url if record is not None else None,
            "seen": self.seen,
        }


def read_deliveries(
    log: DeliveryLog, *, affiliate_id: str, started_at: datetime, delivery_ids: Sequence[str]
) -> list[Delivery]:
    """The fire step created every test postback at the run's start: that and the affiliate
    address each one in the delivery log."""
    return [
        Delivery(n, delivery_id, log.get(DeliveryRef(affiliate_id, started_at, delivery_id)))
        for n, delivery_id in enumerate(delivery_ids, 1)
    ]


def summary_of(deliveries: Sequence[Delivery]) -> str:
    """State and attempt count of each: a check records an entry only when this changes."""
    return ", ".join(d.summary for d in deliveries)


def judge(
    deliveries: Sequence[Delivery], *, now: datetime, deadline: datetime, deadline_s: int
) -> tuple[RunVerdict, str | None]:
    """The verdict and, when failed, why: passed once all are delivered, failed as soon as one
    failed for good or at the deadline, else still running."""
    if all(d.state is DeliveryState.DELIVERED for d in deliveries):
        return RunVerdict.PASSED, None
    failed = [d for d in deliveries if d.state is DeliveryState.FAILED]
    if failed:
        return RunVerdict.FAILED, "; ".join(_failed_sentence(d.label, d.record) for d in failed if d.record is not None)
    if now >= deadline:
        within = describe_duration(deadline_s)
        late = [d for d in deliveries if d.state is not DeliveryState.DELIVERED]
        return RunVerdict.FAILED, "; ".join(_late_sentence(d.label, d.record, within) for d in late)
    return RunVerdict.RUNNING, None


def _failed_sentence(label: str, record: DeliveryRecord) -> str:
    error = f" ({record.last_error})" if record.last_error else ""
    return f"{label} failed for good: {describe_attempts(record.attempts)}{error}"


def _late_sentence(label: str, record: DeliveryRecord | None, within: str) -> str:
    if record is not None and record.attempts:
        return f"{label} was not delivered: {describe_attempts(record.attempts)} over {within}"
    return f"{label} was not delivered within {within}: no attempt was made"


# --- wording ----------------------------------------------------------------------------------


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
