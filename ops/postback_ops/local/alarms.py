"""The local stack's view of its alarm topic: every message published there, in its log.

On AWS the alarm topic mails ops (AlarmEmail). Locally, moto's SNS topic gets an SQS queue
subscribed to it, and a thread prints what arrives: the circuit notices the dispatcher
publishes when an endpoint's circuit opens or closes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

PREFIX = "alarm     "


class AlarmLog:
    def __init__(
        self, sns: SNSClient, sqs: SQSClient, topic_arn: str, *, queue_name: str, say: Callable[[str], None]
    ) -> None:
        self._sqs = sqs
        self._say = say
        self._stopping = threading.Event()
        self._queue_url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=self._queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
        self._thread = threading.Thread(target=self._run, name="alarm-log", daemon=True)

    def start(self) -> AlarmLog:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                answer = self._sqs.receive_message(QueueUrl=self._queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            except Exception:  # noqa: BLE001 - the log must outlive a hiccup (and moto's shutdown)
                self._stopping.wait(1)
                continue
            for message in answer.get("Messages", []):
                self._say(describe(message.get("Body", "")))
                try:
                    self._sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"])
                except Exception:  # noqa: BLE001, S112 - printed already; a second print is harmless
                    continue


def describe(body: str) -> str:
    """The notification's subject on the first line, its text indented below."""
    try:
        envelope: Any = json.loads(body)
        subject = str(envelope.get("Subject") or "(no subject)")
        text = str(envelope.get("Message") or "")
    except (ValueError, AttributeError):
        subject, text = "(not an SNS notification)", body
    indent = " " * len(PREFIX)
    return "\n".join([PREFIX + subject, *(indent + line for line in text.splitlines())])
