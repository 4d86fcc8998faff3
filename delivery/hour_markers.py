"""Hour markers: `<prefix>/dt=…/hour=…/_SUCCESS.json` in MinIO once every window of an hour is
delivered, for batch consumers on MinIO's side (DESIGN §3's archive layout, one level up).

An hour's windows are the staged objects under its `buffers/dt=…/hour=…/` partition (Firehose's
arrival time, as the archives are partitioned). The hour is closed once its end is more than the
destination buffer interval + `unrecorded_grace_seconds` past: by then every window of it is
staged, or its absence is what redrive already treats as a loss. A closed hour whose windows
are all DELIVERED or EMPTY gets its marker: the windows, their archives, counts. Redrive writes
markers on its schedule (`delivery.redriving`), so an hour's marker appears within one redrive
interval of its last delivery. A window that is staged for the hour later still (Firehose
retrying its write for up to 24 h) makes the next run rewrite the marker, `revision` + 1.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NamedTuple, Protocol, TypeVar

from minio import Minio
from minio.error import S3Error

from delivery.ledger import WindowRecord, WindowState

MARKER_NAME: Final = "_SUCCESS.json"
FORMAT_VERSION: Final = 1
SETTLED: Final = frozenset({WindowState.DELIVERED, WindowState.EMPTY})

T = TypeVar("T")


class MinioCaller(Protocol):
    """`delivery.minio_access.MinioAccess`, or anything that calls `fn(client, settings)`."""

    def call(self, fn: Callable[[Minio, Any], T]) -> T: ...


class Hour(NamedTuple):
    dt: str
    """YYYY-MM-DD"""
    hour: str
    """HH"""

    @property
    def start(self) -> datetime:
        return datetime.strptime(f"{self.dt} {self.hour}", "%Y-%m-%d %H").replace(tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(hours=1)


def marker_key(prefix: str, hour: Hour) -> str:
    return f"{prefix}/dt={hour.dt}/hour={hour.hour}/{MARKER_NAME}"


def is_closed(hour: Hour, now: float, close_after_seconds: float) -> bool:
    return now >= hour.end.timestamp() + close_after_seconds


def marker_document(
    hour: Hour, windows: Sequence[WindowRecord], revision: int, now: float
) -> dict[str, Any]:
    """What the marker says: every window of the hour (all settled), in id order."""
    entries: list[dict[str, Any]] = [
        {
            "window_id": w.window_id,
            "state": str(w.state),
            "files": w.file_count,
            "excluded": w.exclusion_count,
            "archives": [part.minio_key for part in w.parts],
        }
        for w in sorted(windows, key=lambda w: w.window_id)
    ]
    return {
        "format_version": FORMAT_VERSION,
        "dt": hour.dt,
        "hour": hour.hour,
        "windows": entries,
        "files": sum(e["files"] for e in entries),
        "excluded": sum(e["excluded"] for e in entries),
        "archives": sum(len(e["archives"]) for e in entries),
        "revision": revision,
        "written_at": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"),
    }


class HourMarkers:
    """Reads and writes the markers in MinIO's archive bucket."""

    def __init__(self, minio: MinioCaller, prefix: str) -> None:
        self._minio = minio
        self._prefix = prefix

    def settle(self, hour: Hour, windows: Sequence[WindowRecord], now: float) -> str | None:
        """Write the hour's marker unless one already lists exactly these windows; returns the
        key written, or None. Every window must be settled."""
        unsettled = [w.window_id for w in windows if w.state not in SETTLED]
        if unsettled or not windows:
            raise ValueError(f"hour {hour} has windows not delivered: {unsettled}")
        key = marker_key(self._prefix, hour)
        existing = self._read(key)
        if existing is not None:
            listed = [entry["window_id"] for entry in existing.get("windows", [])]
            if listed == sorted(w.window_id for w in windows):
                return None
        revision = 1 if existing is None else int(existing.get("revision", 1)) + 1
        body = json.dumps(marker_document(hour, windows, revision, now), indent=1).encode()
        self._minio.call(
            lambda client, settings: client.put_object(
                settings.bucket,
                key,
                io.BytesIO(body),
                length=len(body),
                content_type="application/json",
            )
        )
        return key

    def _read(self, key: str) -> dict[str, Any] | None:
        def get(client: Minio, settings: Any) -> bytes | None:
            try:
                response = client.get_object(settings.bucket, key)
            except S3Error as err:
                if err.code in ("NoSuchKey", "NoSuchObject"):
                    return None
                raise
            try:
                return bytes(response.read())
            finally:
                response.close()
                response.release_conn()

        data = self._minio.call(get)
        if data is None:
            return None
        document: dict[str, Any] = json.loads(data)
        return document
