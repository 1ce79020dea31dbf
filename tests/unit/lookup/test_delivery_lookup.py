"""services.lookup over the fakes: a transaction's postbacks found through its conversion
records or its test run, read from the delivery log; the failed ones replayed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fakes import FakeConversionLog, FakeDeliveryLog, FakePostbackQueue, FakeTestRunStore, delivery_record, message

from postback_relay.domain.delivery import DeliveryState, PostbackMessage, key_time
from postback_relay.domain.testrun import StepName, TestRun, TestStep
from postback_relay.services.lookup import DeliveryLookup, replay_failed

AT = datetime(2026, 12, 6, 12, tzinfo=UTC)
RUN_ID = "20261206T120000-0a1b2c3d"


@pytest.fixture
def deliveries() -> FakeDeliveryLog:
    return FakeDeliveryLog()


@pytest.fixture
def conversions() -> FakeConversionLog:
    return FakeConversionLog()


@pytest.fixture
def runs() -> FakeTestRunStore:
    return FakeTestRunStore()


@pytest.fixture
def lookup(deliveries: FakeDeliveryLog, conversions: FakeConversionLog, runs: FakeTestRunStore) -> DeliveryLookup:
    return DeliveryLookup(deliveries, conversions, runs)


def logged(
    deliveries: FakeDeliveryLog, postback: PostbackMessage, state: DeliveryState = DeliveryState.DELIVERED
) -> None:
    deliveries.records[postback.delivery_id] = delivery_record(postback, state, [200])


def test_a_transactions_postbacks_are_found_through_its_conversion_records_newest_first(
    lookup: DeliveryLookup, deliveries: FakeDeliveryLog, conversions: FakeConversionLog
) -> None:
    # GIVEN a transaction whose records keep three postbacks (one no longer in the log), and
    # another transaction's postback
    sale, failed, rebill = (message(n, transaction_id="T-X", created_at=AT + timedelta(minutes=n)) for n in (1, 2, 3))
    gone, other = message(4, transaction_id="T-X"), message(5, transaction_id="T-Y")
    conversions.outbox.extend([sale, failed, rebill, gone, other])
    logged(deliveries, sale)
    logged(deliveries, failed, DeliveryState.FAILED)
    logged(deliveries, rebill, DeliveryState.RETRYING)
    logged(deliveries, other, DeliveryState.FAILED)
    # WHEN its postbacks are listed
    found = lookup.by_transaction("T-X")
    # THEN the logged ones come back, newest first, none of the other transaction's
    assert [r.delivery_id for r in found] == [rebill.delivery_id, failed.delivery_id, sale.delivery_id]
    assert [r.delivery_id for r in lookup.by_transaction("T-X", limit=1)] == [rebill.delivery_id]
    # AND its failed ones are its own only, of the affiliate when one is named
    assert [r.delivery_id for r in lookup.failed(transaction_id="T-X")] == [failed.delivery_id]
    assert lookup.failed(transaction_id="T-X", affiliate_id="7654321") == []
    assert lookup.by_transaction("T-never") == []


def test_without_a_transaction_the_failed_ones_are_the_logs(
    lookup: DeliveryLookup, deliveries: FakeDeliveryLog
) -> None:
    # GIVEN failed postbacks of two affiliates that no conversion record keeps
    mine, theirs = message(1), message(2, affiliate_id="7654321")
    logged(deliveries, mine, DeliveryState.FAILED)
    logged(deliveries, theirs, DeliveryState.FAILED)
    # WHEN the failed ones are listed by affiliate, or all of them
    # THEN the delivery log answers
    assert [r.delivery_id for r in lookup.failed(affiliate_id="1234567")] == [mine.delivery_id]
    assert {r.delivery_id for r in lookup.failed()} == {mine.delivery_id, theirs.delivery_id}


def test_a_test_link_postback_is_found_through_its_runs_fire_step(
    lookup: DeliveryLookup, deliveries: FakeDeliveryLog, runs: FakeTestRunStore
) -> None:
    # GIVEN a run whose fire step queued two postbacks, the first logged
    first = message(21, transaction_id=f"test-{RUN_ID}-1", created_at=AT)
    second = message(22, transaction_id=f"test-{RUN_ID}-2", created_at=AT)
    fired = [
        {"transaction_id": m.transaction_id, "delivery_id": m.delivery_id, "created_at": key_time(m.created_at)}
        for m in (first, second)
    ]
    step = TestStep(name=StepName.FIRE_POSTBACKS, at=AT, ok=True, details={"postbacks": fired})
    runs.create(TestRun(run_id=RUN_ID, affiliate_id="1234567", started_by="ops", started_at=AT, steps=(step,)))
    logged(deliveries, first)
    # WHEN each transaction's postbacks are listed
    # THEN the logged one is found by its run's record, the other not (yet); an unknown run has none
    assert [r.delivery_id for r in lookup.by_transaction(first.transaction_id)] == [first.delivery_id]
    assert lookup.by_transaction(second.transaction_id) == []
    assert lookup.by_transaction("test-19990101T000000-00000000-1") == []
    assert lookup.refs("test-") == []


def test_a_fire_step_entry_without_its_creation_time_is_looked_for_at_the_runs_start(
    lookup: DeliveryLookup, deliveries: FakeDeliveryLog, runs: FakeTestRunStore
) -> None:
    # GIVEN a run recorded before the fire step kept each postback's creation time
    postback = message(31, transaction_id=f"test-{RUN_ID}-1", created_at=AT)
    fired = [{"transaction_id": postback.transaction_id, "delivery_id": postback.delivery_id}]
    step = TestStep(name=StepName.FIRE_POSTBACKS, at=AT, ok=True, details={"postbacks": fired})
    runs.create(TestRun(run_id=RUN_ID, affiliate_id="1234567", started_by="ops", started_at=AT, steps=(step,)))
    logged(deliveries, postback)
    # WHEN its transaction's postbacks are listed, THEN it is found at the run's start
    assert [r.delivery_id for r in lookup.by_transaction(postback.transaction_id)] == [postback.delivery_id]


def test_replay_queues_a_transactions_failed_postbacks_and_marks_them_pending(
    lookup: DeliveryLookup, deliveries: FakeDeliveryLog, conversions: FakeConversionLog
) -> None:
    # GIVEN a transaction with one failed and one delivered postback, and another failed one
    failed, delivered, other = message(1, transaction_id="T-X"), message(2, transaction_id="T-X"), message(3)
    conversions.outbox.extend([failed, delivered, other])
    logged(deliveries, failed, DeliveryState.FAILED)
    logged(deliveries, delivered)
    logged(deliveries, other, DeliveryState.FAILED)
    queue = FakePostbackQueue()
    # WHEN the transaction's failed postbacks are replayed
    replayed = replay_failed(lookup, queue, transaction_id="T-X")
    # THEN only its failed one is queued again and pending; the other stays failed
    assert replayed == [failed.delivery_id]
    assert [m.delivery_id for m in queue.sent] == [failed.delivery_id]
    assert deliveries.records[failed.delivery_id].state is DeliveryState.PENDING
    assert deliveries.records[other.delivery_id].state is DeliveryState.FAILED
