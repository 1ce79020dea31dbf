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

import re
from datetime import UTC, datetime

from postback_relay.domain import messages

# The parts of an RFC 3339 date-time (and the forms pydantic also reads: a space for the T, a
# lower-case z, an offset without its colon), to name what is out of range in words.
_DATE_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ](?P<hour>\d{2}):\d{2}(?::(?P<second>\d{2})(?:\.\d+)?)?"
    r"(?P<offset>[Zz]|[+-](?P<offset_hours>\d{2}):?(?P<offset_minutes>\d{2}))?$"
)


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


def fits_utc(moment: datetime) -> bool:
    """Whether an aware moment, once converted to UTC, is still within the years 1 to 9999 (the
    functions above can write it). `0001-01-01T00:00:00+00:01` is valid RFC 3339 but is not."""
    try:
        moment.astimezone(UTC)
    except OverflowError:
        return False
    return True


def rfc3339_problem(text: str) -> str | None:
    """What a person should be told about a date-time that has RFC 3339's shape but a part no
    moment can hold (a leap second, the hour 24, an offset of 24 hours or more); None otherwise
    (the text may still be refused, by the parser, for another reason)."""
    parts = _DATE_TIME.fullmatch(text.strip())
    if parts is None:
        return None
    if parts["second"] == "60":
        return messages.occurred_at_leap_second()
    if parts["hour"] == "24":
        return messages.occurred_at_hour_24()
    hours, minutes = parts["offset_hours"], parts["offset_minutes"]
    if hours is not None and (int(hours) > 23 or int(minutes) > 59):
        return messages.occurred_at_offset(parts["offset"])
    return None
