"""SQS's 12 hours of visibility count from the receipt, not from the send: the dispatch handler
bounds the receipt by its invocation's start less the batching window (issue 24)."""

from __future__ import annotations

import time
from typing import Any

from integration.test_dispatch_handler import FakeLambdaContext
from template_support import TEMPLATE

import dispatch_handler
from postback_ops.template import template_value
from postback_relay.domain.records import SendResult
from postback_relay.services.dispatch import Dispatcher

HOUR = 3600


def sqs_record(body: str, *, sent_at: float) -> dict[str, Any]:
    millis = str(int(sent_at * 1000))
    return {
        "messageId": "m1",
        "receiptHandle": "h1",
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": millis,
            "ApproximateFirstReceiveTimestamp": millis,
        },
        "eventSource": "aws:sqs",
    }


def test_a_message_sent_long_ago_is_hidden_for_its_scheduled_wait(
    dispatcher: Dispatcher, sender: Any, retries: Any, clock: Any, new_message: Any
) -> None:
    # GIVEN SQS refusing the delayed copy, and a message sent 13 hours ago (replayed, or its
    # chain of copies refused) that this invocation has just received
    clock.now = time.time()
    retries.refuse_requeue = True
    message = new_message(1)
    sender.answer(message.url, SendResult(503, 5, "busy", retry_after_s=2 * HOUR))
    record = sqs_record(message.model_dump_json(), sent_at=clock.now - 13 * HOUR)
    # WHEN the handler dispatches it and its attempt asks for 2 hours
    answer = dispatch_handler.lambda_handler({"Records": [record]}, FakeLambdaContext(), service=dispatcher)
    # THEN it stays on the queue hidden for its 2 hours: the 12 hours count from this receipt,
    # not from the send (which would leave nothing: back after the queue's 180 s)
    assert answer["batchItemFailures"] == [{"itemIdentifier": "m1"}]
    assert retries.delays == [("h1", 2 * HOUR)]


def test_the_handler_knows_the_mappings_batching_window() -> None:
    # GIVEN the dispatch function in the template
    dispatch = TEMPLATE["Resources"]["DispatchFunction"]["Properties"]
    # WHEN its batching window setting and its SQS mapping's window are compared
    # THEN they are the same value (the receipt is bounded by the invocation less that window)
    window = dispatch["Events"]["Postbacks"]["Properties"]["MaximumBatchingWindowInSeconds"]
    setting = dispatch["Environment"]["Variables"]["BATCHING_WINDOW_S"]
    assert str(setting) == str(window) or setting == window
    assert dispatch_handler.settings.batching_window_s == float(template_value(TEMPLATE, window))
