"""The config script's own ports, as Protocols: what its commands need from a stack (the
shared layer's ports, and two more). `cli_context.StackBackends` implements `Backends` over a
target's clients through postback_relay.wiring; tests pass in-memory fakes (tests/fakes/cli.py).

Like the layer's ports.py, this module declares Protocols only, over the domain's models and
the layer's ports.
"""

from collections.abc import Sequence
from typing import Protocol

from postback_relay.domain.delivery import Circuit
from postback_relay.domain.testrun import TestRun
from postback_relay.ports import (
    AffiliateStore,
    ChangeLog,
    DeliveryLog,
    KeptPostbacks,
    PortalAccess,
    PostbackQueue,
    TestRunStore,
)


class TestRunner(Protocol):
    """The test-link runs (services/testlink/tracker.py TestRunTracker)."""

    def start(self, affiliate_id: str, started_by: str, waits: Sequence[int], deadline_s: int) -> str: ...

    def status(self, run_id: str) -> TestRun:
        """Raises NotFoundError for an unknown run."""
        ...


class EndpointDirectory(Protocol):
    """The circuit breaker state per affiliate endpoint (adapters/dynamodb_endpoints.py)."""

    def list(self) -> Sequence[Circuit]: ...


class Backends(Protocol):
    """The adapters the commands use; tests pass in-memory fakes with the same attributes."""

    @property
    def affiliates(self) -> AffiliateStore: ...

    @property
    def deliveries(self) -> DeliveryLog: ...

    @property
    def kept_postbacks(self) -> KeptPostbacks:
        """Where a transaction's postbacks are logged, as its conversion records keep them."""
        ...

    @property
    def run_records(self) -> TestRunStore:
        """The test runs' records (a test-link postback is found through its run's)."""
        ...

    @property
    def queue(self) -> PostbackQueue: ...

    @property
    def test_runs(self) -> TestRunner: ...

    @property
    def endpoints(self) -> EndpointDirectory: ...

    @property
    def portal_access(self) -> PortalAccess: ...

    @property
    def changes(self) -> ChangeLog: ...

    def portal_secret(self) -> bytes: ...

    def caller(self) -> str: ...
