"""Tracker structures: splitting the values between trID_ and _trID into named fields."""

import pytest
from pydantic import ValidationError

from postback_relay.domain.errors import TrackerError
from postback_relay.domain.tracker import MAX_VALUE_LENGTH, TrackerStructure, parse_tracker, render_tracker

DEFAULT = TrackerStructure()
UUID = "0b5e7a38-6f0e-4b8e-9b1a-2f6c4f1d9e11"


def test_default_structure_reads_four_dash_separated_values() -> None:
    # GIVEN the guide's default structure
    # WHEN a filled tracker is parsed
    values = parse_tracker("a1-T9-c123-x", DEFAULT)
    # THEN each value is named
    assert values == {"affid": "a1", "transid": "T9", "clickid": "c123", "whateverid": "x"}


def test_rest_field_takes_a_uuid_with_separators() -> None:
    # GIVEN a structure whose click ID takes what is left
    structure = TrackerStructure(fields=("affid", "clickid", "sub"), separator="-", rest="clickid")
    # WHEN a tracker with a UUID click ID is parsed
    values = parse_tracker(f"a1-{UUID}-s2", structure)
    # THEN the UUID keeps its dashes and the fields around it are intact
    assert values == {"affid": "a1", "clickid": UUID, "sub": "s2"}


@pytest.mark.parametrize(("rest", "text"), [("first", f"{UUID}-b-c"), ("last", f"a-b-{UUID}")])
def test_rest_field_at_either_end(rest: str, text: str) -> None:
    # GIVEN a rest field first or last
    fields = ("first", "middle", "last")
    structure = TrackerStructure(fields=fields, rest=rest)
    # WHEN parsed
    values = parse_tracker(text, structure)
    # THEN the rest field holds the UUID
    assert values[rest] == UUID


def test_custom_separator_and_field_names() -> None:
    # GIVEN a custom structure with a multi-character separator
    structure = TrackerStructure(fields=("cid", "pub"), separator="__")
    # WHEN parsed
    # THEN the custom separator splits the values
    assert parse_tracker("abc__p-1", structure) == {"cid": "abc", "pub": "p-1"}


@pytest.mark.parametrize("text", ["a1-T9-c123", "a1-T9-c123-x-y", "a1"])
def test_wrong_number_of_values_is_field_count(text: str) -> None:
    # GIVEN a tracker with too few or too many values for the structure
    # WHEN parsed
    with pytest.raises(TrackerError) as caught:
        parse_tracker(text, DEFAULT)
    # THEN the reason is field_count and the message says what was expected
    assert caught.value.reason == "field_count"
    assert "expects 4" in caught.value.message


def test_rest_structure_with_too_few_values_is_field_count() -> None:
    # GIVEN a rest structure needing at least three values
    structure = TrackerStructure(fields=("a", "b", "c"), rest="b")
    # WHEN only two are present
    with pytest.raises(TrackerError) as caught:
        parse_tracker("x-y", structure)
    # THEN it is field_count
    assert caught.value.reason == "field_count"


@pytest.mark.parametrize(
    ("text", "placeholder"),
    [
        ("a1-T9-#clickId#-x", "#clickId#"),
        ("#affid#-#TransID#-#clickId#-#whateverId#", "#affid#"),
        ("a1-T9-{clickid}-x", "{clickid}"),
        ("a1-T9-{{click_id}}-x", "{{click_id}}"),
    ],
)
def test_unfilled_placeholder_is_reported_by_name(text: str, placeholder: str) -> None:
    # GIVEN a tracker the affiliate's tracker left with a placeholder
    # WHEN parsed
    with pytest.raises(TrackerError) as caught:
        parse_tracker(text, DEFAULT)
    # THEN the placeholder is named in a sentence the affiliate can act on
    assert caught.value.reason == "placeholder_unfilled"
    assert f"placeholder {placeholder} was not filled by your tracker" in caught.value.message


def test_empty_value_is_reported_with_its_field() -> None:
    # GIVEN a tracker with an empty click ID
    # WHEN parsed
    with pytest.raises(TrackerError) as caught:
        parse_tracker("a1-T9--x", DEFAULT)
    # THEN the field is named
    assert caught.value.reason == "empty_value"
    assert "clickid" in caught.value.message


def test_too_long_value_is_refused() -> None:
    # GIVEN a value longer than the maximum
    text = f"a1-T9-{'c' * (MAX_VALUE_LENGTH + 1)}-x"
    # WHEN parsed
    with pytest.raises(TrackerError) as caught:
        parse_tracker(text, DEFAULT)
    # THEN it is value_too_long
    assert caught.value.reason == "value_too_long"


def test_value_of_maximum_length_is_accepted() -> None:
    # GIVEN a value exactly at the maximum
    text = f"a1-T9-{'c' * MAX_VALUE_LENGTH}-x"
    # WHEN parsed
    # THEN it is kept whole
    assert len(parse_tracker(text, DEFAULT)["clickid"]) == MAX_VALUE_LENGTH


def test_render_tracker_joins_in_structure_order() -> None:
    # GIVEN values named in any order
    values = {"whateverid": "x", "clickid": "c123", "affid": "a1", "transid": "T9"}
    # WHEN rendered
    # THEN they are joined in the structure's order
    assert render_tracker(values, DEFAULT) == "a1-T9-c123-x"


def test_render_tracker_refuses_a_separator_outside_the_rest_field() -> None:
    # GIVEN a non-rest value containing the separator
    values = {"affid": "a-1", "transid": "T9", "clickid": "c", "whateverid": "x"}
    # WHEN rendered
    with pytest.raises(TrackerError) as caught:
        render_tracker(values, DEFAULT)
    # THEN it is refused, since it could not be read back
    assert "separator" in caught.value.message


def test_render_tracker_refuses_missing_and_unknown_fields() -> None:
    # GIVEN values missing one field and naming another
    values = {"affid": "a", "transid": "t", "clickid": "c", "other": "o"}
    # WHEN rendered
    with pytest.raises(TrackerError) as caught:
        render_tracker(values, DEFAULT)
    # THEN both are named
    assert "whateverid" in caught.value.message
    assert "other" in caught.value.message


def test_render_tracker_refuses_values_that_shift_a_multi_character_separator() -> None:
    # GIVEN a separator "--" and a value ending in "-" before it
    structure = TrackerStructure(fields=("a", "b"), separator="--")
    # WHEN rendered
    # THEN it is refused: "x---y" would read back as "x" and "-y"
    with pytest.raises(TrackerError):
        render_tracker({"a": "x-", "b": "y"}, structure)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"fields": ()}, "at least one"),
        ({"fields": ("a", "a")}, "named twice"),
        ({"fields": ("a b",)}, "not a valid field name"),
        ({"fields": ("1a",)}, "not a valid field name"),
        ({"separator": ""}, "cannot be empty"),
        ({"separator": " "}, "whitespace"),
        ({"fields": ("a", "b"), "rest": "c"}, "not one of the fields"),
    ],
)
def test_structure_validation_refuses_inconsistent_structures(kwargs: dict[str, object], words: str) -> None:
    # GIVEN an inconsistent structure
    # WHEN it is validated
    with pytest.raises(ValidationError) as caught:
        TrackerStructure.model_validate(kwargs)
    # THEN the reason is explained
    assert words in str(caught.value)
