"""The in-memory affiliate config cache: warm ingest reads no configuration."""

from __future__ import annotations

from fakes import INGEST_AFFILIATE_ID, FakeAffiliateStore, ingest_config

from postback_relay.adapters.dynamodb_affiliates import CachedAffiliateStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_get_is_served_from_memory_until_the_ttl_passes() -> None:
    # GIVEN a cache of 60 s over a store
    store = FakeAffiliateStore(ingest_config())
    clock = Clock()
    cache = CachedAffiliateStore(store, ttl_s=60, clock=clock)

    # WHEN the same affiliate is read three times within 60 s
    first = cache.get(INGEST_AFFILIATE_ID)
    clock.now += 59
    cache.get(INGEST_AFFILIATE_ID)
    assert first is not None

    # THEN the store was read once
    assert store.gets == 1

    # WHEN the config is disabled behind the cache's back and the TTL passes
    store.set_enabled(INGEST_AFFILIATE_ID, False, updated_by="ops")
    assert cache.get(INGEST_AFFILIATE_ID) == first  # still cached
    clock.now += 2

    # THEN the next read sees the change
    fresh = cache.get(INGEST_AFFILIATE_ID)
    assert fresh is not None and fresh.config.enabled is False
    assert store.gets == 2


def test_unknown_affiliates_are_cached_too() -> None:
    # GIVEN an empty store, WHEN an unknown ID is read twice, THEN the store is asked once
    store = FakeAffiliateStore()
    cache = CachedAffiliateStore(store, ttl_s=60, clock=Clock())
    assert cache.get("42") is None
    assert cache.get("42") is None
    assert store.gets == 1


def test_writes_through_the_cache_refresh_it() -> None:
    # GIVEN a cached config
    store = FakeAffiliateStore(ingest_config())
    cache = CachedAffiliateStore(store, ttl_s=60, clock=Clock())
    cache.get(INGEST_AFFILIATE_ID)

    # WHEN it is disabled through the cache, THEN the cache answers the new state without a read
    cache.set_enabled(INGEST_AFFILIATE_ID, False, updated_by="ops")
    stored = cache.get(INGEST_AFFILIATE_ID)
    assert stored is not None and stored.config.enabled is False
    assert store.gets == 1


def test_zero_ttl_reads_every_time() -> None:
    store = FakeAffiliateStore(ingest_config())
    cache = CachedAffiliateStore(store, ttl_s=0, clock=Clock())
    cache.get(INGEST_AFFILIATE_ID)
    cache.get(INGEST_AFFILIATE_ID)
    assert store.gets == 2
