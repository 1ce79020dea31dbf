"""The affiliate receiver records hits and plays scripted answers (a flaky affiliate server)."""

from __future__ import annotations

import pytest
import requests

from postback_ops.local.receiver import Answer, Receiver


def test_it_records_each_hit_with_its_query_and_body() -> None:
    # GIVEN a running receiver
    with Receiver() as receiver:
        # WHEN a GET and a POST arrive
        first = requests.get(f"{receiver.url}/pb?cid=abc&amount=25.00", timeout=5)
        requests.post(f"{receiver.url}/hook", data=b"x=1", headers={"X-Test": "yes"}, timeout=5)

        # THEN both are recorded, the GET answered 200 OK by default
        hits = receiver.wait_for(2, timeout_s=5)
    assert first.status_code == 200
    assert first.text == "OK"
    assert (hits[0].method, hits[0].path, hits[0].param("cid"), hits[0].param("amount")) == (
        "GET",
        "/pb",
        "abc",
        "25.00",
    )
    assert (hits[1].method, hits[1].body, hits[1].headers["x-test"]) == ("POST", b"x=1", "yes")
    assert receiver.hits("/hook") == [hits[1]]


def test_a_script_of_answers_plays_in_order_and_the_last_repeats() -> None:
    # GIVEN a receiver that fails once, then succeeds
    with Receiver() as receiver:
        receiver.respond("/flaky", [500, Answer(200, "success=true")])

        # WHEN the path is called three times
        statuses = [requests.get(f"{receiver.url}/flaky", timeout=5) for _ in range(3)]

    # THEN the answers are 500, then 200 for good, and each hit records what it got
    assert [(r.status_code, r.text) for r in statuses] == [(500, "error"), (200, "success=true"), (200, "success=true")]
    assert [h.status for h in receiver.hits("/flaky")] == [500, 200, 200]


def test_wait_for_says_how_many_hits_came_when_too_few_did() -> None:
    # GIVEN a receiver that got nothing
    with Receiver() as receiver, pytest.raises(TimeoutError, match="got 0 hit"):
        # WHEN a test waits for a hit
        # THEN it is told, quickly, that none came
        receiver.wait_for(1, timeout_s=0.2)
