"""The delivery log in DynamoDB (DeliveriesTable): ports.DeliveryLog.

Key: `affiliate_id` (partition) = `<affiliate_id>#<n>`, and `delivery_key` =
`<created_at>#<delivery_id>` (sort), where `created_at` is the postback message's own (set when
the message was built, kept on replay) and `n` one of DELIVERY_SHARDS shards, a hash of the
delivery ID: a message addresses its item directly (`PostbackMessage.ref`), one affiliate's
writes spread over DELIVERY_SHARDS partitions (bench.ceiling: the largest item costs 24 write
units an attempt, and one partition takes 1,000 a second), and an affiliate's postbacks are
read newest first from the table itself, every shard merged, with no index to write. Items
written before the shards (partition `<affiliate_id>`) are read with them, the shard's item
first when a delivery has both; the dispatcher reads and writes the sharded item only
(docs/architecture.md, "One affiliate's ceiling").

One item per postback: the key, `transaction_id`, `event`, `offer_id`, `url`, `method`,
`state`, `attempts` (a list of maps: attempt, at, status, latency_ms, excerpt, error_kind,
outcome, and url/method only when they differ from the item's), `http_status`,
`last_error`, `message` (the rest of the postback message as JSON, for replay), `updated_at`,
`replays`, `test_run_id`, `expires_at` (TTL).

A transaction's postbacks are found without an index (services.lookup finds their keys, `at`
reads them in one BatchGetItem).

Nothing is stored twice, so that the happy path's item stays under 1 KB (one write unit).
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from postback_relay.adapters.dynamodb import (
    BATCH_GET_LIMIT,
    batch_get,
    expiry,
    failures_as,
    items_of,
    parse_utc,
    text_of,
    utc_millis,
    utc_now,
)
from postback_relay.domain.config import HttpMethod
from postback_relay.domain.delivery import (
    EXCERPT_CHARS,
    Attempt,
    DeliveryRef,
    DeliveryState,
    PostbackMessage,
)
from postback_relay.domain.errors import ConflictError
from postback_relay.domain.records import DeliveryRecord

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

DELIVERY_TTL_DAYS = 30
# One affiliate's deliveries spread over this many partitions (bench.ceiling): 500 postbacks a
# second at the largest item the config allows, replayed once (31 write units an attempt).
DELIVERY_SHARDS = 16
PARTITION_KEY = "affiliate_id"  # `<affiliate_id>#<shard>`; `<affiliate_id>` for items written before
SORT_KEY = "delivery_key"  # `<created_at>#<delivery_id>`
SHARD_SEPARATOR = "#"  # never in an affiliate ID (domain.config.AFFILIATE_ID)
# Attributes of the item that the stored message JSON leaves out (rebuilt from the item).
_MESSAGE_FIELDS_ON_ITEM = frozenset(
    {"delivery_id", "affiliate_id", "created_at", "transaction_id", "event", "offer_id", "url", "method"}
    | {"test_run_id"}
)
_ATTRIBUTES = (
    *("state", "transaction_id", "event", "offer_id", "url", "method", "message"),
    *("updated_at", "replays", "expires_at", "attempts", "http_status", "last_error", "test_run_id"),
)
_NOT_DELIVERED = "attribute_not_exists(#state) OR #state <> :delivered"


def shard_of(delivery_id: str) -> int:
    """The delivery's shard: a hash of its ID, so that every copy of a postback finds it."""
    return int.from_bytes(hashlib.sha256(delivery_id.encode()).digest()[:4], "big") % DELIVERY_SHARDS


def partitions_of(affiliate_id: str) -> list[str]:
    """Every partition an affiliate's deliveries may be in: its shards, then the partition of
    the items written before the shards."""
    return [f"{affiliate_id}{SHARD_SEPARATOR}{n}" for n in range(DELIVERY_SHARDS)] + [affiliate_id]


def key_of(ref: DeliveryRef) -> dict[str, AttributeValueTypeDef]:
    """The item's primary key: its shard of the affiliate's partitions."""
    partition = f"{ref.affiliate_id}{SHARD_SEPARATOR}{shard_of(ref.delivery_id)}"
    return {PARTITION_KEY: {"S": partition}, SORT_KEY: {"S": ref.sort_key}}


def unsharded_key_of(ref: DeliveryRef) -> dict[str, AttributeValueTypeDef]:
    """Where the item was written before the shards (read by the listings and replay)."""
    return {PARTITION_KEY: {"S": ref.affiliate_id}, SORT_KEY: {"S": ref.sort_key}}


def ref_of(item: Any) -> DeliveryRef:
    """The key of an item, read back: `<created_at>#<delivery_id>` under its affiliate."""
    created_at, _, delivery_id = str(item[SORT_KEY]["S"]).partition("#")
    affiliate_id = str(item[PARTITION_KEY]["S"]).partition(SHARD_SEPARATOR)[0]
    return DeliveryRef(affiliate_id, parse_utc(created_at), delivery_id)


def newest_first(streams: Iterable[Iterator[Any]]) -> Iterator[Any]:
    """Items of several partitions, each read newest first, merged newest first; a delivery
    found twice (in its shard and where it was written before the shards) once, the shard's."""
    last: str | None = None
    for item in heapq.merge(*streams, key=lambda item: str(item[SORT_KEY]["S"]), reverse=True):
        sort_key = str(item[SORT_KEY]["S"])
        if sort_key != last:
            yield item
        last = sort_key


def _attempt_value(attempt: Attempt, message: PostbackMessage) -> AttributeValueTypeDef:
    fields: dict[str, AttributeValueTypeDef] = {
        "attempt": {"N": str(attempt.attempt)},
        "at": {"S": utc_millis(attempt.at)},
        "outcome": {"S": attempt.outcome},
    }
    if attempt.url != message.url:
        fields["url"] = {"S": attempt.url}
    if attempt.method != message.method:
        fields["method"] = {"S": attempt.method.value}
    if attempt.status is not None:
        fields["status"] = {"N": str(attempt.status)}
    if attempt.latency_ms is not None:
        fields["latency_ms"] = {"N": str(attempt.latency_ms)}
    if attempt.excerpt:
        fields["excerpt"] = {"S": attempt.excerpt[:EXCERPT_CHARS]}
    if attempt.error_kind:
        fields["error_kind"] = {"S": attempt.error_kind}
    return {"M": fields}


def _attempt_of(value: Any, item_url: str, item_method: str) -> Attempt:
    fields = value["M"]
    return Attempt(
        attempt=int(fields["attempt"]["N"]),
        at=parse_utc(fields["at"]["S"]),
        url=fields["url"]["S"] if "url" in fields else item_url,
        method=HttpMethod(fields["method"]["S"] if "method" in fields else item_method),
        status=int(fields["status"]["N"]) if "status" in fields else None,
        latency_ms=int(fields["latency_ms"]["N"]) if "latency_ms" in fields else None,
        excerpt=fields.get("excerpt", {}).get("S"),
        error_kind=fields.get("error_kind", {}).get("S"),
        outcome=fields.get("outcome", {}).get("S", ""),
    )


def record_of(item: Any) -> DeliveryRecord:
    """A DeliveryRecord from a DeliveriesTable item (low-level attribute values)."""
    url = item["url"]["S"]
    method = item["method"]["S"]
    ref = ref_of(item)
    message_fields: dict[str, Any] = json.loads(item["message"]["S"])
    message_fields.update(
        delivery_id=ref.delivery_id,
        affiliate_id=ref.affiliate_id,
        created_at=ref.created_at,
        transaction_id=item["transaction_id"]["S"],
        event=item["event"]["S"],
        offer_id=item["offer_id"]["S"],
        url=url,
        method=method,
        test_run_id=text_of(item, "test_run_id"),
    )
    return DeliveryRecord(
        delivery_id=ref.delivery_id,
        message=PostbackMessage.model_validate(message_fields),
        state=DeliveryState(item["state"]["S"]),
        attempts=tuple(_attempt_of(a, url, method) for a in item.get("attempts", {}).get("L", [])),
        created_at=utc_millis(ref.created_at),
        updated_at=item["updated_at"]["S"],
        last_error=text_of(item, "last_error"),
        replays=int(item.get("replays", {}).get("N", "0")),
    )


class DynamoDeliveryLog:
    """The delivery log: one conditional UpdateItem per attempt."""

    def __init__(
        self,
        table: str,
        *,
        client: DynamoDBClient,
        ttl_days: int = DELIVERY_TTL_DAYS,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._table = table
        self._client = client
        self._ttl = timedelta(days=ttl_days)
        self._clock = clock

    # --- writes (the dispatcher) ---------------------------------------------------------

    def record_attempt(
        self, message: PostbackMessage, attempt: Attempt, state: DeliveryState, *, reason: str | None = None
    ) -> None:
        sets = ["#attempts = list_append(if_not_exists(#attempts, :no_attempts), :attempt)"]
        removes: list[str] = []
        values: dict[str, AttributeValueTypeDef] = {
            ":no_attempts": {"L": []},
            ":attempt": {"L": [_attempt_value(attempt, message)]},
        }
        if attempt.status is not None:
            sets.append("#http_status = :http_status")
            values[":http_status"] = {"N": str(attempt.status)}
        else:
            removes.append("#http_status")
        self._update(message, state, reason, sets, removes, values, what="Logging an attempt")

    def mark_deferred(self, message: PostbackMessage, *, reason: str) -> None:
        self._update(message, DeliveryState.PENDING, reason, [], [], {}, what="Deferring")

    def mark_replayed(self, ref: DeliveryRef) -> None:
        """The failed item is marked pending: its shard's, or else the one written before the
        shards (ConflictError when neither is failed)."""
        try:
            self._mark_replayed(ref, key_of(ref))
        except ConflictError:
            self._mark_replayed(ref, unsharded_key_of(ref))

    def _mark_replayed(self, ref: DeliveryRef, key: dict[str, AttributeValueTypeDef]) -> None:
        delivery_id = ref.delivery_id
        with failures_as(
            f"Marking delivery {delivery_id} replayed failed",
            refused=lambda: ConflictError(f"Delivery {delivery_id} is not failed (any more)."),
        ):
            self._client.update_item(
                TableName=self._table,
                Key=key,
                UpdateExpression="SET #state = :pending, #replays = if_not_exists(#replays, :zero) + :one, "
                "#updated_at = :now REMOVE #last_error",
                ConditionExpression="#state = :failed",
                ExpressionAttributeNames={
                    "#state": "state",
                    "#replays": "replays",
                    "#updated_at": "updated_at",
                    "#last_error": "last_error",
                },
                ExpressionAttributeValues={
                    ":pending": {"S": DeliveryState.PENDING.value},
                    ":failed": {"S": DeliveryState.FAILED.value},
                    ":zero": {"N": "0"},
                    ":one": {"N": "1"},
                    ":now": {"S": utc_millis(self._clock())},
                },
            )

    def _update(
        self,
        message: PostbackMessage,
        state: DeliveryState,
        reason: str | None,
        sets: list[str],
        removes: list[str],
        values: dict[str, AttributeValueTypeDef],
        *,
        what: str,
    ) -> None:
        now = self._clock()
        stored_message = message.model_dump(mode="json", exclude=set(_MESSAGE_FIELDS_ON_ITEM), exclude_none=True)
        sets = [
            *sets,
            "#state = :state",
            "#transaction_id = :transaction_id",
            "#event = :event",
            "#offer_id = :offer_id",
            "#url = :url",
            "#method = :method",
            "#message = if_not_exists(#message, :message)",
            "#updated_at = :now",
            "#expires_at = :expires_at",
        ]
        values = {
            **values,
            ":state": {"S": state.value},
            ":delivered": {"S": DeliveryState.DELIVERED.value},
            ":transaction_id": {"S": message.transaction_id},
            ":event": {"S": message.event.value},
            ":offer_id": {"S": message.offer_id},
            ":url": {"S": message.url},
            ":method": {"S": message.method.value},
            ":message": {"S": json.dumps(stored_message, separators=(",", ":"), ensure_ascii=False)},
            ":now": {"S": utc_millis(now)},
            ":expires_at": expiry(now, self._ttl),
        }
        if reason:
            sets.append("#last_error = :last_error")
            values[":last_error"] = {"S": reason[:500]}
        else:
            removes.append("#last_error")
        if message.test_run_id:
            sets.append("#test_run_id = :test_run_id")
            values[":test_run_id"] = {"S": message.test_run_id}
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        names = {f"#{name}": name for name in _ATTRIBUTES if f"#{name}" in expression or f"#{name}" in _NOT_DELIVERED}
        with failures_as(
            f"{what} for delivery {message.delivery_id} failed",
            refused=lambda: ConflictError(f"Delivery {message.delivery_id} is delivered already."),
        ):
            self._client.update_item(
                TableName=self._table,
                Key=key_of(message.ref),
                UpdateExpression=expression,
                ConditionExpression=_NOT_DELIVERED,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )

    # --- reads (the dispatcher's redeliveries, the config script, the test-link run) -------

    def get(self, ref: DeliveryRef) -> DeliveryRecord | None:
        with failures_as(f"Reading delivery {ref.delivery_id} failed"):
            answer = self._client.get_item(TableName=self._table, Key=key_of(ref), ConsistentRead=True)
        item = answer.get("Item")
        return record_of(item) if item else None

    def by_affiliate(self, affiliate_id: str, *, limit: int = 100) -> list[DeliveryRecord]:
        records: list[DeliveryRecord] = []
        for item in self._affiliate_items(affiliate_id, page_size=limit):
            records.append(record_of(item))
            if len(records) >= limit:
                break
        return records

    def created_since(self, affiliate_id: str, since: datetime, *, at_least: int = 0) -> list[DeliveryRecord]:
        """The affiliate's postbacks created from `since` on, newest first: one Query of each
        partition by the sort key's time prefix (the only place `postback health` reads the
        log through). With `at_least`, the partitions are read without the time prefix, a page
        of a share of `at_least` first, and the merge goes on past `since` until it has
        `at_least` (one read for the portal's list and its health row)."""
        if not at_least:
            items = self._affiliate_items(affiliate_id, page_size=BATCH_GET_LIMIT * 10, since=since)
            return [record_of(item) for item in items]
        since_key = utc_millis(since)  # the sort key starts with the creation time
        records: list[DeliveryRecord] = []
        for item in self._affiliate_items(affiliate_id, page_size=at_least, next_page_size=BATCH_GET_LIMIT * 10):
            if len(records) >= at_least and str(item[SORT_KEY]["S"]) < since_key:
                break
            records.append(record_of(item))
        return records

    def at(self, refs: Sequence[DeliveryRef]) -> list[DeliveryRecord]:
        """The deliveries at these keys, in this order; those gone (TTL) are left out. Each is
        looked for in its shard and where it was written before the shards (the shard's first)."""
        unique = list(dict.fromkeys(refs))
        places = [(key_of(ref), unsharded_key_of(ref)) for ref in unique]
        keys = [key for pair in places for key in pair]
        items = batch_get(self._client.batch_get_item, self._table, keys, failure="Reading the delivery log failed")
        by_key = {(item[PARTITION_KEY]["S"], item[SORT_KEY]["S"]): item for item in items}

        def found(key: dict[str, AttributeValueTypeDef]) -> Any:
            return by_key.get((key[PARTITION_KEY]["S"], key[SORT_KEY]["S"]))

        kept = [found(sharded) or found(unsharded) for sharded, unsharded in places]
        return [record_of(item) for item in kept if item is not None]

    def failed(self, *, affiliate_id: str | None = None) -> list[DeliveryRecord]:
        if affiliate_id is not None:
            # The state is no key: the affiliate's partition is read, newest first, and filtered.
            items = self._affiliate_items(affiliate_id, page_size=BATCH_GET_LIMIT * 10, only_failed=True)
            records = map(record_of, items)
            return [r for r in records if r.state is DeliveryState.FAILED and r.message.affiliate_id == affiliate_id]
        request: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "#state = :failed",
            "ExpressionAttributeNames": {"#state": "state"},
            "ExpressionAttributeValues": {":failed": {"S": DeliveryState.FAILED.value}},
        }
        # A delivery in its shard and where it was written before the shards: the shard's.
        by_key: dict[str, Any] = {}
        for item in self._pages("scan", request):
            kept = by_key.get(item[SORT_KEY]["S"])
            if kept is None or SHARD_SEPARATOR not in kept[PARTITION_KEY]["S"]:
                by_key[item[SORT_KEY]["S"]] = item
        return [record_of(item) for item in by_key.values()]

    def _affiliate_items(
        self,
        affiliate_id: str,
        *,
        page_size: int,
        next_page_size: int | None = None,
        only_failed: bool = False,
        since: datetime | None = None,
    ) -> Iterator[Any]:
        """The affiliate's deliveries, newest first: each of its partitions read backwards
        (from the postbacks created at `since` on: the sort key starts with the creation
        time), page by page as the merge needs them, and merged."""
        partitions = partitions_of(affiliate_id)
        # The hash spreads an affiliate's postbacks evenly: a page per partition of a share of
        # the whole, and the next page of a partition (a share of `next_page_size`, when given)
        # only when the merge reaches its end.
        share = math.ceil(page_size / DELIVERY_SHARDS) + 1
        next_share = math.ceil(next_page_size / DELIVERY_SHARDS) + 1 if next_page_size else share
        return newest_first(
            self._partition_items(
                partition, page_size=share, next_page_size=next_share, only_failed=only_failed, since=since
            )
            for partition in partitions
        )

    def _partition_items(
        self, partition: str, *, page_size: int, next_page_size: int, only_failed: bool, since: datetime | None
    ) -> Iterator[Any]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "#key = :key",
            "ExpressionAttributeNames": {"#key": PARTITION_KEY},
            "ExpressionAttributeValues": {":key": {"S": partition}},
            "ScanIndexForward": False,
            "Limit": page_size,
        }
        if since is not None:
            request["KeyConditionExpression"] = "#key = :key AND #sort >= :since"
            request["ExpressionAttributeNames"]["#sort"] = SORT_KEY
            request["ExpressionAttributeValues"][":since"] = {"S": utc_millis(since)}
        if only_failed:
            request["FilterExpression"] = "#state = :failed"
            request["ExpressionAttributeNames"]["#state"] = "state"
            request["ExpressionAttributeValues"][":failed"] = {"S": DeliveryState.FAILED.value}
        yield from self._pages("query", request, next_limit=next_page_size)

    def _pages(self, operation: str, request: dict[str, Any], *, next_limit: int | None = None) -> Iterator[Any]:
        call = self._client.query if operation == "query" else self._client.scan
        return items_of(call, request, failure="Reading the delivery log failed", next_limit=next_limit)
