"""A day for the daily report, made in process: moto for AWS and a MinIO held in memory.

`InMemoryMinio` answers the calls the report makes (list, get) from objects put into it, so a
document can be built by delivery.reporting without a server; `busy_day` lands, stages, delivers
(the ledger's records and window manifests as delivery writes them, by hand) and holds back a
day's files over many producers, some with long or awkward names, so renderers are tried on a
crowded page.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import boto3

from delivery.commit import window_manifest
from delivery.latency import LatencyHistogram
from delivery.ledger import Ledger, PartRecord
from delivery.reconciling import IngestIndex
from delivery.redrive_log import RedriveLog
from delivery.reporting import ReportSettings, ReportSources, build_report
from infrastructure.cli.deployment import Deployment
from tests.conftest import REGION
from transform import quarantine
from transform.envelope import file_id
from transform.idempotency import IdempotencyStore, LandedFile

ARCHIVE_BUCKET = "archive"


@dataclass
class StoredObject:
    object_name: str
    data: bytes
    size: int
    etag: str


class _Response(io.BytesIO):
    def release_conn(self) -> None:
        """As urllib3's response, which minio's get_object returns."""


@dataclass
class InMemoryMinio:
    """MinIO's list_objects and get_object over objects held here, counting requests."""

    objects: dict[str, StoredObject] = field(default_factory=dict)
    requests: int = 0

    def put(self, key: str, data: bytes) -> StoredObject:
        stored = StoredObject(key, data, len(data), hashlib.md5(data).hexdigest())  # noqa: S324  # an ETag, as S3 computes it
        self.objects[key] = stored
        return stored

    def list_objects(self, bucket: str, prefix: str = "", recursive: bool = False) -> Iterator[Any]:
        self.requests += 1
        return iter([o for name, o in sorted(self.objects.items()) if name.startswith(prefix)])

    def get_object(self, bucket: str, key: str) -> _Response:
        self.requests += 1
        return _Response(self.objects[key].data)


def settings(**changes: Any) -> ReportSettings:
    values: dict[str, Any] = {
        "deployment": "sluice-test",
        "slo_p95_seconds": 120,
        "slo_p999_seconds": 180,
        "top_producers": 10,
        "archive_prefix": "sluice",
        "buffers_prefix": "buffers/",
        "file_extension": ".json.gz",
    }
    return ReportSettings(**(values | changes))


@dataclass
class InProcessDay:
    """A deployment on moto in process, MinIO in memory, and the helpers to fill one day."""

    target: Deployment
    minio: InMemoryMinio
    day: date
    windows: int = 0
    versions: dict[str, str] = field(default_factory=dict)
    """file_id -> the landing version it names."""

    @property
    def midnight(self) -> datetime:
        return datetime(self.day.year, self.day.month, self.day.day, tzinfo=UTC)

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION)  # type: ignore[call-overload]

    @property
    def ledger(self) -> Ledger:
        return Ledger(self.client("dynamodb"), self.target.ledger_table, 86_400)

    def sources(self, operations: Any) -> ReportSources:
        dynamodb = self.client("dynamodb")
        return ReportSources(
            ingest=IngestIndex(dynamodb, self.target.idempotency_table),
            landing_bucket=self.target.landing_bucket,
            staging=self.client("s3"),
            staging_bucket=self.target.staging_bucket,
            ledger=self.ledger,
            redrives=RedriveLog(dynamodb, self.target.ledger_table, 86_400),
            minio=self.minio,  # type: ignore[arg-type]  # the calls the report makes
            archive_bucket=ARCHIVE_BUCKET,
            sqs=self.client("sqs"),
            dlqs={
                "ingest": self.target.ingest_dlq_url,
                "delivery": self.target.delivery_dlq_url,
                "requeue": self.target.requeue_dlq_url,
            },
            operations=operations,
        )

    def land(self, key: str, size: int, at: datetime, *, status: str = "COMPLETED") -> str:
        """A landed version in the ingest index (forwarded, unless `status` says otherwise);
        its file_id."""
        version = f"v-{hashlib.sha256(f'{key}{at}'.encode()).hexdigest()[:16]}"
        fid = file_id(self.target.landing_bucket, key, version)
        self.versions[fid] = version
        landed = LandedFile(key, version, size, "etag", int(at.timestamp() * 1000))
        store = IdempotencyStore(self.client("dynamodb"), self.target.idempotency_table, 86_400)
        if status == "COMPLETED":
            assert store.complete([fid], {fid: landed}) == []
        else:
            store.record_held(fid, landed, status)
        return fid

    def hold(self, fid: str, reason: Any) -> None:
        quarantine.write(
            self.client("s3"),
            self.target.staging_bucket,
            quarantine.QuarantineEntry(file_id=fid, reason=reason, detail="", stage="processor"),
        )

    def deliver(
        self,
        files: list[tuple[str, str, int]],
        staged: datetime,
        latencies_ms: list[int],
        *,
        archive_bytes: int | None = None,
        redrives: int = 0,
    ) -> str:
        """A window staged at `staged` owning `files` (file_id, key, size), DELIVERED with its
        manifest and archive in MinIO and `latencies_ms` in its histogram; its id."""
        self.windows += 1
        window = f"sluice-test-0-1-{staged:%Y-%m-%d-%H-%M-%S}-{self.windows:04d}"
        staged_key = f"buffers/dt={staged:%Y-%m-%d}/hour={staged:%H}/{window}.json.gz"
        self.client("s3").put_object(
            Bucket=self.target.staging_bucket, Key=staged_key, Body=b"\x1f\x8b"
        )
        ledger = self.ledger
        ledger.claim_files(window, [fid for fid, _, _ in files])
        ledger.begin(window, staged_key, [])
        for _ in range(redrives):
            ledger.record_redrive(window, staged_key)
        partition = f"sluice/dt={staged:%Y-%m-%d}/hour={staged:%H}/"
        archive = self.minio.put(
            f"{partition}{window}.tar.gz", b"a" * (archive_bytes or max(1, len(files) * 10))
        )
        part = PartRecord(
            part=1,
            minio_key=archive.object_name,
            minio_version=None,
            sha256="0" * 64,
            etag=archive.etag,
            size=archive.size,
            part_size=8 * 1024 * 1024,
            file_count=len(files),
            check="etag",
        )
        entries = [
            {
                "member_name": key,
                "key": key,
                "version_id": self.versions.get(fid.split("#", 1)[0], "v"),
                "file_id": fid,
                "size": size,
                "sha256": "0" * 64,
                "event_time_ms": 0,
                "check": "envelope-sha256",
            }
            for fid, key, size in files
        ]
        self.minio.put(
            f"{partition}{window}.manifest.json",
            window_manifest(window, staged_key, [(part, entries)], []),
        )
        ledger.mark_delivered(window, [part], len(files), LatencyHistogram.of(latencies_ms))
        return window


def busy_day(day: InProcessDay, *, producers: int = 14) -> None:
    """Files every hour of the day from `producers` producers (one with a very long name, one
    with markup in it), most delivered within a minute, some late, a few held back."""
    long_name = "a-producer-whose-name-goes-on-and-on-" + "x" * 60
    names = [f"producer-{n:02d}" for n in range(producers - 2)] + [long_name, "<b>&amp;"]
    for hour in range(24):
        staged = day.midnight + timedelta(hours=hour, minutes=30)
        files = []
        for n in range(3 + hour % 5):
            producer = names[(hour + n) % len(names)]
            key = f"{producer}/2026/{hour:02d}/file-{n}.json"
            size = 1000 + 97 * n
            fid = day.land(key, size, day.midnight + timedelta(hours=hour, minutes=29))
            files.append((fid, key, size))
        latencies = [40_000 + 1_000 * n for n in range(len(files))]
        if hour == 14:  # an outage: this hour's files waited four minutes
            latencies = [240_000] * len(files)
        day.deliver(files, staged, latencies, redrives=1 if hour == 14 else 0)
    for name in (long_name, "<b>&amp;"):  # among the top producers, so the page shows them
        files = []
        for n in range(12):
            key = f"{name}/extra-{n}.json"
            files.append((day.land(key, 500, day.midnight + timedelta(hours=20)), key, 500))
        day.deliver(files, day.midnight + timedelta(hours=20, minutes=1), [30_000] * len(files))
    held = day.land(f"{names[0]}/odd.json", 10, day.midnight + timedelta(hours=3))
    day.hold(held, "payload-schema")
    day.land(
        f"{names[1]}/huge.bin", 6 * 1024**3, day.midnight + timedelta(hours=5), status="too-large"
    )


class NoCloudWatch:
    """The operations CloudWatch would give, all unknown (as the local stack's are)."""

    why = "the local stack publishes no CloudWatch metrics"

    def alarms_fired(self, start: datetime, end: datetime) -> dict[str, Any]:
        return {"value": None, "unknown": "no CloudWatch alarm is named sluice-test-*"}

    def duplicate_events(self, start: datetime, end: datetime) -> dict[str, Any]:
        return {"value": None, "unknown": self.why}

    def firehose_headroom(self, start: datetime, end: datetime) -> dict[str, Any]:
        return {"value": None, "unknown": self.why}

    def dlq_depths_at(self, moment: datetime) -> dict[str, Any]:
        return {"value": None, "unknown": self.why}


def busy_document(target: Deployment, **changes: Any) -> dict[str, Any]:
    """The report of a busy day, made in process, the next morning."""
    day = InProcessDay(target, InMemoryMinio(), date(2026, 11, 25))
    busy_day(day)
    return build_report(
        day.sources(NoCloudWatch()),
        settings(**changes),
        day.day,
        day.midnight + timedelta(days=1, hours=8),
    )


def document_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=1)
