"""Waits off the queue's in-flight count: delayed copies, hops of 15 minutes, the fallback to
a visibility change within SQS's 12 hours from the receipt, and the receive counts the
copies carry (issue 19)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from postback_relay.domain.delivery import (
    MAX_MESSAGE_DELAY_S,
    MAX_VISIBILITY_S,
    VISIBILITY_MARGIN_S,
    CircuitStatus,
    PostbackMessage,
    WaitSchedule,
    hop_delay,
    visibility_within_receipt,
)
from postback_relay.domain.records import ReceivedPostback, SendResult
from postback_relay.services.dispatch import MAX_DEFERRED_RECEIVES, Dispatcher, DispatchOutcome

HOUR = 3600


def record_of(message: PostbackMessage, *, count: int = 1, received_by: float | None = None) -> ReceivedPostback:
    return ReceivedPostback("m1", "h1", count, message.model_dump_json(), received_by)


def waiting(message: PostbackMessage, clock: Any, *, due_in_s: float, receives: int = 1) -> PostbackMessage:
    return message.scheduled(WaitSchedule(not_before=clock.at() + timedelta(seconds=due_in_s), receives=receives))


# --- the pure rules ----------------------------------------------------------------------------


def test_a_hop_is_one_sqs_delay_at_most_and_a_whole_second_at_least() -> None:
    assert [hop_delay(s) for s in (0, 0.2, 5, 899.5, 900, 36_000)] == [1, 1, 5, 900, 900, MAX_MESSAGE_DELAY_S]


def test_the_twelve_hour_rule_counts_from_the_receipt_and_is_never_exceeded() -> None:
    # GIVEN a message received (at the latest) 11 hours ago
    now = 1_800_000_000.0
    received_by = now - 11 * HOUR
    # WHEN a 10-hour visibility is wanted, THEN only what is left of its 12 hours is asked for,
    # less the margin: SQS rejects a longer one instead of clamping it
    left = visibility_within_receipt(10 * HOUR, received_by=received_by, now=now)
    assert left == HOUR - VISIBILITY_MARGIN_S
    assert now + left <= received_by + MAX_VISIBILITY_S
    # AND a shorter wish is kept as it is
    assert visibility_within_receipt(300, received_by=received_by, now=now) == 300
    # AND past the 12 hours nothing can be asked for
    assert visibility_within_receipt(300, received_by=now - 12 * HOUR, now=now) == 0
    # AND an unknown receipt counts as now: 12 hours less the margin at most
    assert visibility_within_receipt(13 * HOUR, received_by=None, now=now) == MAX_VISIBILITY_S - VISIBILITY_MARGIN_S
    # AND a receipt stamped by a clock ahead of ours never widens the window
    assert visibility_within_receipt(13 * HOUR, received_by=now + 50, now=now) == MAX_VISIBILITY_S - VISIBILITY_MARGIN_S


def test_a_message_without_a_schedule_serialises_as_before(new_message: Any) -> None:
    # GIVEN a postback as ingest queues it, WHEN serialised, THEN it has no `schedule` key at all
    message = new_message(1)
    assert "schedule" not in json.loads(message.model_dump_json())
    assert "schedule" not in message.model_dump(mode="json")


# --- the dispatcher ---------------------------------------------------------------------------


def test_a_copy_received_before_its_due_time_is_queued_again_without_a_read_or_a_call(
    dispatcher: Dispatcher, deliveries: Any, sender: Any, retries: Any, clock: Any, new_message: Any
) -> None:
    # GIVEN a copy of a postback due in 5 hours (a chained wait), received now
    message = waiting(new_message(1), clock, due_in_s=5 * HOUR, receives=3)
    # WHEN it is dispatched
    result = dispatcher.dispatch(record_of(message))
    # THEN it is queued again for one more SQS delay, with its due time and receive count
    # unchanged (a hop is not a receive of the postback), and deleted: no log read, no call
    assert (result.outcome, result.requeued, result.stays_on_queue) == (DispatchOutcome.WAITING, True, False)
    ((body, delay),) = retries.requeued
    assert delay == MAX_MESSAGE_DELAY_S
    assert PostbackMessage.model_validate_json(body) == message
    assert (deliveries.reads, sender.calls, retries.delays) == (0, [], [])


def test_a_copy_due_within_a_second_is_attempted(
    dispatcher: Dispatcher, deliveries: Any, sender: Any, retries: Any, clock: Any, new_message: Any
) -> None:
    # GIVEN a copy whose due time is less than a second ahead (SQS delays count whole seconds)
    message = waiting(new_message(1), clock, due_in_s=0.5)
    # WHEN it is dispatched, THEN it is sent now
    assert dispatcher.dispatch(record_of(message)).outcome is DispatchOutcome.DELIVERED
    assert retries.requeued == []


def test_the_log_and_the_dlq_keep_the_postback_without_its_schedule(
    dispatcher: Dispatcher, deliveries: Any, sender: Any, retries: Any, clock: Any, new_message: Any
) -> None:
    # GIVEN a due copy of a postback whose tracker now answers 404
    plain = new_message(1)
    sender.answer(plain.url, SendResult(404, 5, "gone"))
    # WHEN it is dispatched
    result = dispatcher.dispatch(record_of(waiting(plain, clock, due_in_s=0), count=1))
    # THEN it failed for good; the log keeps the postback as queued (replay sends that) and the
    # DLQ gets the same body the original message had
    assert result.outcome is DispatchOutcome.FAILED
    assert deliveries.records[plain.delivery_id].message == plain
    assert retries.dead_letters == [(plain.model_dump_json(), "answered HTTP 404", plain.delivery_id)]


def test_deferral_copies_carry_the_receive_count_to_the_bound(
    dispatcher: Dispatcher, sender: Any, retries: Any, endpoints: Any, clock: Any, new_message: Any
) -> None:
    # GIVEN an endpoint whose circuit another instance keeps open for an hour at a time
    from postback_relay.domain.delivery import Circuit

    endpoint = "https://track1.example:443"
    message = new_message(1)
    sender.answer(message.url, SendResult(503, 5, "down"))
    dispatcher.dispatch(record_of(new_message(2, url=message.url)))  # a failure: this instance reads the store
    retries.requeued.clear()
    # WHEN the postback's message and then each of its copies is received, every one of them
    # for the first time as SQS counts (each copy is a new message)
    outcomes: list[DispatchOutcome] = []
    record = record_of(message)
    while sum(o is not DispatchOutcome.WAITING for o in outcomes) < MAX_DEFERRED_RECEIVES:
        endpoints.circuits[endpoint] = Circuit(endpoint, CircuitStatus.OPEN, 5, clock.now + 3000, 3600)
        result = dispatcher.dispatch(record)
        outcomes.append(result.outcome)
        body, delay = retries.requeued[-1]
        clock.now += delay
        record = ReceivedPostback(f"m{len(outcomes)}", f"h{len(outcomes)}", 1, body)
    # THEN it is deferred on receives 1 to 29, hopping through the long cool-downs, and
    # attempted on the 30th as before re-sends: never deferred for ever
    attempts = [o for o in outcomes if o is not DispatchOutcome.WAITING]
    assert attempts[: MAX_DEFERRED_RECEIVES - 1] == [DispatchOutcome.DEFERRED] * (MAX_DEFERRED_RECEIVES - 1)
    assert attempts[MAX_DEFERRED_RECEIVES - 1] is DispatchOutcome.RETRIED
    assert DispatchOutcome.WAITING in outcomes
    assert sender.calls_to(message.url) == 2


def test_a_refused_copy_falls_back_to_hiding_the_message_within_twelve_hours_of_its_receipt(
    dispatcher: Dispatcher, sender: Any, retries: Any, clock: Any, new_message: Any
) -> None:
    # GIVEN SQS refusing the delayed copy, and a message received 11 hours ago
    retries.refuse_requeue = True
    message = new_message(1)
    sender.answer(message.url, SendResult(503, 5, "busy", retry_after_s=10 * HOUR))
    # WHEN its attempt gets a 503 asking for 10 hours
    result = dispatcher.dispatch(record_of(message, received_by=clock.now - 11 * HOUR))
    # THEN the message stays on the queue (a batch item failure), hidden for what is left of
    # its 12 hours: asking for more would be rejected by SQS
    assert (result.outcome, result.delay_s, result.requeued, result.stays_on_queue) == (
        DispatchOutcome.RETRIED,
        10 * HOUR,
        False,
        True,
    )
    assert retries.delays == [("h1", HOUR - VISIBILITY_MARGIN_S)]


def test_a_refused_copy_past_the_twelve_hours_changes_no_visibility(
    dispatcher: Dispatcher, sender: Any, retries: Any, clock: Any, new_message: Any
) -> None:
    # GIVEN SQS refusing the copy of a message received 12 hours ago
    retries.refuse_requeue = True
    message = new_message(1)
    sender.answer(message.url, SendResult(500, 5, "oops"))
    # WHEN its retry is scheduled
    result = dispatcher.dispatch(record_of(message, received_by=clock.now - 12 * HOUR))
    # THEN no visibility change is asked (SQS would reject it): it stays on the queue and comes
    # back after the queue's visibility timeout
    assert result.stays_on_queue
    assert retries.delays == []


def test_a_hop_whose_copy_is_refused_stays_hidden_until_its_due_time_at_most(
    dispatcher: Dispatcher, deliveries: Any, retries: Any, clock: Any, new_message: Any
) -> None:
    # GIVEN SQS refusing copies, and a copy due in 2 hours received now
    retries.refuse_requeue = True
    message = waiting(new_message(1), clock, due_in_s=2 * HOUR)
    # WHEN it is dispatched
    result = dispatcher.dispatch(record_of(message, received_by=clock.now))
    # THEN it stays on the queue hidden until it is due, with no read and no call
    assert (result.outcome, result.stays_on_queue) == (DispatchOutcome.WAITING, True)
    assert retries.delays == [("h1", 2 * HOUR)]
    assert deliveries.reads == 0
