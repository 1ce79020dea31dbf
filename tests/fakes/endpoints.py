"""The circuit breakers' store and the notices of their openings and closings."""

from __future__ import annotations

import threading
from collections.abc import Collection
from dataclasses import dataclass, field

from postback_relay.domain.delivery import Circuit, CircuitStatus
from postback_relay.domain.errors import InfrastructureError
from postback_relay.domain.notices import CircuitNotice
from postback_relay.ports import EndpointStore, Notifier


@dataclass
class FakeEndpointStore(EndpointStore):
    """EndpointStore in a dict, with the store's conditional saves; counts reads and writes."""

    circuits: dict[str, Circuit] = field(default_factory=dict)
    reads: int = 0
    writes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, endpoint: str) -> Circuit | None:
        self.reads += 1
        return self.circuits.get(endpoint)

    def save(
        self,
        circuit: Circuit,
        *,
        expected_opened_until: float | None = None,
        only_from: Collection[CircuitStatus] | None = None,
    ) -> bool:
        with self._lock:
            return self._save(circuit, expected_opened_until, only_from)

    def _save(
        self, circuit: Circuit, expected_opened_until: float | None, only_from: Collection[CircuitStatus] | None
    ) -> bool:
        current = self.circuits.get(circuit.endpoint)
        if expected_opened_until is not None and current is not None and current.opened_until != expected_opened_until:
            return False
        if only_from is not None and (current.status if current else CircuitStatus.CLOSED) not in only_from:
            return False
        self.writes += 1
        self.circuits[circuit.endpoint] = circuit
        return True

    def list(self) -> list[Circuit]:
        return list(self.circuits.values())


class RecordingNotifier(Notifier):
    """Keeps every notice; `fail` plays SNS being down (after the notice is kept)."""

    def __init__(self, *, fail: bool = False) -> None:
        self.notices: list[CircuitNotice] = []
        self.fail = fail
        self._lock = threading.Lock()

    def notify(self, notice: CircuitNotice) -> None:
        with self._lock:
            self.notices.append(notice)
        if self.fail:
            raise InfrastructureError("SNS is down")
