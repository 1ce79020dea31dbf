"""SafeHttpClient and HttpPostbackSender against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from postback_ops.local.receiver import Answer, Receiver
from postback_relay.adapters.http_sender import HttpPostbackSender, IpAddress, SafeHttpClient
from postback_relay.domain.delivery import PostbackMessage
from postback_relay.domain.errors import DeliveryTransportError, UnsafeUrlError

LOOPBACK = ipaddress.ip_address("127.0.0.1")


def fixed_resolver(*answers: str) -> Callable[[str, int], list[IpAddress]]:
    return lambda host, port: [ipaddress.ip_address(a) for a in answers]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """One receiver for the module (stopping one takes half a second); each test uses its own paths."""
    with Receiver() as server:
        yield server


def port_of(receiver: Receiver) -> int:
    return int(receiver.url.rsplit(":", 1)[1])


def test_a_name_is_called_at_the_checked_address_with_its_host_header(receiver: Receiver) -> None:
    # GIVEN a tracker name that resolves to the receiver's address
    client = SafeHttpClient(1, 1, allow_loopback=True, resolver=fixed_resolver("127.0.0.1"))
    # WHEN a postback URL on that name is requested
    answer = client.request("GET", f"http://tracker.example:{port_of(receiver)}/host?cid=a%20b&x=1")
    # THEN the receiver saw the name in Host, the path and query unchanged, and answered 200
    (hit,) = receiver.hits("/host")
    assert hit.headers["host"] == f"tracker.example:{port_of(receiver)}"
    assert hit.target == "/host?cid=a%20b&x=1"
    assert answer.status == 200
    assert answer.excerpt == "OK"
    assert answer.headers["content-type"].startswith("text/plain")
    assert answer.latency_ms >= 0


def test_a_post_carries_its_body_and_headers(receiver: Receiver) -> None:
    # GIVEN a client allowed to call loopback
    client = SafeHttpClient(1, 1, allow_loopback=True)
    # WHEN a POST is sent with a body and a header
    client.request("POST", f"{receiver.url}/post", headers={"X-Test": "1"}, body=b"cid=42")
    # THEN both arrived
    (hit,) = receiver.hits("/post")
    assert (hit.method, hit.body, hit.headers["x-test"]) == ("POST", b"cid=42", "1")


def test_a_redirect_is_an_answer_not_followed(receiver: Receiver) -> None:
    # GIVEN an endpoint that redirects
    receiver.respond("/moved", [Answer(status=302, body="")])
    client = SafeHttpClient(1, 1, allow_loopback=True)
    hits_before = len(receiver.hits())
    # WHEN it is requested
    answer = client.request("GET", f"{receiver.url}/moved")
    # THEN the 302 is the answer and nothing else was requested
    assert answer.status == 302
    assert len(receiver.hits()) == hits_before + 1


def test_the_body_read_is_capped(receiver: Receiver) -> None:
    # GIVEN an endpoint answering 10 000 bytes
    receiver.respond("/big", [Answer(status=200, body="x" * 10_000)])
    client = SafeHttpClient(1, 1, allow_loopback=True, max_body_bytes=64)
    # WHEN it is requested
    answer = client.request("GET", f"{receiver.url}/big")
    # THEN only the first 64 bytes were kept
    assert answer.excerpt == "x" * 64


def test_a_slow_endpoint_times_out(receiver: Receiver) -> None:
    # GIVEN an endpoint slower than the read timeout
    receiver.respond("/slow", [Answer(delay_s=1.0)])
    client = SafeHttpClient(1, 0.2, allow_loopback=True)
    # WHEN it is requested, THEN the call fails as a timeout
    with pytest.raises(DeliveryTransportError) as caught:
        client.request("GET", f"{receiver.url}/slow")
    assert caught.value.kind == "timeout"


def test_a_closed_port_is_a_connection_error() -> None:
    # GIVEN a port nobody listens on
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = SafeHttpClient(1, 1, allow_loopback=True)
    # WHEN it is requested, THEN the call fails as a connection error
    with pytest.raises(DeliveryTransportError) as caught:
        client.request("GET", f"http://127.0.0.1:{port}/")
    assert caught.value.kind == "connection_error"


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "2130706433", "0177.0.0.1", "0x7f.1", "127.1", "[::1]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]"],
)
def test_every_spelling_of_loopback_is_refused_without_a_connection(receiver: Receiver, host: str) -> None:
    # GIVEN a client that must not call loopback, and a receiver listening on it
    client = SafeHttpClient(1, 1, allow_loopback=False, resolver=fixed_resolver("127.0.0.1"))
    hits_before = len(receiver.hits())
    # WHEN the receiver is addressed with one spelling of its address
    with pytest.raises(UnsafeUrlError):
        client.request("GET", f"http://{host}:{port_of(receiver)}/spelling")
    # THEN nothing reached it
    assert len(receiver.hits()) == hits_before


@pytest.mark.parametrize(
    "url", ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "http://[fe80::1]/", "file:///etc/passwd"]
)
def test_private_and_metadata_addresses_and_other_schemes_are_refused(url: str) -> None:
    # GIVEN a client that must not call private addresses, whose resolver must not be asked
    def resolver(host: str, port: int) -> list[IpAddress]:
        raise AssertionError("an IP literal or a refused scheme needs no lookup")

    client = SafeHttpClient(1, 1, allow_loopback=False, resolver=resolver)
    # WHEN it is asked for the URL, THEN it refuses
    with pytest.raises(UnsafeUrlError):
        client.request("GET", url)


@pytest.mark.parametrize("answers", [("10.1.2.3",), ("93.184.216.34", "192.168.1.1"), ("127.0.0.1",)])
def test_a_name_resolving_to_any_forbidden_address_is_refused(receiver: Receiver, answers: tuple[str, ...]) -> None:
    # GIVEN a public-looking name whose DNS answers include a forbidden address
    client = SafeHttpClient(1, 1, allow_loopback=False, resolver=fixed_resolver(*answers))
    hits_before = len(receiver.hits())
    # WHEN it is requested, THEN it is refused and nothing was called
    with pytest.raises(UnsafeUrlError):
        client.request("GET", f"http://tracker.example:{port_of(receiver)}/resolved")
    assert len(receiver.hits()) == hits_before


def test_dns_rebinding_gets_no_second_lookup(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a resolver answering the receiver's address first, then somewhere else
    answers = iter([["127.0.0.1"], ["127.0.0.2"]])
    asked: list[str] = []

    def rebinding(host: str, port: int) -> list[IpAddress]:
        asked.append(host)
        return [ipaddress.ip_address(a) for a in next(answers)]

    looked_up: list[Any] = []
    real_getaddrinfo = socket.getaddrinfo

    def spying_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        looked_up.append(host)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", spying_getaddrinfo)
    client = SafeHttpClient(1, 1, allow_loopback=True, resolver=rebinding)
    # WHEN a URL on the name is requested
    answer = client.request("GET", f"http://rebind.example:{port_of(receiver)}/rebind")
    # THEN the name was resolved once and the connection went to the address checked
    assert answer.status == 200
    assert asked == ["rebind.example"]
    assert "rebind.example" not in looked_up
    assert len(receiver.hits("/rebind")) == 1


# --- TLS: the pinned address keeps SNI and certificate checks on the name -------------------


def _certificate(tmp_path: Path, name: str) -> tuple[Path, Path, Path]:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_path, cert_path, key_path


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path, list[str]]]:
    """An HTTPS server on 127.0.0.1 with a certificate for tracker.test; yields (port, CA, SNI names seen)."""
    ca_path, cert_path, key_path = _certificate(tmp_path, "tracker.test")
    sni_seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)

    def remember_sni(sock: ssl.SSLObject, name: str, ctx: ssl.SSLContext) -> None:
        sni_seen.append(str(name))

    context.sni_callback = remember_sni
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], ca_path, sni_seen
    server.shutdown()
    server.server_close()


def test_https_to_a_pinned_address_verifies_the_certificate_of_the_name(
    tls_server: tuple[int, Path, list[str]],
) -> None:
    # GIVEN an HTTPS tracker whose certificate names tracker.test, resolved to 127.0.0.1
    port, ca_path, sni_seen = tls_server
    client = SafeHttpClient(1, 1, allow_loopback=True, resolver=fixed_resolver("127.0.0.1"), ca_bundle=str(ca_path))
    # WHEN it is requested by name
    answer = client.request("GET", f"https://tracker.test:{port}/pb")
    # THEN TLS named the host (SNI) and the certificate was accepted for it
    assert answer.status == 200
    assert sni_seen == ["tracker.test"]


def test_https_refuses_a_certificate_for_another_name(tls_server: tuple[int, Path, list[str]]) -> None:
    # GIVEN a name whose server presents a certificate for tracker.test
    port, ca_path, _ = tls_server
    client = SafeHttpClient(1, 1, allow_loopback=True, resolver=fixed_resolver("127.0.0.1"), ca_bundle=str(ca_path))
    # WHEN another name pointing at it is requested, THEN the TLS check fails the call
    with pytest.raises(DeliveryTransportError) as caught:
        client.request("GET", f"https://impostor.test:{port}/pb")
    assert caught.value.kind == "connection_error"


# --- HttpPostbackSender ---------------------------------------------------------------------


def _message(url: str, **changes: Any) -> PostbackMessage:
    fields: dict[str, Any] = {
        "delivery_id": "d1",
        "affiliate_id": "1234567",
        "transaction_id": "T-1",
        "event": "sale",
        "offer_id": "89",
        "url": url,
        "created_at": "2026-11-25T12:00:00Z",
    }
    return PostbackMessage.model_validate(fields | changes)


def test_the_sender_reports_status_excerpt_and_retry_after(receiver: Receiver) -> None:
    # GIVEN an endpoint answering 503 (the receiver sends no Retry-After)
    receiver.respond("/busy", [503])
    sender = HttpPostbackSender(SafeHttpClient(1, 1, allow_loopback=True))
    # WHEN a postback is sent to it
    result = sender.send(_message(f"{receiver.url}/busy"))
    # THEN the result holds the status and the excerpt, and no error
    assert (result.status, result.excerpt, result.error_kind, result.retry_after_s) == (503, "error", None, None)


def test_the_sender_posts_the_body_with_its_content_type(receiver: Receiver) -> None:
    # GIVEN a POST postback with a form body
    sender = HttpPostbackSender(SafeHttpClient(1, 1, allow_loopback=True))
    # WHEN it is sent
    sender.send(_message(f"{receiver.url}/form", method="POST", body="cid=1"), headers={"webhook-id": "d1"})
    # THEN the receiver got the body, the default form content type and the extra header
    (hit,) = receiver.hits("/form")
    assert hit.body == b"cid=1"
    assert hit.headers["content-type"] == "application/x-www-form-urlencoded"
    assert hit.headers["webhook-id"] == "d1"


def test_the_sender_turns_refusals_and_transport_errors_into_results() -> None:
    # GIVEN a sender that must not call loopback
    sender = HttpPostbackSender(SafeHttpClient(1, 1, allow_loopback=False))
    # WHEN a postback to loopback is sent, THEN it is refused as unsafe, not raised
    result = sender.send(_message("http://127.0.0.1:9/pb"))
    assert (result.status, result.error_kind) == (None, "unsafe_url")


def test_a_dead_first_address_falls_back_to_the_next_checked_one(receiver: Receiver) -> None:
    # GIVEN a name whose first address refuses connections (nothing listens on 127.0.0.2)
    client = SafeHttpClient(1, 1, allow_loopback=True, resolver=fixed_resolver("127.0.0.2", "127.0.0.1"))
    # WHEN it is requested
    answer = client.request("GET", f"http://two.example:{port_of(receiver)}/fallback")
    # THEN the second address answered, once
    assert answer.status == 200
    assert len(receiver.hits("/fallback")) == 1


# --- the total deadline per request ---------------------------------------------------------


class TricklingServer:
    """A raw TCP server on 127.0.0.1 that reads one request, then sends `answer` one byte every
    `trickle_s` from byte `from_byte` on (the bytes before it at once): each byte well within
    a per-read timeout, the whole far beyond it. With `tls`, the bytes are sent inside TLS."""

    def __init__(
        self, answer: bytes, *, from_byte: int = 0, trickle_s: float = 0.05, tls: ssl.SSLContext | None = None
    ) -> None:
        self.answer = answer
        self.from_byte = from_byte
        self.trickle_s = trickle_s
        self.tls = tls
        self.bytes_sent = 0
        self.finished = threading.Event()
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> TricklingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        try:
            raw, _ = self._listener.accept()
        except OSError:
            return
        try:
            conn = self.tls.wrap_socket(raw, server_side=True) if self.tls else raw
            with conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    request += chunk
                conn.sendall(self.answer[: self.from_byte])
                self.bytes_sent = self.from_byte
                for byte in self.answer[self.from_byte :]:
                    if self._stop.wait(self.trickle_s):  # plays a slow link; ends with the test
                        return
                    conn.sendall(bytes([byte]))
                    self.bytes_sent += 1
        except OSError:
            pass  # the client gave up and cut the connection: what the tests expect
        finally:
            self.finished.set()


def _answer_with_body(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


@pytest.mark.parametrize(
    "trickling",
    ["body", "headers"],
)
def test_an_answer_trickling_in_ends_at_the_total_deadline_as_a_timeout(trickling: str) -> None:
    # GIVEN an endpoint whose answer (its 200-byte body, or its headers) comes a byte every
    # 0.05 s: 10 s in all, each byte within the 0.3 s read timeout
    answer = _answer_with_body(b"." * 200)
    header_end = answer.index(b"\r\n\r\n") + 4
    from_byte = header_end if trickling == "body" else 5
    with TricklingServer(answer, from_byte=from_byte) as server:
        client = SafeHttpClient(0.2, 0.3, allow_loopback=True)
        # WHEN it is requested
        started = time.monotonic()
        with pytest.raises(DeliveryTransportError) as caught:
            client.request("GET", f"http://127.0.0.1:{server.port}/pb")
        elapsed = time.monotonic() - started
        # THEN the call fails as a timeout near its total deadline (0.2 s + 0.3 s), far from the
        # 10 s the answer would take, and the server saw its connection cut
        assert caught.value.kind == "timeout"
        assert elapsed < 2.0
        assert server.finished.wait(timeout=5)
        assert server.bytes_sent < len(answer)


def test_a_trickling_body_over_tls_is_cut_at_the_deadline_too(tmp_path: Path) -> None:
    # GIVEN an HTTPS endpoint whose body trickles in, a byte every 0.05 s (10 s in all)
    ca_path, cert_path, key_path = _certificate(tmp_path, "tracker.test")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    answer = _answer_with_body(b"." * 200)
    with TricklingServer(answer, from_byte=answer.index(b"\r\n\r\n") + 4, tls=context) as server:
        client = SafeHttpClient(
            0.2, 0.3, allow_loopback=True, resolver=fixed_resolver("127.0.0.1"), ca_bundle=str(ca_path)
        )
        # WHEN it is requested by name
        started = time.monotonic()
        with pytest.raises(DeliveryTransportError) as caught:
            client.request("GET", f"https://tracker.test:{server.port}/pb")
        # THEN it fails as a timeout, well before the body would have ended
        assert caught.value.kind == "timeout"
        assert time.monotonic() - started < 2.0


def test_an_answer_within_the_deadline_is_read_whole_up_to_the_cap() -> None:
    # GIVEN an endpoint whose 5000-byte body comes quickly, in several socket reads
    with TricklingServer(_answer_with_body(b"ab" * 2500), from_byte=10**6) as server:
        client = SafeHttpClient(1, 1, allow_loopback=True, max_body_bytes=4096)
        # WHEN it is requested
        answer = client.request("GET", f"http://127.0.0.1:{server.port}/pb")
    # THEN the answer is the first 4096 bytes of the body, read over several chunks
    assert answer.status == 200
    assert answer.excerpt == ("ab" * 2500)[:4096]


def test_a_body_trickling_within_the_deadline_is_read_whole() -> None:
    # GIVEN a 4-byte body trickling in over about 0.2 s, within a 2 s total deadline
    answer = _answer_with_body(b"OKOK")
    with TricklingServer(answer, from_byte=answer.index(b"\r\n\r\n") + 4) as server:
        client = SafeHttpClient(1, 1, allow_loopback=True)
        # WHEN it is requested
        result = client.request("GET", f"http://127.0.0.1:{server.port}/pb")
    # THEN the whole body was read: slow is fine, only past the deadline is a timeout
    assert (result.status, result.excerpt) == (200, "OKOK")
