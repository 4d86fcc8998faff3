"""Servers for tests: each starts on a free 127.0.0.1 port and is stopped, with its whole
process group, when the test ends — no process is left behind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from infrastructure.local.provision.moto_service import free_port, start_moto

__all__ = ["free_port", "moto_server"]


@pytest.fixture
def moto_server(tmp_path: Path) -> Iterator[str]:
    """moto in server mode (Sluice's launcher: DynamoDB serialized), a subprocess on a free
    loopback port; yields its endpoint URL."""
    server = start_moto(tmp_path / "moto.log")
    try:
        yield server.endpoint
    finally:
        server.stop()
