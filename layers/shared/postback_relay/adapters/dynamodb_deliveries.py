"""The delivery log in DynamoDB (DeliveriesTable, key `delivery_id`): ports.DeliveryLog.

One item per postback: `affiliate_id`, `transaction_id`, `event`, `offer_id`, `url`,
`method`, `state`, `attempts` (a list of maps: attempt, at, status, latency_ms, excerpt,
error_kind, outcome, and url/method only when they differ from the item's), `http_status`,
`last_error`, `message` (the rest of the postback message as JSON, for replay), `created_at`,
`updated_at`, `replays`, `test_run_id`, `expires_at` (TTL).

One GSI, `by_affiliate` (`affiliate_id`, `created_at`), keys only: a postback costs one small
index write when it is first logged and none for its later attempts. Listings read the keys
there and the items with BatchGetItem. A transaction's postbacks are found without an index:
its ConversionsTable records (`<transaction_id>#<event>`, one BatchGetItem for the four
events) keep the `delivery_ids` they queued. A test-link postback (`test-<run_id>-<n>`) has no
conversion record: its test run's `fire_postbacks` step names its delivery ID.

Nothing is stored twice, so that the happy path's item stays under 1 KB (one write unit).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from postback_relay.domain.config import HttpMethod
from postback_relay.domain.delivery import EXCERPT_CHARS, Attempt, DeliveryState, PostbackMessage
from postback_relay.domain.errors import ConflictError, InfrastructureError
from postback_relay.domain.events import Event
from postback_relay.ports import DeliveryRecord

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.service_resource import Table
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

CONDITION_FAILED = "ConditionalCheckFailedException"
DELIVERY_TTL_DAYS = 30
# Attributes of the item that the stored message JSON leaves out (rebuilt from the item).
_MESSAGE_FIELDS_ON_ITEM = frozenset(
    {"delivery_id", "affiliate_id", "transaction_id", "event", "offer_id", "url", "method", "test_run_id"}
)
_ATTRIBUTES = (
    *("state", "affiliate_id", "transaction_id", "event", "offer_id", "url", "method", "message"),
    *("created_at", "updated_at", "replays", "expires_at", "attempts", "http_status", "last_error", "test_run_id"),
)
_NOT_DELIVERED = "attribute_not_exists(#state) OR #state <> :delivered"
BATCH_GET_LIMIT = 100  # keys per BatchGetItem
TEST_TRANSACTION_PREFIX = "test-"  # test-link postbacks: `test-<run_id>-<n>`
FIRE_POSTBACKS_STEP = "fire_postbacks"


def table_and_client(table: str | Table, client: DynamoDBClient | None) -> tuple[str, DynamoDBClient]:
    """The table's name and a low-level client. A Table resource's own client cannot serve:
    the resource makes it (de)serialise plain Python values, and these adapters speak
    DynamoDB's attribute values; so a plain client is made for the same region and endpoint."""
    if isinstance(table, str):
        return table, client or boto3.client("dynamodb")
    if client is None:
        meta = table.meta.client.meta
        client = boto3.client("dynamodb", region_name=meta.region_name, endpoint_url=meta.endpoint_url)
    return table.name, client


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _attempt_value(attempt: Attempt, message: PostbackMessage) -> AttributeValueTypeDef:
    fields: dict[str, AttributeValueTypeDef] = {
        "attempt": {"N": str(attempt.attempt)},
        "at": {"S": _iso(attempt.at)},
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
        at=datetime.fromisoformat(fields["at"]["S"]),
        url=fields["url"]["S"] if "url" in fields else item_url,
        method=HttpMethod(fields["method"]["S"] if "method" in fields else item_method),
        status=int(fields["status"]["N"]) if "status" in fields else None,
        latency_ms=int(fields["latency_ms"]["N"]) if "latency_ms" in fields else None,
        excerpt=fields.get("excerpt", {}).get("S"),
        error_kind=fields.get("error_kind", {}).get("S"),
        outcome=fields.get("outcome", {}).get("S", ""),
    )


def _text(item: Any, name: str) -> str | None:
    value = item.get(name)
    return str(value["S"]) if value is not None and "S" in value else None


def record_of(item: Any) -> DeliveryRecord:
    """A DeliveryRecord from a DeliveriesTable item (low-level attribute values)."""
    url = item["url"]["S"]
    method = item["method"]["S"]
    message_fields: dict[str, Any] = json.loads(item["message"]["S"])
    message_fields.update(
        delivery_id=item["delivery_id"]["S"],
        affiliate_id=item["affiliate_id"]["S"],
        transaction_id=item["transaction_id"]["S"],
        event=item["event"]["S"],
        offer_id=item["offer_id"]["S"],
        url=url,
        method=method,
        test_run_id=_text(item, "test_run_id"),
    )
    return DeliveryRecord(
        delivery_id=item["delivery_id"]["S"],
        message=PostbackMessage.model_validate(message_fields),
        state=DeliveryState(item["state"]["S"]),
        attempts=tuple(_attempt_of(a, url, method) for a in item.get("attempts", {}).get("L", [])),
        created_at=item["created_at"]["S"],
        updated_at=item["updated_at"]["S"],
        last_error=_text(item, "last_error"),
        replays=int(item.get("replays", {}).get("N", "0")),
    )


class DynamoDeliveryLog:
    """The delivery log: one conditional UpdateItem per attempt."""

    def __init__(
        self,
        table: str | Table,
        *,
        client: DynamoDBClient | None = None,
        conversions_table: str | None = None,
        test_runs_table: str | None = None,
        ttl_days: int = DELIVERY_TTL_DAYS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """`table`: the table's name (with `client`, or a default client), or a boto3 Table resource.

        `conversions_table` and `test_runs_table` are needed only to list a transaction's
        postbacks (`by_transaction`, `failed(transaction_id=...)`); the dispatcher does without."""
        self._table, self._client = table_and_client(table, client)
        self._conversions_table = conversions_table
        self._test_runs_table = test_runs_table
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

    def mark_replayed(self, delivery_id: str) -> None:
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"delivery_id": {"S": delivery_id}},
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
                    ":now": {"S": _iso(self._clock())},
                },
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == CONDITION_FAILED:
                raise ConflictError(f"Delivery {delivery_id} is not failed (any more).") from exc
            raise InfrastructureError(f"Marking delivery {delivery_id} replayed failed: {exc}") from exc
        except BotoCoreError as exc:
            raise InfrastructureError(f"Marking delivery {delivery_id} replayed failed: {exc}") from exc

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
            "#affiliate_id = :affiliate_id",
            "#transaction_id = :transaction_id",
            "#event = :event",
            "#offer_id = :offer_id",
            "#url = :url",
            "#method = :method",
            "#message = if_not_exists(#message, :message)",
            "#created_at = if_not_exists(#created_at, :now)",
            "#updated_at = :now",
            "#expires_at = :expires_at",
        ]
        values = {
            **values,
            ":state": {"S": state.value},
            ":delivered": {"S": DeliveryState.DELIVERED.value},
            ":affiliate_id": {"S": message.affiliate_id},
            ":transaction_id": {"S": message.transaction_id},
            ":event": {"S": message.event.value},
            ":offer_id": {"S": message.offer_id},
            ":url": {"S": message.url},
            ":method": {"S": message.method.value},
            ":message": {"S": json.dumps(stored_message, separators=(",", ":"))},
            ":now": {"S": _iso(now)},
            ":expires_at": {"N": str(int((now + self._ttl).timestamp()))},
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
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"delivery_id": {"S": message.delivery_id}},
                UpdateExpression=expression,
                ConditionExpression=_NOT_DELIVERED,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == CONDITION_FAILED:
                raise ConflictError(f"Delivery {message.delivery_id} is delivered already.") from exc
            raise InfrastructureError(f"{what} for delivery {message.delivery_id} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise InfrastructureError(f"{what} for delivery {message.delivery_id} failed: {exc}") from exc

    # --- reads (the dispatcher's redeliveries, the config script, the test-link run) -------

    def get(self, delivery_id: str) -> DeliveryRecord | None:
        try:
            answer = self._client.get_item(
                TableName=self._table, Key={"delivery_id": {"S": delivery_id}}, ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as exc:
            raise InfrastructureError(f"Reading delivery {delivery_id} failed: {exc}") from exc
        item = answer.get("Item")
        return record_of(item) if item else None

    def by_affiliate(self, affiliate_id: str, *, limit: int = 100) -> list[DeliveryRecord]:
        ids: list[str] = []
        for key in self._affiliate_keys(affiliate_id, page_size=limit):
            ids.append(key)
            if len(ids) >= limit:
                break
        return self._records(ids)

    def created_since(self, affiliate_id: str, since: datetime) -> list[DeliveryRecord]:
        """One Query of the keys-only index from `since` on (newest first), then BatchGetItem
        of the items: the only place `postback health` reads the log through."""
        ids = list(self._affiliate_keys(affiliate_id, page_size=BATCH_GET_LIMIT * 10, since=since))
        return self._records(ids)

    def by_transaction(self, transaction_id: str, *, limit: int = 100) -> list[DeliveryRecord]:
        records = self._records(self._transaction_delivery_ids(transaction_id))
        records.sort(key=lambda r: r.created_at, reverse=True)
        return records[:limit]

    def failed(self, *, affiliate_id: str | None = None, transaction_id: str | None = None) -> list[DeliveryRecord]:
        if transaction_id is not None:
            records = self._records(self._transaction_delivery_ids(transaction_id))
            records.sort(key=lambda r: r.created_at, reverse=True)
        elif affiliate_id is not None:
            # The index holds keys only: the state is read from the items.
            records = self._records(list(self._affiliate_keys(affiliate_id, page_size=BATCH_GET_LIMIT * 10)))
        else:
            request: dict[str, Any] = {
                "TableName": self._table,
                "FilterExpression": "#state = :failed",
                "ExpressionAttributeNames": {"#state": "state"},
                "ExpressionAttributeValues": {":failed": {"S": DeliveryState.FAILED.value}},
            }
            return [record_of(item) for item in self._pages("scan", request)]
        return [
            r
            for r in records
            if r.state is DeliveryState.FAILED and (affiliate_id is None or r.message.affiliate_id == affiliate_id)
        ]

    def _affiliate_keys(self, affiliate_id: str, *, page_size: int, since: datetime | None = None) -> Iterator[str]:
        """The affiliate's delivery IDs from the keys-only index, newest first (from `since` on)."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": "by_affiliate",
            "KeyConditionExpression": "#key = :key",
            "ExpressionAttributeNames": {"#key": "affiliate_id"},
            "ExpressionAttributeValues": {":key": {"S": affiliate_id}},
            "ScanIndexForward": False,
            "Limit": page_size,
        }
        if since is not None:
            request["KeyConditionExpression"] = "#key = :key AND #created_at >= :since"
            request["ExpressionAttributeNames"]["#created_at"] = "created_at"
            request["ExpressionAttributeValues"][":since"] = {"S": _iso(since)}
        for item in self._pages("query", request):
            yield str(item["delivery_id"]["S"])

    def _transaction_delivery_ids(self, transaction_id: str) -> list[str]:
        if transaction_id.startswith(TEST_TRANSACTION_PREFIX):
            return self._test_delivery_ids(transaction_id)
        if self._conversions_table is None:
            raise InfrastructureError("Listing a transaction's postbacks needs the ConversionsTable's name.")
        # Imported here: the dispatcher imports this module and never lists by transaction.
        from postback_relay.adapters.dynamodb_conversions import DELIVERY_IDS, delivery_ids_of

        keys = [{"conversion_id": {"S": f"{transaction_id}#{event.value}"}} for event in Event]
        items = self._batch_get(self._conversions_table, keys, projection=DELIVERY_IDS)
        return [delivery_id for item in items for delivery_id in delivery_ids_of(item)]

    def _test_delivery_ids(self, transaction_id: str) -> list[str]:
        """A test postback's ID, as its run's `fire_postbacks` step recorded it."""
        if self._test_runs_table is None:
            raise InfrastructureError("Listing a test-link postback needs the TestRunsTable's name.")
        from postback_relay.adapters.dynamodb_testruns import DynamoTestRunStore

        run_id = transaction_id.removeprefix(TEST_TRANSACTION_PREFIX).rpartition("-")[0]
        run = DynamoTestRunStore(self._test_runs_table, client=self._client).get(run_id) if run_id else None
        if run is None:
            return []
        return [
            str(postback["delivery_id"])
            for step in run.steps
            if step.name == FIRE_POSTBACKS_STEP
            for postback in step.details.get("postbacks", [])
            if postback.get("transaction_id") == transaction_id
        ]

    def _records(self, delivery_ids: Sequence[str]) -> list[DeliveryRecord]:
        """The deliveries with these IDs, in this order; those gone (TTL) are left out."""
        unique = list(dict.fromkeys(delivery_ids))
        keys = [{"delivery_id": {"S": delivery_id}} for delivery_id in unique]
        by_id = {item["delivery_id"]["S"]: item for item in self._batch_get(self._table, keys)}
        return [record_of(by_id[delivery_id]) for delivery_id in unique if delivery_id in by_id]

    def _batch_get(self, table: str, keys: list[dict[str, Any]], *, projection: str | None = None) -> list[Any]:
        items: list[Any] = []
        for start in range(0, len(keys), BATCH_GET_LIMIT):
            request: dict[str, Any] = {"Keys": keys[start : start + BATCH_GET_LIMIT]}
            if projection is not None:
                request["ProjectionExpression"] = projection
            # DynamoDB may leave keys unprocessed under throttling: ask for those again, a few times.
            for _ in range(5):
                request_items: dict[str, Any] = {table: request}
                try:
                    answer = self._client.batch_get_item(RequestItems=request_items)
                except (ClientError, BotoCoreError) as exc:
                    raise InfrastructureError(f"Reading the delivery log failed: {exc}") from exc
                items.extend(answer.get("Responses", {}).get(table, []))
                unprocessed = answer.get("UnprocessedKeys", {}).get(table)
                if not unprocessed or not unprocessed.get("Keys"):
                    break
                request = dict(unprocessed)
            else:
                raise InfrastructureError("Reading the delivery log failed: keys left unprocessed.")
        return items

    def _pages(self, operation: str, request: dict[str, Any]) -> Iterator[Any]:
        call = self._client.query if operation == "query" else self._client.scan
        try:
            while True:
                page = call(**request)
                yield from page.get("Items", [])
                if "LastEvaluatedKey" not in page:
                    return
                request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except (ClientError, BotoCoreError) as exc:
            raise InfrastructureError(f"Reading the delivery log failed: {exc}") from exc
