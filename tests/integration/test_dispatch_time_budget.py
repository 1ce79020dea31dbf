"""A slow AWS never pushes a dispatch batch past its timeout, and never makes a postback go
twice (issue 24): the dispatcher starts no send with less of the invocation left than a send
and its record write need, and reports the rest as batch item failures.

DynamoDB and SQS are moto, each call slowed by a botocore hook; the affiliate is a real HTTP
server on 127.0.0.1. Lambda's timeout is played by the test: a context whose remaining time
runs out after TIMEOUT_S, and, as when Lambda stops a function at its timeout, an AWS call that
would complete after that is never made, and the batch's answer is lost (every record comes
back)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from integration.test_dispatch_handler import Stack

import dispatch_handler
from postback_ops.local.receiver import Receiver
from postback_relay import wiring
from postback_relay.domain.delivery import DeliveryState

TIMEOUT_S = 3.0  # the played Lambda timeout
AWS_DELAY_S = 0.4  # each DynamoDB and SQS call of the dispatcher takes this long
RECORD_BUDGET_S = 1.0  # what the dispatcher counts for one AWS call (above the delay, for load)
POSTBACKS = 24
WORKERS = 4  # six rounds of a read, a send and a write: about 5 s, past the timeout

# The played timeout is wall-clock time: `make test` runs this module alone (pyproject's `quiet`).
pytestmark = pytest.mark.quiet


@dataclass
class Invocation:
    """Lambda's side of one invocation: its deadline, and whether it ran past it."""

    timeout_s: float
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None

    @property
    def deadline(self) -> float:
        return self.started + self.timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))

    @property
    def elapsed(self) -> float:
        return (self.ended or time.monotonic()) - self.started


@dataclass(frozen=True)
class Context:
    """The Lambda context the handler gets: its remaining time is the invocation's."""

    invocation: Invocation
    function_name: str = "DispatchFunction"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:DispatchFunction"
    aws_request_id: str = "test-request"

    def get_remaining_time_in_millis(self) -> int:
        return self.invocation.get_remaining_time_in_millis()


class SlowAws:
    """Every call of the clients it is attached to takes AWS_DELAY_S; one that would complete
    after the current invocation's deadline fails instead (the function was stopped)."""

    def __init__(self) -> None:
        self.current: Invocation | None = None
        self.cut_off = 0
        self._lock = threading.Lock()

    def attach(self, client: Any) -> Any:
        # First, before moto answers the call (moto is a before-send handler itself).
        client.meta.events.register_first("before-send", self._before_send)
        return client

    def _before_send(self, **kwargs: Any) -> None:
        time.sleep(AWS_DELAY_S)
        invocation = self.current
        if invocation is not None and time.monotonic() > invocation.deadline:
            with self._lock:
                self.cut_off += 1
            raise RuntimeError("the function timed out: this call was never made")


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    monkeypatch.setattr(ThreadingHTTPServer, "request_queue_size", 64)
    with Receiver() as server:
        yield server


def run_until_drained(stack: Stack, slow: SlowAws, *, rounds: int = 12) -> list[Invocation]:
    """Lambda's loop: receive, invoke, delete what the answer did not report; an invocation
    past its timeout has no answer (its records all come back). Every record not deleted is
    made visible again at once (the visibility timeout, played fast)."""
    invocations: list[Invocation] = []
    sqs, queue_url = stack.sqs, stack.queue_url
    for _ in range(rounds):
        records = stack.receive(POSTBACKS)
        if not records:
            break
        invocation = slow.current = Invocation(TIMEOUT_S)
        answer = dispatch_handler.lambda_handler({"Records": records}, Context(invocation), service=stack.dispatcher)
        invocation.ended = time.monotonic()
        invocations.append(invocation)
        timed_out = invocation.elapsed > invocation.timeout_s
        failed = {item["itemIdentifier"] for item in answer["batchItemFailures"]}
        for record in records:
            done = not timed_out and record["messageId"] not in failed
            if done:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=record["receiptHandle"])
            else:
                sqs.change_message_visibility(
                    QueueUrl=queue_url, ReceiptHandle=record["receiptHandle"], VisibilityTimeout=0
                )
    slow.current = None
    return invocations


def test_a_slow_aws_never_holds_a_batch_past_its_timeout_nor_sends_a_postback_twice(
    aws: dict[str, str], receiver: Receiver
) -> None:
    # GIVEN the dispatcher on moto, every DynamoDB and SQS call of it taking 0.4 s, 4 workers
    # for 24 postbacks (six rounds of a read, a send and a write: about 5 s) and a 3 s timeout
    slow = SlowAws()
    settings = dispatch_handler.settings.model_copy(
        update={"connect_timeout_s": 0.5, "read_timeout_s": 0.5, "max_workers": WORKERS, "allow_loopback": True}
    )
    stack = Stack(aws, settings)
    stack.dispatcher = wiring.dispatcher(
        settings,
        dynamodb=slow.attach(boto3.client("dynamodb")),
        sqs=slow.attach(boto3.client("sqs")),
        notices=False,
        record_budget_s=RECORD_BUDGET_S,
    )
    messages = stack.queue([f"{receiver.url}/pb?n={n}" for n in range(POSTBACKS)])
    # WHEN Lambda invokes the function until the queue is drained
    invocations = run_until_drained(stack, slow)
    # THEN every postback reached the affiliate exactly once, and is logged delivered
    hits = sorted(int(hit.param("n") or -1) for hit in receiver.hits("/pb"))
    assert hits == list(range(POSTBACKS))
    states = {m.delivery_id: getattr(stack.deliveries.get(m.ref), "state", None) for m in messages}
    assert set(states.values()) == {DeliveryState.DELIVERED}
    # AND no invocation ran past its timeout (each left the postbacks it had no time for on
    # the queue, unsent), and no AWS call was cut off by one
    print("invocations (s):", [round(i.elapsed, 2) for i in invocations])
    assert [i for i in invocations if i.elapsed > TIMEOUT_S] == []
    assert slow.cut_off == 0
    assert len(invocations) > 1  # the budget did postpone postbacks: the test proves something
