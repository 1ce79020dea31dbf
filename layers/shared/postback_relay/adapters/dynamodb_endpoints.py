"""Circuit breakers per endpoint in DynamoDB (EndpointsTable, key `endpoint` =
`scheme://host:port`): the dispatcher's EndpointStore.

Written only on transitions (open, half-open trial, closed) and read only for endpoints that
fail, so a healthy endpoint costs nothing here. Items expire a day after their last
transition: a closed circuit needs no item at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from postback_relay.adapters.dynamodb import conditional_write, failures_as, items_of
from postback_relay.domain.delivery import Circuit, CircuitStatus

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

ENDPOINT_TTL_S = 24 * 3600
MAX_NOTED = 10  # affiliates and failure reasons kept on the item for the notices


def _number(value: float) -> AttributeValueTypeDef:
    return {"N": str(Decimal(str(round(value, 3))))}


def circuit_of(item: Any) -> Circuit:
    return Circuit(
        endpoint=item["endpoint"]["S"],
        status=CircuitStatus(item["state"]["S"]),
        failures=int(item.get("failures", {}).get("N", "0")),
        opened_until=float(item.get("opened_until", {}).get("N", "0")),
        cool_down_s=int(item.get("cool_down_s", {}).get("N", "0")),
        trial_until=float(item.get("trial_until", {}).get("N", "0")),
        opened_at=float(item.get("opened_at", {}).get("N", "0")),
        affiliates=tuple(value["S"] for value in item.get("affiliates", {}).get("L", [])),
        failure_reasons=tuple(
            (value["M"]["reason"]["S"], int(value["M"]["count"]["N"]))
            for value in item.get("failure_reasons", {}).get("L", [])
        ),
    )


class DynamoEndpointStore:
    def __init__(
        self,
        table: str,
        *,
        client: DynamoDBClient,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._table = table
        self._client = client
        self._clock = clock

    def get(self, endpoint: str) -> Circuit | None:
        with failures_as(f"Reading the circuit of {endpoint} failed"):
            answer = self._client.get_item(TableName=self._table, Key={"endpoint": {"S": endpoint}})
        item = answer.get("Item")
        return circuit_of(item) if item else None

    def save(
        self,
        circuit: Circuit,
        *,
        expected_opened_until: float | None = None,
        only_from: Collection[CircuitStatus] | None = None,
    ) -> bool:
        item: dict[str, AttributeValueTypeDef] = {
            "endpoint": {"S": circuit.endpoint},
            "state": {"S": circuit.status.value},
            "failures": {"N": str(circuit.failures)},
            "opened_until": _number(circuit.opened_until),
            "cool_down_s": {"N": str(circuit.cool_down_s)},
            "trial_until": _number(circuit.trial_until),
            "opened_at": _number(circuit.opened_at),
            "affiliates": {"L": [{"S": affiliate} for affiliate in circuit.affiliates[:MAX_NOTED]]},
            "failure_reasons": {
                "L": [
                    {"M": {"reason": {"S": reason}, "count": {"N": str(count)}}}
                    for reason, count in circuit.failure_reasons[:MAX_NOTED]
                ]
            },
            "updated_at": _number(self._clock()),
            "expires_at": {"N": str(int(self._clock()) + ENDPOINT_TTL_S)},
        }
        request: dict[str, Any] = {"TableName": self._table, "Item": item}
        if expected_opened_until is not None:
            request["ConditionExpression"] = "attribute_not_exists(endpoint) OR opened_until = :expected"
            request["ExpressionAttributeValues"] = {":expected": _number(expected_opened_until)}
        elif only_from is not None:
            # One instance alone records an opening or a closing, and so announces it.
            states = sorted(state.value for state in only_from)
            names = {f":from{i}": {"S": state} for i, state in enumerate(states)}
            condition = f"#state IN ({', '.join(names)})"
            if CircuitStatus.CLOSED in only_from:
                condition = f"attribute_not_exists(endpoint) OR {condition}"
            request["ConditionExpression"] = condition
            request["ExpressionAttributeNames"] = {"#state": "state"}
            request["ExpressionAttributeValues"] = names
        # A false condition: another instance recorded this transition first.
        lost = conditional_write(
            f"Saving the circuit of {circuit.endpoint} failed", lambda: self._client.put_item(**request)
        )
        return lost is None

    def list(self) -> list[Circuit]:
        """Every endpoint with a circuit on record (for ops: `open` ones are being skipped)."""
        items = items_of(self._client.scan, {"TableName": self._table}, failure="Listing circuits failed")
        circuits = [circuit_of(item) for item in items]
        return sorted(circuits, key=lambda circuit: circuit.endpoint)


# The name the config script knows it by (`postback endpoints`).
EndpointStore = DynamoEndpointStore
