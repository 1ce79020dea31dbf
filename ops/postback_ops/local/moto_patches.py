"""Fixes to moto for a stack served by several threads at once (the local stack, the
reliability suite): its SQS, where thousands of postbacks may wait, and its table streams.

- `Queue.delete_message` rebuilds the queue's message list without the lock that
  `add_message` takes: a message sent while another poller deletes one can vanish, or the
  deleted one come back. SQS does neither; the patched delete takes the same lock.
- `SQSBackend.receive_message` looks for a visible message and marks it received without a
  lock: two pollers can both take it (seen: a message handled twice by the local poller's two
  threads). The patched receive holds the queue's lock; a long poll's wait releases it.
- moto reads the clock through datetime arithmetic for every message of the queue on most
  calls (SendMessage computes the queue's counters, each a pass over all its messages): with
  thousands of delayed copies waiting that is tens of milliseconds per message sent. The same
  clock (epoch milliseconds) is read with time.time(): same values, about 18 times faster.
- moto computes every attribute of the queue (its three counters each a pass over all its
  messages) once per requested name, up to seven times per GetQueueAttributes, and
  ReceiveMessage asks it for the retention period of each message it returns: with 2,000
  messages waiting, one receive of 10 made some 90 passes over the queue. The patched
  GetQueueAttributes computes them once; the retention check reads the one attribute. Same
  answers.
- `StreamShard.add` numbers a stream record `len(items) + start` and appends it later, after
  building the record, with no lock: two threads writing the same table (ingest writes a
  request's conversions from a pool of threads) can get one sequence number for two records.
  A GetRecords iterator "after" that number then serves the last record again and again, and
  the stream poller never sees the end of the shard: a mixed-fault run hung 25 minutes on it.
  DynamoDB Streams numbers each record once, increasing; the patched `add` takes a lock.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any


def patch_moto() -> None:
    """Apply the fixes above to this process's moto, once (a second call changes nothing)."""
    _patch_sqs()
    _patch_streams()


def _patch_sqs() -> None:
    import moto.sqs.models as sqs_models

    real_delete: Callable[..., None] = sqs_models.Queue.delete_message
    if getattr(real_delete, "_locked", False):
        return
    real_clock = sqs_models.unix_time_millis  # type: ignore[attr-defined]

    @functools.wraps(real_delete)
    def delete_message(self: Any, receipt_handle: str) -> None:
        with self._messages_lock:
            real_delete(self, receipt_handle)

    delete_message._locked = True  # type: ignore[attr-defined]

    real_receive: Callable[..., list[Any]] = sqs_models.SQSBackend.receive_message

    @functools.wraps(real_receive)
    def receive_message(self: Any, queue_name: str, *args: Any, **kwargs: Any) -> list[Any]:
        # The queue's own lock (a Condition over an RLock): the scan and its marks are one step,
        # and a long poll's wait (wait_for_messages, the same lock) still lets others in.
        with self.get_queue(queue_name)._messages_lock:
            return real_receive(self, queue_name, *args, **kwargs)

    def unix_time_millis(dt: Any = None) -> float:
        return real_clock(dt) if dt is not None else time.time() * 1000.0

    for target, name, value in (
        (sqs_models.Queue, "delete_message", delete_message),
        (sqs_models.SQSBackend, "receive_message", receive_message),
        (sqs_models, "unix_time_millis", unix_time_millis),
        (sqs_models.SQSBackend, "get_queue_attributes", _get_queue_attributes),
        (
            sqs_models.SQSBackend,
            "is_message_valid_based_on_retention_period",
            _is_message_valid_based_on_retention_period,
        ),
    ):
        setattr(target, name, value)


def _get_queue_attributes(backend: Any, queue_name: str, attribute_names: list[str]) -> dict[str, Any]:
    """moto's SQSBackend.get_queue_attributes (5.x), with the queue's attributes computed once."""
    from moto.sqs.exceptions import InvalidAttributeName

    queue = backend.get_queue(queue_name)
    if not attribute_names:
        return {}
    valid_names = ["All", *queue.BASE_ATTRIBUTES, *queue.FIFO_ATTRIBUTES, *queue.KMS_ATTRIBUTES]
    invalid_name = next((name for name in attribute_names if name not in valid_names), None)
    if invalid_name or invalid_name == "":
        raise InvalidAttributeName(invalid_name)
    every: dict[str, Any] = queue.attributes
    if "All" in attribute_names:
        return every
    return {name: every[name] for name in attribute_names if every.get(name) is not None}


def _is_message_valid_based_on_retention_period(backend: Any, queue_name: str, message: Any) -> bool:
    """moto's retention check, reading the queue's retention period alone."""
    from moto.core.utils import unix_time

    retention_period = int(backend.get_queue(queue_name).message_retention_period)
    return bool(retention_period + message.sent_timestamp / 1000 > unix_time())


_STREAM_LOCK = threading.Lock()


def _patch_streams() -> None:
    from moto.dynamodb.models import table as table_models

    real_add: Callable[..., None] = table_models.StreamShard.add
    if getattr(real_add, "_locked", False):
        return

    @functools.wraps(real_add)
    def add(self: Any, old: Any, new: Any) -> None:
        with _STREAM_LOCK:
            real_add(self, old, new)

    add._locked = True  # type: ignore[attr-defined]
    table_models.StreamShard.add = add  # type: ignore[method-assign]
