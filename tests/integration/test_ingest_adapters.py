"""The ingest adapters against moto (and botocore's Stubber where the exact request matters)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from fakes import INGEST_AFFILIATE_ID, FakeAffiliateStore, FakeConversionLog, ingest_config, ingest_conversion

from postback_relay.adapters.dynamodb_affiliates import DynamoAffiliateStore
from postback_relay.adapters.dynamodb_conversions import (
    DynamoConversionLog,
    conversion_item,
    delivery_refs_of,
    messages_of_item,
)
from postback_relay.adapters.sqs_queue import SqsPostbackQueue
from postback_relay.domain.config import ExpectedAnswer, HttpMethod
from postback_relay.domain.conversion import ConversionOutcome, ConversionResult
from postback_relay.domain.delivery import PostbackMessage
from postback_relay.domain.errors import ConflictError, InfrastructureError, NotFoundError
from postback_relay.domain.events import Event
from postback_relay.domain.records import FirstRecord
from postback_relay.services.ingest import MAX_MESSAGE_BYTES, IngestService

NOW = datetime(2026, 11, 25, 12, 0, 5, tzinfo=UTC)


def queued_result(**changes: Any) -> ConversionResult:
    data: dict[str, Any] = {
        "transaction_id": "T-2026-000123",
        "event": Event.SALE,
        "affiliate_id": INGEST_AFFILIATE_ID,
        "outcome": ConversionOutcome.QUEUED,
        "postbacks_queued": 1,
        "delivery_ids": ("d" * 32,),
    }
    data.update(changes)
    return ConversionResult(**data)


def message(n: int) -> PostbackMessage:
    return PostbackMessage(
        delivery_id=f"{n:032x}",
        affiliate_id=INGEST_AFFILIATE_ID,
        transaction_id=f"T-{n}",
        event=Event.SALE,
        offer_id="89",
        url=f"https://track.acme.example/postback?cid={n}",
        created_at=NOW,
    )


# --- affiliates -------------------------------------------------------------------------


@pytest.fixture
def affiliates(aws: dict[str, str]) -> DynamoAffiliateStore:
    return DynamoAffiliateStore(
        aws["AffiliatesTableName"], client=boto3.client("dynamodb"), allow_loopback=True, clock=lambda: NOW
    )


def test_affiliate_put_then_get_round_trips_the_config(affiliates: DynamoAffiliateStore) -> None:
    # GIVEN a config saved
    stored = affiliates.put(ingest_config(), expected_version=None, updated_by="ops@example")

    # WHEN it is read back, THEN it is equal, at version 1, with who and when
    read = affiliates.get(INGEST_AFFILIATE_ID)
    assert read == stored
    assert (read.version, read.updated_by, read.updated_at) == (1, "ops@example", "2026-11-25T12:00:05Z")
    assert affiliates.get("7654321") is None


def test_affiliate_put_is_optimistically_locked(affiliates: DynamoAffiliateStore) -> None:
    # GIVEN version 1 saved
    affiliates.put(ingest_config(), expected_version=None, updated_by="a")

    # THEN creating it again, or updating from a stale version, is a conflict
    with pytest.raises(ConflictError):
        affiliates.put(ingest_config(), expected_version=None, updated_by="b")
    assert affiliates.put(ingest_config(name="Acme 2"), expected_version=1, updated_by="b").version == 2
    with pytest.raises(ConflictError):
        affiliates.put(ingest_config(name="Acme 3"), expected_version=1, updated_by="c")
    stored = affiliates.get(INGEST_AFFILIATE_ID)
    assert stored is not None and stored.config.name == "Acme 2"


def test_affiliate_enable_disable(affiliates: DynamoAffiliateStore) -> None:
    affiliates.put(ingest_config(), expected_version=None, updated_by="a")

    # WHEN disabled, THEN the config reads as disabled at the next version
    disabled = affiliates.set_enabled(INGEST_AFFILIATE_ID, False, updated_by="ops")
    assert (disabled.config.enabled, disabled.version) == (False, 2)
    stored = affiliates.get(INGEST_AFFILIATE_ID)
    assert stored is not None and stored.config.enabled is False

    # AND an unknown affiliate cannot be disabled
    with pytest.raises(NotFoundError):
        affiliates.set_enabled("7654321", False, updated_by="ops")


def test_affiliate_list_is_sorted_by_id(affiliates: DynamoAffiliateStore) -> None:
    for affiliate_id in ("300", "100", "200"):
        affiliates.put(ingest_config(affiliate_id), expected_version=None, updated_by="a")
    assert [s.config.affiliate_id for s in affiliates.list()] == ["100", "200", "300"]


def test_affiliate_store_errors_are_infrastructure_errors() -> None:
    # GIVEN a table that does not exist (no moto set-up: the Stubber answers)
    client = boto3.client("dynamodb")
    store = DynamoAffiliateStore("missing", client=client)
    with Stubber(client) as stub:
        stub.add_client_error("get_item", service_error_code="ResourceNotFoundException")
        with pytest.raises(InfrastructureError):
            store.get(INGEST_AFFILIATE_ID)


# --- conversions ------------------------------------------------------------------------


@pytest.fixture
def conversions(aws: dict[str, str]) -> DynamoConversionLog:
    return DynamoConversionLog(aws["ConversionsTableName"], client=boto3.client("dynamodb"), clock=lambda: NOW)


def test_record_once_then_repeats_answer_the_first_result(conversions: DynamoConversionLog) -> None:
    # GIVEN a conversion recorded with its result
    first = queued_result()
    assert conversions.record(ingest_conversion(), first) is None

    # WHEN it is recorded again with another result
    again = conversions.record(
        ingest_conversion(amount="99.00"), queued_result(outcome=ConversionOutcome.TRACKER_MISMATCH)
    )

    # THEN the first result comes back (without the delivery IDs, which the record leaves out)
    assert again is not None
    assert again.result == first.model_copy(update={"delivery_ids": ()})
    # AND it names the field the repeat changes
    assert again.differing == ("amount",)


def test_a_repeat_of_a_conversion_without_an_affiliate_answers_its_first_result(
    conversions: DynamoConversionLog,
) -> None:
    # GIVEN a conversion recorded whose link named no affiliate (found by the schemathesis run:
    # its repeat answered 500, the stored result lacking the None it left out)
    first = queued_result(
        affiliate_id=None,
        outcome=ConversionOutcome.UNKNOWN_AFFILIATE,
        postbacks_queued=0,
        delivery_ids=(),
        reason="no link",
    )
    assert conversions.record(ingest_conversion(), first) is None

    # WHEN it is posted again, THEN the first result comes back, the same content
    assert conversions.record(ingest_conversion(), first) == FirstRecord(first)


def stream_records(aws: dict[str, str]) -> list[dict[str, Any]]:
    streams = boto3.client("dynamodbstreams")
    stream_arn = aws["ConversionsStreamArn"]
    (shard,) = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
    iterator = streams.get_shard_iterator(
        StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    return list(streams.get_records(ShardIterator=iterator)["Records"])


def test_a_repeat_writes_nothing_so_the_stream_holds_one_insert(
    aws: dict[str, str], conversions: DynamoConversionLog
) -> None:
    # GIVEN a conversion recorded with its postback's message, then recorded again
    assert conversions.record(ingest_conversion(), queued_result(), [message(1)], received_at=NOW) is None
    assert conversions.record(ingest_conversion(), queued_result(), [message(1)], received_at=NOW) is not None

    # THEN the table's stream holds one INSERT, whose image rebuilds the message exactly
    (record,) = stream_records(aws)
    assert record["eventName"] == "INSERT"
    assert messages_of_item(record["dynamodb"]["NewImage"]) == [message(1)]


def outbox_messages() -> list[PostbackMessage]:
    """Every shape a postback message takes: GET, signed POST with a body and a content type,
    an expected answer, a created_at with and without microseconds."""
    base = {
        "affiliate_id": INGEST_AFFILIATE_ID,
        "transaction_id": "T-2026-000123",
        "event": Event.SALE,
        "offer_id": "89",
    }
    return [
        PostbackMessage(
            **base, delivery_id="a" * 32, url="https://track.acme.example/p?cid=c123&payout=25.00", created_at=NOW
        ),
        PostbackMessage(
            **base,
            delivery_id="b" * 32,
            method=HttpMethod.POST,
            url="https://track.acme.example/post",
            body='{"cid":"c123","é":"ü"}',
            content_type="application/json",
            expect=ExpectedAnswer(status=(200, 201), body_contains="success=true"),
            signed=True,
            created_at=NOW,
        ),
        PostbackMessage(
            **base,
            delivery_id="c" * 32,
            url="https://track.acme.example/lead?cid=c123",
            created_at=NOW.replace(microsecond=123456),
        ),
    ]


@pytest.mark.parametrize("received_at", [NOW, NOW.replace(microsecond=123456)], ids=["whole-second", "microseconds"])
def test_the_item_rebuilds_every_message_exactly(received_at: datetime) -> None:
    # GIVEN messages of every shape, WHEN a conversion's item carries them
    messages = outbox_messages()
    result = queued_result(postbacks_queued=3, delivery_ids=tuple(m.delivery_id for m in messages))
    item = conversion_item(ingest_conversion(), result, received_at=received_at, messages=messages)

    # THEN they are rebuilt equal, field for field, from the item (as the stream's image holds it)
    assert messages_of_item(item) == messages
    assert [m.model_dump_json() for m in messages_of_item(item)] == [m.model_dump_json() for m in messages]
    # AND the fields the item holds anyway are not kept twice
    kept = json.loads(item["postbacks"]["S"])
    assert all("transaction_id" not in entry and "offer_id" not in entry for entry in kept)


def test_a_conversion_record_addresses_its_deliveries_in_the_log() -> None:
    # GIVEN a conversion's item carrying its messages (the outbox)
    messages = outbox_messages()
    result = queued_result(postbacks_queued=3, delivery_ids=tuple(m.delivery_id for m in messages))
    item = conversion_item(ingest_conversion(), result, received_at=NOW, messages=messages)
    # WHEN the delivery log's keys are read from it (`deliveries --transaction`)
    refs = delivery_refs_of(item)
    # THEN they are the messages' own: affiliate, creation time (to the microsecond) and ID
    assert refs == [m.ref for m in messages]
    assert refs[2].sort_key == f"{NOW.strftime('%Y-%m-%dT%H:%M:%S')}.123Z#{'c' * 32}"
    # AND a record that keeps no messages (none fired, or written before the outbox) has none
    nothing = queued_result(outcome=ConversionOutcome.EVENT_NOT_SUBSCRIBED, postbacks_queued=0, delivery_ids=())
    assert delivery_refs_of(conversion_item(ingest_conversion(), nothing, received_at=NOW)) == []


def test_an_item_without_postbacks_rebuilds_none_and_a_broken_outbox_says_so() -> None:
    nothing = queued_result(outcome=ConversionOutcome.EVENT_NOT_SUBSCRIBED, postbacks_queued=0, delivery_ids=())
    item = conversion_item(ingest_conversion(), nothing, received_at=NOW)
    assert "postbacks" not in item
    assert messages_of_item(item) == []
    with pytest.raises(ValueError, match="validation error"):
        messages_of_item({**item, "postbacks": {"S": '[{"url": 3}]'}})


def test_the_happy_path_item_is_one_write_unit_and_twenty_largest_postbacks_fit_an_item() -> None:
    # GIVEN the sample sale resolved by the ingest service, as it fires its one postback
    service = IngestService(FakeAffiliateStore(ingest_config()), FakeConversionLog(), clock=lambda: NOW)
    conversion = ingest_conversion()
    resolved = service.resolve(conversion, now=NOW)
    (postback,) = resolved.messages

    # WHEN its item is made
    item = conversion_item(conversion, resolved.result, received_at=NOW, messages=resolved.messages)

    # THEN it is one write unit (1 KB) with its outbox
    size = dynamodb_size(dict(item))
    print(f"\nhappy-path conversion item: {size} bytes, outbox {len(item['postbacks']['S'])} bytes")
    assert size < 1024

    # AND 20 postbacks (a config's most) at the largest message ingest lets through fit an item
    largest = postback.model_copy(update={"body": "x" * (MAX_MESSAGE_BYTES - len(postback.model_dump_json()) - 9)})
    assert len(largest.model_dump_json()) <= MAX_MESSAGE_BYTES
    twenty = [largest.model_copy(update={"delivery_id": f"{n:032x}"}) for n in range(20)]
    result = resolved.result.model_copy(update={"delivery_ids": tuple(m.delivery_id for m in twenty)})
    big = conversion_item(conversion, result, received_at=NOW, messages=twenty)
    assert dynamodb_size(dict(big)) < 400 * 1024


def test_a_repeat_of_a_free_registration_whose_affiliate_could_not_be_read_answers_its_first_result(
    conversions: DynamoConversionLog,
) -> None:
    # GIVEN a registration without money whose link named no affiliate, recorded as such
    conversion = ingest_conversion(event="registration", amount=None, currency=None)
    first = queued_result(
        event=Event.REGISTRATION,
        outcome=ConversionOutcome.UNKNOWN_AFFILIATE,
        affiliate_id=None,
        postbacks_queued=0,
        delivery_ids=(),
    )
    assert conversions.record(conversion, first) is None
    # WHEN the platform posts it again, THEN the first result comes back (not a 500)
    assert conversions.record(conversion, first) == FirstRecord(first)


def test_record_is_one_conditional_put_returning_the_old_item() -> None:
    # GIVEN a stubbed client, WHEN a conversion is recorded
    client = boto3.client("dynamodb")
    log = DynamoConversionLog("Conversions", client=client, clock=lambda: NOW)
    with Stubber(client) as stub:
        stub.add_response(
            "put_item",
            {},
            {
                "TableName": "Conversions",
                "Item": ANY,
                "ConditionExpression": "attribute_not_exists(conversion_id)",
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            },
        )
        # THEN exactly that one request is made
        assert log.record(ingest_conversion(), queued_result()) is None
        stub.assert_no_pending_responses()


def dynamodb_size(item: dict[str, Any]) -> int:
    """DynamoDB's item size: attribute names plus values (numbers about one byte per two digits)."""
    size = 0
    for name, value in item.items():
        size += len(name.encode())
        if "S" in value:
            size += len(value["S"].encode())
        else:
            size += len(value["N"]) // 2 + 2
    return size


def test_record_of_a_worst_case_conversion_stays_under_one_kilobyte() -> None:
    # GIVEN every recorded field at its longest and a long reason sentence
    conversion = ingest_conversion(
        transaction_id="T" * 128,
        offer={"id": "9" * 64, "type": "revshare", "name": "N" * 256},
        amount="123456789012345.123456",
    )
    result = ConversionResult(
        transaction_id=conversion.transaction_id,
        event=conversion.event,
        affiliate_id="1" * 64,
        outcome=ConversionOutcome.EVENT_NOT_SUBSCRIBED,
        reason="r" * 2000,
        error_kind="placeholder_unfilled",
    )

    # THEN the item is one write unit
    item = conversion_item(conversion, result, received_at=NOW)
    assert dynamodb_size(dict(item)) < 1024
    assert int(item["expires_at"]["N"]) == int(NOW.timestamp()) + 400 * 86400


def test_a_conversion_firing_the_most_postbacks_stays_under_one_kilobyte() -> None:
    # GIVEN every recorded field at its longest and the 20 postbacks a config may hold, all queued
    conversion = ingest_conversion(
        transaction_id="T" * 128,
        offer={"id": "9" * 64, "type": "revshare", "name": "N" * 256},
        amount="123456789012345.123456",
    )
    delivery_ids = tuple(f"{n:032x}" for n in range(20))
    result = ConversionResult(
        transaction_id=conversion.transaction_id,
        event=conversion.event,
        affiliate_id="1" * 32,
        outcome=ConversionOutcome.QUEUED,
        postbacks_queued=20,
        delivery_ids=delivery_ids,
    )

    # WHEN its item is made
    item = conversion_item(conversion, result, received_at=NOW)

    # THEN it is one write unit, keeping the first delivery IDs that fit
    kept = item["delivery_ids"]["S"].split()
    assert dynamodb_size(dict(item)) < 1024
    assert 5 <= len(kept) < 20
    assert tuple(kept) == delivery_ids[: len(kept)]


def test_a_typical_conversion_keeps_every_delivery_id() -> None:
    # GIVEN the sample conversion queued to three postbacks
    delivery_ids = ("a" * 32, "b" * 32, "c" * 32)
    item = conversion_item(ingest_conversion(), queued_result(delivery_ids=delivery_ids), received_at=NOW)

    # THEN all three are kept, and nothing queued keeps none
    assert item["delivery_ids"] == {"S": " ".join(delivery_ids)}
    nothing = queued_result(outcome=ConversionOutcome.EVENT_NOT_SUBSCRIBED, postbacks_queued=0, delivery_ids=())
    assert "delivery_ids" not in conversion_item(ingest_conversion(), nothing, received_at=NOW)


# --- queue ------------------------------------------------------------------------------


def test_queue_sends_in_batches_of_ten(aws: dict[str, str]) -> None:
    # GIVEN 25 messages, WHEN they are sent
    sqs = boto3.client("sqs")
    calls: list[int] = []
    sqs.meta.events.register(
        "provide-client-params.sqs.SendMessageBatch", lambda params, **kwargs: calls.append(len(params["Entries"]))
    )
    refused = SqsPostbackQueue(aws["PostbackQueueUrl"], client=sqs).send([message(n) for n in range(25)])

    # THEN three calls of 10, 10 and 5, and all 25 are on the queue as PostbackMessage JSON
    assert refused == []
    assert calls == [10, 10, 5]
    received: list[PostbackMessage] = []
    while answer := sqs.receive_message(QueueUrl=aws["PostbackQueueUrl"], MaxNumberOfMessages=10).get("Messages"):
        for entry in answer:
            received.append(PostbackMessage.model_validate_json(entry["Body"]))
            sqs.delete_message(QueueUrl=aws["PostbackQueueUrl"], ReceiptHandle=entry["ReceiptHandle"])
    assert sorted(m.delivery_id for m in received) == sorted(message(n).delivery_id for n in range(25))


def test_queue_retries_refused_entries_once() -> None:
    # GIVEN SQS refuses entry 1 of 3, then takes it on the retry
    sqs = boto3.client("sqs")
    queue = SqsPostbackQueue("https://sqs.eu-west-1.amazonaws.com/123456789012/q", client=sqs)
    failed = {"Id": "1", "SenderFault": False, "Code": "InternalError"}
    with Stubber(sqs) as stub:
        stub.add_response(
            "send_message_batch",
            {"Successful": [ok("0"), ok("2")], "Failed": [failed]},
        )
        stub.add_response(
            "send_message_batch",
            {"Successful": [ok("0")], "Failed": []},
            {"QueueUrl": ANY, "Entries": [{"Id": "0", "MessageBody": message(1).model_dump_json()}]},
        )
        # WHEN three are sent, THEN nothing is left refused
        assert queue.send([message(0), message(1), message(2)]) == []
        stub.assert_no_pending_responses()


def test_queue_returns_what_is_still_refused_after_the_retry() -> None:
    # GIVEN SQS is down for both tries
    sqs = boto3.client("sqs")
    queue = SqsPostbackQueue("https://sqs.eu-west-1.amazonaws.com/123456789012/q", client=sqs)
    with Stubber(sqs) as stub:
        stub.add_client_error("send_message_batch", service_error_code="ServiceUnavailable", http_status_code=503)
        stub.add_client_error("send_message_batch", service_error_code="ServiceUnavailable", http_status_code=503)
        # THEN every message comes back refused
        assert queue.send([message(0), message(1)]) == [message(0), message(1)]


def ok(entry_id: str) -> dict[str, str]:
    return {"Id": entry_id, "MessageId": f"m-{entry_id}", "MD5OfMessageBody": "0" * 32}
