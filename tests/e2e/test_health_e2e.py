"""`postback health` and the circuit notices, end to end on the local stack.

Each affiliate here has its own receiver (its own port), so its endpoint's circuit is its
own: a 503 endpoint opening its circuit must not defer the other tests' postbacks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from e2e.e2e_support import LocalStackProcess, eventually
from e2e.test_local_stack import SECRET, Cli, conversion, deliveries_of, onboard, revshare_link, rows_of, settled

from postback_ops.local.conversions import post_conversions
from postback_ops.local.receiver import Answer, Receiver
from postback_relay.domain.delivery import FAILURE_THRESHOLD
from postback_relay.domain.events import Event

pytestmark = pytest.mark.e2e


@pytest.fixture
def own_receivers() -> Iterator[list[Receiver]]:
    started: list[Receiver] = []
    try:
        yield started
    finally:
        for receiver in started:
            receiver.stop()


def receiver_answering(own: list[Receiver], path: str, status: int) -> Receiver:
    receiver = Receiver().start()
    own.append(receiver)
    receiver.respond(path, [Answer(status=status)])
    return receiver


def post_sales(stack: LocalStackProcess, affiliate: str, prefix: str, count: int) -> None:
    for n in range(count):
        sale = conversion(
            f"E2E-{prefix}-{n}",
            Event.SALE,
            revshare_link(affiliate, f"a-b-{prefix}{n}-d"),
            offer_id="89",
            offer_type="revshare",
        )
        answer = post_conversions(stack.api_url, sale, SECRET)
        assert answer.status_code == 202, answer.text


def health_rows(postback: Cli, *args: str) -> list[dict[str, Any]]:
    return rows_of(postback, "health", *args)


def test_health_puts_the_affiliate_whose_server_answers_404_first_with_its_reason(
    local_stack: LocalStackProcess, postback: Cli, tmp_path: Path, own_receivers: list[Receiver]
) -> None:
    # GIVEN a healthy affiliate and one whose server answers 404, three sales each
    healthy, failing = "2000101", "2000102"
    onboard(postback, tmp_path, healthy, receiver_answering(own_receivers, "/ok/pb", 200), "/ok")
    onboard(postback, tmp_path, failing, receiver_answering(own_receivers, "/gone/pb", 404), "/gone")
    post_sales(local_stack, healthy, "HOK", 3)
    post_sales(local_stack, failing, "H404", 3)
    for affiliate in (healthy, failing):
        eventually(partial(deliveries_of, postback, affiliate=affiliate), lambda r: len(r) == 3 and settled(r))

    # WHEN ops ask for the last hour's health
    rows = health_rows(postback, "--since", "1h")

    # THEN both are listed, the failing one before the healthy one
    ids = [row["affiliate_id"] for row in rows]
    assert ids.index(failing) < ids.index(healthy), ids
    by_id = {row["affiliate_id"]: row for row in rows}
    bad, good = by_id[failing], by_id[healthy]
    # AND the counts and reasons are right
    assert (bad["delivered"], bad["retrying"], bad["pending"], bad["failed"]) == (0, 0, 0, 3)
    assert bad["success_rate"] == 0.0
    assert bad["top_failures"] == [{"reason": "404", "count": 3}]
    assert bad["latency_ms"] == {"p50": None, "p95": None}
    assert (good["delivered"], good["retrying"], good["pending"], good["failed"]) == (3, 0, 0, 0)
    assert good["success_rate"] == 1.0
    assert good["top_failures"] == []
    assert good["latency_ms"]["p50"] is not None and good["latency_ms"]["p95"] >= good["latency_ms"]["p50"]
    assert good["name"] == f"E2E {healthy}"
    # AND --affiliate gives that row alone, and an unknown one exits 4 in one sentence
    assert [r["affiliate_id"] for r in health_rows(postback, "--affiliate", failing)] == [failing]
    unknown = postback("health", "--affiliate", "9999999")
    assert unknown.exit_code == 4
    # (with --json, as every command here runs, the sentence comes as JSON on stderr)
    assert json.loads(unknown.stderr) == {"error": "not_found", "message": "No affiliate 9999999 is onboarded."}
    assert postback("health", "--since", "2w").exit_code == 2


def test_an_endpoint_answering_503_is_announced_open_once_then_closed_once(
    local_stack: LocalStackProcess, postback: Cli, tmp_path: Path, own_receivers: list[Receiver]
) -> None:
    # GIVEN an affiliate whose server starts answering 503
    affiliate = "2000103"
    server = receiver_answering(own_receivers, "/down/pb", 503)
    endpoint = server.url  # http://127.0.0.1:<port>: the circuit's key
    onboard(postback, tmp_path, affiliate, server, "/down")
    opened = re.compile(rf"^alarm +postback relay: circuit open for {re.escape(endpoint)} \(affiliate {affiliate}\)$")
    closed = re.compile(rf"^alarm +postback relay: circuit closed for {re.escape(endpoint)} \(affiliate {affiliate}\)$")

    def lines(pattern: re.Pattern[str]) -> list[str]:
        return [line for line in list(local_stack.lines) if pattern.match(line)]

    # WHEN enough of its postbacks fail to open the endpoint's circuit
    post_sales(local_stack, affiliate, "H503", FAILURE_THRESHOLD + 1)
    assert eventually(lambda: lines(opened), bool), local_stack.log_tail()
    # AND, after a while of failing trials, the server recovers
    eventually(lambda: len(server.hits(path="/down/pb")), lambda n: n >= FAILURE_THRESHOLD + 2, timeout_s=30)
    server.respond("/down/pb", [200])

    # THEN every postback ends delivered
    rows = eventually(
        lambda: deliveries_of(postback, affiliate=affiliate),
        lambda r: len(r) == FAILURE_THRESHOLD + 1 and all(row["state"] == "delivered" for row in r),
        timeout_s=90,
    )
    assert {row["state"] for row in rows} == {"delivered"}, rows
    # AND the log shows one "circuit open" message, naming the last failure reasons and the command, then one "closed"
    eventually(lambda: lines(closed), bool)
    assert len(lines(opened)) == 1, local_stack.log_tail(80)
    assert len(lines(closed)) == 1, local_stack.log_tail(80)
    log = list(local_stack.lines)
    first_open = log.index(lines(opened)[0])
    assert first_open < log.index(lines(closed)[0])
    notice = [log[first_open]]
    for line in log[first_open + 1 :]:
        if not line.startswith(" " * 10):  # the notice's text is indented under its subject
            break
        notice.append(line)
    assert any(re.search(r"Last failures: 503 x\d+", line) for line in notice), notice
    assert any(f"postback health --affiliate {affiliate}" in line for line in notice), notice
    assert not any("/down/pb" in line or "cid=" in line for line in notice), notice
