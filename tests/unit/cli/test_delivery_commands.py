"""`postback deliveries`, `replay` and `endpoints`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fakes.cli import FakeBackends, delivery
from fakes.deliveries import Tried, delivery_record, message
from typer.testing import Result

from postback_relay.domain.config import load_config_text
from postback_relay.domain.delivery import Circuit, CircuitStatus, DeliveryState

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "affiliates"


@pytest.fixture
def log(backends: FakeBackends) -> FakeBackends:
    """GIVEN five postbacks of two affiliates, two of them failed."""
    for example in ("revshare-default.yaml", "custom-structure-rest.yaml"):
        config = load_config_text((EXAMPLES / example).read_text(encoding="utf-8"))
        backends.affiliates.put(config, expected_version=None, updated_by="test")
    backends.deliveries.records = {
        r.delivery_id: r
        for r in (
            delivery(1),
            delivery(2, state=DeliveryState.FAILED, statuses=(500, 500, 404)),
            delivery(3, state=DeliveryState.RETRYING, statuses=(None,)),
            delivery(4, affiliate_id="7654321", state=DeliveryState.FAILED, statuses=(410,)),
            delivery(5, state=DeliveryState.PENDING, statuses=()),
        )
    }
    # Each conversion record keeps its postbacks' messages (the outbox): how --transaction finds them.
    backends.kept_postbacks.outbox.extend(r.message for r in backends.deliveries.records.values())
    return backends


@pytest.mark.usefixtures("log")
def test_deliveries_of_an_affiliate_newest_first_in_contract_fields(postback: Callable[..., Result]) -> None:
    # WHEN ops list one affiliate's postbacks
    result = postback("--json", "deliveries", "--affiliate", "1234567", "--limit", "3")
    # THEN the newest three come first, with attempts as a count and the last status
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["delivery_id"] for r in rows] == ["d5", "d3", "d2"]
    failed = rows[2]
    assert {k: failed[k] for k in ("transaction_id", "event", "url", "state", "attempts", "http_status")} == {
        "transaction_id": "T-2",
        "event": "sale",
        "url": "https://track.acme.example/postback?cid=c2",
        "state": "failed",
        "attempts": 3,
        "http_status": 404,
    }
    assert failed["latency_ms"] == 42
    assert rows[0]["attempts"] == 0
    assert rows[0]["http_status"] is None


@pytest.mark.usefixtures("log")
def test_deliveries_filtered_by_transaction_and_state(postback: Callable[..., Result]) -> None:
    by_transaction = json.loads(postback("--json", "deliveries", "--transaction", "T-3").stdout)
    failed = json.loads(postback("--json", "deliveries", "--state", "failed").stdout)
    retrying = json.loads(postback("--json", "deliveries", "--affiliate", "1234567", "--state", "retrying").stdout)
    assert [r["delivery_id"] for r in by_transaction] == ["d3"]
    assert [r["delivery_id"] for r in failed] == ["d4", "d2"]
    assert [r["delivery_id"] for r in retrying] == ["d3"]


@pytest.mark.usefixtures("log")
def test_deliveries_as_a_table_for_people(postback: Callable[..., Result]) -> None:
    result = postback("deliveries", "--affiliate", "1234567")
    assert result.exit_code == 0
    assert "https://track.acme.example/postback?cid=c2" in result.stdout
    assert "42 ms" in result.stdout


def test_the_table_says_why_a_postback_is_not_delivered_connection_errors_included(
    postback: Callable[..., Result], backends: FakeBackends
) -> None:
    # GIVEN a postback failed for good on refused connections, one retrying after a 503
    config = load_config_text((EXAMPLES / "revshare-default.yaml").read_text(encoding="utf-8"))
    backends.affiliates.put(config, expected_version=None, updated_by="test")
    refused = delivery_record(
        message(1, created_at=datetime(2026, 11, 25, 12, 1, tzinfo=UTC)),
        DeliveryState.FAILED,
        [Tried(None, error_kind="connection_error")] * 8,
    )
    busy = delivery_record(
        message(2, created_at=datetime(2026, 11, 25, 12, 2, tzinfo=UTC)),
        DeliveryState.RETRYING,
        [Tried(503, error_kind="http_status")],
    )
    backends.deliveries.records = {
        refused.delivery_id: replace(refused, last_error="127.0.0.1: connection refused"),
        busy.delivery_id: replace(busy, last_error="your server answered 503"),
    }

    # WHEN ops list the affiliate's postbacks, as a table and as JSON
    table = postback("deliveries", "--affiliate", "1234567")
    rows = json.loads(postback("--json", "deliveries", "--affiliate", "1234567").stdout)

    # THEN each says why, in words
    assert table.exit_code == 0, table.stderr
    assert "attempt 8 of 8: connection refused" in table.stdout
    assert "attempt 1 of 8: HTTP 503" in table.stdout
    assert [r["reason"] for r in rows] == [
        "attempt 1 of 8: HTTP 503 (your server answered 503)",
        "attempt 8 of 8: connection refused",
    ]


@pytest.mark.usefixtures("log")
def test_bare_deliveries_lists_every_failed_postback(postback: Callable[..., Result]) -> None:
    # WHEN ops ask for deliveries with no filter (the contract's bare command)
    result = postback("--json", "deliveries")
    # THEN the stack's failed postbacks are listed, newest first, and nothing else
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["delivery_id"] for r in rows] == ["d4", "d2"]
    # AND each row carries its attempts, one entry per call, the count beside them
    assert all(len(r["attempt_log"]) == r["attempts"] for r in rows)
    assert all(entry["attempt"] == n + 1 for r in rows for n, entry in enumerate(r["attempt_log"]))


def test_other_states_are_listed_per_affiliate_or_transaction(postback: Callable[..., Result]) -> None:
    result = postback("deliveries", "--state", "retrying")
    assert result.exit_code == 2
    assert "--affiliate or --transaction" in result.stderr


def test_an_unknown_state_is_a_usage_error(postback: Callable[..., Result]) -> None:
    result = postback("deliveries", "--affiliate", "1", "--state", "lost")
    assert result.exit_code == 2


@pytest.mark.usefixtures("log")
def test_replay_requeues_an_affiliates_failed_postbacks(
    postback: Callable[..., Result], backends: FakeBackends
) -> None:
    # WHEN ops replay one affiliate's failed postbacks
    result = postback("--json", "replay", "--affiliate", "1234567")
    # THEN only its failed one is queued again and marked pending
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"replayed": 1, "delivery_ids": ["d2"]}
    assert [m.delivery_id for m in backends.queue.sent] == ["d2"]
    assert backends.deliveries.records["d2"].state is DeliveryState.PENDING
    assert backends.deliveries.records["d4"].state is DeliveryState.FAILED


@pytest.mark.usefixtures("log")
def test_bare_replay_requeues_every_failed_postback(postback: Callable[..., Result], backends: FakeBackends) -> None:
    # WHEN ops replay with no filter (the contract's bare command)
    result = postback("--json", "replay")
    # THEN every failed postback of the stack is queued again, and only those
    assert result.exit_code == 0, result.stderr
    assert sorted(json.loads(result.stdout)["delivery_ids"]) == ["d2", "d4"]
    assert sorted(m.delivery_id for m in backends.queue.sent) == ["d2", "d4"]


def test_endpoints_shows_each_circuit(postback: Callable[..., Result], backends: FakeBackends) -> None:
    # GIVEN one circuit open for the next hour and one closed
    backends.endpoints.circuits = [
        Circuit("https://dead.example:443", CircuitStatus.OPEN, failures=5, opened_until=time.time() + 3600),
        Circuit("https://alive.example:443"),
    ]
    # WHEN ops look at every endpoint
    table = postback("endpoints", "--all")
    data = postback("--json", "endpoints", "--all")
    # THEN people and scripts see which one defers its postbacks
    assert table.exit_code == 0, table.stderr
    assert "https://dead.example:443" in table.stdout
    rows = json.loads(data.stdout)
    assert [(r["endpoint"], r["state"], r["failures"]) for r in rows] == [
        ("https://alive.example:443", "closed", 0),
        ("https://dead.example:443", "open", 5),
    ]
    assert rows[0]["deferring_s"] == 0
    assert 3500 < rows[1]["deferring_s"] <= 3600
    assert rows[1]["opened_until"].endswith("+00:00")


def test_endpoints_lists_open_and_half_open_ones_by_default(
    postback: Callable[..., Result], backends: FakeBackends
) -> None:
    # GIVEN one circuit open, one whose cool-down is over, one in its trial, and one closed
    now = time.time()
    backends.endpoints.circuits = [
        Circuit("https://open.example:443", CircuitStatus.OPEN, 5, now + 120, 60, 0.0, now - 0.5),
        Circuit("https://expired.example:443", CircuitStatus.OPEN, 5, now - 10, 60, 0.0, now - 70),
        Circuit("https://trial.example:443", CircuitStatus.HALF_OPEN, 6, now - 5, 120, now + 25, now - 125),
        Circuit("https://alive.example:443"),
    ]
    # WHEN ops list the endpoints without --all
    rows = json.loads(postback("--json", "endpoints").stdout)
    # THEN the closed one is left out, and an open one whose cool-down is over shows as half-open
    states = {r["endpoint"]: r["state"] for r in rows}
    assert states == {
        "https://expired.example:443": "half_open",
        "https://open.example:443": "open",
        "https://trial.example:443": "half_open",
    }
    # AND cool_down_s is the wait the opening applied: opened at + cool_down_s = opened_until
    by_endpoint = {r["endpoint"]: r for r in rows}
    assert by_endpoint["https://open.example:443"]["cool_down_s"] == 120
    assert by_endpoint["https://expired.example:443"]["cool_down_s"] == 60
    assert by_endpoint["https://expired.example:443"]["deferring_s"] == 0


def test_endpoints_says_so_when_no_circuit_is_open(postback: Callable[..., Result], backends: FakeBackends) -> None:
    # GIVEN only a closed circuit on record
    backends.endpoints.circuits = [Circuit("https://alive.example:443")]
    # WHEN ops list the endpoints, then every one
    default, every = postback("endpoints"), postback("--json", "endpoints", "--all")
    # THEN the default says none is open, and --all shows the closed one
    assert default.exit_code == 0
    assert "No endpoint's circuit is open." in default.stdout
    assert [r["state"] for r in json.loads(every.stdout)] == ["closed"]


@pytest.mark.usefixtures("log")
def test_deliveries_and_replay_of_an_unknown_affiliate_exit_4_like_affiliate_get(
    postback: Callable[..., Result], backends: FakeBackends
) -> None:
    # WHEN ops list or replay the postbacks of an affiliate the stack does not know
    listed = postback("deliveries", "--affiliate", "UNKNOWN")
    replayed = postback("replay", "--affiliate", "UNKNOWN")
    got = postback("affiliate", "get", "UNKNOWN")
    # THEN each exits 4 with the same sentence, and nothing is queued
    assert listed.exit_code == replayed.exit_code == got.exit_code == 4
    assert listed.stderr == replayed.stderr == got.stderr == "No affiliate UNKNOWN is onboarded.\n"
    assert backends.queue.sent == []
