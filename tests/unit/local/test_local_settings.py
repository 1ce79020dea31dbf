"""How `make run` reads its settings, and the affiliate it offers for its receiver."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from postback_ops.local.__main__ import banner
from postback_ops.local.receiver import Receiver
from postback_ops.local.stack import (
    RECEIVER_AFFILIATE_ID,
    LocalRelay,
    LocalSettings,
    PortBusy,
    _binding,
    receiver_affiliate_config,
)
from postback_ops.template import load_template, parse_parameter_overrides, template_value, with_parameters
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


def test_a_busy_port_is_named_with_the_knob_that_moves_it() -> None:
    # GIVEN a port some other program holds
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = int(holder.getsockname()[1])

        # WHEN the local stack starts with its AWS endpoint, or its receiver, on that port
        with pytest.raises(PortBusy) as aws:
            LocalRelay(LocalSettings(aws_port=busy, receiver_affiliate_path=None)).start()
        with pytest.raises(PortBusy) as receiver, _binding(busy, "POSTBACK_LOCAL_RECEIVER_PORT"):
            Receiver(port=busy)

    # THEN the message names the port and the POSTBACK_LOCAL_* variable to set
    assert f"port {busy} is already in use" in str(aws.value)
    assert "set POSTBACK_LOCAL_AWS_PORT to another port (0 takes any free one)" in str(aws.value)
    assert "POSTBACK_LOCAL_RECEIVER_PORT" in str(receiver.value)


def test_the_banner_says_where_the_config_script_is_and_how_it_finds_the_stack(tmp_path: Path) -> None:
    # GIVEN a started stack's details (ports not the default ones, recorded for the script)
    relay = LocalRelay(LocalSettings(stack_file=tmp_path / "stack.json"))
    relay.api_url, relay.aws_endpoint = "http://127.0.0.1:3100", "http://127.0.0.1:4600"
    relay.outputs = {"RetryScheduleSeconds": "50", "TestLinkDeadlineSeconds": "24"}

    # WHEN its banner is printed
    text = banner(relay)

    # THEN it says where `postback` is, and no endpoint variable is needed
    assert "source .venv/bin/activate" in text
    assert ".venv/bin/postback" in text
    assert "POSTBACK_LOCAL_ENDPOINT=" not in text
    assert "ends within 50 s; a test link waits up to 24 s" in text


def test_template_parameters_can_be_overridden_as_sam_deploy_takes_them(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN overrides in sam's Name=Value form
    monkeypatch.setenv("POSTBACK_LOCAL_PARAMETER_OVERRIDES", "DispatchBatchSize=50 DispatchBatchingWindowSeconds=1")
    # WHEN the settings are read and the template takes them
    settings = LocalSettings.from_env()
    template = with_parameters(load_template(), settings.parameter_overrides)
    # THEN the dispatcher's batch and window are the overrides wherever the template refers to them
    dispatch = template["Resources"]["DispatchFunction"]["Properties"]
    event = dispatch["Events"]["Postbacks"]["Properties"]
    assert template_value(template, event["BatchSize"]) == 50
    assert template_value(template, dispatch["Environment"]["Variables"]["MAX_WORKERS"]) == 50
    assert template_value(template, event["MaximumBatchingWindowInSeconds"]) == 1
    # AND the template read afresh keeps its defaults
    assert template_value(load_template(), event["BatchSize"]) == 10


@pytest.mark.parametrize(
    ("text", "refused"),
    [("DispatchBatchSize", "Name=Value"), ("NoSuchParameter=1", "no parameter NoSuchParameter")],
)
def test_a_malformed_or_unknown_override_is_refused_with_the_reason(text: str, refused: str) -> None:
    # WHEN an override is malformed or names no parameter THEN it is refused, saying which
    with pytest.raises(ValueError, match=refused):
        with_parameters(load_template(), parse_parameter_overrides(text))
