"""The outbox's parked records on an SQS queue (OutboxParkedQueue): one message per stream
record the outbox could not read, with its keys, the reason and its raw new image, kept 14
days; the queue's alarm tells ops, `postback outbox parked` shows and re-queues them.

One SendMessage per record (a rare path): a record's image may be up to DynamoDB's 400 KB
item, so it is cut to IMAGE_CHARS (the message says so) to stay inside SQS's message size,
and a batch of ten such would pass SendMessageBatch's total size.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from postback_relay.domain.records import OutboxRecord

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

logger = logging.getLogger(__name__)

IMAGE_CHARS = 200_000  # under SQS's 256 KiB message limit, with the keys and the reason


def parked_body(record: OutboxRecord) -> str:
    """The parked message: what ops need to find, judge and fix the record."""
    return json.dumps(
        {
            "conversion_id": record.conversion_id,
            "sequence_number": record.sequence_number,
            "reason": record.unreadable or "",
            "image": record.image[:IMAGE_CHARS],
            "image_cut": len(record.image) > IMAGE_CHARS,
        }
    )


class SqsParkedRecords:
    """Parks unreadable stream records on the OutboxParkedQueue."""

    def __init__(self, queue_url: str, *, client: SQSClient) -> None:
        self._queue_url = queue_url
        self._client: SQSClient = client

    def park(self, records: Sequence[OutboxRecord]) -> list[OutboxRecord]:
        left: list[OutboxRecord] = []
        for record in records:
            try:
                self._client.send_message(QueueUrl=self._queue_url, MessageBody=parked_body(record))
            except (ClientError, BotoCoreError) as exc:
                logger.warning(
                    "SQS refused a parked record", extra={"conversion_id": record.conversion_id, "error": str(exc)}
                )
                left.append(record)
        return left
