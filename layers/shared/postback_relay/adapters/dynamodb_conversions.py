"""ConversionsTable: every accepted conversion with its result (ports.ConversionLog).

The conditional PutItem that records a conversion is also the idempotency guard: a repeat of
`(transaction_id, event)` fails the condition and DynamoDB hands back the first item
(ReturnValuesOnConditionCheckFailure), so a repeat costs one write request and no read.

Items stay under 1 KB (one write unit): the link and the tracker are not kept, the reason
sentence is cut, and the result JSON leaves out what the item already holds.

`delivery_ids` (the queued postbacks' IDs, space-joined) is how `postback deliveries
--transaction` finds a conversion's deliveries without an index on DeliveriesTable. It keeps
as many IDs as fit under 1 KB: all of them unless a conversion fires about ten postbacks with
every other field at its longest; the rest are then listed only by affiliate.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from postback_relay.domain.conversion import Conversion, ConversionResult
from postback_relay.domain.errors import InfrastructureError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, WriteRequestTypeDef

CONDITION_FAILED = "ConditionalCheckFailedException"
TTL_DAYS = 400
MAX_REASON_CHARS = 240
BATCH_WRITE_LIMIT = 25
DELIVERY_IDS = "delivery_ids"
# One write unit is 1 KB; a byte of margin for the size estimate's rounding of numbers.
MAX_ITEM_BYTES = 1023


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def result_to_json(result: ConversionResult) -> str:
    """The result as the item keeps it: without what the item holds anyway."""
    document = result.model_dump(mode="json", exclude={"transaction_id", "event", "delivery_ids"}, exclude_none=True)
    reason = document.get("reason")
    if isinstance(reason, str) and len(reason) > MAX_REASON_CHARS:
        document["reason"] = reason[: MAX_REASON_CHARS - 1] + "…"
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def conversion_item(
    conversion: Conversion, result: ConversionResult, *, received_at: datetime
) -> dict[str, AttributeValueTypeDef]:
    """The item recording an accepted conversion and its result."""
    item: dict[str, AttributeValueTypeDef] = {
        "conversion_id": {"S": conversion.conversion_id},
        "transaction_id": {"S": conversion.transaction_id},
        "event": {"S": conversion.event.value},
        "offer_id": {"S": conversion.offer.id},
        "offer_type": {"S": conversion.offer.type.value},
        "amount_text": {"S": conversion.amount_text or str(conversion.amount)},
        "currency": {"S": conversion.currency},
        "occurred_at": {"S": _iso(conversion.occurred_at)},
        "received_at": {"S": _iso(received_at)},
        "result": {"S": result_to_json(result)},
        "expires_at": {"N": str(int((received_at + timedelta(days=TTL_DAYS)).timestamp()))},
    }
    if result.affiliate_id is not None:
        item["affiliate_id"] = {"S": result.affiliate_id}
    _with_delivery_ids(item, result.delivery_ids)
    return item


def item_bytes(item: dict[str, AttributeValueTypeDef]) -> int:
    """The item's size as DynamoDB bills it (names + values; these items hold only S and N),
    numbers counted at their upper bound: one byte per two digits, plus one."""
    size = 0
    for name, value in item.items():
        size += len(name.encode("utf-8"))
        if "S" in value:
            size += len(value["S"].encode("utf-8"))
        else:
            size += (len(value["N"].lstrip("-").replace(".", "")) + 1) // 2 + 1
    return size


def _with_delivery_ids(item: dict[str, AttributeValueTypeDef], delivery_ids: Sequence[str]) -> None:
    room = MAX_ITEM_BYTES - item_bytes(item) - len(DELIVERY_IDS)
    kept: list[str] = []
    for delivery_id in delivery_ids:
        if len(" ".join([*kept, delivery_id])) > room:
            break
        kept.append(delivery_id)
    if kept:
        item[DELIVERY_IDS] = {"S": " ".join(kept)}


def delivery_ids_of(item: Any) -> list[str]:
    """The delivery IDs a ConversionsTable item keeps (empty when it queued nothing)."""
    value = item.get(DELIVERY_IDS, {}).get("S", "")
    return str(value).split()


def _result_of(item: dict[str, Any]) -> ConversionResult:
    document = json.loads(item["result"]["S"])
    document["transaction_id"] = item["transaction_id"]["S"]
    document["event"] = item["event"]["S"]
    return ConversionResult.model_validate(document)


class DynamoConversionLog:
    """The conversion records in DynamoDB."""

    def __init__(
        self,
        table_name: str,
        *,
        client: DynamoDBClient | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._table = table_name
        self._client: DynamoDBClient = client or boto3.client("dynamodb")
        self._clock = clock

    def record(self, conversion: Conversion, result: ConversionResult) -> ConversionResult | None:
        item = conversion_item(conversion, result, received_at=self._clock())
        try:
            self._client.put_item(
                TableName=self._table,
                Item=item,
                ConditionExpression="attribute_not_exists(conversion_id)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == CONDITION_FAILED:
                first = cast("dict[str, Any] | None", exc.response.get("Item"))
                if first is None:
                    # Only when ALL_OLD was not honoured; one read then, rather than a wrong answer.
                    return self._read_result(conversion.conversion_id)
                return _result_of(first)
            raise InfrastructureError(f"Recording conversion {conversion.conversion_id} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise InfrastructureError(f"Recording conversion {conversion.conversion_id} failed: {exc}") from exc
        return None

    def _read_result(self, conversion_id: str) -> ConversionResult:
        try:
            answer = self._client.get_item(
                TableName=self._table, Key={"conversion_id": {"S": conversion_id}}, ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as exc:
            raise InfrastructureError(f"Reading conversion {conversion_id} failed: {exc}") from exc
        if "Item" not in answer:
            raise InfrastructureError(f"Conversion {conversion_id} was recorded and is gone.")
        return _result_of(answer["Item"])

    def forget(self, conversion_ids: Sequence[str]) -> None:
        unique = list(dict.fromkeys(conversion_ids))
        for start in range(0, len(unique), BATCH_WRITE_LIMIT):
            requests: list[WriteRequestTypeDef] = [
                {"DeleteRequest": {"Key": {"conversion_id": {"S": cid}}}}
                for cid in unique[start : start + BATCH_WRITE_LIMIT]
            ]
            self._delete(requests)

    def _delete(self, requests: list[WriteRequestTypeDef]) -> None:
        # DynamoDB may leave some deletes unprocessed under throttling: try those twice more.
        for _ in range(3):
            try:
                answer = self._client.batch_write_item(RequestItems={self._table: requests})
            except (ClientError, BotoCoreError) as exc:
                raise InfrastructureError(f"Forgetting {len(requests)} conversion(s) failed: {exc}") from exc
            unprocessed = answer.get("UnprocessedItems", {}).get(self._table, [])
            requests = cast("list[WriteRequestTypeDef]", unprocessed)
            if not requests:
                return
        raise InfrastructureError(f"Forgetting conversions failed: {len(requests)} delete(s) left unprocessed.")
