"""`sluice extract` against SeaweedFS as MinIO: an hour of windows built as delivery builds them.

The hour holds keys that cannot coexist on a file system, spread over windows (a file and a
folder of one name, a key ending in `/`, names equal but for case), two versions of one key
whose newest is in the older window (its sequencer the longer one), a multi-part window, a
window whose part was corrupted, a part without its manifest, a window under `_incoming/`, and
a window in the next hour: every written file is checked byte for byte, and the index.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from delivery.archive import Exclusion
from delivery.extract import ExtractError, extract
from infrastructure.cli import main
from infrastructure.local.provision.seaweedfs import SeaweedFS
from tests.extract_support import Landed, Window, build_window, window_id

pytestmark = pytest.mark.slow

DT, HOUR = "2026-12-06", "18"
SINCE = datetime(2026, 12, 6, 18, tzinfo=UTC)
UNTIL = datetime(2026, 12, 6, 19, tzinfo=UTC)

CLASH_FILE = Landed("clash/dir", b"a file where a folder must be", "v-clash", "0A01")
CLASH_INNER = Landed("clash/dir/inner.txt", b"inside the folder", "v-inner", "0B01")
CLASH_SLASH = Landed("clash/dir/", b"a key ending in a slash", "v-slash", "0C01")
LOWER = Landed("case.txt", b"lower case", "v-lower", "0D01")
UPPER = Landed("caSe.txt", b"UPPER CASE", "v-upper", "0E01")
# the newest version has the longer sequencer and is in the older window: only left-padding
# the shorter with zeros orders them right ("55…" > "0055…" as plain strings)
REPORT_NEW = Landed("reports/daily.csv", b"day,total\n6,42\n", "v-new", "0055AED6DCD90281F0")
REPORT_OLD = Landed("reports/daily.csv", b"day,total\n6,41\n", "v-old", "55AED6DCD90281E5")
BIG = Landed("nested/deep/file.bin", os.urandom(300_000), "v-big", None)
ACCENTED = Landed("données/été.txt", "déjà vu".encode(), "v-accented", "0C02")
UPWARD = Landed("../../escape.txt", b"tries to leave", "v-up", "0C03")
NEVER = Landed("bad/never.txt", b"in a corrupted part", "v-bad", "0F01")
GHOST = Landed("ghost.txt", b"in a part never committed", "v-ghost", "1001")
LATER = Landed("later.txt", b"next hour", "v-later", "1101")
EXCLUDED = Exclusion("f" * 64, "unreadable.json", "v-x", "unreadable:AccessDenied", "3 attempts")

WRITTEN = {
    CLASH_INNER: "clash/dir/inner.txt",
    CLASH_FILE: f"clash/dir~{CLASH_FILE.file_id[:8]}",
    CLASH_SLASH: f"clash/dir~{CLASH_SLASH.file_id[:8]}",
    UPPER: "caSe.txt",  # "caSe.txt" < "case.txt": first in code point order keeps its name
    LOWER: f"case.txt~{LOWER.file_id[:8]}",
    REPORT_NEW: "reports/daily.csv",
    BIG: "nested/deep/file.bin",
    ACCENTED: "données/été.txt",
    UPWARD: "%2E%2E/%2E%2E/escape.txt",
}


@dataclass
class Hour:
    bucket: str
    older: Window
    newer: Window
    corrupted: Window


def hour_of_windows(seaweedfs: SeaweedFS) -> Hour:
    client = seaweedfs.client()
    bucket = seaweedfs.bucket
    older = build_window(
        DT,
        HOUR,
        window_id("2026-12-06-18-01-00", "a"),
        [[CLASH_FILE, LOWER, REPORT_NEW]],
        exclusions=[EXCLUDED],
    )
    newer = build_window(  # two parts
        DT, HOUR, window_id("2026-12-06-18-02-00", "b"), [[CLASH_INNER], [UPPER, REPORT_OLD]]
    )
    third = build_window(
        DT, HOUR, window_id("2026-12-06-18-03-00", "c"), [[CLASH_SLASH, BIG, ACCENTED, UPWARD]]
    )
    corrupted = build_window(DT, HOUR, window_id("2026-12-06-18-04-00", "d"), [[NEVER]])
    for part_key, data in corrupted.parts.items():
        flipped = bytearray(data)
        flipped[len(flipped) // 2] ^= 0xFF
        corrupted.parts[part_key] = bytes(flipped)
    uncommitted = build_window(DT, HOUR, window_id("2026-12-06-18-05-00", "e"), [[GHOST]])
    next_hour = build_window(DT, "19", window_id("2026-12-06-19-00-00", "f"), [[LATER]])
    incoming = build_window(DT, HOUR, window_id("2026-12-06-18-06-00", "g"), [[GHOST]])
    for window in (older, newer, third, corrupted, next_hour):
        window.put(client, bucket)
    uncommitted.put(client, bucket, committed=False)
    # work in progress under _incoming/, manifest and all: never to be read
    for key, data in [*incoming.parts.items(), (incoming.manifest_key, incoming.manifest)]:
        moved = key.replace(f"dt={DT}/hour={HOUR}/", f"_incoming/{incoming.window_id}/")
        client.put_object(bucket, moved, io.BytesIO(data), len(data))
    return Hour(bucket, older, newer, corrupted)


def tree(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in root.rglob("*")
        if path.is_file()
    }


def test_an_hour_is_extracted_newest_version_per_key_verified_and_indexed(
    seaweedfs: SeaweedFS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an hour of committed windows, one corrupted, one part uncommitted
    hour = hour_of_windows(seaweedfs)
    out = tmp_path / "out"
    lines: list[str] = []
    client = seaweedfs.client()
    listed: list[str] = []
    list_objects = client.list_objects

    def recording(bucket: str, prefix: str) -> Any:
        listed.append(prefix)
        return list_objects(bucket, prefix=prefix)

    monkeypatch.setattr(client, "list_objects", recording)
    # WHEN the hour is extracted
    summary = extract(
        client,
        hour.bucket,
        "sluice",
        out,
        since=SINCE,
        until=UNTIL,
        progress=lines.append,
    )
    # THEN every chosen file is written once, byte for byte, under its safe name, and the
    # corrupted window, the uncommitted part, _incoming/ and the next hour are not
    written = tree(out)
    assert written.pop("extract-index.json")
    assert written == {name: landed.body for landed, name in WRITTEN.items()}
    # AND the failure names the bucket and the corrupted part
    corrupted_part = next(iter(hour.corrupted.parts))
    assert len(summary.failures) == 1
    assert f"{hour.bucket}/{corrupted_part}" in summary.failures[0]
    assert "sha256" in summary.failures[0]
    assert (summary.windows, summary.windows_extracted, summary.files_written) == (4, 3, 9)
    assert (summary.older_skipped, summary.excluded, summary.uncommitted_parts) == (1, 1, 1)
    assert not summary.ok
    assert any("FAILED" in line for line in lines)
    assert any("3/4" in line for line in lines)
    # AND the index traces every written path back to its key, version, sequencer and window
    index = json.loads((out / "extract-index.json").read_text())
    by_path = {entry["path"]: entry for entry in index["files"]}
    assert set(by_path) == set(WRITTEN.values())
    for landed, name in WRITTEN.items():
        entry = by_path[name]
        assert (entry["key"], entry["version_id"], entry["sequencer"]) == (
            landed.key,
            landed.version_id,
            landed.sequencer,
        )
        assert entry["sha256"] == landed.sha256
        assert entry["file_id"] == landed.file_id
    assert by_path["reports/daily.csv"]["window_id"] == hour.older.window_id
    assert by_path["clash/dir/inner.txt"]["window_id"] == hour.newer.window_id
    assert by_path["clash/dir/inner.txt"]["archive"].endswith(".p001.tar.gz")
    # AND only the hour's prefix was listed, and nothing is left of the work in progress
    assert listed == ["sluice/dt=2026-12-06/hour=18/"]
    assert not [p for p in out.iterdir() if p.name.startswith(".sluice-extract-")]


def test_all_versions_writes_each_version_under_its_sequencer(
    seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    hour = hour_of_windows(seaweedfs)
    out = tmp_path / "out"
    summary = extract(
        seaweedfs.client(),
        hour.bucket,
        "sluice",
        out,
        since=SINCE,
        until=UNTIL,
        all_versions=True,
    )
    written = tree(out)
    assert written["reports/daily.csv~v0055AED6DCD90281F0"] == REPORT_NEW.body
    assert written["reports/daily.csv~v55AED6DCD90281E5"] == REPORT_OLD.body
    assert written["clash/dir~v0C01"] == CLASH_SLASH.body  # a key ending in / sits beside
    assert written["clash/dir~v0A01"] == CLASH_FILE.body
    assert written["nested/deep/file.bin~vv-big"] == BIG.body  # no sequencer: its version id
    assert (summary.files_written, summary.older_skipped) == (10, 0)
    index = json.loads((out / "extract-index.json").read_text())
    assert index["all_versions"] is True


def test_one_window_is_found_by_its_id(seaweedfs: SeaweedFS, tmp_path: Path) -> None:
    hour = hour_of_windows(seaweedfs)
    summary = extract(
        seaweedfs.client(), hour.bucket, "sluice", tmp_path, window_id=hour.newer.window_id
    )
    written = tree(tmp_path)
    written.pop("extract-index.json")
    assert written == {
        "clash/dir/inner.txt": CLASH_INNER.body,
        "caSe.txt": UPPER.body,
        "reports/daily.csv": REPORT_OLD.body,  # the newest this window knows of
    }
    assert summary.ok


def test_a_window_that_is_not_committed_is_not_found(seaweedfs: SeaweedFS, tmp_path: Path) -> None:
    hour_of_windows(seaweedfs)
    uncommitted = window_id("2026-12-06-18-05-00", "e")
    with pytest.raises(ExtractError, match=r"no committed window .*1 uncommitted part"):
        extract(seaweedfs.client(), seaweedfs.bucket, "sluice", tmp_path, window_id=uncommitted)
    assert not list(tmp_path.iterdir())


def test_a_symlink_out_of_the_folder_is_refused_and_the_rest_written(
    seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    # GIVEN an output folder where `nested` already leads outside it
    hour = hour_of_windows(seaweedfs)
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    (out / "nested").symlink_to(outside)
    # WHEN a window with a file under `nested/` is extracted into it
    third = window_id("2026-12-06-18-03-00", "c")
    summary = extract(seaweedfs.client(), hour.bucket, "sluice", out, window_id=third)
    # THEN nothing is written outside, the refusal is a failure, and the other file is written
    # (alone in this selection, the key `clash/dir/` clashes with nothing: `clash/dir`)
    assert list(outside.iterdir()) == []
    assert [f for f in summary.failures if f.startswith("refused")] == [
        f"refused nested/deep/file.bin: 'nested/deep/file.bin' resolves to "
        f"{outside.resolve()}/deep, outside {out.resolve()}"
    ]
    assert (out / "clash/dir").read_bytes() == CLASH_SLASH.body
    assert not summary.ok


def test_the_command_exits_1_on_a_failed_window_without_a_traceback(
    seaweedfs: SeaweedFS,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    hour = hour_of_windows(seaweedfs)
    monkeypatch.setenv("SLUICE_MINIO_ACCESS_KEY", seaweedfs.access_key)
    monkeypatch.setenv("SLUICE_MINIO_SECRET_KEY", seaweedfs.secret_key)
    argv = [
        "extract", "--endpoint", f"http://{seaweedfs.endpoint}", "--bucket", hour.bucket,
        "--since", "2026-12-06T18:00", "--until", "2026-12-06T19:00", "--out", str(tmp_path),
    ]  # fmt: skip
    assert main.main(argv) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    corrupted_part = next(iter(hour.corrupted.parts))
    assert (
        f"failed: window {hour.corrupted.window_id}: {hour.bucket}/{corrupted_part}: sha256"
        in captured.err
    )
    assert f"window 4/4 {hour.corrupted.window_id}: FAILED" in captured.err
    assert captured.out.startswith("extracted 3 of 4 window(s)")
    assert "9 file(s) written" in captured.out
    assert "1 uncommitted part(s) seen, 1 failure(s)" in captured.out
    assert seaweedfs.secret_key not in captured.err + captured.out


def test_the_command_exits_2_on_a_bucket_that_does_not_exist(
    seaweedfs: SeaweedFS,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SLUICE_MINIO_ACCESS_KEY", seaweedfs.access_key)
    monkeypatch.setenv("SLUICE_MINIO_SECRET_KEY", seaweedfs.secret_key)
    argv = [
        "extract", "--endpoint", seaweedfs.endpoint, "--insecure", "--bucket", "no-such-bucket",
        "--since", "2026-12-06T18:00", "--out", str(tmp_path),
    ]  # fmt: skip
    assert main.main(argv) == 2
    err = capsys.readouterr().err
    assert "NoSuchBucket" in err
    assert err.count("\n") == 1
