"""Delivery's logic: one staged window to MinIO, exactly once, verified (DESIGN §3, §4, §4a).

1. A window already DELIVERED whose archives are intact in MinIO returns at once; EMPTY and
   PARKED windows return too (rule 5; redrive unparks).
2. Spool the window; read each file's metadata; drop repeated file_ids (rule 1).
3. Claim every file — and every bad line, so its exclusion belongs to one window — in the ledger
   (rule 2). A window that owns nothing is EMPTY: no object.
4. Hash the refs it owns (exclusions for refs that cannot be delivered), then persist the
   exclusions with the window's record: a retry builds from the same exclusions (rule 3).
5. Plan parts of at most `archive_max_input_bytes` of file bytes (a larger file alone), build
   each `.tar.gz` into a hashed spool, upload it with its checks, write its sidecar manifest.
6. Only then mark the window DELIVERED (rule 4), tag the staged object delivered, and report
   each file's end-to-end latency.
Nothing here retries a whole window: an error raises, and Lambda's async retries, the delivery
DLQ and redrive take over.
"""

from __future__ import annotations

import io
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError
from minio.error import S3Error

from delivery import archive
from delivery.archive import ArchiveFile, Exclusion
from delivery.hour_markers import Hour
from delivery.latency import LatencyHistogram
from delivery.lease import WindowLease
from delivery.ledger import ExclusionRecord, Ledger, PartRecord, WindowRecord, WindowState
from delivery.minio_access import MinioAccess
from delivery.names import safe_member_names
from delivery.refs import RefDigest, digest_ref, open_ref
from delivery.upload import SpoolWriter, UploadResult, upload_verified
from delivery.window import (
    InlineBodies,
    WindowEntry,
    WindowName,
    parse_window,
    spool_window,
    window_name,
)
from infrastructure.tunables import DeliveryTunables
from transform.payload_schemas import PayloadSchemas
from transform.quarantine import raw_record_id

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import TaggingTypeDef

logger = Logger(child=True)


@dataclass(frozen=True)
class DeliveryDeps:
    s3: S3Client
    ledger: Ledger
    minio: MinioAccess
    schemas: PayloadSchemas
    tunables: DeliveryTunables
    file_extension: str
    spool_dir: Path | None = None
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    corrupt: Callable[[BinaryIO], BinaryIO] | None = None
    """Chaos hook between Sluice's hashing and the minio client: set by the local runtime only."""


@dataclass
class DeliveryReport:
    window_id: str
    outcome: str
    """delivered | already-delivered | empty | parked"""
    parts: list[PartRecord] = field(default_factory=list)
    files_delivered: int = 0
    excluded: list[Exclusion] = field(default_factory=list)
    not_owned: int = 0
    repeated: int = 0
    latencies_ms: list[int] = field(default_factory=list)


def archive_key(prefix: str, name: WindowName, part: int, parts: int) -> str:
    """`<prefix>/dt=…/hour=…/<window-id>[.pNNN].tar.gz`"""
    suffix = f".p{part:03d}" if parts > 1 else ""
    return f"{prefix}/dt={name.dt}/hour={name.hour}/{name.window_id}{suffix}.tar.gz"


def sidecar_key(archive: str) -> str:
    return archive.removesuffix(".tar.gz") + ".manifest.json"


def deliver_window(staging_bucket: str, staged_key: str, deps: DeliveryDeps) -> DeliveryReport:
    """Deliver the window under its lease (delivery.lease); an invocation that finds another
    holding it waits, touching nothing in MinIO, and returns what the holder did."""
    name = window_name(staged_key, deps.file_extension)
    lease = WindowLease(deps.ledger, name.window_id, clock=deps.clock, sleep=deps.sleep)

    def settled() -> bool:
        record = deps.ledger.get_window(name.window_id)
        return record is not None and record.state in FINAL_STATES

    if not lease.acquire(settled):
        existing = deps.ledger.get_window(name.window_id)
        report = None if existing is None else _settled(existing, staging_bucket, staged_key, deps)
        if report is None:  # settled, then found changed in MinIO: a new attempt rebuilds it
            return deliver_window(staging_bucket, staged_key, deps)
        return report
    try:
        return _deliver_leased(staging_bucket, staged_key, name, lease, deps)
    finally:
        lease.release()


FINAL_STATES = frozenset({WindowState.DELIVERED, WindowState.EMPTY, WindowState.PARKED})


def _deliver_leased(
    staging_bucket: str, staged_key: str, name: WindowName, lease: WindowLease, deps: DeliveryDeps
) -> DeliveryReport:
    existing = deps.ledger.get_window(name.window_id)
    if existing is not None:
        settled = _settled(existing, staging_bucket, staged_key, deps)
        if settled is not None:
            return settled
    with tempfile.TemporaryDirectory(prefix="sluice-", dir=deps.spool_dir) as tmp:
        spooled = spool_window(deps.s3, staging_bucket, staged_key, Path(tmp) / "window.json.gz")
        parsed = parse_window(spooled)
        if parsed.truncated is not None:
            parsed.bad_lines.append(_truncated(staged_key, parsed.truncated))
        ids = [entry.file_id for entry in parsed.entries] + [x.file_id for x in parsed.bad_lines]
        owners = deps.ledger.claim_files(name.window_id, ids)
        owned = [e for e in parsed.entries if owners[e.file_id] == name.window_id]
        owned_bad = [x for x in parsed.bad_lines if owners[x.file_id] == name.window_id]
        report = DeliveryReport(
            name.window_id,
            outcome="delivered",
            not_owned=len(ids) - len(owned) - len(owned_bad),
            repeated=parsed.repeated,
        )
        if not owned and not owned_bad:
            deps.ledger.mark_empty(name.window_id, staged_key)
            _reopen_hour(deps, name)
            _tag_delivered(deps, staging_bucket, staged_key)
            report.outcome = "empty"
            return report
        digests, exclusions = _check_refs(owned, owned_bad, existing, deps)
        record = deps.ledger.begin(
            name.window_id, staged_key, [_to_record(x) for x in exclusions], _plan(deps.tunables)
        )
        persisted = {x.file_id for x in record.exclusions}
        found_now = [x for x in exclusions if x.file_id not in persisted]
        # Found only on a retry (a ref deleted between attempts): persisted, so later attempts
        # build without it too.
        deps.ledger.add_exclusions(name.window_id, [_to_record(x) for x in found_now])
        exclusions = _merge(record.exclusions, exclusions)
        plan = record.plan or _plan(deps.tunables)
        excluded_ids = {x.file_id for x in exclusions}
        members = [e for e in owned if e.file_id not in excluded_ids]
        bodies = InlineBodies(spooled)
        try:
            report.parts = _deliver_parts(
                name,
                staged_key=staged_key,
                members=members,
                exclusions=exclusions,
                digests=digests,
                bodies=bodies,
                workdir=Path(tmp),
                deps=deps,
                plan=plan,
                retry=existing is not None,
                lease=lease,
            )
        finally:
            bodies.close()
    lease.check()
    now_ms = int(deps.clock() * 1000)
    report.latencies_ms = [now_ms - entry.event_time_ms for entry in members]
    deps.ledger.mark_delivered(
        name.window_id,
        report.parts,
        file_count=len(members),
        latency=LatencyHistogram.of(report.latencies_ms),
    )
    _reopen_hour(deps, name)
    _tag_delivered(deps, staging_bucket, staged_key)
    _tag_refs_delivered(deps, members)
    report.files_delivered = len(members)
    report.excluded = exclusions
    return report


def _truncated(staged_key: str, reason: str) -> Exclusion:
    """The unread rest of a cut staged object, excluded as one: its files cannot be named, so
    reconcile reports them missing and `sluice replay` sends them again."""
    logger.error("staged window cut short; delivering what was read", extra={"detail": reason})
    return Exclusion(
        file_id=raw_record_id(f"truncated:{staged_key}".encode()),
        key=None,
        version_id=None,
        reason="truncated-window",
        detail=reason,
    )


def _reopen_hour(deps: DeliveryDeps, name: WindowName) -> None:
    """A window of an hour redrive's sweep has passed (staged late) puts the sweep back on that
    hour, so the hour's marker is rewritten with it (one conditional write, refused unless so)."""
    deps.ledger.lower_sweep_low_water(Hour(name.dt, name.hour).start.timestamp())


def _settled(
    existing: WindowRecord, staging_bucket: str, staged_key: str, deps: DeliveryDeps
) -> DeliveryReport | None:
    """A report when the window needs no work (rule 5), else None.

    A settled window is tagged again: a tag that failed after DELIVERED or EMPTY would
    otherwise keep the staged window forever.
    """
    if existing.state is WindowState.EMPTY:
        _tag_delivered(deps, staging_bucket, staged_key)
        return DeliveryReport(existing.window_id, outcome="empty")
    if existing.state is WindowState.PARKED:
        logger.warning("window is parked; `sluice redrive --window` releases it")
        return DeliveryReport(existing.window_id, outcome="parked")
    if existing.state is WindowState.DELIVERED:
        changed = [part.minio_key for part in existing.parts if not _intact(part, deps)]
        if not changed:
            _tag_delivered(deps, staging_bucket, staged_key)
            return DeliveryReport(
                existing.window_id,
                outcome="already-delivered",
                parts=list(existing.parts),
                files_delivered=existing.file_count,
            )
        logger.warning(
            "delivered window's archive is missing or changed in MinIO; rebuilding",
            extra={"minio_keys": changed},
        )
    return None


MISSING_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "NoSuchObject"})


def _intact(part: PartRecord, deps: DeliveryDeps) -> bool:
    """Whether MinIO still holds the part as recorded. Only an answer that it is missing (or
    different) means rebuild: any other error raises, because a rebuild whose upload then fails
    verification deletes what it uploaded — on an unversioned bucket, the good archive."""

    def stat(client: Any, settings: Any) -> Any:
        return client.stat_object(settings.bucket, part.minio_key)

    try:
        stat_result = deps.minio.call(stat)
    except S3Error as err:
        if err.code in MISSING_CODES:
            return False
        raise
    return bool(stat_result.size == part.size and stat_result.etag == part.etag)


def _check_refs(
    owned: Sequence[WindowEntry],
    owned_bad: Sequence[Exclusion],
    existing: WindowRecord | None,
    deps: DeliveryDeps,
) -> tuple[dict[str, RefDigest], list[Exclusion]]:
    already = {x.file_id for x in existing.exclusions} if existing else set()
    digests: dict[str, RefDigest] = {}
    exclusions = list(owned_bad)
    for entry in owned:
        if not entry.is_ref or entry.file_id in already:
            continue
        outcome = digest_ref(
            deps.s3,
            entry,
            deps.schemas,
            chunk_bytes=deps.tunables.read_chunk_bytes,
            max_json_bytes=deps.tunables.max_json_validation_bytes,
        )
        if isinstance(outcome, Exclusion):
            logger.error(
                "file excluded from its window",
                extra={"file_id": entry.file_id, "key": entry.key, "reason": outcome.reason},
            )
            exclusions.append(outcome)
        else:
            digests[entry.file_id] = outcome
    return digests, exclusions


def _merge(persisted: Sequence[ExclusionRecord], found: Sequence[Exclusion]) -> list[Exclusion]:
    """Persisted exclusions first (rule 3), then any found only now."""
    merged = [
        Exclusion(
            file_id=x.file_id, key=x.key, version_id=x.version_id, reason=x.reason, detail=x.detail
        )
        for x in persisted
    ]
    known = {x.file_id for x in merged}
    merged += [x for x in found if x.file_id not in known]
    return merged


def _to_record(exclusion: Exclusion) -> ExclusionRecord:
    return ExclusionRecord(
        file_id=exclusion.file_id,
        key=exclusion.key,
        version_id=exclusion.version_id,
        reason=exclusion.reason,
        detail=exclusion.detail,
    )


def plan_parts(members: Sequence[WindowEntry], max_input_bytes: int) -> list[list[WindowEntry]]:
    """Window order, at most `max_input_bytes` of file bytes a part; a larger file alone."""
    parts: list[list[WindowEntry]] = [[]]
    size = 0
    for entry in members:
        if parts[-1] and size + entry.size > max_input_bytes:
            parts.append([])
            size = 0
        parts[-1].append(entry)
        size += entry.size
    return parts


def _deliver_parts(
    name: WindowName,
    *,
    staged_key: str,
    members: Sequence[WindowEntry],
    exclusions: Sequence[Exclusion],
    digests: dict[str, RefDigest],
    bodies: InlineBodies,
    workdir: Path,
    deps: DeliveryDeps,
    plan: dict[str, int],
    retry: bool,
    lease: WindowLease,
) -> list[PartRecord]:
    names = safe_member_names([(entry.file_id, entry.key) for entry in members])
    planned = plan_parts(members, plan["archive_max_input_bytes"])
    if retry:
        lease.check()
        _remove_unplanned(name, len(planned), deps)
    entries = {entry.file_id: entry for entry in members}

    @contextmanager
    def open_body(file: ArchiveFile) -> Iterator[BinaryIO]:
        entry = entries[file.file_id]
        if entry.is_ref:
            with open_ref(deps.s3, entry) as stream:
                yield stream
        else:
            yield io.BytesIO(bodies.body(entry.line_number))

    records = []
    for number, part_entries in enumerate(planned, start=1):
        files = [archive_file(entry, names[entry.file_id], digests) for entry in part_entries]
        manifest = archive.manifest(
            name.window_id,
            staged_key,
            number,
            len(planned),
            files,
            exclusions if number == 1 else [],
        )
        key = archive_key(deps.tunables.archive_prefix, name, number, len(planned))
        writer = SpoolWriter(
            dir=workdir,
            min_part_size=plan["min_part_size_bytes"],
            max_parts=plan["max_parts"],
        )
        with writer:
            archive.write_archive(
                writer,
                manifest,
                files,
                open_body,
                gzip_level=plan["gzip_level"],
                chunk_bytes=deps.tunables.read_chunk_bytes,
            )
        spooled = writer.result
        try:
            lease.check()
            result = upload_verified(
                deps.minio,
                key,
                spooled,
                {
                    "sluice-file-count": str(len(files)),
                    "sluice-staged-key": staged_key,
                    "sluice-format-version": str(archive.FORMAT_VERSION),
                },
                attempts=deps.tunables.upload_attempts,
                backoff_base=deps.tunables.retry_backoff_base_seconds,
                backoff_cap=deps.tunables.retry_backoff_cap_seconds,
                corrupt=deps.corrupt,
            )
        finally:
            spooled.path.unlink(missing_ok=True)
        _put_sidecar(deps, sidecar_key(key), manifest)
        records.append(_part_record(number, result, len(files)))
        logger.info(
            "archive part delivered",
            extra={"part": number, "parts": len(planned), "minio_key": key, "files": len(files)},
        )
    return records


def _plan(tunables: DeliveryTunables) -> dict[str, int]:
    """What decides an archive's bytes besides the window itself (persisted at `begin`)."""
    return {
        "archive_max_input_bytes": tunables.archive_max_input_bytes,
        "gzip_level": tunables.gzip_level,
        "min_part_size_bytes": tunables.min_part_size_bytes,
        "max_parts": tunables.max_parts,
    }


def _remove_unplanned(name: WindowName, parts: int, deps: DeliveryDeps) -> None:
    """On a retry, remove archives an earlier attempt left under the window's name that this
    plan will not write (its exclusions changed): no file may sit in two of them."""
    prefix_setting = deps.tunables.archive_prefix
    planned = {archive_key(prefix_setting, name, n, parts) for n in range(1, parts + 1)}
    planned |= {sidecar_key(key) for key in planned}
    prefix = archive_key(prefix_setting, name, 1, 1).removesuffix("tar.gz")

    def remove(client: Any, settings: Any) -> list[str]:
        stale = [
            obj.object_name
            for obj in client.list_objects(settings.bucket, prefix=prefix)
            if obj.object_name not in planned
        ]
        for key in stale:
            client.remove_object(settings.bucket, key)
        return stale

    removed = deps.minio.call(remove)
    if removed:
        logger.warning("removed archives of an earlier attempt's plan", extra={"keys": removed})


def archive_file(
    entry: WindowEntry, member_name: str, digests: dict[str, RefDigest]
) -> ArchiveFile:
    """What the manifest says of one member (the benchmark builds archives with it too)."""
    if entry.is_ref:
        digest = digests[entry.file_id]
        sha256, check = digest.sha256, digest.check
    else:
        sha256, check = str(entry.body_sha256), "envelope-sha256"
    return ArchiveFile(
        file_id=entry.file_id,
        key=entry.key,
        version_id=entry.version_id,
        size=entry.size,
        sha256=sha256,
        event_time_ms=entry.event_time_ms,
        member_name=member_name,
        check=check,
        sequencer=entry.sequencer,
    )


def _part_record(number: int, result: UploadResult, file_count: int) -> PartRecord:
    return PartRecord(
        part=number,
        minio_key=result.key,
        minio_version=result.version_id,
        sha256=result.sha256,
        etag=result.etag,
        size=result.size,
        part_size=result.part_size,
        file_count=file_count,
        check=result.check,
    )


def _put_sidecar(deps: DeliveryDeps, key: str, manifest: bytes) -> None:
    def put(client: Any, settings: Any) -> None:
        client.put_object(
            settings.bucket,
            key,
            io.BytesIO(manifest),
            length=len(manifest),
            content_type="application/json",
        )

    deps.minio.call(put)


def _tag_delivered(deps: DeliveryDeps, bucket: str, key: str) -> None:
    """Lifecycle expires only staged windows tagged delivered (DESIGN §4 retention)."""
    deps.s3.put_object_tagging(
        Bucket=bucket,
        Key=key,
        Tagging={"TagSet": [{"Key": deps.tunables.delivered_tag, "Value": "true"}]},
    )


def _tag_refs_delivered(deps: DeliveryDeps, members: list[WindowEntry]) -> None:
    """The landing versions delivery read by reference, tagged delivered once their archive is
    verified: the landing bucket's lifecycle moves or expires a file over the inline limit only
    when so tagged, so no body delivery still needs leaves S3 Standard, however long MinIO is
    away. Inline files travel in the window itself and need no tag. A tag that fails is logged
    and retried by nothing: the file then stays in Standard, which costs money, never data."""
    tag: TaggingTypeDef = {"TagSet": [{"Key": deps.tunables.delivered_tag, "Value": "true"}]}
    for entry in members:
        if not entry.is_ref:
            continue
        try:
            deps.s3.put_object_tagging(
                Bucket=entry.bucket, Key=entry.key, VersionId=entry.version_id, Tagging=tag
            )
        except ClientError as err:
            logger.warning(
                "landing version not tagged delivered; it stays in S3 Standard",
                extra={"bucket": entry.bucket, "key": entry.key, "error": str(err)},
            )
