"""Changes to an affiliate's config: those waiting for ops (from the portal), and the history
of every change, from the portal or the config script (contract section 7).

A diff is a few lines a person reads, one per field that changed, named as the config
script's refusals name them (`postback 1, url`): `-` the value before, `+` the value after.
The signing secret is never shown, only that it changed.
"""

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from postback_relay.domain.fields import human_field

MASK = "********"
_SECRET_FIELDS = frozenset({"signing_secret"})


class ChangeState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class ChangeSource(StrEnum):
    PORTAL = "portal"
    CLI = "cli"


@dataclass(frozen=True)
class ConfigChange:
    """A config an affiliate submitted in the portal, waiting for ops or decided."""

    change_id: str
    affiliate_id: str
    state: ChangeState
    submitted_at: str
    submitted_by: str
    diff: str
    config: Mapping[str, Any]  # the whole config as submitted (dump_config's document)
    base_version: int  # the stored version it was made against
    decided_at: str | None = None
    decided_by: str | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The contract's fields (change_id, affiliate_id, state, submitted_at, diff), then the decision."""
        return {
            "change_id": self.change_id,
            "affiliate_id": self.affiliate_id,
            "state": self.state.value,
            "submitted_at": self.submitted_at,
            "diff": self.diff,
            "submitted_by": self.submitted_by,
            "base_version": self.base_version,
            "decided_at": self.decided_at,
            "decided_by": self.decided_by,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class HistoryEntry:
    """One change applied to an affiliate's config."""

    affiliate_id: str
    at: str
    by: str
    source: ChangeSource
    diff: str
    version: int | None = None
    details: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "by": self.by, "source": self.source.value, "diff": self.diff, "version": self.version}


def new_change_id(now: datetime) -> str:
    """Sortable by submission, unique."""
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"


def _flatten(node: object, path: str, out: dict[str, str]) -> None:
    if isinstance(node, Mapping):
        for key, value in node.items():
            _flatten(value, f"{path}.{key}" if path else str(key), out)
    elif isinstance(node, list | tuple) and node and any(isinstance(v, Mapping) for v in node):
        for index, value in enumerate(node):
            _flatten(value, f"{path}.{index}", out)
    elif path.rsplit(".", 1)[-1] in _SECRET_FIELDS:
        out[path] = MASK
    else:
        out[path] = node if isinstance(node, str) else json.dumps(node, ensure_ascii=False)


def config_diff(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> str:
    """The fields that differ, one `- field: old` / `+ field: new` pair each, in the config's order."""
    old: dict[str, str] = {}
    new: dict[str, str] = {}
    _flatten(before or {}, "", old)
    _flatten(after or {}, "", new)
    lines: list[str] = []
    for path in list(dict.fromkeys([*old, *new])):
        if old.get(path) == new.get(path):
            continue
        name = human_field(path)
        if path in old:
            lines.append(f"- {name}: {old[path]}")
        if path in new:
            lines.append(f"+ {name}: {new[path]}")
    changed_secret = (before or {}).get("signing_secret") != (after or {}).get("signing_secret")
    if changed_secret and not any("signing_secret" in line for line in lines):
        lines.append("~ signing_secret: changed")
    return "\n".join(lines)
