"""What `sluice extract` writes, decided from window manifests alone (README "For the on-prem
consumer"): the manifests read and checked, the version of each landing key chosen, the paths
they get, and the refusal of any path that would land outside the output folder.

No I/O but the file system checks of `safe_target`; `delivery.extract` downloads and writes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, NamedTuple
from urllib.parse import quote

from delivery.commit import WINDOW_MANIFEST_FORMAT
from delivery.layout import MANIFEST_SUFFIX
from delivery.names import safe_member_names

INDEX_NAME: Final = "extract-index.json"
_INDEX_ID: Final = "\0extract-index"
"""The index's own entry among the names: a NUL is in no file id."""

_SHA256_HEX: Final = re.compile("[0-9a-f]{64}")
_HEX: Final = re.compile("[0-9A-Fa-f]+")
_PART_NAME: Final = re.compile(r"(?P<window>[^/]+?)(?:\.p\d{3,})?\.tar\.gz")
_PART_SIDECAR: Final = re.compile(r"\.p\d{3,}$")
_WINDOW_TIME: Final = re.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-")
"""Firehose's object name: `<stream>-<version>-<yyyy-MM-dd-HH-mm-ss>-<uuid>` (DESIGN §3)."""


class ManifestError(ValueError):
    """A window manifest that cannot be trusted; the message says what is wrong with it."""


class UnsafePath(ValueError):
    """A path that would be written outside the output folder, or is no plain relative path."""


class PartRef(NamedTuple):
    part: int
    key: str
    sha256: str
    """Of the whole `.tar.gz`, lowercase hex."""
    size: int
    file_count: int


class FileRef(NamedTuple):
    """One archived version of a landing key, as its window manifest lists it."""

    window_id: str
    part: int
    member_name: str
    key: str
    version_id: str
    file_id: str
    size: int
    sha256: str
    event_time_ms: int
    sequencer: str | None


class WindowManifest(NamedTuple):
    manifest_key: str
    window_id: str
    staged_key: str
    parts: tuple[PartRef, ...]
    files: tuple[FileRef, ...]
    excluded: int


class Selection(NamedTuple):
    chosen: tuple[FileRef, ...]
    """What to write: by key (code point order), each key's versions oldest first."""
    older_skipped: int
    """Versions left out because a newer version of their key was chosen."""
    repeats_skipped: int
    """Second deliveries of a version already chosen or skipped (a forced replay)."""


# --------------------------------------------------------------------------- listing


def is_window_manifest(name: str) -> bool:
    """`<window-id>.manifest.json`, not a legacy part sidecar `<window-id>.pNNN.manifest.json`."""
    if not name.endswith(MANIFEST_SUFFIX):
        return False
    stem = name[: -len(MANIFEST_SUFFIX)]
    return bool(stem) and _PART_SIDECAR.search(stem) is None


def part_window_id(name: str) -> str | None:
    """The window id of a part's object name (`<id>.tar.gz`, `<id>.pNNN.tar.gz`), else None."""
    match = _PART_NAME.fullmatch(name)
    return match.group("window") if match else None


def hour_prefixes(prefix: str, since: datetime, until: datetime) -> list[str]:
    """`<prefix>/dt=…/hour=…/` of every UTC hour that overlaps [since, until)."""
    if since >= until:
        raise ValueError(f"since {since.isoformat()} is not before until {until.isoformat()}")
    hour = since.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    prefixes: list[str] = []
    while hour < until:
        prefixes.append(f"{prefix}/dt={hour:%Y-%m-%d}/hour={hour:%H}/")
        hour += timedelta(hours=1)
    return prefixes


def window_time(window_id: str) -> datetime | None:
    """The time Firehose wrote into the window's name, or None when it carries none."""
    found = _WINDOW_TIME.findall(window_id)
    if not found:
        return None
    year, month, day, hour, minute, second = (int(field) for field in found[-1])
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        return None


def window_hours(prefix: str, window_id: str) -> list[str] | None:
    """The hour prefixes where a window's manifest can be: its name's hour and the hours beside
    it (the partition is the oldest record's arrival, the name's time is close to it but not
    promised equal). None when the id carries no time."""
    moment = window_time(window_id)
    if moment is None:
        return None
    hour = moment.replace(minute=0, second=0)
    return hour_prefixes(prefix, hour - timedelta(hours=1), hour + timedelta(hours=2))


# --------------------------------------------------------------------------- manifests


def parse_window_manifest(manifest_key: str, data: bytes) -> WindowManifest:
    """The window manifest at `manifest_key`, checked; ManifestError says what does not hold.

    Part keys must be the window's own final names beside the manifest, so a manifest can never
    send the reader to `_incoming/` or anywhere else.
    """
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, ValueError) as err:
        raise ManifestError(f"not JSON: {err}") from None
    if not isinstance(document, dict):
        raise ManifestError("not a JSON object")
    version = document.get("format_version")
    if version != WINDOW_MANIFEST_FORMAT:
        if version == 1:
            raise ManifestError(
                "format_version 1: a part sidecar written before window manifests existed; "
                f"this reader reads format_version {WINDOW_MANIFEST_FORMAT}"
            )
        raise ManifestError(
            f"format_version {version!r}; this reader reads {WINDOW_MANIFEST_FORMAT}"
        )
    directory, _, name = manifest_key.rpartition("/")
    window_id = _text(document, "window_id", "manifest")
    if name != window_id + MANIFEST_SUFFIX:
        raise ManifestError(f"window_id {window_id!r} is not the one its name gives")
    parts = _parts(document, directory, window_id)
    files = _files(document, window_id, parts)
    excluded = document.get("excluded", [])
    if not isinstance(excluded, list):
        raise ManifestError("'excluded' is not a list")
    return WindowManifest(
        manifest_key=manifest_key,
        window_id=window_id,
        staged_key=_text(document, "staged_key", "manifest"),
        parts=parts,
        files=files,
        excluded=len(excluded),
    )


def _parts(document: Mapping[str, Any], directory: str, window_id: str) -> tuple[PartRef, ...]:
    entries = document.get("parts")
    if not isinstance(entries, list):  # empty only for a window all of whose files are excluded
        raise ManifestError("'parts' is not a list")
    parts: list[PartRef] = []
    for number, entry in enumerate(entries, start=1):
        where = f"part {number}"
        if not isinstance(entry, dict) or _count(entry, "part", where) != number:
            raise ManifestError(f"{where}: parts must be objects numbered 1, 2, … in order")
        suffix = "" if len(entries) == 1 else f".p{number:03d}"
        expected_key = f"{directory}/{window_id}{suffix}.tar.gz"
        key = _text(entry, "key", where)
        if key != expected_key:
            raise ManifestError(f"{where}: key {key!r} is not {expected_key!r}")
        parts.append(
            PartRef(
                part=number,
                key=key,
                sha256=_sha256(entry, where),
                size=_count(entry, "size", where),
                file_count=_count(entry, "file_count", where),
            )
        )
    return tuple(parts)


def _files(
    document: Mapping[str, Any], window_id: str, parts: Sequence[PartRef]
) -> tuple[FileRef, ...]:
    entries = document.get("files")
    if not isinstance(entries, list):
        raise ManifestError("'files' is not a list")
    files: list[FileRef] = []
    members: set[tuple[int, str]] = set()
    for index, entry in enumerate(entries):
        where = f"file {index}"
        if not isinstance(entry, dict):
            raise ManifestError(f"{where}: not an object")
        part = _count(entry, "part", where)
        if not 1 <= part <= len(parts):
            raise ManifestError(f"{where}: part {part} is not one of the {len(parts)} parts")
        member_name = _text(entry, "member_name", where)
        if not member_name or (part, member_name) in members:
            raise ManifestError(f"{where}: member name {member_name!r} is empty or repeated")
        members.add((part, member_name))
        sequencer = entry.get("sequencer")
        if sequencer is not None and not (isinstance(sequencer, str) and _HEX.fullmatch(sequencer)):
            raise ManifestError(f"{where}: sequencer {sequencer!r} is not hex or null")
        files.append(
            FileRef(
                window_id=window_id,
                part=part,
                member_name=member_name,
                key=_text(entry, "key", where),
                version_id=_text(entry, "version_id", where),
                file_id=_text(entry, "file_id", where),
                size=_count(entry, "size", where),
                sha256=_sha256(entry, where),
                event_time_ms=_count(entry, "event_time_ms", where),
                sequencer=sequencer,
            )
        )
    for declared in parts:
        listed = sum(1 for file in files if file.part == declared.part)
        if listed != declared.file_count:
            raise ManifestError(
                f"part {declared.part}: file_count {declared.file_count}, files {listed}"
            )
    return tuple(files)


def _text(entry: Mapping[str, Any], field: str, where: str) -> str:
    value = entry.get(field)
    if not isinstance(value, str):
        raise ManifestError(f"{where}: {field!r} is not a string")
    return value


def _count(entry: Mapping[str, Any], field: str, where: str) -> int:
    value = entry.get(field)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ManifestError(f"{where}: {field!r} is not a non-negative integer")
    return value


def _sha256(entry: Mapping[str, Any], where: str) -> str:
    value = entry.get("sha256")
    if not isinstance(value, str) or not _SHA256_HEX.fullmatch(value):
        raise ManifestError(f"{where}: 'sha256' is not 64 lowercase hex digits")
    return value


# --------------------------------------------------------------------------- versions


def sequencer_order(sequencer: str, width: int) -> str:
    """A sort key for S3 sequencers of one key: left-padded with zeros to `width`, upper case.

    AWS (S3 User Guide, "Event message structure"): the greater sequencer is the later event,
    and sequencers "can be of different lengths. So to compare these values, you first left
    pad the shorter value with zeros, and then do a lexicographical comparison."
    """
    return sequencer.upper().rjust(width, "0")


def compare_sequencers(first: str, second: str) -> int:
    """-1, 0 or 1 as `first` is an earlier, the same or a later event than `second`."""
    width = max(len(first), len(second))
    a, b = sequencer_order(first, width), sequencer_order(second, width)
    return (a > b) - (a < b)


def oldest_to_newest(versions: Sequence[FileRef]) -> list[FileRef]:
    """The versions of one landing key, oldest first.

    When every version carries a sequencer, by sequencer (S3's own order). When one has none (a
    replay's), the key's versions are ordered by event_time_ms, then sequencer (none first),
    then version_id: one total order for the whole key, so the choice never depends on the order
    windows were read in. Version ids carry no order; they only break exact ties.
    """
    width = max((len(version.sequencer or "") for version in versions), default=0)
    if all(version.sequencer is not None for version in versions):
        return sorted(
            versions,
            key=lambda v: (sequencer_order(v.sequencer or "", width), v.version_id),
        )
    return sorted(
        versions,
        key=lambda v: (v.event_time_ms, sequencer_order(v.sequencer or "", width), v.version_id),
    )


def select(files_in_window_order: Iterable[FileRef], *, all_versions: bool) -> Selection:
    """Per landing key, the newest version (or every version, oldest first).

    A version delivered twice (same key and version id: a forced replay) counts once: the copy
    that carries a sequencer, else the first in window order.
    """
    by_key: dict[str, dict[str, FileRef]] = {}
    repeats = 0
    for file in files_in_window_order:
        versions = by_key.setdefault(file.key, {})
        kept = versions.get(file.version_id)
        if kept is None:
            versions[file.version_id] = file
            continue
        repeats += 1
        if kept.sequencer is None and file.sequencer is not None:
            versions[file.version_id] = file
    chosen: list[FileRef] = []
    older = 0
    for key in sorted(by_key):
        ordered = oldest_to_newest(list(by_key[key].values()))
        if all_versions:
            chosen.extend(ordered)
        else:
            chosen.append(ordered[-1])
            older += len(ordered) - 1
    return Selection(chosen=tuple(chosen), older_skipped=older, repeats_skipped=repeats)


# --------------------------------------------------------------------------- names


def versioned_key(file: FileRef) -> str:
    """What `--all-versions` names a version: `<key>~v<sequencer>`, or `<key>~v<version id>`
    (percent-encoded) when it has no sequencer; a trailing `/` of the key is dropped first."""
    tag = file.sequencer.upper() if file.sequencer else quote(file.version_id, safe="")
    return f"{file.key.rstrip('/')}~v{tag}"


def output_names(
    chosen: Sequence[FileRef], *, all_versions: bool
) -> tuple[dict[FileRef, str], str]:
    """Each chosen version's path under the output folder, and the index's own name.

    `delivery.names.safe_member_names` over the whole selection at once, in `chosen`'s order
    (keys in code point order), so keys from different windows cannot clash either: a key
    that is another's directory, or equal to another but for case or Unicode form, is renamed
    `<name>~<8 hex of its file id>`. The index comes first, so `extract-index.json` stays
    the index's and a key of that name is renamed.
    """
    entries = [(_INDEX_ID, INDEX_NAME)]
    by_id: dict[str, FileRef] = {}
    for file in chosen:
        unique = file.file_id
        if unique in by_id:  # only a manifest that lies about ids; keep it distinct anyway
            unique = f"{file.file_id}#{file.window_id}/{file.part}/{file.member_name}"
        by_id[unique] = file
        entries.append((unique, versioned_key(file) if all_versions else file.key))
    names = safe_member_names(entries)
    return {file: names[unique] for unique, file in by_id.items()}, names[_INDEX_ID]


def safe_target(root: Path, name: str) -> Path:
    """`root / name`, refused unless it stays inside `root` (resolved: existing symlinks are
    followed). `root` must already be resolved."""
    segments = name.split("/")
    if (
        not name
        or name.startswith("/")
        or "\0" in name
        or "\\" in name
        or any(segment in ("", ".", "..") for segment in segments)
    ):
        raise UnsafePath(f"{name!r} is not a relative path of plain segments")
    target = root.joinpath(*segments)
    for resolved in (target.parent.resolve(), target.resolve()):
        if not resolved.is_relative_to(root):
            raise UnsafePath(f"{name!r} resolves to {resolved}, outside {root}")
    return target
