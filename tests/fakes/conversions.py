"""ConversionLog in a dict."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from postback_relay.domain.conversion import Conversion, ConversionResult
from postback_relay.domain.delivery import PostbackMessage
from postback_relay.domain.errors import InfrastructureError
from postback_relay.domain.repeats import content_digests, differing_fields
from postback_relay.ports import ConversionLog, FirstRecord


class FakeConversionLog(ConversionLog):
    """`fail_after` makes the n+1-th record raise InfrastructureError. `outbox` lists the
    messages of every record written, in order: what the stream would queue."""

    def __init__(self, *, fail_after: int | None = None) -> None:
        self.records: dict[str, tuple[Conversion, ConversionResult]] = {}
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
    ) -> FirstRecord | None:
        if self.fail_after is not None and self.writes >= self.fail_after:
            raise InfrastructureError("the conversion log is down")
        self.writes += 1
        first = self.records.get(conversion.conversion_id)
        if first is not None:
            return FirstRecord(first[1], differing_fields(content_digests(first[0]), content_digests(conversion)))
        self.records[conversion.conversion_id] = (conversion, result)
        self.outbox.extend(messages)
        return None
