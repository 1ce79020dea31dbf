"""AffiliateStore in a dict, with the versions and conditional writes of the DynamoDB store."""

from __future__ import annotations

from dataclasses import replace

from postback_relay.domain.config import AffiliateConfig
from postback_relay.domain.errors import ConflictError, NotFoundError
from postback_relay.domain.records import StoredAffiliate
from postback_relay.ports import AffiliateStore

SAVED_AT = "2026-11-25T12:00:00Z"
TOGGLED_AT = "2026-11-25T12:30:00Z"


class FakeAffiliateStore(AffiliateStore):
    """`gets` counts reads (so cache tests can see them), `writes` counts writes (the seed
    configs are not counted). `interleaved_write` plays someone else saving between this
    command's read and its write: the next `get` returns the old item and stores that one."""

    def __init__(self, *configs: AffiliateConfig) -> None:
        self.items: dict[str, StoredAffiliate] = {
            config.affiliate_id: StoredAffiliate(config, 1, SAVED_AT, "test") for config in configs
        }
        self.gets = 0
        self.writes = 0
        self.interleaved_write: AffiliateConfig | None = None

    def get(self, affiliate_id: str) -> StoredAffiliate | None:
        self.gets += 1
        stored = self.items.get(affiliate_id)
        if self.interleaved_write is not None and stored is not None:
            other, self.interleaved_write = self.interleaved_write, None
            self.items[affiliate_id] = replace(stored, config=other, version=stored.version + 1, updated_by="other")
        return stored

    def put(self, config: AffiliateConfig, *, expected_version: int | None, updated_by: str) -> StoredAffiliate:
        current = self.items.get(config.affiliate_id)
        if (current.version if current else None) != expected_version:
            # The DynamoDB store's sentences.
            if expected_version is None:
                raise ConflictError(f"Affiliate {config.affiliate_id} already exists.")
            raise ConflictError(f"Affiliate {config.affiliate_id} changed since version {expected_version}.")
        stored = StoredAffiliate(config, (expected_version or 0) + 1, SAVED_AT, updated_by)
        self.items[config.affiliate_id] = stored
        self.writes += 1
        return stored

    def list(self) -> list[StoredAffiliate]:
        return sorted(self.items.values(), key=lambda stored: stored.config.affiliate_id)

    def set_enabled(self, affiliate_id: str, enabled: bool, *, updated_by: str) -> StoredAffiliate:
        current = self.items.get(affiliate_id)
        if current is None:
            raise NotFoundError(f"Affiliate {affiliate_id} does not exist.")
        config = current.config.model_copy(update={"enabled": enabled})
        stored = StoredAffiliate(config, current.version + 1, TOGGLED_AT, updated_by)
        self.items[affiliate_id] = stored
        self.writes += 1
        return stored
