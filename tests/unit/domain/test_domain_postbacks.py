"""The one render path (domain.postbacks): every caller that turns a conversion into postback
messages goes through `postback_messages`, so a preview is what ingest queues."""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fakes import ingest_config, ingest_conversion

from postback_relay.domain.errors import PostbackRefused
from postback_relay.domain.postbacks import MAX_MESSAGE_BYTES, postback_messages

ROOT = Path(__file__).resolve().parents[3]
SOURCES = [ROOT / "layers", ROOT / "functions", ROOT / "ops"]
NOW = datetime(2026, 11, 25, 12, 0, 5, tzinfo=UTC)
TRACKER = {"affid": "a1", "transid": "T9", "clickid": "c123", "whateverid": "x"}


def names_used(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Attribute):
            found.add(node.attr)
    return found


def test_only_the_one_render_path_renders_or_builds_postback_messages() -> None:
    # GIVEN every source file of the relay and the config script
    files = [path for root in SOURCES for path in root.rglob("*.py")]
    # WHEN their imports and attribute uses are read
    users = {
        str(path.relative_to(ROOT)): used
        for path in files
        if (used := names_used(path) & {"render_postback", "postback_message", "macro_values"})
    }
    # THEN only domain/postbacks.py (and the modules defining them) name the rendering steps
    assert set(users) == {"layers/shared/postback_relay/domain/postbacks.py"}, users


def test_ingest_the_test_link_and_preview_call_the_one_path() -> None:
    # GIVEN the three callers the contract names
    callers = [
        ROOT / "layers/shared/postback_relay/services/ingest.py",
        ROOT / "layers/shared/postback_relay/services/testlink/postbacks.py",
        ROOT / "ops/postback_ops/cli_preview.py",
    ]
    # THEN each one calls postback_messages
    assert all("postback_messages" in names_used(path) for path in callers)


def test_the_path_refuses_a_message_over_the_size_limit_naming_the_postback() -> None:
    # GIVEN a POST postback and a click ID long enough to push its body over the limit
    config = ingest_config(
        postbacks=[{"events": ["sale"], "url": "https://t.example/pb", "method": "POST", "body": "c={clickid}"}]
    )
    values = {**TRACKER, "clickid": "c" * MAX_MESSAGE_BYTES}
    # WHEN the sale's postbacks are rendered, THEN the path refuses, naming postback 0 and its size
    with pytest.raises(PostbackRefused) as caught:
        postback_messages(ingest_conversion(), config, values, created_at=NOW)
    assert (caught.value.kind, caught.value.index) == ("postback_too_large", 0)
    assert f"more than {MAX_MESSAGE_BYTES}" in caught.value.message


def test_the_path_refuses_a_url_that_may_not_be_called() -> None:
    # GIVEN a click ID that makes the URL longer than any URL dispatch calls
    values = {**TRACKER, "clickid": "c" * 3000}
    # WHEN the sale's postbacks are rendered, THEN the path refuses with the URL check's reason
    with pytest.raises(PostbackRefused) as caught:
        postback_messages(ingest_conversion(), ingest_config(), values, created_at=NOW)
    assert caught.value.kind == "unsafe_url"
    assert "longer than 2048 characters" in caught.value.message


def test_the_path_refuses_loopback_unless_allowed() -> None:
    # GIVEN a config saved on the local stack, pointing at a receiver on this machine
    config = ingest_config(postbacks=[{"events": ["sale"], "url": "http://127.0.0.1:9/pb?c={clickid}"}])
    # WHEN rendered for a deployed stack, THEN refused; locally, rendered
    with pytest.raises(PostbackRefused):
        postback_messages(ingest_conversion(), config, TRACKER, created_at=NOW)
    (message,) = postback_messages(ingest_conversion(), config, TRACKER, created_at=NOW, allow_loopback=True)
    assert message.url == "http://127.0.0.1:9/pb?c=c123"


def test_the_path_renders_the_subscribed_postbacks_by_default() -> None:
    # WHEN the sample sale is rendered for the sample config
    (message,) = postback_messages(ingest_conversion(payout="5.00"), ingest_config(), TRACKER, created_at=NOW)
    # THEN its one subscribed postback is rendered as ingest has always rendered it
    assert message.url == "https://track.acme.example/postback?cid=c123&payout=25.00&cur=EUR&ev=sale&offer=89"
    assert message.created_at == NOW
