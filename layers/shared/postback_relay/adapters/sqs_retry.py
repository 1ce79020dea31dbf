"""The dispatcher's hold on SQS: queue a delayed copy of a waiting postback (SendMessage with
DelaySeconds: a delayed message is not in flight), or, when that fails, hide the received
message until its next attempt (ChangeMessageVisibility); and park a postback failed for good
on the DLQ with its reason."""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from postback_relay.domain.errors import InfrastructureError

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef

MAX_VISIBILITY_S = 43_200  # SQS's limit (12 hours)
MAX_DELAY_SECONDS = 900  # SQS's DelaySeconds limit (15 minutes)


class SqsRetryControl:
    def __init__(self, queue_url: str, dead_letter_queue_url: str, *, client: SQSClient) -> None:
        self._queue_url = queue_url
        self._dead_letter_queue_url = dead_letter_queue_url
        self._client: SQSClient = client

    def requeue(self, body: str, *, delay_s: int) -> None:
        try:
            self._client.send_message(
                QueueUrl=self._queue_url, MessageBody=body, DelaySeconds=max(0, min(delay_s, MAX_DELAY_SECONDS))
            )
        except (ClientError, BotoCoreError) as exc:
            raise InfrastructureError(f"Queueing the next copy of a postback failed: {exc}") from exc

    def delay(self, receipt_handle: str, seconds: int) -> None:
        try:
            self._client.change_message_visibility(
                QueueUrl=self._queue_url,
                ReceiptHandle=receipt_handle,
                VisibilityTimeout=max(0, min(seconds, MAX_VISIBILITY_S)),
            )
        except (ClientError, BotoCoreError) as exc:
            raise InfrastructureError(f"Delaying a postback message failed: {exc}") from exc

    def dead_letter(self, body: str, *, reason: str, delivery_id: str | None) -> None:
        attributes: dict[str, MessageAttributeValueTypeDef] = {
            "reason": {"DataType": "String", "StringValue": reason[:256] or "failed"}
        }
        if delivery_id:
            attributes["delivery_id"] = {"DataType": "String", "StringValue": delivery_id}
        try:
            self._client.send_message(
                QueueUrl=self._dead_letter_queue_url, MessageBody=body, MessageAttributes=attributes
            )
        except (ClientError, BotoCoreError) as exc:
            raise InfrastructureError(f"Sending a failed postback to the DLQ failed: {exc}") from exc
