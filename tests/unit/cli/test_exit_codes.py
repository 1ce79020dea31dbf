"""Exit codes scripts can trust, whatever an adapter raises."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from botocore.exceptions import EndpointConnectionError, NoCredentialsError
from fakes.cli import FakeBackends
from typer.testing import Result

from postback_ops.cli_context import ExitCode
from postback_relay.domain.errors import ConflictError, InfrastructureError, NotFoundError


def _raise(exc: Exception) -> Callable[[], list[object]]:
    def list_affiliates() -> list[object]:
        raise exc

    return list_affiliates


def _caused(exc: Exception, cause: Exception) -> Exception:
    exc.__cause__ = cause
    return exc


@pytest.mark.parametrize(
    ("error", "code", "sentence"),
    [
        (
            _caused(InfrastructureError("Listing affiliates failed"), NoCredentialsError()),
            3,
            "No usable AWS credentials",
        ),
        (
            _caused(InfrastructureError("Listing failed"), EndpointConnectionError(endpoint_url="https://x")),
            3,
            "AWS cannot be reached",
        ),
        (InfrastructureError("Listing affiliates failed: throttled"), 1, "Listing affiliates failed: throttled"),
        (NoCredentialsError(), 3, "No usable AWS credentials"),
        (NotFoundError("No such thing."), 4, "No such thing."),
        (ConflictError("Changed since version 3."), 5, "Changed since version 3."),
    ],
)
def test_adapter_errors_map_to_exit_codes_and_one_sentence(
    postback: Callable[..., Result],
    backends: FakeBackends,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
    code: int,
    sentence: str,
) -> None:
    # GIVEN an adapter that fails this way
    monkeypatch.setattr(backends.affiliates, "list", _raise(error))
    # WHEN a command reaches it
    result = postback("affiliate", "list")
    # THEN the exit code says which kind of failure, stderr says it in one line, no traceback
    assert result.exit_code == code
    assert result.stderr.startswith(sentence)
    assert result.stderr.count("\n") == 1
    assert result.stdout == ""


def test_the_documented_codes() -> None:
    assert [int(c) for c in ExitCode] == [0, 1, 2, 3, 4, 5]


def test_a_missing_file_is_a_usage_error(postback: Callable[..., Result]) -> None:
    result = postback("affiliate", "put", "/nonexistent/acme.yaml")
    assert result.exit_code == 2
