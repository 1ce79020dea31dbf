"""ConversionsTable: every accepted conversion with its result (ports.ConversionLog), and the
outbox of its postbacks.

The conditional PutItem that records a conversion is also the idempotency guard: a repeat of
`(transaction_id, event)` fails the condition and DynamoDB hands back the first item
(ReturnValuesOnConditionCheckFailure), so a repeat costs one write request and no read. A
refused put writes nothing, so it adds no record to the table's stream either.

The item is the outbox: `postbacks` holds the conversion's rendered postback messages, and
the table's stream (INSERT, NEW_IMAGE) hands each new item to the outbox function, which
queues them (`messages_of_item` rebuilds them exactly). To keep the item small, each message
is kept without its default values and without what the item holds anyway (transaction,
event, offer, affiliate, and `created_at` = `received_at`): a GET postback costs its
delivery ID and its URL. A conversion that fires nothing carries no `postbacks`, and the
stream filter leaves it out.

Items stay under 1 KB (one write unit) for a conversion firing one postback: the link is not
kept (only its `trID_..._trID` tracker, which a later chargeback or refund fires with: the
`original` read; a tracker of a few hundred characters can take the item past 1 KB), nor the
offer's name, the reason sentence is cut, and the result JSON leaves out what the item
already holds. Each postback's message is at most 16 KB (services.ingest.MAX_MESSAGE_BYTES:
ingest refuses a longer rendering), so even 20 postbacks stay far under DynamoDB's 400 KB item limit.

`delivery_ids` (the queued postbacks' IDs, space-joined) is how `postback deliveries
--transaction` finds a conversion's deliveries without an index on DeliveriesTable. An item
with an outbox keeps all of them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from postback_relay.adapters.dynamodb import (
    batch_get,
    conditional_write,
    expiry,
    failures_as,
    utc_exact,
    utc_now,
    utc_seconds,
)
from postback_relay.domain.conversion import CONVERSION_RETENTION_DAYS, Conversion, ConversionResult, Offer
from postback_relay.domain.delivery import DeliveryRef, PostbackMessage
from postback_relay.domain.errors import InfrastructureError
from postback_relay.domain.events import ORIGINAL_EVENTS, Event, OfferType
from postback_relay.domain.records import FirstRecord, OriginalConversion, OutboxRecord
from postback_relay.domain.repeats import (
    content_digests,
    differing_fields,
    digests_of_text,
    digests_of_values,
    digests_text,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

TTL_DAYS = CONVERSION_RETENTION_DAYS
MAX_REASON_CHARS = 190  # the record of a conversion stays one write unit (1 KB)
DELIVERY_IDS = "delivery_ids"
CONTENT = "content"  # a digest per content field (domain.repeats), to tell a differing repeat
UNREADABLE_REASON_CHARS = 300  # why a stream record's postbacks cannot be read, as the outbox parks it
POSTBACKS = "postbacks"  # the outbox: the postback messages the stream hands to the outbox function
# Message fields the item carries in its own attributes: left out of each kept message.
_SHARED_FIELDS = {
    "transaction_id": "transaction_id",
    "event": "event",
    "offer_id": "offer_id",
    "affiliate_id": "affiliate_id",
    "created_at": "received_at",
}
# One write unit is 1 KB; a byte of margin for the size estimate's rounding of numbers.
MAX_ITEM_BYTES = 1023


def result_to_json(result: ConversionResult) -> str:
    """The result as the item keeps it: without what the item holds anyway."""
    document = result.model_dump(mode="json", exclude={"transaction_id", "event", "delivery_ids"}, exclude_none=True)
    reason = document.get("reason")
    if isinstance(reason, str) and len(reason) > MAX_REASON_CHARS:
        document["reason"] = reason[: MAX_REASON_CHARS - 1] + "…"
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def conversion_item(
    conversion: Conversion,
    result: ConversionResult,
    *,
    received_at: datetime,
    messages: Sequence[PostbackMessage] = (),
    tracker: str | None = None,
) -> dict[str, AttributeValueTypeDef]:
    """The item recording an accepted conversion, its result and its postbacks' messages, and
    what a reversal of it needs (its offer and `tracker`)."""
    item: dict[str, AttributeValueTypeDef] = {
        "conversion_id": {"S": conversion.conversion_id},
        "transaction_id": {"S": conversion.transaction_id},
        "event": {"S": conversion.event.value},
        "occurred_at": {"S": utc_seconds(conversion.occurred_at)},
        # As the messages' `created_at` is written, so that the outbox keeps it once.
        "received_at": {"S": utc_exact(received_at)},
        "result": {"S": result_to_json(result)},
        CONTENT: {"S": digests_text(_digests_not_kept(conversion))},
        "expires_at": expiry(received_at, timedelta(days=TTL_DAYS)),
    }
    item.update(_optional_texts(conversion, tracker))
    if result.affiliate_id is not None:
        item["affiliate_id"] = {"S": result.affiliate_id}
    if messages:
        item[POSTBACKS] = {"S": _outbox_text(item, messages)}
        # The outbox already makes the item as large as its postbacks: every ID is kept.
        if result.delivery_ids:
            item[DELIVERY_IDS] = {"S": " ".join(result.delivery_ids)}
    else:
        _with_delivery_ids(item, result.delivery_ids)
    return item


def _optional_texts(conversion: Conversion, tracker: str | None) -> dict[str, AttributeValueTypeDef]:
    """The item's attributes that a conversion may leave out: its offer (a reversal whose
    original is not on record has none), tracker, original, money."""
    offer = conversion.offer
    texts = {
        "offer_id": offer.id if offer is not None else None,
        "offer_type": offer.type.value if offer is not None else None,
        "tracker": tracker,
        "original_transaction_id": conversion.original_transaction_id,
        # a registration or a trial may carry no money
        "amount_text": (conversion.amount_text or str(conversion.amount)) if conversion.amount is not None else None,
        "payout_text": (conversion.payout_text or str(conversion.payout)) if conversion.payout is not None else None,
        "currency": conversion.currency,
    }
    return {name: {"S": text} for name, text in texts.items() if text is not None}


def _outbox_text(item: dict[str, AttributeValueTypeDef], messages: Sequence[PostbackMessage]) -> str:
    kept = []
    for message in messages:
        document = message.model_dump(mode="json", exclude_defaults=True)
        for field, attribute in _SHARED_FIELDS.items():
            # Left out only when the item holds the very same text: rebuilt exactly, whatever it is.
            if field in document and document[field] == item.get(attribute, {}).get("S"):
                del document[field]
        kept.append(document)
    return json.dumps(kept, separators=(",", ":"), ensure_ascii=False)


def messages_of_item(item: Mapping[str, Any]) -> list[PostbackMessage]:
    """The postback messages a ConversionsTable item (or its stream image) holds, exactly as
    ingest rendered them; empty when the conversion fired none. Raises ValueError for an item
    whose outbox cannot be read."""
    text = item.get(POSTBACKS, {}).get("S")
    if not text:
        return []
    shared = {
        field: item[attribute]["S"] for field, attribute in _SHARED_FIELDS.items() if "S" in item.get(attribute, {})
    }
    documents = json.loads(text)
    if not isinstance(documents, list):
        raise ValueError("the item's postbacks are not a list")
    return [PostbackMessage.model_validate({**shared, **document}) for document in documents]


def outbox_record_of(record: Mapping[str, Any]) -> OutboxRecord:
    """A record of the table's stream as the outbox reads it: its sequence number and its new
    image's messages, or why they cannot be read (cut to UNREADABLE_REASON_CHARS) with the raw image
    as JSON text, to park."""
    from pydantic import ValidationError

    change = record.get("dynamodb") or {}
    image = change.get("NewImage") or {}
    conversion_id = str(image.get("conversion_id", {}).get("S", "?"))
    sequence_number = str(change.get("SequenceNumber", ""))
    try:
        messages = tuple(messages_of_item(image))
    except (ValueError, ValidationError, TypeError, AttributeError) as exc:
        raw = json.dumps(image, default=str)
        return OutboxRecord(sequence_number, conversion_id, unreadable=str(exc)[:UNREADABLE_REASON_CHARS], image=raw)
    return OutboxRecord(sequence_number, conversion_id, messages)


def delivery_refs_of(item: Mapping[str, Any]) -> list[DeliveryRef]:
    """Where the deliveries of a ConversionsTable item are logged (affiliate, creation time,
    ID): its kept messages' own keys. Empty for a record that keeps no messages (no postback,
    or written before the outbox and the re-keyed log: its deliveries are in the retired
    table, docs/architecture.md)."""
    return [message.ref for message in messages_of_item(item)]


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


# Content fields the item keeps as values (domain.repeats names -> attributes): compared on
# those; every other content field by the digest `content` keeps.
_KEPT_CONTENT = {"amount": "amount_text", "currency": "currency", "offer.id": "offer_id", "offer.type": "offer_type"}


def _digests_not_kept(conversion: Conversion) -> dict[str, str]:
    return {name: digest for name, digest in content_digests(conversion).items() if name not in _KEPT_CONTENT}


def _first_record(item: dict[str, Any], conversion: Conversion) -> FirstRecord:
    """The first result of a repeat, and the fields the repeat changes: those the item keeps,
    on their values; the others on their digests (a record written before the digests were
    kept is compared on its values alone)."""
    again = content_digests(conversion)
    first = digests_of_values({name: item.get(attribute, {}).get("S") for name, attribute in _KEPT_CONTENT.items()})
    compared: set[str] = set(_KEPT_CONTENT)
    if CONTENT in item:
        first.update(digests_of_text(item[CONTENT]["S"]))
        compared |= set(again) | set(first)
    return FirstRecord(_result_of(item), differing_fields(first, again, only=compared))


def original_of(item: Mapping[str, Any]) -> OriginalConversion:
    """What a reversal takes from a ConversionsTable item."""

    def text(name: str) -> str | None:
        value = item.get(name, {}).get("S")
        return str(value) if value is not None else None

    offer_id, offer_type = text("offer_id"), text("offer_type")
    offer = Offer(id=offer_id, type=OfferType(offer_type)) if offer_id is not None and offer_type is not None else None
    return OriginalConversion(
        transaction_id=item["transaction_id"]["S"],
        event=Event(item["event"]["S"]),
        affiliate_id=text("affiliate_id"),
        offer=offer,
        tracker=text("tracker"),
    )


def _result_of(item: dict[str, Any]) -> ConversionResult:
    document = json.loads(item["result"]["S"])
    document["transaction_id"] = item["transaction_id"]["S"]
    document["event"] = item["event"]["S"]
    # The JSON leaves out what is None: a conversion whose link named no affiliate has none.
    document.setdefault("affiliate_id", None)
    return ConversionResult.model_validate(document)


class DynamoConversionLog:
    """The conversion records in DynamoDB."""

    def __init__(
        self,
        table_name: str,
        *,
        client: DynamoDBClient,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._table = table_name
        self._client = client
        self._clock = clock

    def record(
        self,
        conversion: Conversion,
        result: ConversionResult,
        messages: Sequence[PostbackMessage] = (),
        *,
        received_at: datetime | None = None,
        tracker: str | None = None,
    ) -> FirstRecord | None:
        item = conversion_item(
            conversion, result, received_at=received_at or self._clock(), messages=messages, tracker=tracker
        )
        repeat = conditional_write(
            f"Recording conversion {conversion.conversion_id} failed",
            lambda: self._client.put_item(
                TableName=self._table,
                Item=item,
                ConditionExpression="attribute_not_exists(conversion_id)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            ),
        )
        if repeat is None:
            return None
        first = cast("dict[str, Any] | None", repeat.response.get("Item"))
        if first is None:
            # Only when ALL_OLD was not honoured; one read then, rather than a wrong answer.
            first = self._read_item(conversion.conversion_id)
        return _first_record(first, conversion)

    def original(self, transaction_id: str) -> OriginalConversion | None:
        # One strongly consistent GetItem per event, in ORIGINAL_EVENTS order: a reversal of a
        # sale (the common case) costs one read.
        for event in ORIGINAL_EVENTS:
            conversion_id = f"{transaction_id}#{event.value}"
            with failures_as(f"Reading conversion {conversion_id} failed"):
                answer = self._client.get_item(
                    TableName=self._table, Key={"conversion_id": {"S": conversion_id}}, ConsistentRead=True
                )
            if "Item" in answer:
                return original_of(answer["Item"])
        return None

    def delivery_refs(self, transaction_id: str) -> list[DeliveryRef]:
        """ports.KeptPostbacks: the transaction's records, one BatchGetItem for every event,
        whole (a record's kept messages carry each delivery's key: affiliate, created_at)."""
        keys = [{"conversion_id": {"S": f"{transaction_id}#{event.value}"}} for event in Event]
        items = batch_get(self._client.batch_get_item, self._table, keys, failure="Reading the delivery log failed")
        return [ref for item in items for ref in delivery_refs_of(item)]

    def _read_item(self, conversion_id: str) -> dict[str, Any]:
        with failures_as(f"Reading conversion {conversion_id} failed"):
            answer = self._client.get_item(
                TableName=self._table, Key={"conversion_id": {"S": conversion_id}}, ConsistentRead=True
            )
        if "Item" not in answer:
            raise InfrastructureError(f"Conversion {conversion_id} was recorded and is gone.")
        return cast("dict[str, Any]", answer["Item"])
