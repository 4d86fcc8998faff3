"""The daily report's own cost against the number of files in a day: CPU time and Python's peak
traced allocation of `delivery.reporting.build_report` over a synthetic day held in memory.

Every source answers from memory (the index's items, the staged windows' listing, the ledger's
window records and owners, MinIO's listing and manifests), so what is measured is the report's
own work: computing each file's id, reading each manifest, judging each file, counting. The
requests themselves (about 250 pages of the index, 2,900 manifests, 30 BatchGetItem calls at
the seed's load: docs/report.md) are on top. Windows of 300 files, one a minute per stream,
every file delivered.

Run: .venv/bin/python docs/scripts/measure_report.py   (figures in docs/report.md)
"""

from __future__ import annotations

import gc
import hashlib
import io
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from delivery.commit import window_manifest
from delivery.latency import LatencyHistogram
from delivery.ledger import PartRecord, WindowRecord, WindowState
from delivery.reporting import ReportSettings, ReportSources, build_report
from transform.envelope import file_id
from transform.idempotency import landed_hour

DAY = date(2026, 11, 25)
MIDNIGHT = datetime(2026, 11, 25, tzinfo=UTC)
LANDING = "landing"
PER_WINDOW = 300
COUNTS = (20_000, 80_000, 160_000)
SEED_FILES = 864_000
"""10 files/s for a day."""


@dataclass
class Day:
    items: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    staged: list[str] = field(default_factory=list)
    records: dict[str, WindowRecord] = field(default_factory=dict)
    objects: dict[str, bytes] = field(default_factory=dict)


class Index:
    def __init__(self, day: Day) -> None:
        self.day = day

    def hour_items(self, hour: str) -> Iterator[dict[str, Any]]:
        yield from self.day.items.get(hour, [])


class Ledger:
    def __init__(self, day: Day) -> None:
        self.day = day

    def get_windows(self, ids: list[str]) -> dict[str, WindowRecord]:
        return {w: self.day.records[w] for w in ids if w in self.day.records}

    def owners(self, ids: list[str]) -> dict[str, str]:
        return {}


class Staging:
    def __init__(self, day: Day) -> None:
        self.day = day

    def get_paginator(self, name: str) -> Any:
        day = self.day

        class Pages:
            def paginate(self, **arguments: Any) -> list[dict[str, Any]]:
                if not arguments["Prefix"].startswith("buffers/"):
                    return [{}]
                return [{"Contents": [{"Key": key} for key in day.staged]}]

        return Pages()


@dataclass
class Listed:
    object_name: str
    size: int
    etag: str


class Minio:
    def __init__(self, day: Day) -> None:
        self.day = day

    def list_objects(self, bucket: str, prefix: str, recursive: bool) -> list[Listed]:
        return [
            Listed(name, len(data), "etag")
            for name, data in self.day.objects.items()
            if name.startswith(prefix)
        ]

    def get_object(self, bucket: str, key: str) -> Any:
        response = io.BytesIO(self.day.objects[key])
        response.release_conn = lambda: None  # type: ignore[attr-defined]  # as urllib3's
        return response


class Nothing:
    def day(self, day: date) -> None:
        return None

    def alarms_fired(self, start: datetime, end: datetime) -> dict[str, Any]:
        return {"value": None, "unknown": "measured without CloudWatch"}

    duplicate_events = firehose_headroom = alarms_fired

    def dlq_depths_at(self, moment: datetime) -> dict[str, Any]:
        return {"value": None, "unknown": "measured without CloudWatch"}


def make_day(files: int) -> Day:
    day = Day()
    windows = (files + PER_WINDOW - 1) // PER_WINDOW
    for w in range(windows):
        at = MIDNIGHT + timedelta(seconds=60 + w * (86_400 - 120) // windows)
        window = f"sluice-0-1-{at:%Y-%m-%d-%H-%M-%S}-{w:08d}"
        partition = f"sluice/dt={at:%Y-%m-%d}/hour={at:%H}/"
        day.staged.append(f"buffers/dt={at:%Y-%m-%d}/hour={at:%H}/{window}.json.gz")
        entries = []
        for n in range(min(PER_WINDOW, files - w * PER_WINDOW)):
            key = f"producer-{n % 40}/2026/11/25/{w}-{n}.json"
            version = hashlib.md5(key.encode()).hexdigest()  # noqa: S324  # a made-up version id
            fid = file_id(LANDING, key, version)
            landed_ms = int(at.timestamp() * 1000) - 30_000
            day.items.setdefault(landed_hour(landed_ms / 1000), []).append(
                {
                    "landed_at_ms": {"N": str(landed_ms)},
                    "object_key": {"S": key},
                    "version_id": {"S": version},
                    "size": {"N": "1024"},
                    "status": {"S": "COMPLETED"},
                }
            )
            entries.append(
                {
                    "member_name": key,
                    "key": key,
                    "version_id": version,
                    "file_id": fid,
                    "size": 1024,
                    "sha256": "0" * 64,
                    "event_time_ms": landed_ms,
                    "check": "envelope-sha256",
                }
            )
        part = PartRecord(
            1,
            f"{partition}{window}.tar.gz",
            None,
            "0" * 64,
            "etag",
            300_000,
            8 << 20,
            len(entries),
            "etag",
        )
        day.objects[part.minio_key] = b"a" * 10
        day.objects[f"{partition}{window}.manifest.json"] = window_manifest(
            window, day.staged[-1], [(part, entries)], []
        )
        day.records[window] = WindowRecord(
            window_id=window,
            state=WindowState.DELIVERED,
            staged_key=day.staged[-1],
            exclusions=(),
            parts=(
                PartRecord(
                    1, part.minio_key, None, "0" * 64, "etag", 10, 8 << 20, len(entries), "etag"
                ),
            ),
            redrive_count=0,
            claimed_at_ms=None,
            updated_at_ms=0,
            delivered_at_ms=None,
            parked_reason=None,
            file_count=len(entries),
            latency=LatencyHistogram.of([40_000] * len(entries)),
        )
    return day


def measure(files: int) -> tuple[float, float]:
    day = make_day(files)
    sources = ReportSources(
        ingest=Index(day),  # type: ignore[arg-type]  # the calls the report makes
        landing_bucket=LANDING,
        staging=Staging(day),  # type: ignore[arg-type]
        staging_bucket="staging",
        ledger=Ledger(day),  # type: ignore[arg-type]
        redrives=Nothing(),  # type: ignore[arg-type]
        minio=Minio(day),  # type: ignore[arg-type]
        archive_bucket="archive",
        sqs=None,  # type: ignore[arg-type]  # a past day: the DLQs come from CloudWatch
        dlqs={},
        operations=Nothing(),
    )
    settings = ReportSettings("sluice-measure", 120, 180, 10, "sluice", "buffers/", ".json.gz")
    gc.collect()
    tracemalloc.start()
    started = time.process_time()
    document = build_report(sources, settings, DAY, MIDNIGHT + timedelta(days=1, hours=8))
    cpu = time.process_time() - started
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    if document["files"]["delivered"] != files:
        raise SystemExit(f"the synthetic day went wrong: {document['files']}")
    return cpu, peak


def main() -> None:
    results = {files: measure(files) for files in COUNTS}
    for files, (cpu, peak) in results.items():
        print(f"{files:>9,} files: {cpu:6.1f} s CPU (traced), peak traced {peak:7.1f} MiB")
    (small, (cpu_small, peak_small)), (large, (cpu_large, peak_large)) = (
        (COUNTS[0], results[COUNTS[0]]),
        (COUNTS[-1], results[COUNTS[-1]]),
    )
    cpu_per_file = (cpu_large - cpu_small) / (large - small)
    bytes_per_file = (peak_large - peak_small) * 2**20 / (large - small)
    print(
        f"per file: {cpu_per_file * 1e6:.1f} us CPU, {bytes_per_file:.0f} B; at {SEED_FILES:,} "
        f"files (10 files/s): about {cpu_per_file * SEED_FILES:.0f} s CPU and "
        f"{peak_small + bytes_per_file * (SEED_FILES - small) / 2**20:.0f} MiB, requests aside"
    )


if __name__ == "__main__":
    main()
