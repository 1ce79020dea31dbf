"""Changes to an affiliate's config: applied (with their history entry), submitted for ops'
approval, approved (the config checked again) or rejected (contract section 7)."""

from __future__ import annotations

from datetime import datetime

from postback_relay.domain.changes import (
    ChangeSource,
    ChangeState,
    ConfigChange,
    HistoryEntry,
    config_diff,
    new_change_id,
)
from postback_relay.domain.config import AffiliateConfig, dump_config, parse_config
from postback_relay.domain.errors import ConflictError, NotFoundError
from postback_relay.domain.records import StoredAffiliate
from postback_relay.domain.times import utc_seconds
from postback_relay.ports import AffiliateStore, ChangeLog


def diff_of(before: AffiliateConfig | None, after: AffiliateConfig) -> str:
    return config_diff(dump_config(before) if before else None, dump_config(after))


def record_change(
    changes: ChangeLog,
    before: AffiliateConfig | None,
    after: StoredAffiliate,
    *,
    by: str,
    source: ChangeSource,
    now: datetime,
) -> None:
    """The history entry of a change just applied (nothing when nothing changed)."""
    diff = diff_of(before, after.config)
    if diff:
        changes.record(
            HistoryEntry(after.config.affiliate_id, utc_seconds(now), by, source, diff, version=after.version)
        )


def apply_change(
    affiliates: AffiliateStore,
    changes: ChangeLog,
    stored: StoredAffiliate,
    config: AffiliateConfig,
    *,
    by: str,
    source: ChangeSource,
    now: datetime,
) -> StoredAffiliate:
    """Save the config over the version read (ConflictError if it moved) and record it."""
    saved = affiliates.put(config, expected_version=stored.version, updated_by=by)
    record_change(changes, stored.config, saved, by=by, source=source, now=now)
    return saved


def submit_change(
    changes: ChangeLog, stored: StoredAffiliate, config: AffiliateConfig, *, by: str, now: datetime
) -> ConfigChange:
    """Keep the config as a change waiting for ops."""
    change = ConfigChange(
        change_id=new_change_id(now),
        affiliate_id=stored.config.affiliate_id,
        state=ChangeState.PENDING,
        submitted_at=utc_seconds(now),
        submitted_by=by,
        diff=diff_of(stored.config, config),
        config=dump_config(config),
        base_version=stored.version,
    )
    changes.submit(change)
    return change


def pending_change(changes: ChangeLog, change_id: str) -> ConfigChange:
    change = changes.get(change_id)
    if change is None:
        raise NotFoundError(f"No change {change_id}.")
    if change.state is not ChangeState.PENDING:
        raise ConflictError(f"Change {change_id} is already {change.state.value}.")
    return change


def approve_change(
    affiliates: AffiliateStore,
    changes: ChangeLog,
    change_id: str,
    *,
    by: str,
    allow_loopback: bool,
    now: datetime,
) -> tuple[ConfigChange, StoredAffiliate]:
    """Apply a pending change: its config is checked again (ConfigError, as `affiliate put`
    refuses it) and must have been made against the stored version (ConflictError if not)."""
    change = pending_change(changes, change_id)
    stored = affiliates.get(change.affiliate_id)
    if stored is None:
        raise NotFoundError(f"Affiliate {change.affiliate_id} no longer exists.")
    if stored.version != change.base_version:
        raise ConflictError(
            f"Affiliate {change.affiliate_id} changed since change {change_id} was submitted (version "
            f"{change.base_version}, now {stored.version}): reject it and ask the affiliate to submit it again."
        )
    config = parse_config(change.config, allow_loopback=allow_loopback)
    saved = affiliates.put(config, expected_version=stored.version, updated_by=by)
    decided = changes.decide(change, ChangeState.APPROVED, by=by, at=utc_seconds(now))
    record_change(
        changes,
        stored.config,
        saved,
        by=f"{change.submitted_by}, approved by {by}",
        source=ChangeSource.PORTAL,
        now=now,
    )
    return decided, saved


def reject_change(changes: ChangeLog, change_id: str, *, by: str, reason: str, now: datetime) -> ConfigChange:
    change = pending_change(changes, change_id)
    return changes.decide(change, ChangeState.REJECTED, by=by, at=utc_seconds(now), reason=reason)
