"""Waits that scale (issue 19): thousands of postbacks waiting on a dead endpoint hold no
in-flight slot of the queue, the other affiliates' postbacks keep flowing, and none is lost.

SQS allows about 120,000 in-flight messages per standard queue; past that ReceiveMessage gets
no more messages, for every affiliate. moto does not enforce it, so the run measures what
would hit it: the queue's ApproximateNumberOfMessagesNotVisible, polled throughout (moto, like
SQS, counts a delayed message there only after it is received; the adapter test checks it).
The dispatch function runs under the local stack's event source mapping with 2 pollers of
10 messages: at most 20 messages may be in flight at any time, whatever waits.

The queue is moto's SQS; the delivery log and the circuit store are the unit tests' in-memory
fakes (same conditions: never touch a delivered one), because moto's DynamoDB UpdateItem
costs about 75 ms of CPU on this machine and the run makes two per postback.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from fakes import FakeDeliveryLog, FakeEndpointStore
from reliability.relay_harness import (
    OK,
    AwsFaultRule,
    AwsFaults,
    FaultyAffiliate,
    Misbehaviour,
    QueueWatch,
    Relay,
)

import dispatch_handler
from postback_ops.local.poller import SqsPoller
from postback_relay import wiring
from postback_relay.adapters.sqs_queue import SqsPostbackQueue
from postback_relay.domain.delivery import DeliveryState, PostbackMessage, delivery_id_for
from postback_relay.domain.events import Event

DEAD = "7100001"
HEALTHY = ("7100002", "7100003")
BATCH_SIZE = 10
CONCURRENCY = 2
# Waits unscaled: the circuit's first cool-down (60 s) outlasts one pass of the dispatcher over
# the 2,000 postbacks on moto (about 30 s on 2 shared CPUs), so they all wait for the same
# trial call, and the healthy postbacks go out while nothing of the dead endpoint is due (a
# wave of 2,000 coming due at once is queued ahead of anything sent after it).
WAIT_SCALE = 1.0


class Switch:
    """An endpoint that is down (503) until `revive()`, then answers 200."""

    def __init__(self) -> None:
        self.down = threading.Event()
        self.down.set()

    def behaviour(self) -> Misbehaviour:
        return Misbehaviour("down-then-up", lambda n: "503" if self.down.is_set() else "ok")

    def revive(self) -> None:
        self.down.clear()


@pytest.fixture
def log() -> FakeDeliveryLog:
    return FakeDeliveryLog()


@pytest.fixture
def scaled(relay: Relay, log: FakeDeliveryLog, monkeypatch: pytest.MonkeyPatch) -> Relay:
    # The function's dispatcher at the waits' scale, on the in-memory log and circuit store
    # (the relay fixture forgets it afterwards).
    settings = dispatch_handler.settings.model_copy(update={"delay_scale": WAIT_SCALE})
    dispatch_handler.dispatcher.use(wiring.dispatcher(settings, deliveries=log, endpoints=FakeEndpointStore()))
    return relay


@pytest.fixture
def pollers(scaled: Relay) -> Iterator[SqsPoller]:
    mapping = replace(scaled.poller.mapping, batch_size=BATCH_SIZE, concurrency=CONCURRENCY)
    poller = SqsPoller(
        scaled.sqs, mapping, scaled._invoke, region="eu-west-1", max_wait_s=1, on_batch=scaled.batches.append
    )
    yield poller
    poller.stop()


def queue_postbacks(relay: Relay, affiliate_id: str, base_url: str, count: int, *, prefix: str) -> list[str]:
    """`count` postbacks queued as ingest queues them (SendMessageBatch of 10), without the
    ingest handler's conversion records: the run is about the dispatcher, and stays short."""
    messages = [
        PostbackMessage(
            delivery_id=delivery_id_for(f"{prefix}-{n}", Event.SALE, affiliate_id, 0),
            affiliate_id=affiliate_id,
            transaction_id=f"{prefix}-{n}",
            event=Event.SALE,
            offer_id="89",
            url=f"{base_url}/pb0?cid={prefix}{n}",
            created_at=datetime.now(UTC),
        )
        for n in range(count)
    ]
    refused = SqsPostbackQueue(relay.outputs["PostbackQueueUrl"], client=relay.sqs).send(messages)
    assert refused == []
    return [m.delivery_id for m in messages]


def wait_for(condition: Any, *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.2)


def test_two_thousand_postbacks_wait_on_a_dead_endpoint_without_holding_the_queue(
    scaled: Relay, pollers: SqsPoller, aws_faults: AwsFaults, log: FakeDeliveryLog
) -> None:
    relay = scaled
    switch = Switch()
    with (
        FaultyAffiliate(switch.behaviour()) as dead,
        FaultyAffiliate(OK) as healthy_a,
        FaultyAffiliate(OK) as healthy_b,
    ):
        healthy_servers = dict(zip(HEALTHY, (healthy_a, healthy_b), strict=True))
        posted_at: dict[str, float] = {}  # healthy delivery key -> when its conversion was posted
        reached_at: dict[str, float] = {}  # healthy delivery key -> when its affiliate first had it
        waiting_then: dict[str, int] = {}  # healthy delivery key -> dead postbacks waiting then

        def note_arrivals() -> None:
            now = time.monotonic()
            for server in healthy_servers.values():
                for key in list(server.received):
                    if key not in reached_at:
                        reached_at[key] = now
                        waiting_then[key] = watch.samples[-1][2] if watch.samples else 0

        watch = QueueWatch(relay.outputs["PostbackQueueUrl"], on_tick=note_arrivals)
        started = time.monotonic()
        with watch:
            pollers.start()
            # GIVEN 2,000 postbacks to an endpoint that is down (503): its circuit opens after 5
            # failures, and the rest wait for its cool-downs, which grow while it stays down
            dead_ids = queue_postbacks(relay, DEAD, dead.url, 2000, prefix="D")
            posted_s = time.monotonic() - started
            wait_for(
                lambda: watch.samples and watch.samples[-1][2] >= 1900 and watch.samples[-1][3] == 0,
                timeout_s=90,
                what="the dead endpoint's postbacks to be waiting",
            )
            waiting_s = time.monotonic() - started
            # WHEN healthy affiliates' postbacks keep coming while they wait
            for n in range(10):
                for affiliate_id, server in healthy_servers.items():
                    posted_at[f"/pb0?H{affiliate_id}{n}0"] = time.monotonic()
                    queue_postbacks(relay, affiliate_id, server.url, 1, prefix=f"H{affiliate_id}{n}")
                time.sleep(0.2)
            # AND the endpoint comes back
            switch.revive()
            revived_s = time.monotonic() - started
            wait_for(lambda: len(dead.received) >= 2000, timeout_s=90, what="the dead endpoint's postbacks")
            # What is left is copies that come due later (a copy queued just before the revival,
            # or a second copy of a delivered postback, skipped when it arrives): the queue
            # drains once the longest delay any copy was given has passed.
            longest_delay_s = max(aws_faults.message_delays, default=0)
            wait_for(
                lambda: relay.queue_depth() == (0, 0),
                timeout_s=longest_delay_s + 30,
                what=f"the queue to drain (longest copy delay {longest_delay_s} s)",
            )
        pollers.stop()
        elapsed_s = time.monotonic() - started

    dead_states = {log.records[delivery_id].state if delivery_id in log.records else None for delivery_id in dead_ids}
    latencies = sorted(reached_at[key] - posted_at[key] for key in posted_at if key in reached_at)
    summary = {
        "postbacks_waiting": len(dead_ids),
        "in_flight_peak": watch.peak_in_flight,
        "delayed_peak": watch.peak_delayed,
        "in_flight_bound": BATCH_SIZE * CONCURRENCY,
        "healthy_delivered": len(latencies),
        "healthy_latency_s_max": round(latencies[-1], 2) if latencies else None,
        "healthy_latency_s_median": round(latencies[len(latencies) // 2], 2) if latencies else None,
        "dead_endpoint_attempts": sum(dead.attempts.values()),
        "delayed_copies_sent": len(aws_faults.message_delays),
        "visibility_changes": len(aws_faults.visibility_changes),
        "seconds": {
            "queued": round(posted_s, 1),
            "all_waiting": round(waiting_s, 1),
            "revived": round(revived_s, 1),
            "total": round(elapsed_s, 1),
        },
        "samples": len(watch.samples),
        "batches": len(relay.batches),
        "batch_errors": sum(1 for b in relay.batches if b.error),
        "records_left_on_queue": sum(len(b.failed_ids) for b in relay.batches),
        "biggest_batch": max((len(b.records) for b in relay.batches), default=0),
    }
    print(f"\nwaits run: {json.dumps(summary, sort_keys=True)}")

    # THEN the queue never had more in flight than the pollers' batches, though all 2,000
    # postbacks were waiting at once: each waited as a delayed copy, none hidden in flight
    assert len(watch.samples) > 100
    assert watch.peak_in_flight <= BATCH_SIZE * CONCURRENCY
    assert watch.peak_delayed >= 1900
    assert aws_faults.visibility_changes == []
    # AND the healthy affiliates' postbacks kept flowing meanwhile: every one reached its
    # affiliate within seconds, while the dead endpoint's postbacks were waiting
    assert len(latencies) == len(posted_at) == 20
    assert latencies[-1] < 10.0
    assert min(waiting_then.values()) >= 1000
    # AND none is lost: once the endpoint came back every one of the 2,000 was delivered
    # (none failed: the endpoint's outage was shorter than the retry schedule), each taken once,
    # but after an answer the relay could not hear (one sent as the endpoint came back, on a
    # loaded machine): at-least-once allows one more send then. The endpoint's own record of
    # its answers says which, not the relay's attempt log.
    assert dead_states == {DeliveryState.DELIVERED}
    assert set(dead.received) == {f"/pb0?D{n}" for n in range(2000)}
    resent = dead.resends_unexplained()
    assert resent == {}, f"(taken, unheard, explained) per postback taken more than once unexplained: {resent}"
    assert relay.dead_letters() == []


def test_the_old_way_would_hold_every_waiting_postback_in_flight(
    scaled: Relay, pollers: SqsPoller, aws_faults: AwsFaults
) -> None:
    """The same wait with the delayed copy refused (the fallback, and what every wait did
    before): the messages stay hidden in flight. Proves the bound above can fail."""
    relay = scaled
    queue_url = relay.outputs["PostbackQueueUrl"]
    aws_faults.rules.append(
        AwsFaultRule(
            "sqs", "SendMessage", ("ServiceUnavailable", 503), lambda body: 3 if queue_url.encode() in body else None
        )
    )
    switch = Switch()
    with FaultyAffiliate(switch.behaviour()) as dead:
        watch = QueueWatch(queue_url)
        with watch:
            pollers.start()
            # GIVEN 200 postbacks to a dead endpoint, whose copies SQS refuses
            queue_postbacks(relay, DEAD, dead.url, 200, prefix="O")
            wait_for(lambda: watch.peak_in_flight >= 150, timeout_s=30, what="messages held in flight")
        pollers.stop()
    # THEN they wait hidden: in flight far above the pollers' 20
    print(f"\nthe old way: in flight peak {watch.peak_in_flight} for 200 waiting postbacks")
    assert watch.peak_in_flight > BATCH_SIZE * CONCURRENCY
    assert aws_faults.visibility_changes
