"""The ingest function's settings: checked at cold start, with a message naming what is wrong."""

from __future__ import annotations

import os

import pytest

import ingest_handler
from ingest_handler import load_settings
from postback_relay.domain.errors import SettingsError

REQUIRED = ("AFFILIATES_TABLE", "CONVERSIONS_TABLE", "SIGNING_SECRET_NAME")


def environment(**changes: str | None) -> dict[str, str]:
    env = {
        "AFFILIATES_TABLE": "Affiliates",
        "CONVERSIONS_TABLE": "Conversions",
        "SIGNING_SECRET_NAME": "signing-secret",
    }
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def test_defaults_apply_to_the_tunables() -> None:
    settings = load_settings(environment())
    assert (settings.config_cache_seconds, settings.allow_loopback, settings.max_body_bytes) == (60, False, 262144)


@pytest.mark.parametrize("missing", REQUIRED)
def test_a_missing_variable_fails_naming_it(missing: str) -> None:
    # WHEN a required variable is absent, THEN the error names it
    with pytest.raises(SettingsError, match=missing):
        load_settings(environment(**{missing: None}))


@pytest.mark.parametrize(
    ("name", "value"), [("MAX_BODY_BYTES", "0"), ("ALLOW_LOOPBACK", "maybe"), ("CONFIG_CACHE_SECONDS", "-1")]
)
def test_a_wrong_value_fails_naming_it(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings(environment(**{name: value}))


def test_the_module_read_the_test_environment_at_import() -> None:
    # The handler validated os.environ (set by tests/conftest.py from template.yaml) at import.
    assert ingest_handler.settings.conversions_table == os.environ["CONVERSIONS_TABLE"]
    assert ingest_handler.settings.allow_loopback is True
