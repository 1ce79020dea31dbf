"""Replay failed postbacks (contract section 6: `postback replay`): their messages go back on
the queue and the deliveries become `pending`, their attempt count starting afresh. A replayed
message is the stored one, `created_at` included, so it addresses the same delivery item."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress

from postback_relay.domain.errors import ConflictError
from postback_relay.domain.records import DeliveryRecord
from postback_relay.ports import DeliveryLog, PostbackQueue


def replay_records(deliveries: DeliveryLog, queue: PostbackQueue, records: Sequence[DeliveryRecord]) -> list[str]:
    """Queue these deliveries' stored messages again and mark them replayed; returns the IDs queued.

    Queued first, marked second: a delivery the queue refused stays `failed` (replayable
    again), and one delivered by its replayed message before the mark stays `delivered`
    (the mark is conditional on `failed`)."""
    messages = [record.message for record in records]
    refused = {message.delivery_id for message in queue.send(messages)}
    replayed: list[str] = []
    for message in messages:
        if message.delivery_id in refused:
            continue
        with suppress(ConflictError):  # delivered (or failed again) by its replayed message already
            deliveries.mark_replayed(message.ref)
        replayed.append(message.delivery_id)
    return replayed
