"""The portal's store in memory: PortalAccess and ChangeLog (adapters/dynamodb_portal.py)."""

from __future__ import annotations

import dataclasses

from postback_relay.domain.changes import ChangeState, ConfigChange, HistoryEntry
from postback_relay.domain.errors import ConflictError
from postback_relay.domain.portal import PortalPass
from postback_relay.ports import ChangeLog, PortalAccess


class FakePortalStore(PortalAccess, ChangeLog):
    def __init__(self) -> None:
        self.epochs: dict[str, int] = {}
        self.used: set[tuple[str, str]] = set()
        self.ended: set[tuple[str, str]] = set()
        self.changes: dict[str, ConfigChange] = {}
        self.entries: list[HistoryEntry] = []

    def epoch(self, affiliate_id: str) -> int:
        return self.epochs.get(affiliate_id, 0)

    def revoke(self, affiliate_id: str) -> int:
        self.epochs[affiliate_id] = self.epoch(affiliate_id) + 1
        return self.epochs[affiliate_id]

    def link_used(self, link: PortalPass) -> bool:
        return (link.affiliate_id, link.pass_id) in self.used

    def use_link(self, link: PortalPass) -> bool:
        if self.link_used(link):
            return False
        self.used.add((link.affiliate_id, link.pass_id))
        return True

    def end_session(self, session: PortalPass) -> None:
        self.ended.add((session.affiliate_id, session.pass_id))

    def session_ended(self, session: PortalPass) -> bool:
        return (session.affiliate_id, session.pass_id) in self.ended

    def submit(self, change: ConfigChange) -> None:
        self.changes[change.change_id] = change

    def get(self, change_id: str) -> ConfigChange | None:
        return self.changes.get(change_id)

    def listed(self, *, state: ChangeState | None = None) -> list[ConfigChange]:
        found = [c for c in self.changes.values() if state is None or c.state is state]
        return sorted(found, key=lambda c: (c.submitted_at, c.change_id))

    def latest(self, affiliate_id: str) -> ConfigChange | None:
        mine = [c for c in self.changes.values() if c.affiliate_id == affiliate_id]
        return max(mine, key=lambda c: c.change_id, default=None)

    def decide(
        self, change: ConfigChange, state: ChangeState, *, by: str, at: str, reason: str | None = None
    ) -> ConfigChange:
        stored = self.changes[change.change_id]
        if stored.state is not ChangeState.PENDING:
            raise ConflictError(f"Change {change.change_id} is no longer pending.")
        decided = dataclasses.replace(stored, state=state, decided_by=by, decided_at=at, reason=reason)
        self.changes[change.change_id] = decided
        return decided

    def record(self, entry: HistoryEntry) -> None:
        self.entries.append(entry)

    def history(self, affiliate_id: str) -> list[HistoryEntry]:
        return [e for e in reversed(self.entries) if e.affiliate_id == affiliate_id]
