"""The local SQS poller does with the dispatcher's answers what Lambda's event source mapping does."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from postback_ops.local import resources
from postback_ops.local.poller import EventSourceMapping, SqsPoller, failed_ids_from, mapping_for
from postback_ops.local.runtime import FunctionSpec, LocalFunction
from postback_ops.template import load_template, parameter_defaults, template_value

REGION = "eu-west-1"


class Queues:
    def __init__(self, sqs: Any, *, visibility_timeout: int = 30, max_receive_count: int = 50) -> None:
        self.sqs = sqs
        self.dlq_url = sqs.create_queue(QueueName="dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=self.dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.url = sqs.create_queue(
            QueueName="postbacks",
            Attributes={
                "VisibilityTimeout": str(visibility_timeout),
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count}),
            },
        )["QueueUrl"]
        self.arn = sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def send(self, *bodies: str) -> None:
        for body in bodies:
            self.sqs.send_message(QueueUrl=self.url, MessageBody=body)

    def counts(self, url: str | None = None) -> tuple[int, int]:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url or self.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


@pytest.fixture
def sqs() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("sqs", region_name=REGION)


class RecordingFunction:
    """A dispatcher stand-in: records each event and answers what the test says."""

    def __init__(self, answer: Any = None, *, fail_bodies: frozenset[str] = frozenset()) -> None:
        self.events: list[dict[str, Any]] = []
        self.answer = answer
        self.fail_bodies = fail_bodies

    def __call__(self, event: dict[str, Any]) -> Any:
        self.events.append(event)
        if isinstance(self.answer, Exception):
            raise self.answer
        if self.fail_bodies:
            failed = [r["messageId"] for r in event["Records"] if r["body"] in self.fail_bodies]
            return {"batchItemFailures": [{"itemIdentifier": m} for m in failed]}
        return self.answer


def _poller(queues: Queues, function: RecordingFunction, **mapping: Any) -> SqsPoller:
    settings = {"batch_size": 10, "batching_window_s": 0.0, "report_batch_item_failures": True, **mapping}
    return SqsPoller(
        queues.sqs,
        EventSourceMapping(queue_url=queues.url, queue_arn=queues.arn, **settings),
        function,
        region=REGION,
        max_wait_s=0,
    )


def test_records_have_the_shape_lambda_gives_them(sqs: Any) -> None:
    # GIVEN one message on the queue
    queues = Queues(sqs)
    queues.send('{"delivery_id": "d1"}')
    function = RecordingFunction()

    # WHEN the poller polls once
    _poller(queues, function).poll_once()

    # THEN the function got one Lambda SQS record with the message's body and attributes
    (record,) = function.events[0]["Records"]
    assert record["body"] == '{"delivery_id": "d1"}'
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == queues.arn
    assert record["awsRegion"] == REGION
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert {"messageId", "receiptHandle", "md5OfBody", "messageAttributes"} <= record.keys()


def test_only_the_successes_are_deleted(sqs: Any) -> None:
    # GIVEN three messages, and a function that reports the second as a batch item failure
    queues = Queues(sqs)
    queues.send("ok-1", "retry-me", "ok-2")
    function = RecordingFunction(fail_bodies=frozenset({"retry-me"}))

    # WHEN the poller polls once
    outcome = _poller(queues, function).poll_once()

    # THEN the two successes are gone and the failure stays in flight until its visibility ends
    assert outcome is not None
    assert len(outcome.records) == 3
    assert [r["body"] for r in outcome.succeeded] == ["ok-1", "ok-2"]
    assert queues.counts() == (0, 1)


def test_a_function_that_raises_leaves_the_whole_batch(sqs: Any) -> None:
    # GIVEN two messages and a function that crashes
    queues = Queues(sqs)
    queues.send("a", "b")
    function = RecordingFunction(RuntimeError("boom"))

    # WHEN the poller polls once
    outcome = _poller(queues, function).poll_once()

    # THEN nothing is deleted and the error is reported
    assert outcome is not None
    assert outcome.error is not None
    assert "boom" in outcome.error
    assert queues.counts() == (0, 2)


def test_an_unreadable_answer_fails_the_whole_batch(sqs: Any) -> None:
    # GIVEN a function that names a record not in the batch
    queues = Queues(sqs)
    queues.send("a", "b")
    function = RecordingFunction({"batchItemFailures": [{"itemIdentifier": "not-a-message-id"}]})

    # WHEN the poller polls once
    outcome = _poller(queues, function).poll_once()

    # THEN nothing is deleted, as Lambda does
    assert outcome is not None
    assert outcome.error is not None
    assert queues.counts() == (0, 2)


def test_without_reportbatchitemfailures_a_return_deletes_everything(sqs: Any) -> None:
    # GIVEN a mapping without ReportBatchItemFailures and a function answering failures anyway
    queues = Queues(sqs)
    queues.send("a", "b")
    function = RecordingFunction(fail_bodies=frozenset({"a"}))

    # WHEN the poller polls once
    _poller(queues, function, report_batch_item_failures=False).poll_once()

    # THEN the answer is ignored and the batch deleted
    assert queues.counts() == (0, 0)


def test_a_message_that_keeps_failing_is_redriven_to_the_dlq(sqs: Any) -> None:
    # GIVEN a queue redriving after 2 receives, visible again at once, and a function failing every record
    queues = Queues(sqs, visibility_timeout=0, max_receive_count=2)
    queues.send("poison")
    function = RecordingFunction(fail_bodies=frozenset({"poison"}))
    poller = _poller(queues, function)

    # WHEN the poller polls three times
    outcomes = [poller.poll_once() for _ in range(3)]

    # THEN the function saw it twice and the third receive moved it to the dead-letter queue
    assert [o is not None for o in outcomes] == [True, True, False]
    assert [e["Records"][0]["attributes"]["ApproximateReceiveCount"] for e in function.events] == ["1", "2"]
    assert queues.counts(queues.dlq_url) == (1, 0)


def test_the_batching_window_fills_a_batch_beyond_one_receive(sqs: Any) -> None:
    # GIVEN 15 messages and a batch size of 15 with a batching window
    queues = Queues(sqs)
    queues.send(*(f"m{i}" for i in range(15)))
    function = RecordingFunction()

    # WHEN the poller polls once
    _poller(queues, function, batch_size=15, batching_window_s=1.0).poll_once()

    # THEN one invocation got all 15 (SQS gives at most 10 per receive)
    assert len(function.events) == 1
    assert sorted(r["body"] for r in function.events[0]["Records"]) == sorted(f"m{i}" for i in range(15))


def test_the_poller_threads_drain_the_queue_until_stopped(sqs: Any) -> None:
    # GIVEN 25 messages and a poller running in two threads
    queues = Queues(sqs)
    queues.send(*(f"m{i}" for i in range(25)))
    seen: list[str] = []
    done = __import__("threading").Event()

    def function(event: dict[str, Any]) -> None:
        seen.extend(r["body"] for r in event["Records"])
        if len(seen) >= 25:
            done.set()

    poller = SqsPoller(
        queues.sqs,
        EventSourceMapping(queue_url=queues.url, queue_arn=queues.arn, concurrency=2),
        function,
        region=REGION,
        max_wait_s=0,
    )

    # WHEN it runs until every message was handled and deleted (the last batch is deleted just
    # after the function returns, so wait for the queue itself rather than for the function)
    poller.start()
    try:
        assert done.wait(timeout=20)
        deadline = time.monotonic() + 10
        while queues.counts() != (0, 0) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        poller.stop()

    # THEN each message was handled once and the queue is empty
    assert sorted(seen) == sorted(f"m{i}" for i in range(25))
    assert queues.counts() == (0, 0)


def test_the_mapping_comes_from_the_template() -> None:
    # GIVEN the dispatcher as the template declares it
    template = load_template()
    props = template["Resources"]["DispatchFunction"]["Properties"]
    spec = FunctionSpec("DispatchFunction", Path("."), "m", "h", {}, 30, 256, props["Events"])
    function = LocalFunction(spec, lambda e, c: None, region=REGION, account="123456789012")
    stack = resources.LocalStack(
        stack_name="s", refs={"PostbackQueue": "url://q"}, attrs={("PostbackQueue", "Arn"): "arn:q"}
    )

    # WHEN its event source mappings are read
    (mapping,) = mapping_for(
        function,
        resolve=lambda v: stack.resolve(v, parameter_defaults(template)),
        queue_url_for_arn={"arn:q": "url://q"}.__getitem__,
        concurrency=3,
    )

    # THEN batch size, window and partial failures are the template's
    sqs_event = next(e for e in props["Events"].values() if e["Type"] == "SQS")["Properties"]
    assert mapping.queue_url == "url://q"
    assert mapping.batch_size == template_value(template, sqs_event["BatchSize"])
    assert mapping.batching_window_s == template_value(template, sqs_event["MaximumBatchingWindowInSeconds"])
    assert mapping.report_batch_item_failures is True
    assert mapping.concurrency == 3


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (None, set()),
        ({}, set()),
        ({"batchItemFailures": []}, set()),
        ({"batchItemFailures": [{"itemIdentifier": "m1"}]}, {"m1"}),
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, {"m1", "m2"}),
        ({"batchItemFailures": [{"itemIdentifier": None}]}, {"m1", "m2"}),
        ({"batchItemFailures": "m1"}, {"m1", "m2"}),
        ("oops", {"m1", "m2"}),
    ],
)
def test_batch_answers_are_read_like_lambda_reads_them(answer: Any, expected: set[str]) -> None:
    # GIVEN a batch of two records and an answer
    records = [{"messageId": "m1"}, {"messageId": "m2"}]

    # WHEN the answer is read
    # THEN the records left on the queue are the expected ones
    assert failed_ids_from(answer, records) == expected
