"""The dispatcher's AWS adapters on moto: the delivery log, the circuit store, the retry control."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from fakes import ingest_conversion

from postback_relay import wiring
from postback_relay.adapters.dynamodb_conversions import DynamoConversionLog
from postback_relay.adapters.dynamodb_deliveries import DynamoDeliveryLog, key_of
from postback_relay.adapters.dynamodb_endpoints import DynamoEndpointStore, EndpointStore
from postback_relay.adapters.dynamodb_testruns import DynamoTestRunStore
from postback_relay.adapters.sqs_retry import SqsRetryControl
from postback_relay.domain.config import ExpectedAnswer
from postback_relay.domain.conversion import ConversionOutcome, ConversionResult
from postback_relay.domain.delivery import Attempt, Circuit, CircuitStatus, DeliveryState, PostbackMessage, key_time
from postback_relay.domain.errors import ConflictError
from postback_relay.domain.events import Event
from postback_relay.domain.testrun import TestRun, TestStep
from postback_relay.services.lookup import DeliveryLookup

if TYPE_CHECKING:
    from mypy_boto3_sqs.literals import QueueAttributeNameType

AT = datetime(2026, 11, 25, 12, 0, 1, tzinfo=UTC)


def message(n: int = 1, *, affiliate_id: str = "1234567", **changes: Any) -> PostbackMessage:
    fields: dict[str, Any] = {
        "delivery_id": f"{n:032x}",
        "affiliate_id": affiliate_id,
        "transaction_id": f"T-2026-{n:06d}",
        "event": "sale",
        "offer_id": "89",
        "url": f"https://track.acme.example/postback?cid=c{n}-0b9c4e1e-6a1f-4c3e-9d2a-5b8f7e6d4c3a&payout=25.00"
        "&cur=EUR&ev=sale&offer=89",
        "expect": ExpectedAnswer(body_contains="success=true"),
        "created_at": datetime(2026, 11, 25, 12, tzinfo=UTC),
    }
    return PostbackMessage.model_validate(fields | changes)


def attempt(number: int, status: int | None, outcome: str, **changes: Any) -> Attempt:
    fields: dict[str, Any] = {
        "attempt": number,
        "at": AT,
        "url": message().url,
        "method": "GET",
        "status": status,
        "latency_ms": 87,
        "excerpt": "success=true" if status == 200 else "x" * 500,
        "outcome": outcome,
    }
    return Attempt.model_validate(fields | changes)


def billed_size(value: Any) -> int:
    """An attribute value's size by DynamoDB's published rules (numbers rounded up)."""
    (kind, inner), *_ = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        return len(inner.lstrip("-").replace(".", "")) // 2 + 2
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + billed_size(v) for v in inner)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + billed_size(v) for k, v in inner.items())
    raise AssertionError(kind)


@pytest.fixture
def log(aws: dict[str, str]) -> DynamoDeliveryLog:
    return DynamoDeliveryLog(aws["DeliveriesTableName"], client=boto3.client("dynamodb"))


@pytest.fixture
def lookup(aws: dict[str, str]) -> DeliveryLookup:
    """A transaction's postbacks, through its conversion records or its test run (services.lookup)."""
    return wiring.delivery_lookup(
        aws["DeliveriesTableName"],
        conversions_table=aws["ConversionsTableName"],
        test_runs_table=aws["TestRunsTableName"],
        dynamodb=boto3.client("dynamodb"),
    )


def record_conversion(aws: dict[str, str], *postbacks: PostbackMessage) -> None:
    """The ConversionsTable record of the postbacks' conversion, as ingest writes it."""
    first = postbacks[0]
    result = ConversionResult(
        transaction_id=first.transaction_id,
        event=first.event,
        affiliate_id=first.affiliate_id,
        outcome=ConversionOutcome.QUEUED,
        postbacks_queued=len(postbacks),
        delivery_ids=tuple(p.delivery_id for p in postbacks),
    )
    conversion = ingest_conversion(transaction_id=first.transaction_id, event=first.event.value)
    log = DynamoConversionLog(aws["ConversionsTableName"], client=boto3.client("dynamodb"))
    assert log.record(conversion, result, postbacks, received_at=first.created_at) is None


def test_attempts_are_appended_and_read_back(log: DynamoDeliveryLog) -> None:
    # GIVEN a postback that failed once with a long answer, then was delivered
    postback = message(1)
    log.record_attempt(
        postback, attempt(1, 503, "retry", error_kind="http_status"), DeliveryState.RETRYING, reason="answered HTTP 503"
    )
    log.record_attempt(postback, attempt(2, 200, "delivered"), DeliveryState.DELIVERED)
    # WHEN it is read
    record = log.get(postback.ref)
    # THEN both attempts, the state, the last status and the whole message come back; excerpts are capped
    assert record is not None
    assert record.state is DeliveryState.DELIVERED
    assert [(a.attempt, a.status, a.outcome, a.url) for a in record.attempts] == [
        (1, 503, "retry", postback.url),
        (2, 200, "delivered", postback.url),
    ]
    assert len(record.attempts[0].excerpt or "") == 200
    assert record.http_status == 200
    assert record.last_error is None
    assert record.message == postback


def test_a_delivered_postback_refuses_any_further_attempt(log: DynamoDeliveryLog) -> None:
    # GIVEN a delivered postback
    postback = message(2)
    log.record_attempt(postback, attempt(1, 200, "delivered"), DeliveryState.DELIVERED)
    # WHEN another attempt or a deferral is logged, THEN the write is refused and nothing changes
    with pytest.raises(ConflictError):
        log.record_attempt(postback, attempt(2, 500, "retry"), DeliveryState.RETRYING)
    with pytest.raises(ConflictError):
        log.mark_deferred(postback, reason="circuit open")
    record = log.get(postback.ref)
    assert record is not None
    assert (record.state, len(record.attempts)) == (DeliveryState.DELIVERED, 1)


def test_the_happy_path_item_stays_under_one_kilobyte(aws: dict[str, str], log: DynamoDeliveryLog) -> None:
    # GIVEN a postback with a long URL delivered at the first attempt
    postback = message(3)
    log.record_attempt(postback, attempt(1, 200, "delivered"), DeliveryState.DELIVERED)
    # WHEN its item is measured as DynamoDB bills it
    item = boto3.client("dynamodb").get_item(TableName=aws["DeliveriesTableName"], Key=key_of(postback.ref))["Item"]
    # THEN it is one write unit
    assert sum(len(name.encode()) + billed_size(value) for name, value in item.items()) < 1024


def test_failed_deliveries_are_found_and_replay_marks_them_pending(
    aws: dict[str, str], log: DynamoDeliveryLog, lookup: DeliveryLookup
) -> None:
    # GIVEN failed postbacks of two affiliates and a delivered one, each of a recorded conversion
    failed_a, failed_b, delivered = message(4), message(5, affiliate_id="7654321"), message(6)
    for postback in (failed_a, failed_b, delivered):
        record_conversion(aws, postback)
    for postback in (failed_a, failed_b):
        log.record_attempt(postback, attempt(1, 404, "failed"), DeliveryState.FAILED, reason="answered HTTP 404")
    log.record_attempt(delivered, attempt(1, 200, "delivered"), DeliveryState.DELIVERED)
    # WHEN failed ones are listed, THEN by affiliate, by transaction and overall they are found
    assert [r.delivery_id for r in log.failed(affiliate_id="1234567")] == [failed_a.delivery_id]
    assert [r.delivery_id for r in lookup.failed(transaction_id=failed_b.transaction_id)] == [failed_b.delivery_id]
    assert {r.delivery_id for r in log.failed()} == {failed_a.delivery_id, failed_b.delivery_id}
    assert {r.delivery_id for r in log.by_affiliate("1234567")} == {failed_a.delivery_id, delivered.delivery_id}
    # WHEN one is marked replayed, THEN it is pending with one replay; a second mark is refused
    log.mark_replayed(failed_a.ref)
    record = log.get(failed_a.ref)
    assert record is not None
    assert (record.state, record.replays, record.last_error) == (DeliveryState.PENDING, 1, None)
    with pytest.raises(ConflictError):
        log.mark_replayed(failed_a.ref)


def test_a_transactions_postbacks_are_found_through_its_conversion_records(
    aws: dict[str, str], log: DynamoDeliveryLog, lookup: DeliveryLookup
) -> None:
    # GIVEN a transaction whose sale fired two postbacks and whose rebill, accepted a minute
    # later, fired one, and another transaction's postback
    sale_1, sale_2 = message(11, transaction_id="T-X"), message(12, transaction_id="T-X")
    rebill = message(13, transaction_id="T-X", event="rebill", created_at=AT + timedelta(minutes=1))
    other = message(14, transaction_id="T-Y")
    record_conversion(aws, sale_1, sale_2)
    record_conversion(aws, rebill)
    record_conversion(aws, other)
    log.record_attempt(sale_1, attempt(1, 200, "delivered"), DeliveryState.DELIVERED)
    log.record_attempt(sale_2, attempt(1, 404, "failed"), DeliveryState.FAILED, reason="answered HTTP 404")
    log.record_attempt(rebill, attempt(1, 503, "retry"), DeliveryState.RETRYING)
    log.record_attempt(other, attempt(1, 404, "failed"), DeliveryState.FAILED, reason="answered HTTP 404")

    # WHEN its postbacks are listed, THEN all three come back, the newest first, none of the other
    found = lookup.by_transaction("T-X")
    assert {r.delivery_id for r in found} == {sale_1.delivery_id, sale_2.delivery_id, rebill.delivery_id}
    assert found[0].message.event is Event.REBILL
    assert len(lookup.by_transaction("T-X", limit=1)) == 1
    # AND its failed ones are only its own; an unknown transaction has none
    assert [r.delivery_id for r in lookup.failed(transaction_id="T-X")] == [sale_2.delivery_id]
    assert lookup.by_transaction("T-never") == []


def test_a_test_link_postback_is_found_through_its_test_run(
    aws: dict[str, str], log: DynamoDeliveryLog, lookup: DeliveryLookup
) -> None:
    # GIVEN a test run whose fire_postbacks step queued two postbacks, one of them logged
    run_id = "20261125T120000-0a1b2c3d"
    first = message(21, transaction_id=f"test-{run_id}-1", test_run_id=run_id)
    second = message(22, transaction_id=f"test-{run_id}-2", test_run_id=run_id)
    postbacks = [
        {"n": n, "transaction_id": m.transaction_id, "delivery_id": m.delivery_id, "created_at": key_time(m.created_at)}
        for n, m in enumerate((first, second), start=1)
    ]
    DynamoTestRunStore(aws["TestRunsTableName"], client=boto3.client("dynamodb")).create(
        TestRun(
            run_id=run_id,
            affiliate_id="1234567",
            started_by="ops@example",
            started_at=AT,
            steps=(TestStep(name="fire_postbacks", at=AT, ok=True, details={"postbacks": postbacks}),),
        )
    )
    log.record_attempt(first, attempt(1, 200, "delivered"), DeliveryState.DELIVERED)

    # WHEN its transaction's postbacks are listed, THEN the logged one is found; an unknown run has none
    assert [r.delivery_id for r in lookup.by_transaction(first.transaction_id)] == [first.delivery_id]
    assert lookup.by_transaction(second.transaction_id) == []
    assert lookup.by_transaction("test-19990101T000000-00000000-1") == []


def test_an_affiliates_postbacks_are_read_newest_first_from_its_partition(log: DynamoDeliveryLog) -> None:
    # GIVEN an affiliate's three postbacks created a minute apart, logged newest first
    postbacks = [message(31 + n, affiliate_id="5550001", created_at=AT + timedelta(minutes=n)) for n in range(3)]
    for postback in reversed(postbacks):
        log.record_attempt(postback, attempt(1, 200, "delivered"), DeliveryState.DELIVERED)

    # WHEN the newest two are listed, THEN whole records come back, by creation time, newest first
    found = log.by_affiliate("5550001", limit=2)
    assert [r.delivery_id for r in found] == [postbacks[2].delivery_id, postbacks[1].delivery_id]
    assert [(r.message.url, len(r.attempts)) for r in found] == [(postbacks[2].url, 1), (postbacks[1].url, 1)]


def test_a_message_addresses_its_item_by_its_own_creation_time(log: DynamoDeliveryLog) -> None:
    # GIVEN a postback created at a moment with microseconds, logged once
    postback = message(41, created_at=datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=UTC))
    log.record_attempt(postback, attempt(1, 404, "failed"), DeliveryState.FAILED, reason="answered HTTP 404")
    # WHEN the log is read with the message's key, and with the same ID at another moment
    record = log.get(postback.ref)
    elsewhere = log.get(message(41, created_at=AT).ref)
    # THEN the first finds it and the second does not (the time is part of the key)
    assert record is not None
    assert elsewhere is None
    assert record.created_at == "2026-11-25T12:00:00.123Z"
    # AND the message kept for replay addresses the same item, so a replay logs onto it
    assert record.message.ref.sort_key == postback.ref.sort_key
    log.mark_replayed(record.ref)
    assert log.get(postback.ref).state is DeliveryState.PENDING  # type: ignore[union-attr]


def test_a_deferral_keeps_the_delivery_pending_without_an_attempt(log: DynamoDeliveryLog) -> None:
    # GIVEN a postback deferred by an open circuit
    postback = message(7, test_run_id="run-1")
    log.mark_deferred(postback, reason="circuit open for https://track.acme.example:443")
    # WHEN it is read, THEN it is pending, without attempts, with the reason and its test run
    record = log.get(postback.ref)
    assert record is not None
    assert (record.state, record.attempts, record.last_error) == (
        DeliveryState.PENDING,
        (),
        "circuit open for https://track.acme.example:443",
    )
    assert record.message.test_run_id == "run-1"


def test_the_log_also_takes_a_boto3_table(aws: dict[str, str]) -> None:
    # GIVEN the log built from a Table resource (wiring makes its low-level client)
    name, client = wiring.table_name_and_client(boto3.resource("dynamodb").Table(aws["DeliveriesTableName"]))
    log = DynamoDeliveryLog(name, client=client)
    # WHEN an attempt is logged and read, THEN it round-trips
    log.record_attempt(message(8), attempt(1, 200, "delivered"), DeliveryState.DELIVERED)
    assert log.get(message(8).ref) is not None


def test_circuits_are_saved_listed_and_the_trial_taken_once(aws: dict[str, str]) -> None:
    # GIVEN an open circuit on record
    store = DynamoEndpointStore(aws["EndpointsTableName"], client=boto3.client("dynamodb"))
    opened = Circuit("https://t.example:443", CircuitStatus.OPEN, 5, opened_until=1_800_000_060.5, cool_down_s=60)
    assert store.save(opened)
    assert store.get(opened.endpoint) == opened
    # WHEN two instances race for the trial
    trial = Circuit(opened.endpoint, CircuitStatus.HALF_OPEN, 5, opened.opened_until, 60, trial_until=1_800_000_090)
    first = store.save(trial, expected_opened_until=opened.opened_until)
    second = store.save(Circuit(opened.endpoint, CircuitStatus.HALF_OPEN, 5, 1.0, 60, 2.0), expected_opened_until=1.0)
    # THEN only the first gets it, and ops see the state (also through the config script's name)
    assert (first, second) == (True, False)
    name, client = wiring.table_name_and_client(boto3.resource("dynamodb").Table(aws["EndpointsTableName"]))
    assert EndpointStore(name, client=client).list() == [trial]


def test_retry_control_queues_a_delayed_copy_that_is_not_in_flight(aws: dict[str, str]) -> None:
    # GIVEN the retry control on the postback queue
    sqs = boto3.client("sqs")
    control = SqsRetryControl(aws["PostbackQueueUrl"], aws["DeadLetterQueueUrl"], client=sqs)
    # WHEN a copy is queued with a delay of 2 s (and one with more than SQS's 15 minutes)
    control.requeue('{"copy": 1}', delay_s=2)
    control.requeue('{"copy": 2}', delay_s=5000)
    # THEN both are delayed, neither in flight nor visible (moto honours DelaySeconds per message)
    names: list[QueueAttributeNameType] = [
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
        "ApproximateNumberOfMessages",
    ]
    depth = sqs.get_queue_attributes(QueueUrl=aws["PostbackQueueUrl"], AttributeNames=names)["Attributes"]
    assert {name: int(depth[name]) for name in names} == dict(zip(names, (0, 2, 0), strict=True))
    assert sqs.receive_message(QueueUrl=aws["PostbackQueueUrl"]).get("Messages", []) == []
    # AND the first is handed over after its delay
    (received,) = sqs.receive_message(QueueUrl=aws["PostbackQueueUrl"], WaitTimeSeconds=4)["Messages"]
    assert received["Body"] == '{"copy": 1}'


def test_retry_control_delays_a_message_and_parks_one_on_the_dlq(aws: dict[str, str]) -> None:
    # GIVEN a received postback message
    sqs = boto3.client("sqs")
    sqs.send_message(QueueUrl=aws["PostbackQueueUrl"], MessageBody="{}")
    (received,) = sqs.receive_message(QueueUrl=aws["PostbackQueueUrl"], VisibilityTimeout=0)["Messages"]
    control = SqsRetryControl(aws["PostbackQueueUrl"], aws["DeadLetterQueueUrl"], client=sqs)
    # WHEN it is delayed for an hour, THEN it is not visible
    control.delay(received["ReceiptHandle"], 3600)
    assert sqs.receive_message(QueueUrl=aws["PostbackQueueUrl"]).get("Messages", []) == []
    # WHEN a body is parked on the DLQ, THEN it is there with its reason and ID
    control.dead_letter("{}", reason="answered HTTP 404", delivery_id="abc")
    (parked,) = sqs.receive_message(QueueUrl=aws["DeadLetterQueueUrl"], MessageAttributeNames=["All"])["Messages"]
    attributes = {name: value["StringValue"] for name, value in parked["MessageAttributes"].items()}
    assert attributes == {"reason": "answered HTTP 404", "delivery_id": "abc"}


def test_an_opening_and_a_closing_are_each_recorded_by_one_writer(aws: dict[str, str]) -> None:
    # GIVEN no circuit on record for an endpoint
    store = DynamoEndpointStore(aws["EndpointsTableName"], client=boto3.client("dynamodb"))
    endpoint = "https://n.example:443"
    opened = Circuit(
        endpoint,
        CircuitStatus.OPEN,
        5,
        1_800_000_060.0,
        60,
        opened_at=1_800_000_000.0,
        affiliates=("1111111", "2222222"),
        failure_reasons=(("503", 4), ("timeout", 1)),
    )
    closed = Circuit(endpoint)
    open_from, close_from = {CircuitStatus.CLOSED}, {CircuitStatus.OPEN, CircuitStatus.HALF_OPEN}
    # WHEN two instances record the opening, then two record the closing
    openings = [store.save(opened, only_from=open_from), store.save(opened, only_from=open_from)]
    stored_open = store.get(endpoint)
    closings = [store.save(closed, only_from=close_from), store.save(closed, only_from=close_from)]
    # THEN one write of each wins (its writer announces the transition)
    assert (openings, closings) == ([True, False], [True, False])
    # AND the opening kept what the notice of the closing names
    assert stored_open == opened
    # AND a closed circuit on record opens again once it fails again
    assert store.save(opened, only_from=open_from) is True
    # AND a closing with nothing on record is no transition
    assert store.save(Circuit("https://never.example:443"), only_from=close_from) is False


def test_an_affiliates_postbacks_created_since_a_moment_newest_first(aws: dict[str, str]) -> None:
    # GIVEN one affiliate's postbacks created an hour apart, and another affiliate's
    log = DynamoDeliveryLog(aws["DeliveriesTableName"], client=boto3.client("dynamodb"))
    for n in (1, 2, 3):
        postback = message(20 + n, created_at=AT + timedelta(hours=n - 1))
        log.record_attempt(postback, attempt(1, 200, "delivered"), DeliveryState.DELIVERED)
    other = message(30, affiliate_id="7654321", created_at=AT + timedelta(hours=2))
    log.record_attempt(other, attempt(1, 200, "delivered"), DeliveryState.DELIVERED)
    # WHEN the log is read from the second one's creation on
    records = log.created_since("1234567", AT + timedelta(hours=1))
    # THEN the two created since then come, newest first, and nothing of the other affiliate
    assert [r.delivery_id for r in records] == [message(23).delivery_id, message(22).delivery_id]


def test_the_sns_notifier_publishes_the_notice_to_the_alarm_topic(aws: dict[str, str]) -> None:
    from postback_relay.adapters.sns_notifier import SnsNotifier
    from postback_relay.domain.errors import InfrastructureError
    from postback_relay.domain.notices import CircuitChange, CircuitNotice

    # GIVEN a queue subscribed to the alarm topic (as an e-mail address would be)
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    queue_url = sqs.create_queue(QueueName="alarm-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=aws["AlarmTopicArn"], Protocol="sqs", Endpoint=queue_arn)
    notice = CircuitNotice(
        "https://flaky.example:443", CircuitChange.OPENED, ("1234567",), (("503", 5),), AT, AT + timedelta(minutes=1)
    )
    # WHEN the notice is published
    SnsNotifier(aws["AlarmTopicArn"], client=sns).notify(notice)
    # THEN the topic delivers its subject and text
    (delivered,) = sqs.receive_message(QueueUrl=queue_url)["Messages"]
    envelope = json.loads(delivered["Body"])
    assert envelope["Subject"] == "postback relay: circuit open for https://flaky.example:443 (affiliate 1234567)"
    assert "postback health --affiliate 1234567" in envelope["Message"]
    # AND a topic that cannot be reached is a domain error (the breaker logs it and goes on)
    with pytest.raises(InfrastructureError):
        SnsNotifier(aws["AlarmTopicArn"] + "-gone", client=sns).notify(notice)
