"""A small affiliate receiver on loopback: it records every postback it gets.

The demo and the end-to-end tests point an affiliate's postback URLs at it. It answers 200
`OK` by default; a script of answers per path (`respond("/flaky", [500, 200])`) plays a
failing endpoint, the last answer repeating. `wait_for` blocks until enough hits arrived,
so a test awaits the postback instead of sleeping.

Run alone: `python -m postback_ops.local.receiver --port 3001` prints each hit on one line.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Hit:
    """One request the receiver got."""

    method: str
    target: str  # path and query, as on the request line
    headers: dict[str, str]  # names lower-cased
    body: bytes
    at: float = field(default_factory=time.time)
    status: int = 200  # what the receiver answered

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query, keep_blank_values=True)

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: str = "OK"
    delay_s: float = 0.0  # to play a slow endpoint
    headers: tuple[tuple[str, str], ...] = ()  # e.g. (("Location", url),) for a redirect

    @classmethod
    def redirect(cls, location: str, status: int = 302) -> Answer:
        return cls(status=status, body="", headers=(("Location", location),))


class _ReceiverServer(ThreadingHTTPServer):
    # A dispatcher batch opens 10 connections at once; the default backlog of 5 drops some,
    # and the kernel retries them a second later.
    request_queue_size = 64


class Receiver:
    """A ThreadingHTTPServer on 127.0.0.1 that records hits. Use as a context manager."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, on_hit: Callable[[Hit], None] | None = None) -> None:
        self._hits: list[Hit] = []
        self._scripts: dict[str, list[Answer]] = {}
        self._changed = threading.Condition()
        self._on_hit = on_hit
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body leave in one send: written apart, each answer waits on the
            # client's delayed ACK (up to 40 ms on loopback).
            wbufsize = 64 * 1024

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                answer = receiver._next_answer(urlsplit(self.path).path)
                if answer.delay_s:
                    time.sleep(answer.delay_s)  # plays a slow affiliate server, not synchronisation
                hit = Hit(
                    method=self.command,
                    target=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    status=answer.status,
                )
                receiver._record(hit)
                payload = answer.body.encode()
                self.send_response(answer.status)
                self.send_header("content-type", "text/plain; charset=utf-8")
                for name, value in answer.headers:
                    self.send_header(name, value)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                """Hits are reported through `on_hit`, not on stderr."""

        self._server = _ReceiverServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Receiver:
        self._thread = threading.Thread(target=self._server.serve_forever, name="affiliate-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def respond(self, path: str, answers: Sequence[int | Answer]) -> None:
        """Answer requests to `path` with these, in order; the last one repeats."""
        script = [a if isinstance(a, Answer) else Answer(status=a, body="OK" if a < 400 else "error") for a in answers]
        if not script:
            raise ValueError("respond() needs at least one answer")
        with self._changed:
            self._scripts[path] = script

    def hits(self, path: str | None = None, *, prefix: str | None = None) -> list[Hit]:
        """The hits so far on exactly `path`, or on paths starting with `prefix`, or all."""
        with self._changed:
            return self._matching(path, prefix)

    def wait_for(
        self, count: int, *, path: str | None = None, prefix: str | None = None, timeout_s: float = 30.0
    ) -> list[Hit]:
        """Block until `count` hits (on `path` / under `prefix`) arrived; raise TimeoutError if not."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._matching(path, prefix)) >= count, timeout=timeout_s):
                got = len(self._matching(path, prefix))
                where = path or prefix or "any path"
                raise TimeoutError(f"receiver got {got} hit(s) on {where} within {timeout_s} s, wanted {count}")
            return self._matching(path, prefix)

    def _matching(self, path: str | None, prefix: str | None = None) -> list[Hit]:
        return [
            h for h in self._hits if (path is None or h.path == path) and (prefix is None or h.path.startswith(prefix))
        ]

    def _next_answer(self, path: str) -> Answer:
        with self._changed:
            script = self._scripts.get(path)
            if not script:
                return Answer()
            return script.pop(0) if len(script) > 1 else script[0]

    def _record(self, hit: Hit) -> None:
        with self._changed:
            self._hits.append(hit)
            self._changed.notify_all()
        if self._on_hit:
            self._on_hit(hit)


def describe(hit: Hit) -> str:
    """One line per hit, for a person watching the receiver."""
    body = f" body={hit.body[:120].decode(errors='replace')!r}" if hit.body else ""
    return f"receiver  {hit.method} {hit.target} -> {hit.status}{body}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="An affiliate receiver on loopback that prints every hit it gets.")
    parser.add_argument("--port", type=int, default=3001)
    args = parser.parse_args(argv)
    receiver = Receiver(port=args.port, on_hit=lambda hit: print(describe(hit), flush=True))
    receiver.start()
    print(f"affiliate receiver listening on {receiver.url} (Ctrl-C to stop)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        receiver.stop()


if __name__ == "__main__":
    main()
