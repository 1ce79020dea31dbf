"""The in-memory affiliate config cache: warm ingest reads no configuration."""

from __future__ import annotations

from fakes import INGEST_AFFILIATE_ID, FakeAffiliateStore, ingest_config

from postback_relay.adapters.dynamodb_affiliates import UNKNOWN_AFFILIATE_CACHE_S, CachedAffiliateStore


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


def test_an_unknown_affiliate_is_remembered_for_seconds_not_for_the_cache_time() -> None:
    # GIVEN a cache of 60 s over an empty store
    store = FakeAffiliateStore()
    clock = Clock()
    cache = CachedAffiliateStore(store, ttl_s=60, clock=clock)

    # WHEN an unknown ID is read twice within a second, THEN the store is asked once (bounded cost)
    assert cache.get(INGEST_AFFILIATE_ID) is None
    clock.now += 1
    assert cache.get(INGEST_AFFILIATE_ID) is None
    assert store.gets == 1

    # WHEN ops onboard it behind the cache's back
    store.put(ingest_config(), expected_version=None, updated_by="ops")
    clock.now += UNKNOWN_AFFILIATE_CACHE_S

    # THEN it is seen within 5 s of the first miss (contract section 3), not after 60 s
    assert UNKNOWN_AFFILIATE_CACHE_S <= 2
    stored = cache.get(INGEST_AFFILIATE_ID)
    assert stored is not None and stored.config.affiliate_id == INGEST_AFFILIATE_ID


def test_a_flood_of_unknown_ids_costs_one_read_per_id_per_miss_window() -> None:
    # GIVEN a warm cache and a platform posting conversions for an ID nobody onboarded, 20 a second
    store = FakeAffiliateStore()
    clock = Clock()
    cache = CachedAffiliateStore(store, ttl_s=60, clock=clock)

    # WHEN it goes on for 60 s
    for _ in range(60 * 20):
        cache.get("9999999")
        clock.now += 0.05

    # THEN the store was read once per miss window at most: 30 reads, not 1,200
    assert store.gets <= 60 / UNKNOWN_AFFILIATE_CACHE_S + 1


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
