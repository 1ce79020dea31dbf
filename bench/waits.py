"""Waits that scale (issue 19): what a million retries cost for each way of waiting, and the
queue's in-flight peak while postbacks wait on a dead endpoint.

The cost of a wait (the attempt around it, a GetItem and an UpdateItem, is the same whatever
the wait and is counted apart). Prices are bench/cost.py's (eu-west-1, no free tier) plus
EventBridge Scheduler's, all list prices as read on the date in `PRICES_AS_OF`:

- chained hops (built): a wait is a chain of SQS messages sent with DelaySeconds of at most
  900 s; each hop costs a SendMessage, a share of the event source mapping's ReceiveMessage
  and DeleteMessageBatch (10 records a batch), a share of a dispatcher invocation (a hop
  makes no DynamoDB call and no HTTP call: `HOP_MS` per record).
- EventBridge Scheduler one-time schedules (not built): a wait past 15 minutes is one
  CreateSchedule (ActionAfterCompletion DELETE) whose target is SQS SendMessage; a shorter
  one a DelaySeconds message. Billed per scheduled invocation; API calls are assumed free
  (the pricing page bills invocations; not checked further here).
- A DynamoDB-held schedule swept by a timer (not built): one PutItem of the message (~0.6 KB,
  one write unit, plus one in a sparse due-time index), read back by a sweeper's Query (one
  read unit per 4 KB, eventually consistent: half), one DeleteItem (and its index entry), one
  SendMessageBatch entry back to the queue; the sweeper's invocations once a minute are
  negligible per million.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from bench import cost
from postback_relay.domain.delivery import MAX_MESSAGE_DELAY_S, RETRY_SCHEDULE_S

PRICES_AS_OF = cost.PRICES_AS_OF
SCHEDULER_PER_MILLION_INVOCATIONS = (
    1.00  # https://aws.amazon.com/eventbridge/pricing/ (Scheduler, after 14 M free a month)
)
HOP_MS = 15.0  # billed dispatcher time per hop record (no DynamoDB, no HTTP): a JSON parse and one SendMessage
BATCH = 10
MEMORY_MB = 256


def hops(wait_s: float) -> int:
    """SQS messages a wait takes as a chain of DelaySeconds hops."""
    return max(1, math.ceil(wait_s / MAX_MESSAGE_DELAY_S))


def _per_million(requests_per_wait: float, price_per_million: float) -> float:
    return requests_per_wait * price_per_million


def chained_hops_usd(wait_s: float) -> float:
    """Per million waits of `wait_s` seconds."""
    p = cost.PRICES_USD
    n = hops(wait_s)
    sqs = n * (1 + 2 / BATCH) * p["sqs_per_million_requests"]  # send + share of receive and delete
    lam = n / BATCH * p["lambda_per_million_requests"]
    duration = n * HOP_MS / 1000 * MEMORY_MB / 1024 * p["lambda_arm64_per_gb_second"] * 1e6
    return sqs + lam + duration


def scheduler_usd(wait_s: float) -> float:
    p = cost.PRICES_USD
    if wait_s <= MAX_MESSAGE_DELAY_S:
        return chained_hops_usd(wait_s)
    # the schedule's invocation, its SendMessage, and the received copy's receive/delete share
    return SCHEDULER_PER_MILLION_INVOCATIONS + (1 + 2 / BATCH) * p["sqs_per_million_requests"]


def dynamodb_sweeper_usd(wait_s: float) -> float:
    p = cost.PRICES_USD
    if wait_s <= MAX_MESSAGE_DELAY_S:
        return chained_hops_usd(wait_s)
    writes = 2 + 2  # put + index entry, delete + index entry
    reads = 0.5 * 0.6 / 4  # the item's share of a Query page, eventually consistent
    sqs = (1 / BATCH + 1 + 2 / BATCH) * p["sqs_per_million_requests"]  # SendMessageBatch share, then as any message
    return writes * p["dynamodb_per_million_wru"] + reads * p["dynamodb_per_million_rru"] + sqs


def retry_costs() -> dict[str, Any]:
    """USD per million retries for each way, by step of the schedule and over the whole one."""
    ways: dict[str, Callable[[float], float]] = {
        "chained_hops": chained_hops_usd,
        "eventbridge_scheduler": scheduler_usd,
        "dynamodb_sweeper": dynamodb_sweeper_usd,
    }
    steps = {str(s): {name: round(f(s), 3) for name, f in ways.items()} for s in RETRY_SCHEDULE_S}
    for label, seconds in (("retry_after_12h", 43_200), ("circuit_cool_down_1h", 3_600)):
        steps[label] = {name: round(f(seconds), 3) for name, f in ways.items()}
    # A postback that fails every attempt waits once per step: the average retry of such a postback.
    average = {name: round(sum(f(s) for s in RETRY_SCHEDULE_S) / len(RETRY_SCHEDULE_S), 3) for name, f in ways.items()}
    return {
        "prices_as_of": PRICES_AS_OF,
        "region": cost.REGION,
        "usd_per_million_waits_by_step_s": steps,
        "usd_per_million_retries_whole_schedule_average": average,
        "hops_per_postback_failing_every_attempt": sum(hops(s) for s in RETRY_SCHEDULE_S),
        "note": "the wait alone; each retry's attempt (a GetItem, an UpdateItem, a share of an invocation) "
        "costs the same whatever the wait",
    }


# --- the in-flight peak --------------------------------------------------------------------------


def in_flight_peak(postbacks: int = 500, *, batch: int = BATCH, concurrency: int = 2) -> dict[str, Any]:
    """`postbacks` postbacks to a dead endpoint through the real dispatcher and SqsRetryControl
    on moto's SQS (the log and circuit store in memory, no HTTP: the sender answers 503), read by
    `concurrency` interleaved pollers of `batch`; ApproximateNumberOfMessagesNotVisible sampled
    after each batch. Twice: as built, and with every delayed copy refused (the fallback, which
    is what every wait did before)."""
    import boto3
    from moto import mock_aws

    from bench.fakes import DeliveryLogFake, EndpointStoreFake
    from postback_ops.local.moto_patches import patch_moto
    from postback_relay.adapters.sqs_retry import SqsRetryControl
    from postback_relay.domain.delivery import PostbackMessage, delivery_id_for
    from postback_relay.domain.errors import InfrastructureError
    from postback_relay.domain.events import Event
    from postback_relay.domain.records import ReceivedPostback, SendResult
    from postback_relay.services.circuit import CircuitBreakers
    from postback_relay.services.dispatch import Dispatcher

    class Dead:
        def send(self, message: Any, *, headers: Any = None) -> SendResult:
            return SendResult(503, 1, "down")

    class Refusing(SqsRetryControl):
        def requeue(self, body: str, *, delay_s: int) -> None:
            raise InfrastructureError("refused")

    patch_moto()
    out: dict[str, Any] = {"postbacks": postbacks, "bound": batch * concurrency}
    for label, control_type in (("built", SqsRetryControl), ("copies_refused", Refusing)):
        with mock_aws():
            sqs = boto3.client("sqs", region_name="eu-west-1")
            url = sqs.create_queue(QueueName="q", Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
            dlq = sqs.create_queue(QueueName="dlq")["QueueUrl"]
            dispatcher = Dispatcher(
                deliveries=DeliveryLogFake(),
                sender=Dead(),
                retries=control_type(url, dlq, client=sqs),
                breakers=CircuitBreakers(EndpointStoreFake()),
                delay_scale=1.0,
            )
            messages = [
                PostbackMessage(
                    delivery_id=delivery_id_for(f"W-{n}", Event.SALE, "1", 0),
                    affiliate_id="1",
                    transaction_id=f"W-{n}",
                    event=Event.SALE,
                    offer_id="89",
                    url="https://dead.example/pb",
                    created_at=datetime.now(UTC),
                )
                for n in range(postbacks)
            ]
            for start in range(0, postbacks, 10):
                sqs.send_message_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(i), "MessageBody": m.model_dump_json()}
                        for i, m in enumerate(messages[start : start + 10])
                    ],
                )
            peak, started = 0, time.monotonic()
            held: list[tuple[Sequence[Any], dict[str, Any]]] = []
            for _ in range(math.ceil(postbacks / batch) * 2):
                got = sqs.receive_message(
                    QueueUrl=url,
                    MaxNumberOfMessages=batch,
                    AttributeNames=["All"],
                ).get("Messages", [])
                if not got:
                    break
                records = [
                    ReceivedPostback(
                        m["MessageId"],
                        m["ReceiptHandle"],
                        int(m["Attributes"]["ApproximateReceiveCount"]),
                        m["Body"],
                        int(m["Attributes"]["SentTimestamp"]) / 1000,
                    )
                    for m in got
                ]
                held.append((got, dict(dispatcher.dispatch_batch(records))))  # `concurrency` batches in flight
                in_flight = int(
                    sqs.get_queue_attributes(
                        QueueUrl=url,
                        AttributeNames=["ApproximateNumberOfMessagesNotVisible"],
                    )["Attributes"]["ApproximateNumberOfMessagesNotVisible"]
                )
                peak = max(peak, in_flight)
                if len(held) >= concurrency:
                    done, outcomes = held.pop(0)
                    for m in done:
                        outcome = outcomes.get(m["MessageId"])
                        if outcome is None or isinstance(outcome, Exception) or not outcome.stays_on_queue:
                            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            out[label] = {"in_flight_peak": peak, "seconds": round(time.monotonic() - started, 1)}
    return out
