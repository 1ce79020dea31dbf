"""PortalTable: the portal's links and epochs, changes waiting for ops, and the change history
(ports.PortalAccess and ports.ChangeLog). One table, keyed `pk` + `sk`:

| pk | sk | item |
| --- | --- | --- |
| `AFF#<id>` | `ACCESS` | `epoch` (N): raised by `portal revoke` |
| `AFF#<id>` | `LINK#<link_id>` | a link used once (`expires_at`: TTL, the link's own expiry) |
| `AFF#<id>` | `ENDED#<session_id>` | a session signed out (`expires_at`: TTL, the session's own expiry) |
| `AFF#<id>` | `CHANGE#<change_id>` | a portal change: state, submitted config, diff, decision |
| `AFF#<id>` | `HIST#<at>#<n>` | a change applied: at, by, source, diff, version |

An affiliate's changes and history are one Query each, newest first (the IDs sort by time).
`changes list` and `approve CHANGE_ID` (ops, rare) scan the table for change items.
"""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING, Any

from postback_relay.adapters.dynamodb import conditional_write, failures_as, items_of, text_of
from postback_relay.domain.changes import ChangeSource, ChangeState, ConfigChange, HistoryEntry
from postback_relay.domain.errors import ConflictError
from postback_relay.domain.portal import PortalPass

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

_CHANGE = "CHANGE#"
_HISTORY = "HIST#"
_ACCESS = "ACCESS"
_USED = "LINK#"
_ENDED = "ENDED#"


def _pk(affiliate_id: str) -> AttributeValueTypeDef:
    return {"S": f"AFF#{affiliate_id}"}


class DynamoPortalStore:
    """The portal's state in DynamoDB (both ports on one table)."""

    def __init__(self, table_name: str, *, client: DynamoDBClient) -> None:
        self._table = table_name
        self._client = client

    # --- PortalAccess --------------------------------------------------------------------------

    def epoch(self, affiliate_id: str) -> int:
        with failures_as(f"Reading the portal access of affiliate {affiliate_id} failed"):
            item = self._client.get_item(
                TableName=self._table, Key={"pk": _pk(affiliate_id), "sk": {"S": _ACCESS}}, ConsistentRead=True
            ).get("Item")
        return int(item["epoch"]["N"]) if item and "epoch" in item else 0

    def revoke(self, affiliate_id: str) -> int:
        with failures_as(f"Revoking the portal access of affiliate {affiliate_id} failed"):
            answer = self._client.update_item(
                TableName=self._table,
                Key={"pk": _pk(affiliate_id), "sk": {"S": _ACCESS}},
                UpdateExpression="ADD epoch :one",
                ExpressionAttributeValues={":one": {"N": "1"}},
                ReturnValues="UPDATED_NEW",
            )
        return int(answer["Attributes"]["epoch"]["N"])

    def link_used(self, link: PortalPass) -> bool:
        return self._marked(link, _USED)

    def use_link(self, link: PortalPass) -> bool:
        return self._mark(link, _USED)

    def end_session(self, session: PortalPass) -> None:
        self._mark(session, _ENDED)

    def session_ended(self, session: PortalPass) -> bool:
        return self._marked(session, _ENDED)

    def _marked(self, portal_pass: PortalPass, prefix: str) -> bool:
        with failures_as(f"Reading a portal {portal_pass.kind} of affiliate {portal_pass.affiliate_id} failed"):
            item = self._client.get_item(
                TableName=self._table,
                Key={"pk": _pk(portal_pass.affiliate_id), "sk": {"S": f"{prefix}{portal_pass.pass_id}"}},
                ConsistentRead=True,
            ).get("Item")
        return item is not None

    def _mark(self, portal_pass: PortalPass, prefix: str) -> bool:
        """Write the pass's mark once, kept until the pass expires: False when it was there already."""
        refused = conditional_write(
            f"Marking a portal {portal_pass.kind} of affiliate {portal_pass.affiliate_id} failed",
            lambda: self._client.put_item(
                TableName=self._table,
                Item={
                    "pk": _pk(portal_pass.affiliate_id),
                    "sk": {"S": f"{prefix}{portal_pass.pass_id}"},
                    "expires_at": {"N": str(portal_pass.expires_at)},
                },
                ConditionExpression="attribute_not_exists(pk)",
            ),
        )
        return refused is None

    # --- ChangeLog -----------------------------------------------------------------------------

    def submit(self, change: ConfigChange) -> None:
        with failures_as(f"Saving a change of affiliate {change.affiliate_id} failed"):
            self._client.put_item(TableName=self._table, Item=_change_item(change))

    def get(self, change_id: str) -> ConfigChange | None:
        request: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "change_id = :id",
            "ExpressionAttributeValues": {":id": {"S": change_id}},
        }
        found = [_change_of(item) for item in items_of(self._client.scan, request, failure="Finding a change failed")]
        return found[0] if found else None

    def listed(self, *, state: ChangeState | None = None) -> list[ConfigChange]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "begins_with(sk, :change)",
            "ExpressionAttributeValues": {":change": {"S": _CHANGE}},
        }
        changes = [_change_of(item) for item in items_of(self._client.scan, request, failure="Listing changes failed")]
        return sorted(
            (c for c in changes if state is None or c.state is state), key=lambda c: (c.submitted_at, c.change_id)
        )

    def latest(self, affiliate_id: str) -> ConfigChange | None:
        with failures_as(f"Reading the changes of affiliate {affiliate_id} failed"):
            items = self._client.query(
                TableName=self._table,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :change)",
                ExpressionAttributeValues={":pk": _pk(affiliate_id), ":change": {"S": _CHANGE}},
                ScanIndexForward=False,
                Limit=1,
                ConsistentRead=True,
            ).get("Items", [])
        return _change_of(items[0]) if items else None

    def decide(
        self, change: ConfigChange, state: ChangeState, *, by: str, at: str, reason: str | None = None
    ) -> ConfigChange:
        values: dict[str, AttributeValueTypeDef] = {
            ":state": {"S": state.value},
            ":pending": {"S": ChangeState.PENDING.value},
            ":by": {"S": by},
            ":at": {"S": at},
            ":reason": {"S": reason or ""},
        }
        with failures_as(
            f"Deciding change {change.change_id} failed",
            refused=lambda: ConflictError(f"Change {change.change_id} is no longer pending."),
        ):
            self._client.update_item(
                TableName=self._table,
                Key={"pk": _pk(change.affiliate_id), "sk": {"S": _CHANGE + change.change_id}},
                UpdateExpression="SET #state = :state, decided_by = :by, decided_at = :at, reason = :reason",
                ConditionExpression="#state = :pending",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues=values,
            )
        return ConfigChange(
            **{**change.__dict__, "state": state, "decided_by": by, "decided_at": at, "reason": reason or None}
        )

    def record(self, entry: HistoryEntry) -> None:
        item: dict[str, AttributeValueTypeDef] = {
            "pk": _pk(entry.affiliate_id),
            "sk": {"S": f"{_HISTORY}{entry.at}#{secrets.token_hex(4)}"},
            "at": {"S": entry.at},
            "by": {"S": entry.by},
            "source": {"S": entry.source.value},
            "diff": {"S": entry.diff},
        }
        if entry.version is not None:
            item["version"] = {"N": str(entry.version)}
        with failures_as(f"Recording a change of affiliate {entry.affiliate_id} failed"):
            self._client.put_item(TableName=self._table, Item=item)

    def history(self, affiliate_id: str) -> list[HistoryEntry]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :history)",
            "ExpressionAttributeValues": {":pk": _pk(affiliate_id), ":history": {"S": _HISTORY}},
            "ScanIndexForward": False,
        }
        return [
            HistoryEntry(
                affiliate_id=affiliate_id,
                at=text_of(item, "at") or "",
                by=text_of(item, "by") or "",
                source=ChangeSource(text_of(item, "source") or "cli"),
                diff=text_of(item, "diff") or "",
                version=int(item["version"]["N"]) if "version" in item else None,
            )
            for item in items_of(self._client.query, request, failure=f"Reading the history of {affiliate_id} failed")
        ]


def _change_item(change: ConfigChange) -> dict[str, AttributeValueTypeDef]:
    item: dict[str, AttributeValueTypeDef] = {
        "pk": _pk(change.affiliate_id),
        "sk": {"S": _CHANGE + change.change_id},
        "change_id": {"S": change.change_id},
        "affiliate_id": {"S": change.affiliate_id},
        "state": {"S": change.state.value},
        "submitted_at": {"S": change.submitted_at},
        "submitted_by": {"S": change.submitted_by},
        "diff": {"S": change.diff},
        "config": {"S": json.dumps(change.config, separators=(",", ":"), sort_keys=True)},
        "base_version": {"N": str(change.base_version)},
    }
    return item


def _change_of(item: dict[str, Any]) -> ConfigChange:
    return ConfigChange(
        change_id=text_of(item, "change_id") or "",
        affiliate_id=text_of(item, "affiliate_id") or "",
        state=ChangeState(text_of(item, "state") or "pending"),
        submitted_at=text_of(item, "submitted_at") or "",
        submitted_by=text_of(item, "submitted_by") or "",
        diff=text_of(item, "diff") or "",
        config=json.loads(text_of(item, "config") or "{}"),
        base_version=int(item.get("base_version", {}).get("N", "0")),
        decided_at=text_of(item, "decided_at"),
        decided_by=text_of(item, "decided_by"),
        reason=text_of(item, "reason") or None,
    )
