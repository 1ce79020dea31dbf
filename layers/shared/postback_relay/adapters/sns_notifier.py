"""Circuit notices to the stack's alarm topic (SNS): ports.Notifier.

One Publish per notice, with a short subject (what e-mail subscribers see first) and the
notice's text. The endpoint is `scheme://host:port` only: paths and queries carry the
affiliates' values and never reach the topic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from postback_relay.domain.errors import InfrastructureError
from postback_relay.domain.notices import CircuitNotice

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient


# The dispatcher publishes between a postback's send and its log write: a hanging SNS must not
# hold that write past the Lambda timeout (the postback would be sent again). The wiring builds
# the notices' client on the functions' one AWS budget (1 s connect, 2 s read: wiring.aws_config)
# with NOTICE_ATTEMPTS attempts instead of three: at most NOTICE_BUDGET_S per notice.
NOTICE_CONNECT_TIMEOUT_S = 1
NOTICE_READ_TIMEOUT_S = 2
NOTICE_ATTEMPTS = 2
NOTICE_BUDGET_S = NOTICE_ATTEMPTS * (NOTICE_CONNECT_TIMEOUT_S + NOTICE_READ_TIMEOUT_S)


class SnsNotifier:
    def __init__(self, topic_arn: str, *, client: SNSClient) -> None:
        self._topic_arn = topic_arn
        self._client: SNSClient = client

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
