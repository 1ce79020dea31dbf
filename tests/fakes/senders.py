"""The postback sender, answering from a script."""

from __future__ import annotations

import threading

from postback_relay.domain.delivery import PostbackMessage
from postback_relay.domain.records import SendResult
from postback_relay.ports import PostbackSender


class ScriptedSender(PostbackSender):
    """Answers per URL from a script (the last answer repeats, 200 when none); records every call."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[SendResult]] = {}
        self.calls: list[tuple[PostbackMessage, dict[str, str] | None]] = []
        self._lock = threading.Lock()

    def answer(self, url: str, *results: SendResult) -> None:
        self.scripts[url] = list(results)

    def send(self, message: PostbackMessage, *, headers: dict[str, str] | None = None) -> SendResult:
        with self._lock:
            self.calls.append((message, headers))
            script = self.scripts.get(message.url) or [SendResult(200, 5, "OK")]
            return script.pop(0) if len(script) > 1 else script[0]

    def calls_to(self, url: str) -> int:
        return sum(1 for message, _ in self.calls if message.url == url)
