"""Tracker presets and reversals end to end, on the local stack (`make run`): signed
conversions over HTTP, the `postback --local` config script, and a Keitaro-like receiver on
127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from e2e.e2e_support import CliResult, LocalStackProcess

from postback_ops.local.conversions import post_conversions
from postback_ops.local.receiver import Receiver

pytestmark = pytest.mark.e2e

SECRET = "local-dev-secret"
Cli = Callable[..., CliResult]


def link(affiliate_id: str, values: str) -> str:
    return (
        "http://www.espace-plus.net/redir/rotation_redir.php?id_rotation=89&e=0&w=0"
        f"&id={affiliate_id}&e=1&w=0&tracker=trID_{values}_trID"
    )


def put(postback: Cli, tmp_path: Path, name: str, text: str) -> CliResult:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return postback("affiliate", "put", str(path))


def test_a_sale_and_its_chargeback_reach_a_keitaro_receiver_with_the_same_subid_and_the_sales_tid(
    local_stack: LocalStackProcess, receiver: Receiver, postback: Cli, tmp_path: Path
) -> None:
    # GIVEN an affiliate whose tracker is Keitaro, subscribed to sales and chargebacks by preset
    affiliate = "2300001"
    config = f"""
affiliate_id: "{affiliate}"
name: E2E Keitaro
postbacks:
  - events: [sale, rebill, chargeback]
    preset: keitaro
    url: "{receiver.url}/keitaro/a1b2c3d/postback"
    click_id: clickid
"""
    result = put(postback, tmp_path, "keitaro.yaml", config)
    assert result.exit_code == 0, result.stderr + result.stdout
    # WHEN the platform posts a sale with a payout, then its chargeback with no link at all
    sale: dict[str, Any] = {
        "transaction_id": "E2E-KT-SALE",
        "event": "sale",
        "offer": {"id": "89", "type": "revshare"},
        "amount": "25.00",
        "payout": "7.50",
        "currency": "EUR",
        "link": link(affiliate, "a1-T9-kt42-x"),
        "occurred_at": "2026-11-25T12:00:00Z",
    }
    assert post_conversions(local_stack.api_url, sale, SECRET).status_code == 202
    receiver.wait_for(1, prefix="/keitaro/", timeout_s=60)
    chargeback = {
        "transaction_id": "E2E-KT-CB",
        "event": "chargeback",
        "original_transaction_id": "E2E-KT-SALE",
        "payout": "7.50",
        "currency": "EUR",
        "occurred_at": "2026-12-02T09:30:00Z",
    }
    answer = post_conversions(local_stack.api_url, chargeback, SECRET)
    assert answer.status_code == 202, answer.text
    assert answer.json()["outcome"] == "queued"
    # THEN the receiver gets status=sale then status=rejected, same subid, the sale's tid
    hits = receiver.wait_for(2, prefix="/keitaro/", timeout_s=60)
    assert [h.path for h in hits] == ["/keitaro/a1b2c3d/postback"] * 2
    got = [(h.param("status"), h.param("subid"), h.param("tid"), h.param("payout"), h.param("currency")) for h in hits]
    assert got == [
        ("sale", "kt42", "E2E-KT-SALE", "7.50", "EUR"),
        ("rejected", "kt42", "E2E-KT-SALE", "7.50", "EUR"),
    ]


def test_a_voluum_config_subscribed_to_chargeback_is_refused_naming_the_preset_and_why(
    local_stack: LocalStackProcess, receiver: Receiver, postback: Cli, tmp_path: Path
) -> None:
    # WHEN ops put a Voluum-preset config subscribed to chargebacks
    config = f"""
affiliate_id: "2300002"
name: E2E Voluum
postbacks:
  - events: [sale, chargeback]
    preset: voluum
    url: "{receiver.url}/voluum/postback"
    click_id: clickid
"""
    result = put(postback, tmp_path, "voluum.yaml", config)
    # THEN it is refused (exit 2), naming the preset and why, and nothing is stored
    assert result.exit_code == 2, result.stdout
    assert "voluum preset cannot take chargeback" in result.stderr
    assert "Voluum's postback has no way to reverse a conversion" in result.stderr
    assert postback("affiliate", "get", "2300002").exit_code == 4


def test_a_reversal_of_an_unknown_transaction_answers_202_original_not_found_and_sends_nothing(
    local_stack: LocalStackProcess, receiver: Receiver, postback: Cli, tmp_path: Path
) -> None:
    # GIVEN an affiliate subscribed to refunds, on its own receiver path
    affiliate = "2300003"
    config = f"""
affiliate_id: "{affiliate}"
name: E2E Unknown
postbacks:
  - events: [sale, refund]
    preset: keitaro
    url: "{receiver.url}/unknown/postback"
    click_id: clickid
"""
    assert put(postback, tmp_path, "unknown.yaml", config).exit_code == 0
    # WHEN the platform posts a refund of a transaction the relay never took
    refund = {
        "transaction_id": "E2E-UNK-RF",
        "event": "refund",
        "original_transaction_id": "E2E-NEVER-TAKEN",
        "occurred_at": "2026-12-02T09:30:00Z",
    }
    answer = post_conversions(local_stack.api_url, refund, SECRET)
    # THEN it is accepted with the outcome original_not_found, and nothing is sent
    assert answer.status_code == 202, answer.text
    assert answer.json()["outcome"] == "original_not_found"
    assert answer.json()["postbacks_queued"] == 0
    # (a later sale of the same affiliate reaches the receiver: the stack was delivering meanwhile)
    sale = {
        "transaction_id": "E2E-UNK-SALE",
        "event": "sale",
        "offer": {"id": "89", "type": "revshare"},
        "amount": "10.00",
        "currency": "EUR",
        "link": link(affiliate, "a1-T9-unk1-x"),
        "occurred_at": "2026-12-02T09:31:00Z",
    }
    assert post_conversions(local_stack.api_url, sale, SECRET).status_code == 202
    receiver.wait_for(1, prefix="/unknown/", timeout_s=60)
    assert [h.param("status") for h in receiver.hits(prefix="/unknown/")] == ["sale"]
    # AND the delivery log holds nothing for the refund
    rows = postback("deliveries", "--transaction", "E2E-UNK-RF")
    assert rows.exit_code == 0, rows.stderr
    assert rows.json() == []
