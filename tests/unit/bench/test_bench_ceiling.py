"""One affiliate's ceiling (bench.ceiling, issue 24): the largest delivery item the config
allows, written by the adapter on moto, and the shards the delivery log spreads it over."""

from __future__ import annotations

from bench import ceiling
from postback_relay.adapters.dynamodb_deliveries import DELIVERY_SHARDS


def test_the_shards_sustain_500_postbacks_a_second_of_the_largest_item_replayed_once() -> None:
    # GIVEN the largest delivery item the config allows, attempt after attempt, on moto
    figures = ceiling.measure()
    # WHEN its write and read units are turned into one affiliate's ceiling
    # THEN one partition would take far fewer than 500 a second (the reason for the shards)
    assert figures["max_postbacks_per_s_one_affiliate_unsharded"] < ceiling.TARGET_POSTBACKS_S
    # AND the delivery log has as many shards as the computation asks, replayed items included
    assert figures["shards_needed_for_target_replayed_once"] <= DELIVERY_SHARDS
    assert figures["max_postbacks_per_s_one_affiliate"] >= ceiling.TARGET_POSTBACKS_S
    assert figures["max_postbacks_per_s_one_affiliate_replayed_once"] >= ceiling.TARGET_POSTBACKS_S
    # AND an attempt's write is billed on the item after it, which only grows
    sizes = figures["largest_item_bytes_by_attempt"]
    assert sizes == sorted(sizes)
    assert figures["wcu_per_attempt_largest_item"] == figures["largest_item_wcu_by_attempt"][-1]


def test_a_stored_message_weighs_no_more_than_the_message() -> None:
    # GIVEN the largest message (16 KB of JSON, a body of 2-byte characters)
    message = ceiling._largest_message()
    # WHEN it is logged once
    (size,) = ceiling.item_sizes(message, attempts=1, excerpt="", reason="")
    # THEN the item is about the message's size, not 3 times it (\u00e9 escapes)
    assert size < len(message.model_dump_json().encode()) + 2048
