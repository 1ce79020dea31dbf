"""A conversion as the platform posts it, and the result we answer with.

The amount is a Decimal and keeps the exact text the platform sent (`amount_text`): an
affiliate that receives `25.00` for a `25.00` sale can match it to the cent. To keep `25.00`
when the platform sends a JSON number, parse the body with `json.loads(body, parse_float=Decimal)`;
a float that does arrive is read through its shortest repr, never stored as a float.
"""

import math
import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from postback_relay.domain import messages
from postback_relay.domain.events import REVERSALS, Event, OfferType
from postback_relay.domain.times import fits_utc, rfc3339_problem

MAX_AMOUNT_DECIMALS = 6
MAX_AMOUNT_INTEGER_DIGITS = 15
MAX_LINK_LENGTH = 8192
MAX_TRACKER_LENGTH = 4096
_AMOUNT = re.compile(rf"^[0-9]{{1,{MAX_AMOUNT_INTEGER_DIGITS}}}(?:\.[0-9]{{1,{MAX_AMOUNT_DECIMALS}}})?$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def amount_text(value: object, what: str = "amount") -> str:
    """The amount (or the payout: `what`) as text, exactly as sent. Raises ValueError for
    anything not a plain decimal >= 0."""
    if isinstance(value, bool):
        raise ValueError(f"the {what} must be a decimal number, not a boolean")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"the {what} must be a finite number")
        text = repr(value)
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"the {what} must be a finite number")
        text = str(value)
    elif isinstance(value, str):
        text = value
    else:
        raise ValueError(f"the {what} must be a decimal number, as a JSON string or number")
    if text.startswith("-"):
        raise ValueError(f"the {what} cannot be negative")
    if not _AMOUNT.fullmatch(text):
        raise ValueError(
            f"the {what} {text[:40]!r} must be a plain decimal like 25.00: digits, at most "
            f"{MAX_AMOUNT_DECIMALS} decimals, no exponent or sign"
        )
    return text


# How long a conversion's record is kept (ConversionsTable's TTL): a chargeback or a refund
# arriving later finds no original (outcome original_not_found).
CONVERSION_RETENTION_DAYS = 400
MONEY_EVENTS = frozenset({Event.SALE, Event.REBILL})
_SENT_NULL = object()  # an amount, payout or currency sent as JSON null
_NULL_REFUSED = ("amount", "payout", "currency")


def _money_required(info: ValidationInfo, field: str) -> None:
    """A sale or a rebill carries money: its amount and currency are required."""
    if info.data.get("event") in MONEY_EVENTS:
        raise ValueError(f"a {info.data['event'].value} needs its {field}; only a registration or a trial may omit it")


def _utf8(value: str, what: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"the {what} is not valid Unicode text") from exc
    return value


class Offer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    id: str = Field(min_length=1, max_length=64)
    type: OfferType
    name: str | None = Field(default=None, max_length=256)

    @field_validator("id", "name")
    @classmethod
    def _text(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            _utf8(value, f"offer {info.field_name}")
            if not value.isprintable():
                raise ValueError(f"the offer {info.field_name} contains control characters")
        return value


class Conversion(BaseModel):
    """One conversion event. `(transaction_id, event)` is its identity."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    transaction_id: str = Field(min_length=1, max_length=128)
    event: Event
    # A reversal may leave out its offer (and link, tracker, affiliate): the relay takes them
    # from the original conversion's record. Every other event carries its offer.
    offer: Offer | None = Field(default=None, validate_default=True)
    # A free registration or a trial may carry no money: both absent (`{amount}` and
    # `{currency}` then render empty). A sale or a rebill always has both.
    amount: Decimal | None = Field(default=None, validate_default=True)
    amount_text: str = ""  # the amount exactly as the platform sent it (filled by validation)
    # Optional: the affiliate's commission for this conversion, in `currency` (what trackers
    # call payout; `amount` is what the customer paid). `{payout}` renders empty without it.
    payout: Decimal | None = None
    payout_text: str = ""  # the payout exactly as the platform sent it (filled by validation)
    currency: str | None = Field(default=None, validate_default=True)
    link: str | None = None
    tracker: str | None = Field(default=None, validate_default=True)
    affiliate_id: str | None = Field(default=None, validate_default=True)
    # A chargeback or a refund names the conversion it reverses; no other event carries it.
    original_transaction_id: str | None = Field(default=None, max_length=128, validate_default=True)
    occurred_at: datetime

    @property
    def conversion_id(self) -> str:
        return f"{self.transaction_id}#{self.event.value}"

    @property
    def offer_id(self) -> str:
        return self.offer.id if self.offer is not None else ""

    @property
    def is_reversal(self) -> bool:
        return self.event in REVERSALS

    @field_validator("offer")
    @classmethod
    def _offer_unless_reversal(cls, value: Offer | None, info: ValidationInfo) -> Offer | None:
        event = info.data.get("event")
        if value is None and event not in REVERSALS and "event" in info.data:
            raise ValueError('a conversion needs its offer, like {"id": "89", "type": "revshare"}')
        return value

    @model_validator(mode="before")
    @classmethod
    def _keep_amount_text(cls, data: Any) -> Any:
        # Before pydantic turns the amount (and the payout) into a Decimal, keep its text (and
        # refuse a float's artefacts): amount_text is always what was sent, whatever the caller
        # put there.
        if isinstance(data, dict) and any(data.get(key, "") is None for key in _NULL_REFUSED):
            # `null` is not leaving the field out (the API's schema refuses it): keep it apart.
            data = {key: _SENT_NULL if key in _NULL_REFUSED and value is None else value for key, value in data.items()}
        for key in ("amount", "payout"):
            if isinstance(data, dict) and key in data and data[key] is not _SENT_NULL:
                data = dict(data)
                try:
                    text = amount_text(data[key], key)
                except ValueError:
                    continue  # the field's validator reports it, with the field's name
                data[key] = text
                data[f"{key}_text"] = text
        return data

    @field_validator("amount", mode="before")
    @classmethod
    def _amount_is_decimal_text(cls, value: object, info: ValidationInfo) -> Decimal | None:
        if value is _SENT_NULL:
            raise ValueError("the amount cannot be null: leave it out for a registration or a trial without money")
        if value is None:
            _money_required(info, "amount")
            return None
        text = amount_text(value)
        try:
            return Decimal(text)
        except InvalidOperation as exc:  # unreachable after the pattern check, kept for safety
            raise ValueError("the amount is not a decimal number") from exc

    @field_validator("payout", mode="before")
    @classmethod
    def _payout_is_decimal_text(cls, value: object) -> Decimal | None:
        if value is _SENT_NULL:
            raise ValueError("the payout cannot be null: leave it out when the affiliate earns nothing on it")
        if value is None:
            return None
        return Decimal(amount_text(value, "payout"))

    @field_validator("transaction_id")
    @classmethod
    def _transaction_id_printable(cls, value: str) -> str:
        _utf8(value, "transaction_id")
        if not value.isprintable() or any(ch.isspace() for ch in value):
            raise ValueError("the transaction_id must be printable, without spaces or control characters")
        return value

    @field_validator("currency", mode="before")
    @classmethod
    def _currency_not_null(cls, value: object) -> object:
        if value is _SENT_NULL:
            raise ValueError("the currency cannot be null: leave it out for a registration or a trial without money")
        return value

    @field_validator("currency")
    @classmethod
    def _currency_iso_4217(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            _money_required(info, "currency")
            if info.data.get("amount") is not None:
                raise ValueError("an amount needs its currency (ISO 4217, like EUR)")
            if info.data.get("payout") is not None:
                raise ValueError("a payout needs its currency (ISO 4217, like EUR)")
            return None
        if info.data.get("amount") is None and "amount" in info.data and info.data.get("payout") is None:
            raise ValueError(
                "a currency without an amount or a payout: send them together, or none for a free registration or trial"
            )
        if not _CURRENCY.fullmatch(value):
            raise ValueError("the currency must be an ISO 4217 code: three upper-case letters, like EUR")
        return value

    @field_validator("link")
    @classmethod
    def _link_text(cls, value: str | None) -> str | None:
        if value is not None:
            if not value.strip():
                raise ValueError("the link is empty: send the network link, or leave it out and send tracker")
            if len(value) > MAX_LINK_LENGTH:
                raise ValueError(f"the link is longer than {MAX_LINK_LENGTH} characters")
            _utf8(value, "link")
        return value

    @field_validator("tracker")
    @classmethod
    def _link_or_tracker(cls, value: str | None, info: ValidationInfo) -> str | None:
        link = info.data.get("link")
        if value is not None:
            if not value.strip():
                raise ValueError("the tracker is empty")
            if len(value) > MAX_TRACKER_LENGTH:
                raise ValueError(f"the tracker is longer than {MAX_TRACKER_LENGTH} characters")
            _utf8(value, "tracker")
            if link is not None:
                raise ValueError("send either link or tracker, not both")
        elif link is None and "link" in info.data and info.data.get("event") not in REVERSALS:
            raise ValueError("a conversion needs its network link, or its tracker (trID_..._trID)")
        return value

    @field_validator("affiliate_id")
    @classmethod
    def _affiliate_for_revshare_tracker(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            if not value or len(value) > 64 or not value.isprintable() or any(ch.isspace() for ch in value):
                raise ValueError("the affiliate_id must be 1 to 64 printable characters without spaces")
            _utf8(value, "affiliate_id")
            return value
        offer = info.data.get("offer")
        if isinstance(offer, Offer) and offer.type is OfferType.REVSHARE and info.data.get("tracker") is not None:
            raise ValueError("a revshare conversion sent with a tracker must also carry affiliate_id")
        return value

    @field_validator("original_transaction_id")
    @classmethod
    def _original_of_a_reversal(cls, value: str | None, info: ValidationInfo) -> str | None:
        event = info.data.get("event")
        if value is None:
            if event in REVERSALS:
                raise ValueError(f"a {event.value} names the conversion it reverses: send its original_transaction_id")
            return None
        if isinstance(event, Event) and event not in REVERSALS:
            raise ValueError(
                f"only a chargeback or a refund reverses a conversion: a {event.value} has no original_transaction_id"
            )
        _utf8(value, "original_transaction_id")
        if not value or not value.isprintable() or any(ch.isspace() for ch in value):
            raise ValueError("the original_transaction_id must be printable, without spaces or control characters")
        if value == info.data.get("transaction_id"):
            raise ValueError("a reversal cannot reverse itself: original_transaction_id is its own transaction_id")
        return value

    @field_validator("occurred_at", mode="before")
    @classmethod
    def _occurred_at_is_text(cls, value: object) -> object:
        # pydantic would read a number as unix seconds; the contract says RFC 3339 text.
        if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
            raise ValueError(messages.occurred_at_not_text())
        if isinstance(value, str):
            problem = rfc3339_problem(value)
            if problem is not None:
                raise ValueError(problem)
        return value

    @field_validator("occurred_at")
    @classmethod
    def _timezone_aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(messages.occurred_at_no_timezone())
        if not fits_utc(value):
            # Valid RFC 3339 (0001-01-01T00:00:00+00:01), but not a moment the relay can write.
            raise ValueError(messages.occurred_at_out_of_range())
        return value


class ConversionOutcome(StrEnum):
    """Why a conversion queued what it queued."""

    QUEUED = "queued"  # one or more postbacks queued
    UNKNOWN_AFFILIATE = "unknown_affiliate"
    AFFILIATE_DISABLED = "affiliate_disabled"
    EVENT_NOT_SUBSCRIBED = "event_not_subscribed"  # no postback for this event and offer
    TRACKER_MISMATCH = "tracker_mismatch"
    # A chargeback or a refund whose original is not on record (never sent, or older than the
    # 400 days conversions are kept): recorded, fires nothing.
    ORIGINAL_NOT_FOUND = "original_not_found"


class ConversionResult(BaseModel):
    """What the API answers for one conversion, and what is recorded with it."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    transaction_id: str
    event: Event
    affiliate_id: str | None
    outcome: ConversionOutcome
    postbacks_queued: int = 0
    reason: str | None = None  # a sentence for a person, when nothing was queued
    error_kind: str | None = None  # for TRACKER_MISMATCH: the TrackerError.reason
    delivery_ids: tuple[str, ...] = ()
