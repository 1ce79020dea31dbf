"""Tracker structures: how an affiliate's values sit between `trID_` and `_trID`.

TO BE IMPLEMENTED (issue 3): parse_tracker, render_tracker. The model is fixed here.
"""

from pydantic import BaseModel, ConfigDict, Field

TRACKER_PREFIX = "trID_"
TRACKER_SUFFIX = "_trID"
MAX_VALUE_LENGTH = 256


class TrackerStructure(BaseModel):
    """The order and separator of an affiliate's tracker values.

    `rest` names the field that takes whatever is left, separators included (a UUID click ID
    contains `-`). Without `rest` the tracker must split into exactly `len(fields)` values.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    fields: tuple[str, ...] = Field(default=("affid", "transid", "clickid", "whateverid"))
    separator: str = "-"
    rest: str | None = None
