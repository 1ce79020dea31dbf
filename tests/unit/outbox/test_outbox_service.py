"""The outbox use case over an in-memory queue: stream records in order, groups of 10 across
records, and the first record not wholly queued is where the stream retries from."""

from __future__ import annotations

from datetime import UTC, datetime

from fakes import FakeParkedRecords, FakePostbackQueue

from postback_relay.domain.delivery import PostbackMessage
from postback_relay.domain.events import Event
from postback_relay.domain.records import OutboxRecord
from postback_relay.services.outbox import GROUP, OutboxService

NOW = datetime(2026, 11, 25, 12, 0, 5, tzinfo=UTC)


def message(transaction_id: str, index: int = 0) -> PostbackMessage:
    return PostbackMessage(
        delivery_id=f"{transaction_id}-{index}".ljust(32, "0"),
        affiliate_id="1234567",
        transaction_id=transaction_id,
        event=Event.SALE,
        offer_id="89",
        url=f"https://track.acme.example/p?tx={transaction_id}&n={index}",
        created_at=NOW,
    )


def record(n: int, postbacks: int = 1) -> OutboxRecord:
    return OutboxRecord(f"{1000 + n}", f"T-{n}#sale", tuple(message(f"T-{n}", i) for i in range(postbacks)))


class CountingQueue(FakePostbackQueue):
    def __init__(self) -> None:
        super().__init__()
        self.group_sizes: list[int] = []

    def send(self, messages):  # type: ignore[no-untyped-def]
        self.group_sizes.append(len(messages))
        return super().send(messages)


def test_a_batch_of_100_one_postback_conversions_takes_ten_sends_of_ten() -> None:
    # GIVEN 100 new conversions from the stream, one postback each
    queue = CountingQueue()

    # WHEN the outbox relays them
    report = OutboxService(queue, FakeParkedRecords()).relay([record(n) for n in range(100)])

    # THEN ten sends of ten, every message in stream order, nothing to retry
    assert queue.group_sizes == [GROUP] * 10
    assert [m.transaction_id for m in queue.sent] == [f"T-{n}" for n in range(100)]
    assert (report.queued, report.failed) == (100, frozenset())


def test_groups_span_records() -> None:
    # GIVEN 7 conversions of 3 postbacks each (21 messages)
    queue = CountingQueue()
    report = OutboxService(queue, FakeParkedRecords()).relay([record(n, postbacks=3) for n in range(7)])
    # THEN three sends: 10, 10, 1
    assert queue.group_sizes == [10, 10, 1]
    assert report.queued == 21


def test_a_refused_message_fails_its_record_and_every_later_one_and_stops_sending() -> None:
    # GIVEN the queue refusing T-13's message
    queue = CountingQueue()
    queue.refuse = lambda m: m.transaction_id == "T-13"
    records = [record(n) for n in range(30)]

    # WHEN the outbox relays 30 conversions
    report = OutboxService(queue, FakeParkedRecords()).relay(records)

    # THEN it stopped after the group holding T-13 (no third send), and the stream retries from T-13 on
    assert queue.group_sizes == [10, 10]
    assert report.failed == frozenset(r.sequence_number for r in records[13:])
    assert report.queued == 19
    assert report.reasons == ("the queue refused 1 of 10 postbacks",)


def test_an_unreadable_record_is_parked_and_the_batch_carries_on() -> None:
    # GIVEN the fourth record's outbox unreadable
    queue, parking = FakePostbackQueue(), FakeParkedRecords()
    records = [record(n) for n in range(6)]
    records[3] = OutboxRecord("1003", "T-3#sale", unreadable="the item's postbacks are not a list", image="{}")

    # WHEN relayed
    report = OutboxService(queue, parking).relay(records)

    # THEN it is parked, with its image, and every other record is queued: nothing to retry
    assert parking.parked == [records[3]]
    assert [m.transaction_id for m in queue.sent] == ["T-0", "T-1", "T-2", "T-4", "T-5"]
    assert (report.failed, report.parked) == (frozenset(), ("T-3#sale",))
    assert report.reasons == ("conversion T-3#sale: the item's postbacks are not a list (parked)",)


def test_an_unreadable_record_that_cannot_be_parked_is_where_the_retry_starts() -> None:
    # GIVEN the fourth record's outbox unreadable, and the parking queue down
    queue, parking = FakePostbackQueue(), FakeParkedRecords(down=True)
    records = [record(n) for n in range(6)]
    records[3] = OutboxRecord("1003", "T-3#sale", unreadable="the item's postbacks are not a list")

    # WHEN relayed, THEN the three before it are queued, and it and all after it are retried
    report = OutboxService(queue, parking).relay(records)
    assert [m.transaction_id for m in queue.sent] == ["T-0", "T-1", "T-2"]
    assert report.failed == frozenset({"1003", "1004", "1005"})
    assert report.parked == ()
    assert report.reasons == (
        "parking failed: the parking queue is down",
        "conversion T-3#sale: the item's postbacks are not a list (not parked)",
    )


def test_of_two_unreadable_records_the_one_not_parked_is_where_the_retry_starts() -> None:
    # GIVEN records 1 and 4 unreadable, and parking refusing record 4 only
    queue = FakePostbackQueue()
    parking = FakeParkedRecords(refuse=lambda r: r.conversion_id == "T-4#sale")
    records = [record(n) for n in range(6)]
    for n in (1, 4):
        records[n] = OutboxRecord(f"{1000 + n}", f"T-{n}#sale", unreadable="bad")

    # WHEN relayed
    report = OutboxService(queue, parking).relay(records)

    # THEN record 1 is parked and passed over; the retry starts at record 4
    assert [m.transaction_id for m in queue.sent] == ["T-0", "T-2", "T-3"]
    assert (report.parked, report.failed) == (("T-1#sale",), frozenset({"1004", "1005"}))
