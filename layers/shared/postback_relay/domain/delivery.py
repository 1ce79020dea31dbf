"""Postback messages and delivery rules (contract section 4).

TO BE COMPLETED (issue 5): attempt classification (delivered / retry / fail) from a status,
body excerpt and the ExpectedAnswer; the retry schedule with jitter, Retry-After and the
60 s floor after a 429 or a timeout; delivery_id_for.
"""

import hashlib
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from postback_relay.domain.config import ExpectedAnswer, HttpMethod
from postback_relay.domain.events import Event


class DeliveryState(StrEnum):
    PENDING = "pending"
    RETRYING = "retrying"
    DELIVERED = "delivered"
    FAILED = "failed"


class PostbackMessage(BaseModel):
    """The SQS body of one postback: everything needed to send it, and to replay it."""

    model_config = ConfigDict(frozen=True)

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


class Attempt(BaseModel):
    """One call to the affiliate's server, as the delivery log keeps it."""

    model_config = ConfigDict(frozen=True)

    attempt: int = Field(ge=1)
    at: datetime
    url: str
    method: HttpMethod
    status: int | None = None  # None: no HTTP answer (timeout, connection error, refused)
    latency_ms: int | None = None
    excerpt: str | None = None  # the first bytes of the answer, for a person
    error_kind: str | None = None  # timeout, connection_error, unsafe_url, http_status, unexpected_body, circuit_open
    outcome: str = ""  # delivered, retry, failed


def delivery_id_for(transaction_id: str, event: Event, affiliate_id: str, index: int) -> str:
    """The ID of one postback of one conversion: deterministic, so that a message queued twice
    (the platform retried after a partial failure) is still one delivery."""
    key = f"{transaction_id}|{event.value}|{affiliate_id}|{index}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]
