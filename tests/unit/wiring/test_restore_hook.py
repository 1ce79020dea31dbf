"""The SnapStart restore hook lives in wiring, beside the clients it rebuilds."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from postback_relay import wiring


class RenewingCredentials:
    def refresh_needed(self) -> bool:
        return False


class Session:
    def __init__(self, credentials: object) -> None:
        self._credentials = credentials

    def get_credentials(self) -> object:
        return self._credentials


@pytest.fixture
def held() -> wiring.OnFirstUse[object]:
    """GIVEN a function's service, built once."""
    service = wiring.OnFirstUse(object)
    service()
    return service


@pytest.mark.parametrize(
    ("session", "rebuilt"),
    [(None, True), (Session(object()), True), (Session(RenewingCredentials()), False)],
    ids=["no session", "static credentials", "renewing credentials"],
)
def test_a_restore_rebuilds_clients_unless_their_credentials_renew_themselves(
    monkeypatch: pytest.MonkeyPatch, held: wiring.OnFirstUse[object], session: Any, rebuilt: bool
) -> None:
    first = held()
    setups: list[bool] = []
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", session)
    monkeypatch.setattr(boto3, "setup_default_session", lambda: setups.append(True))
    # WHEN the restore hook runs
    wiring.refresh_after_restore()
    # THEN the session and the services on its clients are built again only when needed
    assert setups == ([True] if rebuilt else [])
    assert (held() is not first) is rebuilt
