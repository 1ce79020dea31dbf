"""services.dispatch over in-memory ports: one call per attempt, the right state, the right delay."""

from __future__ import annotations

from typing import Any

import pytest
from fakes import FakeAffiliateStore, FakeConversionLog, FakePostbackQueue, FakeTestRunStore, ingest_config_data

from postback_relay.domain.config import parse_config
from postback_relay.domain.delivery import FAILURE_THRESHOLD, CircuitStatus, DeliveryState
from postback_relay.domain.records import ReceivedPostback, SendResult
from postback_relay.services.circuit import CircuitBreakers
from postback_relay.services.dispatch import Dispatcher, DispatchOutcome
from postback_relay.services.lookup import DeliveryLookup, replay_failed


def received(message: Any, *, count: int = 1, handle: str | None = None) -> ReceivedPostback:
    return ReceivedPostback(
        message_id=f"m-{message.delivery_id}",
        receipt_handle=handle or f"h-{message.delivery_id}-{count}",
        receive_count=count,
        body=message.model_dump_json(),
    )


def back(retries: Any, clock: Any) -> ReceivedPostback:
    """The last delayed copy the dispatcher queued, received once its delay is over."""
    body, delay_s = retries.requeued[-1]
    clock.now += delay_s
    return ReceivedPostback(f"copy-{len(retries.requeued)}", f"h-copy-{len(retries.requeued)}", 1, body)


def test_a_first_receive_reads_the_log_once_and_is_delivered(
    dispatcher: Dispatcher, deliveries: Any, new_message: Any
) -> None:
    # GIVEN a postback received for the first time
    message = new_message(1)
    # WHEN it is dispatched and the tracker answers 200
    result = dispatcher.dispatch(received(message))
    # THEN it is delivered, attempt 1 logged, after one read of the log (a copy may have gone)
    assert result.outcome is DispatchOutcome.DELIVERED
    record = deliveries.records[message.delivery_id]
    assert record.state is DeliveryState.DELIVERED
    assert [(a.attempt, a.status, a.outcome) for a in record.attempts] == [(1, 200, "delivered")]
    assert deliveries.reads == 1


def test_a_second_copy_of_a_delivered_postback_is_skipped_on_its_first_receive(
    dispatcher: Dispatcher, sender: Any, retries: Any, new_message: Any
) -> None:
    # GIVEN a postback delivered by its first message
    message = new_message(1)
    dispatcher.dispatch(received(message, handle="first"))
    # WHEN a second message of the same postback (queued again by ingest) is received for the first time
    result = dispatcher.dispatch(received(message, count=1, handle="second"))
    # THEN it is skipped (deleted), the tracker called once in all
    assert (result.outcome, result.reason, result.stays_on_queue) == (DispatchOutcome.SKIPPED, "delivered", False)
    assert sender.calls_to(message.url) == 1
    assert retries.delays == []


def test_a_second_copy_of_a_retrying_postback_continues_its_attempt_count(
    dispatcher: Dispatcher, deliveries: Any, sender: Any, new_message: Any
) -> None:
    # GIVEN a postback whose first attempt got a 500
    message = new_message(1)
    sender.answer(message.url, SendResult(500, 5, "oops"), SendResult(200, 5, "OK"))
    dispatcher.dispatch(received(message, handle="first"))
    # WHEN a second copy is received for the first time
    result = dispatcher.dispatch(received(message, count=1, handle="second"))
    # THEN it is sent as attempt 2, not as a new attempt 1
    assert result.outcome is DispatchOutcome.DELIVERED
    assert [a.attempt for a in deliveries.records[message.delivery_id].attempts] == [1, 2]


def test_a_first_receive_of_a_failed_postback_is_held_once_then_skipped(
    dispatcher: Dispatcher, sender: Any, retries: Any, clock: Any, new_message: Any
) -> None:
    # GIVEN a postback failed for good (404)
    message = new_message(1)
    sender.answer(message.url, SendResult(404, 5, "no such page"))
    dispatcher.dispatch(received(message, handle="first"))
    # WHEN a second copy is received for the first time
    held = dispatcher.dispatch(received(message, count=1, handle="second"))
    # THEN it is not sent but comes back later as a delayed copy that counts this receive (it
    # could be a replay whose delivery is not marked pending yet)
    assert (held.outcome, held.requeued, held.stays_on_queue, held.delay_s) == (
        DispatchOutcome.DEFERRED,
        True,
        False,
        60,
    )
    assert [delay for _, delay in retries.requeued] == [60]
    assert retries.copies()[0].schedule.receives == 1
    assert retries.delays == []
    # WHEN the copy comes back and the delivery is still failed
    again = dispatcher.dispatch(back(retries, clock))
    # THEN it is skipped: the tracker was called once in all
    assert (again.outcome, again.reason) == (DispatchOutcome.SKIPPED, "failed")
    assert sender.calls_to(message.url) == 1


def test_a_replay_received_before_its_delivery_is_marked_pending_is_still_sent(
    dispatcher: Dispatcher, deliveries: Any, sender: Any, retries: Any, clock: Any, new_message: Any
) -> None:
    # GIVEN a failed postback whose replayed message arrives before `replay` marks it pending
    message = new_message(1)
    sender.answer(message.url, SendResult(404, 5, "gone"), SendResult(200, 5, "OK"))
    dispatcher.dispatch(received(message, handle="original"))
    held = dispatcher.dispatch(received(message, count=1, handle="replay"))
    # WHEN the delivery is then marked replayed, and the held message's copy comes back
    deliveries.mark_replayed(message.ref)
    result = dispatcher.dispatch(back(retries, clock))
    # THEN the replay is sent, as attempt 1 of its new round, and delivered
    assert held.outcome is DispatchOutcome.DEFERRED
    assert result.outcome is DispatchOutcome.DELIVERED
    assert [(a.attempt, a.outcome) for a in deliveries.records[message.delivery_id].attempts] == [
        (1, "failed"),
        (1, "delivered"),
    ]


def test_a_500_is_retried_with_the_schedule_then_delivered_on_redelivery(
    dispatcher: Dispatcher, deliveries: Any, sender: Any, retries: Any, clock: Any, new_message: Any
) -> None:
    # GIVEN a tracker answering 500 then 200
    message = new_message(1)
    sender.answer(message.url, SendResult(500, 5, "oops"), SendResult(200, 5, "OK"))
    # WHEN the message is received, then its delayed copy
    first = dispatcher.dispatch(received(message, count=1))
    second = dispatcher.dispatch(back(retries, clock))
    # THEN the first attempt queued a copy delayed 5 s, due then, and the received message is
    # deleted (not in flight while it waits); the second delivered
    assert (first.outcome, first.delay_s, first.requeued, first.stays_on_queue) == (
        DispatchOutcome.RETRIED,
        5,
        True,
        False,
    )
    (copy,) = retries.copies()
    assert copy.scheduled(None) == message
    assert copy.schedule is not None and copy.schedule.receives == 1
    assert copy.schedule.not_before.timestamp() == clock.now
    assert retries.delays == []
    assert second.outcome is DispatchOutcome.DELIVERED
    record = deliveries.records[message.delivery_id]
    assert [(a.attempt, a.status, a.outcome) for a in record.attempts] == [(1, 500, "retry"), (2, 200, "delivered")]
    assert sender.calls_to(message.url) == 2


def test_a_404_fails_at_once_onto_the_dlq(
    dispatcher: Dispatcher, deliveries: Any, sender: Any, retries: Any, new_message: Any
) -> None:
    # GIVEN a tracker answering 404
    message = new_message(1)
    sender.answer(message.url, SendResult(404, 5, "no such page"))
    # WHEN it is dispatched
    result = dispatcher.dispatch(received(message))
    # THEN it failed for good: logged with the reason, on the DLQ, removed from the queue
    assert (result.outcome, result.stays_on_queue) == (DispatchOutcome.FAILED, False)
    record = deliveries.records[message.delivery_id]
    assert (record.state, record.last_error) == (DeliveryState.FAILED, "answered HTTP 404")
    assert retries.dead_letters == [(message.model_dump_json(), "answered HTTP 404", message.delivery_id)]
    assert (retries.delays, retries.requeued) == ([], [])


def test_the_eighth_failed_attempt_is_the_last(
    dispatcher: Dispatcher, deliveries: Any, sender: Any, retries: Any, clock: Any, new_message: Any
) -> None:
    # GIVEN a tracker that always times out
    message = new_message(1)
    sender.answer(message.url, SendResult(None, 100, None, error_kind="timeout", error="no answer in time"))
    # WHEN its message and then each delayed copy is received when SQS hands it over
    outcomes, waits, start = [], [], clock.now
    result = dispatcher.dispatch(received(message, count=1))
    while True:
        outcomes.append(result.outcome)
        if result.outcome is DispatchOutcome.WAITING:
            waits.append(result.delay_s)
        if result.outcome is DispatchOutcome.FAILED:
            break
        result = dispatcher.dispatch(back(retries, clock))
    # THEN 7 retries on the schedule, then failed for good with the reason, on the DLQ
    attempts = [o for o in outcomes if o is not DispatchOutcome.WAITING]
    assert attempts == [DispatchOutcome.RETRIED] * 7 + [DispatchOutcome.FAILED]
    record = deliveries.records[message.delivery_id]
    assert [a.attempt for a in record.attempts] == list(range(1, 9))
    gaps = [(b.at - a.at).total_seconds() for a, b in zip(record.attempts, record.attempts[1:], strict=False)]
    assert gaps == [60, 300, 1800, 7200, 18000, 36000, 36000]
    assert clock.now - start == sum(gaps)
    assert record.state is DeliveryState.FAILED
    assert "the last" in (record.last_error or "")
    assert len(retries.dead_letters) == 1
    # AND every wait was a delayed copy of at most 15 minutes: the waits past that were chains
    # of hops (each copy received early was queued again without a call), and nothing was
    # ever hidden in flight
    assert all(delay <= 900 for _, delay in retries.requeued)
    assert len(waits) == sum(-(-gap // 900) - 1 for gap in gaps) == 105
    assert retries.delays == []
    assert len(sender.calls) == 8


def test_a_redelivered_message_of_a_delivered_postback_makes_no_call(
    dispatcher: Dispatcher, sender: Any, new_message: Any
) -> None:
    # GIVEN a postback delivered by a run that crashed before reporting
    message = new_message(1)
    dispatcher.dispatch(received(message, count=1))
    # WHEN its message comes back
    result = dispatcher.dispatch(received(message, count=2))
    # THEN it is skipped without calling the tracker again
    assert result.outcome is DispatchOutcome.SKIPPED
    assert sender.calls_to(message.url) == 1


def test_an_unreadable_message_goes_to_the_dlq(dispatcher: Dispatcher, retries: Any, sender: Any) -> None:
    # GIVEN a message that is not a postback
    record = ReceivedPostback("m1", "h1", 1, '{"delivery_id": "abc", "url": 3}')
    # WHEN it is dispatched, THEN it is parked on the DLQ with its ID, and nothing is called
    result = dispatcher.dispatch(record)
    assert result.outcome is DispatchOutcome.FAILED
    assert retries.dead_letters[0][2] == "abc"
    assert sender.calls == []


def test_a_batch_is_sent_concurrently_and_a_crash_leaves_only_its_record(
    deliveries: Any, retries: Any, endpoints: Any, clock: Any, new_message: Any
) -> None:
    # GIVEN a sender that crashes on one postback of a batch
    messages = [new_message(n) for n in range(1, 5)]

    class CrashingSender:
        def send(self, message: Any, *, headers: Any = None) -> SendResult:
            if message.delivery_id == messages[1].delivery_id:
                raise RuntimeError("bug")
            return SendResult(200, 1, "OK")

    dispatcher = Dispatcher(
        deliveries=deliveries,
        sender=CrashingSender(),
        retries=retries,
        breakers=CircuitBreakers(endpoints, clock=clock),
    )
    # WHEN the batch is dispatched
    outcomes = dispatcher.dispatch_batch([received(m) for m in messages])
    # THEN the crashed record's outcome is its exception; the others are delivered
    crashed = outcomes[f"m-{messages[1].delivery_id}"]
    assert isinstance(crashed, RuntimeError)
    others = [outcomes[f"m-{m.delivery_id}"] for m in messages if m is not messages[1]]
    assert all(not isinstance(o, Exception) and o.outcome is DispatchOutcome.DELIVERED for o in others)


@pytest.mark.parametrize(
    ("answer", "first_outcome"),
    [
        (SendResult(200, 5, "OK"), DispatchOutcome.DELIVERED),
        (SendResult(500, 5, "oops"), DispatchOutcome.RETRIED),
        (SendResult(404, 5, "gone"), DispatchOutcome.FAILED),
    ],
    ids=["delivered", "retried", "failed"],
)
def test_copies_of_a_postback_in_one_batch_are_sent_once(
    dispatcher: Dispatcher,
    deliveries: Any,
    sender: Any,
    retries: Any,
    new_message: Any,
    answer: SendResult,
    first_outcome: DispatchOutcome,
) -> None:
    # GIVEN a batch holding three messages of one postback (queued again by ingest) and another postback
    message, other = new_message(1), new_message(2)
    sender.answer(message.url, answer)
    copies = [ReceivedPostback(f"m-copy-{n}", f"h-copy-{n}", 1, message.model_dump_json()) for n in range(3)]
    # WHEN the batch is dispatched
    outcomes = dispatcher.dispatch_batch([copies[0], received(other), copies[1], copies[2]])
    # THEN the postback was sent once: the first copy has its outcome, the others are skipped
    # duplicates, deleted whatever it was (the first one carries a retry by itself)
    assert sender.calls_to(message.url) == 1
    assert sender.calls_to(other.url) == 1
    first = outcomes["m-copy-0"]
    assert not isinstance(first, Exception) and first.outcome is first_outcome
    for copy in copies[1:]:
        duplicate = outcomes[copy.message_id]
        assert not isinstance(duplicate, Exception)
        assert (duplicate.outcome, duplicate.delivery_id, duplicate.stays_on_queue) == (
            DispatchOutcome.SKIPPED,
            message.delivery_id,
            False,
        )
        assert duplicate.reason == "duplicate of m-copy-0"
    assert len(deliveries.records[message.delivery_id].attempts) == 1
    # AND only the first copy was queued again for the next attempt
    assert [copy.delivery_id for copy in retries.copies()] == (
        [message.delivery_id] if first_outcome is DispatchOutcome.RETRIED else []
    )
    assert retries.delays == []


def test_unreadable_messages_in_a_batch_are_never_taken_for_copies(
    dispatcher: Dispatcher, retries: Any, sender: Any, new_message: Any
) -> None:
    # GIVEN an unreadable message naming the same delivery as a good one, in one batch
    message = new_message(1)
    broken = ReceivedPostback("m-broken", "h-broken", 1, f'{{"delivery_id": "{message.delivery_id}", "url": 3}}')
    # WHEN the batch is dispatched
    outcomes = dispatcher.dispatch_batch([broken, received(message)])
    # THEN the unreadable one goes to the DLQ, and the good one is still sent
    broken_result, good_result = outcomes["m-broken"], outcomes[f"m-{message.delivery_id}"]
    assert not isinstance(broken_result, Exception) and broken_result.outcome is DispatchOutcome.FAILED
    assert not isinstance(good_result, Exception) and good_result.outcome is DispatchOutcome.DELIVERED
    assert sender.calls_to(message.url) == 1
    assert len(retries.dead_letters) == 1


def test_an_open_circuit_defers_without_calling_and_a_trial_closes_it(
    dispatcher: Dispatcher, deliveries: Any, sender: Any, retries: Any, endpoints: Any, clock: Any, new_message: Any
) -> None:
    # GIVEN an endpoint that fails often enough to open its circuit
    url = "https://dead.example/pb?cid="
    sender.answer(url + "0", SendResult(503, 5, "down"))
    for n in range(FAILURE_THRESHOLD):
        dispatcher.dispatch(received(new_message(n, url=url + "0")))
    assert endpoints.circuits["https://dead.example:443"].status is CircuitStatus.OPEN
    calls_before = len(sender.calls)
    # WHEN another postback to that endpoint arrives
    waiting = new_message(99, url=url + "99")
    result = dispatcher.dispatch(received(waiting))
    # THEN it is deferred for the cool-down, not called, kept pending, no attempt used
    assert (result.outcome, result.delay_s) == (DispatchOutcome.DEFERRED, 60)
    assert len(sender.calls) == calls_before
    record = deliveries.records[waiting.delivery_id]
    assert (record.state, record.attempts) == (DeliveryState.PENDING, ())
    # WHEN the cool-down is over and the endpoint is back
    later = dispatcher.dispatch(back(retries, clock))
    # THEN the trial call is attempt 1, delivered, and the circuit closes
    assert later.outcome is DispatchOutcome.DELIVERED
    assert deliveries.records[waiting.delivery_id].attempts[0].attempt == 1
    # (mypy kept the OPEN of the assertion above: the dispatch between changed the fake)
    assert endpoints.circuits["https://dead.example:443"].status is CircuitStatus.CLOSED  # type: ignore[comparison-overlap]


def test_a_healthy_endpoint_costs_no_circuit_reads_or_writes(
    dispatcher: Dispatcher, endpoints: Any, new_message: Any
) -> None:
    # GIVEN healthy endpoints, WHEN many postbacks are delivered
    dispatcher.dispatch_batch([received(new_message(n)) for n in range(10)])
    # THEN the circuit store was never touched
    assert (endpoints.reads, endpoints.writes) == (0, 0)


def test_another_instance_open_circuit_is_learned_after_one_failure(
    dispatcher: Dispatcher, endpoints: Any, sender: Any, clock: Any, new_message: Any
) -> None:
    # GIVEN a circuit opened by another dispatcher instance
    from postback_relay.domain.delivery import Circuit

    endpoint = "https://track1.example:443"
    endpoints.circuits[endpoint] = Circuit(endpoint, CircuitStatus.OPEN, 5, clock.now + 30, 60)
    sender.answer("https://track1.example/pb?cid=c1", SendResult(503, 5, "down"))
    # WHEN this instance fails once there, then gets another postback for it
    dispatcher.dispatch(received(new_message(1)))
    result = dispatcher.dispatch(received(new_message(2, url="https://track1.example/pb?cid=c1")))
    # THEN it read the shared state and defers
    assert result.outcome is DispatchOutcome.DEFERRED
    assert endpoints.reads == 1


def test_a_signed_postback_carries_standard_webhooks_headers(
    deliveries: Any, sender: Any, retries: Any, endpoints: Any, clock: Any, new_message: Any
) -> None:
    # GIVEN an affiliate with a signing secret, and a signed postback
    config = parse_config(ingest_config_data(signing_secret="whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"))
    dispatcher = Dispatcher(
        deliveries=deliveries,
        sender=sender,
        retries=retries,
        breakers=CircuitBreakers(endpoints, clock=clock),
        affiliates=FakeAffiliateStore(config),
    )
    message = new_message(1, signed=True, method="POST", body="cid=1")
    # WHEN it is dispatched
    dispatcher.dispatch(received(message))
    # THEN the call carried the webhook headers
    (_, headers), *_ = sender.calls
    assert headers["webhook-id"] == message.delivery_id
    assert headers["webhook-signature"].startswith("v1,")


def test_replay_requeues_failed_deliveries_and_marks_them_pending(
    dispatcher: Dispatcher, deliveries: Any, sender: Any, new_message: Any
) -> None:
    # GIVEN one failed and one delivered postback
    failed, delivered = new_message(1), new_message(2)
    sender.answer(failed.url, SendResult(404, 5, "no"))
    dispatcher.dispatch(received(failed))
    dispatcher.dispatch(received(delivered))
    queue = FakePostbackQueue()
    # WHEN failed ones are replayed
    replayed = replay_failed(DeliveryLookup(deliveries, FakeConversionLog(), FakeTestRunStore()), queue)
    # THEN only the failed one is queued again and pending, its replay counted
    assert replayed == [failed.delivery_id]
    assert [m.delivery_id for m in queue.sent] == [failed.delivery_id]
    record = deliveries.records[failed.delivery_id]
    assert (record.state, record.replays) == (DeliveryState.PENDING, 1)
    # AND when the replayed message comes back after a first attempt, attempts restart at 1
    sender.answer(failed.url, SendResult(500, 5, "busy"))
    dispatcher.dispatch(received(failed, count=2))
    assert deliveries.records[failed.delivery_id].attempts[-1].attempt == 1


def test_replay_leaves_refused_messages_failed(
    deliveries: Any, dispatcher: Dispatcher, sender: Any, new_message: Any
) -> None:
    # GIVEN a failed postback and a queue that refuses it
    message = new_message(1)
    sender.answer(message.url, SendResult(410, 5, "gone"))
    dispatcher.dispatch(received(message))
    queue = FakePostbackQueue()
    queue.refuse = lambda m: True
    # WHEN it is replayed, THEN nothing is reported replayed and it stays failed
    assert replay_failed(DeliveryLookup(deliveries, FakeConversionLog(), FakeTestRunStore()), queue) == []
    assert deliveries.records[message.delivery_id].state is DeliveryState.FAILED


def test_a_message_deferred_too_often_is_attempted_anyway(
    dispatcher: Dispatcher, sender: Any, endpoints: Any, clock: Any, new_message: Any
) -> None:
    # GIVEN an endpoint whose circuit another instance keeps open
    from postback_relay.domain.delivery import Circuit
    from postback_relay.services.dispatch import MAX_DEFERRED_RECEIVES

    endpoint = "https://track1.example:443"
    endpoints.circuits[endpoint] = Circuit(endpoint, CircuitStatus.OPEN, 5, clock.now + 3000, 3600)
    message = new_message(1)
    sender.answer(message.url, SendResult(503, 5, "down"))
    dispatcher.dispatch(received(message))  # a failure here makes this instance read the shared state
    # WHEN the message comes back once more before the bound, and then at the bound
    before = dispatcher.dispatch(received(message, count=MAX_DEFERRED_RECEIVES - 1))
    at_bound = dispatcher.dispatch(received(message, count=MAX_DEFERRED_RECEIVES))
    # THEN it is deferred first, then attempted (and scheduled by the retry rules) rather than
    # left to the queue's redrive, which would park it on the DLQ with no reason logged
    assert before.outcome is DispatchOutcome.DEFERRED
    assert at_bound.outcome is DispatchOutcome.RETRIED
    assert sender.calls_to(message.url) == 2


def test_a_circuit_store_outage_never_costs_a_delivery(
    deliveries: Any, sender: Any, retries: Any, clock: Any, new_message: Any
) -> None:
    # GIVEN a circuit store that is down
    from postback_relay.domain.errors import InfrastructureError

    class DownStore:
        def get(self, endpoint: str) -> None:
            raise InfrastructureError("down")

        def save(self, circuit: Any, *, expected_opened_until: float | None = None, only_from: Any = None) -> bool:
            raise InfrastructureError("down")

        def list(self) -> list[Any]:
            raise InfrastructureError("down")

    dispatcher = Dispatcher(
        deliveries=deliveries, sender=sender, retries=retries, breakers=CircuitBreakers(DownStore(), clock=clock)
    )
    url = "https://flaky.example/pb"
    sender.answer(url, *([SendResult(503, 5, "down")] * FAILURE_THRESHOLD), SendResult(200, 5, "OK"))
    # WHEN an endpoint fails enough to open its circuit, then recovers after the cool-down
    for n in range(FAILURE_THRESHOLD):
        assert dispatcher.dispatch(received(new_message(n, url=url))).outcome is DispatchOutcome.RETRIED
    clock.now += 61
    result = dispatcher.dispatch(received(new_message(99, url=url)))
    # THEN every postback was handled (nothing crashed), the last one delivered as the trial
    assert result.outcome is DispatchOutcome.DELIVERED
