"""Outbound HTTP to affiliates' servers, safe against SSRF (contract sections 3 and 4).

`SafeHttpClient` makes one request and never follows redirects (the test-link run follows
them hop by hop, checking each). Before connecting it resolves the host once, refuses the
request if ANY resolved address is forbidden, and connects to the very address it checked:
the URL sent to urllib3 carries the pinned IP, while the Host header, TLS SNI and the
certificate check keep the host name. A second DNS answer (DNS rebinding) never gets a say.

Each request has a total deadline (connect timeout + read timeout) over the headers and the
capped body read: the read timeout alone applies per socket read, so an endpoint trickling
its answer a byte at a time could otherwise hold a dispatch worker, and the batch, for as long
as it likes.

`HttpPostbackSender` sends one postback message with it (the `PostbackSender` port).
"""

import contextlib
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from http.cookiejar import DefaultCookiePolicy
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import urlsplit

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util import parse_url

from postback_relay.domain import messages
from postback_relay.domain.addresses import DEFAULT_PORTS, check_url, forbidden_reason
from postback_relay.domain.delivery import PostbackMessage, parse_retry_after
from postback_relay.domain.errors import DeliveryTransportError, UnsafeUrlError
from postback_relay.domain.records import SendResult
from postback_relay.domain.times import utc_now

if TYPE_CHECKING:  # the stubs' names for what the adapter hands to urllib3
    from requests.adapters import _HostParams, _PoolKwargs

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[IpAddress]]

USER_AGENT = "postback-relay/1.0"
MAX_ADDRESSES_TRIED = 2  # a dead first address (an IPv6 one without IPv6 egress) must not cost more
_BODY_CHUNK_BYTES = 1024


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: Mapping[str, str]  # lower-cased names
    excerpt: str  # the first max_body_bytes of the body, decoded leniently
    latency_ms: int


def resolve_host(host: str, port: int) -> list[IpAddress]:
    """Every address the system resolver gives for the host (the default resolver)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise DeliveryTransportError("connection_error", f"cannot resolve {host}: {exc}") from exc
    addresses: list[IpAddress] = []
    for info in infos:
        # IPv6 link-local answers may carry a scope (`fe80::1%eth0`); the address is what counts.
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


# --- the total deadline of one request ------------------------------------------------------


class _DeadlinePassed(requests.Timeout):
    """The request's total time ran out (mapped to a `timeout` like any other timeout)."""


class _Deadline:
    """The end of one request's time, enforced on the socket it uses.

    When it passes, a timer shuts the socket down, which ends a read blocked on a server that
    sends nothing, or drips a byte just often enough to beat the per-read timeout, whether
    in the TLS handshake, the headers or the body. The socket is reached through a duplicate
    of its descriptor that this object owns and closes under its lock: the shutdown can never
    hit a descriptor number the system has meanwhile given to another connection.
    """

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds
        self.expired = False
        self._lock = threading.Lock()
        self._handle: socket.socket | None = None
        self._over = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> "_Deadline":
        _watching.deadline = self
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        _watching.deadline = None
        self._timer.cancel()
        with self._lock:
            self._over = True
            self._release()

    def passed(self) -> bool:
        return self.expired or time.monotonic() >= self.at

    def watch(self, sock: socket.socket) -> None:
        """Take the socket the request now uses (a new connection's, or a pooled one's)."""
        with self._lock:
            if self._over:
                return
            self._release()
            try:
                # fromfd duplicates the descriptor; works for an SSLSocket too (dup() does not).
                self._handle = socket.fromfd(sock.fileno(), sock.family, sock.type)
            except OSError:
                self._handle = None  # closed under us: nothing left to cut short
            if self.expired and self._handle is not None:
                self._cut()

    def _expire(self) -> None:
        with self._lock:
            if self._over:
                return
            self.expired = True
            if self._handle is not None:
                self._cut()

    def _cut(self) -> None:
        assert self._handle is not None
        with contextlib.suppress(OSError):  # not connected any more: the read has ended already
            self._handle.shutdown(socket.SHUT_RDWR)

    def _release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class _Watching(threading.local):
    deadline: _Deadline | None = None


# A request runs whole in its caller's thread (requests, urllib3, http.client): the thread's
# current deadline is the one its connection must report to.
_watching = _Watching()


def _watch(sock: socket.socket | None) -> None:
    deadline = _watching.deadline
    if deadline is not None and sock is not None:
        deadline.watch(sock)


class _WatchedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watch(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch(self.sock)  # a pooled connection, connected by an earlier request
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watch(sock)  # before the TLS handshake, which the deadline covers too
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch(cast(socket.socket | None, self.sock))
        super().request(*args, **kwargs)


class _WatchedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


# --- the client ------------------------------------------------------------------------------


class _PinnedHostAdapter(HTTPAdapter):
    """Connects to the IP in the request URL, and does TLS for the name in its Host header."""

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        # Same pools, whose connections report their socket to the request's deadline.
        self.poolmanager.pool_classes_by_scheme = {
            "http": _WatchedHTTPConnectionPool,
            "https": _WatchedHTTPSConnectionPool,
        }

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: bool | str, cert: str | tuple[str, str] | None = None
    ) -> "tuple[_HostParams, _PoolKwargs]":
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        host_header = request.headers.get("Host")
        if host_params["scheme"] == "https" and host_header:
            hostname = (parse_url(f"//{host_header}").host or host_header).strip("[]")
            # Part of the pool key too: one pool per (address, name), never a connection
            # verified for one name reused for another.
            tls_names = cast(dict[str, Any], pool_kwargs)
            tls_names["server_hostname"] = hostname
            tls_names["assert_hostname"] = hostname
        return host_params, pool_kwargs


class SafeHttpClient:
    """One HTTP request at a time per call, thread-safe, pooled, redirects never followed."""

    def __init__(
        self,
        connect_timeout_s: float,
        read_timeout_s: float,
        allow_loopback: bool,
        max_body_bytes: int = 4096,
        resolver: Resolver | None = None,
        *,
        pool_size: int = 20,
        ca_bundle: str | None = None,
    ) -> None:
        self._timeout = (connect_timeout_s, read_timeout_s)
        self._deadline_s = connect_timeout_s + read_timeout_s
        self._allow_loopback = allow_loopback
        self._max_body_bytes = max_body_bytes
        self._resolve = resolver or resolve_host
        session = requests.Session()
        # Proxies from the environment would connect on our behalf to an unchecked address,
        # and cookies from one affiliate must never travel to another.
        session.trust_env = False
        session.verify = ca_bundle or True
        session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        adapter = _PinnedHostAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self._session = session

    def close(self) -> None:
        self._session.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> HttpAnswer:
        """Send one request; raises UnsafeUrlError (nothing sent) or DeliveryTransportError.

        A name with several addresses (all checked) is tried on the next one only when the
        connection could not even be opened, so a request is never sent twice. The exchange
        with an address (connection, headers, capped body) ends within connect timeout + read
        timeout, or fails as a `timeout`.
        """
        target = check_url(url, allow_loopback=self._allow_loopback)
        addresses = [target.ip] if target.ip is not None else self._checked_addresses(target.host, target.port)
        parts = urlsplit(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        bare_host = target.host.strip("[]")
        host_header = f"[{bare_host}]" if ":" in bare_host else bare_host
        if target.port != DEFAULT_PORTS.get(target.scheme):
            host_header += f":{target.port}"
        request_headers = {"User-Agent": USER_AGENT, "Accept": "*/*", **(headers or {}), "Host": host_header}
        started = time.perf_counter()
        for tried, address in enumerate(addresses[:MAX_ADDRESSES_TRIED], start=1):
            ip_text = f"[{address}]" if address.version == 6 else str(address)
            try:
                status, answer_headers, excerpt = self._exchange(
                    method, f"{target.scheme}://{ip_text}:{target.port}{path}", request_headers, body
                )
            except requests.ConnectionError as exc:
                reason = getattr(exc.args[0], "reason", None) if exc.args else None
                # NewConnectionError (refused, unreachable) is a ConnectTimeoutError in urllib3.
                not_connected = isinstance(reason, urllib3.exceptions.ConnectTimeoutError)
                if not_connected and tried < min(len(addresses), MAX_ADDRESSES_TRIED):
                    continue
                kind: Literal["timeout", "connection_error"] = (
                    "timeout" if isinstance(exc, requests.Timeout) else "connection_error"
                )
                raise DeliveryTransportError(kind, f"{target.host}: {messages.transport_words(exc)}") from exc
            except (requests.Timeout, urllib3.exceptions.TimeoutError) as exc:
                raise DeliveryTransportError("timeout", f"{target.host} did not answer in time") from exc
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                raise DeliveryTransportError(
                    "connection_error", f"{target.host}: {messages.transport_words(exc)}"
                ) from exc
            latency_ms = int((time.perf_counter() - started) * 1000)
            return HttpAnswer(status, answer_headers, excerpt, latency_ms)
        raise DeliveryTransportError("connection_error", f"{target.host}: no address to connect to")

    def _exchange(
        self, method: str, pinned_url: str, headers: Mapping[str, str], body: bytes | None
    ) -> tuple[int, dict[str, str], str]:
        with _Deadline(self._deadline_s) as deadline:
            try:
                response = self._session.request(
                    method,
                    pinned_url,
                    headers=dict(headers),
                    data=body,
                    timeout=self._timeout,
                    allow_redirects=False,
                    stream=True,
                )
                try:
                    content = self._capped_body(response, deadline)
                finally:
                    response.close()
            except Exception as exc:
                # Whatever the cut-off socket made the libraries raise, the cause is the deadline.
                if deadline.expired:
                    raise _DeadlinePassed("the request's total time ran out") from exc
                raise
            if deadline.expired:  # the cut-off socket read as a short body
                raise _DeadlinePassed("the request's total time ran out")
        encoding = response.encoding or "utf-8"
        try:
            excerpt = content.decode(encoding, errors="replace")
        except LookupError:  # an unknown charset named by the server
            excerpt = content.decode("utf-8", errors="replace")
        return response.status_code, {name.lower(): value for name, value in response.headers.items()}, excerpt

    def _capped_body(self, response: requests.Response, deadline: _Deadline) -> bytes:
        """The first max_body_bytes, read as they come (read1), the deadline checked between
        reads: a plain read(n) would wait for all n bytes, however slowly they drip."""
        content = bytearray()
        while len(content) < self._max_body_bytes:
            if deadline.passed():
                raise _DeadlinePassed("the request's total time ran out")
            chunk = response.raw.read1(min(_BODY_CHUNK_BYTES, self._max_body_bytes - len(content)), decode_content=True)
            if not chunk:
                break
            content += chunk
        return bytes(content[: self._max_body_bytes])

    def _checked_addresses(self, host: str, port: int) -> list[IpAddress]:
        try:
            ascii_host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise UnsafeUrlError(f"host {host!r} is not a valid name") from exc
        addresses = self._resolve(ascii_host.strip("[]"), port)
        if not addresses:
            raise DeliveryTransportError("connection_error", f"{host} resolves to no address")
        for address in addresses:
            reason = forbidden_reason(address, allow_loopback=self._allow_loopback)
            if reason is not None:
                raise UnsafeUrlError(f"{host} resolves to a {reason} address ({address})")
        return addresses


class HttpPostbackSender:
    """The PostbackSender port over SafeHttpClient: one attempt of one postback."""

    def __init__(self, client: SafeHttpClient, *, clock: Callable[[], datetime] | None = None) -> None:
        self._client = client
        self._clock = clock or utc_now

    def send(self, message: PostbackMessage, *, headers: dict[str, str] | None = None) -> SendResult:
        request_headers = dict(headers or {})
        body: bytes | None = None
        if message.body is not None:
            body = message.body.encode()
            request_headers.setdefault("Content-Type", message.content_type or "application/x-www-form-urlencoded")
        started = time.perf_counter()
        try:
            answer = self._client.request(message.method.value, message.url, headers=request_headers, body=body)
        except UnsafeUrlError as exc:
            return SendResult(None, 0, None, error_kind="unsafe_url", error=exc.message)
        except DeliveryTransportError as exc:
            latency_ms = int((time.perf_counter() - started) * 1000)
            return SendResult(None, latency_ms, None, error_kind=exc.kind, error=exc.message)
        retry_after = parse_retry_after(answer.headers.get("retry-after"), now=self._clock())
        return SendResult(answer.status, answer.latency_ms, answer.excerpt, retry_after_s=retry_after)
