"""Tracker structures: how an affiliate's values sit between `trID_` and `_trID`.

The network's guide puts `trID_#affid#-#TransID#-#clickId#-#whateverId#_trID` in its links: the
affiliate's own tracker replaces each `#placeholder#` with a value. This module splits the
inside part into named values (`parse_tracker`) and builds it back (`render_tracker`).
"""

import re
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from postback_relay.domain.errors import TrackerError

TRACKER_PREFIX = "trID_"
TRACKER_SUFFIX = "_trID"
MAX_VALUE_LENGTH = 256
MAX_FIELDS = 16
MAX_SEPARATOR_LENGTH = 8

FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")
# `#clickId#` is the guide's placeholder; `{clickid}` and `{{clickid}}` are those of the usual
# trackers (Voluum, Everflow...). Left in a link, they mean the affiliate's tracker filled nothing.
PLACEHOLDER = re.compile(r"#[A-Za-z_][A-Za-z0-9_]*#|\{\{?[A-Za-z_][A-Za-z0-9_]*\}?\}")


class TrackerStructure(BaseModel):
    """The order and separator of an affiliate's tracker values.

    `rest` names the field that takes whatever is left, separators included (a UUID click ID
    contains `-`). Without `rest` the tracker must split into exactly `len(fields)` values.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    fields: tuple[str, ...] = Field(default=("affid", "transid", "clickid", "whateverid"))
    separator: str = "-"
    rest: str | None = None

    @field_validator("fields")
    @classmethod
    def _fields_are_names(cls, fields: tuple[str, ...]) -> tuple[str, ...]:
        if not fields:
            raise ValueError("name at least one tracker field")
        if len(fields) > MAX_FIELDS:
            raise ValueError(f"at most {MAX_FIELDS} tracker fields")
        for name in fields:
            if not FIELD_NAME.fullmatch(name):
                raise ValueError(
                    f"{name!r} is not a valid field name: use letters, digits and _ (not first), 32 characters at most"
                )
        seen: set[str] = set()
        for name in fields:
            if name in seen:
                raise ValueError(f"field {name!r} is named twice")
            seen.add(name)
        return fields

    @field_validator("separator")
    @classmethod
    def _separator_is_visible(cls, separator: str) -> str:
        if not separator:
            raise ValueError("the separator cannot be empty")
        if len(separator) > MAX_SEPARATOR_LENGTH:
            raise ValueError(f"the separator is at most {MAX_SEPARATOR_LENGTH} characters")
        if any(ch.isspace() or not ch.isprintable() for ch in separator):
            raise ValueError("the separator cannot contain whitespace or control characters")
        return separator

    @model_validator(mode="after")
    def _rest_is_a_field(self) -> "TrackerStructure":
        if self.rest is not None and self.rest not in self.fields:
            raise ValueError(f"rest names {self.rest!r}, which is not one of the fields {list(self.fields)}")
        return self


def _describe(structure: TrackerStructure) -> str:
    return structure.separator.join(f"<{name}>" for name in structure.fields)


def find_placeholder(text: str) -> str | None:
    """The first placeholder left unfilled in `text`, e.g. `#clickId#`, or None."""
    match = PLACEHOLDER.search(text)
    return match.group(0) if match else None


def _split(values: str, structure: TrackerStructure) -> list[str] | None:
    sep, fields = structure.separator, structure.fields
    if structure.rest is None:
        parts = values.split(sep)
        return parts if len(parts) == len(fields) else None
    index = fields.index(structure.rest)
    after = len(fields) - index - 1
    head = values.split(sep, index) if index else [values]
    if len(head) != index + 1:
        return None
    tail = head[-1].rsplit(sep, after) if after else [head[-1]]
    if len(tail) != after + 1:
        return None
    return head[:-1] + tail


def parse_tracker(values: str, structure: TrackerStructure) -> dict[str, str]:
    """Split the values inside `trID_..._trID` into the affiliate's named fields.

    Raises TrackerError (reason placeholder_unfilled, field_count, empty_value, value_too_long).
    """
    placeholder = find_placeholder(values)
    if placeholder is not None:
        raise TrackerError(
            f"placeholder {placeholder} was not filled by your tracker: it must be replaced by its value in the link",
            reason="placeholder_unfilled",
        )
    parts = _split(values, structure)
    if parts is None:
        found = len(values.split(structure.separator))
        raise TrackerError(
            f"the tracker has {found} value(s) separated by {structure.separator!r} where the structure "
            f"{_describe(structure)} expects {len(structure.fields)}",
            reason="field_count",
        )
    parsed: dict[str, str] = {}
    for name, value in zip(structure.fields, parts, strict=True):
        if not value:
            raise TrackerError(f"the tracker value for {name} is empty", reason="empty_value")
        if len(value) > MAX_VALUE_LENGTH:
            raise TrackerError(
                f"the tracker value for {name} is {len(value)} characters long, {MAX_VALUE_LENGTH} at most",
                reason="value_too_long",
            )
        parsed[name] = value
    return parsed


def render_tracker(values: Mapping[str, str], structure: TrackerStructure) -> str:
    """The inside of `trID_..._trID` for these values; `parse_tracker` reads it back exactly.

    Raises TrackerError when the values do not fit the structure (a missing or unknown field, a
    separator inside a value that is not the `rest` field, an empty or too long value).
    """
    missing = [name for name in structure.fields if name not in values]
    unknown = sorted(set(values) - set(structure.fields))
    if missing or unknown:
        raise TrackerError(
            f"the values must name exactly the fields {list(structure.fields)} (missing {missing}, unknown {unknown})",
            reason="field_count",
        )
    for name in structure.fields:
        if name != structure.rest and structure.separator in values[name]:
            raise TrackerError(
                f"the value for {name} contains the separator {structure.separator!r}; only the rest field may",
                reason="field_count",
            )
    rendered = structure.separator.join(values[name] for name in structure.fields)
    # A value that merely ends or starts like a multi-character separator can still shift the
    # split; reading the result back is the one check that covers every such case.
    if parse_tracker(rendered, structure) != {name: values[name] for name in structure.fields}:
        raise TrackerError(
            f"these values cannot be told apart once joined with {structure.separator!r}", reason="field_count"
        )
    return rendered
