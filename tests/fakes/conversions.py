"""ConversionLog in a dict."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from postback_relay.domain.conversion import Conversion, ConversionResult
from postback_relay.domain.delivery import DeliveryRef, PostbackMessage
from postback_relay.domain.errors import InfrastructureError
from postback_relay.domain.events import ORIGINAL_EVENTS
from postback_relay.domain.records import FirstRecord, OriginalConversion
from postback_relay.domain.repeats import content_digests, differing_fields
from postback_relay.ports import ConversionLog, KeptPostbacks


class FakeConversionLog(ConversionLog, KeptPostbacks):
    """`fail_after` makes the n+1-th record raise InfrastructureError. `outbox` lists the
    messages of every record written, in order: what the stream would queue, and what
    `delivery_refs` finds a transaction's deliveries by."""

    def __init__(self, *, fail_after: int | None = None) -> None:
        self.records: dict[str, tuple[Conversion, ConversionResult]] = {}
        self.trackers: dict[str, str | None] = {}  # the tracker kept with each record
        self.reads: list[str] = []  # the transaction IDs `original` was asked for
        self.outbox: list[PostbackMessage] = []
        self.writes = 0
        self.fail_after = fail_after

    def record(
        self,
        conversion: Conversion,
        result: ConversionResult,
        messages: Sequence[PostbackMessage] = (),
        *,
        received_at: datetime | None = None,
        tracker: str | None = None,
    ) -> FirstRecord | None:
        if self.fail_after is not None and self.writes >= self.fail_after:
            raise InfrastructureError("the conversion log is down")
        self.writes += 1
        first = self.records.get(conversion.conversion_id)
        if first is not None:
            return FirstRecord(first[1], differing_fields(content_digests(first[0]), content_digests(conversion)))
        self.records[conversion.conversion_id] = (conversion, result)
        self.trackers[conversion.conversion_id] = tracker
        self.outbox.extend(messages)
        return None

    def original(self, transaction_id: str) -> OriginalConversion | None:
        self.reads.append(transaction_id)
        for event in ORIGINAL_EVENTS:
            conversion_id = f"{transaction_id}#{event.value}"
            if conversion_id in self.records:
                conversion, result = self.records[conversion_id]
                return OriginalConversion(
                    transaction_id=transaction_id,
                    event=event,
                    affiliate_id=result.affiliate_id,
                    offer=conversion.offer,
                    tracker=self.trackers.get(conversion_id),
                )
        return None

    def delivery_refs(self, transaction_id: str) -> list[DeliveryRef]:
        return [m.ref for m in self.outbox if m.transaction_id == transaction_id]
