"""Fixtures of the reliability suite: the relay in-process over moto, with faults at every seam."""

from __future__ import annotations

import time
from collections.abc import Iterator

import botocore.endpoint
import pytest
from aws_lambda_powertools.utilities import parameters
from reliability.relay_harness import (
    CONNECT_TIMEOUT_S,
    CONNECTS,
    MAX_ATTEMPTS,
    READ_TIMEOUT_S,
    AwsFaults,
    Relay,
    patch_boto3_clients,
)

import dispatch_handler
import ingest_handler
from postback_relay import wiring

# DELAY_SCALE of the suite: every retry, Retry-After and circuit cool-down lands on the
# 1-second floor, so eight attempts of a postback take seconds rather than 27 hours.
DELAY_SCALE = 0.0001
# The queue's visibility timeout (180 s in template.yaml) scaled down alike: a message whose
# invocation died comes back after this, not after three minutes.
VISIBILITY_TIMEOUT_S = 2
BACKOFF_SCALE = 0.1


class _ScaledSleep:
    """botocore.endpoint's view of the `time` module: its retry backoff shrunk like DELAY_SCALE."""

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(seconds * BACKOFF_SCALE)


@pytest.fixture
def aws_faults(monkeypatch: pytest.MonkeyPatch) -> AwsFaults:
    """GIVEN every boto3 client the handlers build carries the injectable botocore faults.

    botocore's retry stays on (legacy mode, as in Lambda) but with 3 attempts instead of
    DynamoDB's 10, so that exhausting it costs 0.15 s of backoff instead of 25 s, and its
    backoff (up to seconds for SQS) scaled down.
    """
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", str(MAX_ATTEMPTS))
    monkeypatch.setattr(botocore.endpoint, "time", _ScaledSleep())
    faults = AwsFaults()
    patch_boto3_clients(faults, monkeypatch)
    CONNECTS.install(monkeypatch)
    return faults


@pytest.fixture
def relay(aws: dict[str, str], aws_faults: AwsFaults, monkeypatch: pytest.MonkeyPatch) -> Iterator[Relay]:
    """GIVEN both functions cold inside moto: ingest signed at a fixed clock, dispatch with the
    suite's delay scale and short timeouts, and the queue's visibility timeout scaled down.
    moto's SQS and streams carry the local stack's fixes (tests/conftest.py applies them): waits
    re-send messages while a poller deletes others."""
    wiring.reset()
    parameters.clear_caches()  # type: ignore[no-untyped-call]
    fast = dispatch_handler.settings.model_copy(
        update={
            "delay_scale": DELAY_SCALE,
            "connect_timeout_s": CONNECT_TIMEOUT_S,
            "read_timeout_s": READ_TIMEOUT_S,
            "allow_loopback": True,
        }
    )
    monkeypatch.setattr(dispatch_handler, "settings", fast)
    built = Relay(aws)
    monkeypatch.setattr(ingest_handler, "clock", lambda: built.now)
    built.sqs.set_queue_attributes(
        QueueUrl=aws["PostbackQueueUrl"], Attributes={"VisibilityTimeout": str(VISIBILITY_TIMEOUT_S)}
    )
    yield built
    wiring.reset()
