"""The dispatcher starts no send the invocation's timeout could cut off (issue 24): with less
time left than a send and its record write, a postback stays on the queue, untouched."""

from __future__ import annotations

from typing import Any

from fakes import FakeDeliveryLog, FakeEndpointStore, FakeRetryControl, ScriptedSender
from fakes.clocks import Clock

from postback_relay.domain.records import ReceivedPostback, SendResult
from postback_relay.services.circuit import CircuitBreakers
from postback_relay.services.dispatch import Dispatcher, DispatchOutcome

SEND_S, RECORD_S = 13.0, 12.0


def budgeted(
    deliveries: FakeDeliveryLog, sender: ScriptedSender, retries: FakeRetryControl, clock: Clock
) -> Dispatcher:
    return Dispatcher(
        deliveries=deliveries,
        sender=sender,
        retries=retries,
        breakers=CircuitBreakers(FakeEndpointStore(), clock=clock),
        send_budget_s=SEND_S,
        record_budget_s=RECORD_S,
        clock=clock.at,
    )


def records(messages: list[Any]) -> list[ReceivedPostback]:
    return [ReceivedPostback(f"m{n}", f"h{n}", 1, m.model_dump_json()) for n, m in enumerate(messages)]


def test_with_too_little_time_left_nothing_is_sent_and_every_record_stays(
    deliveries: FakeDeliveryLog, sender: ScriptedSender, retries: FakeRetryControl, clock: Clock, new_message: Any
) -> None:
    # GIVEN a dispatcher whose send takes up to 13 s and its record write up to 12 s
    dispatcher = budgeted(deliveries, sender, retries, clock)
    messages = [new_message(n) for n in range(3)]
    # WHEN a batch is dispatched with 24.9 s left in the invocation
    outcomes = dispatcher.dispatch_batch(records(messages), time_left=lambda: SEND_S + RECORD_S - 0.1)
    # THEN nothing is read, sent, written or re-queued: each record stays on the queue
    assert {o.outcome for o in outcomes.values() if not isinstance(o, Exception)} == {DispatchOutcome.POSTPONED}
    assert all(not isinstance(o, Exception) and o.stays_on_queue for o in outcomes.values())
    assert [sender.calls_to(m.url) for m in messages] == [0, 0, 0]
    assert (deliveries.reads, retries.requeued, retries.delays) == (0, [], [])


def test_time_running_out_during_the_pre_check_stops_the_send(
    deliveries: FakeDeliveryLog, sender: ScriptedSender, retries: FakeRetryControl, clock: Clock, new_message: Any
) -> None:
    # GIVEN enough time when the postback's turn comes, too little once its log is read
    dispatcher = budgeted(deliveries, sender, retries, clock)
    left = iter([SEND_S + RECORD_S + 5, SEND_S + RECORD_S - 1])
    message = new_message(1)
    # WHEN it is dispatched
    outcomes = dispatcher.dispatch_batch(records([message]), time_left=lambda: next(left))
    # THEN its log was read, but it was not sent: it stays on the queue, its log untouched
    (outcome,) = outcomes.values()
    assert not isinstance(outcome, Exception)
    assert (outcome.outcome, outcome.stays_on_queue) == (DispatchOutcome.POSTPONED, True)
    assert deliveries.reads == 1
    assert sender.calls_to(message.url) == 0
    assert deliveries.get(message.ref) is None


def test_with_time_enough_the_batch_goes_as_before(
    deliveries: FakeDeliveryLog, sender: ScriptedSender, retries: FakeRetryControl, clock: Clock, new_message: Any
) -> None:
    # GIVEN 30 s left, a full Lambda timeout
    dispatcher = budgeted(deliveries, sender, retries, clock)
    message = new_message(1)
    sender.answer(message.url, SendResult(200, 5, "ok"))
    # WHEN it is dispatched
    outcomes = dispatcher.dispatch_batch(records([message]), time_left=lambda: 30.0)
    # THEN it is delivered
    assert [o.outcome for o in outcomes.values() if not isinstance(o, Exception)] == [DispatchOutcome.DELIVERED]
