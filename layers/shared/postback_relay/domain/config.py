"""The affiliate's postback configuration (contract section 3), loaded from YAML or JSON.

TO BE COMPLETED (issue 3): validators (unknown macros, URL safety, event names, structure
consistency: `rest` among `fields`, macros naming tracker fields), load_config_text,
dump_config.
"""

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from postback_relay.domain.events import Event
from postback_relay.domain.tracker import TrackerStructure


class HttpMethod(StrEnum):
    GET = "GET"
    POST = "POST"


class ExpectedAnswer(BaseModel):
    """What the affiliate's server must answer for a postback to count as delivered.

    Some trackers answer 200 with `success=false` in the body.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: tuple[int, ...] = ()  # empty: any 2xx
    body_contains: str | None = Field(default=None, max_length=256)


class PostbackSpec(BaseModel):
    """One postback: which events (and offers) fire it, and what to call."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    events: tuple[Event, ...] = Field(min_length=1)
    url: str = Field(min_length=1, max_length=2048)
    offers: tuple[str, ...] | None = None  # None: every offer
    method: HttpMethod = HttpMethod.GET
    body: str | None = Field(default=None, max_length=4096)  # POST body template, macros allowed
    content_type: str | None = None  # default for POST: application/x-www-form-urlencoded
    expect: ExpectedAnswer | None = None

    def matches(self, event: Event, offer_id: str) -> bool:
        return event in self.events and (self.offers is None or offer_id in self.offers)


class AffiliateConfig(BaseModel):
    """One affiliate's postback configuration, for all offers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    affiliate_id: str = Field(min_length=1, max_length=32)
    name: str = Field(min_length=1, max_length=128)
    enabled: bool = True
    tracker: TrackerStructure = TrackerStructure()
    postbacks: tuple[PostbackSpec, ...] = Field(min_length=1, max_length=20)
    test_link: str | None = Field(default=None, max_length=2048)
    # Optional: sign postbacks with Standard Webhooks headers. Stored encrypted at rest in
    # DynamoDB; never logged, never shown by `affiliate get` (masked).
    signing_secret: str | None = Field(default=None, min_length=24, max_length=128)

    def postbacks_for(self, event: Event, offer_id: str) -> list[tuple[int, PostbackSpec]]:
        """The postbacks this conversion fires, with their index in the config."""
        return [(i, p) for i, p in enumerate(self.postbacks) if p.matches(event, offer_id)]
