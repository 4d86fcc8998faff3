"""The TCP proxy chaos cuts to take MinIO down (infrastructure.local.provision.tcp_proxy)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from infrastructure.local.provision.tcp_proxy import TcpProxy


class EchoServer:
    """Upstream for the proxy: answers each connection with what it received, upper-cased,
    once the client has finished sending (a half close), then closes."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        host, port = self.listener.getsockname()[:2]
        return f"{host}:{port}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    @staticmethod
    def _answer(conn: socket.socket) -> None:
        with conn:
            received = b""
            try:
                while chunk := conn.recv(65536):
                    received += chunk
                conn.sendall(received.upper())
            except OSError:
                return

    def stop(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept()
        self.listener.close()
        self.thread.join(5)


@pytest.fixture
def upstream() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.stop()


@pytest.fixture
def proxy(upstream: EchoServer) -> Iterator[TcpProxy]:
    started = TcpProxy(upstream.endpoint).start()
    yield started
    started.stop()


def connect(proxy: TcpProxy) -> socket.socket:
    host, port = proxy.endpoint.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=5)


def exchange(proxy: TcpProxy, payload: bytes) -> bytes:
    with connect(proxy) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


def refused(proxy: TcpProxy) -> bool:
    """The proxy accepted and reset the connection: nothing comes back but the end."""
    try:
        with connect(proxy) as sock:
            sock.sendall(b"anyone there?")
            sock.shutdown(socket.SHUT_WR)
            return sock.recv(1024) == b""
    except OSError:  # ECONNRESET or EPIPE: the reset arrived first
        return True


def test_bytes_pass_both_ways_unchanged_with_half_close(proxy: TcpProxy) -> None:
    # GIVEN a proxy in front of an upstream that answers only once its client stops sending
    payload = bytes(range(256)) * 4096  # 1 MiB, several chunks
    # WHEN a client sends through the proxy and half-closes
    answer = exchange(proxy, payload)
    # THEN the whole answer comes back, byte for byte
    assert answer == payload.upper()


def test_a_cut_resets_open_connections_and_refuses_new_ones(proxy: TcpProxy) -> None:
    # GIVEN a connection open through the proxy
    sock = connect(proxy)
    try:
        sock.sendall(b"partial request")
        # WHEN the proxy is cut
        proxy.cut_for(60)
        # THEN the open connection dies (bytes that crossed before the cut may still arrive
        # first: the echo can beat the cut on a loaded machine)
        sock.settimeout(5)
        died = False
        try:
            while not died:
                died = sock.recv(1024) == b""
        except TimeoutError:  # nothing for 5 s and still open: not cut
            died = False
        except OSError:  # ECONNRESET
            died = True
        assert died
    finally:
        sock.close()
    # ... and new connections are refused while the cut lasts
    assert proxy.cut
    assert refused(proxy)
    assert proxy.refused >= 1


def test_restored_the_proxy_passes_bytes_again(proxy: TcpProxy) -> None:
    # GIVEN a cut proxy
    proxy.cut_for(60)
    assert refused(proxy)
    # WHEN it is restored
    proxy.restore()
    # THEN bytes pass both ways again, on the same endpoint
    assert not proxy.cut
    assert exchange(proxy, b"back again") == b"BACK AGAIN"


def test_a_cut_ends_by_itself_after_its_seconds(proxy: TcpProxy) -> None:
    # WHEN the proxy is cut for a moment
    proxy.cut_for(0.2)
    # THEN it passes bytes again once that moment is over
    threading.Event().wait(0.3)
    assert proxy.cut_seconds_left() == 0
    assert exchange(proxy, b"ok") == b"OK"


def test_seconds_must_be_positive(proxy: TcpProxy) -> None:
    with pytest.raises(ValueError, match="seconds must be positive"):
        proxy.cut_for(0)


def test_stop_closes_the_listener_and_every_connection(upstream: EchoServer) -> None:
    # GIVEN a proxy with a connection open
    proxy = TcpProxy(upstream.endpoint).start()
    port = int(proxy.endpoint.rsplit(":", 1)[1])
    sock = connect(proxy)
    sock.sendall(b"x")
    # WHEN it stops
    proxy.stop()
    # THEN nothing listens on its port any more, and the open connection has ended
    with socket.socket() as probe:
        probe.settimeout(1)
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    with sock:
        sock.settimeout(5)
        assert _ends(sock)
    assert proxy.open_connections == 0


def _ends(sock: socket.socket) -> bool:
    """The connection ends (EOF or reset) within the socket's timeout. The echo of what was
    sent before the stop may still arrive first, on a loaded machine: read past it."""
    try:
        while chunk := sock.recv(1024):
            assert chunk == b"X", chunk
    except TimeoutError:
        return False
    except OSError:  # reset
        return True
    return True
