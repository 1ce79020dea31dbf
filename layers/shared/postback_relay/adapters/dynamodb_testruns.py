"""Test-link runs in DynamoDB (TestRunsTable, key `run_id`): the TestRunStore port.

A step's details (redirect chain, tracker values, postback URLs, answers) are kept as a JSON
string: they are read by people and the config script, never queried, and JSON keeps any
value (a float latency, an empty string) that DynamoDB's own types would refuse.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from postback_relay.adapters.dynamodb import (
    conditional_write,
    expiry,
    failures_as,
    parse_utc,
    text_of,
    utc_millis,
)
from postback_relay.domain.errors import ConflictError
from postback_relay.domain.testrun import RunVerdict, TestRun, TestStep

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

RUN_TTL_DAYS = 90


def _step_value(step: TestStep) -> AttributeValueTypeDef:
    return {
        "M": {
            "name": {"S": step.name},
            "at": {"S": utc_millis(step.at)},
            "ok": {"BOOL": step.ok},
            "details": {"S": json.dumps(step.details, separators=(",", ":"), default=str)},
        }
    }


def _step_of(value: Any) -> TestStep:
    fields = value["M"]
    return TestStep(
        name=fields["name"]["S"],
        at=parse_utc(fields["at"]["S"]),
        ok=fields["ok"]["BOOL"],
        details=json.loads(fields["details"]["S"]),
    )


class DynamoTestRunStore:
    """The TestRunStore port over a DynamoDB table."""

    def __init__(self, table_name: str, *, client: DynamoDBClient, ttl_days: int = RUN_TTL_DAYS) -> None:
        self._table = table_name
        self._client = client
        self._ttl = timedelta(days=ttl_days)

    def create(self, run: TestRun) -> None:
        item: dict[str, AttributeValueTypeDef] = {
            "run_id": {"S": run.run_id},
            "affiliate_id": {"S": run.affiliate_id},
            "started_by": {"S": run.started_by},
            "started_at": {"S": utc_millis(run.started_at)},
            "verdict": {"S": run.verdict.value},
            "steps": {"L": [_step_value(step) for step in run.steps]},
            "expires_at": expiry(run.started_at, self._ttl),
        }
        for name, value in (("step", run.step), ("reason", run.reason)):
            if value is not None:
                item[name] = {"S": value}
        if run.finished_at is not None:
            item["finished_at"] = {"S": utc_millis(run.finished_at)}
        with failures_as(
            f"cannot record test run {run.run_id}",
            refused=lambda: ConflictError(f"test run {run.run_id} already exists"),
        ):
            self._client.put_item(TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(run_id)")

    def get(self, run_id: str) -> TestRun | None:
        with failures_as(f"cannot read test run {run_id}"):
            answer = self._client.get_item(TableName=self._table, Key={"run_id": {"S": run_id}}, ConsistentRead=True)
        item = answer.get("Item")
        if item is None:
            return None
        finished_at = text_of(item, "finished_at")
        return TestRun(
            run_id=item["run_id"]["S"],
            affiliate_id=item["affiliate_id"]["S"],
            started_by=item["started_by"]["S"],
            started_at=parse_utc(item["started_at"]["S"]),
            verdict=RunVerdict(item["verdict"]["S"]),
            step=text_of(item, "step"),
            reason=text_of(item, "reason"),
            finished_at=parse_utc(finished_at) if finished_at else None,
            steps=tuple(_step_of(value) for value in item.get("steps", {}).get("L", [])),
        )

    def append_step(self, run_id: str, step: TestStep) -> None:
        with failures_as(
            f"cannot update test run {run_id}", refused=lambda: ConflictError(f"test run {run_id} does not exist")
        ):
            self._client.update_item(
                TableName=self._table,
                Key={"run_id": {"S": run_id}},
                UpdateExpression="SET steps = list_append(if_not_exists(steps, :none), :step)",
                ConditionExpression="attribute_exists(run_id)",
                ExpressionAttributeValues={":none": {"L": []}, ":step": {"L": [_step_value(step)]}},
            )

    def finish(self, run_id: str, verdict: RunVerdict, *, step: str | None, reason: str | None, at: datetime) -> bool:
        names = {"#verdict": "verdict", "#step": "step", "#reason": "reason"}
        values: dict[str, AttributeValueTypeDef] = {
            ":verdict": {"S": verdict.value},
            ":running": {"S": RunVerdict.RUNNING.value},
            ":at": {"S": utc_millis(at)},
        }
        sets = ["#verdict = :verdict", "finished_at = :at"]
        removes: list[str] = []
        for placeholder, value in (("#step", step), ("#reason", reason)):
            if value is None:
                removes.append(placeholder)
            else:
                values[f":{placeholder[1:]}"] = {"S": value}
                sets.append(f"{placeholder} = :{placeholder[1:]}")
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        # The first verdict stands: a late check or a retried step never overwrites it.
        decided_already = conditional_write(
            f"cannot update test run {run_id}",
            lambda: self._client.update_item(
                TableName=self._table,
                Key={"run_id": {"S": run_id}},
                UpdateExpression=expression,
                ConditionExpression="#verdict = :running",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            ),
        )
        return decided_already is None
