"""Each postback message is parsed once per record (issue 15): in a batch, the check for copies
of one delivery and the dispatch itself share the one parse."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from postback_relay.domain.delivery import PostbackMessage
from postback_relay.domain.records import ReceivedPostback
from postback_relay.services.dispatch import Dispatcher, DispatchOutcome


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """The bodies PostbackMessage.model_validate_json was called with, counted."""
    counts: Counter[str] = Counter()
    parse = PostbackMessage.model_validate_json

    def counting(body: str | bytes, *args: Any, **kwargs: Any) -> PostbackMessage:
        counts[body if isinstance(body, str) else body.decode()] += 1
        return parse(body, *args, **kwargs)

    monkeypatch.setattr(PostbackMessage, "model_validate_json", counting)
    return counts


def test_a_batch_parses_each_record_once(dispatcher: Dispatcher, new_message: Any, parses: Counter[str]) -> None:
    # GIVEN a batch of two postbacks, a copy of the first, and an unreadable message
    first, second = new_message(1), new_message(2)
    records = [
        ReceivedPostback("m1", "h1", 1, first.model_dump_json()),
        ReceivedPostback("m2", "h2", 1, second.model_dump_json()),
        ReceivedPostback("m3", "h3", 1, first.model_dump_json()),
        ReceivedPostback("m4", "h4", 1, '{"delivery_id": "d-broken", "url": 3}'),
    ]
    # WHEN it is dispatched
    outcomes = dispatcher.dispatch_batch(records)
    # THEN each body was parsed once per record that carries it, and no more
    assert [o.outcome for o in outcomes.values() if not isinstance(o, Exception)] == [
        DispatchOutcome.DELIVERED,
        DispatchOutcome.DELIVERED,
        DispatchOutcome.FAILED,
        DispatchOutcome.SKIPPED,
    ]
    assert parses == Counter(record.body for record in records)


def test_one_record_dispatched_alone_is_parsed_once(
    dispatcher: Dispatcher, new_message: Any, parses: Counter[str]
) -> None:
    # GIVEN one postback
    message = new_message(1)
    body = message.model_dump_json()
    # WHEN it is dispatched on its own
    result = dispatcher.dispatch(ReceivedPostback("m1", "h1", 1, body))
    # THEN it was delivered after one parse
    assert result.outcome is DispatchOutcome.DELIVERED
    assert parses == Counter({body: 1})
