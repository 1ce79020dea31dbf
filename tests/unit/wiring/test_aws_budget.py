"""Every AWS client the functions build carries one budget (wiring.aws_config): timeouts well
inside the function's own, standard retries with a bounded number of attempts, and a pool at
least as large as the dispatcher's workers. botocore's defaults (60 s timeouts, legacy
retries, 10 pooled connections) would let one slow call hold a batch past its timeout."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS
from template_support import TEMPLATE

import dispatch_handler
import ingest_handler
import ingest_http
import outbox_handler
import testlink_handler
from postback_relay import wiring

FUNCTIONS = ("IngestFunction", "DispatchFunction", "OutboxFunction", "TestLinkFunction")


def timeout_of(function: str) -> float:
    resource = TEMPLATE["Resources"][function]["Properties"]
    return float(resource.get("Timeout", TEMPLATE["Globals"]["Function"]["Timeout"]))


def dispatch_workers() -> int:
    """The most workers a dispatcher can run: MAX_WORKERS, or, where it is a parameter
    (DispatchBatchSize), the largest value that parameter allows."""
    workers = TEMPLATE["Resources"]["DispatchFunction"]["Properties"]["Environment"]["Variables"]["MAX_WORKERS"]
    if isinstance(workers, dict):
        parameter = TEMPLATE["Parameters"][workers["Ref"]]
        return max(int(value) for value in parameter.get("AllowedValues", [parameter.get("MaxValue")]))
    return int(workers)


def longest_call_s(config: Any) -> float:
    """The longest one call on this config can take: every attempt timing out, plus standard
    mode's backoff (at most 1, 2, 4... s) before each retry; legacy mode counts as unbounded."""
    if config.retries is None or config.retries.get("mode") != "standard":
        return float("inf")
    attempts = config.retries.get("total_max_attempts") or config.retries.get("max_attempts", 2) + 1
    backoff = sum(min(2.0**n, 20.0) for n in range(attempts - 1))
    return float(attempts * (config.connect_timeout + config.read_timeout) + backoff)


@pytest.fixture
def built_clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, Any]]]:
    """Every boto3 client built while the test runs, with its service name."""
    built: list[tuple[str, Any]] = []
    real = boto3.session.Session.client

    def recording(self: boto3.session.Session, service_name: str, *args: Any, **kwargs: Any) -> Any:
        client = real(self, service_name, *args, **kwargs)  # type: ignore[call-overload]
        built.append((service_name, client))
        return client

    monkeypatch.setattr(boto3.session.Session, "client", recording)
    saved = DEFAULT_PROVIDERS.pop("secrets", None)
    yield built
    DEFAULT_PROVIDERS.pop("secrets", None)
    if saved is not None:
        DEFAULT_PROVIDERS["secrets"] = saved


BUILDERS: dict[str, Callable[[], object]] = {
    "IngestFunction": lambda: wiring.ingest_service(ingest_handler.settings),
    "DispatchFunction": lambda: wiring.dispatcher(dispatch_handler.settings),
    "OutboxFunction": lambda: wiring.outbox_service(outbox_handler.settings),
    "TestLinkFunction": lambda: wiring.link_test_service(testlink_handler.settings),
}


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_client_a_function_builds_carries_the_budget(
    function: str, aws: dict[str, str], built_clients: list[tuple[str, Any]]
) -> None:
    # GIVEN the function's service built by the wiring, as its first invocation builds it
    # (and, for ingest, the client its signing secret is read through)
    BUILDERS[function]()
    if function == "IngestFunction":
        ingest_http.signing_secret(ingest_handler.settings.signing_secret_name)
    # WHEN the clients it built are looked at
    assert built_clients, "the wiring built no client: nothing was checked"
    timeout = timeout_of(function)
    for service, client in built_clients:
        config = client.meta.config
        # THEN each one's longest call, retries included, is well inside the function's timeout
        assert longest_call_s(config) <= 0.75 * timeout, f"{function}: {service} {longest_call_s(config)} s a call"
        assert longest_call_s(config) <= wiring.AWS_CALL_BUDGET_S, f"{function}: {service}"
        # AND it retries in standard mode, a bounded number of times
        assert config.retries["mode"] == "standard", f"{function}: {service}"
        assert 1 <= config.retries["total_max_attempts"] <= wiring.AWS_ATTEMPTS, f"{function}: {service}"
        # AND it pools at least a connection per dispatch worker
        assert config.max_pool_connections >= dispatch_workers(), f"{function}: {service}"


def test_the_budget_of_one_call_is_well_inside_the_dispatch_timeout() -> None:
    # GIVEN the one config every client is built on
    config = wiring.aws_config()
    # WHEN its longest call is computed from the config itself
    # THEN it is the wiring's budget, and a send plus a record write fit in the dispatch timeout
    assert longest_call_s(config) == wiring.AWS_CALL_BUDGET_S
    send = float(dispatch_handler.settings.connect_timeout_s + dispatch_handler.settings.read_timeout_s)
    assert send + wiring.AWS_CALL_BUDGET_S < timeout_of("DispatchFunction")
