"""MinioAccess: the secret's validation, its caching, one refetch on rotation, TLS, health.

Secrets Manager is moto in process; MinIO is SeaweedFS (tests marked slow), which refuses a wrong
secret key with SignatureDoesNotMatch (AccessDenied on HEAD requests, which carry no error body)
and an unknown access key with InvalidAccessKeyId.
"""

from __future__ import annotations

import io
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import urllib3
from minio import Minio
from minio.error import S3Error

from delivery.minio_access import (
    AUTH_ERROR_CODES,
    PROBE_PREFIX,
    MinioAccess,
    MinioAuthError,
    MinioSettings,
    MinioSettingsError,
)
from infrastructure import environment
from infrastructure.local.provision.seaweedfs import (
    GRPC_OFFSET,
    READER_SUFFIX,
    SeaweedFS,
    SeaweedFSServer,
    start_seaweedfs,
)
from infrastructure.tunables import parse_tunables, read_tunables_document
from tests.integration.conftest import SecretsCalls

CANARY = "do-not-print-this-value"
NAME = "sluice/test/minio"
WRONG_KEY = "wrong-key-0123456789"
VALID = {
    "endpoint": "minio.example.internal:9000",
    "access_key": "AKIAEXAMPLE",
    "secret_key": CANARY,
    "bucket": "sluice-archives",
}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------------------ settings


def test_settings_defaults_to_tls_and_no_region() -> None:
    settings = MinioSettings.from_secret(VALID, secret_name=NAME)
    assert settings.secure is True
    assert settings.region is None
    assert settings.endpoint == "minio.example.internal:9000"
    assert CANARY not in repr(settings)


def test_settings_optional_fields() -> None:
    settings = MinioSettings.from_secret(
        {**VALID, "secure": False, "region": "eu-west-2", "rotated_at": "ignored"}, secret_name=NAME
    )
    assert (settings.secure, settings.region) == (False, "eu-west-2")


def test_plain_http_is_refused_where_tls_is_required() -> None:
    # GIVEN a secret that turns TLS off, read where delivery.minio_tls_required is on (AWS)
    value = {**VALID, "secure": False}
    # THEN it is refused, naming the secret, the field and the tunable, never the keys
    with pytest.raises(MinioSettingsError, match="minio_tls_required") as caught:
        MinioSettings.from_secret(value, secret_name=NAME, tls_required=True)
    assert NAME in str(caught.value)
    assert '"secure": false' in str(caught.value)
    assert CANARY not in str(caught.value)
    # ... and TLS on passes
    assert MinioSettings.from_secret(VALID, secret_name=NAME, tls_required=True).secure


def test_the_shipped_tunables_require_tls_except_locally() -> None:
    document = read_tunables_document()
    assert parse_tunables(document, "aws").delivery.minio_tls_required is True
    assert parse_tunables(document, "local").delivery.minio_tls_required is False


@pytest.mark.parametrize("field", ["endpoint", "access_key", "secret_key", "bucket"])
def test_settings_missing_field_is_named(field: str) -> None:
    value = {name: item for name, item in VALID.items() if name != field}
    with pytest.raises(MinioSettingsError, match=f"'{field}'") as caught:
        MinioSettings.from_secret(value, secret_name=NAME)
    assert NAME in str(caught.value)
    assert CANARY not in str(caught.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("endpoint", 9000),
        ("access_key", None),
        ("secret_key", ["x"]),
        ("bucket", {"name": "b"}),
        ("secure", "true"),
        ("region", 7),
        ("bucket", "  "),
        ("endpoint", "https://minio.example.internal:9000"),
        ("endpoint", "minio.example.internal:notaport"),
    ],
)
def test_settings_wrong_type_or_shape_is_named(field: str, value: object) -> None:
    with pytest.raises(MinioSettingsError, match=f"'{field}'") as caught:
        MinioSettings.from_secret({**VALID, field: value}, secret_name=NAME)
    assert CANARY not in str(caught.value)


def test_settings_must_be_an_object() -> None:
    with pytest.raises(MinioSettingsError, match="JSON object"):
        MinioSettings.from_secret(["endpoint"], secret_name=NAME)


def test_ca_bundle_that_is_not_a_file_fails_at_construction(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv(environment.MINIO_CA_BUNDLE, str(tmp_path / "missing.pem"))
    with pytest.raises(MinioSettingsError, match=environment.MINIO_CA_BUNDLE):
        MinioAccess("s", max_age_seconds=300)


def test_ca_bundle_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv(environment.MINIO_CA_BUNDLE, str(bundle))
    assert MinioAccess("s", max_age_seconds=300).ca_bundle == str(bundle)
    monkeypatch.delenv(environment.MINIO_CA_BUNDLE)
    assert MinioAccess("s", max_age_seconds=300).ca_bundle is None


# ------------------------------------------------------------------- secret fetch (moto only)


def test_secret_is_cached_within_max_age(
    secrets_calls: SecretsCalls, put_secret: Any, secret_name: str
) -> None:
    put_secret(secret_name, VALID)
    access = MinioAccess(secret_name, max_age_seconds=300)
    for _ in range(3):
        assert access.settings.bucket == "sluice-archives"
    assert secrets_calls.count == 1


def test_secret_that_is_not_json_fails_clearly(put_secret: Any, secret_name: str) -> None:
    put_secret(secret_name, "endpoint=minio:9000")
    with pytest.raises(MinioSettingsError, match="not valid JSON"):
        MinioAccess(secret_name, max_age_seconds=300).settings  # noqa: B018  # the fetch raises


def test_malformed_secret_fails_naming_the_field(put_secret: Any, secret_name: str) -> None:
    put_secret(secret_name, {**VALID, "bucket": 12})
    with pytest.raises(MinioSettingsError, match="'bucket'") as caught:
        MinioAccess(secret_name, max_age_seconds=300).settings  # noqa: B018  # the fetch raises
    assert CANARY not in str(caught.value)


# ------------------------------------------------------------------------ against SeaweedFS


@pytest.mark.slow
def test_calls_share_one_secret_fetch_and_one_client(
    seaweedfs: SeaweedFS, secrets_calls: SecretsCalls, put_secret: Any, secret_name: str
) -> None:
    put_secret(secret_name, seaweedfs.secret())
    access = MinioAccess(secret_name, max_age_seconds=300)
    clients = set()
    for _ in range(3):
        assert access.call(lambda client, s: client.bucket_exists(s.bucket))
        clients.add(access.call(lambda client, _: id(client)))
    assert secrets_calls.count == 1
    assert len(clients) == 1


@pytest.mark.slow
def test_changed_secret_is_used_once_the_cache_expires(
    seaweedfs: SeaweedFS, secrets_calls: SecretsCalls, put_secret: Any, secret_name: str
) -> None:
    other = seaweedfs.server.create_bucket()
    put_secret(secret_name, seaweedfs.secret())
    access = MinioAccess(secret_name, max_age_seconds=0)  # every call reads the secret
    assert access.call(lambda _, s: s.bucket) == seaweedfs.bucket
    put_secret(secret_name, seaweedfs.secret(bucket=other))
    assert access.call(lambda client, s: (s.bucket, client.bucket_exists(s.bucket))) == (
        other,
        True,
    )
    seaweedfs.server.remove_bucket(other)


def _head(client: Minio, settings: MinioSettings) -> object:
    return client.bucket_exists(settings.bucket)


def _put(client: Minio, settings: MinioSettings) -> object:
    return client.put_object(settings.bucket, "rotation-probe", io.BytesIO(b"x"), 1).etag


@pytest.mark.slow
@pytest.mark.parametrize("operation", [_head, _put], ids=["HEAD", "PUT"])
@pytest.mark.parametrize("wrong", ["secret_key", "access_key"])
def test_rotation_refetches_the_secret_once_and_retries(
    *,
    seaweedfs: SeaweedFS,
    secrets_calls: SecretsCalls,
    put_secret: Any,
    secret_name: str,
    operation: Any,
    wrong: str,
) -> None:
    # GIVEN a client built from credentials MinIO no longer accepts (cached, max_age 5 min)
    put_secret(secret_name, seaweedfs.secret(**{wrong: WRONG_KEY}))
    access = MinioAccess(secret_name, max_age_seconds=300)
    with pytest.raises(MinioAuthError):
        access.call(operation)
    assert secrets_calls.count == 2  # first fetch, then the forced one
    # WHEN the secret now holds the current credentials (rotation finished)
    put_secret(secret_name, seaweedfs.secret())
    # THEN the next call is refused once, fetches again despite the cache, and succeeds
    assert access.call(operation)
    assert secrets_calls.count == 3
    # and later calls use the new client without another fetch
    assert access.call(operation)
    assert secrets_calls.count == 3


@pytest.mark.slow
def test_still_refused_after_refetch_names_endpoint_and_bucket(
    seaweedfs: SeaweedFS, secrets_calls: SecretsCalls, put_secret: Any, secret_name: str
) -> None:
    put_secret(secret_name, seaweedfs.secret(secret_key=WRONG_KEY))
    access = MinioAccess(secret_name, max_age_seconds=300)
    with pytest.raises(MinioAuthError) as caught:
        access.call(_put)
    message = str(caught.value)
    assert seaweedfs.endpoint in message
    assert seaweedfs.bucket in message
    assert secret_name in message
    assert WRONG_KEY not in message
    assert caught.value.code in AUTH_ERROR_CODES
    assert isinstance(caught.value.__cause__, S3Error)
    assert secrets_calls.count == 2


@pytest.mark.slow
def test_other_s3_errors_pass_through_without_refetch(
    seaweedfs: SeaweedFS, secrets_calls: SecretsCalls, put_secret: Any, secret_name: str
) -> None:
    put_secret(secret_name, seaweedfs.secret())
    access = MinioAccess(secret_name, max_age_seconds=300)
    with pytest.raises(S3Error) as caught:
        access.call(lambda client, s: client.stat_object(s.bucket, "no-such-key"))
    assert caught.value.code == "NoSuchKey"
    assert secrets_calls.count == 1


# --------------------------------------------------------------------------------- TLS, health


@pytest.mark.slow
def test_tls_verifies_against_the_ca_bundle_from_the_environment(
    seaweedfs: SeaweedFS,
    put_secret: Any,
    secret_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert seaweedfs.https_endpoint
    assert seaweedfs.ca_bundle
    secret = seaweedfs.secret(endpoint=seaweedfs.https_endpoint)
    del secret["secure"]  # TLS is the default
    put_secret(secret_name, secret)
    monkeypatch.setenv(environment.MINIO_CA_BUNDLE, str(seaweedfs.ca_bundle))
    access = MinioAccess(secret_name, max_age_seconds=300)
    assert access.call(_head)
    assert access.call(_put)
    assert access.healthy()


@pytest.mark.slow
def test_tls_without_the_ca_bundle_is_refused(
    seaweedfs: SeaweedFS, put_secret: Any, secret_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(environment.MINIO_CA_BUNDLE, raising=False)
    secret = seaweedfs.secret(endpoint=seaweedfs.https_endpoint)
    del secret["secure"]
    put_secret(secret_name, secret)
    access = MinioAccess(secret_name, max_age_seconds=300)
    with pytest.raises(urllib3.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        access.call(_head)
    assert not access.healthy()


@pytest.mark.slow
def test_tls_to_a_plain_http_port_fails_clearly(
    seaweedfs: SeaweedFS, put_secret: Any, secret_name: str
) -> None:
    secret = seaweedfs.secret()
    del secret["secure"]  # default true, but this port speaks plain HTTP
    put_secret(secret_name, secret)
    access = MinioAccess(secret_name, max_age_seconds=300)
    with pytest.raises(urllib3.exceptions.SSLError):
        access.call(_head)
    assert not access.healthy()


@pytest.mark.slow
def test_healthy(seaweedfs: SeaweedFS, put_secret: Any, secret_name: str) -> None:
    put_secret(secret_name, seaweedfs.secret())
    assert MinioAccess(secret_name, max_age_seconds=300).healthy()


def test_unhealthy_when_nothing_listens(put_secret: Any, secret_name: str) -> None:
    put_secret(secret_name, {**VALID, "endpoint": f"127.0.0.1:{closed_port()}", "secure": False})
    started = time.monotonic()
    assert not MinioAccess(secret_name, max_age_seconds=300).healthy()
    assert time.monotonic() - started < 5


@pytest.mark.slow
def test_unhealthy_when_minio_answers_a_head_but_refuses_writes(
    seaweedfs: SeaweedFS, put_secret: Any, secret_name: str
) -> None:
    # GIVEN credentials that may read and list the bucket, but not write to it
    reader = seaweedfs.secret(
        access_key=seaweedfs.access_key + READER_SUFFIX,
        secret_key=seaweedfs.secret_key + READER_SUFFIX,
    )
    put_secret(secret_name, reader)
    access = MinioAccess(secret_name, max_age_seconds=300)
    # WHEN MinIO is asked, THEN the bucket answers a HEAD, and still MinIO is not healthy
    assert access.call(_head)
    assert not access.healthy()


@pytest.mark.slow
def test_the_health_probe_leaves_nothing_behind(
    seaweedfs: SeaweedFS, put_secret: Any, secret_name: str
) -> None:
    # GIVEN a healthy MinIO
    put_secret(secret_name, seaweedfs.secret())
    access = MinioAccess(secret_name, max_age_seconds=300)
    # WHEN its health is checked three times
    assert all(access.healthy() for _ in range(3))
    # THEN no probe object, version or delete marker is left
    left = access.call(
        lambda client, settings: list(
            client.list_objects(
                settings.bucket, prefix=PROBE_PREFIX, recursive=True, include_version=True
            )
        )
    )
    assert left == []


@pytest.mark.slow
def test_unhealthy_when_the_bucket_is_missing(
    seaweedfs: SeaweedFS, put_secret: Any, secret_name: str
) -> None:
    put_secret(secret_name, seaweedfs.secret(bucket="sluice-no-such-bucket"))
    assert not MinioAccess(secret_name, max_age_seconds=300).healthy()


@pytest.mark.slow
def test_stopped_server_leaves_no_process(tmp_path: Any) -> None:
    server: SeaweedFSServer = start_seaweedfs(tmp_path / "own", tls=False)
    with server:
        assert server.running()
        assert server.startup_seconds < 30
        pid = server.pid
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    sockets = [f"seaweedfs-*-{port + GRPC_OFFSET}.sock" for port in server.ports]
    assert not [path for pattern in sockets for path in Path("/tmp").glob(pattern)]  # noqa: S108  # weed's socket directory
