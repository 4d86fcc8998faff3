"""`sluice extract`'s work: committed windows from MinIO into a folder, verified, as a tree of
the landing keys (README "For the on-prem consumer").

1. List `<prefix>/dt=…/hour=…/` of the hours asked for (never the bucket, never `_incoming/`):
   window manifests `<window-id>.manifest.json` are the commit markers; a part without one is
   not committed, and is only counted.
2. Read and check every manifest, choose each landing key's version and every path
   (`delivery.extract_plan`) before a byte of an archive is read.
3. Per window: download each part to a spool file in bounded chunks, hashing on the way; check
   its size and sha256 against the manifest; stream its tar, checking `MANIFEST.json` against
   the window manifest and every member's size and sha256, while the chosen members are
   written to temporary files. Only once every part of the window holds are they renamed into
   place (atomic, one by one); any mismatch fails the window and nothing of it is written.
4. Write `extract-index.json`: each written path with the key, version, sequencer and window
   it came from.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Final, NamedTuple

import urllib3
from minio import Minio
from minio.error import MinioException, S3Error

from delivery.extract_plan import (
    INDEX_NAME,
    FileRef,
    ManifestError,
    PartRef,
    UnsafePath,
    WindowManifest,
    hour_prefixes,
    is_window_manifest,
    output_names,
    parse_window_manifest,
    part_window_id,
    safe_target,
    select,
    window_hours,
)
from delivery.layout import MANIFEST_SUFFIX
from delivery.names import MANIFEST_NAME

CHUNK_BYTES: Final = 1 << 20
MAX_MANIFEST_BYTES: Final = 256 << 20
"""A window manifest is read whole (JSON): ~0.5 KiB a file, so this is ~500,000 files."""
INDEX_FORMAT: Final = 1
BAD_INPUT_CODES: Final = frozenset(
    {
        "NoSuchBucket",
        "InvalidBucketName",
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
    }
)
"""S3 error codes of a listing that mean the command line is wrong (bucket or keys)."""

_WINDOW_ERRORS: Final = (
    MinioException,
    urllib3.exceptions.HTTPError,
    OSError,
    EOFError,
    zlib.error,
    tarfile.TarError,
    ValueError,
)
"""What fails one window and lets the others go on: MinIO, the network, the disk, the archive."""


class ExtractError(RuntimeError):
    """Nothing was extracted; `bad_input` when the command line is at fault (exit status 2)."""

    def __init__(self, message: str, *, bad_input: bool = False) -> None:
        super().__init__(message)
        self.bad_input = bad_input


class VerificationError(ValueError):
    """A part or a member is not what the window manifest says; the message names bucket/key."""


@dataclass
class ExtractSummary:
    windows: int = 0
    """Committed windows found (window manifests)."""
    windows_extracted: int = 0
    files_written: int = 0
    older_skipped: int = 0
    repeats_skipped: int = 0
    excluded: int = 0
    """Files the manifests list as excluded by delivery (never in an archive)."""
    uncommitted_parts: int = 0
    bytes_downloaded: int = 0
    failures: list[str] = field(default_factory=list)
    """One line per failed window or refused path."""
    index: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.failures


Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def extract(
    client: Minio,
    bucket: str,
    prefix: str,
    out: Path,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    window_id: str | None = None,
    all_versions: bool = False,
    progress: Progress = _quiet,
) -> ExtractSummary:
    """Extract the committed windows of [since, until), or the one window `window_id` (looked
    for in the hours its name gives, or in [since, until) when given), into `out`."""
    hours = _hours(prefix, since, until, window_id)
    summary = ExtractSummary()
    manifest_keys, summary.uncommitted_parts = _list(client, bucket, hours, window_id)
    if window_id is not None and not manifest_keys:
        raise ExtractError(
            f"no committed window {window_id}: no {window_id}.manifest.json under "
            f"{bucket}/{hours[0]} … {hours[-1]} ({summary.uncommitted_parts} uncommitted "
            "part(s) seen)"
        )
    progress(
        f"{len(manifest_keys)} committed window(s) in {len(hours)} hour(s), "
        f"{summary.uncommitted_parts} uncommitted part(s) ignored"
    )
    summary.windows = len(manifest_keys)
    manifests = _read_manifests(client, bucket, manifest_keys, summary, progress)
    out.mkdir(parents=True, exist_ok=True)
    root = out.resolve()
    staging = Path(tempfile.mkdtemp(prefix=".sluice-extract-", dir=root))
    run = _Run(client, bucket, root, staging, summary, progress)
    try:
        _extract_windows(run, manifests, all_versions=all_versions)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return summary


class _Run(NamedTuple):
    client: Minio
    bucket: str
    root: Path
    """The output folder, resolved."""
    staging: Path
    """Inside `root` (so a rename into place is atomic): spooled parts, files being checked."""
    summary: ExtractSummary
    progress: Progress


def _hours(
    prefix: str, since: datetime | None, until: datetime | None, window_id: str | None
) -> list[str]:
    if since is not None and until is not None:
        if since >= until:
            raise ExtractError(
                f"since {since:%Y-%m-%dT%H:%M:%SZ} is not before until", bad_input=True
            )
        return hour_prefixes(prefix, since, until)
    if window_id is None:
        raise ExtractError("give a time range (since and until) or a window id", bad_input=True)
    if not window_id or "/" in window_id:
        raise ExtractError(f"window id {window_id!r} is empty or holds '/'", bad_input=True)
    hours = window_hours(prefix, window_id)
    if hours is None:
        raise ExtractError(
            f"window id {window_id!r} carries no time (…-yyyy-MM-dd-HH-mm-ss-…): give its hour "
            "with since and until",
            bad_input=True,
        )
    return hours


def _list(
    client: Minio, bucket: str, hours: Sequence[str], window_id: str | None
) -> tuple[list[str], int]:
    """Window manifest keys in window order, and how many parts have no manifest beside them."""
    manifests: list[str] = []
    uncommitted = 0
    for hour in hours:
        listed = hour + (f"{window_id}." if window_id else "")
        try:
            names = [
                str(item.object_name)[len(hour) :]
                for item in client.list_objects(bucket, prefix=listed)
                if not item.is_dir
            ]
        except S3Error as err:
            raise ExtractError(
                f"cannot list {bucket}/{listed}: {err.code}: {err.message}",
                bad_input=err.code in BAD_INPUT_CODES,
            ) from None
        committed = {name for name in names if is_window_manifest(name)}
        manifests += sorted(hour + name for name in committed)
        committed_ids = {name[: -len(MANIFEST_SUFFIX)] for name in committed}
        uncommitted += sum(
            1
            for name in names
            if (window := part_window_id(name)) is not None and window not in committed_ids
        )
    return manifests, uncommitted


def _read_manifests(
    client: Minio, bucket: str, keys: Sequence[str], summary: ExtractSummary, progress: Progress
) -> list[WindowManifest]:
    manifests: list[WindowManifest] = []
    for key in keys:
        try:
            manifests.append(parse_window_manifest(key, _read_small(client, bucket, key)))
        except _WINDOW_ERRORS as err:  # ManifestError is a ValueError
            summary.failures.append(f"window manifest {bucket}/{key}: {_reason(err)}")
            progress(f"window manifest {key}: FAILED")
    summary.excluded = sum(manifest.excluded for manifest in manifests)
    return manifests


def _read_small(client: Minio, bucket: str, key: str) -> bytes:
    response = client.get_object(bucket, key)
    try:
        data = response.read(MAX_MANIFEST_BYTES + 1)
    finally:
        response.close()
        response.release_conn()
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"larger than {MAX_MANIFEST_BYTES} bytes")
    return data


def _extract_windows(run: _Run, manifests: Sequence[WindowManifest], *, all_versions: bool) -> None:
    summary = run.summary
    selection = select((f for m in manifests for f in m.files), all_versions=all_versions)
    summary.older_skipped = selection.older_skipped
    summary.repeats_skipped = selection.repeats_skipped
    names, index_name = output_names(selection.chosen, all_versions=all_versions)
    if index_name != INDEX_NAME:
        run.progress(f"{INDEX_NAME} is a folder of landing keys here: the index is {index_name}")
    written: list[dict[str, Any]] = []
    for number, manifest in enumerate(manifests, start=1):
        manifest_location = f"{run.bucket}/{manifest.manifest_key}"
        before = summary.bytes_downloaded
        try:
            staged = _verified_window(run, manifest, names)
        except _WINDOW_ERRORS as err:
            # a VerificationError names the bucket and part key itself
            where = "" if isinstance(err, VerificationError) else f" ({manifest_location})"
            summary.failures.append(f"window {manifest.window_id}{where}: {_reason(err)}")
            run.progress(f"window {number}/{len(manifests)} {manifest.window_id}: FAILED")
            continue
        count = 0
        for file, temporary in staged:
            if _place(run, temporary, names[file]):
                written.append(_index_entry(names[file], file, manifest))
                count += 1
        summary.windows_extracted += 1
        summary.files_written += count
        run.progress(
            f"window {number}/{len(manifests)} {manifest.window_id}: {count} file(s) written, "
            f"{size_text(summary.bytes_downloaded - before)} read "
            f"({size_text(summary.bytes_downloaded)} in all)"
        )
    summary.index = _write_index(run, index_name, written, all_versions=all_versions)


def _verified_window(
    run: _Run, manifest: WindowManifest, names: Mapping[FileRef, str]
) -> list[tuple[FileRef, Path]]:
    """Every part downloaded and checked; the chosen members (those with a name) in temporary
    files. On any failure the temporary files are removed and the error raised."""
    staged: list[tuple[FileRef, Path]] = []
    spool = run.staging / "part.tar.gz"
    try:
        for part in manifest.parts:
            run.summary.bytes_downloaded += download_part(run.client, run.bucket, part, spool)
            wanted = {
                f.member_name: f for f in manifest.files if f.part == part.part and f in names
            }
            where = f"{run.bucket}/{part.key}"
            staged += verify_part_archive(
                spool, where, manifest, part, wanted=wanted, staging=run.staging
            )
    except BaseException:
        for _, temporary in staged:
            temporary.unlink(missing_ok=True)
        raise
    finally:
        spool.unlink(missing_ok=True)
    return staged


def download_part(client: Minio, bucket: str, part: PartRef, path: Path) -> int:
    """Stream `part` into `path` in bounded chunks; VerificationError unless its size and
    sha256 are the manifest's. Returns the bytes read."""
    where = f"{bucket}/{part.key}"
    digest = hashlib.sha256()
    size = 0
    response = client.get_object(bucket, part.key)
    try:
        with path.open("wb") as spool:
            for chunk in response.stream(CHUNK_BYTES):
                size += len(chunk)
                if size > part.size:  # never spool more than the manifest promised
                    raise VerificationError(f"{where}: larger than its {part.size} bytes")
                digest.update(chunk)
                spool.write(chunk)
    finally:
        response.close()
        response.release_conn()
    if size != part.size:
        raise VerificationError(f"{where}: {size} bytes, the window manifest says {part.size}")
    if digest.hexdigest() != part.sha256:
        raise VerificationError(
            f"{where}: sha256 {digest.hexdigest()}, the window manifest says {part.sha256}"
        )
    return size


def verify_part_archive(
    archive: Path,
    where: str,
    manifest: WindowManifest,
    part: PartRef,
    *,
    wanted: Mapping[str, FileRef],
    staging: Path,
) -> list[tuple[FileRef, Path]]:
    """Stream the part's tar (`where` names it in errors): `MANIFEST.json` first and agreeing
    with the window manifest, then exactly the members it lists for `part`, each of its size
    and sha256. Members in `wanted` (by member name) are copied to temporary files in
    `staging` on the way; on any mismatch they are removed and VerificationError raised."""
    check = _PartCheck(where, manifest, part, wanted, staging)
    staged: list[tuple[FileRef, Path]] = []
    try:
        with tarfile.open(archive, mode="r|gz", encoding="utf-8") as tar:
            _verify_members(tar, check, staged)
    except BaseException:
        for _, temporary in staged:
            temporary.unlink(missing_ok=True)
        raise
    return staged


class _PartCheck(NamedTuple):
    where: str
    manifest: WindowManifest
    part: PartRef
    wanted: Mapping[str, FileRef]
    staging: Path

    def entries(self) -> dict[str, FileRef]:
        return {f.member_name: f for f in self.manifest.files if f.part == self.part.part}


def _verify_members(
    tar: tarfile.TarFile, check: _PartCheck, staged: list[tuple[FileRef, Path]]
) -> None:
    where, entries = check.where, check.entries()
    seen: set[str] = set()
    for member in tar:
        body = tar.extractfile(member) if member.isreg() else None
        if body is None:
            raise VerificationError(f"{where}: member {member.name!r} is no regular file")
        if not seen:
            if member.name != MANIFEST_NAME or member.size > MAX_MANIFEST_BYTES:
                raise VerificationError(f"{where}: first member is not a {MANIFEST_NAME}")
            _check_part_manifest(body.read(), where, check.manifest, check.part)
            seen.add(MANIFEST_NAME)
            continue
        entry = entries.get(member.name)
        if entry is None or member.name in seen:
            raise VerificationError(f"{where}: member {member.name!r} is not listed, or repeated")
        seen.add(member.name)
        chosen = check.wanted.get(member.name)
        temporary = check.staging / f"p{check.part.part}-m{len(seen)}" if chosen else None
        _check_member(body, member.size, entry, where, temporary)
        if chosen and temporary:
            staged.append((chosen, temporary))
    if not seen:
        raise VerificationError(f"{where}: no {MANIFEST_NAME}: not a Sluice archive")
    missing = sorted(set(entries) - seen)
    if missing:
        raise VerificationError(f"{where}: member {missing[0]!r} is missing")


def _check_part_manifest(data: bytes, where: str, manifest: WindowManifest, part: PartRef) -> None:
    """The part's own MANIFEST.json must describe the same files as the window manifest."""
    try:
        document = json.loads(data)
        own = [_comparable(entry) for entry in document["files"]]
        header = (document["window_id"], document["part"], document["parts"])
    except (ValueError, KeyError, TypeError) as err:
        raise VerificationError(f"{where}: {MANIFEST_NAME} unreadable: {err!r}") from None
    if header != (manifest.window_id, part.part, len(manifest.parts)):
        raise VerificationError(f"{where}: {MANIFEST_NAME} is of window/part {header}")
    expected = [
        (f.member_name, f.key, f.version_id, f.file_id, f.size, f.sha256, f.sequencer)
        for f in manifest.files
        if f.part == part.part
    ]
    if own != expected:
        differing = next(
            (mine[0] for mine, theirs in zip(own, expected, strict=False) if mine != theirs),
            "(the file count)",
        )
        raise VerificationError(
            f"{where}: {MANIFEST_NAME} disagrees with the window manifest on {differing!r}"
        )


def _comparable(entry: dict[str, Any]) -> tuple[Any, ...]:
    fields = ("member_name", "key", "version_id", "file_id", "size", "sha256")
    return (*(entry[name] for name in fields), entry.get("sequencer"))


def _check_member(
    body: IO[bytes], header_size: int, entry: FileRef, where: str, temporary: Path | None
) -> None:
    if header_size != entry.size:
        raise VerificationError(
            f"{where}: member {entry.member_name!r} is {header_size} bytes, "
            f"the window manifest says {entry.size}"
        )
    digest = hashlib.sha256()
    size = 0
    with temporary.open("wb") if temporary else contextlib.nullcontext() as sink:
        while chunk := body.read(CHUNK_BYTES):
            size += len(chunk)
            digest.update(chunk)
            if sink is not None:
                sink.write(chunk)
    if size != entry.size or digest.hexdigest() != entry.sha256:
        if temporary:
            temporary.unlink(missing_ok=True)
        raise VerificationError(
            f"{where}: member {entry.member_name!r} has sha256 {digest.hexdigest()} "
            f"({size} bytes), the window manifest says {entry.sha256} ({entry.size} bytes)"
        )


def _place(run: _Run, temporary: Path, name: str) -> bool:
    """Rename a verified file to `root/name`; a path that is unsafe or cannot be made is
    refused (a failure), never written elsewhere."""
    try:
        target = _target(run, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        _target(run, name)  # again: the folders now exist, any symlink among them resolved
        os.replace(temporary, target)
    except (UnsafePath, OSError) as err:
        temporary.unlink(missing_ok=True)
        run.summary.failures.append(f"refused {name}: {_reason(err)}")
        return False
    return True


def _target(run: _Run, name: str) -> Path:
    if name.split("/", 1)[0].casefold() == run.staging.name.casefold():
        raise UnsafePath(f"{name!r} is the extract's own working folder")
    return safe_target(run.root, name)


def _index_entry(name: str, file: FileRef, manifest: WindowManifest) -> dict[str, Any]:
    return {
        "path": name,
        "key": file.key,
        "version_id": file.version_id,
        "sequencer": file.sequencer,
        "event_time_ms": file.event_time_ms,
        "file_id": file.file_id,
        "size": file.size,
        "sha256": file.sha256,
        "window_id": file.window_id,
        "archive": manifest.parts[file.part - 1].key,
        "member_name": file.member_name,
    }


def _write_index(
    run: _Run, name: str, written: list[dict[str, Any]], *, all_versions: bool
) -> Path | None:
    document = {
        "format_version": INDEX_FORMAT,
        "all_versions": all_versions,
        "files": sorted(written, key=lambda entry: str(entry["path"])),
    }
    temporary = run.staging / "index.json"
    text = json.dumps(document, ensure_ascii=False, indent=1, sort_keys=True) + "\n"
    temporary.write_text(text, encoding="utf-8")
    return run.root / name if _place(run, temporary, name) else None


def _reason(err: BaseException) -> str:
    if isinstance(err, S3Error):
        return f"{err.code}: {err.message} ({err.bucket_name}/{err.object_name})"
    if isinstance(err, (VerificationError, ManifestError, UnsafePath)):
        return str(err)
    return f"{type(err).__name__}: {err}"


def size_text(count: int) -> str:
    """Bytes for people: `532 B`, `1.2 MB`."""
    if count < 1000:
        return f"{count} B"
    scaled = float(count)
    for unit in ("KB", "MB", "GB"):
        scaled /= 1000
        if scaled < 1000 or unit == "GB":
            break
    return f"{scaled:.1f} {unit}"
