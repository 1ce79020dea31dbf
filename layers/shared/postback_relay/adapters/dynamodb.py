"""What every DynamoDB adapter shares: the error translation, paging, attribute
values and the times the tables keep.

The adapters speak DynamoDB's low-level attribute values (`{"S": ...}`, `{"N": ...}`) through a
plain client. A failure becomes an InfrastructureError naming what was being done; a write
whose condition failed is handed back to the adapter, which alone knows what that means (a
conflict, a repeat, a lost race).

Times (domain.times), by table:
- AffiliatesTable `updated_at`, ConversionsTable `occurred_at`: `utc_seconds` (people read them;
  `postback affiliate get` shows `updated_at`).
- DeliveriesTable (the sort key's `created_at`, each attempt's `at`, `updated_at`) and
  TestRunsTable (`started_at`, `finished_at`, each step's `at`): `utc_millis`, fixed width, so
  that keys and times sort as text.
- ConversionsTable `received_at`: `utc_exact`, the postback messages' own `created_at` text.
Every one of them is read back with `parse_utc`, whatever precision an older item has.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from postback_relay.domain.errors import InfrastructureError
from postback_relay.domain.times import parse_utc, utc_exact, utc_millis, utc_now, utc_seconds

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

__all__ = [
    "BATCH_GET_LIMIT",
    "CONDITION_FAILED",
    "batch_get",
    "condition_failed",
    "conditional_write",
    "expiry",
    "failures_as",
    "items_of",
    "parse_utc",
    "text_of",
    "utc_exact",
    "utc_millis",
    "utc_now",
    "utc_seconds",
]

CONDITION_FAILED = "ConditionalCheckFailedException"
BATCH_GET_LIMIT = 100  # keys per BatchGetItem


def condition_failed(exc: ClientError) -> bool:
    """Whether DynamoDB refused a write because its ConditionExpression was false."""
    return exc.response.get("Error", {}).get("Code") == CONDITION_FAILED


@contextmanager
def failures_as(failure: str, *, refused: Callable[[], Exception] | None = None) -> Iterator[None]:
    """Any DynamoDB failure inside as InfrastructureError(`<failure>: <what botocore said>`).

    With `refused`, a write whose condition was false raises what `refused` makes instead."""
    try:
        yield
    except ClientError as exc:
        if refused is not None and condition_failed(exc):
            raise refused() from exc
        raise InfrastructureError(f"{failure}: {exc}") from exc
    except BotoCoreError as exc:
        raise InfrastructureError(f"{failure}: {exc}") from exc


def conditional_write(failure: str, write: Callable[[], object]) -> ClientError | None:
    """Make a conditional write: None when it was written, the ClientError when its condition
    was false (the caller says what that means: it may read the item DynamoDB handed back);
    any other failure as InfrastructureError(`<failure>: ...`)."""
    try:
        write()
    except ClientError as exc:
        if condition_failed(exc):
            return exc
        raise InfrastructureError(f"{failure}: {exc}") from exc
    except BotoCoreError as exc:
        raise InfrastructureError(f"{failure}: {exc}") from exc
    return None


def items_of(
    call: Callable[..., Any], request: dict[str, Any], *, failure: str, next_limit: int | None = None
) -> Iterator[dict[str, Any]]:
    """Every item a Query or a Scan (`call`) returns, page after page (`LastEvaluatedKey`; the
    pages after the first of `next_limit` items, when given); a failure as
    InfrastructureError(`<failure>: ...`). `request` is left as it was."""
    request = dict(request)
    with failures_as(failure):
        while True:
            page = call(**request)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
            if next_limit is not None:
                request["Limit"] = next_limit


def text_of(item: Mapping[str, Any], name: str) -> str | None:
    """The item's string attribute `name`, or None when it has none."""
    value = item.get(name)
    return str(value["S"]) if value is not None and "S" in value else None


def expiry(moment: datetime, ttl: timedelta) -> AttributeValueTypeDef:
    """The TTL attribute of an item that expires `ttl` after `moment` (unix seconds)."""
    return {"N": str(int((moment + ttl).timestamp()))}


def batch_get(call: Callable[..., Any], table: str, keys: list[dict[str, Any]], *, failure: str) -> list[Any]:
    """The items at these keys of `table` (in no particular order; those missing left out), by
    BatchGetItem (`call`: the client's bound `batch_get_item`), BATCH_GET_LIMIT keys a call;
    a failure as InfrastructureError(`<failure>: ...`). DynamoDB may leave keys unprocessed
    under throttling: those are asked for again, a few times."""
    items: list[Any] = []
    for start in range(0, len(keys), BATCH_GET_LIMIT):
        request: dict[str, Any] = {"Keys": keys[start : start + BATCH_GET_LIMIT]}
        for _ in range(5):
            request_items: dict[str, Any] = {table: request}
            with failures_as(failure):
                answer = call(RequestItems=request_items)
            items.extend(answer.get("Responses", {}).get(table, []))
            unprocessed = answer.get("UnprocessedKeys", {}).get(table)
            if not unprocessed or not unprocessed.get("Keys"):
                break
            request = dict(unprocessed)
        else:
            raise InfrastructureError(f"{failure}: keys left unprocessed.")
    return items
