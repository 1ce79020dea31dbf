"""The local stack's DynamoDB: each request atomic on its table, different tables at once."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable
from typing import Any

import pytest

from postback_ops.local.dynamo_locks import TableLockedDynamoDB, table_of

WAIT_S = 10  # a safety net for a broken lock, never a timing assertion


def _request(body: dict[str, Any], target: str = "DynamoDB_20120810.GetItem") -> dict[str, Any]:
    raw = json.dumps(body).encode()
    return {"HTTP_X_AMZ_TARGET": target, "CONTENT_LENGTH": str(len(raw)), "wsgi.input": io.BytesIO(raw)}


class HeldApp:
    """A WSGI app that holds every request for table `held` until released, and counts how many
    requests are inside it at once per table."""

    def __init__(self, held: str) -> None:
        self.held = held
        self.entered = threading.Event()
        self.release = threading.Event()
        self.inside: dict[str, int] = {}
        self.most_inside: dict[str, int] = {}
        self.bodies: list[bytes] = []
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        body = environ["wsgi.input"].read()
        table = str(json.loads(body).get("TableName", "*"))
        with self._lock:
            self.bodies.append(body)
            self.inside[table] = self.inside.get(table, 0) + 1
            self.most_inside[table] = max(self.most_inside.get(table, 0), self.inside[table])
        try:
            if table == self.held:
                self.entered.set()
                assert self.release.wait(WAIT_S)
            return [b"{}"]
        finally:
            with self._lock:
                self.inside[table] -= 1


def _in_thread(call: Callable[[], Any], done: threading.Event | None = None) -> threading.Thread:
    def run() -> None:
        call()
        if done is not None:
            done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(
    ("body", "table"),
    [
        ({"TableName": "conversions"}, "conversions"),
        ({"StreamArn": "arn:aws:dynamodb:eu-west-1:1:table/conversions/stream/2026-12-06T00:00:00"}, "conversions"),
        ({"ShardIterator": "arn:aws:dynamodb:eu-west-1:1:table/conversions/stream/label|1|abc=="}, "conversions"),
        ({"RequestItems": {"a": [], "b": []}}, None),
        ({"TransactItems": []}, None),
        ({}, None),
    ],
)
def test_a_request_names_its_one_table_or_none(body: dict[str, Any], table: str | None) -> None:
    # WHEN the table a request addresses is read THEN it is its table, its stream's table, or none
    assert table_of(json.dumps(body).encode()) == table


def test_a_request_that_is_not_json_names_no_table() -> None:
    assert table_of(b"not json") is None


def test_requests_on_different_tables_run_at_once_and_the_body_reaches_moto_whole() -> None:
    # GIVEN a request on the deliveries table held inside moto
    app = HeldApp(held="deliveries")
    wsgi = TableLockedDynamoDB(app)
    held = _in_thread(lambda: wsgi(_request({"TableName": "deliveries"}), lambda *a: None))
    assert app.entered.wait(WAIT_S)
    # WHEN a request on the conversions table comes meanwhile
    done = threading.Event()
    _in_thread(lambda: wsgi(_request({"TableName": "conversions", "Item": {}}), lambda *a: None), done)
    # THEN it is served while the first is still inside
    assert done.wait(WAIT_S)
    app.release.set()
    held.join(WAIT_S)
    # AND moto read each body in full
    assert json.loads(app.bodies[1]) == {"TableName": "conversions", "Item": {}}


@pytest.mark.parametrize("serial", [False, True])
def test_requests_on_one_table_never_overlap(serial: bool) -> None:
    # GIVEN a request on the deliveries table held inside moto
    app = HeldApp(held="deliveries")
    wsgi = TableLockedDynamoDB(app, serial=serial)
    first = _in_thread(lambda: wsgi(_request({"TableName": "deliveries"}), lambda *a: None))
    assert app.entered.wait(WAIT_S)
    # WHEN a second request on the same table comes, and the first is then let go
    app.entered.clear()
    second = _in_thread(lambda: wsgi(_request({"TableName": "deliveries"}), lambda *a: None))
    assert not app.entered.wait(0.2)  # the second is not inside while the first is
    app.release.set()
    first.join(WAIT_S)
    second.join(WAIT_S)
    # THEN never were two inside at once
    assert app.most_inside["deliveries"] == 1


def test_a_request_naming_no_single_table_waits_for_every_table_and_serial_mode_serves_one_at_a_time() -> None:
    # GIVEN a request on the deliveries table held inside moto, in serial mode
    app = HeldApp(held="deliveries")
    wsgi = TableLockedDynamoDB(app, serial=True)
    first = _in_thread(lambda: wsgi(_request({"TableName": "deliveries"}), lambda *a: None))
    assert app.entered.wait(WAIT_S)
    # WHEN a request on another table comes
    done = threading.Event()
    _in_thread(lambda: wsgi(_request({"TableName": "conversions"}), lambda *a: None), done)
    # THEN it waits for the first (one request at a time)
    assert not done.wait(0.2)
    app.release.set()
    first.join(WAIT_S)
    assert done.wait(WAIT_S)


def test_sqs_requests_pass_untouched() -> None:
    # GIVEN an SQS request (no DynamoDB target)
    seen: list[dict[str, Any]] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        seen.append(environ)
        return [b"ok"]

    body = io.BytesIO(b"{}")
    environ: dict[str, Any] = {"HTTP_X_AMZ_TARGET": "AmazonSQS.ReceiveMessage", "wsgi.input": body}
    # WHEN it is served THEN moto gets the very environ, its body unread
    assert TableLockedDynamoDB(app)(environ, lambda *a: None) == [b"ok"]
    assert seen == [environ] and body.read() == b"{}"
