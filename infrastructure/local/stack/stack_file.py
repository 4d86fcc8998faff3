"""`.sluice/stack.json`: where a running local stack is, for `sluice put`, `load`, `down` and the
tests. `sluice up` writes it atomically once every service has answered, and removes it when it
stops; its presence means "a stack is up", its `pids.sluice` which process runs it.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from minio import Minio

STATE_DIR: Final = ".sluice"
STACK_FILE: Final = "stack.json"


class NoStackError(RuntimeError):
    """No local stack is running (no stack file)."""


@dataclass(frozen=True)
class MinioEndpoint:
    endpoint: str
    """`host:port`, no scheme."""
    access_key: str
    secret_key: str = field(repr=False)
    bucket: str
    secure: bool

    def client(self) -> Minio:
        return Minio(
            self.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=self.secure,
        )


@dataclass(frozen=True)
class StackFile:
    aws_endpoint: str
    region: str
    landing_bucket: str
    staging_bucket: str
    ingest_queue_url: str
    ingest_dlq_url: str
    delivery_dlq_url: str
    requeue_dlq_url: str
    idempotency_table: str
    ledger_table: str
    minio_secret: str
    """The Secrets Manager secret delivery reads MinIO's endpoint and keys from."""
    streams: list[str]
    firehose_endpoint: str
    lambda_endpoint: str
    minio: MinioEndpoint
    pids: dict[str, int]
    """The processes `sluice up` started: `sluice` (itself), `moto`, `seaweedfs` (unless a real
    MinIO is used); the Lambda workers are its children and end with it."""
    time_scale: float
    buffer_seconds: int
    """Firehose's destination buffer interval, before scaling."""
    processor_buffer_seconds: int
    """Firehose's processor buffer interval, before scaling: a file waits in both."""
    started_at: str
    logs: str
    """Directory of the stack's logs: moto, SeaweedFS, one file per function."""
    control_endpoint: str | None = None
    """The chaos control API of `sluice up` (infrastructure/local/stack/chaos.py); None in stack
    files written before it existed."""
    intake_endpoint: str | None = None
    """The HTTPS intake's API on loopback (infrastructure/local/apigateway); None in stack files
    written before it existed."""
    producers_secret: str | None = None
    """The secret of the intake producers' key hashes (`sluice producer add` adds to it)."""
    demo_producer_key: str | None = None
    """The key of the producer `demo`, made at `sluice up`: a local credential for the intake."""
    minio_proxy: str | None = None
    """`host:port` of the TCP proxy in front of MinIO, which the MinIO secret names: delivery and
    redrive reach MinIO through it, so `sluice chaos minio-down` cuts them off. `minio` above
    stays the direct address, so that tests and `sluice put/load` read archives whatever the
    chaos. None: no proxy (a real MinIO over TLS is reached directly)."""
    report_topic_arn: str | None = None
    """The daily report's SNS topic (moto's SNS); None in stack files written before it."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> StackFile:
        raw: dict[str, Any] = json.loads(text)
        raw["minio"] = MinioEndpoint(**raw["minio"])
        return cls(**raw)

    def write(self, path: Path) -> None:
        """Atomically: readers see the whole file or none."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".stack-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(self.to_json())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    @property
    def expected_wait_seconds(self) -> float:
        """How long a lone file waits in Firehose's two buffers, at this time scale."""
        return (self.processor_buffer_seconds + self.buffer_seconds) / self.time_scale


def stack_path(root: Path) -> Path:
    return root / STATE_DIR / STACK_FILE


def read_stack(root: Path) -> StackFile:
    """The running stack's file under `root`, or NoStackError saying how to start one."""
    path = stack_path(root)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NoStackError(
            f"no local stack is running ({path} does not exist); start one with `make run` "
            "or `sluice up`"
        ) from None
    try:
        return StackFile.from_json(text)
    except (ValueError, TypeError, KeyError) as err:
        raise NoStackError(f"{path} is not a stack file ({err}); remove it") from err
