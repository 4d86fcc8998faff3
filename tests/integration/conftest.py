"""Fixtures for integration tests: SeaweedFS as MinIO, and MinIO secrets in moto's Secrets Manager.

`seaweedfs` gives each test a fresh bucket on a server started once per test session (per xdist
worker): `weed mini` starts in about 1.5 s and stops in about 1.3 s. A test that stops the server
(`seaweedfs.stop()`) gets the next test a new one. Tests using it are marked `slow`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters.base import DEFAULT_PROVIDERS
from aws_lambda_powertools.utilities.parameters.secrets import SecretsProvider

from infrastructure.local.provision.seaweedfs import SeaweedFS, SeaweedFSServer, start_seaweedfs
from tests.conftest import REGION
from tests.integration.runtime_support import start_runtime  # noqa: F401  # a fixture
from tests.servers import moto_server  # noqa: F401  # a fixture, used by name


class _Servers:
    """The session's SeaweedFS, started on first use and again if a test stopped it."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._count = 0
        self.current: SeaweedFSServer | None = None

    def get(self) -> SeaweedFSServer:
        if self.current is None or not self.current.running():
            if self.current is not None:
                self.current.stop()
            self._count += 1
            self.current = start_seaweedfs(self._root / f"server-{self._count}")
        return self.current

    def stop(self) -> None:
        if self.current is not None:
            self.current.stop()


@pytest.fixture(scope="session")
def seaweedfs_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Servers]:
    servers = _Servers(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def seaweedfs(seaweedfs_servers: _Servers) -> Iterator[SeaweedFS]:
    """A running SeaweedFS and a fresh bucket in it (removed afterwards, with its contents)."""
    server = seaweedfs_servers.get()
    bucket = server.create_bucket()
    yield SeaweedFS(
        endpoint=server.endpoint,
        access_key=server.access_key,
        secret_key=server.secret_key,
        bucket=bucket,
        server=server,
    )
    if server.running():
        server.remove_bucket(bucket)


# -------------------------------------------------------------------- Secrets Manager (moto)


@pytest.fixture(autouse=True)
def _powertools_parameters_cache() -> Iterator[None]:
    """Powertools caches secrets (and its provider's boto3 client) per process: per test here."""
    parameters.clear_caches()
    yield
    parameters.clear_caches()


@dataclass
class SecretsCalls:
    """GetSecretValue requests that reached (moto's) Secrets Manager."""

    count: int = 0


@pytest.fixture
def secrets_calls(aws: None) -> SecretsCalls:
    """Counts Secrets Manager reads: Powertools' provider gets a client that counts them."""
    calls = SecretsCalls()
    client = boto3.client("secretsmanager", region_name=REGION)

    def count(**_: Any) -> None:
        calls.count += 1

    client.meta.events.register("before-call.secrets-manager.GetSecretValue", count)
    DEFAULT_PROVIDERS["secrets"] = SecretsProvider(boto3_client=client)
    return calls


@pytest.fixture
def put_secret(aws: None) -> Any:
    """Create or update a secret in moto's Secrets Manager: `put_secret(name, value) -> name`."""
    client = boto3.client("secretsmanager", region_name=REGION)

    def put(name: str, value: object) -> str:
        text = value if isinstance(value, str) else json.dumps(value)
        try:
            client.create_secret(Name=name, SecretString=text)
        except client.exceptions.ResourceExistsException:
            client.put_secret_value(SecretId=name, SecretString=text)
        return name

    return put


@pytest.fixture
def secret_name() -> str:
    return f"sluice/test/minio-{uuid.uuid4().hex[:8]}"
