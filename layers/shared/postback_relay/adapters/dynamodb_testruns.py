"""Test-link runs in DynamoDB (TestRunsTable, key `run_id`): the TestRunStore port.

A step's details (redirect chain, tracker values, postback URLs, answers) are kept as a JSON
string: they are read by people and the config script, never queried, and JSON keeps any
value (a float latency, an empty string) that DynamoDB's own types would refuse.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from postback_relay.domain.errors import ConflictError, InfrastructureError
from postback_relay.domain.testrun import RunVerdict, TestRun, TestStep

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

RUN_TTL_DAYS = 90


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _step_value(step: TestStep) -> AttributeValueTypeDef:
    return {
        "M": {
            "name": {"S": step.name},
            "at": {"S": _iso(step.at)},
            "ok": {"BOOL": step.ok},
            "details": {"S": json.dumps(step.details, separators=(",", ":"), default=str)},
        }
    }


def _step_of(value: Any) -> TestStep:
    fields = value["M"]
    return TestStep(
        name=fields["name"]["S"],
        at=datetime.fromisoformat(fields["at"]["S"]),
        ok=fields["ok"]["BOOL"],
        details=json.loads(fields["details"]["S"]),
    )


def _optional(item: Any, name: str) -> str | None:
    value = item.get(name)
    return str(value["S"]) if value is not None and "S" in value else None


class DynamoTestRunStore:
    """The TestRunStore port over a DynamoDB table."""

    def __init__(self, table_name: str, *, client: DynamoDBClient | None = None, ttl_days: int = RUN_TTL_DAYS) -> None:
        self._table = table_name
        self._client: DynamoDBClient = client or boto3.client("dynamodb")
        self._ttl = timedelta(days=ttl_days)

    def create(self, run: TestRun) -> None:
        item: dict[str, AttributeValueTypeDef] = {
            "run_id": {"S": run.run_id},
            "affiliate_id": {"S": run.affiliate_id},
            "started_by": {"S": run.started_by},
            "started_at": {"S": _iso(run.started_at)},
            "verdict": {"S": run.verdict.value},
            "steps": {"L": [_step_value(step) for step in run.steps]},
            "expires_at": {"N": str(int((run.started_at + self._ttl).timestamp()))},
        }
        for name, value in (("step", run.step), ("reason", run.reason)):
            if value is not None:
                item[name] = {"S": value}
        if run.finished_at is not None:
            item["finished_at"] = {"S": _iso(run.finished_at)}
        try:
            self._client.put_item(TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(run_id)")
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise ConflictError(f"test run {run.run_id} already exists") from exc
            raise InfrastructureError(f"cannot record test run {run.run_id}: {exc}") from exc
        except BotoCoreError as exc:
            raise InfrastructureError(f"cannot record test run {run.run_id}: {exc}") from exc

    def get(self, run_id: str) -> TestRun | None:
        try:
            answer = self._client.get_item(TableName=self._table, Key={"run_id": {"S": run_id}}, ConsistentRead=True)
        except (ClientError, BotoCoreError) as exc:
            raise InfrastructureError(f"cannot read test run {run_id}: {exc}") from exc
        item = answer.get("Item")
        if item is None:
            return None
        finished_at = _optional(item, "finished_at")
        return TestRun(
            run_id=item["run_id"]["S"],
            affiliate_id=item["affiliate_id"]["S"],
            started_by=item["started_by"]["S"],
            started_at=datetime.fromisoformat(item["started_at"]["S"]),
            verdict=RunVerdict(item["verdict"]["S"]),
            step=_optional(item, "step"),
            reason=_optional(item, "reason"),
            finished_at=datetime.fromisoformat(finished_at) if finished_at else None,
            steps=tuple(_step_of(value) for value in item.get("steps", {}).get("L", [])),
        )

    def append_step(self, run_id: str, step: TestStep) -> None:
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"run_id": {"S": run_id}},
                UpdateExpression="SET steps = list_append(if_not_exists(steps, :none), :step)",
                ConditionExpression="attribute_exists(run_id)",
                ExpressionAttributeValues={":none": {"L": []}, ":step": {"L": [_step_value(step)]}},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise ConflictError(f"test run {run_id} does not exist") from exc
            raise InfrastructureError(f"cannot update test run {run_id}: {exc}") from exc
        except BotoCoreError as exc:
            raise InfrastructureError(f"cannot update test run {run_id}: {exc}") from exc

    def finish(self, run_id: str, verdict: RunVerdict, *, step: str | None, reason: str | None, at: datetime) -> bool:
        names = {"#verdict": "verdict", "#step": "step", "#reason": "reason"}
        values: dict[str, AttributeValueTypeDef] = {
            ":verdict": {"S": verdict.value},
            ":running": {"S": RunVerdict.RUNNING.value},
            ":at": {"S": _iso(at)},
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
        try:
            # The first verdict stands: a late check or a retried step never overwrites it.
            self._client.update_item(
                TableName=self._table,
                Key={"run_id": {"S": run_id}},
                UpdateExpression=expression,
                ConditionExpression="#verdict = :running",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise InfrastructureError(f"cannot update test run {run_id}: {exc}") from exc
        except BotoCoreError as exc:
            raise InfrastructureError(f"cannot update test run {run_id}: {exc}") from exc
        return True
