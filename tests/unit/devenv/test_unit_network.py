"""The unit suite's network guard (tests/unit/conftest.py) is on."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pytest_socket import SocketConnectBlockedError


@pytest.mark.filterwarnings("ignore:A test tried to use socket.socket.connect")
def test_a_connect_beyond_loopback_is_refused() -> None:
    # WHEN a unit test connects to an address that is not loopback (TEST-NET-1, never routed)
    # THEN pytest-socket refuses it before anything is sent
    with pytest.raises(SocketConnectBlockedError):
        socket.create_connection(("192.0.2.1", 80), timeout=1)


def test_a_server_on_loopback_is_reached() -> None:
    # GIVEN a server on 127.0.0.1 (a free port)
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # WHEN a unit test connects to it THEN the connection is made
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=5):
            pass
    finally:
        server.shutdown()
        server.server_close()
