"""The records the ports carry: what the adapters read and write and the services (and the
domain, for `health`) read; and a received postback message, as the dispatcher takes it.
Declared here, in the domain, so that ports.py holds Protocols only and no domain module
imports the ports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from postback_relay.domain.delivery import Attempt, DeliveryRef, DeliveryState, PostbackMessage

if TYPE_CHECKING:  # annotations only: a reader of the records does not load the config model
    from postback_relay.domain.config import AffiliateConfig
    from postback_relay.domain.conversion import ConversionResult, Offer
    from postback_relay.domain.events import Event


@dataclass(frozen=True)
class DeliveryRecord:
    delivery_id: str
    message: PostbackMessage
    state: DeliveryState
    attempts: tuple[Attempt, ...]
    created_at: str
    updated_at: str
    last_error: str | None = None
    replays: int = 0

    @property
    def http_status(self) -> int | None:
        return self.attempts[-1].status if self.attempts else None

    @property
    def ref(self) -> DeliveryRef:
        return self.message.ref


@dataclass(frozen=True)
class StoredAffiliate:
    config: AffiliateConfig
    version: int
    updated_at: str
    updated_by: str | None = None


@dataclass(frozen=True)
class FirstRecord:
    """What a repeat finds: the first result, and the content fields in which the repeat
    differs from the conversion first recorded (empty: the same content)."""

    result: ConversionResult
    differing: tuple[str, ...] = ()


@dataclass(frozen=True)
class OriginalConversion:
    """What a conversion's record keeps for a later reversal of it: who it was for, its offer
    (without its name) and its tracker (`trID_..._trID`); None where the record has none (its
    link could not be read, or it was recorded before reversals)."""

    transaction_id: str
    event: Event
    affiliate_id: str | None
    offer: Offer | None
    tracker: str | None


@dataclass(frozen=True)
class OutboxRecord:
    """One new conversion from the conversions table's stream, with the messages it holds;
    `unreadable` says why its messages could not be read (a record to park), `image` is then
    the record's raw new image (JSON text), kept with it."""

    sequence_number: str
    conversion_id: str
    messages: tuple[PostbackMessage, ...] = ()
    unreadable: str | None = None
    image: str = ""


@dataclass(frozen=True)
class SendResult:
    status: int | None
    latency_ms: int
    excerpt: str | None
    retry_after_s: float | None = None
    error_kind: str | None = None  # timeout, connection_error, unsafe_url
    error: str | None = None


@dataclass(frozen=True)
class ReceivedPostback:
    """One message of the postback queue as received (an SQS record): what the dispatcher reads
    and what its waits count from."""

    message_id: str
    receipt_handle: str
    receive_count: int
    body: str
    # A lower bound of this receipt (epoch seconds): the invocation's start less the batching
    # window (never the message's SentTimestamp: a message sent long ago may be received now).
    # SQS refuses a visibility past 12 hours from the receipt; None counts the receipt as now.
    received_by: float | None = None
