"""Circuit notices to the stack's alarm topic (SNS): ports.Notifier.

One Publish per notice, with a short subject (what e-mail subscribers see first) and the
notice's text. The endpoint is `scheme://host:port` only: paths and queries carry the
affiliates' values and never reach the topic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from postback_relay.domain.errors import InfrastructureError
from postback_relay.domain.notices import CircuitNotice

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient


class SnsNotifier:
    def __init__(self, topic_arn: str, *, client: SNSClient | None = None) -> None:
        self._topic_arn = topic_arn
        self._client: SNSClient = client or boto3.client("sns")

    def notify(self, notice: CircuitNotice) -> None:
        try:
            self._client.publish(
                TopicArn=self._topic_arn,
                Subject=notice.subject,
                Message=notice.text,
                MessageAttributes={
                    "kind": {"DataType": "String", "StringValue": f"circuit_{notice.change.value}"},
                    "endpoint": {"DataType": "String", "StringValue": notice.endpoint},
                },
            )
        except (ClientError, BotoCoreError) as exc:
            raise InfrastructureError(f"Publishing the circuit notice for {notice.endpoint} failed: {exc}") from exc
