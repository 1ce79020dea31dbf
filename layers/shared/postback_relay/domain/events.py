"""The conversion events and offer types of the network (see the network's guide)."""

from enum import StrEnum


class Event(StrEnum):
    """A conversion event, as the platform posts it."""

    REGISTRATION = "registration"  # free registration: the visitor opens a free account
    TRIAL = "trial"  # 30 minutes of free testing of the member zone
    SALE = "sale"  # signup: the trial converted
    REBILL = "rebill"  # membership renewed
    CHARGEBACK = "chargeback"  # the customer's bank took a payment back (reverses a conversion)
    REFUND = "refund"  # the network paid a payment back (reverses a conversion)


class OfferType(StrEnum):
    """Where the affiliate ID is read from in a network link."""

    REVSHARE = "revshare"  # `id` is the affiliate; the tracker holds only the affiliate's values
    PPS = "pps"  # `id` is the offer; the tracker starts with `<affiliate id>_`


# The events that reverse an earlier conversion: they carry `original_transaction_id`.
REVERSALS: frozenset[Event] = frozenset({Event.CHARGEBACK, Event.REFUND})
# Where a reversal's original is looked for, in this order (its transaction ID with each
# event): a conversion first; a reversal found instead is a reversal of a reversal.
ORIGINAL_EVENTS: tuple[Event, ...] = (
    Event.SALE,
    Event.REBILL,
    Event.TRIAL,
    Event.REGISTRATION,
    Event.CHARGEBACK,
    Event.REFUND,
)
