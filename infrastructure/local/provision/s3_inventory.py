"""S3 Inventory, stood in for: moto keeps an inventory configuration but never writes a report, so
the local stack writes one a (scaled) day, laid out as S3 does. Spec: docs/local-stack.md,
`provision/s3_inventory.py`.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import logging
import threading
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final
from urllib.parse import quote

from delivery.inventory import report_prefix

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

FIELDS: Final = ("Bucket", "Key", "VersionId", "IsLatest", "IsDeleteMarker", "Size")
OPTIONAL_FIELDS: Final = ("LastModifiedDate", "ETag")
"""What inventory.tf's `optional_fields` asks for, in S3's order."""
ROWS_PER_FILE: Final = 10_000
REPORT_PERIOD_SECONDS: Final = 86_400
"""S3 writes a daily report; here, once a scaled day, the first a day after `start`."""

log = logging.getLogger(__name__)


class DailyReports:
    """Writes a report every scaled day on a thread, as S3's daily schedule does."""

    def __init__(self, s3: S3Client, source: str, destination: str, *, time_scale: float) -> None:
        self._s3, self._source, self._destination = s3, source, destination
        self.set_time_scale(time_scale)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="s3-inventory", daemon=True)

    def set_time_scale(self, time_scale: float) -> None:
        """A day at `time_scale`, from the next report on (the wait under way ends first)."""
        if not time_scale > 0:
            raise ValueError(f"time_scale must be positive, not {time_scale!r}")
        self._period = REPORT_PERIOD_SECONDS / time_scale

    def start(self) -> DailyReports:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stopping.wait(self._period):
            try:
                write_report(self._s3, self._source, self._destination, now=datetime.now(UTC))
            except Exception:  # the next day's report tries again, as S3's would
                log.exception("the inventory report of %s could not be written", self._source)


def write_report(
    s3: S3Client,
    source: str,
    destination: str,
    *,
    now: datetime,
    rows_per_file: int = ROWS_PER_FILE,
) -> str:
    """Write a report of `source`'s versions to `destination`; the manifest's key."""
    prefix = report_prefix(source)
    data_files = []
    for rows in _chunks(_versions(s3, source), rows_per_file):
        key = f"{prefix}data/{uuid.uuid4()}.csv.gz"
        body = _gzip_csv(rows)
        s3.put_object(Bucket=destination, Key=key, Body=body)
        data_files.append({"key": key, "size": len(body), "MD5checksum": _md5(body)})
    manifest = {
        "sourceBucket": source,
        "destinationBucket": f"arn:aws:s3:::{destination}",
        "version": "2016-11-30",
        "creationTimestamp": str(int(now.timestamp() * 1000)),
        "fileFormat": "CSV",
        "fileSchema": ", ".join(FIELDS + OPTIONAL_FIELDS),
        "files": data_files,
    }
    folder = f"{prefix}{now.astimezone(UTC):%Y-%m-%dT%H-%MZ}/"
    body = json.dumps(manifest).encode()
    s3.put_object(Bucket=destination, Key=f"{folder}manifest.json", Body=body)
    s3.put_object(Bucket=destination, Key=f"{folder}manifest.checksum", Body=_md5(body).encode())
    return f"{folder}manifest.json"


def _versions(s3: S3Client, bucket: str) -> list[list[str]]:
    rows = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for version in page.get("Versions", []):
            rows.append(_row(bucket, version, delete_marker=False))
        for marker in page.get("DeleteMarkers", []):
            rows.append(_row(bucket, marker, delete_marker=True))
    return rows


def _row(bucket: str, entry: object, *, delete_marker: bool) -> list[str]:
    item = dict(entry)  # type: ignore[call-overload]  # a boto3 TypedDict: versions and markers
    modified: datetime = item["LastModified"]
    return [
        bucket,
        quote(item["Key"], safe=""),
        item.get("VersionId") or "",
        str(bool(item.get("IsLatest"))).lower(),
        str(delete_marker).lower(),
        "" if delete_marker else str(item.get("Size", 0)),
        modified.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "" if delete_marker else str(item.get("ETag", "")).strip('"'),
    ]


def _chunks(rows: list[list[str]], size: int) -> list[list[list[str]]]:
    return [rows[start : start + size] for start in range(0, len(rows), size)] or [[]]


def _gzip_csv(rows: list[list[str]]) -> bytes:
    text = io.StringIO()
    csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(rows)
    return gzip.compress(text.getvalue().encode(), mtime=0)


def _md5(body: bytes) -> str:
    return hashlib.md5(body, usedforsecurity=False).hexdigest()
