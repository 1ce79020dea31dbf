"""Moments as text: three precisions, each for its readers, all read back by one function."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from postback_relay.domain.times import parse_utc, utc_exact, utc_millis, utc_seconds

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
