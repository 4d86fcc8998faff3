"""Reconciling: every version that landed in a time range, and where it is now (DESIGN §4a).

What landed is read from the forwarder's index of landed files by hour (`IngestIndex`: a Query
per hour, whose cost is that hour's files, whatever the history), or, when asked, from the
landing bucket itself (ListObjectVersions of every version: the only source that sees a file
whose S3 event was lost, and one whose cost grows with the bucket's history); what arrived, from
the window manifests (delivery.commit) beside the archives in MinIO; what is on its way, from
delivery's ledger; what is held back, from the quarantine reason files in the staging bucket.
Each landed version gets exactly one `FileStatus`. The operator's `sluice reconcile` prints the
report; the scheduled redrive publishes its `missing` count as the `FilesMissing` metric — hence
plain adapters here, nothing of the local stack or the CLI.

Windows are named by Firehose's arrival time, later than the landing time, so manifests are read
from the hour of `since` to `until + slack`. A window that owns a file but was named outside that
range is still found: its manifest is read through the ledger's parts.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError
from minio import Minio
from minio.error import S3Error

from delivery.layout import MANIFEST_SUFFIX, placements, window_manifest_beside
from delivery.ledger import Ledger, PartRecord, WindowRecord, WindowState
from delivery.minio_access import MISSING_CODES
from transform.envelope import file_id as compute_file_id
from transform.idempotency import LANDED_HOUR, LANDED_INDEX, landed_hour
from transform.quarantine import REASONS_PREFIX, reason_key

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client

logger = Logger(child=True)

REPLAY_MARK: Final = "#r"
DEFAULT_SLACK: Final = timedelta(hours=2)
DEFAULT_GRACE: Final = timedelta(minutes=5)
READ_CHUNK_BYTES: Final = 1024 * 1024
TOO_LARGE: Final = "too-large"


class FileStatus(StrEnum):
    DELIVERED = "delivered"
    REDELIVERED = "redelivered"
    """Delivered, and delivered again under a forced replay's id: intended, not a duplicate."""
    DELIVERED_TWICE = "delivered-twice"
    CHECKSUM_MISMATCH = "checksum-mismatch"
    QUARANTINED = "quarantined"
    EXCLUDED = "excluded"
    TOO_LARGE = "too-large"
    PENDING = "pending"
    PARKED = "parked"
    MISSING = "missing"


ARRIVED: Final = frozenset({FileStatus.DELIVERED, FileStatus.REDELIVERED})
VIOLATIONS: Final = frozenset(
    {FileStatus.MISSING, FileStatus.DELIVERED_TWICE, FileStatus.CHECKSUM_MISMATCH}
)


class ReconcileError(RuntimeError):
    """A source could not be read; the message names the bucket and key."""


class TooManyVersions(ReconcileError):
    """The landing bucket holds more versions than the caller allowed listing."""


class IngestIndex(NamedTuple):
    """The files the forwarder recorded as landed, read an hour at a time from the idempotency
    table's index `landed-hour` (transform.idempotency). Replays are not in it."""

    dynamodb: DynamoDBClient
    table: str

    def landed(
        self, bucket: str, since: datetime, until: datetime, prefix: str = ""
    ) -> list[LandedVersion]:
        """Versions whose S3 event time is in [since, until), under `prefix`."""
        since_ms, until_ms = int(since.timestamp() * 1000), int(until.timestamp() * 1000)
        found = []
        for hour in _hour_partitions(since, until):
            for item in self.hour_items(hour):
                landed_ms = int(item["landed_at_ms"]["N"])
                key = item["object_key"]["S"]
                if not since_ms <= landed_ms < until_ms or not key.startswith(prefix):
                    continue
                version_id = item["version_id"]["S"]
                found.append(
                    LandedVersion(
                        key=key,
                        version_id=version_id,
                        size=int(item["size"]["N"]),
                        last_modified=datetime.fromtimestamp(landed_ms / 1000, UTC),
                        etag=item.get("etag", {}).get("S", ""),
                        file_id=compute_file_id(bucket, key, version_id),
                    )
                )
        return found

    def hour_items(self, hour: str) -> Iterator[dict[str, Any]]:
        """The raw index items of one partition (`YYYY-MM-DDTHH`), page by page."""
        paginator = self.dynamodb.get_paginator("query")
        pages = paginator.paginate(
            TableName=self.table,
            IndexName=LANDED_INDEX,
            KeyConditionExpression="#hour = :hour",
            ExpressionAttributeNames={"#hour": LANDED_HOUR},
            ExpressionAttributeValues={":hour": {"S": hour}},
        )
        for page in pages:
            yield from page.get("Items", [])


class ReconcileSources(NamedTuple):
    """Where each kind of evidence is read from (the same adapters in AWS and locally)."""

    landing: S3Client
    landing_bucket: str
    staging: S3Client
    staging_bucket: str
    ledger: Ledger
    minio: Minio
    archive_bucket: str
    archive_prefix: str
    ingest: IngestIndex | None = None
    """Where what landed is read from; None: the landing bucket's listing of every version."""


class LandedVersion(NamedTuple):
    key: str
    version_id: str
    size: int
    last_modified: datetime
    etag: str
    file_id: str


class Placement(NamedTuple):
    """A file as one archive part's manifest lists it."""

    file_id: str
    window_id: str
    archive: str
    """The archive part's key in MinIO."""
    member_name: str
    size: int
    sha256: str
    check: str


class ManifestExclusion(NamedTuple):
    window_id: str
    archive: str
    reason: str
    detail: str


@dataclass
class ManifestIndex:
    """Every file and exclusion the window manifests read so far name."""

    placements: dict[str, list[Placement]] = field(default_factory=lambda: defaultdict(list))
    replays: dict[tuple[str, str], list[Placement]] = field(
        default_factory=lambda: defaultdict(list)
    )
    """(key, version_id) -> placements under a forced replay's id (`<file_id>#r<replay_id>`)."""
    exclusions: dict[str, ManifestExclusion] = field(default_factory=dict)
    read: set[str] = field(default_factory=set)
    """Window manifest keys already read."""
    unreadable: list[str] = field(default_factory=list)

    def add(self, manifest_key: str, manifest: Mapping[str, Any]) -> None:
        self.read.add(manifest_key)
        window_id = str(manifest["window_id"])
        for archive, entry in placements(manifest):
            placement = Placement(
                file_id=entry["file_id"],
                window_id=window_id,
                archive=archive,
                member_name=entry["member_name"],
                size=int(entry["size"]),
                sha256=entry["sha256"],
                check=entry.get("check", ""),
            )
            self.placements[placement.file_id].append(placement)
            if REPLAY_MARK in placement.file_id:
                self.replays[(entry["key"], entry["version_id"])].append(placement)
        for entry in manifest.get("excluded", []):
            self.exclusions[entry["file_id"]] = ManifestExclusion(
                window_id=window_id,
                archive=manifest_key,
                reason=entry["reason"],
                detail=entry.get("detail", ""),
            )


class FileReport(NamedTuple):
    key: str
    version_id: str
    file_id: str
    size: int
    landed_at: datetime
    status: FileStatus
    window_id: str | None = None
    archive: str | None = None
    member_name: str | None = None
    reason: str | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "version_id": self.version_id,
            "file_id": self.file_id,
            "size": self.size,
            "landed_at": self.landed_at.isoformat(timespec="seconds"),
            "status": self.status.value,
            "window_id": self.window_id,
            "archive": self.archive,
            "member_name": self.member_name,
            "reason": self.reason,
            "detail": self.detail,
        }


class ReconcileReport(NamedTuple):
    since: datetime
    until: datetime
    files: tuple[FileReport, ...]
    """Ordered by key, landing time, version id."""
    unreadable_manifests: tuple[str, ...] = ()

    def counts(self) -> dict[FileStatus, int]:
        """Every status, zeros included, in FileStatus order."""
        counts = dict.fromkeys(FileStatus, 0)
        for file in self.files:
            counts[file.status] += 1
        return counts

    @property
    def problems(self) -> list[FileReport]:
        return [file for file in self.files if file.status not in ARRIVED]

    @property
    def missing(self) -> int:
        return sum(1 for file in self.files if file.status is FileStatus.MISSING)

    @property
    def ok(self) -> bool:
        return not self.unreadable_manifests and not any(
            file.status in VIOLATIONS for file in self.files
        )


def reconcile(
    sources: ReconcileSources,
    since: datetime,
    until: datetime,
    *,
    prefix: str = "",
    verify_bytes: bool = False,
    now: datetime | None = None,
    slack: timedelta = DEFAULT_SLACK,
    grace: timedelta = DEFAULT_GRACE,
    max_listed: int | None = None,
) -> ReconcileReport:
    """Each version that landed in [since, until) (naive times are UTC), with its status.

    From the ingest index when the sources have one. Else S3, which cannot list by time: every
    version under `prefix` is listed and filtered; `max_listed` bounds that (TooManyVersions),
    for callers with a deadline.
    """
    since, until = _utc(since), _utc(until)
    now = _utc(now) if now is not None else datetime.now(UTC)
    if sources.ingest is not None:
        landed = sources.ingest.landed(sources.landing_bucket, since, until, prefix)
    else:
        landed = list_landed(
            sources.landing, sources.landing_bucket, since, until, prefix, max_listed=max_listed
        )
    index = ManifestIndex()
    for manifest_key in list_window_manifests(sources, since, until + slack):
        _read_into(sources, manifest_key, index)
    quarantined = _reason_files(sources)
    unplaced = [v.file_id for v in landed if not index.placements[v.file_id]]
    owners = sources.ledger.owners(unplaced) if unplaced else {}
    windows = _Windows(sources.ledger)
    for owner in sorted(set(owners.values())):
        record = windows.get(owner)
        if record is not None and record.state is WindowState.DELIVERED:
            for part in record.parts[:1]:  # a window named outside the hours listed
                _read_into(sources, window_manifest_beside(part.minio_key, owner), index)
    judge = _Judge(
        sources, index, windows, quarantined, verify_bytes=verify_bytes, recent_after=now - grace
    )
    reports = [judge.status(version, owners.get(version.file_id)) for version in landed]
    reports.sort(key=lambda r: (r.key, r.landed_at, r.version_id))
    return ReconcileReport(since, until, tuple(reports), tuple(index.unreadable))


def list_landed(  # where and which, plus the bound
    s3: S3Client,
    bucket: str,
    since: datetime,
    until: datetime,
    prefix: str = "",
    *,
    max_listed: int | None = None,
) -> list[LandedVersion]:
    """Versions (not delete markers) last modified in [since, until)."""
    since, until = _utc(since), _utc(until)
    paginator = s3.get_paginator("list_object_versions")
    found = []
    listed = 0
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        versions = page.get("Versions", [])
        listed += len(versions)
        if max_listed is not None and listed > max_listed:
            raise TooManyVersions(
                f"s3://{bucket}/{prefix} holds more than {max_listed} versions: too many to "
                "list within this run"
            )
        for version in versions:
            modified = version["LastModified"]
            if not since <= modified < until:
                continue
            version_id = version.get("VersionId") or "null"
            found.append(
                LandedVersion(
                    key=version["Key"],
                    version_id=version_id,
                    size=version["Size"],
                    last_modified=modified,
                    etag=version.get("ETag", "").strip('"'),
                    file_id=compute_file_id(bucket, version["Key"], version_id),
                )
            )
    return found


def _hour_partitions(since: datetime, until: datetime) -> list[str]:
    """The ingest index's partitions (`YYYY-MM-DDTHH`) that [since, until) touches."""
    hour = _utc(since).replace(minute=0, second=0, microsecond=0)
    hours = []
    while hour < _utc(until):
        hours.append(landed_hour(hour.timestamp()))
        hour += timedelta(hours=1)
    return hours


def partition_prefixes(archive_prefix: str, start: datetime, end: datetime) -> list[str]:
    """`<archive_prefix>/dt=…/hour=…/` for every hour from start's to end's, inclusive."""
    hour = _utc(start).replace(minute=0, second=0, microsecond=0)
    prefixes = []
    while hour <= _utc(end):
        prefixes.append(f"{archive_prefix}/dt={hour:%Y-%m-%d}/hour={hour:%H}/")
        hour += timedelta(hours=1)
    return prefixes


def list_window_manifests(
    sources: ReconcileSources, start: datetime, end: datetime
) -> Iterator[str]:
    for partition in partition_prefixes(sources.archive_prefix, start, end):
        try:
            names = [
                str(obj.object_name)
                for obj in sources.minio.list_objects(
                    sources.archive_bucket, prefix=partition, recursive=True
                )
            ]
        except S3Error as err:
            raise ReconcileError(
                f"cannot list manifests in {sources.archive_bucket}/{partition}: {err.code}"
            ) from err
        yield from (name for name in names if name.endswith(MANIFEST_SUFFIX))


def read_manifest(minio: Minio, bucket: str, key: str) -> dict[str, Any]:
    """A window manifest; ReconcileError names the bucket and key if absent or not JSON."""
    try:
        response = minio.get_object(bucket, key)
    except S3Error as err:
        raise ReconcileError(f"manifest {bucket}/{key}: {err.code}") from err
    try:
        document = json.loads(response.read())
    except ValueError as err:
        raise ReconcileError(f"manifest {bucket}/{key} is not JSON: {err}") from err
    finally:
        response.close()
        response.release_conn()
    if not isinstance(document, dict) or "window_id" not in document:
        raise ReconcileError(f"manifest {bucket}/{key} is not a Sluice manifest (no window_id)")
    return document


def landing_sha256(
    s3: S3Client, bucket: str, key: str, version_id: str, chunk_bytes: int = READ_CHUNK_BYTES
) -> str:
    """sha256 of one landing version, streamed a chunk at a time (bounded memory)."""
    body = s3.get_object(Bucket=bucket, Key=key, VersionId=version_id)["Body"]
    digest = hashlib.sha256()
    try:
        for chunk in body.iter_chunks(chunk_bytes):
            digest.update(chunk)
    finally:
        body.close()
    return digest.hexdigest()


def _read_into(sources: ReconcileSources, manifest_key: str, index: ManifestIndex) -> None:
    if manifest_key in index.read:
        return
    try:
        manifest = read_manifest(sources.minio, sources.archive_bucket, manifest_key)
    except ReconcileError as err:
        # One bad manifest must not hide the rest: reported, and the report is not ok.
        logger.warning("manifest unreadable", key=manifest_key, error=str(err))
        index.read.add(manifest_key)
        index.unreadable.append(manifest_key)
        return
    index.add(manifest_key, manifest)


def _reason_files(sources: ReconcileSources) -> set[str]:
    """file_ids with a quarantine reason file: one listing, not one request per file."""
    paginator = sources.staging.get_paginator("list_objects_v2")
    found = set()
    for page in paginator.paginate(Bucket=sources.staging_bucket, Prefix=REASONS_PREFIX):
        for obj in page.get("Contents", []):
            name = obj["Key"].removeprefix(REASONS_PREFIX)
            if name.endswith(".json"):
                found.add(name.removesuffix(".json"))
    return found


class _Windows:
    """Window records read once each."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._records: dict[str, WindowRecord | None] = {}

    def get(self, window_id: str) -> WindowRecord | None:
        if window_id not in self._records:
            self._records[window_id] = self._ledger.get_window(window_id)
        return self._records[window_id]


class _Judge:
    """Decides one landed version's status from the evidence gathered."""

    def __init__(
        self,
        sources: ReconcileSources,
        index: ManifestIndex,
        windows: _Windows,
        quarantined: set[str],
        *,
        verify_bytes: bool,
        recent_after: datetime,
    ) -> None:
        self._sources = sources
        self._index = index
        self._windows = windows
        self._quarantined = quarantined
        self._verify_bytes = verify_bytes
        self._recent_after = recent_after
        self._part_intact: dict[str, str | None] = {}

    def status(self, version: LandedVersion, owner: str | None) -> FileReport:
        placements = self._index.placements[version.file_id]
        replays = self._index.replays[(version.key, version.version_id)]
        archives = sorted({p.archive for p in placements})
        if len(archives) > 1:
            windows = sorted({p.window_id for p in placements})
            return _report(
                version,
                FileStatus.DELIVERED_TWICE,
                window_id=windows[0],
                archive=archives[0],
                detail="in " + ", ".join(archives),
            )
        if placements or replays:
            return self._arrived(version, (placements or replays)[0], bool(placements and replays))
        return self._not_arrived(version, owner)

    def _arrived(self, version: LandedVersion, placement: Placement, replayed: bool) -> FileReport:
        record = self._windows.get(placement.window_id)
        where = {
            "window_id": placement.window_id,
            "archive": placement.archive,
            "member_name": placement.member_name,
        }
        if record is not None and record.state is WindowState.CLAIMED:
            return _report(
                version, FileStatus.PENDING, **where, detail="archived; window not yet DELIVERED"
            )
        if record is not None and record.state is WindowState.PARKED:
            return _report(version, FileStatus.PARKED, **where, reason=record.parked_reason)
        mismatch = self._mismatch(version, placement, record)
        if mismatch:
            return _report(version, FileStatus.CHECKSUM_MISMATCH, **where, detail=mismatch)
        if placement.file_id != version.file_id:
            return _report(
                version, FileStatus.REDELIVERED, **where, detail="delivered by a forced replay only"
            )
        if replayed:
            again = self._index.replays[(version.key, version.version_id)]
            detail = "also replayed: " + ", ".join(sorted({p.archive for p in again}))
            return _report(version, FileStatus.REDELIVERED, **where, detail=detail)
        return _report(version, FileStatus.DELIVERED, **where)

    def _mismatch(
        self, version: LandedVersion, placement: Placement, record: WindowRecord | None
    ) -> str | None:
        if placement.size != version.size:
            return f"manifest size {placement.size} != landing size {version.size}"
        if self._verify_bytes:
            actual = landing_sha256(
                self._sources.landing, self._sources.landing_bucket, version.key, version.version_id
            )
            if actual != placement.sha256:
                return f"manifest sha256 {placement.sha256} != landing bytes' sha256 {actual}"
        if record is None:
            return None  # nothing recorded to compare the archive with
        part = next((p for p in record.parts if p.minio_key == placement.archive), None)
        if part is None:
            return f"window {record.window_id} records no part {placement.archive}"
        return self._part_changed(part)

    def _part_changed(self, part: PartRecord) -> str | None:
        """Whether MinIO still has the part as the ledger recorded it: one stat per part."""
        if part.minio_key not in self._part_intact:
            self._part_intact[part.minio_key] = self._stat_part(part)
        return self._part_intact[part.minio_key]

    def _stat_part(self, part: PartRecord) -> str | None:
        try:
            stat = self._sources.minio.stat_object(self._sources.archive_bucket, part.minio_key)
        except S3Error as err:
            if err.code in MISSING_CODES:
                return f"archive {part.minio_key} is missing from MinIO"
            raise
        if stat.size != part.size or stat.etag != part.etag:
            return (
                f"archive {part.minio_key} changed in MinIO: size {stat.size}, etag {stat.etag}; "
                f"ledger recorded size {part.size}, etag {part.etag}"
            )
        return None

    def _not_arrived(self, version: LandedVersion, owner: str | None) -> FileReport:
        excluded = self._index.exclusions.get(version.file_id)
        if excluded is not None:
            return _report(
                version,
                FileStatus.EXCLUDED,
                window_id=excluded.window_id,
                archive=excluded.archive,
                reason=excluded.reason,
                detail=excluded.detail,
            )
        held = self._quarantine(version) if version.file_id in self._quarantined else None
        if held is not None:
            return held
        if owner is not None:
            return self._owned(version, owner)
        if version.last_modified >= self._recent_after:
            return _report(version, FileStatus.PENDING, detail="landed too recently to judge")
        return _report(version, FileStatus.MISSING, detail="no claim, archive or quarantine")

    def _quarantine(self, version: LandedVersion) -> FileReport | None:
        """The reason file's verdict; None if it went away since the listing (released)."""
        key = reason_key(version.file_id)
        try:
            body = self._sources.staging.get_object(Bucket=self._sources.staging_bucket, Key=key)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                return None
            raise
        try:
            document = json.loads(body["Body"].read())
        except ValueError:
            document = {}  # still held back; the reason is unknown, and said so
        reason = str(document.get("reason", "unknown"))
        status = FileStatus.TOO_LARGE if reason == TOO_LARGE else FileStatus.QUARANTINED
        detail = str(document.get("detail", f"{self._sources.staging_bucket}/{key}"))
        return _report(version, status, reason=reason, detail=detail)

    def _owned(self, version: LandedVersion, owner: str) -> FileReport:
        record = self._windows.get(owner)
        if record is None or record.state is WindowState.CLAIMED:
            state = "no record yet" if record is None else "CLAIMED"
            return _report(version, FileStatus.PENDING, window_id=owner, detail=f"window {state}")
        if record.state is WindowState.PARKED:
            return _report(version, FileStatus.PARKED, window_id=owner, reason=record.parked_reason)
        for exclusion in record.exclusions:
            if exclusion.file_id == version.file_id:
                return _report(
                    version,
                    FileStatus.EXCLUDED,
                    window_id=owner,
                    reason=exclusion.reason,
                    detail=exclusion.detail,
                )
        return _report(
            version,
            FileStatus.MISSING,
            window_id=owner,
            detail=f"owner window is {record.state} but no manifest lists the file",
        )


def _report(version: LandedVersion, status: FileStatus, **details: Any) -> FileReport:
    return FileReport(
        key=version.key,
        version_id=version.version_id,
        file_id=version.file_id,
        size=version.size,
        landed_at=version.last_modified,
        status=status,
        **details,
    )


def _utc(moment: datetime) -> datetime:
    """Naive means UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
