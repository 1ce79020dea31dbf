"""One affiliate's deliveries spread over DELIVERY_SHARDS partitions (issue 24), on moto: every
reader by affiliate reads every shard and merges them newest first, and still sees the items
written before the shards (partition `<affiliate_id>`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from fakes import FakePostbackQueue

from postback_relay.adapters.dynamodb_conversions import DynamoConversionLog
from postback_relay.adapters.dynamodb_deliveries import (
    DELIVERY_SHARDS,
    PARTITION_KEY,
    DynamoDeliveryLog,
    key_of,
    shard_of,
    unsharded_key_of,
)
from postback_relay.adapters.dynamodb_testruns import DynamoTestRunStore
from postback_relay.domain.delivery import Attempt, DeliveryState, PostbackMessage
from postback_relay.domain.events import Event
from postback_relay.services.lookup import DeliveryLookup, replay_failed

AFFILIATE = "5550001"
AT = datetime(2026, 12, 6, 12, tzinfo=UTC)


def message(n: int, *, minutes: int) -> PostbackMessage:
    return PostbackMessage(
        delivery_id=f"{n:032x}",
        affiliate_id=AFFILIATE,
        transaction_id=f"T-{n}",
        event=Event.SALE,
        offer_id="89",
        url=f"https://track.example/pb?cid={n}",
        created_at=AT + timedelta(minutes=minutes),
    )


def attempt(outcome: str, status: int) -> Attempt:
    fields = {"attempt": 1, "at": AT, "url": "https://track.example/pb", "method": "GET", "status": status}
    return Attempt.model_validate(fields | {"outcome": outcome})


def log_delivered(log: DynamoDeliveryLog, postback: PostbackMessage) -> None:
    log.record_attempt(postback, attempt("delivered", 200), DeliveryState.DELIVERED)


def log_failed(log: DynamoDeliveryLog, postback: PostbackMessage) -> None:
    log.record_attempt(postback, attempt("failed", 404), DeliveryState.FAILED, reason="answered HTTP 404")


@pytest.fixture
def client(aws: dict[str, str]) -> Any:
    return boto3.client("dynamodb")


@pytest.fixture
def log(aws: dict[str, str], client: Any) -> DynamoDeliveryLog:
    return DynamoDeliveryLog(aws["DeliveriesTableName"], client=client)


@pytest.fixture
def lookup(aws: dict[str, str], client: Any, log: DynamoDeliveryLog) -> DeliveryLookup:
    """A transaction's postbacks, through its conversion records or its test run, in `log`."""
    conversions = DynamoConversionLog(aws["ConversionsTableName"], client=client)
    return DeliveryLookup(log, conversions, DynamoTestRunStore(aws["TestRunsTableName"], client=client))


def partitions_written(client: Any, table: str) -> set[str]:
    return {item[PARTITION_KEY]["S"] for item in client.scan(TableName=table)["Items"]}


def write_unsharded(client: Any, table: str, log: DynamoDeliveryLog, postback: PostbackMessage, state: str) -> None:
    """An item as the log wrote it before the shards: the same item, under `<affiliate_id>`."""
    (log_failed if state == "failed" else log_delivered)(log, postback)
    item = client.get_item(TableName=table, Key=key_of(postback.ref))["Item"]
    client.delete_item(TableName=table, Key=key_of(postback.ref))
    client.put_item(TableName=table, Item={**item, **unsharded_key_of(postback.ref)})


def test_an_affiliates_postbacks_spread_over_the_shards_and_are_listed_newest_first(
    aws: dict[str, str], client: Any, log: DynamoDeliveryLog
) -> None:
    # GIVEN 40 postbacks of one affiliate, a minute apart, logged oldest first
    postbacks = [message(n, minutes=n) for n in range(40)]
    for postback in postbacks:
        log_delivered(log, postback)
    newest_first = [p.delivery_id for p in reversed(postbacks)]
    # WHEN the table is read
    written = partitions_written(client, aws["DeliveriesTableName"])
    # THEN they are in more than one partition, each a shard of the affiliate's
    assert len(written) > 1
    assert written <= {f"{AFFILIATE}#{n}" for n in range(DELIVERY_SHARDS)}
    assert written == {f"{AFFILIATE}#{shard_of(p.delivery_id)}" for p in postbacks}
    # AND the listings merge every shard newest first: the newest 10, all of them, since a time
    assert [r.delivery_id for r in log.by_affiliate(AFFILIATE, limit=10)] == newest_first[:10]
    assert [r.delivery_id for r in log.by_affiliate(AFFILIATE, limit=100)] == newest_first
    since = log.created_since(AFFILIATE, AT + timedelta(minutes=25))
    assert [r.delivery_id for r in since] == newest_first[:15]
    # AND each record reads back under its affiliate, addressed by its message's key
    assert {r.message.affiliate_id for r in since} == {AFFILIATE}
    assert all(log.get(p.ref) is not None for p in postbacks)


def test_failed_postbacks_of_every_shard_are_listed_and_replayed(
    aws: dict[str, str], client: Any, log: DynamoDeliveryLog, lookup: DeliveryLookup
) -> None:
    # GIVEN 12 postbacks of one affiliate, every third failed for good, in several shards
    postbacks = [message(100 + n, minutes=n) for n in range(12)]
    failed = postbacks[::3]
    for postback in postbacks:
        (log_failed if postback in failed else log_delivered)(log, postback)
    assert len({shard_of(p.delivery_id) for p in failed}) > 1
    # WHEN the affiliate's failed postbacks are listed and replayed
    listed = [r.delivery_id for r in log.failed(affiliate_id=AFFILIATE)]
    queue = FakePostbackQueue()
    replayed = replay_failed(lookup, queue, affiliate_id=AFFILIATE)
    # THEN every failed one is found, newest first, queued again and marked pending
    assert listed == [p.delivery_id for p in reversed(failed)]
    assert sorted(m.delivery_id for m in queue.sent) == sorted(p.delivery_id for p in failed)
    assert replayed
    assert {log.get(p.ref).state for p in failed} == {DeliveryState.PENDING}  # type: ignore[union-attr]


def test_items_written_before_the_shards_are_still_read(
    aws: dict[str, str], client: Any, log: DynamoDeliveryLog
) -> None:
    # GIVEN an affiliate's two postbacks logged before the shards (partition `<affiliate_id>`),
    # one delivered and one failed, and a newer one logged in its shard
    table = aws["DeliveriesTableName"]
    old_delivered, old_failed, new = message(200, minutes=0), message(201, minutes=1), message(202, minutes=2)
    write_unsharded(client, table, log, old_delivered, "delivered")
    write_unsharded(client, table, log, old_failed, "failed")
    log_delivered(log, new)
    assert AFFILIATE in partitions_written(client, table)
    # WHEN the affiliate's postbacks are listed
    # THEN the old items are merged in, by time, and the failed one is listed as failed
    listed = [r.delivery_id for r in log.by_affiliate(AFFILIATE)]
    assert listed == [new.delivery_id, old_failed.delivery_id, old_delivered.delivery_id]
    assert [r.delivery_id for r in log.created_since(AFFILIATE, AT)] == listed
    assert [r.delivery_id for r in log.failed(affiliate_id=AFFILIATE)] == [old_failed.delivery_id]
    assert [r.delivery_id for r in log.failed()] == [old_failed.delivery_id]
    # AND a replay of the old failed one marks the old item pending
    log.mark_replayed(old_failed.ref)
    old_item = client.get_item(TableName=table, Key=unsharded_key_of(old_failed.ref))["Item"]
    assert old_item["state"]["S"] == "pending"
    # AND once the replayed postback is logged in its shard, it is listed once, the shard's item
    log_delivered(log, old_failed)
    records = log.by_affiliate(AFFILIATE)
    assert [(r.delivery_id, r.state) for r in records] == [
        (new.delivery_id, DeliveryState.DELIVERED),
        (old_failed.delivery_id, DeliveryState.DELIVERED),
        (old_delivered.delivery_id, DeliveryState.DELIVERED),
    ]


def test_a_transactions_postbacks_are_found_in_their_shard_or_before_the_shards(
    aws: dict[str, str], client: Any, log: DynamoDeliveryLog, lookup: DeliveryLookup
) -> None:
    # GIVEN a test-link run's two postbacks: one logged in its shard, one before the shards
    from postback_relay.domain.testrun import TestRun, TestStep

    run_id = "20261206T120000-abcdef12"
    first = message(300, minutes=0).model_copy(update={"transaction_id": f"test-{run_id}-1"})
    second = message(301, minutes=0).model_copy(update={"transaction_id": f"test-{run_id}-2"})
    runs = DynamoTestRunStore(aws["TestRunsTableName"], client=client)
    runs.create(TestRun(run_id=run_id, affiliate_id=AFFILIATE, started_by="ops", started_at=AT))
    postbacks = [
        {"transaction_id": m.transaction_id, "delivery_id": m.delivery_id, "created_at": m.created_at.isoformat()}
        for m in (first, second)
    ]
    runs.append_step(run_id, TestStep(name="fire_postbacks", ok=True, at=AT, details={"postbacks": postbacks}))
    log_delivered(log, first)
    write_unsharded(client, aws["DeliveriesTableName"], log, second, "delivered")
    # WHEN each transaction's postbacks are listed
    # THEN each is found where it was written
    assert [r.delivery_id for r in lookup.by_transaction(first.transaction_id)] == [first.delivery_id]
    assert [r.delivery_id for r in lookup.by_transaction(second.transaction_id)] == [second.delivery_id]
    assert json.loads(json.dumps(lookup.by_transaction(second.transaction_id)[0].message.model_dump(mode="json")))


def test_the_portals_one_read_gives_the_window_and_at_least_the_newest_asked_for(
    aws: dict[str, str], client: Any, log: DynamoDeliveryLog
) -> None:
    # GIVEN 40 postbacks of one affiliate, a minute apart, 15 of them in the last window
    postbacks = [message(300 + n, minutes=n) for n in range(40)]
    for postback in postbacks:
        log_delivered(log, postback)
    newest_first = [p.delivery_id for p in reversed(postbacks)]
    since = AT + timedelta(minutes=25)
    queries: list[str] = []
    client.meta.events.register("before-call.dynamodb.Query", lambda params, **_: queries.append(params["body"]))
    # WHEN the window is read with at least 10, 20 and 200 of the newest
    # THEN each gives every one of the window, then older ones up to the number asked for
    assert [r.delivery_id for r in log.created_since(AFFILIATE, since, at_least=10)] == newest_first[:15]
    assert [r.delivery_id for r in log.created_since(AFFILIATE, since, at_least=20)] == newest_first[:20]
    queries.clear()
    assert [r.delivery_id for r in log.created_since(AFFILIATE, since, at_least=200)] == newest_first
    # AND 200 of 40 took one Query of each partition: its shards and the one before the shards
    assert len(queries) == DELIVERY_SHARDS + 1
    # AND a busy window (all 40 in it, at least 16 asked for) reads a small first page of each
    # partition (a 16th of 16, plus one), then the window's larger pages where more is left
    queries.clear()
    assert len(log.created_since(AFFILIATE, AT, at_least=16)) == 40
    limits = [json.loads(body)["Limit"] for body in queries]
    assert limits.count(2) == DELIVERY_SHARDS + 1
    assert set(limits) == {2, 64}
