"""The conversion events and offer types of the network (see the network's guide)."""

from enum import StrEnum


class Event(StrEnum):
    """A conversion event, as the platform posts it."""

    REGISTRATION = "registration"  # free registration: the visitor opens a free account
    TRIAL = "trial"  # 30 minutes of free testing of the member zone
    SALE = "sale"  # signup: the trial converted
    REBILL = "rebill"  # membership renewed


class OfferType(StrEnum):
    """Where the affiliate ID is read from in a network link."""

    REVSHARE = "revshare"  # `id` is the affiliate; the tracker holds only the affiliate's values
    PPS = "pps"  # `id` is the offer; the tracker starts with `<affiliate id>_`


# The events that reverse an earlier conversion: they carry `original_transaction_id`.
REVERSALS: frozenset[Event] = frozenset()
