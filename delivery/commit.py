"""Where a window's objects live in MinIO, and the window manifest that commits them (DESIGN §3).

Parts are uploaded and verified under `<prefix>/_incoming/<window-id>/`, which no consumer
reads; once every part is verified they are copied server-side to their final keys
(`<prefix>/dt=…/hour=…/<window-id>[.pNNN].tar.gz`) and then, last, the window manifest
`<window-id>.manifest.json` is written beside them: the commit marker. A consumer acts on
manifests only, so it never takes a part of an unfinished window for a delivered one.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Final

from delivery.archive import Exclusion, Writable, canonical_json, exclusion_entry
from delivery.ledger import PartRecord
from delivery.window import WindowName

WINDOW_MANIFEST_FORMAT: Final = 2
MANIFEST_SUFFIX: Final = ".manifest.json"
INCOMING: Final = "_incoming"
"""Leading underscore: Hive-style readers (Athena, Spark, DuckDB) skip it, and so must people."""


def archive_key(prefix: str, name: WindowName, part: int, parts: int) -> str:
    """`<prefix>/dt=…/hour=…/<window-id>[.pNNN].tar.gz`: a part's final key."""
    suffix = f".p{part:03d}" if parts > 1 else ""
    return f"{prefix}/dt={name.dt}/hour={name.hour}/{name.window_id}{suffix}.tar.gz"


def window_manifest_key(prefix: str, name: WindowName) -> str:
    return f"{prefix}/dt={name.dt}/hour={name.hour}/{name.window_id}{MANIFEST_SUFFIX}"


def window_manifest_beside(part_key: str, window_id: str) -> str:
    """The window manifest's key, from one of the window's final part keys."""
    return f"{part_key.rsplit('/', 1)[0]}/{window_id}{MANIFEST_SUFFIX}"


def incoming_prefix(prefix: str, window_id: str) -> str:
    return f"{prefix}/{INCOMING}/{window_id}/"


def incoming_key(prefix: str, window_id: str, part: int) -> str:
    """Where part `part` is uploaded and verified before the window commits."""
    return f"{incoming_prefix(prefix, window_id)}p{part:03d}.tar.gz"


def incoming_manifest_key(prefix: str, window_id: str, part: int) -> str:
    """The part's own manifest (its `MANIFEST.json`), kept beside it so a later invocation
    learns the part's files without reading the archive."""
    return f"{incoming_prefix(prefix, window_id)}p{part:03d}{MANIFEST_SUFFIX}"


def window_manifest(
    window_id: str,
    staged_key: str,
    parts: Sequence[tuple[PartRecord, Iterable[Mapping[str, Any]]]],
    exclusions: Sequence[Exclusion],
) -> bytes:
    """`write_window_manifest`'s bytes, whole: for a window of a few files."""
    out = io.BytesIO()
    write_window_manifest(out, window_id, staged_key, parts, exclusions)
    return out.getvalue()


def write_window_manifest(
    out: Writable,
    window_id: str,
    staged_key: str,
    parts: Sequence[tuple[PartRecord, Iterable[Mapping[str, Any]]]],
    exclusions: Sequence[Exclusion],
) -> None:
    """The commit marker, written to `out` a file at a time: every part (final key, sha256,
    size, file count) and every file (the part manifests' entries, each with its part number,
    read as they are written), then the exclusions.

    Compact canonical JSON, like the part manifests (delivery.archive.write_manifest); the
    bytes are those of the whole document dumped at once, keys sorted.
    """
    excluded = [exclusion_entry(x) for x in exclusions]
    # Keys sorted: "excluded", "files", then the window's scalars and its parts.
    out.write(b'{"excluded":' + canonical_json(excluded) + b',"files":[')
    first = True
    for part, entries in parts:
        for entry in entries:
            line = canonical_json({**entry, "part": part.part})
            out.write(line if first else b"," + line)
            first = False
    rest = {
        "format_version": WINDOW_MANIFEST_FORMAT,
        "window_id": window_id,
        "staged_key": staged_key,
        "parts": [
            {
                "part": part.part,
                "key": part.minio_key,
                "sha256": part.sha256,
                "size": part.size,
                "file_count": part.file_count,
            }
            for part, _ in parts
        ],
    }
    out.write(b"]," + canonical_json(rest)[1:] + b"\n")


def placements(manifest: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(archive key, file entry) for each file a window manifest lists."""
    keys = {int(part["part"]): str(part["key"]) for part in manifest.get("parts", [])}
    for entry in manifest.get("files", []):
        yield keys[int(entry["part"])], entry
