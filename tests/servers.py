"""Servers for tests: each starts on a free 127.0.0.1 port and is stopped, with its whole
process group, when the test ends — no process is left behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

STARTUP_TIMEOUT_SECONDS = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def moto_server(tmp_path: Path) -> Iterator[str]:
    """moto in server mode, a subprocess on a free loopback port; yields its endpoint URL."""
    port = free_port()
    log = (tmp_path / "moto.log").open("wb")
    process = subprocess.Popen(  # noqa: S603  # fixed argv, no shell
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so stopping it stops its children too
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"moto server exited with {process.returncode}; see {log.name}")
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()  # noqa: S310  # loopback http
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto server not ready on {endpoint}") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
