"""What has arrived in MinIO, read from the window manifests delivery writes last, beside the
window's archives (`<window-id>.manifest.json`, delivery.commit): a consumer's view."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from minio import Minio

from delivery.layout import INCOMING, MANIFEST_SUFFIX, placements


@dataclass(frozen=True)
class Arrival:
    key: str
    version_id: str
    sha256: str
    size: int
    window_id: str
    archive: str


class ManifestReader:
    """Reads each window manifest once; `new_arrivals()` returns the files of windows committed
    since the last call."""

    def __init__(self, client: Minio, bucket: str, prefix: str = "") -> None:
        self._client = client
        self._bucket = bucket
        self._prefix = prefix
        self._seen: set[str] = set()

    def new_arrivals(self) -> list[Arrival]:
        found: list[Arrival] = []
        for name in self._manifests():
            if name in self._seen:
                continue
            manifest = self._read(name)
            self._seen.add(name)
            found.extend(
                Arrival(
                    key=entry["key"],
                    version_id=entry["version_id"],
                    sha256=entry["sha256"],
                    size=entry["size"],
                    window_id=manifest["window_id"],
                    archive=archive,
                )
                for archive, entry in placements(manifest)
            )
        return found

    def _manifests(self) -> Iterator[str]:
        for obj in self._client.list_objects(self._bucket, prefix=self._prefix, recursive=True):
            name = str(obj.object_name)
            if name.endswith(MANIFEST_SUFFIX) and f"/{INCOMING}/" not in name:
                yield name

    def _read(self, name: str) -> dict[str, Any]:
        response = self._client.get_object(self._bucket, name)
        try:
            document: dict[str, Any] = json.loads(response.read())
        finally:
            response.close()
            response.release_conn()
        return document
