"""A conversion as the platform posts it, and the result we answer with.

TO BE COMPLETED (issue 3/4): validators (link or tracker present, currency ISO 4217, amount
as Decimal keeping the text the platform sent, occurred_at timezone-aware).
"""

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from postback_relay.domain.events import Event, OfferType


class Offer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=64)
    type: OfferType
    name: str | None = Field(default=None, max_length=256)


class Conversion(BaseModel):
    """One conversion event. `(transaction_id, event)` is its identity."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    transaction_id: str = Field(min_length=1, max_length=128)
    event: Event
    offer: Offer
    amount: Decimal
    amount_text: str = ""  # the amount exactly as the platform sent it (filled by validation)
    currency: str
    link: str | None = None
    tracker: str | None = None
    affiliate_id: str | None = None
    occurred_at: datetime

    @property
    def conversion_id(self) -> str:
        return f"{self.transaction_id}#{self.event.value}"


class Outcome(StrEnum):
    """Why a conversion queued what it queued."""

    QUEUED = "queued"  # one or more postbacks queued
    UNKNOWN_AFFILIATE = "unknown_affiliate"
    AFFILIATE_DISABLED = "affiliate_disabled"
    EVENT_NOT_SUBSCRIBED = "event_not_subscribed"  # no postback for this event and offer
    TRACKER_MISMATCH = "tracker_mismatch"


class ConversionResult(BaseModel):
    """What the API answers for one conversion, and what is recorded with it."""

    model_config = ConfigDict(frozen=True)

    transaction_id: str
    event: Event
    affiliate_id: str | None
    outcome: Outcome
    postbacks_queued: int = 0
    reason: str | None = None  # a sentence for a person, when nothing was queued
    error_kind: str | None = None  # for TRACKER_MISMATCH: the TrackerError.reason
    delivery_ids: tuple[str, ...] = ()
