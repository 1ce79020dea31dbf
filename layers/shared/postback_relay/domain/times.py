"""Moments as text: how this system writes a time, and how it reads one back.

Every moment is written in UTC, RFC 3339 with a `Z`. There are three precisions, because three
kinds of reader need them, and each has one function:

- `utc_seconds` (`2026-11-25T12:00:00Z`): what people read, and what they have always read at
  whole seconds: the `{occurred_at}` macro (contract section 3), a circuit notice's text, an
  affiliate's `updated_at` (`postback affiliate get`), a conversion record's `occurred_at`.
- `utc_millis` (`2026-11-25T12:00:00.000Z`): every time the delivery log and the test runs keep.
  Fixed width, so that text order is time order: the delivery log's sort key starts with it and
  `postback health` reads a time window by comparing keys as text. Two postbacks created in the
  same second must still sort by creation.
- `utc_exact` (`2026-11-25T12:00:00.123456Z`, or `...:00Z` without a fraction): a moment as a
  pydantic model's JSON writes it. A conversion record's `received_at` is the `created_at` of
  its postbacks' messages, written the same way so that the outbox keeps it once, not per
  message, and the messages are rebuilt exactly.

`parse_utc` reads any of them back (and older items written at another precision), as an
aware datetime.
"""

from datetime import UTC, datetime


def utc_now() -> datetime:
    """Now, as an aware UTC datetime (the default clock of the stores and services)."""
    return datetime.now(UTC)


def utc_seconds(moment: datetime) -> str:
    """`2026-11-25T12:00:00Z`: whole seconds, for people."""
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def utc_millis(moment: datetime) -> str:
    """`2026-11-25T12:00:00.000Z`: milliseconds, fixed width, so that text sorts in time order."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc_exact(moment: datetime) -> str:
    """The moment as pydantic's JSON writes it: microseconds when it has any, none otherwise."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_utc(text: str) -> datetime:
    """A moment written by any of the functions above (or with an offset), as an aware datetime.

    A text without an offset is read as UTC."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
