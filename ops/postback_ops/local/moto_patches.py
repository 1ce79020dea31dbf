"""Two fixes to moto's SQS for a queue served to several pollers at once (the local stack's
event source mapping, the reliability suite), where thousands of postbacks may wait.

- `Queue.delete_message` rebuilds the queue's message list without the lock that
  `add_message` takes: a message sent while another poller deletes one can vanish, or the
  deleted one come back. SQS does neither; the patched delete takes the same lock.
- moto reads the clock through datetime arithmetic for every message of the queue on most
  calls (SendMessage computes the queue's counters, each a pass over all its messages): with
  thousands of delayed copies waiting that is tens of milliseconds per message sent. The same
  clock (epoch milliseconds) is read with time.time(): same values, about 18 times faster.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any


def patch_moto_sqs(*, apply: bool = True) -> list[tuple[Any, str, Any]]:
    """The patches as (target, attribute, value); applied unless `apply` is False (a test
    applies them with its monkeypatch, to undo them after)."""
    import moto.sqs.models as sqs_models

    real_delete: Callable[..., None] = sqs_models.Queue.delete_message
    if getattr(real_delete, "_locked", False):
        return []
    real_clock = sqs_models.unix_time_millis  # type: ignore[attr-defined]

    @functools.wraps(real_delete)
    def delete_message(self: Any, receipt_handle: str) -> None:
        with self._messages_lock:
            real_delete(self, receipt_handle)

    delete_message._locked = True  # type: ignore[attr-defined]

    def unix_time_millis(dt: Any = None) -> float:
        return real_clock(dt) if dt is not None else time.time() * 1000.0

    patches: list[tuple[Any, str, Any]] = [
        (sqs_models.Queue, "delete_message", delete_message),
        (sqs_models, "unix_time_millis", unix_time_millis),
    ]
    if apply:
        for target, name, value in patches:
            setattr(target, name, value)
    return patches
