"""Sample conversions, Lambda events and affiliate servers on loopback for the benchmark.

Imported by the benchmark's child processes before the handler: kept to the standard library
and the domain's signing, so that it adds next to nothing to a handler's measured memory.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from postback_relay.domain.signing import sign_conversion_request

EVENTS_DIR = Path(__file__).resolve().parents[1] / "events"
SECRET = "bench-signing-secret"  # noqa: S105 - a made-up secret for moto and the fakes
AFFILIATE_ID = "1234567"
# A sampled X-Ray trace header: the tracer records subsegments as in Lambda (sent over UDP to
# 127.0.0.1:2000, where nothing listens).
TRACE_HEADER = "Root=1-6744a1e5-3c6f0e1b2a4d5c6e7f809112;Parent=53995c3f42cd8ad8;Sampled=1"


def affiliate_config_data(receiver_url: str, *, affiliate_id: str = AFFILIATE_ID) -> dict[str, Any]:
    """The guide's default tracker, one postback per sale to `receiver_url`."""
    return {
        "affiliate_id": affiliate_id,
        "name": "Bench Media",
        "postbacks": [
            {
                "events": ["sale", "rebill"],
                "url": f"{receiver_url}/postback?cid={{clickid}}&payout={{amount}}&cur={{currency}}"
                "&ev={event}&offer={offer_id}&tx={transaction_id}",
            }
        ],
    }


def affiliate_item(config_data: dict[str, Any], *, allow_loopback: bool = False) -> dict[str, Any]:
    """The AffiliatesTable item of a config, in DynamoDB's attribute values, as the config
    script would store it (what the benchmarks answer a GetItem with)."""
    from postback_relay.domain.config import dump_config, parse_config

    config = parse_config(config_data, allow_loopback=allow_loopback)
    return {
        "affiliate_id": {"S": config.affiliate_id},
        "config": {"S": json.dumps(dump_config(config), separators=(",", ":"), sort_keys=True)},
        "enabled": {"BOOL": True},
        "version": {"N": "1"},
        "updated_at": {"S": "2026-11-26T00:00:00Z"},
        "updated_by": {"S": "bench"},
    }


def conversion(transaction_id: str, *, affiliate_id: str = AFFILIATE_ID) -> dict[str, Any]:
    """The contract's sample revshare sale under another transaction ID."""
    return {
        "transaction_id": transaction_id,
        "event": "sale",
        "offer": {"id": "89", "type": "revshare", "name": "Dating FR"},
        "amount": "25.00",
        "currency": "EUR",
        "link": "http://www.espace-plus.net/redir/rotation_redir.php?id_rotation=89&e=0&w=0"
        f"&id={affiliate_id}&e=1&w=0&tracker=trID_a1-T9-c123-x_trID",
        "occurred_at": "2026-11-25T12:00:00Z",
    }


def request_body(transaction_ids: list[str]) -> bytes:
    """One conversion, or a batch when more than one ID is given."""
    if len(transaction_ids) == 1:
        document: Any = conversion(transaction_ids[0])
    else:
        document = {"conversions": [conversion(t) for t in transaction_ids]}
    return json.dumps(document, separators=(",", ":")).encode()


def http_event(body: bytes, *, secret: str = SECRET, now: int | None = None) -> dict[str, Any]:
    """The HTTP API (payload v2) event of a signed POST /conversions."""
    event: dict[str, Any] = json.loads((EVENTS_DIR / "ingest_revshare.json").read_text(encoding="utf-8"))
    stamp = int(time.time()) if now is None else now
    event["body"] = body.decode()
    event["isBase64Encoded"] = False
    event["headers"] = {
        **event["headers"],
        "content-length": str(len(body)),
        "x-postback-timestamp": str(stamp),
        "x-postback-signature": sign_conversion_request(secret, stamp, body),
    }
    return event


def sqs_record(body: str, message_id: str, *, receipt_handle: str = "bench", receive_count: int = 1) -> dict[str, Any]:
    """One record of the SQS event Lambda's event source mapping builds."""
    return {
        "messageId": message_id,
        "receiptHandle": receipt_handle,
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": str(int(time.time() * 1000)),
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": str(int(time.time() * 1000)),
        },
        "messageAttributes": {},
        "md5OfBody": "0" * 32,
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:bench-PostbackQueue",
        "awsRegion": "eu-west-1",
    }


class AffiliateServer:
    """An affiliate's server on 127.0.0.1: answers 200 after `delay_s`, or never (`hang`).

    `arrivals` holds the monotonic time each request arrived, for the isolation figure.
    """

    def __init__(self, *, delay_s: float = 0.0, hang: bool = False) -> None:
        self.arrivals: list[float] = []
        self._arrived = threading.Condition()
        self._hang = hang
        self._release = threading.Event()
        if hang:
            # Accepts connections (the kernel completes the handshake) and never reads or answers.
            self._socket: socket.socket | None = socket.create_server(("127.0.0.1", 0), backlog=64)
            self.port = int(self._socket.getsockname()[1])
            self._server: ThreadingHTTPServer | None = None
            return
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # One send per answer, as a real web server does: written unbuffered, the status
            # line and the body leave in two segments and the second waits for the client's
            # delayed ACK (Nagle), up to 40 ms on every postback.
            wbufsize = 64 * 1024

            def do_GET(self) -> None:
                server._record()
                if delay_s:
                    time.sleep(delay_s)  # plays a slow affiliate, not synchronisation
                payload = b"OK"
                self.send_response(200)
                self.send_header("content-type", "text/plain")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_POST = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: thousands of hits."""

        self._socket = None
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.request_queue_size = 128
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _record(self) -> None:
        with self._arrived:
            self.arrivals.append(time.monotonic())
            self._arrived.notify_all()

    def wait_for(self, count: int, timeout_s: float) -> bool:
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self.arrivals) >= count, timeout=timeout_s)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._socket is not None:
            self._socket.close()
