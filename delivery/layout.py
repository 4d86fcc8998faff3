"""Where Sluice's objects live: a staged window's name, and the keys of its archives and
manifests in MinIO (DESIGN §3).

Parts are uploaded and verified under `<prefix>/_incoming/<window-id>/`, which no consumer
reads; once every part is verified they are copied server-side to their final keys
(`<prefix>/dt=…/hour=…/<window-id>[.pNNN].tar.gz`) and then, last, the window manifest
`<window-id>.manifest.json` is written beside them: the commit marker (delivery.commit).

Names only, no I/O and nothing heavy to import: the report, reconcile, redrive and the CLI
find things with it without loading the archive writer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, Final, NamedTuple

_PARTITION: Final = re.compile(r"(?:^|/)dt=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/")


class WindowKeyError(ValueError):
    """The staged key is not a window Firehose wrote under buffers/."""


class WindowName(NamedTuple):
    window_id: str
    dt: str
    hour: str


def window_name(staged_key: str, extension: str) -> WindowName:
    """`buffers/dt=…/hour=…/<window-id><extension>` → its id and partition."""
    match = _PARTITION.search(staged_key)
    base = staged_key.rsplit("/", 1)[-1]
    if not match or not base.endswith(extension) or len(base) == len(extension):
        raise WindowKeyError(
            f"{staged_key!r} is not a staged window (buffers/dt=YYYY-MM-DD/hour=HH/<id>{extension})"
        )
    return WindowName(window_id=base[: -len(extension)], dt=match.group(1), hour=match.group(2))


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


def placements(manifest: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(archive key, file entry) for each file a window manifest lists."""
    keys = {int(part["part"]): str(part["key"]) for part in manifest.get("parts", [])}
    for entry in manifest.get("files", []):
        yield keys[int(entry["part"])], entry
