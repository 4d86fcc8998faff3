"""A threaded TCP proxy that chaos can cut: MinIO down is this proxy in front of SeaweedFS cut.

Bytes pass unchanged; while cut, connections are reset and the port stays bound.
Spec: docs/local-stack.md, `provision/tcp_proxy.py`.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import time
from typing import Final

log = logging.getLogger(__name__)

CHUNK_BYTES: Final = 64 * 1024
CONNECT_TIMEOUT_SECONDS: Final = 10.0
STOP_JOIN_SECONDS: Final = 5.0


def _split(endpoint: str) -> tuple[str, int]:
    host, separator, port = endpoint.rpartition(":")
    if not separator or not host or not port.isdigit():
        raise ValueError(f"an endpoint is host:port, not {endpoint!r}")
    return host, int(port)


def _reset(sock: socket.socket) -> None:
    """Close with a reset rather than a FIN: the peer sees the connection die, not end. Shutting
    the reading side first wakes a thread blocked in `recv` on it (closing alone would not)."""
    with contextlib.suppress(OSError):  # already closed
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RD)
    sock.close()


class _Connection:
    """One client connection and its upstream connection, pumped by two threads."""

    def __init__(self, proxy: TcpProxy, client: socket.socket, upstream: socket.socket) -> None:
        self._proxy = proxy
        self.client = client
        self.upstream = upstream
        self._lock = threading.Lock()
        self._open_directions = 2
        self._closed = False
        self.threads = [
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True),
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True),
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def reset(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _reset(self.client)
        _reset(self.upstream)
        self._proxy._forget(self)

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while chunk := source.recv(CHUNK_BYTES):
                target.sendall(chunk)
            target.shutdown(socket.SHUT_WR)  # pass the half close on
        except OSError:
            self.reset()  # one side died (or the cut reset both): so does the other
            return
        with self._lock:
            self._open_directions -= 1
            finished = self._open_directions == 0 and not self._closed
            if finished:
                self._closed = True
        if finished:
            self.client.close()
            self.upstream.close()
            self._proxy._forget(self)


class TcpProxy:
    """`host:port` on loopback (port 0: a free one) forwarding to `upstream` (`host:port`)."""

    def __init__(self, upstream: str, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.upstream = upstream
        self._upstream_address = _split(upstream)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, port))
        self._listener.listen(128)
        self._lock = threading.Lock()
        self._connections: set[_Connection] = set()
        self._cut_until = 0.0
        self._accepting: threading.Thread | None = None
        self._stopping = False
        self.accepted = 0
        self.refused = 0

    @property
    def endpoint(self) -> str:
        host, port = self._listener.getsockname()[:2]
        return f"{host}:{port}"

    def start(self) -> TcpProxy:
        if self._accepting is not None:
            raise RuntimeError("the proxy is already started")
        self._accepting = threading.Thread(
            target=self._accept_loop, name=f"tcp-proxy-{self.endpoint}", daemon=True
        )
        self._accepting.start()
        return self

    # ---------------------------------------------------------------- chaos

    def cut_for(self, seconds: float) -> None:
        """Reset every open connection and refuse new ones for `seconds` wall-clock seconds."""
        if not seconds > 0:
            raise ValueError(f"seconds must be positive, not {seconds!r}")
        with self._lock:
            self._cut_until = time.monotonic() + seconds
            connections = list(self._connections)
        for connection in connections:
            connection.reset()
        log.warning("proxy to %s cut for %.0f s", self.upstream, seconds)

    def restore(self) -> None:
        with self._lock:
            self._cut_until = 0.0

    def cut_seconds_left(self) -> float:
        """0 when the proxy passes connections."""
        with self._lock:
            return max(0.0, self._cut_until - time.monotonic())

    @property
    def cut(self) -> bool:
        return self.cut_seconds_left() > 0

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._connections)

    # ---------------------------------------------------------------- lifecycle

    def stop(self) -> None:
        """Stop listening, reset every connection, and wait for the threads."""
        self._stopping = True
        # shutdown() wakes the accept() blocked in the other thread; close() alone may not
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        if self._accepting is not None:
            self._accepting.join(STOP_JOIN_SECONDS)
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.reset()
        for connection in connections:
            for thread in connection.threads:
                thread.join(STOP_JOIN_SECONDS)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- internals

    def _forget(self, connection: _Connection) -> None:
        with self._lock:
            self._connections.discard(connection)

    def _accept_loop(self) -> None:
        while not self._stopping:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # the listener was closed: stop()
            if self.cut:
                self.refused += 1
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(
                    self._upstream_address, timeout=CONNECT_TIMEOUT_SECONDS
                )
            except OSError as err:
                log.warning("proxy: cannot reach %s: %s", self.upstream, err)
                _reset(client)
                continue
            upstream.settimeout(None)
            connection = _Connection(self, client, upstream)
            with self._lock:
                # checked again under the lock: a cut or a stop may have come while connecting
                admitted = not self._stopping and time.monotonic() >= self._cut_until
                if admitted:
                    self._connections.add(connection)
                    self.accepted += 1
            if admitted:
                connection.start()
            else:
                self.refused += 1
                connection.reset()
