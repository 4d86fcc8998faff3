"""The daily report's figures: one UTC day of Sluice, read from what Sluice keeps (docs/report.md).

Each source is read for the day alone, never for its history (DESIGN §4b):
- what landed: the forwarder's index of landed files (`IngestIndex`), a Query per hour;
- what arrived: the window manifests in MinIO of the day's hours and the two after it (windows
  are named by Firehose's arrival, after landing), listed hour by hour, each read once;
- windows, archive parts and bytes, latency, redrives: the ledger's records of the windows
  staged that day (the staging bucket's `buffers/dt=<day>/`, then BatchGetItem);
- a file neither archived nor excluded: its owner window in the ledger, else its reason file;
- MinIO's availability and the windows redriven: redrive's log (`delivery.redrive_log`);
  requeues: the day's `errors/processing-failed/dt=<day>/`; DLQs, alarms, duplicates and
  Firehose's quota: SQS and CloudWatch (`delivery.report_cloudwatch`), "unknown" with the
  reason where they know nothing.

Each landed file gets one fate, as reconcile gives it a status (delivery.reconciling), so that
the fates add up to the files landed. The result is a JSON-shaped document whose shape is
docs/report.schema.json; delivery.report_render prints it as text and HTML. Memory grows with
the day's files (a small record each), never with history.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Protocol

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError
from minio import Minio
from minio.error import S3Error

from delivery.latency import LatencyHistogram
from delivery.layout import (
    MANIFEST_SUFFIX,
    WindowKeyError,
    placements,
    window_manifest_beside,
    window_name,
)
from delivery.ledger import Ledger, WindowRecord, WindowState
from delivery.reconciling import (
    REPLAY_MARK,
    IngestIndex,
    ReconcileError,
    partition_prefixes,
    read_manifest,
)
from delivery.redrive_log import RedriveDay, RedriveLog
from transform.envelope import file_id as compute_file_id
from transform.idempotency import COMPLETED, HELD, HELD_REASON, landed_hour
from transform.intake.keys import is_api_key
from transform.quarantine import PROCESSING_FAILED_PREFIX, RECORD_FAILED_CODE, reason_key

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

logger = Logger(child=True)

SCHEMA_VERSION: Final = 1
DAY: Final = timedelta(days=1)
MANIFEST_SLACK: Final = timedelta(hours=2)
"""Manifests are listed this far past the day's end: a file landed at 23:59 is staged (and
named) by Firehose's arrival, minutes later; one later still is found through its owner window."""
SETTLE: Final = timedelta(hours=1)
"""After the day's end plus this, a file still on its way counts against the verdict."""
PENDING_GRACE: Final = timedelta(minutes=5)
"""A file forwarded this recently, with no claim yet, is on its way (Firehose's buffers)."""
OTHERS: Final = "(others)"
NO_PRODUCER: Final = "(no prefix)"
MISSING_CODES: Final = frozenset({"NoSuchKey", "404", "NotFound"})


class Fate(StrEnum):
    """What became of one landed file (one each; they add up to the files landed)."""

    UNJUDGED = "unjudged"
    DELIVERED = "delivered"
    REDELIVERED = "redelivered"
    EXCLUDED = "excluded"
    QUARANTINED = "quarantined"
    TOO_LARGE = "too_large"
    VERSION_GONE = "version_gone"
    PENDING = "pending"
    PARKED = "parked"
    MISSING = "missing"
    DELIVERED_TWICE = "delivered_twice"
    CHECKSUM_MISMATCH = "checksum_mismatch"


ARRIVED: Final = frozenset({Fate.DELIVERED, Fate.REDELIVERED})
HELD_BACK: Final = frozenset({Fate.EXCLUDED, Fate.QUARANTINED, Fate.TOO_LARGE, Fate.VERSION_GONE})
"""Not delivered, on purpose and with a reason: accounted for."""
WRONG: Final = frozenset({Fate.MISSING, Fate.DELIVERED_TWICE, Fate.CHECKSUM_MISMATCH, Fate.PARKED})
"""Never right, whenever the report runs."""


class Operations(Protocol):
    """The figures only CloudWatch holds (delivery.report_cloudwatch); each a figure document:
    `{"value": …}` or `{"value": null, "unknown": why}`."""

    def alarms_fired(self, start: datetime, end: datetime) -> dict[str, Any]: ...

    def duplicate_events(self, start: datetime, end: datetime) -> dict[str, Any]: ...

    def firehose_headroom(self, start: datetime, end: datetime) -> dict[str, Any]: ...

    def dlq_depths_at(self, moment: datetime) -> dict[str, Any]: ...


class ReportSettings(NamedTuple):
    deployment: str
    slo_p95_seconds: int
    slo_p999_seconds: int
    top_producers: int
    archive_prefix: str
    buffers_prefix: str
    """Of staged windows, before `dt=`: `buffers/`."""
    file_extension: str


class ReportSources(NamedTuple):
    """Where each figure is read from: the same adapters in AWS, locally and in tests."""

    ingest: IngestIndex
    landing_bucket: str
    staging: S3Client
    staging_bucket: str
    ledger: Ledger
    redrives: RedriveLog
    minio: Minio
    archive_bucket: str
    sqs: SQSClient
    dlqs: Mapping[str, str]
    """DLQ name (ingest, delivery, requeue) -> queue URL."""
    operations: Operations


def figure(value: Any) -> dict[str, Any]:
    return {"value": value}


def unknown(why: str) -> dict[str, Any]:
    return {"value": None, "unknown": why}


@dataclass(slots=True)
class _File:
    producer: str
    size: int
    landed_ms: int
    forwarded: bool
    fate: Fate = Fate.UNJUDGED
    archive: int = -1
    """Index of the archive part a manifest places it in under its own id (`_Day.archives`)."""
    replay_archive: int = -1
    """Index of one a forced replay placed it in (`<file_id>#r<replay_id>`)."""
    reason: str | None = None

    @property
    def placed_in(self) -> int:
        return self.archive if self.archive >= 0 else self.replay_archive


@dataclass
class _Window:
    window_id: str
    hour: int
    """Hour of the day it was staged in (its `hour=` partition)."""


@dataclass
class _Day:
    """Everything gathered about the day, then judged."""

    start: datetime
    until: datetime
    files: dict[str, _File] = field(default_factory=dict)
    archives: list[tuple[str, str]] = field(default_factory=list)
    """(archive key, window id), by index."""
    archive_index: dict[str, int] = field(default_factory=dict)
    listed_archives: dict[str, tuple[int, str]] = field(default_factory=dict)
    """Archive key -> (size, ETag) as MinIO lists it."""
    manifests_read: set[str] = field(default_factory=set)
    unreadable_manifests: list[str] = field(default_factory=list)
    window_file_bytes: dict[str, int] = field(default_factory=dict)
    """Window id -> bytes of the files its manifest lists."""
    staged: list[_Window] = field(default_factory=list)
    records: dict[str, WindowRecord] = field(default_factory=dict)
    minutes: Counter[int] = field(default_factory=Counter)
    """Files landed per minute of the day."""
    minute_bytes: Counter[int] = field(default_factory=Counter)
    by_api: int = 0

    def archive(self, key: str, window_id: str) -> int:
        if key not in self.archive_index:
            self.archive_index[key] = len(self.archives)
            self.archives.append((key, window_id))
        return self.archive_index[key]


def build_report(
    sources: ReportSources, settings: ReportSettings, day: date, now: datetime
) -> dict[str, Any]:
    """The report of the UTC `day`, as of `now` (the day so far when it is today)."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    now = now.astimezone(UTC)
    if now <= start:
        raise ValueError(f"{day.isoformat()} has not begun at {now.isoformat(timespec='seconds')}")
    found = _Day(start=start, until=min(start + DAY, now))
    _land(sources, found)
    _read_manifests(sources, settings, found, min(start + DAY + MANIFEST_SLACK, now))
    _staged_windows(sources, settings, found)
    _records(sources, found)
    _judge_placed(found)
    _judge_unplaced(sources, found, now)
    return _document(sources, settings, found, now)


# -- gathering ------------------------------------------------------------------------------


def _hours(start: datetime, until: datetime) -> list[datetime]:
    hours = []
    hour = start
    while hour < until:
        hours.append(hour)
        hour += timedelta(hours=1)
    return hours


def producer_of(key: str) -> str:
    """A producer is the first segment of a key (each writes under its own prefix)."""
    head, slash, _rest = key.partition("/")
    return head if slash and head else NO_PRODUCER


def _land(sources: ReportSources, found: _Day) -> None:
    since_ms = int(found.start.timestamp() * 1000)
    until_ms = int(found.until.timestamp() * 1000)
    for hour in _hours(found.start, found.until):
        for item in sources.ingest.hour_items(landed_hour(hour.timestamp())):
            landed_ms = int(item["landed_at_ms"]["N"])
            if not since_ms <= landed_ms < until_ms:
                continue
            key = item["object_key"]["S"]
            status = item.get("status", {}).get("S", "")
            file = _File(
                producer=producer_of(key),
                size=int(item["size"]["N"]),
                landed_ms=landed_ms,
                forwarded=status == COMPLETED,
            )
            if status == HELD:
                held = item.get(HELD_REASON, {}).get("S", "")
                file.fate = Fate.TOO_LARGE if held == "too-large" else Fate.VERSION_GONE
                file.reason = held
            fid = compute_file_id(sources.landing_bucket, key, item["version_id"]["S"])
            found.files[fid] = file
            minute = (landed_ms - since_ms) // 60_000
            found.minutes[minute] += 1
            found.minute_bytes[minute] += file.size
            found.by_api += is_api_key(key)


def _read_manifests(
    sources: ReportSources, settings: ReportSettings, found: _Day, listed_until: datetime
) -> None:
    for partition in partition_prefixes(settings.archive_prefix, found.start, listed_until):
        try:
            objects = list(
                sources.minio.list_objects(sources.archive_bucket, prefix=partition, recursive=True)
            )
        except S3Error as err:
            raise ReconcileError(
                f"cannot list manifests in {sources.archive_bucket}/{partition}: {err.code}"
            ) from err
        for obj in objects:
            name = str(obj.object_name)
            if name.endswith(".tar.gz"):
                found.listed_archives[name] = (int(obj.size or 0), str(obj.etag or ""))
        for obj in objects:
            name = str(obj.object_name)
            if name.endswith(MANIFEST_SUFFIX):
                _read_manifest(sources, found, name)


def _read_manifest(sources: ReportSources, found: _Day, key: str) -> None:
    if key in found.manifests_read:
        return
    found.manifests_read.add(key)
    try:
        manifest = read_manifest(sources.minio, sources.archive_bucket, key)
    except ReconcileError as err:
        logger.warning("manifest unreadable", key=key, error=str(err))
        found.unreadable_manifests.append(key)
        return
    _place(sources, found, manifest)


def _place(sources: ReportSources, found: _Day, manifest: Mapping[str, Any]) -> None:
    window_id = str(manifest["window_id"])
    file_bytes = 0
    for archive, entry in placements(manifest):
        size = int(entry["size"])
        file_bytes += size
        fid = str(entry["file_id"])
        replayed = REPLAY_MARK in fid
        if replayed:
            fid = compute_file_id(
                sources.landing_bucket, str(entry["key"]), str(entry["version_id"])
            )
        file = found.files.get(fid)
        if file is None:
            continue  # landed on another day
        index = found.archive(archive, window_id)
        if replayed:
            # A forced replay's copy: intended, never "twice" (reconcile's REDELIVERED).
            file.replay_archive = index
            if file.fate not in (Fate.DELIVERED_TWICE, Fate.CHECKSUM_MISMATCH):
                file.fate = Fate.REDELIVERED
            continue
        if file.archive >= 0 and found.archives[file.archive][0] != archive:
            file.fate = Fate.DELIVERED_TWICE
            continue
        file.archive = index
        if size != file.size:
            file.fate, file.reason = Fate.CHECKSUM_MISMATCH, "size"
        elif file.fate is not Fate.DELIVERED_TWICE:
            file.fate = Fate.REDELIVERED if file.replay_archive >= 0 else Fate.DELIVERED
    found.window_file_bytes[window_id] = file_bytes
    for entry in manifest.get("excluded", []):
        file = found.files.get(str(entry["file_id"]))
        if file is not None and file.fate is Fate.UNJUDGED:
            file.fate, file.reason = Fate.EXCLUDED, str(entry.get("reason", "unknown"))


def _staged_windows(sources: ReportSources, settings: ReportSettings, found: _Day) -> None:
    """The windows Firehose staged on the day: one listing of `buffers/dt=<day>/`."""
    prefix = f"{settings.buffers_prefix}dt={found.start:%Y-%m-%d}/"
    paginator = sources.staging.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=sources.staging_bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            try:
                name = window_name(obj["Key"], settings.file_extension)
            except WindowKeyError:
                continue
            found.staged.append(_Window(name.window_id, int(name.hour)))


def _records(sources: ReportSources, found: _Day) -> None:
    """The ledger's records of the day's windows and of every window a manifest named."""
    wanted = [w.window_id for w in found.staged] + [window for _, window in found.archives]
    found.records.update(sources.ledger.get_windows(wanted))


# -- judging --------------------------------------------------------------------------------


def _judge_placed(found: _Day) -> None:
    """A placement counts once its window is DELIVERED and its archive is as the ledger says."""
    changed: dict[int, str] = {}
    for index, (key, window_id) in enumerate(found.archives):
        record = found.records.get(window_id)
        listed = found.listed_archives.get(key)
        if record is None or record.state is not WindowState.DELIVERED or listed is None:
            continue  # nothing recorded to compare with, or not listed (a late window's)
        part = next((p for p in record.parts if p.minio_key == key), None)
        if part is None:
            changed[index] = f"window {window_id} records no part {key}"
        elif listed != (part.size, part.etag):
            changed[index] = f"archive {key} changed in MinIO"
    for file in found.files.values():
        placed = file.placed_in
        if placed < 0 or file.fate not in ARRIVED:
            continue
        record = found.records.get(found.archives[placed][1])
        if record is not None and record.state is WindowState.CLAIMED:
            file.fate, file.reason = Fate.PENDING, "archived; window not yet DELIVERED"
        elif record is not None and record.state is WindowState.PARKED:
            file.fate, file.reason = Fate.PARKED, record.parked_reason
        elif placed in changed:
            file.fate, file.reason = Fate.CHECKSUM_MISMATCH, changed[placed]


def _judge_unplaced(sources: ReportSources, found: _Day, now: datetime) -> None:
    unplaced = [fid for fid, file in found.files.items() if file.fate is Fate.UNJUDGED]
    if not unplaced:
        return
    owners = sources.ledger.owners(unplaced)
    missing_records = sorted(set(owners.values()) - set(found.records))
    found.records.update(sources.ledger.get_windows(missing_records))
    for owner in sorted(set(owners.values())):
        record = found.records.get(owner)
        if record is not None and record.state is WindowState.DELIVERED and record.parts:
            # A window named outside the hours listed (staged long after its files landed).
            _read_manifest(sources, found, window_manifest_beside(record.parts[0].minio_key, owner))
    exclusions: dict[str, dict[str, str]] = {}
    recent_ms = int((now - PENDING_GRACE).timestamp() * 1000)
    for fid in unplaced:
        file = found.files[fid]
        if file.fate is not Fate.UNJUDGED:
            continue  # placed by a manifest read just now
        owned_by = owners.get(fid)
        if owned_by is not None:
            _owned(sources, found, file=file, fid=fid, owner=owned_by, exclusions=exclusions)
            continue
        reason = _reason(sources, fid)
        if reason is not None:
            file.reason = reason
            file.fate = {"too-large": Fate.TOO_LARGE, "version-gone": Fate.VERSION_GONE}.get(
                reason, Fate.QUARANTINED
            )
        elif not file.forwarded:
            file.fate, file.reason = Fate.PENDING, "not forwarded yet"
        elif file.landed_ms >= recent_ms:
            file.fate, file.reason = Fate.PENDING, "forwarded; in Firehose's buffers"
        else:
            file.fate, file.reason = Fate.MISSING, "no claim, archive or reason file"


def _owned(
    sources: ReportSources,
    found: _Day,
    *,
    file: _File,
    fid: str,
    owner: str,
    exclusions: dict[str, dict[str, str]],
) -> None:
    record = found.records.get(owner)
    if record is None or record.state is WindowState.CLAIMED:
        file.fate, file.reason = Fate.PENDING, "claimed; window not yet delivered"
        return
    if record.state is WindowState.PARKED:
        file.fate, file.reason = Fate.PARKED, record.parked_reason
        return
    if owner not in exclusions:
        full = sources.ledger.get_window(owner) if record.exclusion_count else None
        exclusions[owner] = {x.file_id: x.reason for x in (full.exclusions if full else ())}
    if fid in exclusions[owner]:
        file.fate, file.reason = Fate.EXCLUDED, exclusions[owner][fid]
    else:
        file.fate, file.reason = (
            Fate.MISSING,
            f"owner window is {record.state}; no manifest lists it",
        )


def _reason(sources: ReportSources, fid: str) -> str | None:
    """The reason of the file's reason file in the staging bucket; None when it has none."""
    try:
        body = sources.staging.get_object(Bucket=sources.staging_bucket, Key=reason_key(fid))
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in MISSING_CODES:
            return None
        raise
    try:
        document = json.loads(body["Body"].read())
    except ValueError:
        return "unknown"
    return str(document.get("reason", "unknown")) if isinstance(document, dict) else "unknown"


# -- the document ---------------------------------------------------------------------------


def _document(
    sources: ReportSources, settings: ReportSettings, found: _Day, now: datetime
) -> dict[str, Any]:
    end = found.start + DAY
    complete = now >= end
    settled = now >= end + SETTLE
    fates = Counter(file.fate for file in found.files.values())
    files = _files_section(found, fates)
    windows, histogram, per_hour = _windows_section(found)
    latency = _latency_section(settings, histogram, per_hour)
    document: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "deployment": settings.deployment,
        "day": found.start.date().isoformat(),
        "period": {
            "start": _iso(found.start),
            "end": _iso(found.until),
            "complete": complete,
            "settled": settled,
        },
        "verdict": {},
        "files": files,
        "bytes": _bytes_section(found, windows),
        "windows": windows,
        "latency": latency,
        "producers": _producers_section(settings, found),
        "operations": _operations_section(sources, found, now, complete),
        "hours": _hours_section(found, per_hour),
    }
    document["verdict"] = verdict(document)
    return document


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _by_reason(found: _Day, fate: Fate) -> dict[str, int]:
    counts = Counter(file.reason or "unknown" for file in found.files.values() if file.fate is fate)
    return dict(sorted(counts.items()))


def _files_section(found: _Day, fates: Counter[Fate]) -> dict[str, Any]:
    landed = len(found.files)
    by_api = found.by_api
    return {
        "landed": landed,
        "landed_by_s3": landed - by_api,
        "landed_by_api": by_api,
        "forwarded": sum(1 for file in found.files.values() if file.forwarded),
        "delivered": fates[Fate.DELIVERED] + fates[Fate.REDELIVERED],
        "redelivered": fates[Fate.REDELIVERED],
        "excluded": {"total": fates[Fate.EXCLUDED], "by_reason": _by_reason(found, Fate.EXCLUDED)},
        "quarantined": {
            "total": fates[Fate.QUARANTINED],
            "by_reason": _by_reason(found, Fate.QUARANTINED),
        },
        "too_large": fates[Fate.TOO_LARGE],
        "versions_gone": fates[Fate.VERSION_GONE],
        "pending": fates[Fate.PENDING],
        "parked": fates[Fate.PARKED],
        "missing": fates[Fate.MISSING],
        "delivered_twice": fates[Fate.DELIVERED_TWICE],
        "checksum_mismatch": fates[Fate.CHECKSUM_MISMATCH],
        "unreadable_manifests": sorted(found.unreadable_manifests),
    }


def _windows_section(
    found: _Day,
) -> tuple[dict[str, Any], LatencyHistogram, dict[int, LatencyHistogram]]:
    states: Counter[str] = Counter()
    histogram = LatencyHistogram()
    per_hour: dict[int, LatencyHistogram] = defaultdict(LatencyHistogram)
    windows_per_hour: Counter[int] = Counter()
    parts = archive_bytes = file_bytes = compared_archive_bytes = files_in = 0
    redriven = redrives = 0
    for window in found.staged:
        windows_per_hour[window.hour] += 1
        record = found.records.get(window.window_id)
        if record is None:
            states["unrecorded"] += 1
            continue
        states[record.state.value] += 1
        redriven += record.redrive_count > 0
        redrives += record.redrive_count
        if record.state is not WindowState.DELIVERED:
            continue
        histogram.add(record.latency)
        per_hour[window.hour].add(record.latency)
        parts += len(record.parts)
        size = sum(part.size for part in record.parts)
        archive_bytes += size
        files_in += record.file_count
        if window.window_id in found.window_file_bytes:
            file_bytes += found.window_file_bytes[window.window_id]
            compared_archive_bytes += size
    section = {
        "staged": len(found.staged),
        "delivered": states[WindowState.DELIVERED.value],
        "empty": states[WindowState.EMPTY.value],
        "parked": states[WindowState.PARKED.value],
        "waiting": states[WindowState.CLAIMED.value] + states["unrecorded"],
        "archive_parts": parts,
        "archive_bytes": archive_bytes,
        "files_archived": files_in,
        "archived_file_bytes": file_bytes,
        "compression_ratio": (
            round(file_bytes / compared_archive_bytes, 2) if compared_archive_bytes else None
        ),
        "windows_redriven": redriven,
        "redrives": redrives,
        "per_hour": dict(windows_per_hour),
    }
    return section, histogram, per_hour


def _seconds(ms: int | None) -> float | None:
    return None if ms is None else round(ms / 1000, 1)


def _share_within(histogram: LatencyHistogram, limit_seconds: int) -> float | None:
    if not histogram.files:
        return None
    within = sum(n for bound, n in histogram.counts.items() if bound <= limit_seconds * 1000)
    return within / histogram.files


def _latency_section(
    settings: ReportSettings, histogram: LatencyHistogram, per_hour: Mapping[int, LatencyHistogram]
) -> dict[str, Any]:
    p95 = _seconds(histogram.percentile(0.95)) if histogram.files else None
    p999 = _seconds(histogram.percentile(0.999)) if histogram.files else None
    slowest: dict[str, Any] | None = None
    for hour in sorted(per_hour):
        hour_p95 = _seconds(per_hour[hour].percentile(0.95)) if per_hour[hour].files else None
        if hour_p95 is not None and (slowest is None or hour_p95 > slowest["p95_seconds"]):
            slowest = {
                "hour": f"{hour:02d}",
                "p95_seconds": hour_p95,
                "files": per_hour[hour].files,
            }
    return {
        "files": histogram.files,
        "p50_seconds": _seconds(histogram.percentile(0.5)) if histogram.files else None,
        "p95_seconds": p95,
        "p999_seconds": p999,
        "max_seconds": _seconds(max(histogram.counts)) if histogram.files else None,
        "objective": {
            "p95_seconds": settings.slo_p95_seconds,
            "p999_seconds": settings.slo_p999_seconds,
            "p95_met": None if p95 is None else p95 <= settings.slo_p95_seconds,
            "p999_met": None if p999 is None else p999 <= settings.slo_p999_seconds,
            "share_within_p95": _share_within(histogram, settings.slo_p95_seconds),
            "share_within_p999": _share_within(histogram, settings.slo_p999_seconds),
        },
        "slowest_hour": slowest,
    }


def _bytes_section(found: _Day, windows: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "landed": sum(file.size for file in found.files.values()),
        "delivered": sum(file.size for file in found.files.values() if file.fate in ARRIVED),
        "archives": windows["archive_bytes"],
        "compression_ratio": windows["compression_ratio"],
    }


def _producers_section(settings: ReportSettings, found: _Day) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    for file in found.files.values():
        row = rows.setdefault(
            file.producer,
            {"producer": file.producer, "files": 0, "bytes": 0, "rejected": 0, "not_delivered": 0},
        )
        row["files"] += 1
        row["bytes"] += file.size
        row["rejected"] += file.fate in HELD_BACK
        row["not_delivered"] += file.fate not in ARRIVED and file.fate not in HELD_BACK
    ranked = sorted(rows.values(), key=lambda row: (-row["files"], row["producer"]))
    top, rest = ranked[: settings.top_producers], ranked[settings.top_producers :]
    others = {
        "producers": len(rest),
        "files": sum(row["files"] for row in rest),
        "bytes": sum(row["bytes"] for row in rest),
        "rejected": sum(row["rejected"] for row in rest),
        "not_delivered": sum(row["not_delivered"] for row in rest),
    }
    return {"count": len(rows), "top": top, "others": others}


def _hours_section(found: _Day, per_hour: Mapping[int, LatencyHistogram]) -> list[dict[str, Any]]:
    files: Counter[int] = Counter()
    sizes: Counter[int] = Counter()
    for minute, count in found.minutes.items():
        files[minute // 60] += count
        sizes[minute // 60] += found.minute_bytes[minute]
    hours = []
    for hour in range(len(_hours(found.start, found.until))):
        histogram = per_hour.get(hour)
        hours.append(
            {
                "hour": f"{hour:02d}",
                "files": files[hour],
                "bytes": sizes[hour],
                "latency_p95_seconds": (
                    _seconds(histogram.percentile(0.95)) if histogram and histogram.files else None
                ),
            }
        )
    return hours


def _busiest_minute(found: _Day) -> dict[str, Any] | None:
    minutes = [(count, minute) for minute, count in found.minutes.items()]
    if not minutes:
        return None
    count, minute = max(minutes, key=lambda pair: (pair[0], -pair[1]))
    at = found.start + timedelta(minutes=minute)
    return {"minute": f"{at:%H:%M}", "files": count, "bytes": found.minute_bytes[minute]}


def _firehose_duplicates(found: _Day) -> dict[str, Any]:
    """Copies of files the day's settled windows did not deliver (another window owns them, or
    the window repeats them): each window's ledger record keeps its count when it settles."""
    settled = [
        record
        for window in found.staged
        if (record := found.records.get(window.window_id)) is not None
        and record.state in {WindowState.DELIVERED, WindowState.EMPTY}
    ]
    unrecorded = sum(1 for record in settled if record.duplicate_files is None)
    if unrecorded:
        return unknown(
            f"{unrecorded} of the day's {len(settled)} settled windows were settled by a delivery "
            "that did not record its duplicates"
        )
    return {"value": sum(record.duplicate_files or 0 for record in settled)}


def _operations_section(
    sources: ReportSources, found: _Day, now: datetime, complete: bool
) -> dict[str, Any]:
    end = found.start + DAY
    log = sources.redrives.day(found.start.date())
    return {
        "alarms_fired": sources.operations.alarms_fired(found.start, found.until),
        "dlq_depths": _dlq_depths(sources, now, end, complete),
        "redrives": _redrives_figure(log),
        "minio_unavailable_minutes": _minio_figure(log),
        "requeued_records": _requeued(sources, found),
        "busiest_minute": _busiest_minute(found),
        "firehose_quota_headroom": sources.operations.firehose_headroom(found.start, found.until),
        "duplicates_absorbed": {
            "sqs_redeliveries": sources.operations.duplicate_events(found.start, found.until),
            "firehose_duplicates": _firehose_duplicates(found),
            "empty_windows": sum(
                1
                for window in found.staged
                if (record := found.records.get(window.window_id)) is not None
                and record.state is WindowState.EMPTY
            ),
        },
    }


def _dlq_depths(
    sources: ReportSources, now: datetime, end: datetime, complete: bool
) -> dict[str, Any]:
    """At the day's end (CloudWatch's queue metrics); for the day so far, SQS's depth now."""
    if not complete:
        depths = {name: _depth(sources.sqs, url) for name, url in sources.dlqs.items()}
        return {"at": _iso(now), "depths": figure(depths)}
    return {"at": _iso(end), "depths": sources.operations.dlq_depths_at(end)}


def _depth(sqs: SQSClient, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes.get("ApproximateNumberOfMessages", 0)) + int(
        attributes.get("ApproximateNumberOfMessagesNotVisible", 0)
    )


def _redrives_figure(day: RedriveDay | None) -> dict[str, Any]:
    if day is None:
        return unknown(
            "redrive logged nothing that day (it logs every run, scheduled or `sluice redrive`: "
            "was it running?)"
        )
    return figure(
        {
            "from_dlq": day.dlq_redriven,
            "of_which_environment": day.environment_redriven,
            "reinvoked": day.reinvoked,
            "parked": day.parked,
        }
    )


def _minio_figure(day: RedriveDay | None) -> dict[str, Any]:
    if day is None or day.probes == 0:
        return unknown(
            "redrive logged no MinIO probe that day (it probes at the start of every run: "
            "was it running?)"
        )
    result = figure(round(day.unavailable_ms / 60_000, 1))
    result.update(probes=day.probes, failed_probes=day.failed)
    return result


def _requeued(sources: ReportSources, found: _Day) -> dict[str, Any]:
    """Records of failed processor invocations (Firehose's errors/processing-failed/ of the
    day) that requeue puts back: every record not failed by the processor itself."""
    prefix = f"{PROCESSING_FAILED_PREFIX}dt={found.start:%Y-%m-%d}/"
    paginator = sources.staging.get_paginator("list_objects_v2")
    objects = requeued = 0
    for page in paginator.paginate(Bucket=sources.staging_bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            objects += 1
            body = sources.staging.get_object(Bucket=sources.staging_bucket, Key=obj["Key"])
            requeued += _requeueable(body["Body"].read())
    result = figure(requeued)
    result["error_objects"] = objects
    return result


def _requeueable(body: bytes) -> int:
    if body[:2] == b"\x1f\x8b":  # Firehose compresses error output like the data it delivers
        body = gzip.decompress(body)
    count = 0
    for line in body.splitlines():
        if not line.strip():
            continue
        try:
            code = json.loads(line).get("errorCode", "")
        except (ValueError, AttributeError):
            code = ""  # unreadable: requeue holds it back with a reason file of its own
        count += code != RECORD_FAILED_CODE
    return count


# -- the verdict ----------------------------------------------------------------------------


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def verdict(document: Mapping[str, Any]) -> dict[str, Any]:
    """The first line: every file delivered or accounted for, or what is not; then what else
    needs a look. `status` is ok, attention (every file accounted for, but something is off)
    or not_ok (files not delivered and not accounted for)."""
    files = document["files"]
    period = document["period"]
    day = document["day"]
    landed = files["landed"]
    held = (
        files["excluded"]["total"]
        + files["quarantined"]["total"]
        + files["too_large"]
        + files["versions_gone"]
    )
    wrong = {
        "missing": files["missing"],
        "delivered twice": files["delivered_twice"],
        "checksum mismatch": files["checksum_mismatch"],
        "parked": files["parked"],
    }
    if period["settled"]:
        wrong["still pending"] = files["pending"]
    problems = [f"{count:,} {name}" for name, count in wrong.items() if count]
    if files["unreadable_manifests"]:
        problems.append(_plural(len(files["unreadable_manifests"]), "unreadable manifest"))
    when = day if period["complete"] else f"{day} up to {period['end'][11:16]} UTC"
    if problems:
        not_ok = sum(wrong.values())
        sentence = (
            f"NOT OK: {not_ok:,} of {_plural(landed, 'file')} landed on {when} "
            f"{'is' if not_ok == 1 else 'are'} neither delivered nor accounted for "
            f"({', '.join(problems)})."
        )
        status = "not_ok"
    else:
        parts = [f"delivered ({files['delivered']:,})"]
        if held:
            parts.append(f"held back with a reason ({held:,})")
        if files["pending"]:
            parts.append(f"on their way ({files['pending']:,})")
        all_ = "the 1 file" if landed == 1 else f"all {landed:,} files"
        sentence = (
            f"OK: {all_} landed on {when} {'is' if landed == 1 else 'are'} "
            + (" or ".join(parts) if len(parts) < 3 else f"{parts[0]}, {parts[1]} or {parts[2]}")
            + "."
        )
        if landed == 0:
            sentence = f"OK: no file landed on {when}."
        status = "ok"
    attention = attention_items(document)
    if status == "ok" and attention:
        status = "attention"
        sentence = "ATTENTION" + sentence[2:-1] + f"; but {attention[0]}."
    subject = _subject(document, status, landed, held, sum(wrong.values()))
    return {"status": status, "sentence": sentence, "subject": subject, "attention": attention}


def attention_items(document: Mapping[str, Any]) -> list[str]:
    """What needs a look although every file is accounted for."""
    items = []
    objective = document["latency"]["objective"]
    latency = document["latency"]
    if objective["p95_met"] is False:
        items.append(
            f"latency p95 {latency['p95_seconds']:g} s is over its {objective['p95_seconds']} s "
            "objective"
        )
    if objective["p999_met"] is False:
        items.append(
            f"latency p99.9 {latency['p999_seconds']:g} s is over its "
            f"{objective['p999_seconds']} s objective"
        )
    operations = document["operations"]
    depths = operations["dlq_depths"]["depths"]["value"]
    if depths:
        full = {name: n for name, n in depths.items() if n}
        if full:
            items.append(
                "DLQs hold messages ("
                + ", ".join(f"{name} {n:,}" for name, n in sorted(full.items()))
                + ")"
            )
    minutes = operations["minio_unavailable_minutes"]["value"]
    if minutes:
        items.append(f"MinIO was unavailable for about {minutes:g} minutes")
    alarms = operations["alarms_fired"]["value"]
    if alarms:
        items.append(_plural(sum(a["times"] for a in alarms), "alarm") + " fired")
    if document["windows"]["parked"]:
        items.append(_plural(document["windows"]["parked"], "window") + " parked")
    return items


def _subject(document: Mapping[str, Any], status: str, landed: int, held: int, wrong: int) -> str:
    """SNS's subject: at most 100 ASCII characters."""
    deployment = str(document["deployment"])
    named = deployment if "sluice" in deployment.lower() else f"Sluice {deployment}"
    head = f"{named} {document['day']}"
    if status == "not_ok":
        tail = f"NOT OK, {wrong:,} of {landed:,} files not delivered or accounted for"
    elif status == "attention":
        tail = f"ATTENTION, {landed:,} files delivered or accounted for"
    else:
        tail = f"OK, {landed:,} files delivered or accounted for"
    if not document["period"]["complete"]:
        tail += " (so far)"
    subject = f"{head}: {tail}"
    return subject.encode("ascii", "replace").decode()[:100]


# -- used by the handler and the CLI --------------------------------------------------------


def report_day(moment: datetime, days_back: int) -> date:
    """The day a run at `moment` reports: `days_back` UTC days before its own."""
    return (moment.astimezone(UTC) - timedelta(days=days_back)).date()


def fates(document: Mapping[str, Any]) -> dict[str, int]:
    """The files' fates that add up to the files landed (a check for tests and readers)."""
    files = document["files"]
    return {
        "delivered": files["delivered"],
        "excluded": files["excluded"]["total"],
        "quarantined": files["quarantined"]["total"],
        "too_large": files["too_large"],
        "versions_gone": files["versions_gone"],
        "pending": files["pending"],
        "parked": files["parked"],
        "missing": files["missing"],
        "delivered_twice": files["delivered_twice"],
        "checksum_mismatch": files["checksum_mismatch"],
    }
