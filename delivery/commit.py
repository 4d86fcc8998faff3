"""The window manifest that commits a delivered window (DESIGN §3).

Once every part is verified and copied to its final key, the window manifest
`<window-id>.manifest.json` is written beside them, last: the commit marker. A consumer acts on
manifests only, so it never takes a part of an unfinished window for a delivered one. Where
each object lives is delivery.layout.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from delivery.archive import Exclusion, Writable, canonical_json, exclusion_entry
from delivery.ledger import PartRecord

WINDOW_MANIFEST_FORMAT: Final = 2


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
