"""`make bench`, safety section: what redrive and reconcile cost as history grows, and how fast
redrive drains a backlog after a MinIO outage.

Counted in requests and items read, never seconds, over the real code: `delivery.redriving` and
`delivery.reconciling` against moto in process (S3, SQS, DynamoDB) and SeaweedFS as MinIO.

- `redrive_requests_history_ratio`: one steady-state redrive run with the same pending work (3
  unrecorded, 2 stale and 1 parked window) over 10 and over 1,000 delivered windows: requests
  at 100x ÷ requests at 1x.
- `reconcile_requests_history_ratio`: the hourly reconcile of one hour (3 files: 2 delivered,
  1 lost) over 10 and 1,000 files of history in the hours before: requests (AWS and MinIO) at
  100x ÷ at 1x.
- `outage_drain_ratio`: a backlog of windows staged during an outage (an hour's arrivals times
  the outage's hours), redriven run after run once MinIO is back, delivery standing in as a
  function that marks each window delivered: windows drained per hour (runs every
  `schedule_minutes`) ÷ windows arriving per hour (one per stream per buffer interval).
"""

from __future__ import annotations

import dataclasses
import io
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from unittest import mock

import boto3
import moto.s3.models as moto_s3_models
from moto import mock_aws

from delivery.hourly_reconcile import reconcile_hour
from delivery.layout import MANIFEST_SUFFIX, window_name
from delivery.ledger import Ledger, PartRecord
from delivery.reconciling import IngestIndex, ReconcileSources
from delivery.redriving import RedriveDeps, redrive
from infrastructure.bench.results import Figure, progress
from infrastructure.local.provision import resources
from infrastructure.local.provision.seaweedfs import start_seaweedfs
from infrastructure.tunables import load_tunables
from transform.envelope import file_id
from transform.idempotency import IdempotencyStore, LandedFile

REGION: Final = "eu-west-2"
STAGING: Final = "bench-staging"
LANDING: Final = "bench-landing"
LEDGER: Final = "bench-ledger"
IDEMPOTENCY: Final = "bench-idempotency"
EXTENSION: Final = ".json.gz"
HOUR: Final = 3600
HISTORY: Final = (10, 1000)
"""Delivered windows (redrive) or files (reconcile) of history: 1x and 100x."""
OUTAGE_HOURS: Final = 5
"""A quick run measures the drain after a 5-hour outage; the rate does not depend on it."""
RATIO_GOAL: Final = 1.1
DRAIN_GOAL: Final = 10.0


def run(quick: bool, workdir: Path) -> list[Figure]:
    return [
        _redrive_ratio(),
        _reconcile_ratio(workdir),
        _drain_ratio(OUTAGE_HOURS if quick else 2 * OUTAGE_HOURS),
    ]


# ---------------------------------------------------------------- counting


@dataclasses.dataclass
class Counts:
    requests: int = 0
    items_read: int = 0

    def watch(self, *clients: Any) -> None:
        for client in clients:
            client.meta.events.register("before-call", self._request)
            client.meta.events.register("after-call", self._response)

    def _request(self, **_: Any) -> None:
        self.requests += 1

    def _response(self, parsed: dict[str, Any], **_: Any) -> None:
        self.items_read += int(parsed.get("Count", 0)) + int(parsed.get("KeyCount", 0))
        self.items_read += len(parsed.get("Versions", []))
        self.items_read += sum(len(v) for v in parsed.get("Responses", {}).values())
        self.items_read += int("Item" in parsed)


class CountedMinio:
    """A minio client whose requests and objects listed or read are counted."""

    def __init__(self, client: Any, counts: Counts) -> None:
        self._client = client
        self._counts = counts

    def list_objects(self, *args: Any, **kwargs: Any) -> list[Any]:
        found = list(self._client.list_objects(*args, **kwargs))
        self._counts.requests += 1
        self._counts.items_read += len(found)
        return found

    def get_object(self, *args: Any, **kwargs: Any) -> Any:
        self._counts.requests += 1
        self._counts.items_read += 1
        return self._client.get_object(*args, **kwargs)

    def stat_object(self, *args: Any, **kwargs: Any) -> Any:
        self._counts.requests += 1
        return self._client.stat_object(*args, **kwargs)


@contextmanager
def _aws() -> Iterator[tuple[Any, Any, Any]]:
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        for bucket in (STAGING, LANDING):
            resources.create_bucket(s3, bucket, REGION, versioned=True)
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        resources.create_ledger_table(dynamodb, LEDGER)
        resources.create_idempotency_table(dynamodb, IDEMPOTENCY)
        yield s3, dynamodb, boto3.client("sqs", region_name=REGION)


def _stage(s3: Any, moment: float) -> str:
    """A staged window written at `moment` (moto's S3 clock set to it: its LastModified)."""
    at = datetime.fromtimestamp(moment, UTC)
    key = (
        f"buffers/dt={at:%Y-%m-%d}/hour={at:%H}/"
        f"bench-0-1-{at:%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}{EXTENSION}"
    )
    with mock.patch.object(moto_s3_models, "utcnow", return_value=at.replace(tzinfo=None)):
        s3.put_object(Bucket=STAGING, Key=key, Body=b"staged")
    return key


def _part(window_id: str) -> PartRecord:
    return PartRecord(1, f"sluice/{window_id}.tar.gz", None, "0" * 64, "e", 10, 8, 1, "etag")


# ---------------------------------------------------------------- redrive


@dataclasses.dataclass
class _Redrive:
    s3: Any
    sqs: Any
    ledger: Ledger
    now: float
    invoked: list[str] = dataclasses.field(default_factory=list)
    deliver: bool = False
    """Stand in for a delivery that succeeds: mark each invoked window DELIVERED."""

    def deps(self, dlq_url: str) -> RedriveDeps:
        tunables = load_tunables()
        return RedriveDeps(
            s3=self.s3,
            sqs=self.sqs,
            ledger=self.ledger,
            minio_healthy=lambda: True,
            invoke=self._invoke,
            staging_bucket=STAGING,
            dlq_url=dlq_url,
            tunables=tunables.redrive._replace(jitter_seconds=0),
            destination_buffer_seconds=tunables.firehose.destination_buffer_seconds,
            file_extension=EXTENSION,
            clock=lambda: self.now,
            sleep=lambda _: None,
        )

    def _invoke(self, event: dict[str, Any]) -> None:
        for record in event["Records"]:
            key = record["s3"]["object"]["key"]
            self.invoked.append(key)
            if self.deliver:
                window_id = window_name(key, EXTENSION).window_id
                self.ledger.begin(window_id, key, [])
                self.ledger.mark_delivered(window_id, [_part(window_id)], file_count=1)


def _mid_hour(now: float) -> float:
    return float(int(now) // HOUR * HOUR + HOUR // 2 + 2 * HOUR)


def _redrive_requests(history_windows: int) -> Counts:
    with _aws() as (s3, dynamodb, sqs):
        now = _mid_hour(datetime.now(UTC).timestamp())
        ledger = Ledger(dynamodb, LEDGER, 3_456_000, lambda: world.now, sleep=lambda _: None)
        world = _Redrive(s3, sqs, ledger, now)
        dlq = sqs.create_queue(QueueName="bench-delivery-dlq")["QueueUrl"]
        for n in range(history_windows):
            key = _stage(s3, now - 2 * HOUR - (n * 10 * HOUR) // history_windows - 60)
            window_id = window_name(key, EXTENSION).window_id
            ledger.begin(window_id, key, [])
            ledger.mark_delivered(window_id, [_part(window_id)], file_count=4)
        redrive(world.deps(dlq))  # the first run ever sets the low-water mark
        grace = world.deps(dlq).tunables.unrecorded_grace_seconds + 120
        for _ in range(3):
            _stage(s3, now - grace)
        for _ in range(2):
            key = _stage(s3, now - grace - 60)
            world.now = now - 2 * HOUR
            ledger.begin(window_name(key, EXTENSION).window_id, key, [])
            world.now = now
        parked = _stage(s3, now - grace - 120)
        ledger.begin(window_name(parked, EXTENSION).window_id, parked, [])
        ledger.mark_parked(window_name(parked, EXTENSION).window_id, "bench")
        counts = Counts()
        counts.watch(s3, sqs, dynamodb)
        redrive(world.deps(dlq))
        return counts


def _redrive_ratio() -> Figure:
    progress("safety: redrive requests over 1x and 100x delivered history")
    small, large = (_redrive_requests(n) for n in HISTORY)
    ratio = large.requests / small.requests
    return Figure(
        name="redrive_requests_history_ratio",
        value=round(ratio, 2),
        unit="x",
        what="requests of one redrive run, the same pending work over 1,000 vs 10 delivered "
        "windows (moto)",
        goal=f"<= {RATIO_GOAL}",
        met=ratio <= RATIO_GOAL,
        reference=f"1x: {small.requests} requests, {small.items_read} items read; "
        f"100x: {large.requests} requests, {large.items_read} items read",
    )


def _drain_ratio(outage_hours: int) -> Figure:
    progress(f"safety: redrive draining {outage_hours} hours of windows after an outage")
    tunables = load_tunables()
    streams = tunables.firehose.stream_count
    arriving_per_hour = streams * HOUR / tunables.firehose.destination_buffer_seconds
    backlog = int(arriving_per_hour * outage_hours)
    with _aws() as (s3, dynamodb, sqs):
        now = _mid_hour(datetime.now(UTC).timestamp())
        ledger = Ledger(dynamodb, LEDGER, 3_456_000, lambda: world.now, sleep=lambda _: None)
        world = _Redrive(s3, sqs, ledger, now, deliver=True)
        dlq = sqs.create_queue(QueueName="bench-delivery-dlq")["QueueUrl"]
        ledger.set_sweep_low_water(now - (outage_hours + 1) * HOUR)
        for n in range(backlog):
            _stage(s3, now - HOUR - (n * outage_hours * HOUR) // backlog)
        runs = 0
        while len(world.invoked) < backlog and runs < backlog:
            redrive(world.deps(dlq))
            runs += 1
            world.now += tunables.redrive.schedule_minutes * 60
    hours = runs * tunables.redrive.schedule_minutes / 60
    ratio = backlog / hours / arriving_per_hour
    return Figure(
        name="outage_drain_ratio",
        value=round(ratio, 1),
        unit="x",
        what=f"{backlog} windows staged in a {outage_hours} h outage, redriven oldest first "
        f"until none is left ({runs} runs, one every {tunables.redrive.schedule_minutes} min)",
        goal=f">= {DRAIN_GOAL}",
        met=ratio >= DRAIN_GOAL,
        reference=f"arriving: {arriving_per_hour:.0f} windows/h ({streams} streams); drained: "
        f"{backlog / hours:,.0f} windows/h",
    )


# ---------------------------------------------------------------- reconcile


def _reconcile_requests(minio: Any, bucket: str, history_files: int, day: datetime) -> Counts:
    s3 = boto3.client("s3", region_name=REGION)
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    store = IdempotencyStore(dynamodb, IDEMPOTENCY, 3600)
    hour = day.replace(hour=12, minute=10)

    def land(key: str, at: datetime) -> dict[str, Any]:
        version = s3.put_object(Bucket=LANDING, Key=key, Body=b"{}")
        fid = file_id(LANDING, key, version["VersionId"])
        landed = LandedFile(
            key, version["VersionId"], 2, version["ETag"], int(at.timestamp() * 1000)
        )
        store.complete([fid], {fid: landed})
        return {"key": key, "version_id": version["VersionId"], "file_id": fid, "size": 2}

    def window_manifest(name: str, files: list[dict[str, Any]], at: datetime) -> None:
        partition = f"sluice/dt={at:%Y-%m-%d}/hour={at:%H}/"
        part = {"part": 1, "key": f"{partition}{name}.tar.gz", "sha256": "0" * 64, "size": 0}
        document: dict[str, Any] = {
            "format_version": 2,
            "window_id": name,
            "parts": [{**part, "file_count": len(files)}],
            "excluded": [],
        }
        document["files"] = [
            {
                **f,
                "member_name": f["key"],
                "sha256": "0" * 64,
                "check": "envelope-sha256",
                "part": 1,
            }
            for f in files
        ]
        data = json.dumps(document).encode()
        minio.put_object(bucket, f"{partition}{name}{MANIFEST_SUFFIX}", io.BytesIO(data), len(data))

    batch = []
    for n in range(history_files):
        at = day.replace(hour=11) - timedelta(hours=n % 10, minutes=n % 50)
        batch.append(land(f"history/{day:%d}/{n}.json", at))
        if len(batch) == 10 or n == history_files - 1:
            window_manifest(f"history-{day:%d}-{n}", batch, at)
            batch = []
    kept = [land(f"hour/{day:%d}/kept-{n}.json", hour) for n in range(2)]
    land(f"hour/{day:%d}/lost.json", hour)
    window_manifest(f"w-{day:%d}", kept, hour)
    counts = Counts()
    counted_s3 = boto3.client("s3", region_name=REGION)
    counted_dynamodb = boto3.client("dynamodb", region_name=REGION)
    counts.watch(counted_s3, counted_dynamodb)
    sources = ReconcileSources(
        ingest=IngestIndex(counted_dynamodb, IDEMPOTENCY),
        landing=counted_s3,
        landing_bucket=LANDING,
        staging=counted_s3,
        staging_bucket=STAGING,
        ledger=Ledger(counted_dynamodb, LEDGER, 3600),
        minio=CountedMinio(minio, counts),  # type: ignore[arg-type]  # the same calls, counted
        archive_bucket=bucket,
        archive_prefix="sluice",
    )
    outcome = reconcile_hour(sources, day.replace(hour=14, minute=20), max_listed=10_000_000)
    if (outcome.files, outcome.missing) != (3, 1):
        raise RuntimeError(f"the reconciled hour is not what was landed: {outcome}")
    return counts


def _reconcile_ratio(workdir: Path) -> Figure:
    progress("safety: the hourly reconcile over 1x and 100x history (moto, SeaweedFS)")
    with start_seaweedfs(workdir / "minio", tls=False) as server, _aws():
        minio = server.client()
        bucket = "bench-archives"
        minio.make_bucket(bucket)
        small = _reconcile_requests(minio, bucket, HISTORY[0], datetime(2026, 11, 24, tzinfo=UTC))
        large = _reconcile_requests(minio, bucket, HISTORY[1], datetime(2026, 11, 26, tzinfo=UTC))
    ratio = large.requests / small.requests
    return Figure(
        name="reconcile_requests_history_ratio",
        value=round(ratio, 2),
        unit="x",
        what="requests of the hourly reconcile of one hour (3 files), over 1,000 vs 10 files "
        "of history (moto, SeaweedFS)",
        goal=f"<= {RATIO_GOAL}",
        met=ratio <= RATIO_GOAL,
        reference=f"1x: {small.requests} requests, {small.items_read} items read; "
        f"100x: {large.requests} requests, {large.items_read} items read",
    )
