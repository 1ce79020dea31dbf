"""A repeat with other content (contract section 2): the same `(transaction_id, event)` posted
again with another amount, link or offer is answered 409 with the first result and the names of
the fields that differ, and changes nothing.

What is compared is every field the caller sends but the identity: each one's value, as the
relay reads it (an amount's exact text, a time's UTC instant), by a short digest per field. The
record keeps the digests, not the values: a link is up to 8 KB, and the record should stay near
one write unit. A field added to Conversion is compared without a change here (a dotted name
per nested field: `offer.name`). A field one side has and the other has not differs, unless it
is absent (None) on the other: a record written before a field existed does not differ from a
repeat that leaves it out.
"""

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from postback_relay.domain.times import utc_exact

IDENTITY = frozenset({"transaction_id", "event"})
# `amount` is compared through `amount_text` (the exact text sent: 25.00 and 25.0 render
# differently); shown to people as `amount`.
_SHOWN_AS = {"amount_text": "amount"}
_NOT_COMPARED = IDENTITY | {"amount"}
# 24 bits, 4 characters: a changed field looks the same with a chance of 1 in 16.7 million (it is
# then answered as a plain repeat, 200, as before this check). Short, because the record of a
# conversion firing one postback must stay one write unit (1 KB).
DIGEST_BYTES = 3


def _digest(value: object) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return base64.urlsafe_b64encode(
        hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:DIGEST_BYTES]
    ).decode()


def _flat(prefix: str, value: Any, into: dict[str, object]) -> None:
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            _flat(f"{prefix}.{name}", getattr(value, name), into)
    elif isinstance(value, datetime):
        into[prefix] = utc_exact(value)  # the same instant, whatever the offset it was sent with
    elif value is not None and value != "":
        into[prefix] = value if isinstance(value, str | int | bool) else str(value)


def content_digests(conversion: BaseModel) -> dict[str, str]:
    """Each content field of a conversion (all but its identity), by name, as a short digest."""
    values: dict[str, object] = {}
    for name in type(conversion).model_fields:
        if name not in _NOT_COMPARED:
            _flat(_SHOWN_AS.get(name, name), getattr(conversion, name), values)
    return {name: _digest(value) for name, value in values.items()}


def differing_fields(
    first: Mapping[str, str], again: Mapping[str, str], *, only: Iterable[str] | None = None
) -> tuple[str, ...]:
    """The names of the fields whose digests differ, sorted; `only` limits the comparison to
    those names (a record that kept a few fields' values, not every digest)."""
    names = set(only) if only is not None else set(first) | set(again)
    return tuple(sorted(name for name in names if first.get(name) != again.get(name)))


def digests_text(digests: Mapping[str, str]) -> str:
    """As a record keeps them: `amount=xxxxxxxx currency=yyyyyyyy ...`."""
    return " ".join(f"{name}={digest}" for name, digest in sorted(digests.items()))


def digests_of_text(text: str) -> dict[str, str]:
    pairs = (part.partition("=") for part in text.split())
    return {name: digest for name, _, digest in pairs if name}


def digests_of_values(values: Mapping[str, object]) -> dict[str, str]:
    """Digests of plain values a record kept (older records: amount, currency, offer.id...)."""
    return {name: _digest(value) for name, value in values.items() if value is not None and value != ""}
