"""Moments as text: three precisions, each for its readers, all read back by one function."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from postback_relay.domain.times import fits_utc, parse_utc, rfc3339_problem, utc_exact, utc_millis, utc_seconds

PARIS = timezone(timedelta(hours=1))
MOMENT = datetime(2026, 11, 25, 13, 0, 0, 123456, tzinfo=PARIS)  # 12:00:00.123456 UTC


def test_each_precision_writes_utc_with_z() -> None:
    # GIVEN a moment with microseconds, stamped in another offset
    # WHEN it is written at each precision
    # THEN each is the same instant in UTC, with Z, cut (not rounded) to its precision
    assert utc_seconds(MOMENT) == "2026-11-25T12:00:00Z"
    assert utc_millis(MOMENT) == "2026-11-25T12:00:00.123Z"
    assert utc_exact(MOMENT) == "2026-11-25T12:00:00.123456Z"
    # AND a whole second has no fraction in the exact form, as pydantic's JSON writes it
    assert utc_exact(MOMENT.replace(microsecond=0)) == "2026-11-25T12:00:00Z"


def test_milliseconds_sort_as_text_in_time_order() -> None:
    # GIVEN moments within one second, and one on the whole second
    moments = [MOMENT.replace(microsecond=m) for m in (0, 5_000, 120_000, 999_000)]
    # WHEN they are written as the delivery log's keys are
    texts = [utc_millis(moment) for moment in moments]
    # THEN text order is time order (a whole second too keeps its `.000`)
    assert texts == sorted(texts)
    assert len({len(text) for text in texts}) == 1


@pytest.mark.parametrize(
    "text",
    ["2026-11-25T12:00:00Z", "2026-11-25T12:00:00.123Z", "2026-11-25T12:00:00.123456Z", "2026-11-25T13:00:00+01:00"],
)
def test_every_precision_reads_back_as_an_aware_moment(text: str) -> None:
    # GIVEN a time as an item of any age holds it
    # WHEN it is read back
    moment = parse_utc(text)
    # THEN it is that instant, aware, to the second at least
    assert moment.tzinfo is not None
    assert moment.replace(microsecond=0) == datetime(2026, 11, 25, 12, tzinfo=UTC)


def test_each_precision_round_trips() -> None:
    # GIVEN a moment written at each precision
    # WHEN each text is read back
    # THEN it is the moment cut to that precision
    assert parse_utc(utc_seconds(MOMENT)) == MOMENT.replace(microsecond=0)
    assert parse_utc(utc_millis(MOMENT)) == MOMENT.replace(microsecond=123_000)
    assert parse_utc(utc_exact(MOMENT)) == MOMENT


def test_a_time_without_offset_is_read_as_utc() -> None:
    # GIVEN a time written without an offset
    # WHEN it is read back
    # THEN it is taken as UTC, never as the machine's local time
    assert parse_utc("2026-11-25T12:00:00") == datetime(2026, 11, 25, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "fits"),
    [
        ("0001-01-01T00:00:00+00:01", False),  # year 0 in UTC
        ("9999-12-31T23:59:59-23:59", False),  # year 10000 in UTC
        ("0001-01-01T00:00:00-00:01", True),
        ("9999-12-31T23:59:59+23:59", True),
    ],
)
def test_a_moment_fits_utc_only_within_the_years_1_to_9999(text: str, fits: bool) -> None:
    # GIVEN a valid RFC 3339 time at the calendar's edge
    # WHEN it is asked whether it can be written in UTC
    # THEN only those whose UTC instant stays within years 1 to 9999 can (utc_seconds would overflow)
    assert fits_utc(datetime.fromisoformat(text)) is fits


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("2016-12-31T23:59:60Z", "leap second"),
        ("2026-11-25T24:00:00Z", "hour 24"),
        ("2026-11-25T12:00:00+24:00", "offset +24:00"),
        ("2026-11-25T12:00:00-05:60", "offset -05:60"),
        ("2026-11-25T12:00:00+2400", "offset +2400"),
        ("2026-11-25T12:00:00+23:59", None),
        ("2026-11-25T12:00:00Z", None),
        ("not a time", None),
    ],
)
def test_a_part_no_moment_can_hold_is_named(text: str, said: str | None) -> None:
    problem = rfc3339_problem(text)
    if said is None:
        assert problem is None
    else:
        assert problem is not None and said in problem and problem.startswith("occurred_at")
