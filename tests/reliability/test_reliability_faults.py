"""One fault at a time, end to end: the ingest handler, moto's tables and the conversions
table's stream, the outbox handler and the dispatch handler under played event source
mappings, moto's queue, and real affiliate servers on 127.0.0.1.

Each test ends with every postback either received by its affiliate (counted per delivery
key) or failed with its reason in the delivery log and on the DLQ."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from reliability.relay_harness import (
    DOWN,
    FLAKY,
    GONE,
    OK,
    REDIRECTING,
    RESETTING,
    SLOW_BODY,
    SLOWLORIS,
    THROTTLED,
    THROTTLING,
    TIMING_OUT,
    AwsFaultRule,
    AwsFaults,
    FaultyAffiliate,
    Misbehaviour,
    Relay,
    affiliate_config,
    conversion,
)
from template_support import TEMPLATE

from postback_ops.local.stream import RECORD_AGE_EXCEEDED
from postback_ops.template import resources_of_type
from postback_relay.domain.delivery import DeliveryState, delivery_id_for
from postback_relay.domain.events import Event

AFFILIATE = "7000001"


@pytest.fixture
def affiliate(request: pytest.FixtureRequest, relay: Relay) -> Iterator[FaultyAffiliate]:
    behaviour: Misbehaviour = getattr(request, "param", OK)
    with FaultyAffiliate(behaviour) as server:
        relay.add_affiliate(affiliate_config(AFFILIATE, server.url))
        yield server


def delivery_id(transaction_id: str, index: int = 0) -> str:
    return delivery_id_for(transaction_id, Event.SALE, AFFILIATE, index)


# --- the affiliate's endpoint misbehaves -------------------------------------------------


@pytest.mark.parametrize(
    ("affiliate", "attempts"),
    [(FLAKY, 3), (RESETTING, 2), (SLOW_BODY, 1)],
    indirect=["affiliate"],
    ids=lambda value: getattr(value, "name", str(value)),
)
def test_a_passing_fault_ends_delivered_once_with_every_attempt_logged(
    relay: Relay, affiliate: FaultyAffiliate, attempts: int
) -> None:
    # GIVEN three conversions for an affiliate whose endpoint fails at first, then takes them
    for n in range(3):
        assert relay.post_until_taken(conversion(f"T-{n}", AFFILIATE, f"c{n}"))[0] == 202

    # WHEN the dispatcher runs until the queue is empty
    relay.drain()

    # THEN each postback reached the affiliate exactly once, after the expected attempts
    assert affiliate.received == {f"/pb0?c{n}": 1 for n in range(3)}
    assert affiliate.attempts == {f"/pb0?c{n}": attempts for n in range(3)}
    for n in range(3):
        record = relay.delivery(delivery_id(f"T-{n}"))
        assert record is not None
        assert record.state is DeliveryState.DELIVERED
        assert [a.attempt for a in record.attempts] == list(range(1, attempts + 1))
    assert relay.dead_letters() == []


def test_retry_after_is_honoured_over_the_schedule(relay: Relay, aws_faults: AwsFaults) -> None:
    # GIVEN an endpoint answering 429 with Retry-After: 20000 s, then 200. Scaled by DELAY_SCALE
    # that is 2 s, where the schedule after a 429 (60 s floor) gives 0.006 s -> the 1 s floor.
    with FaultyAffiliate(THROTTLING, retry_after="20000") as server:
        relay.add_affiliate(affiliate_config(AFFILIATE, server.url))
        relay.post_until_taken(conversion("T-1", AFFILIATE, "c1"))

        # WHEN it is dispatched until the queue is empty
        relay.drain()

    # THEN the postback waited the Retry-After's (scaled) time as a delayed copy, not in flight
    # (no visibility change), then was delivered once
    assert aws_faults.message_delays == [2]
    assert aws_faults.visibility_changes == []
    assert server.received == {"/pb0?c1": 1}


def test_a_timeout_whose_answer_came_late_is_the_one_allowed_duplicate(relay: Relay) -> None:
    # GIVEN an endpoint that takes the postback but answers after the relay's read timeout
    with FaultyAffiliate(TIMING_OUT) as server:
        relay.add_affiliate(affiliate_config(AFFILIATE, server.url))
        relay.post_until_taken(conversion("T-1", AFFILIATE, "c1"))

        # WHEN the dispatcher runs
        relay.drain()

    # THEN the relay, having heard nothing, tried again: the affiliate got it twice. This is
    # at-least-once at work (the relay cannot know the late answer was a yes); the bound is
    # one extra receipt per attempt that timed out.
    assert server.actions == {"late-ok": 1, "ok": 1}
    assert server.received == {"/pb0?c1": 2}
    # AND the affiliate's own record says the relay could not hear its first answer, which
    # is what allows the second send (on a loaded machine the second may count unheard too:
    # the witness errs towards excusing, never towards blaming)
    first, *_ = server.answers
    assert (first.key, first.heard(server.read_timeout_s)) == ("/pb0?c1", False)
    assert server.resends_unexplained() == {}
    record = relay.delivery(delivery_id("T-1"))
    assert record is not None
    assert record.state is DeliveryState.DELIVERED
    assert [(a.attempt, a.error_kind) for a in record.attempts] == [(1, "timeout"), (2, None)]


@pytest.mark.parametrize(
    ("affiliate", "reason", "attempts"),
    [(REDIRECTING, "answered HTTP 302", 1), (GONE, "answered HTTP 404", 1), (DOWN, "answered HTTP 503", 8)],
    indirect=["affiliate"],
    ids=["redirect", "404", "always-503"],
)
def test_a_lasting_fault_ends_failed_with_its_reason_in_the_log_and_on_the_dlq(
    relay: Relay, affiliate: FaultyAffiliate, reason: str, attempts: int
) -> None:
    # GIVEN a conversion for an affiliate whose endpoint redirects, is gone, or is down for good
    relay.post_until_taken(conversion("T-1", AFFILIATE, "c1"))

    # WHEN the dispatcher runs until the queue is empty
    relay.drain()

    # THEN nothing was taken, the redirect was not followed (to the metadata address), and the
    # postback is failed with its reason, in the delivery log and on the DLQ
    assert affiliate.received == {}
    assert affiliate.attempts == {"/pb0?c1": attempts}
    record = relay.delivery(delivery_id("T-1"))
    assert record is not None
    assert record.state is DeliveryState.FAILED
    assert record.last_error is not None and record.last_error.startswith(reason)
    assert len(record.attempts) == attempts
    (letter,) = relay.dead_letters()
    assert letter["MessageAttributes"]["delivery_id"]["StringValue"] == delivery_id("T-1")
    assert letter["MessageAttributes"]["reason"]["StringValue"].startswith(reason)


def test_a_body_trickling_in_cannot_hold_the_batch_beyond_the_timeouts(relay: Relay) -> None:
    # GIVEN an endpoint that sends its 40-byte body one byte every 0.1 s (read timeout: 0.3 s),
    # and a healthy one in the same batch
    with FaultyAffiliate(SLOWLORIS, trickle_s=0.1, slowloris_bytes=40) as slow, FaultyAffiliate(OK) as healthy:
        relay.add_affiliate(affiliate_config(AFFILIATE, slow.url))
        relay.add_affiliate(affiliate_config("7000002", healthy.url))
        relay.post_until_taken(
            {"conversions": [conversion("T-1", AFFILIATE, "c1"), conversion("T-2", "7000002", "c2")]}
        )

        # WHEN the outbox queued them and one batch is dispatched
        relay.run_outbox()
        started = time.monotonic()
        outcome = relay.poller.poll_once()
        elapsed = time.monotonic() - started

    # THEN the batch ends within a few timeouts (connect 0.5 s + read 0.3 s), not after the 4 s
    # the trickle lasts: in Lambda, the function's timeout would kill the batch, and the postback
    # would reach the queue's maxReceiveCount with no attempt ever logged
    assert outcome is not None
    assert elapsed < 2.5
    assert healthy.received == {"/pb0?c2": 1}


# --- SQS refuses while conversions arrive: the outbox waits for it ------------------------


def test_sqs_down_at_ingest_every_conversion_gets_202_and_every_postback_goes_out_once_it_is_back(
    relay: Relay, affiliate: FaultyAffiliate, aws_faults: AwsFaults
) -> None:
    # GIVEN SQS answering 503 to every attempt of every SendMessageBatch for a while
    aws_faults.down.add("sqs:SendMessageBatch")

    # WHEN the platform posts a batch of five and three single conversions meanwhile
    batch = relay.post({"conversions": [conversion(f"T-{n}", AFFILIATE, f"c{n}") for n in range(5)]})
    singles = [relay.post(conversion(f"T-{n}", AFFILIATE, f"c{n}")) for n in range(5, 8)]

    # THEN every one is taken at once (202): acceptance depends on the conversion's record alone
    assert [status for status, _ in [batch, *singles]] == [202] * 4
    assert relay.ingest_tally.answers == {202: 4}
    assert aws_faults.calls["SendMessageBatch"] == 0  # ingest never calls SQS

    # WHEN the outbox tries three times while SQS is still down, THEN nothing is queued, nothing is lost
    relay.run_outbox(max_batches=3, or_stop=True)
    assert aws_faults.injected["SendMessageBatch"] > 0
    assert relay.queue_depth() == (0, 0)
    assert relay.outbox.discarded == []

    # WHEN SQS is back and the relay runs until the queue is empty
    aws_faults.down.clear()
    relay.drain()

    # THEN every postback reached the affiliate; a second receipt only where the affiliate's own
    # record shows its first answer went out after the relay's read timeout (at-least-once)
    assert set(affiliate.received) == {f"/pb0?c{n}" for n in range(8)}
    assert affiliate.resends_unexplained() == {}
    assert set(relay.delivery_states().values()) == {DeliveryState.DELIVERED}


def test_sqs_refusing_one_entry_of_the_outbox_retries_from_it_and_resends_only_unheard_postbacks(
    relay: Relay, affiliate: FaultyAffiliate, aws_faults: AwsFaults
) -> None:
    # GIVEN SQS refusing the entry of conversion T-2 twice (the adapter's two tries)
    refusals = iter([True, True])
    aws_faults.refuse_sqs_entry = lambda entry: '"T-2"' in entry["MessageBody"] and next(refusals, False)

    # WHEN the platform posts a batch of four (taken at once) and the relay runs
    status, answer = relay.post({"conversions": [conversion(f"T-{n}", AFFILIATE, f"c{n}") for n in range(4)]})
    assert (status, [r["repeat"] for r in answer["results"]]) == (202, [False] * 4)
    relay.drain()

    # THEN the stream batch was retried from T-2, and each postback reached the affiliate; a
    # second receipt only where the affiliate's own record shows its answer went unheard
    assert aws_faults.entries_refused == 2
    assert any(outcome.failed for outcome in relay.outbox_batches)
    assert set(affiliate.received) == {f"/pb0?c{n}" for n in range(4)}
    assert affiliate.resends_unexplained() == {}


def test_sqs_refusing_one_of_a_conversions_two_postbacks_sends_neither_twice(
    relay: Relay, aws_faults: AwsFaults
) -> None:
    # GIVEN an affiliate with two postbacks per sale, and SQS refusing the second one twice
    with FaultyAffiliate(OK) as server:
        relay.add_affiliate(affiliate_config(AFFILIATE, server.url, postbacks=2))
        refusals = iter([True, True])
        aws_faults.refuse_sqs_entry = lambda entry: "/pb1?" in entry["MessageBody"] and next(refusals, False)

        # WHEN the sale is posted (202 at once) and the relay runs
        status, _ = relay.post(conversion("T-1", AFFILIATE, "c1"))
        assert (status, relay.ingest_tally.answers) == (202, {202: 1})
        relay.drain()

    # THEN each of the two postbacks reached the affiliate once
    assert server.received == {"/pb0?c1": 1, "/pb1?c1": 1}


# --- the outbox function dies, or gives up -----------------------------------------------------


def test_an_outbox_invocation_dying_after_its_sends_loses_nothing_and_resends_only_unheard_postbacks(
    relay: Relay, affiliate: FaultyAffiliate
) -> None:
    # GIVEN ten conversions, and an outbox invocation that dies after sending, before answering
    relay.post({"conversions": [conversion(f"T-{n}", AFFILIATE, f"c{n}") for n in range(10)]})
    deaths = iter([True])
    relay.outbox_crash = lambda: next(deaths, False)

    # WHEN the relay runs until the queue is empty
    relay.drain()

    # THEN the stream batch was retried (split in two): the messages it had sent were queued
    # twice, and the dispatcher was handed each postback twice (the harness's count)
    assert relay.outbox_crashes == 1
    assert [len(o.records) for o in relay.outbox_batches] == [10, 5, 5]
    handovers = relay.handovers()
    assert set(handovers) == {delivery_id(f"T-{n}") for n in range(10)} and min(handovers.values()) >= 2
    # AND each postback reached the affiliate; a second receipt only where the affiliate's own
    # record shows the relay could not hear its answer (at-least-once), never because a copy
    # of a postback it took was sent again
    assert set(affiliate.received) == {f"/pb0?c{n}" for n in range(10)}
    resent = affiliate.resends_unexplained()
    assert resent == {}, f"(taken, unheard, explained) per postback taken more than once unexplained: {resent}"
    assert set(relay.delivery_states().values()) == {DeliveryState.DELIVERED}


def test_a_postback_queued_twice_and_received_in_one_batch_is_sent_once(relay: Relay) -> None:
    # GIVEN a conversion whose outbox invocation dies after its send, so that its postback is
    # queued twice, and an endpoint slow to answer (both copies are read pending before either
    # send is logged)
    with FaultyAffiliate(SLOW_BODY) as server:
        relay.add_affiliate(affiliate_config(AFFILIATE, server.url))
        relay.post_until_taken(conversion("T-1", AFFILIATE, "c1"))
        deaths = iter([True])
        relay.outbox_crash = lambda: next(deaths, False)

        # WHEN the relay runs until the queue is empty
        relay.drain()

    # THEN the dispatcher was handed both copies in one batch (the harness's count)
    assert relay.outbox_crashes == 1
    assert [len(batch.records) for batch in relay.batches] == [2]
    assert relay.handovers() == {delivery_id("T-1"): 2}
    # AND the affiliate took the postback once, by its own record: a second receipt only after
    # an answer the relay could not hear (at-least-once)
    assert set(server.received) == {"/pb0?c1"}
    resent = server.resends_unexplained()
    assert resent == {}, f"(taken, unheard, explained) per postback taken more than once unexplained: {resent}"
    assert relay.delivery_states() == {delivery_id("T-1"): DeliveryState.DELIVERED}


def test_a_stream_record_past_its_maximum_age_lands_on_the_on_failure_queue_and_ops_recover_it(
    relay: Relay, affiliate: FaultyAffiliate, aws_faults: AwsFaults
) -> None:
    # GIVEN SQS down long enough for a new conversion's stream record to pass its maximum age
    aws_faults.down.add("sqs:SendMessageBatch")
    assert relay.post(conversion("T-1", AFFILIATE, "c1"))[0] == 202
    relay.run_outbox(max_batches=3, or_stop=True)
    now = time.time()
    relay.clock = lambda: now + relay.outbox.mapping.maximum_record_age_s + 1
    aws_faults.down.clear()

    # WHEN the mapping reads it again
    relay.drain()

    # THEN it gave up on it: nothing was delivered, and the on-failure queue holds the batch,
    # which an alarm watches
    assert affiliate.received == {}
    (discarded,) = relay.outbox.discarded
    assert discarded["requestContext"]["condition"] == RECORD_AGE_EXCEEDED
    alarms = resources_of_type(TEMPLATE, "AWS::CloudWatch::Alarm")
    watched = {a["Properties"]["Dimensions"][0]["Value"].get("Fn::GetAtt", [""])[0] for a in alarms.values()}
    assert "OutboxFailureQueue" in watched

    # WHEN ops run `postback outbox recover`, and the relay runs
    (batch,) = relay.recover_outbox()
    relay.drain()

    # THEN the postback reached the affiliate once
    assert (batch.conversions, batch.deleted) == (["T-1#sale"], True)
    assert affiliate.received == {"/pb0?c1": 1}


# --- DynamoDB throttles ---------------------------------------------------------------------


def test_a_throttled_conversion_write_is_retried_by_botocore_and_taken_once(
    relay: Relay, affiliate: FaultyAffiliate, aws_faults: AwsFaults
) -> None:
    # GIVEN the conversions table throttling the first attempt of every write
    aws_faults.rules.append(AwsFaultRule("dynamodb", "PutItem", THROTTLED, lambda body: 1))

    # WHEN three conversions are posted
    answers = [relay.post(conversion(f"T-{n}", AFFILIATE, f"c{n}")) for n in range(3)]

    # THEN botocore's retry absorbed the throttling: each taken at once, delivered once
    assert [status for status, _ in answers] == [202, 202, 202]
    assert aws_faults.injected["PutItem"] == 3
    relay.drain()
    assert affiliate.received == {f"/pb0?c{n}": 1 for n in range(3)}


def test_a_write_throttled_past_botocores_retries_answers_503_and_the_retry_takes_the_rest(
    relay: Relay, affiliate: FaultyAffiliate, aws_faults: AwsFaults
) -> None:
    # GIVEN the third conversion's write throttled on every attempt, once
    def third_conversion(body: bytes) -> int | None:
        return 3 if b"T-2" in body else None

    aws_faults.rules.append(AwsFaultRule("dynamodb", "PutItem", THROTTLED, third_conversion))
    batch = {"conversions": [conversion(f"T-{n}", AFFILIATE, f"c{n}") for n in range(4)]}

    # WHEN the batch is posted
    status, answer = relay.post(batch)

    # THEN 503; the other three stay recorded, their postbacks in their records (nothing to undo)
    assert (status, answer["error"]) == (503, "unavailable")
    assert relay.conversion_ids() == {"T-0#sale", "T-1#sale", "T-3#sale"}

    # WHEN the platform retries it
    status, answer = relay.post_until_taken(batch)

    # THEN the three are repeats and T-2 is new, and each postback reaches the affiliate once
    assert status == 202
    assert [r["repeat"] for r in answer["results"]] == [True, True, False, True]
    relay.drain()
    assert affiliate.received == {f"/pb0?c{n}": 1 for n in range(4)}


def test_a_throttled_delivery_write_is_retried_by_botocore_and_adds_no_send(
    relay: Relay, affiliate: FaultyAffiliate, aws_faults: AwsFaults
) -> None:
    # GIVEN the deliveries table throttling the first attempt of every update
    aws_faults.rules.append(AwsFaultRule("dynamodb", "UpdateItem", THROTTLED, lambda body: 1))
    for n in range(5):
        relay.post_until_taken(conversion(f"T-{n}", AFFILIATE, f"c{n}"))

    # WHEN the dispatcher runs
    relay.drain()

    # THEN each postback was logged delivered and taken by the affiliate once: the throttled
    # write adds no send. The one resend at-least-once allows is after an answer the relay could
    # not hear, by the affiliate's own record (written past the read timeout, or to a relay
    # that had hung up: a loaded machine's loopback can be that slow), never by the relay's log.
    assert aws_faults.injected["UpdateItem"] >= 5
    assert set(relay.delivery_states().values()) == {DeliveryState.DELIVERED}
    assert set(affiliate.received) == {f"/pb0?c{n}" for n in range(5)}
    resent = affiliate.resends_unexplained()
    assert resent == {}, f"(taken, unheard, explained) per postback taken more than once unexplained: {resent}"


def test_a_delivery_write_throttled_past_retries_redelivers_the_message_and_sends_at_most_once_more(
    relay: Relay, affiliate: FaultyAffiliate, aws_faults: AwsFaults
) -> None:
    # GIVEN the write recording T-1's delivery throttled on every attempt, once; others fine
    hit = iter([3])

    def first_write_of_t1(body: bytes) -> int | None:
        return next(hit, None) if b'"T-1"' in body else None

    aws_faults.rules.append(AwsFaultRule("dynamodb", "UpdateItem", THROTTLED, first_write_of_t1))
    for n in range(3):
        relay.post_until_taken(conversion(f"T-{n}", AFFILIATE, f"c{n}"))

    # WHEN the dispatcher runs until the queue is empty
    relay.drain()

    # THEN nothing is lost: T-1's message stayed on the queue, came back, and is delivered.
    # The affiliate got T-1 twice: the send succeeded, its record did not, and the log is all
    # a redelivery can trust. The bound: one extra send per delivery record lost after a send.
    assert aws_faults.calls_failed["UpdateItem"] == 1
    assert affiliate.received == {"/pb0?c0": 1, "/pb0?c1": 2, "/pb0?c2": 1}
    assert set(relay.delivery_states().values()) == {DeliveryState.DELIVERED}
    assert relay.dead_letters() == []


def test_a_throttled_read_on_redelivery_leaves_the_message_to_come_back(
    relay: Relay, affiliate: FaultyAffiliate, aws_faults: AwsFaults
) -> None:
    # GIVEN a postback whose first attempt got a 500 (so it comes back), and the consistent read
    # of its delivery on that redelivery throttled past botocore's retries, once
    affiliate.behaviour = FLAKY
    reads = iter([3])
    aws_faults.rules.append(AwsFaultRule("dynamodb", "GetItem", THROTTLED, lambda body: next(reads, None)))
    relay.post_until_taken(conversion("T-1", AFFILIATE, "c1"))

    # WHEN the dispatcher runs until the queue is empty
    relay.drain()

    # THEN it was delivered once in the end
    assert aws_faults.calls_failed["GetItem"] == 1
    assert affiliate.received == {"/pb0?c1": 1}
    assert relay.delivery_states() == {delivery_id("T-1"): DeliveryState.DELIVERED}


# --- the dispatcher dies mid-batch ------------------------------------------------------------


def test_an_invocation_dying_mid_batch_loses_nothing_and_resends_only_unheard_postbacks(
    relay: Relay, affiliate: FaultyAffiliate
) -> None:
    # GIVEN ten postbacks, and a dispatch invocation that dies after its work, before answering
    for n in range(10):
        relay.post_until_taken(conversion(f"T-{n}", AFFILIATE, f"c{n}"))
    deaths = iter([True])
    relay.crash = lambda: next(deaths, False)

    # WHEN the event source mapping runs until the queue is empty
    relay.drain()

    # THEN the batch came back whole: the postbacks of the dead invocation, which their
    # affiliate had taken, were handed to the dispatcher again (the harness's count)
    assert relay.crashes == 1
    assert relay.invocations >= 2
    crashed = {json.loads(record["body"])["delivery_id"] for record in relay.batches[0].records}
    assert crashed and all(relay.handovers()[d] >= 2 for d in crashed)
    # AND each postback reached the affiliate; a redelivered one was found delivered, not sent
    # again: a second receipt only where the affiliate's own record shows the relay could not
    # hear its first answer (at-least-once)
    assert set(affiliate.received) == {f"/pb0?c{n}" for n in range(10)}
    resent = affiliate.resends_unexplained()
    assert resent == {}, f"(taken, unheard, explained) per postback taken more than once unexplained: {resent}"
    assert set(relay.delivery_states().values()) == {DeliveryState.DELIVERED}


def test_a_failed_write_at_ingest_does_not_turn_the_retry_into_a_repeat_that_queues_nothing(
    relay: Relay, affiliate: FaultyAffiliate, aws_faults: AwsFaults
) -> None:
    # GIVEN the second conversion's write throttled past botocore's retries, and any delete of a
    # conversion record (the undo the relay used to make) throttled past them too
    aws_faults.rules += [
        AwsFaultRule("dynamodb", "PutItem", THROTTLED, lambda body: 3 if b'"T-1"' in body else None),
        AwsFaultRule("dynamodb", "BatchWriteItem", THROTTLED, lambda body: 3),
        AwsFaultRule("dynamodb", "DeleteItem", THROTTLED, lambda body: 3),
    ]
    batch = {"conversions": [conversion(f"T-{n}", AFFILIATE, f"c{n}") for n in range(2)]}

    # WHEN the batch is posted (503) and retried by the platform until taken
    status, answer = relay.post_until_taken(batch)
    assert (status, relay.ingest_tally.answers[503]) == (202, 1)
    # (T-0 was recorded by the first try: the retry answers it as a repeat)
    assert [r["repeat"] for r in answer["results"]] == [True, False]
    relay.drain()

    # THEN both postbacks reached the affiliate, once: T-0's from its first record, T-1's from the retry
    assert affiliate.received == {"/pb0?c0": 1, "/pb0?c1": 1}
    assert aws_faults.calls["BatchWriteItem"] == aws_faults.calls["DeleteItem"] == 0
