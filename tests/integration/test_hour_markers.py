"""Hour markers (`delivery.hour_markers`) written by redrive runs into SeaweedFS as MinIO; the
staging bucket and the ledger are moto's, in process, as in tests/unit/test_redrive.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
from minio import Minio

from delivery.hour_markers import Hour, HourMarkers
from delivery.layout import window_name
from delivery.ledger import PartRecord
from infrastructure.local.provision.seaweedfs import SeaweedFS
from tests.unit.test_redrive import EXTENSION, HOUR, Redrive, new_redrive

pytestmark = pytest.mark.slow
T = TypeVar("T")


@pytest.fixture
def rd(buckets: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Redrive:
    return new_redrive(monkeypatch)


class Bucket:
    """MinIO's `call(fn(client, settings))`, on the test's SeaweedFS bucket."""

    def __init__(self, seaweedfs: SeaweedFS) -> None:
        self.client = seaweedfs.client()
        self.bucket = seaweedfs.bucket

    def call(self, fn: Callable[[Minio, Any], T]) -> T:
        return fn(self.client, self)

    def marker(self, key: str) -> dict[str, Any] | None:
        names = {o.object_name for o in self.client.list_objects(self.bucket, recursive=True)}
        if key not in names:
            return None
        document: dict[str, Any] = json.loads(self.client.get_object(self.bucket, key).read())
        return document


def deliver(rd: Redrive, key: str, files: int) -> str:
    """What delivery records of a delivered window (delivery/delivering.py), the hour of a
    window staged late put back under the sweep included."""
    name = window_name(key, EXTENSION)
    rd.ledger.begin(name.window_id, key, [])
    part = PartRecord(
        1, f"sluice/{name.window_id}.tar.gz", None, "0" * 64, "e", 10, 8, files, "etag"
    )
    rd.ledger.mark_delivered(name.window_id, [part], file_count=files)
    rd.ledger.lower_sweep_low_water(Hour(name.dt, name.hour).start.timestamp())
    return name.window_id


def marker_key(rd: Redrive, hours_ago: int) -> str:
    at = datetime.fromtimestamp(rd.clock.now - hours_ago * HOUR, UTC)
    return f"sluice/dt={at:%Y-%m-%d}/hour={at:%H}/_SUCCESS.json"


def test_markers_for_closed_hours_whose_windows_are_all_delivered(
    rd: Redrive, seaweedfs: SeaweedFS
) -> None:
    minio = Bucket(seaweedfs)
    rd.markers = HourMarkers(minio, "sluice")
    # GIVEN the hour before last: two windows delivered and one empty
    rd.clock.now = (rd.clock.now // HOUR) * HOUR + 30 * 60  # half past the hour
    two_ago = [rd.stage(age_seconds=2 * HOUR - 60 * n) for n in range(3)]
    delivered = [deliver(rd, two_ago[0], 3), deliver(rd, two_ago[1], 2)]
    empty_id = window_name(two_ago[2], EXTENSION).window_id
    rd.ledger.begin(empty_id, two_ago[2], [])
    rd.ledger.mark_empty(empty_id, two_ago[2])
    # ... last hour: one delivered, one still claimed; this hour: one delivered (not closed)
    last = [rd.stage(age_seconds=HOUR - 60 * n) for n in range(2)]
    deliver(rd, last[0], 1)
    rd.ledger.begin(window_name(last[1], EXTENSION).window_id, last[1], [])
    deliver(rd, rd.stage(age_seconds=60), 1)
    # WHEN redrive runs
    report = rd.run()
    # THEN only the closed, fully delivered hour has its marker, with the windows and counts
    assert report.hour_markers == [marker_key(rd, 2)]
    marker = minio.marker(marker_key(rd, 2))
    assert marker is not None
    assert (marker["files"], marker["archives"], marker["revision"]) == (5, 2, 1)
    assert sorted(w["window_id"] for w in marker["windows"]) == sorted([*delivered, empty_id])
    assert minio.marker(marker_key(rd, 1)) is None
    assert minio.marker(marker_key(rd, 0)) is None
    # WHEN it runs again with nothing new, and after a late window of that hour is delivered
    again = rd.run()
    deliver(rd, rd.stage(age_seconds=2 * HOUR - 600), 4)
    late = rd.run()
    # THEN the marker is left alone, then rewritten with the late window as revision 2
    assert again.hour_markers == []
    assert late.hour_markers == [marker_key(rd, 2)]
    rewritten = minio.marker(marker_key(rd, 2))
    assert rewritten is not None
    assert (rewritten["files"], rewritten["revision"], len(rewritten["windows"])) == (9, 2, 4)


def test_no_marker_while_minio_is_down_or_in_a_dry_run(rd: Redrive, seaweedfs: SeaweedFS) -> None:
    minio = Bucket(seaweedfs)
    rd.markers = HourMarkers(minio, "sluice")
    rd.clock.now = (rd.clock.now // HOUR) * HOUR + 30 * 60
    deliver(rd, rd.stage(age_seconds=2 * HOUR), 1)
    # WHEN redrive runs with MinIO down, then as a dry run
    rd.healthy = False
    down = rd.run()
    rd.healthy = True
    dry = rd.run(dry_run=True)
    # THEN no marker is written
    assert down.hour_markers == dry.hour_markers == []
    assert minio.marker(marker_key(rd, 2)) is None
