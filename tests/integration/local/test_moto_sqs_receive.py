"""Two pollers never take one message within its visibility timeout, as SQS promises for a
receive: moto 5.x looks for a visible message and marks it received without a lock, and the
local poller's two threads once handled a message twice. `postback_ops.local.moto_patches`
holds the queue's lock over a receive (tests/conftest.py and the local stack apply it)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from race_support import all_at_once

MESSAGES = 400
RECEIVERS = 4


@pytest.fixture
def sqs() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("sqs", region_name="eu-west-1")


def test_receivers_at_once_never_take_the_same_message(sqs: Any) -> None:
    # GIVEN a queue of 400 messages and four receivers, switching as often as Python allows
    url = sqs.create_queue(QueueName="q", Attributes={"VisibilityTimeout": "300"})["QueueUrl"]
    for start in range(0, MESSAGES, 10):
        sqs.send_message_batch(
            QueueUrl=url, Entries=[{"Id": str(n), "MessageBody": f"m{n}"} for n in range(start, start + 10)]
        )
    taken: Counter[str] = Counter()
    lock = threading.Lock()

    def receive(_: int) -> None:
        while True:
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
            if not messages:
                return
            with lock:
                taken.update(m["Body"] for m in messages)

    all_at_once(receive, RECEIVERS)

    # THEN every message was taken, and once (each is invisible for 300 s after its receive)
    assert sorted(taken) == sorted(f"m{n}" for n in range(MESSAGES))
    assert {body: n for body, n in taken.items() if n > 1} == {}
