"""Each function's settings, read from its environment once, at cold start.

One model per function (the variables template.yaml gives it). `settings_from_environ` reads
the environment variables named after the model's fields and turns a validation failure into
one clear sentence naming every variable at fault. The models are built on their first
validation (`defer_build`): a function pays for its own model only.
"""

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from postback_relay.domain.errors import SettingsError

# domain.testrun.MAX_HOPS, written out so that the test-link function loads the domain on its
# first call, not at import (a unit test keeps the two equal).
DEFAULT_MAX_HOPS = 10
# The dispatcher's most workers; the AWS clients' connection pool is this large (wiring).
MAX_WORKERS_LIMIT = 100

_SETTINGS = ConfigDict(frozen=True, extra="ignore", defer_build=True)


def settings_from_environ[M: BaseModel](model: type[M], environ: Mapping[str, str], *, function: str) -> M:
    """`model` filled from the upper-cased names of its fields; SettingsError when invalid."""
    values = {name: environ[name.upper()] for name in model.model_fields if name.upper() in environ}
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        raise SettingsError(f"The {function} function's environment is invalid: {problems}") from exc


class IngestSettings(BaseModel):
    """The ingest function's environment (template.yaml), checked at cold start."""

    model_config = _SETTINGS

    affiliates_table: str = Field(min_length=1)
    conversions_table: str = Field(min_length=1)
    signing_secret_name: str = Field(min_length=1)
    config_cache_seconds: float = Field(default=60, ge=0)
    allow_loopback: bool = False
    max_body_bytes: int = Field(default=262144, gt=0)


class DispatchSettings(BaseModel):
    """The dispatch function's environment (template.yaml), checked at cold start."""

    model_config = _SETTINGS

    affiliates_table: str = Field(min_length=1)
    deliveries_table: str = Field(min_length=1)
    endpoints_table: str = Field(min_length=1)
    postback_queue_url: str = Field(min_length=1)
    dead_letter_queue_url: str = Field(min_length=1)
    alarm_topic_arn: str = Field(min_length=1)  # circuit notices (contract section 4)
    allow_loopback: bool = False
    delay_scale: float = Field(default=1.0, gt=0, le=1)
    connect_timeout_s: float = Field(default=3, gt=0, le=30)
    read_timeout_s: float = Field(default=10, gt=0, le=60)
    config_cache_seconds: float = Field(default=60, ge=0)
    max_workers: int = Field(default=10, ge=1, le=MAX_WORKERS_LIMIT)
    delivery_ttl_days: int = Field(default=30, ge=1)
    # The SQS mapping's MaximumBatchingWindowInSeconds: how long before an invocation its
    # messages may have been received (SQS counts a visibility's 12 hours from the receipt).
    batching_window_s: float = Field(default=0, ge=0, le=300)


class TestLinkSettings(BaseModel):
    """The test-link function's environment (template.yaml), checked at cold start."""

    __test__ = False  # not a pytest test class, despite its name
    model_config = _SETTINGS

    affiliates_table: str = Field(min_length=1)
    deliveries_table: str = Field(min_length=1)
    test_runs_table: str = Field(min_length=1)
    postback_queue_url: str = Field(min_length=1)
    network_link_hosts: tuple[str, ...] = Field(min_length=1)
    allow_loopback: bool = False
    max_hops: int = Field(default=DEFAULT_MAX_HOPS, ge=1, le=30)
    connect_timeout_s: float = Field(default=3, gt=0)
    read_timeout_s: float = Field(default=10, gt=0)

    @field_validator("network_link_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(host.strip().lower() for host in value.split(",") if host.strip())
        return value


class OutboxSettings(BaseModel):
    """The outbox function's environment (template.yaml), checked at cold start."""

    model_config = _SETTINGS

    postback_queue_url: str = Field(min_length=1)
    outbox_parked_queue_url: str = Field(min_length=1)  # where unreadable records are parked


class PortalSettings(BaseModel):
    """The portal function's environment (template.yaml), checked at cold start."""

    model_config = _SETTINGS

    affiliates_table: str = Field(min_length=1)
    deliveries_table: str = Field(min_length=1)
    test_runs_table: str = Field(min_length=1)
    endpoints_table: str = Field(min_length=1)
    portal_table: str = Field(min_length=1)
    postback_queue_url: str = Field(min_length=1)
    test_link_state_machine_arn: str = Field(min_length=1)
    portal_secret_name: str = Field(min_length=1)  # signs links, sessions and CSRF tokens
    allow_loopback: bool = False
    delay_scale: float = Field(default=1.0, gt=0, le=1)
    # The local stack's test-link deadline (its floors do not scale); a deployed stack: none, 35 minutes.
    test_deadline_s: int | None = Field(default=None, ge=1)
