"""The call recorder: a client is attributed to the function whose code created it, and its
calls, from any thread, are recorded as the action and resource IAM checks."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from postback_ops.awsrules import recorder
from postback_ops.template import REPO_ROOT

REGION = "eu-west-1"


@pytest.fixture
def log(tmp_path: Path) -> Iterator[Path]:
    if recorder._installed:
        pytest.skip("a recorded run (POSTBACK_AWS_CALL_LOG) already patches botocore")
    path = tmp_path / "calls.jsonl"
    recorder.install(path)
    try:
        yield path
    finally:
        recorder.uninstall()


def _created_in(folder: Path, source: str) -> dict[str, object]:
    """Run `source` as if it were a module in `folder` (a function's code folder)."""
    namespace: dict[str, object] = {"boto3": boto3, "REGION": REGION}
    exec(compile(source, str(folder / "wiring_under_test.py"), "exec"), namespace)  # noqa: S102 - test code
    return namespace


def test_a_client_built_in_a_function_folder_records_for_that_function_from_any_thread(log: Path) -> None:
    with mock_aws():
        # GIVEN a queue, and an SQS client created by code in the ingest function's folder
        url = boto3.client("sqs", region_name=REGION).create_queue(QueueName="stack-PostbackQueue")["QueueUrl"]
        namespace = _created_in(REPO_ROOT / "functions" / "ingest", "client = boto3.client('sqs', region_name=REGION)")
        client = namespace["client"]
        # WHEN a worker thread sends a batch with it
        worker = threading.Thread(
            target=lambda: client.send_message_batch(  # type: ignore[attr-defined]
                QueueUrl=url, Entries=[{"Id": "1", "MessageBody": "{}"}]
            )
        )
        worker.start()
        worker.join()
    # THEN one record: the ingest function, sqs:SendMessage (the action IAM checks), the queue
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["principal"], r["operation"], r["action"], r["resource"]) for r in records] == [
        (
            "IngestFunction",
            "SendMessageBatch",
            "sqs:SendMessage",
            f"arn:aws:sqs:{REGION}:123456789012:stack-PostbackQueue",
        )
    ]


def test_a_client_built_by_a_test_is_not_recorded(log: Path) -> None:
    with mock_aws():
        boto3.client("sqs", region_name=REGION).create_queue(QueueName="harness")
    assert not log.exists() or log.read_text() == ""


def test_a_service_a_test_builds_through_wiring_records_for_the_function_that_builds_it(
    log: Path, aws: dict[str, str]
) -> None:
    # GIVEN a dispatcher a test builds through wiring (as the reliability suite does), not
    # through the dispatch function's handler
    import dispatch_handler
    from postback_relay import wiring
    from postback_relay.domain.records import ReceivedPostback

    built = wiring.dispatcher(dispatch_handler.settings)
    # WHEN it dead letters a message it cannot read (one SendMessage to the DLQ)
    built.dispatch(ReceivedPostback("m-1", "r-1", 1, "not a postback"))
    # THEN the call is the dispatch function's, found through the builder its handler calls
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert ("DispatchFunction", "sqs:SendMessage", aws["DeadLetterQueueUrl"].rsplit("/", 1)[1]) in {
        (r["principal"], r["action"], r["resource"].rsplit(":", 1)[1]) for r in records
    }


def test_a_client_a_test_hands_to_a_functions_builder_records_for_that_function(log: Path, aws: dict[str, str]) -> None:
    # GIVEN a DynamoDB client a test makes (untagged), handed to the ingest function's builder
    import ingest_handler
    from postback_relay import wiring

    client = boto3.client("dynamodb")
    wiring.ingest_service(ingest_handler.settings, dynamodb=client)
    # WHEN a call is made with it
    client.describe_table(TableName=aws["ConversionsTableName"])
    # THEN it is the ingest function's call
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["principal"], r["action"]) for r in records] == [("IngestFunction", "dynamodb:DescribeTable")]


def test_the_builders_each_functions_code_calls_name_that_function() -> None:
    # GIVEN the template's functions and the wiring module
    builders = recorder.wiring_builders(recorder._function_dirs())
    # THEN each function's own builder names it, and only that one (a helper such as
    # `wiring.aws_client`, which ingest's code also calls, names no function)
    assert {builders[name] for name in ("ingest_service", "outbox_service", "dispatcher", "link_test_service")} == {
        "IngestFunction",
        "OutboxFunction",
        "DispatchFunction",
        "TestLinkFunction",
    }
    assert len(builders) == len(set(builders.values())), builders
