"""Delivery's logic: one staged window to MinIO, exactly once, verified (DESIGN §3, §4, §4a).

1. A window already DELIVERED whose archives are intact in MinIO returns at once; EMPTY and
   PARKED windows return too (rule 5; redrive unparks).
2. Spool the window; read each file's metadata; drop repeated file_ids (rule 1).
3. Claim every file — and every bad line, so its exclusion belongs to one window — in the ledger
   (rule 2). A window that owns nothing is EMPTY: no object.
4. Record the window with the bad lines' exclusions (chunked in the ledger, rule 3).
5. Plan parts of at most `archive_max_input_bytes` of file bytes (a larger file alone) over
   the files it owns — the same parts on every attempt. For each part not verified earlier:
   read and hash its refs once, into local copies (persisting the exclusions found first),
   write the part's payload table rows to the staging bucket (delivery.tables), build the
   `.tar.gz` from those copies into a hashed spool, upload it under `_incoming/` with its
   checks, record it verified (rule 4a). Near the invocation's deadline, stop after a part:
   WindowContinues.
6. Commit (delivery.commit): copy each part to its final key, then write the window manifest.
7. Only then mark the window DELIVERED (rule 4), tag the staged object delivered, and report
   each file's end-to-end latency.
Nothing here retries a whole window: an error raises, and Lambda's async retries, the delivery
DLQ and redrive take over.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final, NamedTuple, overload

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError
from minio.commonconfig import ComposeSource, CopySource
from minio.error import S3Error

from delivery import archive
from delivery.archive import ArchiveFile, Exclusion, MemberRun
from delivery.commit import write_window_manifest
from delivery.hour_markers import Hour
from delivery.json_stream import array_items
from delivery.latency import LatencyHistogram
from delivery.layout import (
    MANIFEST_SUFFIX,
    WindowName,
    archive_key,
    incoming_key,
    incoming_manifest_key,
    incoming_prefix,
    window_manifest_key,
    window_name,
)
from delivery.lease import WindowLease
from delivery.ledger import (
    ExclusionRecord,
    Ledger,
    PartRecord,
    Plan,
    WindowRecord,
    WindowState,
)
from delivery.minio_access import MISSING_CODES, MinioAccess
from delivery.names import member_names
from delivery.refs import RefDigest, digest_ref, open_ref
from delivery.tables import TableCounts, Tables, TableWriter, total
from delivery.upload import (
    META_SHA256,
    SpoolWriter,
    UploadResult,
    UploadVerificationError,
    upload_verified,
)
from delivery.window import InlineBodies, ParsedWindow, parse_window, spool_window
from delivery.window_entries import MemberSpan, WindowEntries, WindowEntry, joined
from infrastructure.tunables import DeliveryTunables
from transform.payload_schemas import PayloadSchemas
from transform.quarantine import raw_record_id

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import TaggingTypeDef

logger = Logger(child=True)

MANIFEST_BUFFER_BYTES: Final = 1 << 20
"""Manifests are written and copied through this buffer: a file's entry is ~300 bytes."""


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
    tables: Tables = field(default_factory=Tables)
    """The payload tables delivery writes rows of (none: no rows written)."""


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
    table_rows: dict[str, TableCounts] = field(default_factory=dict)
    """Rows this invocation wrote to each payload table (parts verified earlier not counted)."""


class WindowContinues(Exception):  # an outcome, not a failure: see the handler
    """This invocation is near its deadline: the window's verified parts are recorded, and a
    new invocation continues from them (DESIGN §4a rule 4a)."""

    def __init__(self, window_id: str, done: int, parts: int) -> None:
        super().__init__(f"window {window_id}: {done} of {parts} parts verified; continuing")
        self.window_id = window_id
        self.done = done
        self.parts = parts


CONTINUE_RESERVE_SECONDS: Final = 30.0
"""Time kept back after the last unit of work: recording it and releasing the lease."""


def deliver_window(
    staging_bucket: str,
    staged_key: str,
    deps: DeliveryDeps,
    *,
    remaining_seconds: Callable[[], float] | None = None,
) -> DeliveryReport:
    """Deliver the window under its lease (delivery.lease); an invocation that finds another
    holding it waits, touching nothing in MinIO, and returns what the holder did.

    With `remaining_seconds` (the invocation's time left) the window may stop after any part
    and raise WindowContinues; each invocation does at least one part, or the commit."""
    name = window_name(staged_key, deps.file_extension)
    lease = WindowLease(deps.ledger, name.window_id, clock=deps.clock, sleep=deps.sleep)

    def settled() -> bool:
        record = deps.ledger.get_window(name.window_id)
        return record is not None and record.state in FINAL_STATES

    if not lease.acquire(settled):
        existing = deps.ledger.get_window(name.window_id)
        report = None if existing is None else _settled(existing, staging_bucket, staged_key, deps)
        if report is None:  # settled, then found changed in MinIO: a new attempt rebuilds it
            return deliver_window(
                staging_bucket, staged_key, deps, remaining_seconds=remaining_seconds
            )
        return report
    try:
        return _deliver_leased(
            staging_bucket, staged_key, name, lease, deps, _Deadline(remaining_seconds)
        )
    finally:
        lease.release()


FINAL_STATES = frozenset({WindowState.DELIVERED, WindowState.EMPTY, WindowState.PARKED})


class _Deadline:
    """Whether another unit of work (a part, the commit) fits in the invocation's time left:
    the reserve plus twice the longest unit so far. The first unit always runs."""

    def __init__(self, remaining_seconds: Callable[[], float] | None) -> None:
        self._remaining = remaining_seconds
        self._longest = 0.0
        self._done = 0

    def allows_another(self) -> bool:
        if self._remaining is None or self._done == 0:
            return True
        return self._remaining() > CONTINUE_RESERVE_SECONDS + 2 * self._longest

    @contextmanager
    def unit(self) -> Iterator[None]:
        started = time.monotonic()
        yield
        self._longest = max(self._longest, time.monotonic() - started)
        self._done += 1


def _deliver_leased(  # noqa: PLR0917  # the window's context, passed whole
    staging_bucket: str,
    staged_key: str,
    name: WindowName,
    lease: WindowLease,
    deps: DeliveryDeps,
    deadline: _Deadline,
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
        others = _claim(deps, name.window_id, parsed)
        owned = parsed.entries.without(others)
        owned_bad = [x for x in parsed.bad_lines if x.file_id not in others]
        report = DeliveryReport(
            name.window_id, outcome="delivered", not_owned=len(others), repeated=parsed.repeated
        )
        if not owned and not owned_bad:
            deps.ledger.mark_empty(
                name.window_id, staged_key, duplicates=report.not_owned + report.repeated
            )
            _reopen_hour(deps, name)
            _tag_delivered(deps, staging_bucket, staged_key)
            report.outcome = "empty"
            return report
        record = deps.ledger.begin(
            name.window_id, staged_key, [_to_record(x) for x in owned_bad], _plan(deps.tunables)
        )
        bodies = InlineBodies(parsed)
        try:
            built = _build_parts(
                _Window(name, staged_key, staging_bucket, owned, record, Path(tmp)),
                _Bodies(archive=bodies, tables=bodies),
                deps,
                lease,
                deadline,
            )
        finally:
            bodies.close()
        report.table_rows = total(part.table_rows for part in built)
        if not deadline.allows_another():
            raise WindowContinues(name.window_id, len(built), len(built))
        with deadline.unit():
            report.parts, report.excluded = _commit(name, staged_key, built, deps, lease, Path(tmp))
    members = joined(part.entries for part in built)
    now_ms = int(deps.clock() * 1000)
    report.latencies_ms = [now_ms - event_time_ms for event_time_ms in members.event_times_ms()]
    lease.check()
    deps.ledger.mark_delivered(
        name.window_id,
        report.parts,
        file_count=len(members),
        latency=LatencyHistogram.of(report.latencies_ms),
        duplicates=report.not_owned + report.repeated,
    )
    _remove_incoming(deps, name.window_id)
    _reopen_hour(deps, name)
    _tag_delivered(deps, staging_bucket, staged_key)
    _tag_refs_delivered(deps, members)
    report.files_delivered = len(members)
    return report


CLAIM_BATCH: Final = 1000
"""File ids claimed per ledger call: the ids and their owners in memory at once, not a
window's (100,000 small files)."""


def _claim(deps: DeliveryDeps, window_id: str, parsed: ParsedWindow) -> dict[str, str]:
    """Claim the window's files and its bad lines' ids; file_id -> owner of those another
    window owns (none, usually)."""
    ids = itertools.chain(parsed.entries.file_ids(), (x.file_id for x in parsed.bad_lines))
    others: dict[str, str] = {}
    while batch := list(itertools.islice(ids, CLAIM_BATCH)):
        owners = deps.ledger.claim_files(window_id, batch)
        others.update((fid, owner) for fid, owner in owners.items() if owner != window_id)
    return others


class _Window(NamedTuple):
    name: WindowName
    staged_key: str
    staging_bucket: str
    owned: WindowEntries
    record: WindowRecord
    workdir: Path


@dataclass(frozen=True)
class _BuiltPart:
    """A part verified in the incoming area, with its manifest (a local copy) and files."""

    record: PartRecord
    manifest: Path
    entries: WindowEntries
    final_key: str
    table_rows: dict[str, TableCounts] = field(default_factory=dict)
    """Rows written to each payload table while building it (empty for a part verified
    earlier)."""


class _Bodies(NamedTuple):
    """The window's inline bodies, for the archives' pass and the tables' (one reader can
    serve both: it reads by place)."""

    archive: InlineBodies
    tables: InlineBodies


def _truncated(staged_key: str, reason: str) -> Exclusion:
    """The unread rest of a cut staged object, excluded as one: its files cannot be named, so
    reconcile reports them missing and `sluice replay` sends them again."""
    logger.error("staged window cut short; delivering what was read", detail=reason)
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
        manifest = window_manifest_key(
            deps.tunables.archive_prefix, window_name(staged_key, deps.file_extension)
        )
        if not _exists(manifest, deps):
            changed.append(manifest)
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
            minio_keys=changed,
        )
    return None


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


def _exists(key: str, deps: DeliveryDeps) -> bool:
    def stat(client: Any, settings: Any) -> Any:
        return client.stat_object(settings.bucket, key)

    try:
        deps.minio.call(stat)
    except S3Error as err:
        if err.code in MISSING_CODES:
            return False
        raise
    return True


def _from_record(record: ExclusionRecord) -> Exclusion:
    return Exclusion(
        file_id=record.file_id,
        key=record.key,
        version_id=record.version_id,
        reason=record.reason,
        detail=record.detail,
    )


def _to_record(exclusion: Exclusion) -> ExclusionRecord:
    return ExclusionRecord(
        file_id=exclusion.file_id,
        key=exclusion.key,
        version_id=exclusion.version_id,
        reason=exclusion.reason,
        detail=exclusion.detail,
    )


def plan_parts(members: WindowEntries, max_input_bytes: int) -> list[WindowEntries]:
    """Window order, at most `max_input_bytes` of file bytes a part; a larger file alone."""
    return members.split_by_size(max_input_bytes)


def _build_parts(
    window: _Window,
    bodies: _Bodies,
    deps: DeliveryDeps,
    lease: WindowLease,
    deadline: _Deadline,
) -> list[_BuiltPart]:
    """Every part verified in the incoming area: those an earlier invocation verified (and
    MinIO still holds as recorded) are taken as they are, the rest built and uploaded.

    The plan is a function of the files the window owns, which never change (claims are
    permanent), so part n holds the same files in every invocation, less its exclusions.
    """
    plan = window.record.plan or _plan(deps.tunables)
    names = member_names(window.owned.ids_and_keys)
    planned = plan_parts(window.owned, int(plan["archive_max_input_bytes"]))
    excluded = {x.file_id for x in window.record.exclusions}
    built: list[_BuiltPart] = []
    for number, part_entries in enumerate(planned, start=1):
        final_key = archive_key(deps.tunables.archive_prefix, window.name, number, len(planned))
        verified = window.record.verified_parts.get(number)
        manifest = None if verified is None else _verified_manifest(deps, window, verified)
        if verified is not None and manifest is not None:
            # Its manifest lists some of the part's planned files (those not excluded).
            listed = {str(f["file_id"]) for f in array_items(manifest, "files")}
            part_members = part_entries.only(listed)
            built.append(_BuiltPart(verified, manifest, part_members, final_key))
            continue
        candidates = part_entries.without(excluded)
        if not candidates:
            # Empty table objects, in case an attempt wrote rows before the exclusions were found.
            _write_tables(window, number, part_entries, [], bodies, deps, lease, {})
            continue
        if not deadline.allows_another():
            raise WindowContinues(window.name.window_id, len(built), len(planned))
        with deadline.unit(), _ref_copies() as copies:
            part, newly_excluded = _build_part(
                window,
                (number, len(planned)),
                (part_entries, candidates),
                names,
                bodies,
                deps,
                lease,
                plan,
                copies,
            )
        excluded |= newly_excluded
        if part is not None:
            built.append(replace(part, final_key=final_key))
    return built


def _open_body(
    entry: WindowEntry, copies: dict[str, Path], deps: DeliveryDeps, inline: InlineBodies
) -> contextlib.AbstractContextManager[BinaryIO]:
    """A file's body: its ref's local copy, else the ref read from S3 (one too big to copy),
    else its inline body from the window (`inline`: one reader per pass over the window).
    Each is its own context manager: no generator per file (most files are small)."""
    if entry.file_id in copies:
        return copies[entry.file_id].open("rb")
    if entry.is_ref:
        return open_ref(deps.s3, entry)
    return io.BytesIO(inline.body(entry))


@contextmanager
def _ref_copies() -> Iterator[dict[str, Path]]:
    """file_id → local copy of a ref read for one part; every copy removed at the end."""
    copies: dict[str, Path] = {}
    try:
        yield copies
    finally:
        for path in copies.values():
            path.unlink(missing_ok=True)


def _build_part(  # noqa: PLR0917  # one part's whole context
    window: _Window,
    position: tuple[int, int],
    files_of: tuple[WindowEntries, WindowEntries],
    names: dict[str, str],
    bodies: _Bodies,
    deps: DeliveryDeps,
    lease: WindowLease,
    plan: Plan,
    copies: dict[str, Path],
) -> tuple[_BuiltPart | None, set[str]]:
    """Read the part's refs once into `copies`, hashing them (persisting the exclusions found
    before any byte is uploaded, so a retry builds the same part), write the part's payload
    table rows, then build the archive from those copies, upload and verify it under
    `_incoming/`. `files_of` is the part's files as planned, and those not excluded before."""
    number, parts = position
    planned, candidates = files_of
    digests, found = _digest_refs(
        candidates, deps, window.workdir, copies, int(plan["archive_max_input_bytes"])
    )
    if found:
        lease.check()
        deps.ledger.add_exclusions(window.name.window_id, [_to_record(x) for x in found])
    excluded = {x.file_id for x in found}
    members = candidates.without(excluded)
    # Before the archive goes to MinIO, so analysts see the rows whatever MinIO's state; after
    # the exclusions are persisted, so every attempt writes rows of the same files.
    table_rows = _write_tables(window, number, planned, members, bodies, deps, lease, copies)
    if not members:
        return None, excluded

    files = ArchiveFiles(members, names, digests)

    def open_body(file: ArchiveFile) -> contextlib.AbstractContextManager[BinaryIO]:
        return _open_body(files.entry_of(file), copies, deps, bodies.archive)

    manifest = window.workdir / f"p{number:03d}{MANIFEST_SUFFIX}"
    with manifest.open("wb", buffering=MANIFEST_BUFFER_BYTES) as out:
        file_count = archive.write_manifest(
            out, window.name.window_id, window.staged_key, (number, parts), files, []
        )
    prefix = deps.tunables.archive_prefix
    key = incoming_key(prefix, window.name.window_id, number)
    writer = SpoolWriter(
        dir=window.workdir,
        min_part_size=int(plan["min_part_size_bytes"]),
        max_parts=int(plan["max_parts"]),
    )
    with writer:
        archive.write_archive(
            writer,
            manifest,
            files,
            open_body,
            gzip_codec=str(plan.get("gzip_codec", "zlib")),  # zlib: a plan persisted before
            gzip_level=int(plan["gzip_level"]),
            chunk_bytes=deps.tunables.read_chunk_bytes,
            checked_by_manifest=True,
            layout=files.layout(bodies.archive),
        )
    for path in copies.values():
        path.unlink(missing_ok=True)  # the archive holds them now: free the disk for its upload
    spooled = writer.result
    try:
        lease.check()
        result = upload_verified(
            deps.minio,
            key,
            spooled,
            {
                "sluice-file-count": str(file_count),
                "sluice-staged-key": window.staged_key,
                "sluice-format-version": str(archive.FORMAT_VERSION),
            },
            attempts=deps.tunables.upload_attempts,
            backoff_base=deps.tunables.retry_backoff_base_seconds,
            backoff_cap=deps.tunables.retry_backoff_cap_seconds,
            corrupt=deps.corrupt,
        )
    finally:
        spooled.path.unlink(missing_ok=True)
    _put_json(deps, incoming_manifest_key(prefix, window.name.window_id, number), manifest)
    record = _part_record(number, result, file_count)
    deps.ledger.record_verified_part(window.name.window_id, record)
    logger.info(
        "archive part verified",
        part=number,
        parts=parts,
        minio_key=key,
        files=file_count,
    )
    return _BuiltPart(record, manifest, members, key, table_rows), excluded


def _write_tables(  # noqa: PLR0917  # one part's whole context
    window: _Window,
    number: int,
    planned: Sequence[WindowEntry],
    members: Sequence[WindowEntry],
    bodies: _Bodies,
    deps: DeliveryDeps,
    lease: WindowLease,
    copies: dict[str, Path],
) -> dict[str, TableCounts]:
    """The part's table objects (delivery.tables), the bodies read from the refs' local copies,
    the window's inline bodies, or S3 for a ref too big to copy."""

    def open_body(entry: WindowEntry) -> contextlib.AbstractContextManager[BinaryIO]:
        return _open_body(entry, copies, deps, bodies.tables)

    writer = TableWriter(
        deps.tables,
        deps.s3,
        window.staging_bucket,
        max_json_bytes=deps.tunables.max_json_validation_bytes,
        attempts=deps.tunables.upload_attempts,
        backoff_base=deps.tunables.retry_backoff_base_seconds,
        backoff_cap=deps.tunables.retry_backoff_cap_seconds,
        sleep=deps.sleep,
    )
    return writer.write_part(
        window.name, number, planned, members, open_body, window.workdir, check=lease.check
    )


def _digest_refs(
    candidates: WindowEntries,
    deps: DeliveryDeps,
    workdir: Path,
    copies: dict[str, Path],
    copy_budget_bytes: int,
) -> tuple[dict[str, RefDigest], list[Exclusion]]:
    """Read each ref of the part once, hashing and checking it, into a local copy while the
    part's copies stay within `copy_budget_bytes` (a part's input size, so the disk holds at
    most that beside the archive; a ref past it is read from S3 again for the archive)."""
    digests: dict[str, RefDigest] = {}
    exclusions: list[Exclusion] = []
    budget = copy_budget_bytes
    for entry in candidates.refs():
        copy = workdir / f"ref-{len(copies)}" if entry.size <= budget else None
        with copy.open("wb") if copy is not None else contextlib.nullcontext() as copy_to:
            outcome = digest_ref(
                deps.s3,
                entry,
                deps.schemas,
                chunk_bytes=deps.tunables.read_chunk_bytes,
                max_json_bytes=deps.tunables.max_json_validation_bytes,
                copy_to=copy_to,
            )
        if copy is not None:
            if isinstance(outcome, Exclusion):
                copy.unlink(missing_ok=True)
            else:
                copies[entry.file_id] = copy
                budget -= entry.size
        if isinstance(outcome, Exclusion):
            logger.error(
                "file excluded from its window",
                file_id=entry.file_id,
                key=entry.key,
                reason=outcome.reason,
            )
            exclusions.append(outcome)
        else:
            digests[entry.file_id] = outcome
    return digests, exclusions


def _verified_manifest(deps: DeliveryDeps, window: _Window, part: PartRecord) -> Path | None:
    """A local copy of the manifest of a part verified earlier, if MinIO still holds the part
    as recorded."""
    if not _intact(part, deps):
        return None
    key = incoming_manifest_key(deps.tunables.archive_prefix, window.name.window_id, part.part)
    path = window.workdir / f"p{part.part:03d}{MANIFEST_SUFFIX}"
    try:
        _get_file(deps, key, path)
    except S3Error as err:
        if err.code in MISSING_CODES:
            return None
        raise
    logger.info("part verified earlier; not built again", part=part.part)
    return path


COPY_OBJECT_MAX_BYTES: Final = 5 * 1024**3
"""S3's CopyObject limit; a larger part is copied with UploadPartCopy (compose_object)."""


def _commit(  # noqa: PLR0917  # the window's context, passed whole
    name: WindowName,
    staged_key: str,
    built: Sequence[_BuiltPart],
    deps: DeliveryDeps,
    lease: WindowLease,
    workdir: Path,
) -> tuple[list[PartRecord], list[Exclusion]]:
    """Copy every verified part to its final key (server-side, checked), then write the
    window manifest: the commit marker, last (DESIGN §3 "Commit"). The committed parts, and
    the window's exclusions as the manifest lists them."""
    committed = []
    for part in built:
        lease.check()
        committed.append(_copy_to_final(deps, part.record, part.final_key))
    record = deps.ledger.get_window(name.window_id)
    exclusions = [_from_record(x) for x in (record.exclusions if record else ())]
    manifest = workdir / f"window{MANIFEST_SUFFIX}"
    with manifest.open("wb", buffering=MANIFEST_BUFFER_BYTES) as out:
        write_window_manifest(
            out,
            name.window_id,
            staged_key,
            [
                (final, array_items(part.manifest, "files"))
                for final, part in zip(committed, built, strict=True)
            ],
            exclusions,
        )
    lease.check()
    _put_json(deps, window_manifest_key(deps.tunables.archive_prefix, name), manifest)
    logger.info("window committed", parts=len(committed))
    return committed, exclusions


def _copy_to_final(deps: DeliveryDeps, part: PartRecord, key: str) -> PartRecord:
    def copy(client: Any, settings: Any) -> Any:
        if part.size > COPY_OBJECT_MAX_BYTES:
            source = client.stat_object(settings.bucket, part.minio_key, part.minio_version)
            user = {
                name.lower().removeprefix("x-amz-meta-"): value
                for name, value in (source.metadata or {}).items()
                if name.lower().startswith("x-amz-meta-")
            }
            written = client.compose_object(
                settings.bucket,
                key,
                [ComposeSource(settings.bucket, part.minio_key, version_id=part.minio_version)],
                metadata=user,
            )
        else:
            written = client.copy_object(
                settings.bucket,
                key,
                CopySource(settings.bucket, part.minio_key, version_id=part.minio_version),
            )
        return client.stat_object(settings.bucket, key, version_id=written.version_id)

    stat = deps.minio.call(copy)
    headers = {name.lower(): value for name, value in (stat.metadata or {}).items()}
    stored_sha256 = headers.get(f"x-amz-meta-{META_SHA256}")
    if stat.size != part.size or stored_sha256 != part.sha256:
        raise UploadVerificationError(
            f"copy of {part.minio_key!r} to {key!r} in {deps.minio.describe()} does not match "
            f"the verified part: size {stat.size} (want {part.size}), sha256 {stored_sha256} "
            f"(want {part.sha256})",
            bucket="",
            key=key,
            attempts=1,
        )
    return part._replace(minio_key=key, minio_version=stat.version_id, etag=str(stat.etag))


def _remove_incoming(deps: DeliveryDeps, window_id: str) -> None:
    """The incoming copies of a committed window: best effort (a leftover costs disk only)."""
    prefix = incoming_prefix(deps.tunables.archive_prefix, window_id)

    def remove(client: Any, settings: Any) -> None:
        for obj in client.list_objects(settings.bucket, prefix=prefix):
            client.remove_object(settings.bucket, obj.object_name)

    try:
        deps.minio.call(remove)
    except Exception as err:  # noqa: BLE001  # the window is delivered; this is housekeeping
        logger.warning("incoming parts not removed", prefix=prefix, error=str(err))


def _plan(tunables: DeliveryTunables) -> Plan:
    """What decides an archive's bytes besides the window itself (persisted at `begin`)."""
    return {
        "archive_max_input_bytes": tunables.archive_max_input_bytes,
        "gzip_codec": tunables.gzip_codec,
        "gzip_level": tunables.gzip_level,
        "min_part_size_bytes": tunables.min_part_size_bytes,
        "max_parts": tunables.max_parts,
    }


_new_tuple: Final = tuple.__new__


class ArchiveFiles(Sequence[ArchiveFile]):
    """A part's members as the archive lists them, made again on each pass over them (the
    manifest's, the archive's) rather than kept: ~600 bytes a file otherwise (docs/delivery.md
    "Memory"). `names` maps the files not named by their key."""

    def __init__(
        self, members: WindowEntries, names: dict[str, str], digests: dict[str, RefDigest]
    ) -> None:
        self._members = members
        self._names = names
        self._digests = digests
        self._current: WindowEntry | None = None

    def _file(self, entry: WindowEntry) -> ArchiveFile:
        """What the manifest says of one member."""
        self._current = entry
        (
            _,
            file_id,
            _,
            key,
            version_id,
            size,
            event_time_ms,
            encoding,
            body_sha256,
            sequencer,
            *_,
        ) = entry
        if encoding == "ref":
            digest = self._digests[file_id]
            sha256, check = digest.sha256, digest.check
        else:
            sha256, check = str(body_sha256), "envelope-sha256"
        member_name = self._names.get(file_id, key)
        # tuple.__new__ at once, in the order ArchiveFile declares: its own __new__ is Python.
        return _new_tuple(
            ArchiveFile,
            (file_id, key, version_id, size, sha256, event_time_ms, member_name, check, sequencer),
        )

    def __len__(self) -> int:
        return len(self._members)

    @overload
    def __getitem__(self, index: int) -> ArchiveFile: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[ArchiveFile]: ...

    def __getitem__(self, index: int | slice) -> ArchiveFile | Sequence[ArchiveFile]:
        if isinstance(index, slice):
            return ArchiveFiles(self._members[index], self._names, self._digests)
        return self._file(self._members[index])

    def __iter__(self) -> Iterator[ArchiveFile]:
        return map(self._file, self._members)

    def layout(self, bodies: InlineBodies) -> Iterator[ArchiveFile | MemberRun]:
        """These files for `archive.write_archive`: runs of members the parse wrote (and named
        by their keys, as the names do) copied from `bodies`, each other file on its own."""
        for item in self._members.member_runs(self._names):
            if isinstance(item, MemberSpan):
                yield bodies.run(item.files, item.start, item.end)
            else:
                yield self._file(item)

    def entry_of(self, file: ArchiveFile) -> WindowEntry:
        """The window entry of `file`, the one a pass over these files gave last (the archive
        opens each body as it meets the file)."""
        entry = self._current
        if entry is None or entry.file_id != file.file_id:  # pragma: no cover  # a caller's bug
            raise AssertionError(f"body of {file.file_id} asked for out of order")
        return entry


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


def _put_json(deps: DeliveryDeps, key: str, document: Path) -> None:
    """Put a local JSON file (a manifest) to MinIO, streamed from the disk."""

    def put(client: Any, settings: Any) -> None:
        with document.open("rb") as body:
            client.put_object(
                settings.bucket,
                key,
                body,
                length=os.fstat(body.fileno()).st_size,
                content_type="application/json",
            )

    deps.minio.call(put)


def _get_file(deps: DeliveryDeps, key: str, path: Path) -> None:
    """Copy a MinIO object (a manifest) to `path`, streamed."""

    def get(client: Any, settings: Any) -> None:
        response = client.get_object(settings.bucket, key)
        try:
            with path.open("wb") as out:
                shutil.copyfileobj(response, out, MANIFEST_BUFFER_BYTES)
        finally:
            response.close()
            response.release_conn()

    deps.minio.call(get)


def _tag_delivered(deps: DeliveryDeps, bucket: str, key: str) -> None:
    """Lifecycle expires only staged windows tagged delivered (DESIGN §4 retention)."""
    deps.s3.put_object_tagging(
        Bucket=bucket,
        Key=key,
        Tagging={"TagSet": [{"Key": deps.tunables.delivered_tag, "Value": "true"}]},
    )


def _tag_refs_delivered(deps: DeliveryDeps, members: WindowEntries) -> None:
    """The landing versions delivery read by reference, tagged delivered once their archive is
    verified: the landing bucket's lifecycle moves or expires a file over the inline limit only
    when so tagged, so no body delivery still needs leaves S3 Standard, however long MinIO is
    away. Inline files travel in the window itself and need no tag. A tag that fails is logged
    and retried by nothing: the file then stays in Standard, which costs money, never data."""
    tag: TaggingTypeDef = {"TagSet": [{"Key": deps.tunables.delivered_tag, "Value": "true"}]}
    for entry in members.refs():
        try:
            deps.s3.put_object_tagging(
                Bucket=entry.bucket, Key=entry.key, VersionId=entry.version_id, Tagging=tag
            )
        except ClientError as err:
            logger.warning(
                "landing version not tagged delivered; it stays in S3 Standard",
                bucket=entry.bucket,
                key=entry.key,
                error=str(err),
            )
