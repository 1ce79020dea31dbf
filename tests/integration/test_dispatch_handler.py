"""The dispatch function end to end: moto's queue, tables and DLQ, real affiliate servers on
127.0.0.1, Lambda's SQS event and partial-batch semantics played by the test."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import boto3
import pytest

import dispatch_handler
from postback_ops.local.poller import to_lambda_record
from postback_ops.local.receiver import Answer, Receiver
from postback_relay import wiring
from postback_relay.adapters.dynamodb_deliveries import DynamoDeliveryLog
from postback_relay.domain.delivery import DeliveryState, PostbackMessage, delivery_id_for
from postback_relay.domain.errors import InfrastructureError
from postback_relay.domain.events import Event
from postback_relay.domain.records import SendResult
from postback_relay.services.dispatch import Dispatcher
from postback_relay.settings import DispatchSettings

if TYPE_CHECKING:
    from mypy_boto3_sqs.literals import QueueAttributeNameType

EVENTS = Path(__file__).resolve().parents[2] / "events"


@dataclass(frozen=True)
class FakeLambdaContext:
    function_name: str = "DispatchFunction"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:DispatchFunction"
    aws_request_id: str = "test-request"


class Stack:
    """The queue, the DLQ and the delivery log of the moto stack, as the tests drive them."""

    def __init__(self, outputs: dict[str, str], settings: DispatchSettings) -> None:
        self.sqs = boto3.client("sqs")
        self.queue_url = outputs["PostbackQueueUrl"]
        self.dlq_url = outputs["DeadLetterQueueUrl"]
        self.deliveries = DynamoDeliveryLog(outputs["DeliveriesTableName"], client=boto3.client("dynamodb"))
        self.settings = settings
        self.dispatcher = self.cold_start()

    def cold_start(self, **changes: Any) -> Dispatcher:
        """The function's dispatcher built again by the wiring (with these settings changed),
        outside the timed parts of the tests; the handler is handed it on each invocation."""
        self.settings = self.settings.model_copy(update=changes)
        self.dispatcher = wiring.dispatcher(self.settings)
        return self.dispatcher

    def queue(self, urls: list[str]) -> list[PostbackMessage]:
        messages = []
        for n, url in enumerate(urls):
            message = PostbackMessage(
                delivery_id=delivery_id_for(f"T-{n}", Event.SALE, "1234567", 0),
                affiliate_id="1234567",
                transaction_id=f"T-{n}",
                event=Event.SALE,
                offer_id="89",
                url=url,
                created_at=datetime.now(UTC),
            )
            self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=message.model_dump_json())
            messages.append(message)
        return messages

    def receive(self, count: int, *, wait_s: int = 0) -> list[dict[str, Any]]:
        """Up to `count` visible messages as Lambda event records (waiting up to wait_s for the first)."""
        records: list[dict[str, Any]] = []
        deadline = time.monotonic() + wait_s
        while len(records) < count:
            answer = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(10, count - len(records)),
                AttributeNames=["All"],
                WaitTimeSeconds=1 if wait_s else 0,
            )
            got = answer.get("Messages", [])
            records.extend(
                to_lambda_record(m, queue_arn="arn:aws:sqs:us-east-1:123456789012:queue", region="us-east-1")
                for m in got
            )
            if not got and time.monotonic() >= deadline:
                break
        return records

    def invoke(self, records: list[dict[str, Any]], *, delete: bool = True) -> set[str]:
        """Invoke the handler; like Lambda, delete the records not reported failed. Returns the failed IDs."""
        answer = dispatch_handler.lambda_handler({"Records": records}, FakeLambdaContext(), service=self.dispatcher)
        failed = {item["itemIdentifier"] for item in answer["batchItemFailures"]}
        if delete:
            for record in records:
                if record["messageId"] not in failed:
                    self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=record["receiptHandle"])
        return failed

    def expire_visibility(self, records: list[dict[str, Any]]) -> None:
        """The visibility timeout of these in-flight records ran out (as after a crash)."""
        for record in records:
            self.sqs.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=record["receiptHandle"], VisibilityTimeout=0
            )

    def depth(self) -> dict[str, int]:
        names: list[QueueAttributeNameType] = [
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        answer = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=names)
        return {name: int(answer["Attributes"][name]) for name in names}

    def dead_letters(self) -> list[dict[str, Any]]:
        answer = self.sqs.receive_message(
            QueueUrl=self.dlq_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
        )
        return cast(list[dict[str, Any]], answer.get("Messages", []))


@pytest.fixture
def stack(aws: dict[str, str]) -> Stack:
    # GIVEN the dispatcher built inside moto, with short timeouts and the local stack's delay scale
    fast = dispatch_handler.settings.model_copy(
        update={"delay_scale": 0.0001, "connect_timeout_s": 1.0, "read_timeout_s": 2.0, "allow_loopback": True}
    )
    return Stack(aws, fast)


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    # The stdlib's listen backlog (5) drops the SYNs of 10 simultaneous postbacks; the kernel
    # then retries them a second later, which is not the dispatcher's doing.
    monkeypatch.setattr(ThreadingHTTPServer, "request_queue_size", 64)
    with Receiver() as server:
        yield server


@pytest.mark.quiet  # its bound is wall-clock time: `make test` runs it alone
def test_ten_slow_postbacks_are_sent_concurrently(stack: Stack, receiver: Receiver) -> None:
    # GIVEN 10 postbacks to endpoints that each take 300 ms
    receiver.respond("/slow", [Answer(delay_s=0.3)])
    messages = stack.queue([f"{receiver.url}/slow?n={n}" for n in range(10)])
    records = stack.receive(10)
    # WHEN one batch is dispatched (timing the function alone, not the test's own clean-up)
    started = time.monotonic()
    failed = stack.invoke(records, delete=False)
    elapsed = time.monotonic() - started
    # THEN all are delivered, in much less than 10 x 300 ms
    assert failed == set()
    assert elapsed < 1.5
    assert len(receiver.hits("/slow")) == 10
    assert all(stack.deliveries.get(m.ref).state is DeliveryState.DELIVERED for m in messages)  # type: ignore[union-attr]


@pytest.mark.quiet  # its bound is wall-clock time: `make test` runs it alone
def test_a_hanging_endpoint_does_not_hold_up_the_others(
    stack: Stack, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN one endpoint that hangs far beyond the read timeout (0.5 s) and four healthy ones
    stack.cold_start(read_timeout_s=0.5)
    receiver.respond("/hang", [Answer(delay_s=5.0)])
    hanging, *healthy = stack.queue([f"{receiver.url}/hang"] + [f"{receiver.url}/ok?n={n}" for n in range(4)])
    records = stack.receive(5)
    # WHEN the batch is dispatched
    started = time.monotonic()
    failed = stack.invoke(records, delete=False)
    elapsed = time.monotonic() - started
    # THEN it ends soon after the timeout: the healthy ones delivered, the hanging one queued
    # again as a delayed copy, to retry
    assert elapsed < 2.5
    assert failed == set()
    assert stack.depth()["ApproximateNumberOfMessagesDelayed"] == 1
    assert all(stack.deliveries.get(m.ref).state is DeliveryState.DELIVERED for m in healthy)  # type: ignore[union-attr]
    record = stack.deliveries.get(hanging.ref)
    assert record is not None
    assert (record.state, record.attempts[0].error_kind) == (DeliveryState.RETRYING, "timeout")


def test_500_then_200_is_delivered_once_with_both_attempts_logged(stack: Stack, receiver: Receiver) -> None:
    # GIVEN an endpoint answering 500, then 200
    receiver.respond("/flaky", [500, 200])
    (message,) = stack.queue([f"{receiver.url}/flaky?cid=1"])
    # WHEN the message is dispatched, and its copy when it comes back after its (scaled) delay
    first = stack.invoke(stack.receive(1))
    waiting = stack.depth()
    again = stack.receive(1, wait_s=10)
    second = stack.invoke(again)
    # THEN the first run queued a delayed copy and let the received message be deleted: while
    # it waited nothing was in flight; the copy, a new message, delivered it
    assert first == set()
    assert waiting == {"ApproximateNumberOfMessagesNotVisible": 0, "ApproximateNumberOfMessagesDelayed": 1}
    assert again[0]["attributes"]["ApproximateReceiveCount"] == "1"
    assert json.loads(again[0]["body"])["schedule"]["receives"] == 1
    assert second == set()
    record = stack.deliveries.get(message.ref)
    assert record is not None
    assert record.state is DeliveryState.DELIVERED
    assert [(a.attempt, a.status, a.outcome) for a in record.attempts] == [(1, 500, "retry"), (2, 200, "delivered")]
    assert record.http_status == 200
    assert len(receiver.hits("/flaky")) == 2
    # AND nothing is left on the queue
    assert stack.receive(1) == []


def test_a_404_fails_at_once_onto_the_dlq_with_its_reason(stack: Stack, receiver: Receiver) -> None:
    # GIVEN an endpoint answering 404
    receiver.respond("/gone", [404])
    (message,) = stack.queue([f"{receiver.url}/gone"])
    # WHEN it is dispatched
    failed = stack.invoke(stack.receive(1))
    # THEN it is failed for good: removed from the queue, on the DLQ with reason and ID, logged
    assert failed == set()
    assert stack.receive(1) == []
    (parked,) = stack.dead_letters()
    assert parked["MessageAttributes"]["delivery_id"]["StringValue"] == message.delivery_id
    assert parked["MessageAttributes"]["reason"]["StringValue"] == "answered HTTP 404"
    record = stack.deliveries.get(message.ref)
    assert record is not None
    assert (record.state, record.last_error, len(record.attempts)) == (DeliveryState.FAILED, "answered HTTP 404", 1)


def test_a_refused_copy_leaves_the_message_on_the_queue_hidden_within_its_twelve_hours(
    stack: Stack, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a postback whose endpoint asks for 12 hours (Retry-After, the most honoured), and
    # SQS refusing the delayed copy (moto counts SQS's 12 hours from the send; AWS, and the
    # dispatcher, from this receipt: here they are the same second)
    from moto.sqs.models import sqs_backends

    from postback_ops.local.resources import LOCAL_ACCOUNT, LOCAL_REGION

    receiver.respond("/busy", [Answer(status=503, headers=(("Retry-After", "43200"),))])
    (message,) = stack.queue([f"{receiver.url}/busy"])
    queued: Any  # moto's message, whose attributes its code does not annotate
    (queued,) = sqs_backends[LOCAL_ACCOUNT][LOCAL_REGION].queues[stack.queue_url.rsplit("/", 1)[-1]]._messages
    # (unscaled delays: the 12 hours are asked for as they are on AWS)
    dispatcher = stack.cold_start(delay_scale=1)

    def refuse(body: str, *, delay_s: int) -> None:
        raise InfrastructureError("SQS refused the copy")

    monkeypatch.setattr(dispatcher._retries, "requeue", refuse)
    records = stack.receive(1)
    # WHEN it is dispatched
    failed = stack.invoke(records)
    # THEN it stays on the queue as a batch item failure, hidden for what is left of its 12
    # hours (moto, like SQS, rejects a visibility past them: the change went through)
    assert failed == {records[0]["messageId"]}
    assert stack.depth()["ApproximateNumberOfMessagesNotVisible"] == 1
    assert queued.visible_at / 1000 == pytest.approx(queued.sent_timestamp / 1000 + 12 * 3600 - 60, abs=5)
    record = stack.deliveries.get(message.ref)
    assert record is not None and record.state is DeliveryState.RETRYING
    # AND one second more than that is what SQS would have refused
    with pytest.raises(stack.sqs.exceptions.ClientError, match=r"(?i)visibility ?timeout"):
        stack.sqs.change_message_visibility(
            QueueUrl=stack.queue_url,
            ReceiptHandle=records[0]["receiptHandle"],
            VisibilityTimeout=int(queued.sent_timestamp / 1000 + 12 * 3600 - time.time()) + 2,
        )


def test_a_redelivered_message_of_a_delivered_postback_makes_no_second_call(stack: Stack, receiver: Receiver) -> None:
    # GIVEN a postback delivered, whose answer to Lambda was lost (nothing deleted)
    stack.queue([f"{receiver.url}/once"])
    records = stack.receive(1)
    stack.invoke(records, delete=False)
    stack.expire_visibility(records)
    # WHEN its message comes back
    again = stack.receive(1, wait_s=5)
    failed = stack.invoke(again)
    # THEN it is dropped without calling the endpoint again
    assert again[0]["attributes"]["ApproximateReceiveCount"] == "2"
    assert failed == set()
    assert len(receiver.hits("/once")) == 1
    assert stack.receive(1) == []


def test_a_crash_mid_batch_loses_nothing_and_calls_nothing_twice(
    stack: Stack, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a dispatcher whose sender breaks after 3 sends
    messages = stack.queue([f"{receiver.url}/pb/{n}" for n in range(10)])
    dispatcher = stack.dispatcher
    real_sender = dispatcher._sender
    sent = 0

    class BreakingSender:
        def send(self, message: PostbackMessage, *, headers: dict[str, str] | None = None) -> SendResult:
            nonlocal sent
            sent += 1
            if sent > 3:
                raise RuntimeError("the function is going down")
            return real_sender.send(message, headers=headers)

    monkeypatch.setattr(dispatcher, "_sender", BreakingSender())
    records = stack.receive(10)
    # WHEN the batch runs: the unsent records are reported failed; and the invocation dies before
    # Lambda reads the answer (nothing deleted), so every message comes back
    failed = stack.invoke(records, delete=False)
    assert len(failed) == 7
    monkeypatch.setattr(dispatcher, "_sender", real_sender)
    stack.expire_visibility(records)
    again = stack.receive(10, wait_s=5)
    assert stack.invoke(again) == set()
    # THEN every postback reached its endpoint exactly once and is delivered
    for n, message in enumerate(messages):
        assert len(receiver.hits(f"/pb/{n}")) == 1
        record = stack.deliveries.get(message.ref)
        assert record is not None
        assert record.state is DeliveryState.DELIVERED
    assert stack.receive(1) == []


def test_the_sample_event_is_dispatched(stack: Stack, receiver: Receiver) -> None:
    # GIVEN the sample SQS event of events/, pointed at this test's receiver
    event = json.loads((EVENTS / "dispatch_batch.json").read_text())
    for record in event["Records"]:
        record["body"] = record["body"].replace("http://127.0.0.1:3001", receiver.url)
    # WHEN the handler gets it (the second record, a 3rd receive, is read from the log first)
    failed = stack.invoke(event["Records"], delete=False)
    # THEN both postbacks were delivered: a GET and a form POST
    assert failed == set()
    assert {(h.method, h.path) for h in receiver.hits()} == {("GET", "/postback"), ("POST", "/lead")}
    (post,) = receiver.hits("/lead")
    assert post.body == b"cid=c124&offer=89"
