"""A batch's conditional puts run concurrently, the answers still in the order of the request."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from fakes import FakeAffiliateStore, FakeConversionLog, ingest_config, ingest_conversion

from postback_relay.domain.conversion import Conversion, ConversionOutcome, ConversionResult
from postback_relay.domain.delivery import PostbackMessage
from postback_relay.domain.errors import InfrastructureError
from postback_relay.domain.records import FirstRecord
from postback_relay.services.ingest import RECORD_WORKERS, IngestService

NOW = datetime(2026, 11, 25, 12, 0, 5, tzinfo=UTC)


class OverlappingLog(FakeConversionLog):
    """Each record waits until `together` records are in flight at once: sequential puts
    would never get past the barrier (it breaks after a generous timeout instead)."""

    def __init__(self, together: int, *, refuse: str | None = None) -> None:
        super().__init__()
        self._barrier = threading.Barrier(together, timeout=10)
        self._lock = threading.Lock()
        self.refuse = refuse

    def record(
        self,
        conversion: Conversion,
        result: ConversionResult,
        messages: Sequence[PostbackMessage] = (),
        *,
        received_at: datetime | None = None,
        tracker: str | None = None,
    ) -> FirstRecord | None:
        self._barrier.wait()  # raises BrokenBarrierError if the puts do not overlap
        if conversion.transaction_id == self.refuse:
            raise InfrastructureError("the conversion log is down")
        with self._lock:
            return super().record(conversion, result, messages, received_at=received_at, tracker=tracker)


def service(log: FakeConversionLog) -> IngestService:
    return IngestService(FakeAffiliateStore(ingest_config()), log, clock=lambda: NOW)


def test_a_batch_is_recorded_concurrently_and_answered_in_request_order() -> None:
    # GIVEN a log that lets a record finish only when a pool's worth of records are in flight,
    # and a batch of twice that many, one of them recorded before
    log = OverlappingLog(RECORD_WORKERS)
    batch = [ingest_conversion(transaction_id=f"T-{n}") for n in range(2 * RECORD_WORKERS)]
    earlier = ConversionResult(
        transaction_id="T-5",
        event=batch[5].event,
        affiliate_id="1234567",
        outcome=ConversionOutcome.QUEUED,
        postbacks_queued=1,
    )
    log.records[batch[5].conversion_id] = (batch[5], earlier)

    # WHEN the batch is ingested
    report = service(log).ingest(batch)

    # THEN every answer is in the request's order, the earlier one a repeat, the rest queued in order
    assert [a.result.transaction_id for a in report.answers] == [c.transaction_id for c in batch]
    assert [n for n, a in enumerate(report.answers) if a.repeat] == [5]
    assert sorted(m.transaction_id for m in log.outbox) == sorted(c.transaction_id for c in batch if c is not batch[5])


def test_a_failed_put_among_concurrent_ones_fails_the_request_once_every_put_ended() -> None:
    # GIVEN a batch whose puts overlap and one of which fails
    log = OverlappingLog(4, refuse="T-2")
    batch = [ingest_conversion(transaction_id=f"T-{n}") for n in range(4)]

    # WHEN it is ingested, THEN the failure surfaces (503), after every other put ended: the
    # others are recorded with their outbox, and the platform's retry finds them as repeats
    with pytest.raises(InfrastructureError):
        service(log).ingest(batch)
    assert sorted(log.records) == ["T-0#sale", "T-1#sale", "T-3#sale"]
    assert sorted(m.transaction_id for m in log.outbox) == ["T-0", "T-1", "T-3"]
