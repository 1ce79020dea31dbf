"""The built-in macros (contract section 3): each name, with how its value is read from a
conversion.

This table is the one list: a config may name exactly these macros besides its tracker's
fields (`BUILTIN_MACROS`, checked in domain.config), and rendering gives them these values
(`builtin_values`, used by domain.render). A new macro is one entry here, and a line in the
contract's and the README's lists.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from postback_relay.domain.times import utc_seconds

if TYPE_CHECKING:
    from postback_relay.domain.conversion import Conversion

# A macro's value for one conversion, sent to the affiliate `affiliate_id`.
type MacroValue = Callable[[Conversion, str], str]


def _amount(conversion: Conversion, _affiliate_id: str) -> str:
    # A registration or a trial sent without money renders both `{amount}` and `{currency}` empty.
    if conversion.amount_text:
        return conversion.amount_text
    return "" if conversion.amount is None else str(conversion.amount)


def _payout(conversion: Conversion, _affiliate_id: str) -> str:
    # Empty when the platform sent no payout (the affiliate's commission).
    if conversion.payout_text:
        return conversion.payout_text
    return "" if conversion.payout is None else str(conversion.payout)


MACROS: Mapping[str, MacroValue] = MappingProxyType(
    {
        "transaction_id": lambda conversion, _: conversion.transaction_id,
        "event": lambda conversion, _: conversion.event.value,
        # The event in the tracker's words: the event's own name unless the postback maps it
        # (`statuses:`, or its preset's map), which domain.render applies per postback.
        "status": lambda conversion, _: conversion.event.value,
        "amount": _amount,
        "payout": _payout,
        "currency": lambda conversion, _: conversion.currency or "",
        "offer_id": lambda conversion, _: conversion.offer_id,
        "offer_name": lambda conversion, _: (conversion.offer.name if conversion.offer else None) or "",
        "offer_type": lambda conversion, _: conversion.offer.type.value if conversion.offer else "",
        "affiliate_id": lambda _, affiliate_id: affiliate_id,
        # The conversion a chargeback or a refund reverses; empty for every other event.
        "original_transaction_id": lambda conversion, _: conversion.original_transaction_id or "",
        # RFC 3339 at whole seconds, in UTC whatever offset the platform sent.
        "occurred_at": lambda conversion, _: utc_seconds(conversion.occurred_at),
        "timestamp": lambda conversion, _: str(int(conversion.occurred_at.timestamp())),  # unix seconds
    }
)

BUILTIN_MACROS: frozenset[str] = frozenset(MACROS)


def builtin_values(conversion: Conversion, affiliate_id: str) -> dict[str, str]:
    """Every built-in macro's value for one conversion sent to `affiliate_id`."""
    return {name: value(conversion, affiliate_id) for name, value in MACROS.items()}
