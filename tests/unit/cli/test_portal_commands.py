"""`postback portal link|revoke`, `changes list|approve|reject` and `affiliate history`."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

from fakes.cli import PORTAL_SECRET, FakeBackends
from fakes.samples import ingest_config
from typer.testing import Result

from postback_relay.domain.portal import read_pass
from postback_relay.services.changes import submit_change

A = "1234567"


def test_portal_link_prints_a_signed_link_of_the_affiliate(
    backends: FakeBackends, postback: Callable[..., Result]
) -> None:
    # GIVEN an onboarded affiliate on a stack whose API is at https://api.example
    backends.affiliates.put(ingest_config(A), expected_version=None, updated_by="ops")
    backends.portal.revoke(A)  # epoch 1
    # WHEN ops make a link for 2 days
    result = postback("--json", "portal", "link", A, "--expires", "2d")
    # THEN it is a link to the portal's link page, signed, for that affiliate, epoch and expiry
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["url"].startswith("https://api.example/portal/link?t=")
    link = read_pass(data["url"].split("t=", 1)[1], "link", PORTAL_SECRET, now=datetime.now(UTC).timestamp())
    assert (link.affiliate_id, link.epoch) == (A, 1)
    assert abs(link.expires_at - datetime.now(UTC).timestamp() - 2 * 86400) < 60
    assert data["expires_at"] == datetime.fromtimestamp(link.expires_at, UTC).isoformat(timespec="seconds")


def test_portal_link_refuses_more_than_30_days_and_unknown_affiliates(
    backends: FakeBackends, postback: Callable[..., Result]
) -> None:
    backends.affiliates.put(ingest_config(A), expected_version=None, updated_by="ops")
    too_long = postback("portal", "link", A, "--expires", "31d")
    assert too_long.exit_code == 2 and "longer than a portal link may last (30d)" in too_long.stderr
    assert postback("portal", "link", "999", "--expires", "1d").exit_code == 4


def test_portal_revoke_raises_the_epoch(backends: FakeBackends, postback: Callable[..., Result]) -> None:
    backends.affiliates.put(ingest_config(A), expected_version=None, updated_by="ops")
    result = postback("--json", "portal", "revoke", A)
    assert result.exit_code == 0 and json.loads(result.stdout)["epoch"] == 1 == backends.portal.epoch(A)


def _pending(backends: FakeBackends, url: str) -> str:
    stored = backends.affiliates.put(ingest_config(A), expected_version=None, updated_by="ops")
    data = json.loads(json.dumps(ingest_config(A).model_dump(mode="json", exclude_none=True)))
    data["postbacks"][0]["url"] = url
    proposed = ingest_config(A, postbacks=data["postbacks"])
    return submit_change(
        backends.portal, stored, proposed, by="affiliate 1234567 (portal)", now=datetime.now(UTC)
    ).change_id


def test_changes_approve_applies_and_history_shows_it(backends: FakeBackends, postback: Callable[..., Result]) -> None:
    # GIVEN a pending portal change
    change_id = _pending(backends, "https://track.acme.example/new?cid={clickid}")
    listed = json.loads(postback("--json", "changes", "list").stdout)
    assert [(c["change_id"], c["affiliate_id"], c["state"]) for c in listed] == [(change_id, A, "pending")]
    assert set(listed[0]) >= {"change_id", "affiliate_id", "state", "submitted_at", "diff"}
    # WHEN ops approve it
    approved = postback("--json", "changes", "approve", change_id)
    # THEN the config is the submitted one, the change approved, and the history names the portal
    assert approved.exit_code == 0, approved.output
    assert backends.affiliates.get(A).config.postbacks[0].url.endswith("/new?cid={clickid}")  # type: ignore[union-attr]
    assert json.loads(postback("--json", "changes", "list").stdout) == []
    history = json.loads(postback("--json", "affiliate", "history", A).stdout)
    assert history[0]["source"] == "portal" and "approved by" in history[0]["by"]
    assert "+ postback 1, url: https://track.acme.example/new?cid={clickid}" in history[0]["diff"]
    assert set(history[0]) >= {"at", "by", "source", "diff"}
    # AND approving it twice is a conflict
    assert postback("changes", "approve", change_id).exit_code == 5


def test_changes_approve_checks_the_config_again(backends: FakeBackends, postback: Callable[..., Result]) -> None:
    # GIVEN a pending change whose stored config has gone bad since (an unknown macro)
    change_id = _pending(backends, "https://track.acme.example/new?cid={clickid}")
    change = backends.portal.changes[change_id]
    bad = json.loads(json.dumps(change.config))
    bad["postbacks"][0]["url"] = "https://track.acme.example/new?cid={nope}"
    backends.portal.changes[change_id] = type(change)(**{**change.__dict__, "config": bad})
    # WHEN ops approve it, THEN it is refused as `affiliate put` refuses it, and nothing changes
    result = postback("changes", "approve", change_id)
    assert result.exit_code == 2 and "postback 1, url: unknown macro {nope}" in result.stderr
    assert backends.portal.changes[change_id].state.value == "pending"


def test_changes_reject_keeps_the_reason(backends: FakeBackends, postback: Callable[..., Result]) -> None:
    change_id = _pending(backends, "https://track.acme.example/new")
    result = postback("--json", "changes", "reject", change_id, "--reason", "use your tracker's https endpoint")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["state"] == "rejected"
    assert backends.portal.changes[change_id].reason == "use your tracker's https endpoint"


def test_affiliate_put_and_disable_are_in_the_history(
    backends: FakeBackends, postback: Callable[..., Result], tmp_path: object
) -> None:
    backends.affiliates.put(ingest_config(A), expected_version=None, updated_by="ops")
    assert postback("affiliate", "disable", A).exit_code == 0
    history = json.loads(postback("--json", "affiliate", "history", A).stdout)
    assert [(h["source"], h["diff"]) for h in history] == [("cli", "- enabled: true\n+ enabled: false")]
