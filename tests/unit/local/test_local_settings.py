"""How `make run` reads its settings, and the affiliate it offers for its receiver."""

from __future__ import annotations

import pytest

from postback_ops.local.stack import RECEIVER_AFFILIATE_ID, LocalSettings, receiver_affiliate_config
from postback_relay.domain.config import load_config_text
from postback_relay.domain.events import Event


def test_defaults_are_the_documented_ports_and_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN no local-stack variables in the environment
    for name in (
        "POSTBACK_LOCAL_API_PORT",
        "POSTBACK_LOCAL_AWS_PORT",
        "POSTBACK_LOCAL_RECEIVER_PORT",
        "POSTBACK_SIGNING_SECRET",
        "POSTBACK_LOCAL_DELAY_SCALE",
    ):
        monkeypatch.delenv(name, raising=False)

    # WHEN the settings are read
    settings = LocalSettings.from_env()

    # THEN the API is on 3000, moto on 4566, and the secret is local-dev-secret (contract section 6)
    assert (settings.api_port, settings.aws_port, settings.receiver_port) == (3000, 4566, 3001)
    assert settings.signing_secret == "local-dev-secret"
    assert 0 < settings.delay_scale < 0.001


def test_the_environment_overrides_ports_and_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the variables a test or a developer sets
    monkeypatch.setenv("POSTBACK_LOCAL_API_PORT", "0")
    monkeypatch.setenv("POSTBACK_LOCAL_AWS_PORT", "5566")
    monkeypatch.setenv("POSTBACK_LOCAL_RECEIVER_PORT", "off")
    monkeypatch.setenv("POSTBACK_SIGNING_SECRET", "my-own-secret")

    # WHEN the settings are read
    settings = LocalSettings.from_env()

    # THEN they win, and `off` means no receiver
    assert (settings.api_port, settings.aws_port, settings.receiver_port) == (0, 5566, None)
    assert settings.signing_secret == "my-own-secret"


def test_the_receiver_affiliate_is_a_valid_config_for_every_event() -> None:
    # GIVEN the config `make run` writes for its receiver
    text = receiver_affiliate_config("http://127.0.0.1:3001")

    # WHEN the domain loads it as the local stack does (loopback allowed)
    config = load_config_text(text, allow_loopback=True)

    # THEN it is accepted, and every event of every offer fires a postback to the receiver
    assert config.affiliate_id == RECEIVER_AFFILIATE_ID
    for event in Event:
        ((_, spec),) = config.postbacks_for(event, "89")
        assert spec.url.startswith("http://127.0.0.1:3001/")
