"""The message catalogue: sentences in the user's terms, never a library's words."""

import pytest
from pydantic import ValidationError

from postback_relay.domain import messages
from postback_relay.domain.conversion import Conversion


def test_a_list_reads_as_words_not_as_python() -> None:
    # GIVEN the macro names a hint offers
    # WHEN they are written for a person
    # THEN comma-separated, without brackets or quotes; a long list says how many more
    assert messages.words(["affid", "transid", "clickid"]) == "affid, transid, clickid"
    assert messages.words(range(10), limit=3) == "0, 1, 2 and 7 more"


@pytest.mark.parametrize(
    ("kind", "library", "ours"),
    [
        ("value_error", "Value error, the amount cannot be negative", "The amount cannot be negative."),
        ("enum", "Input should be 'sale' or 'rebill'", "Must be 'sale' or 'rebill'."),
        ("string_too_long", "String should have at most 128 characters", "Must have at most 128 characters."),
        ("missing", "Field required", "Required: this field is missing."),
        ("extra_forbidden", "Extra inputs are not permitted", "Unknown field: leave it out."),
    ],
)
def test_a_validation_librarys_words_become_ours(kind: str, library: str, ours: str) -> None:
    assert messages.validation_message(kind, library) == ours


def test_every_problem_pydantic_reports_for_a_conversion_reads_as_a_sentence() -> None:
    # GIVEN a conversion with many faults at once
    try:
        Conversion.model_validate({"event": "x", "offer": {"id": "", "type": "x"}, "occurred_at": "2026-13-01T00:00Z"})
    except ValidationError as exc:
        errors = exc.errors()
    # WHEN each problem is put in our words
    said = [messages.validation_message(e["type"], e["msg"]) for e in errors]
    # THEN each is a capitalised sentence, without the library's prefixes
    for sentence in said:
        assert sentence[0].isupper() and sentence.endswith("."), sentence
        assert not sentence.startswith(("Value error", "Input should be", "String should")), sentence
    assert any(s.startswith("Not an RFC 3339 date-time like 2026-11-25T12:00:00Z: Month value") for s in said), said
