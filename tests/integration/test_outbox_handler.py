"""The outbox end to end in-process: conversion records -> moto's stream of the conversions
table -> the local stack's stream poller (the template's event source mapping) ->
outbox_handler -> moto's postback queue; and what the mapping does with failures."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import botocore.client
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from fakes import INGEST_AFFILIATE_ID, ingest_conversion
from outbox_support import invoke_outbox, outbox_poller, run_outbox
from typer.testing import CliRunner

from postback_ops.cli import app
from postback_ops.local.stream import RECORD_AGE_EXCEEDED
from postback_ops.outbox_recovery import OutboxRecovery
from postback_ops.target import Target, pinned
from postback_relay import wiring
from postback_relay.adapters.dynamodb_conversions import DynamoConversionLog
from postback_relay.adapters.sqs_parked import SqsParkedRecords
from postback_relay.adapters.sqs_queue import SqsPostbackQueue
from postback_relay.domain.conversion import ConversionOutcome, ConversionResult
from postback_relay.domain.delivery import PostbackMessage
from postback_relay.domain.events import Event

NOW = datetime(2026, 11, 25, 12, 0, 5, tzinfo=UTC)


def message(transaction_id: str, index: int = 0) -> PostbackMessage:
    return PostbackMessage(
        delivery_id=f"{transaction_id}-{index}".ljust(32, "0"),
        affiliate_id=INGEST_AFFILIATE_ID,
        transaction_id=transaction_id,
        event=Event.SALE,
        offer_id="89",
        url=f"https://track.acme.example/p?tx={transaction_id}&n={index}",
        created_at=NOW,
    )


class Outbox:
    def __init__(self, outputs: dict[str, str]) -> None:
        self.outputs = outputs
        self.log = DynamoConversionLog(outputs["ConversionsTableName"], client=boto3.client("dynamodb"))
        self.sqs = boto3.client("sqs")

    def convert(self, transaction_id: str, postbacks: int = 1) -> list[PostbackMessage]:
        messages = [message(transaction_id, i) for i in range(postbacks)]
        result = ConversionResult(
            transaction_id=transaction_id,
            event=Event.SALE,
            affiliate_id=INGEST_AFFILIATE_ID,
            outcome=ConversionOutcome.QUEUED if postbacks else ConversionOutcome.EVENT_NOT_SUBSCRIBED,
            postbacks_queued=postbacks,
            delivery_ids=tuple(m.delivery_id for m in messages),
        )
        conversion = ingest_conversion(transaction_id=transaction_id)
        assert self.log.record(conversion, result, messages, received_at=NOW) is None
        return messages

    def drain(self, queue: str = "PostbackQueueUrl") -> list[dict[str, Any]]:
        bodies: list[dict[str, Any]] = []
        while True:
            got = self.sqs.receive_message(QueueUrl=self.outputs[queue], MaxNumberOfMessages=10).get("Messages", [])
            if not got:
                return bodies
            for m in got:
                bodies.append(json.loads(m["Body"]))
                self.sqs.delete_message(QueueUrl=self.outputs[queue], ReceiptHandle=m["ReceiptHandle"])


@pytest.fixture
def outbox(aws: dict[str, str]) -> Iterator[Outbox]:
    wiring.reset()  # a cold function: its service built afresh inside this test's moto
    yield Outbox(aws)
    wiring.reset()


def sqs_refusing(monkeypatch: pytest.MonkeyPatch, operations: tuple[str, ...] = ("SendMessageBatch",)) -> None:
    real_call = botocore.client.BaseClient._make_api_call  # type: ignore[attr-defined]  # not in botocore-stubs

    def refusing(self: Any, operation_name: str, api_params: Any) -> Any:
        if self.meta.service_model.service_name == "sqs" and operation_name in operations:
            raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "down"}}, operation_name)
        return real_call(self, operation_name, api_params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", refusing)


def test_new_conversions_are_queued_exactly_and_one_firing_nothing_never_wakes_the_function(
    outbox: Outbox,
) -> None:
    # GIVEN three conversions recorded: two fire postbacks (one of them two), one fires nothing
    expected = outbox.convert("T-1") + outbox.convert("T-2", postbacks=2)
    outbox.convert("T-3", postbacks=0)
    invocations: list[list[str]] = []

    def counting(event: dict[str, Any]) -> Any:
        invocations.append([r["dynamodb"]["NewImage"]["conversion_id"]["S"] for r in event["Records"]])
        return invoke_outbox(event)

    # WHEN the stream's event source mapping runs
    run_outbox(outbox_poller(outbox.outputs, invoke=counting))

    # THEN one batch held the two that fire postbacks (the filter kept T-3 out), and the queue
    # holds their messages exactly as ingest rendered them
    assert invocations == [["T-1#sale", "T-2#sale"]]
    assert [PostbackMessage.model_validate(body) for body in outbox.drain()] == expected


def test_sqs_down_leaves_the_records_in_the_stream_until_it_is_back(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN two conversions recorded while SQS refuses every send
    expected = outbox.convert("T-1") + outbox.convert("T-2")
    sqs_refusing(monkeypatch)
    poller = outbox_poller(outbox.outputs)

    # WHEN the mapping runs a batch, THEN both records are reported failed (retried from T-1)
    outcome = poller.poll_once()
    assert outcome is not None and len(outcome.failed) == 2 and not outcome.discarded

    # WHEN SQS is back, THEN the retried batch queues both
    monkeypatch.undo()
    run_outbox(poller)
    assert [PostbackMessage.model_validate(body) for body in outbox.drain()] == expected


def test_the_handler_parks_an_unreadable_record_and_queues_the_ones_behind_it(outbox: Outbox) -> None:
    # GIVEN a batch of three stream records, the second one's outbox unreadable
    outbox.convert("T-1")
    outbox.convert("T-2")
    outbox.convert("T-3")
    records: list[dict[str, Any]] = []
    poller = outbox_poller(outbox.outputs, invoke=lambda event: records.extend(event["Records"]))
    run_outbox(poller)
    records[1]["dynamodb"]["NewImage"]["postbacks"] = {"S": "not json"}

    # WHEN the handler gets the batch
    answer = invoke_outbox({"Records": records})

    # THEN no record fails (nothing for the stream to retry), records 1 and 3 are queued, and
    # record 2 is parked with its keys, the reason and its raw image
    assert answer["batchItemFailures"] == []
    assert [body["transaction_id"] for body in outbox.drain()] == ["T-1", "T-3"]
    (parked,) = outbox.drain("OutboxParkedQueueUrl")
    assert (parked["conversion_id"], parked["sequence_number"]) == (
        "T-2#sale",
        records[1]["dynamodb"]["SequenceNumber"],
    )
    assert parked["reason"] and json.loads(parked["image"])["postbacks"] == {"S": "not json"}


def test_an_unreadable_record_that_cannot_be_parked_fails_with_every_later_one(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a batch of three stream records, the second one's outbox unreadable, and SQS
    # refusing the parked record
    outbox.convert("T-1")
    outbox.convert("T-2")
    outbox.convert("T-3")
    records: list[dict[str, Any]] = []
    run_outbox(outbox_poller(outbox.outputs, invoke=lambda event: records.extend(event["Records"])))
    records[1]["dynamodb"]["NewImage"]["postbacks"] = {"S": "not json"}

    def refusing(self: SqsParkedRecords, parked: Any) -> list[Any]:
        return list(parked)

    monkeypatch.setattr(SqsParkedRecords, "park", refusing)

    # WHEN the handler gets the batch
    answer = invoke_outbox({"Records": records})

    # THEN Powertools' answer names records 2 and 3 by sequence number; record 1 was queued
    failed = [f["itemIdentifier"] for f in answer["batchItemFailures"]]
    assert failed == [r["dynamodb"]["SequenceNumber"] for r in records[1:]]
    assert [body["transaction_id"] for body in outbox.drain()] == ["T-1"]
    assert outbox.drain("OutboxParkedQueueUrl") == []


def test_a_crashed_invocation_is_retried_whole_and_bisected(outbox: Outbox) -> None:
    # GIVEN four conversions, and an outbox invocation that dies after its work once
    for n in range(4):
        outbox.convert(f"T-{n}")
    deaths = iter([True])
    sizes: list[int] = []

    def dying(event: dict[str, Any]) -> Any:
        sizes.append(len(event["Records"]))
        answer = invoke_outbox(event)
        if next(deaths, False):
            raise RuntimeError("the outbox invocation died before answering")
        return answer

    # WHEN the mapping runs until it caught up
    run_outbox(outbox_poller(outbox.outputs, invoke=dying))

    # THEN the batch was split in two after the error (BisectBatchOnFunctionError) and nothing
    # was lost; the crashed try's messages went twice (the dispatcher sends a postback once)
    assert sizes == [4, 2, 2]
    sent = [body["transaction_id"] for body in outbox.drain()]
    assert sorted(set(sent)) == ["T-0", "T-1", "T-2", "T-3"]
    assert len(sent) == 8


def test_a_record_older_than_the_maximum_age_goes_to_the_on_failure_queue(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a conversion whose postbacks SQS keeps refusing
    outbox.convert("T-1")
    sqs_refusing(monkeypatch)
    clock = [datetime.now(UTC).timestamp()]
    poller = outbox_poller(outbox.outputs, clock=lambda: clock[0])
    outcome = poller.poll_once()
    assert outcome is not None and outcome.failed

    # WHEN its stream record gets older than MaximumRecordAgeInSeconds
    clock[0] += poller.mapping.maximum_record_age_s + 1
    monkeypatch.undo()
    outcome = poller.poll_once()

    # THEN the mapping gave up on it: the on-failure queue names the shard and its sequence
    # number, and nothing reached the postback queue
    assert outcome is not None
    (failure,) = outbox.drain("OutboxFailureQueueUrl")
    assert failure["requestContext"]["condition"] == RECORD_AGE_EXCEEDED
    info = failure["DDBStreamBatchInfo"]
    assert (info["batchSize"], info["streamArn"]) == (1, outbox.outputs["ConversionsStreamArn"])
    assert info["startSequenceNumber"] == info["endSequenceNumber"]
    assert outbox.drain() == []


def test_a_record_sqs_refuses_is_retried_until_its_age_not_a_count(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a conversion whose postbacks SQS keeps refusing, and a conversion after it
    outbox.convert("T-1")
    sqs_refusing(monkeypatch)
    clock = [datetime.now(UTC).timestamp()]
    poller = outbox_poller(outbox.outputs, clock=lambda: clock[0])

    # WHEN the mapping retries it 150 times (past the 100 the mapping allowed before)
    for _ in range(150):
        poller.poll_once()

    # THEN it is still retried, not given up on: MaximumRetryAttempts is -1
    assert poller.mapping.maximum_retry_attempts == -1
    assert outbox.drain("OutboxFailureQueueUrl") == []

    # WHEN it gets older than MaximumRecordAgeInSeconds, THEN it is given up on, and the shard moves on
    clock[0] += poller.mapping.maximum_record_age_s + 1
    poller.poll_once()
    (failure,) = outbox.drain("OutboxFailureQueueUrl")
    assert failure["requestContext"]["condition"] == RECORD_AGE_EXCEEDED
    monkeypatch.undo()
    # AND a conversion written now: young, by the clock back at now (left an age ahead, it
    # was itself past its age whenever the 150 polls above took less than a second)
    clock[0] = datetime.now(UTC).timestamp()
    outbox.convert("T-2")
    run_outbox(poller)
    assert [body["transaction_id"] for body in outbox.drain()] == ["T-2"]


def recovery(outputs: dict[str, str], streams: Any = None) -> OutboxRecovery:
    return OutboxRecovery(
        dynamodb=boto3.client("dynamodb"),
        streams=streams or boto3.client("dynamodbstreams"),
        sqs=boto3.client("sqs"),
        conversions_table=outputs["ConversionsTableName"],
        failure_queue_url=outputs["OutboxFailureQueueUrl"],
        queue=SqsPostbackQueue(outputs["PostbackQueueUrl"], client=boto3.client("sqs")),
    )


def give_up_on(outbox: Outbox, monkeypatch: pytest.MonkeyPatch, *transaction_ids: str) -> list[PostbackMessage]:
    """Record conversions whose stream records the mapping gives up on (SQS down past their age)."""
    expected = [m for transaction_id in transaction_ids for m in outbox.convert(transaction_id)]
    sqs_refusing(monkeypatch)
    clock = [datetime.now(UTC).timestamp()]
    poller = outbox_poller(outbox.outputs, clock=lambda: clock[0])
    poller.poll_once()
    clock[0] += poller.mapping.maximum_record_age_s + 1
    poller.poll_once()
    monkeypatch.undo()
    assert len(poller.discarded) == 1
    return expected


def test_recover_queues_the_postbacks_of_a_batch_given_up_on_from_the_stream(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN two conversions whose stream batch the outbox gave up on (on the on-failure queue)
    expected = give_up_on(outbox, monkeypatch, "T-1", "T-2")

    # WHEN ops run the recovery (a dry run first)
    dry = recovery(outbox.outputs).recover(dry_run=True)
    assert [(b.conversions, b.postbacks, b.deleted) for b in dry] == [(["T-1#sale", "T-2#sale"], 2, False)]
    assert outbox.drain() == []
    (batch,) = recovery(outbox.outputs).recover()

    # THEN the stream still held the records: their postbacks are queued, exactly, and the
    # failure message is gone
    assert (batch.source, batch.conversions, batch.postbacks, batch.deleted) == (
        "stream",
        ["T-1#sale", "T-2#sale"],
        2,
        True,
    )
    assert [PostbackMessage.model_validate(body) for body in outbox.drain()] == expected
    assert outbox.drain("OutboxFailureQueueUrl") == []


def test_postback_outbox_recover_queues_a_given_up_batch_through_the_command(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a conversion whose stream batch the outbox gave up on
    expected = give_up_on(outbox, monkeypatch, "T-1")
    runner = CliRunner()

    # WHEN ops run the command against the stack (as the README's operator policy allows)
    with pinned(Target.from_outputs(outbox.outputs, name="relay-prod")):
        result = runner.invoke(app, ["--json", "outbox", "recover"])

    # THEN it exits 0, reports the batch found in the stream, and its postback is queued
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert (row["source"], row["conversions"], row["postbacks"], row["deleted"]) == ("stream", ["T-1#sale"], 1, True)
    assert [PostbackMessage.model_validate(body) for body in outbox.drain()] == expected
    assert outbox.drain("OutboxFailureQueueUrl") == []


def test_postback_outbox_recover_exits_1_while_sqs_refuses_and_keeps_the_failure_message(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a conversion whose stream batch the outbox gave up on, and SQS still refusing sends
    give_up_on(outbox, monkeypatch, "T-1")
    sqs_refusing(monkeypatch)

    # WHEN ops run the command
    with pinned(Target.from_outputs(outbox.outputs, name="relay-prod")):
        result = CliRunner().invoke(app, ["--json", "outbox", "recover"])
    monkeypatch.undo()

    # THEN it exits 1, as the README promises scripts, and the failure message stays for a rerun
    assert result.exit_code == 1, result.output
    assert outbox.drain() == []
    assert len(outbox.drain("OutboxFailureQueueUrl")) == 1


def test_recover_reads_the_table_once_the_stream_trimmed_the_records(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a conversion recorded at NOW, and a failure message about its batch
    expected = outbox.convert("T-1")
    outbox.convert("T-9", postbacks=0)
    failure = {
        "requestContext": {"condition": RECORD_AGE_EXCEEDED},
        "DDBStreamBatchInfo": {
            "shardId": "shardId-00000001541626099285-f35f62ef",
            "startSequenceNumber": "1100000000017454423009",
            "endSequenceNumber": "1100000000017454423009",
            "approximateArrivalOfFirstRecord": NOW.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "approximateArrivalOfLastRecord": NOW.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "batchSize": 1,
            "streamArn": outbox.outputs["ConversionsStreamArn"],
        },
    }
    outbox.sqs.send_message(QueueUrl=outbox.outputs["OutboxFailureQueueUrl"], MessageBody=json.dumps(failure))
    # AND the stream no longer holding those records (past its 24 hours)
    streams = boto3.client("dynamodbstreams")
    stub = Stubber(streams)
    stub.add_client_error("get_shard_iterator", service_error_code="TrimmedDataAccessException")

    # WHEN ops run the recovery
    with stub:
        (batch,) = recovery(outbox.outputs, streams).recover()

    # THEN it found the conversion in the table by its arrival time, and queued its postback
    assert (batch.source, batch.conversions, batch.deleted) == ("table", ["T-1#sale"], True)
    assert [PostbackMessage.model_validate(body) for body in outbox.drain()] == expected


def park_t2(outbox: Outbox) -> None:
    """Three conversions through the handler, the second's stream image unreadable: parked."""
    for transaction_id in ("T-1", "T-2", "T-3"):
        outbox.convert(transaction_id)
    records: list[dict[str, Any]] = []
    run_outbox(outbox_poller(outbox.outputs, invoke=lambda event: records.extend(event["Records"])))
    records[1]["dynamodb"]["NewImage"]["postbacks"] = {"S": "not json"}
    invoke_outbox({"Records": records})
    assert [body["transaction_id"] for body in outbox.drain()] == ["T-1", "T-3"]


def test_postback_outbox_parked_shows_a_parked_record_and_requeues_it_once_readable(outbox: Outbox) -> None:
    # GIVEN a record the outbox parked (its item in the table reads: fixed, or never broken there)
    park_t2(outbox)
    runner = CliRunner()

    with pinned(Target.from_outputs(outbox.outputs, name="relay-prod")):
        # WHEN ops list the parked records
        listed = runner.invoke(app, ["--json", "outbox", "parked"])
        # THEN it is shown, with why, and stays parked
        assert listed.exit_code == 0, listed.output
        (row,) = json.loads(listed.stdout)
        assert (row["conversion_id"], row["requeued"]) == ("T-2#sale", False)
        assert row["reason"]

        # WHEN ops re-queue
        requeued = runner.invoke(app, ["--json", "outbox", "parked", "--requeue"])

    # THEN its postback is queued and the parked queue is empty
    assert requeued.exit_code == 0, requeued.output
    (row,) = json.loads(requeued.stdout)
    assert (row["now"], row["postbacks"], row["requeued"]) == ("readable", 1, True)
    assert [body["transaction_id"] for body in outbox.drain()] == ["T-2"]
    assert outbox.drain("OutboxParkedQueueUrl") == []


def test_a_parked_record_still_unreadable_stays_parked_and_the_command_exits_1(outbox: Outbox) -> None:
    # GIVEN a parked record whose item in the table is unreadable too (broken as its stream image)
    park_t2(outbox)
    boto3.client("dynamodb").update_item(
        TableName=outbox.outputs["ConversionsTableName"],
        Key={"conversion_id": {"S": "T-2#sale"}},
        UpdateExpression="SET postbacks = :bad",
        ExpressionAttributeValues={":bad": {"S": "not json"}},
    )

    # WHEN ops re-queue
    with pinned(Target.from_outputs(outbox.outputs, name="relay-prod")):
        result = CliRunner().invoke(app, ["--json", "outbox", "parked", "--requeue"])

    # THEN it exits 1, says the item is still unreadable, queues nothing, and the record stays parked
    assert result.exit_code == 1, result.output
    (row,) = json.loads(result.stdout)
    assert row["now"].startswith("still unreadable") and not row["requeued"]
    assert outbox.drain() == []
    assert [body["conversion_id"] for body in outbox.drain("OutboxParkedQueueUrl")] == ["T-2#sale"]
