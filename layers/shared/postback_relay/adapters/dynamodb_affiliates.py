"""AffiliatesTable: one postback configuration per affiliate (ports.AffiliateStore).

Item: `affiliate_id` (key), `config` (JSON string of the configuration as dump_config writes
it), `enabled` (BOOL, authoritative over the config's own flag), `version` (N, the optimistic
lock), `updated_at`, `updated_by`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from postback_relay.adapters.dynamodb import (
    failures_as,
    items_of,
    utc_now,
    utc_seconds,
)
from postback_relay.domain.config import AffiliateConfig, dump_config, parse_config
from postback_relay.domain.errors import (
    ConfigError,
    ConflictError,
    NotFoundError,
    UnreadableConfigError,
)
from postback_relay.domain.records import StoredAffiliate
from postback_relay.ports import AffiliateStore

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef


class DynamoAffiliateStore:
    """The affiliate configurations in DynamoDB."""

    def __init__(
        self,
        table_name: str,
        *,
        client: DynamoDBClient,
        allow_loopback: bool = False,
        consistent_read: bool = False,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._table = table_name
        self._client = client
        # Configs were checked when saved; reading them back checks them again with the same
        # rule, so that a local stack's loopback receiver stays readable.
        self._allow_loopback = allow_loopback
        self._consistent_read = consistent_read
        self._clock = clock

    def get(self, affiliate_id: str) -> StoredAffiliate | None:
        with failures_as(f"Reading affiliate {affiliate_id} failed"):
            answer = self._client.get_item(
                TableName=self._table,
                Key={"affiliate_id": {"S": affiliate_id}},
                ConsistentRead=self._consistent_read,
            )
        item = answer.get("Item")
        return self._stored(item) if item else None

    def put(self, config: AffiliateConfig, *, expected_version: int | None, updated_by: str) -> StoredAffiliate:
        version = 1 if expected_version is None else expected_version + 1
        updated_at = utc_seconds(self._clock())
        item: dict[str, AttributeValueTypeDef] = {
            "affiliate_id": {"S": config.affiliate_id},
            "config": {"S": json.dumps(dump_config(config), separators=(",", ":"), sort_keys=True)},
            "enabled": {"BOOL": config.enabled},
            "version": {"N": str(version)},
            "updated_at": {"S": updated_at},
            "updated_by": {"S": updated_by},
        }
        request: dict[str, Any] = {"TableName": self._table, "Item": item}
        if expected_version is None:
            request["ConditionExpression"] = "attribute_not_exists(affiliate_id)"
            conflict = f"Affiliate {config.affiliate_id} already exists."
        else:
            request["ConditionExpression"] = "#version = :expected"
            request["ExpressionAttributeNames"] = {"#version": "version"}
            request["ExpressionAttributeValues"] = {":expected": {"N": str(expected_version)}}
            conflict = f"Affiliate {config.affiliate_id} changed since version {expected_version}."
        with failures_as(f"Saving affiliate {config.affiliate_id} failed", refused=lambda: ConflictError(conflict)):
            self._client.put_item(**request)
        return StoredAffiliate(config=config, version=version, updated_at=updated_at, updated_by=updated_by)

    def list(self) -> list[StoredAffiliate]:
        request: dict[str, Any] = {"TableName": self._table, "ConsistentRead": self._consistent_read}
        items = items_of(self._client.scan, request, failure="Listing affiliates failed")
        affiliates = [self._stored(item) for item in items]
        return sorted(affiliates, key=lambda stored: stored.config.affiliate_id)

    def set_enabled(self, affiliate_id: str, enabled: bool, *, updated_by: str) -> StoredAffiliate:
        with failures_as(
            f"Updating affiliate {affiliate_id} failed",
            refused=lambda: NotFoundError(f"Affiliate {affiliate_id} does not exist."),
        ):
            answer = self._client.update_item(
                TableName=self._table,
                Key={"affiliate_id": {"S": affiliate_id}},
                UpdateExpression="SET #enabled = :enabled, #version = #version + :one, "
                "updated_at = :updated_at, updated_by = :updated_by",
                ConditionExpression="attribute_exists(affiliate_id)",
                ExpressionAttributeNames={"#enabled": "enabled", "#version": "version"},
                ExpressionAttributeValues={
                    ":enabled": {"BOOL": enabled},
                    ":one": {"N": "1"},
                    ":updated_at": {"S": utc_seconds(self._clock())},
                    ":updated_by": {"S": updated_by},
                },
                ReturnValues="ALL_NEW",
            )
        return self._stored(answer["Attributes"])

    def _stored(self, item: dict[str, Any]) -> StoredAffiliate:
        affiliate_id = item["affiliate_id"]["S"]
        try:
            config = parse_config(json.loads(item["config"]["S"]), allow_loopback=self._allow_loopback)
        except (ConfigError, ValueError) as exc:
            # Not the caller's fault and not theirs to fix: a stored config the code no longer
            # accepts must be put again by ops.
            raise UnreadableConfigError(
                f"The stored configuration of affiliate {affiliate_id} is no longer valid ({exc}); put it again."
            ) from exc
        enabled = item.get("enabled", {}).get("BOOL", True)
        updated_by = item.get("updated_by", {}).get("S")
        return StoredAffiliate(
            config=config.model_copy(update={"enabled": enabled}),
            version=int(item.get("version", {}).get("N", "0")),
            updated_at=item.get("updated_at", {}).get("S", ""),
            updated_by=updated_by,
        )


# An unknown affiliate ID is remembered this long at most, whatever the cache time: the
# affiliate onboarded a moment later gets its postbacks from its next conversion, within 5 s
# (contract section 3), and a stream of conversions for an ID nobody onboarded costs at most
# one read per ID per this many seconds per warm instance.
UNKNOWN_AFFILIATE_CACHE_S = 2.0
# Entries kept before expired ones are dropped: unknown IDs from a misconfigured platform must
# not grow the instance's memory without bound.
MAX_CACHE_ENTRIES = 10_000


class CachedAffiliateStore:
    """An AffiliateStore that keeps what `get` read for `ttl_s` seconds.

    Warm ingest then reads no configuration at all; a changed or disabled configuration takes
    effect within `ttl_s` (CONFIG_CACHE_SECONDS). An unknown ID is kept for `miss_ttl_s` at most
    (UNKNOWN_AFFILIATE_CACHE_S), so that a new affiliate is seen within seconds. Writes go
    through and refresh the entry.
    """

    def __init__(
        self,
        store: AffiliateStore,
        *,
        ttl_s: float,
        miss_ttl_s: float = UNKNOWN_AFFILIATE_CACHE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._miss_ttl_s = min(ttl_s, miss_ttl_s)
        self._clock = clock
        self._entries: dict[str, tuple[float, StoredAffiliate | None]] = {}

    def get(self, affiliate_id: str) -> StoredAffiliate | None:
        now = self._clock()
        entry = self._entries.get(affiliate_id)
        if entry is not None and entry[0] > now:
            return entry[1]
        stored = self._store.get(affiliate_id)
        if len(self._entries) >= MAX_CACHE_ENTRIES:
            self._entries = {key: kept for key, kept in self._entries.items() if kept[0] > now}
        self._entries[affiliate_id] = (now + (self._ttl_s if stored is not None else self._miss_ttl_s), stored)
        return stored

    def put(self, config: AffiliateConfig, *, expected_version: int | None, updated_by: str) -> StoredAffiliate:
        stored = self._store.put(config, expected_version=expected_version, updated_by=updated_by)
        self._entries[config.affiliate_id] = (self._clock() + self._ttl_s, stored)
        return stored

    def list(self) -> list[StoredAffiliate]:
        return self._store.list()

    def set_enabled(self, affiliate_id: str, enabled: bool, *, updated_by: str) -> StoredAffiliate:
        stored = self._store.set_enabled(affiliate_id, enabled, updated_by=updated_by)
        self._entries[affiliate_id] = (self._clock() + self._ttl_s, stored)
        return stored

    def clear(self) -> None:
        self._entries.clear()
