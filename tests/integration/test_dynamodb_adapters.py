"""What every DynamoDB adapter shares (adapters/dynamodb.py), on moto: error translation,
conditional writes, paging, and older items read back whatever precision their times have."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import boto3
import pytest

from postback_relay.adapters.dynamodb import conditional_write, failures_as, items_of
from postback_relay.adapters.dynamodb_testruns import DynamoTestRunStore
from postback_relay.domain.errors import ConflictError, InfrastructureError
from postback_relay.domain.testrun import RunVerdict


def run_item(run_id: str, *, started_at: str, verdict: str) -> dict[str, Any]:
    """A TestRunsTable item as a writer left it (times as given)."""
    return {
        "run_id": {"S": run_id},
        "affiliate_id": {"S": "1234567"},
        "started_by": {"S": "ops"},
        "started_at": {"S": started_at},
        "verdict": {"S": verdict},
    }


def test_a_conditional_write_hands_back_the_refusal_with_the_first_item(aws: dict[str, str]) -> None:
    # GIVEN an endpoint item written once under "only if new"
    client = boto3.client("dynamodb")

    def put(state: str) -> object:
        return client.put_item(
            TableName=aws["EndpointsTableName"],
            Item={"endpoint": {"S": "https://a.example:443"}, "state": {"S": state}},
            ConditionExpression="attribute_not_exists(endpoint)",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )

    assert conditional_write("Saving failed", lambda: put("open")) is None
    # WHEN the same write is made again
    refused = conditional_write("Saving failed", lambda: put("closed"))
    # THEN the refusal comes back (not raised), carrying the item that stood
    assert refused is not None
    # (botocore-stubs' error response does not list the Item ReturnValuesOnConditionCheckFailure adds)
    stood = cast(dict[str, Any], refused.response).get("Item", {})
    assert stood.get("state") == {"S": "open"}


def test_a_failure_becomes_an_infrastructure_error_naming_what_failed(aws: dict[str, str]) -> None:
    # GIVEN a client and a table that does not exist
    client = boto3.client("dynamodb")
    # WHEN a read and a conditional write on it fail
    with (
        pytest.raises(InfrastructureError, match=r"^Reading thing 7 failed: .*ResourceNotFound"),
        failures_as("Reading thing 7 failed"),
    ):
        client.get_item(TableName="NoSuchTable", Key={"k": {"S": "7"}})
    with pytest.raises(InfrastructureError, match=r"^Saving thing 7 failed: "):
        conditional_write("Saving thing 7 failed", lambda: client.put_item(TableName="NoSuchTable", Item={}))
    # THEN each says what was being done, and why botocore said it failed


def test_a_false_condition_raises_what_the_adapter_makes_of_it(aws: dict[str, str]) -> None:
    # GIVEN a test run recorded once
    store = DynamoTestRunStore(aws["TestRunsTableName"], client=boto3.client("dynamodb"))
    client = boto3.client("dynamodb")
    item = run_item("r1", started_at="2026-11-25T12:00:00.000Z", verdict="running")
    client.put_item(TableName=aws["TestRunsTableName"], Item=item)
    # WHEN a write conditioned on its absence is refused
    with (
        pytest.raises(ConflictError, match="exists already"),
        failures_as("Recording failed", refused=lambda: ConflictError("r1 exists already")),
    ):
        client.put_item(
            TableName=aws["TestRunsTableName"], Item=item, ConditionExpression="attribute_not_exists(run_id)"
        )
    # THEN the adapter's own error is raised, and the item is unchanged
    assert store.get("r1") is not None


def test_paging_reads_every_page_and_leaves_the_request_as_it_was(aws: dict[str, str]) -> None:
    # GIVEN three circuit items and a scan that returns one per page
    client = boto3.client("dynamodb")
    for n in range(3):
        client.put_item(
            TableName=aws["EndpointsTableName"],
            Item={"endpoint": {"S": f"https://{n}.example:443"}, "state": {"S": "open"}},
        )
    request = {"TableName": aws["EndpointsTableName"], "Limit": 1}
    # WHEN every item is read
    items = list(items_of(client.scan, request, failure="Listing failed"))
    # THEN all three come back, and the caller's request has no ExclusiveStartKey left in it
    assert sorted(item["endpoint"]["S"] for item in items) == [f"https://{n}.example:443" for n in range(3)]
    assert request == {"TableName": aws["EndpointsTableName"], "Limit": 1}


def test_a_test_run_written_at_whole_seconds_still_reads(aws: dict[str, str]) -> None:
    # GIVEN a test run item whose times have no fraction (as an older writer might have left it)
    boto3.client("dynamodb").put_item(
        TableName=aws["TestRunsTableName"],
        Item={
            **run_item("old", started_at="2026-11-25T12:00:00Z", verdict="passed"),
            "finished_at": {"S": "2026-11-25T12:05:00Z"},
            "steps": {
                "L": [
                    {
                        "M": {
                            "name": {"S": "follow_link"},
                            "at": {"S": "2026-11-25T12:00:01Z"},
                            "ok": {"BOOL": True},
                            "details": {"S": "{}"},
                        }
                    }
                ]
            },
        },
    )
    # WHEN it is read
    run = DynamoTestRunStore(aws["TestRunsTableName"], client=boto3.client("dynamodb")).get("old")
    # THEN its times are those instants, aware
    assert run is not None
    assert run.verdict is RunVerdict.PASSED
    assert run.started_at == datetime(2026, 11, 25, 12, tzinfo=UTC)
    assert run.finished_at == datetime(2026, 11, 25, 12, 5, tzinfo=UTC)
    assert run.steps[0].at == datetime(2026, 11, 25, 12, 0, 1, tzinfo=UTC)
