"""One affiliate's ceiling (issue 24): the postbacks a second one affiliate's deliveries can take
before DynamoDB throttles the partition they are written to.

DynamoDB caps every partition at 1,000 write units and 3,000 read units a second (on demand as
well). The dispatcher makes, per attempt, one consistent GetItem (1 read unit per 4 KB) and one
UpdateItem, billed on the larger of the item before and after it (1 write unit per 1 KB). So
the ceiling depends on how large a delivery item can grow: the config allows a 2,048-character
URL and a message of up to 16 KB (services.ingest.MAX_MESSAGE_BYTES: a POST body filled by
macros), and an item keeps up to 8 attempts, each with a 200-character excerpt of the answer.

`measure()` writes that largest item with the real adapter on moto, attempt after attempt, and
sizes it as DynamoDB bills it (bench.cost.dynamodb_item_size); the typical item is the guide's
sample GET postback. The partition key is written sharded (`<affiliate_id>#<n>`, n from the
delivery ID, DELIVERY_SHARDS of them): one affiliate's postbacks spread over that many
partitions, so its ceiling is that many times one partition's.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from bench import cost

PARTITION_WRITE_UNITS_S = 1000
PARTITION_READ_UNITS_S = 3000
TARGET_POSTBACKS_S = 500  # what one affiliate must be able to sustain at the largest item
MAX_URL_CHARS = 2048


def _largest_message() -> Any:
    from postback_relay.domain.config import ExpectedAnswer, HttpMethod
    from postback_relay.domain.delivery import PostbackMessage
    from postback_relay.domain.events import Event
    from postback_relay.domain.postbacks import MAX_MESSAGE_BYTES

    base = "https://postback.example.com/p?"
    message = PostbackMessage(
        delivery_id="f" * 32,
        affiliate_id="A" * 32,
        transaction_id="T" * 64,
        event=Event.SALE,
        offer_id="O" * 32,
        method=HttpMethod.POST,
        url=base + "q" * (MAX_URL_CHARS - len(base)),
        body="",
        content_type="application/json",
        expect=ExpectedAnswer(status=(200, 201, 202, 204), body_contains="s" * 256),
        signed=True,
        created_at=datetime(2026, 12, 6, 12, 0, 0, 123000, tzinfo=UTC),
    )
    # A body of 2-byte characters (é): the most a message of 16 KB can weigh once stored.
    room = MAX_MESSAGE_BYTES - len(message.model_dump_json().encode())
    return message.model_copy(update={"body": "é" * (room // 2)})


def _typical_message() -> Any:
    from postback_relay.domain.delivery import PostbackMessage
    from postback_relay.domain.events import Event

    return PostbackMessage(
        delivery_id="0123456789abcdef0123456789abcdef",
        affiliate_id="1234567",
        transaction_id="T-100045",
        event=Event.SALE,
        offer_id="89",
        url="https://track.example-affiliate.com/postback?clickid=abc123def456&txid=T-100045&payout=12.50&event=sale",
        created_at=datetime(2026, 12, 6, 12, 0, 0, 123000, tzinfo=UTC),
    )


def _attempt(message: Any, number: int, *, excerpt: str) -> Any:
    from postback_relay.domain.delivery import Attempt

    return Attempt(
        attempt=number,
        at=message.created_at + timedelta(hours=number),
        url=message.url,
        method=message.method,
        status=503,
        latency_ms=10_000,
        excerpt=excerpt,
        error_kind="connection_error",
        outcome="retry",
    )


def item_sizes(message: Any, *, attempts: int, excerpt: str, reason: str) -> list[int]:
    """The item's size (bytes, as DynamoDB bills it) after each of `attempts` logged attempts,
    written by the delivery log's adapter on moto."""
    import boto3
    from moto import mock_aws

    from postback_relay.adapters.dynamodb_deliveries import DynamoDeliveryLog, key_of
    from postback_relay.domain.delivery import DeliveryState

    with mock_aws():
        client = boto3.client("dynamodb", region_name="eu-west-1")
        client.create_table(
            TableName="deliveries",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": "affiliate_id", "AttributeType": "S"},
                {"AttributeName": "delivery_key", "AttributeType": "S"},
            ],
            KeySchema=[
                {"AttributeName": "affiliate_id", "KeyType": "HASH"},
                {"AttributeName": "delivery_key", "KeyType": "RANGE"},
            ],
        )
        log = DynamoDeliveryLog("deliveries", client=client)
        sizes = []
        for number in range(1, attempts + 1):
            log.record_attempt(
                message, _attempt(message, number, excerpt=excerpt), DeliveryState.RETRYING, reason=reason
            )
            item = client.get_item(TableName="deliveries", Key=key_of(message.ref))["Item"]
            sizes.append(cost.dynamodb_item_size(item))
        return sizes


def write_units_per_attempt(sizes: list[int]) -> list[int]:
    """Each attempt's UpdateItem: billed on the larger of the item before and after it."""
    before = [0, *sizes[:-1]]
    return [cost.write_units(max(b, a)) for b, a in zip(before, sizes, strict=True)]


def read_units(item_bytes: int) -> int:
    """One consistent GetItem: 1 read unit per 4 KB."""
    return max(1, math.ceil(item_bytes / 4096))


def shards_for(write_units: int, read_units_: int, *, target: float = TARGET_POSTBACKS_S) -> int:
    """The partitions one affiliate's deliveries need for `target` attempts a second."""
    writes = math.ceil(target * write_units / PARTITION_WRITE_UNITS_S)
    reads = math.ceil(target * read_units_ / PARTITION_READ_UNITS_S)
    return max(1, writes, reads)


def per_partition(write_units: int, read_units_: int) -> float:
    """Attempts a second one partition takes at this item's units (the lower of its caps)."""
    return min(PARTITION_WRITE_UNITS_S / write_units, PARTITION_READ_UNITS_S / read_units_)


def measure() -> dict[str, Any]:
    from postback_relay.adapters.dynamodb_deliveries import DELIVERY_SHARDS
    from postback_relay.domain.delivery import EXCERPT_CHARS, MAX_ATTEMPTS

    # Two rounds of 8 attempts: the schedule's, then a replay's (the item keeps both).
    sizes = item_sizes(
        _largest_message(),
        attempts=2 * MAX_ATTEMPTS,
        excerpt="😀" * EXCERPT_CHARS,  # 4 bytes a character
        reason="x" * 500,
    )
    typical = item_sizes(_typical_message(), attempts=1, excerpt="success=true", reason="")
    all_wcu = write_units_per_attempt(sizes)
    largest, largest_wcu = sizes[:MAX_ATTEMPTS], all_wcu[:MAX_ATTEMPTS]
    worst_wcu, worst_rcu = max(largest_wcu), read_units(max(largest))
    replayed_wcu, replayed_rcu = max(all_wcu), read_units(max(sizes))
    typical_wcu, typical_rcu = write_units_per_attempt(typical)[0], read_units(typical[0])
    one_partition = per_partition(worst_wcu, worst_rcu)
    return {
        "largest_item_bytes_by_attempt": largest,
        "largest_item_wcu_by_attempt": largest_wcu,
        "wcu_per_attempt_largest_item": worst_wcu,
        "rcu_per_attempt_largest_item": worst_rcu,
        "wcu_per_attempt_largest_item_replayed_once": replayed_wcu,
        "typical_item_bytes": typical[0],
        "wcu_per_attempt_typical_item": typical_wcu,
        "max_postbacks_per_s_one_affiliate_unsharded": math.floor(one_partition),
        "max_postbacks_per_s_one_affiliate_typical_unsharded": math.floor(per_partition(typical_wcu, typical_rcu)),
        "delivery_shards": DELIVERY_SHARDS,
        "shards_needed_for_target": shards_for(worst_wcu, worst_rcu),
        "shards_needed_for_target_replayed_once": shards_for(replayed_wcu, replayed_rcu),
        "target_postbacks_per_s": TARGET_POSTBACKS_S,
        "max_postbacks_per_s_one_affiliate": math.floor(one_partition * DELIVERY_SHARDS),
        "max_postbacks_per_s_one_affiliate_replayed_once": math.floor(
            per_partition(replayed_wcu, replayed_rcu) * DELIVERY_SHARDS
        ),
        "method": "the largest delivery item the config allows (a 2,048-character URL, a 16 KB POST message "
        "of 2-byte characters, 8 attempts each with a 200-character excerpt of 4-byte characters, a "
        "500-character last error) written attempt after attempt by the adapter on moto and sized as "
        "DynamoDB bills it; an attempt's UpdateItem costs the larger of the item before and after it "
        "(1 WCU per KB), its consistent GetItem 1 RCU per 4 KB; one partition takes 1,000 WCU and 3,000 "
        "RCU a second; one attempt per postback (a retried postback's later attempts spread over 27 hours)",
    }


if __name__ == "__main__":
    print(json.dumps(measure(), indent=2))
