"""moto's DynamoDB, each request atomic as DynamoDB's are; tables served concurrently on request.

moto creates an UpdateItem's new item with its key alone, then applies the update in place,
attribute by attribute: a GetItem at that moment (a test link checking a delivery while the
dispatcher logs its first attempt) would read a half-written item, which DynamoDB never shows.
So no two requests on one table run at once. Requests on different tables do: moto keeps each
table's items and its stream apart, so the ingest's conditional put (conversions), the
dispatcher's read and write (deliveries) and the outbox's stream reads (the conversions
table's stream) no longer wait for one another. A request that names no single table (a batch
or a transaction over several, a listing, a table's creation) holds every table, as every
request did before. SQS requests and long polls are never held up.

`serial=True` serves one DynamoDB request at a time, and is what the local stack does: measured
side by side (`make bench`, docs/benchmarks.md), serving tables concurrently was slower on this machine, not
faster. moto's handlers are Python under one interpreter lock, so concurrent requests add thread
switching, not CPU; POSTBACK_LOCAL_DYNAMODB=tables turns the concurrent mode on.
"""

from __future__ import annotations

import io
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_TABLE_IN_ARN = re.compile(r":table/([^/|]+)")


def table_of(body: bytes) -> str | None:
    """The one table a DynamoDB or DynamoDB Streams request names, or None (several, or none)."""
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        return None
    if not isinstance(request, dict):
        return None
    name = request.get("TableName")
    if isinstance(name, str):
        return name
    for key in ("StreamArn", "ShardIterator"):  # moto's iterators carry their table's ARN
        value = request.get(key)
        if isinstance(value, str) and (match := _TABLE_IN_ARN.search(value)):
            return match.group(1)
    return None


class _SharedExclusive:
    """Many holders at once in shared mode, or one alone in exclusive mode (writers first)."""

    def __init__(self) -> None:
        self._state = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._waiting_exclusive = 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._state:
            self._state.wait_for(lambda: not self._exclusive and not self._waiting_exclusive)
            self._shared += 1
        try:
            yield
        finally:
            with self._state:
                self._shared -= 1
                self._state.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._state:
            self._waiting_exclusive += 1
            self._state.wait_for(lambda: not self._exclusive and not self._shared)
            self._waiting_exclusive -= 1
            self._exclusive = True
        try:
            yield
        finally:
            with self._state:
                self._exclusive = False
                self._state.notify_all()


class TableLockedDynamoDB:
    """A WSGI middleware over moto's app: one lock per table, a store-wide lock above them."""

    def __init__(self, app: Any, *, serial: bool = False) -> None:
        self._app = app
        self._serial = serial
        self._store = _SharedExclusive()
        self._tables: dict[str, threading.Lock] = {}
        self._tables_lock = threading.Lock()

    def _table_lock(self, name: str) -> threading.Lock:
        with self._tables_lock:
            return self._tables.setdefault(name, threading.Lock())

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if not str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith("DynamoDB"):
            return self._app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        table = None if self._serial else table_of(body)
        if table is None:
            with self._store.exclusive():
                return list(self._app(environ, start_response))
        with self._store.shared(), self._table_lock(table):
            return list(self._app(environ, start_response))
