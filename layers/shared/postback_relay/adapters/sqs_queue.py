"""The postback queue on SQS (ports.PostbackQueue): one message per postback, JSON body."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from postback_relay.domain.delivery import PostbackMessage

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

BATCH_LIMIT = 10  # SendMessageBatch takes at most 10 entries

# Standard logging, as every adapter: the handlers' Powertools Logger formats this tree.
logger = logging.getLogger(__name__)


class SqsPostbackQueue:
    """Sends postback messages with SendMessageBatch, 10 at a time.

    Entries SQS refuses (or a whole call that fails) are tried once more; what is still
    refused is returned to the caller.
    """

    def __init__(self, queue_url: str, *, client: SQSClient) -> None:
        self._queue_url = queue_url
        self._client: SQSClient = client

    def send(self, messages: Sequence[PostbackMessage]) -> list[PostbackMessage]:
        refused: list[PostbackMessage] = []
        for start in range(0, len(messages), BATCH_LIMIT):
            group = list(messages[start : start + BATCH_LIMIT])
            still_refused = self._send_group(group)
            if still_refused:
                still_refused = self._send_group(still_refused)
            refused.extend(still_refused)
        return refused

    def _send_group(self, group: list[PostbackMessage]) -> list[PostbackMessage]:
        # Entry IDs are positions: unique within the call whatever the messages hold.
        entries: list[SendMessageBatchRequestEntryTypeDef] = [
            {"Id": str(position), "MessageBody": message.model_dump_json()} for position, message in enumerate(group)
        ]
        try:
            answer = self._client.send_message_batch(QueueUrl=self._queue_url, Entries=entries)
        except (ClientError, BotoCoreError) as exc:
            logger.warning("SQS refused a batch of postbacks", extra={"entries": len(group), "error": str(exc)})
            return group
        failed = answer.get("Failed", [])
        if failed:
            codes = sorted({entry["Code"] for entry in failed})
            logger.warning("SQS refused postbacks", extra={"entries": len(failed), "codes": codes})
        return [group[int(entry["Id"])] for entry in failed]
