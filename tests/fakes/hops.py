"""The test link's HTTP client: one request per hop, answered from a script."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from postback_relay.ports import HopAnswer, HopClient


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)


_: HopAnswer = Answer(200)  # mypy checks that an Answer is a HopAnswer (its members are properties)


class ScriptedHttp(HopClient):
    """Answers by URL: a redirect target, a status, or an exception; records every request."""

    def __init__(self, script: Mapping[str, str | int | Exception]) -> None:
        self.script = script
        self.requested: list[str] = []

    def request(self, method: str, url: str) -> Answer:
        self.requested.append(url)
        step = self.script.get(url, 404)
        if isinstance(step, Exception):
            raise step
        if isinstance(step, int):
            return Answer(step)
        return Answer(302, {"Location": step})
