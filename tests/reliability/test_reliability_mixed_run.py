"""1,000 conversions through every fault at once, and nothing lost.

Ten affiliates, each behind its own misbehaving endpoint; DynamoDB throttling ingest and
dispatch (mostly absorbed by botocore's retry, sometimes past it; the platform retries a 503);
SQS down while conversions arrive, and refusing single entries of the outbox's sends; outbox
invocations dying after their sends; a stream batch given up on past its maximum age (ops
recover it from the on-failure queue, through a stream that serves empty pages before its
records, as AWS may); one stream record the outbox cannot read (parked, the batch carries on;
ops re-queue it); the DLQ, visibility changes and redelivery reads failing; dispatch
invocations dying before they answer. At the end every postback is either
received by its affiliate or failed with its reason in the delivery log and on the DLQ, and
the two counts add up to the total.
"""

from __future__ import annotations

import copy
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from reliability.relay_harness import (
    FLAKY,
    GONE,
    OK,
    REDIRECTING,
    RESETTING,
    SLOW_BODY,
    SQS_UNAVAILABLE,
    THROTTLED,
    THROTTLING,
    TIMING_OUT,
    AwsFaultRule,
    AwsFaults,
    FaultyAffiliate,
    Misbehaviour,
    Relay,
    affiliate_config,
    chunks,
    conversion,
    sometimes,
)

import outbox_handler
from postback_ops.local.stream import RECORD_AGE_EXCEEDED
from postback_relay.adapters.dynamodb_deliveries import ref_of
from postback_relay.domain.delivery import DeliveryState, delivery_id_for
from postback_relay.domain.events import Event

CONVERSIONS = 1000
REQUEST_SIZES = (1, 10, 100, 3, 37)
SEED = 20261126
EXPIRY_TURN = 7  # the request whose stream records pass their maximum age while SQS is down
OUTAGE_TURNS = (3, 12)  # requests posted while SQS is down (and others at random), back in time
POISON = "T-42#sale"  # the conversion whose stream record the outbox gets unreadable
EMPTY_PAGES = 3  # empty GetRecords pages the stream serves before each page of records


@dataclass(frozen=True)
class Endpoint:
    affiliate_id: str
    behaviour: Misbehaviour
    weight: float
    postbacks: int = 1


ENDPOINTS = (
    Endpoint("8000001", OK, 40),
    Endpoint("8000002", OK, 5, postbacks=2),
    Endpoint("8000003", FLAKY, 6),
    Endpoint("8000004", THROTTLING, 8),
    Endpoint("8000005", TIMING_OUT, 5),
    Endpoint("8000006", RESETTING, 10),
    Endpoint("8000007", SLOW_BODY, 8),
    Endpoint("8000008", REDIRECTING, 5),
    Endpoint("8000009", GONE, 5),
)


@dataclass(frozen=True)
class Postback:
    endpoint: Endpoint
    key: str  # the affiliate server's delivery key: path and cid
    delivery_id: str


def state_written(body: bytes) -> tuple[str, str]:
    """The delivery and the state an UpdateItem of the delivery log writes."""
    document: dict[str, Any] = json.loads(body)
    # The log's key is (affiliate_id, `<created_at>#<delivery_id>`).
    delivery_id = ref_of(document["Key"]).delivery_id
    return delivery_id, document["ExpressionAttributeValues"][":state"]["S"]


class SqsAtIngest:
    """SQS while conversions arrive: a whole outage now and then (the outbox's sends fail; the
    conversions are taken all the same), and single entries of the outbox's sends refused on
    both of the adapter's tries."""

    def __init__(self, faults: AwsFaults, rng: random.Random) -> None:
        self.outages = 0
        self._faults = faults
        self._rng = rng
        self._left: dict[str, int] = {}
        faults.refuse_sqs_entry = self._refuse

    def down(self) -> None:
        self.outages += 1
        self._faults.down.add("sqs:SendMessageBatch")

    def up(self) -> None:
        self._faults.down.discard("sqs:SendMessageBatch")

    def _refuse(self, entry: Mapping[str, Any]) -> bool:
        body = str(entry["MessageBody"])
        if body not in self._left:
            self._left[body] = 2 if self._rng.random() < 0.01 else 0
        if self._left[body] > 0:
            self._left[body] -= 1
            return True
        return False


def lost_log_writes(faults: AwsFaults) -> list[tuple[str, str, float]]:
    """(delivery, state it wrote, when) of each delivery-log write the harness failed past
    botocore's retries: writes the relay made and lost."""
    return [
        (*state_written(fault.body), fault.at)
        for fault in faults.injected_faults
        if fault.operation == "UpdateItem" and fault.past_retries
    ]


def lost_writes_after_a_send(
    postbacks: Sequence[Postback], servers: Mapping[str, FaultyAffiliate], faults: AwsFaults
) -> Counter[str]:
    """Per delivery key: the sends the affiliate's server answered where the relay could hear
    it, each followed (before the next send of that postback) by a write of its delivery the
    harness failed past botocore's retries. Only such a write can make the relay send a heard,
    taken postback again; a write lost before a send (a deferral) sends nothing twice."""
    lost_at: dict[str, list[float]] = {}
    for delivery_id, _, at in lost_log_writes(faults):
        lost_at.setdefault(delivery_id, []).append(at)
    found: Counter[str] = Counter()
    for p in postbacks:
        writes = lost_at.get(p.delivery_id, [])
        if not writes:
            continue
        server = servers[p.endpoint.affiliate_id]
        sends = sorted(a.received_at for a in server.answers if a.key == p.key)
        for taking in server.heard_takings(p.key):
            following = [at for at in sends if at > taking.received_at]
            until = following[0] if following else float("inf")
            if any(taking.received_at < at < until for at in writes):
                found[p.key] += 1
    return found


def dlq_problems(
    letters: Sequence[Mapping[str, Any]],
    postbacks: Sequence[Postback],
    states: Mapping[str, DeliveryState],
    servers: Mapping[str, FaultyAffiliate],
    faults: AwsFaults,
) -> list[str]:
    """What does not tie the DLQ to the failed postbacks: a message without its reason or
    delivery, one for a postback not failed in the log or taken by its affiliate, a failed
    postback missing, or on it more often than the harness's lost writes of its failure allow."""
    by_id = {p.delivery_id: p for p in postbacks}
    lost_failures = Counter(d for d, state, _ in lost_log_writes(faults) if state == DeliveryState.FAILED.value)
    problems: list[str] = []
    on_dlq: Counter[str] = Counter()
    for letter in letters:
        attributes = letter.get("MessageAttributes", {})
        delivery_id = attributes.get("delivery_id", {}).get("StringValue")
        postback = by_id.get(delivery_id or "")
        if "reason" not in attributes or postback is None:
            problems.append(f"a DLQ message without a reason or a known delivery: {attributes}")
            continue
        on_dlq[postback.delivery_id] += 1
        if states.get(postback.delivery_id) is not DeliveryState.FAILED:
            problems.append(f"{postback.key} is on the DLQ, its log says {states.get(postback.delivery_id)}")
        if servers[postback.endpoint.affiliate_id].received[postback.key]:
            problems.append(f"{postback.key} is on the DLQ, yet its affiliate took it")
    for p in postbacks:
        if states.get(p.delivery_id) is DeliveryState.FAILED and not on_dlq[p.delivery_id]:
            problems.append(f"{p.key} failed, and is not on the DLQ")
        if on_dlq[p.delivery_id] > 1 + lost_failures[p.delivery_id]:
            problems.append(f"{p.key} is on the DLQ {on_dlq[p.delivery_id]} times")
    return problems


class EmptyPagesFirst:
    """A DynamoDB Streams client that serves EMPTY_PAGES empty pages (with a next iterator)
    before each page of records, as AWS may: "it might take multiple calls to get to a portion
    of the shard that contains stream records" (GetRecords). moto never does."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._served: Counter[str] = Counter()
        self.empty_pages = 0

    def get_shard_iterator(self, **kwargs: Any) -> Any:
        return self._client.get_shard_iterator(**kwargs)

    def get_records(self, *, ShardIterator: str, **kwargs: Any) -> Any:
        if self._served[ShardIterator] < EMPTY_PAGES:
            self._served[ShardIterator] += 1
            self.empty_pages += 1
            return {"Records": [], "NextShardIterator": ShardIterator}
        return self._client.get_records(ShardIterator=ShardIterator, **kwargs)


def poisoning(handler: Callable[..., Any]) -> Callable[..., Any]:
    """The outbox handler, given POISON's stream record with its postbacks unreadable."""

    def poisoned(event: dict[str, Any], context: Any, service: Any = None) -> Any:
        event = copy.deepcopy(event)
        for record in event.get("Records", []):
            image = record["dynamodb"]["NewImage"]
            if image["conversion_id"]["S"] == POISON:
                image["postbacks"] = {"S": "{not json"}
        return handler(event, context, service)

    return poisoned


def test_a_thousand_conversions_through_mixed_faults_lose_nothing(
    relay: Relay, aws_faults: AwsFaults, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(SEED)
    with ExitStack() as servers:
        # GIVEN ten affiliates behind misbehaving endpoints, and 1,000 conversions spread over them
        affiliate_servers: dict[str, FaultyAffiliate] = {}
        for endpoint in ENDPOINTS:
            server = servers.enter_context(FaultyAffiliate(endpoint.behaviour))
            affiliate_servers[endpoint.affiliate_id] = server
            relay.add_affiliate(affiliate_config(endpoint.affiliate_id, server.url, postbacks=endpoint.postbacks))
        chosen = rng.choices(ENDPOINTS, weights=[e.weight for e in ENDPOINTS], k=CONVERSIONS)
        documents = [conversion(f"T-{n}", e.affiliate_id, f"k{n}") for n, e in enumerate(chosen)]
        postbacks = [
            Postback(e, f"/pb{i}?k{n}", delivery_id_for(f"T-{n}", Event.SALE, e.affiliate_id, i))
            for n, e in enumerate(chosen)
            for i in range(e.postbacks)
        ]

        # AND AWS failing throughout: throttled writes and reads, SQS refusing sends
        aws_faults.rules += [
            AwsFaultRule("dynamodb", "PutItem", THROTTLED, sometimes({1: 0.05, 3: 0.01}, seed=SEED + 1)),
            AwsFaultRule("dynamodb", "BatchWriteItem", THROTTLED, sometimes({1: 0.2}, seed=SEED + 2)),
            AwsFaultRule("dynamodb", "UpdateItem", THROTTLED, sometimes({1: 0.05, 3: 0.01}, seed=SEED + 3)),
            AwsFaultRule("dynamodb", "GetItem", THROTTLED, sometimes({1: 0.05, 3: 0.03}, seed=SEED + 4)),
            AwsFaultRule("sqs", "SendMessage", SQS_UNAVAILABLE, sometimes({1: 0.1, 3: 0.05}, seed=SEED + 5)),
            AwsFaultRule("sqs", "ChangeMessageVisibility", SQS_UNAVAILABLE, sometimes({3: 0.03}, seed=SEED + 6)),
        ]
        sqs = SqsAtIngest(aws_faults, rng)
        # AND one outbox invocation in 25 and one dispatch invocation in 25 dying before they answer
        relay.outbox_crash = lambda: rng.random() < 0.04
        relay.crash = lambda: rng.random() < 0.04
        # AND one stream record the outbox cannot read
        monkeypatch.setattr(outbox_handler, "lambda_handler", poisoning(outbox_handler.lambda_handler))

        started = time.monotonic()
        taken: set[str] = set()
        # WHEN the platform posts them in requests of 1 to 100, retrying each 503 as it must,
        # while the outbox follows the stream
        for turn, request in enumerate(chunks(documents, REQUEST_SIZES)):
            document: object = request[0] if len(request) == 1 else {"conversions": request}
            outage = rng.random() < 0.05 or turn in OUTAGE_TURNS or turn == EXPIRY_TURN
            if outage:
                # SQS down: the conversions are taken all the same; the outbox's sends fail
                sqs.down()
            status, answer = relay.post_until_taken(document)
            assert status in (200, 202), answer
            taken.update(f"{c['transaction_id']}#sale" for c in request)
            if outage:
                relay.run_outbox(max_batches=3, or_stop=True)  # the outbox's sends fail meanwhile
            else:
                relay.run_outbox()
            if turn == EXPIRY_TURN:
                # AND SQS down past the stream records' maximum age: the mapping gives up on them
                aged = time.time() + relay.outbox.mapping.maximum_record_age_s + 1

                def aged_clock(now: float = aged) -> float:
                    return now

                relay.clock = aged_clock
                relay.run_outbox()
                relay.clock = time.time
            if outage:
                sqs.up()
                relay.run_outbox()
        ingest_s = time.monotonic() - started
        # AND ops recover what the outbox gave up on (its alarm fired), then the relay runs
        # until the queue is empty
        streams = EmptyPagesFirst(boto3.client("dynamodbstreams"))
        recovered = relay.recover_outbox(streams=streams)
        # AND re-queue the record the outbox parked (its item in the table reads)
        requeued = relay.requeue_parked()
        relay.drain(timeout_s=600)
        dispatch_s = time.monotonic() - started - ingest_s

    # THEN every conversion was taken (202 or 200) and recorded once
    assert len(taken) == CONVERSIONS
    assert relay.conversion_ids() == taken
    # AND the outbox gave up on one batch, which the recovery queued whole
    assert [d["requestContext"]["condition"] for d in relay.outbox.discarded] == [RECORD_AGE_EXCEEDED]
    assert [(b.deleted, b.refused) for b in recovered] == [(True, 0)]
    # AND read it from the stream through the empty pages (not from the table after the first one)
    assert [(b.source, b.empty_pages > 0) for b in recovered] == [("stream", True)]
    # AND the unreadable record was parked (once per try that met it), and re-queued whole
    assert {r.conversion_id for r in requeued} == {POISON} and all(r.requeued for r in requeued)

    # AND every postback was received by its affiliate, or failed with its reason (log + DLQ)
    states = relay.delivery_states()
    letters = relay.dead_letters()
    received = [p for p in postbacks if affiliate_servers[p.endpoint.affiliate_id].received[p.key] > 0]
    failed = [p for p in postbacks if states.get(p.delivery_id) is DeliveryState.FAILED]
    assert all(states.get(p.delivery_id) is DeliveryState.DELIVERED for p in received)
    assert all(p.endpoint.behaviour.fails_for_good for p in failed)
    assert len(received) + len(failed) == len(postbacks)
    # AND the DLQ holds exactly the failed ones: each message, with its reason, is a postback
    # whose log says failed and that no affiliate took (never a delivered one), each failed
    # postback is there, and once, but where the harness failed the write logging it failed
    # (past botocore's retries: the message came back and failed again)
    assert dlq_problems(letters, postbacks, states, affiliate_servers, aws_faults) == []

    # AND no postback reached its affiliate twice, except where at-least-once allows it, by
    # witnesses outside the relay: an answer the affiliate's server gave that the relay could
    # not hear (written after the relay's read timeout, or to a relay that had hung up: the
    # late-ok endpoint does so on purpose, and any slow answer under load does too), or a write
    # to the delivery log that the harness failed past botocore's retries after a send the
    # relay heard (the send happened, the log could not say so) -- one extra receipt for each
    lost = lost_writes_after_a_send(postbacks, affiliate_servers, aws_faults)
    duplicates: Counter[str] = Counter()
    for p in received:
        server = affiliate_servers[p.endpoint.affiliate_id]
        resent = server.resends_unexplained({p.key: lost[p.key]}).get(p.key)
        assert resent is None, f"{p.key} (taken, unheard, lost log writes after a send): {resent}"
        extra = server.received[p.key] - 1
        if extra > 0:
            duplicates["after_an_unheard_answer" if server.unheard(p.key) else "after_a_lost_log_write"] += extra

    faults: dict[str, Any] = {
        "endpoint_actions": dict(sum((s.actions for s in affiliate_servers.values()), Counter())),
        "aws_attempts_failed": dict(aws_faults.injected),
        "aws_calls_past_retries": dict(Counter(operation for operation, _ in aws_faults.exhausted)),
        "sqs_outages_at_ingest": sqs.outages,
        "sqs_entries_refused": aws_faults.entries_refused,
        "outbox_invocations_died": relay.outbox_crashes,
        "outbox_batches_given_up_and_recovered": len(recovered),
        "recovery_empty_pages": streams.empty_pages,
        "outbox_records_parked_and_requeued": len(requeued),
        "dispatch_invocations_died": relay.crashes,
    }
    summary = {
        "conversions": CONVERSIONS,
        "postbacks": len(postbacks),
        "delivered": len(received),
        "failed": len(failed),
        "duplicates": dict(duplicates),
        "dlq_messages": len(letters),
        "ingest_answers": dict(relay.ingest_tally.answers),
        "outbox_invocations": relay.outbox_invocations,
        "dispatch_invocations": relay.invocations,
        "seconds": {"ingest": round(ingest_s, 1), "dispatch": round(dispatch_s, 1)},
        "faults": faults,
    }
    print(f"\nmixed fault run: {json.dumps(summary, sort_keys=True)}")
    # Every kind of fault happened at least once: the run proves nothing about a fault it never met.
    assert set(faults["endpoint_actions"]) >= {"500", "429", "late-ok", "reset", "slow-ok", "redirect", "404"}
    assert set(faults["aws_attempts_failed"]) >= {
        "PutItem",
        "UpdateItem",
        "GetItem",
        "SendMessage",
        "SendMessageBatch",
        "ChangeMessageVisibility",
    }
    assert sqs.outages >= 3 and aws_faults.entries_refused and relay.crashes and relay.outbox_crashes
    assert set(faults["aws_calls_past_retries"]) >= {"PutItem", "UpdateItem", "GetItem", "SendMessage"}
