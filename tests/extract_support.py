"""Delivered windows for `sluice extract`'s tests, built as delivery builds them.

Parts are `delivery.archive.write_archive` of `delivery.archive.manifest`, member names from
`delivery.names.safe_member_names` over the window, and the window manifest (the commit marker)
from `delivery.commit.window_manifest`, as delivery writes it; test_delivery pins its fields.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from minio import Minio

from delivery.archive import ArchiveFile, Exclusion, manifest, write_archive
from delivery.commit import window_manifest
from delivery.ledger import PartRecord
from delivery.names import safe_member_names
from transform.envelope import file_id

LANDING = "sluice-landing"
PREFIX = "sluice"


@dataclass(frozen=True)
class Landed:
    """One landed version of a key, as delivery archives it."""

    key: str
    body: bytes
    version_id: str
    sequencer: str | None = None
    event_time_ms: int = 1_765_044_000_000

    @property
    def file_id(self) -> str:
        return file_id(LANDING, self.key, self.version_id)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


@dataclass
class Window:
    """A delivered window: its objects in MinIO (parts, then the manifest) by key."""

    window_id: str
    directory: str
    manifest_key: str
    manifest: bytes
    parts: dict[str, bytes] = field(default_factory=dict)

    def put(self, client: Minio, bucket: str, *, committed: bool = True) -> None:
        """Parts first, the manifest last (the commit), as delivery writes them."""
        for key, data in self.parts.items():
            client.put_object(bucket, key, io.BytesIO(data), len(data))
        if committed:
            client.put_object(
                bucket, self.manifest_key, io.BytesIO(self.manifest), len(self.manifest)
            )


def window_id(stamp: str, tail: str) -> str:
    """A Firehose object name without extension: `stamp` is `yyyy-MM-dd-HH-mm-ss`."""
    return f"sluice-test-0-1-{stamp}-{tail:0>8}-0000-4000-8000-000000000000"


def build_window(
    dt: str,
    hour: str,
    window: str,
    parts: Sequence[Sequence[Landed]],
    *,
    exclusions: Sequence[Exclusion] = (),
    prefix: str = PREFIX,
) -> Window:
    directory = f"{prefix}/dt={dt}/hour={hour}"
    staged_key = f"buffers/dt={dt}/hour={hour}/{window}.json.gz"
    landed = [file for part in parts for file in part]
    names = safe_member_names([(file.file_id, file.key) for file in landed])
    bodies = {file.file_id: file.body for file in landed}
    built = Window(window, directory, f"{directory}/{window}.manifest.json", b"")
    committed: list[tuple[PartRecord, list[dict[str, Any]]]] = []
    for number, part in enumerate(parts, start=1):
        files = [_archive_file(file, names[file.file_id]) for file in part]
        own = manifest(
            window, staged_key, number, len(parts), files, exclusions if number == 1 else []
        )
        out = io.BytesIO()

        def open_body(file: ArchiveFile) -> contextlib.AbstractContextManager[BinaryIO]:
            return contextlib.nullcontext(io.BytesIO(bodies[file.file_id]))

        write_archive(out, own, files, open_body)
        data = out.getvalue()
        suffix = "" if len(parts) == 1 else f".p{number:03d}"
        key = f"{directory}/{window}{suffix}.tar.gz"
        built.parts[key] = data
        record = PartRecord(
            part=number,
            minio_key=key,
            minio_version=None,
            sha256=hashlib.sha256(data).hexdigest(),
            etag="",
            size=len(data),
            part_size=0,
            file_count=len(files),
            check="etag",
        )
        committed.append((record, json.loads(own)["files"]))
    built.manifest = window_manifest(window, staged_key, committed, exclusions)
    return built


def _archive_file(file: Landed, member_name: str) -> ArchiveFile:
    return ArchiveFile(
        file_id=file.file_id,
        key=file.key,
        version_id=file.version_id,
        size=len(file.body),
        sha256=file.sha256,
        event_time_ms=file.event_time_ms,
        member_name=member_name,
        check="envelope-sha256",
        sequencer=file.sequencer,
    )
