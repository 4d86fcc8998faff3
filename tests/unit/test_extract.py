"""`sluice extract`'s pure parts: S3 sequencer order, the version chosen per key, the names of
renamed and --all-versions files, refusal of paths outside the output folder, manifest checks,
the archive check, and the command line's errors. Against MinIO: tests/integration/test_extract.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from delivery.archive import ArchiveFile, manifest
from delivery.extract import VerificationError, verify_part_archive
from delivery.extract_plan import (
    INDEX_NAME,
    FileRef,
    ManifestError,
    PartRef,
    UnsafePath,
    WindowManifest,
    compare_sequencers,
    hour_prefixes,
    is_window_manifest,
    oldest_to_newest,
    output_names,
    parse_window_manifest,
    part_window_id,
    safe_target,
    select,
    versioned_key,
    window_hours,
)
from infrastructure.cli import main
from tests.extract_support import Landed, build_window, window_id

WINDOW = window_id("2026-12-06-18-01-00", "a")


def ref(
    key: str,
    version_id: str,
    sequencer: str | None,
    *,
    event_time_ms: int = 1_000,
    window: str = WINDOW,
    body: bytes = b"x",
) -> FileRef:
    landed = Landed(key, body, version_id, sequencer)
    return FileRef(
        window_id=window,
        part=1,
        member_name=key,
        key=key,
        version_id=version_id,
        file_id=landed.file_id,
        size=len(body),
        sha256=landed.sha256,
        event_time_ms=event_time_ms,
        sequencer=sequencer,
    )


# ------------------------------------------------------------------------------- sequencers


def test_sequencers_of_one_length_compare_as_hex_strings() -> None:
    assert compare_sequencers("0055AED6DCD90281E5", "0055AED6DCD90281E6") == -1
    assert compare_sequencers("0055AED6DCD90281F0", "0055AED6DCD90281E6") == 1
    assert compare_sequencers("0055AED6DCD90281E5", "0055AED6DCD90281E5") == 0


def test_a_shorter_sequencer_is_left_padded_with_zeros() -> None:
    # GIVEN sequencers of different lengths (AWS: "left pad the shorter value with zeros")
    shorter, longer = "FF", "0100"
    # THEN padding decides ("00FF" < "0100"), where plain string order would say the opposite
    assert shorter > longer
    assert compare_sequencers(shorter, longer) == -1
    assert compare_sequencers("1A", "001A") == 0


def test_sequencer_case_does_not_matter() -> None:
    assert compare_sequencers("0a", "0B") == -1
    assert compare_sequencers("0f", "0F") == 0


def test_newest_version_wins_by_sequencer_whatever_the_window_order() -> None:
    # GIVEN the newer version (padded sequencer greater) delivered in the earlier window
    newer = ref("report.csv", "v2", "0055AED6DCD90281F0", event_time_ms=1)
    older = ref("report.csv", "v1", "55AED6DCD90281E5", event_time_ms=9)
    # WHEN selecting in either window order
    for files in ([newer, older], [older, newer]):
        selection = select(files, all_versions=False)
        # THEN the sequencer decides, not the window order nor the event time
        assert selection.chosen == (newer,)
        assert selection.older_skipped == 1


def test_a_version_without_sequencer_orders_its_key_by_event_time_then_version_id() -> None:
    # GIVEN a replay's version (no sequencer) among versions that carry one
    first = ref("k", "b", "0002", event_time_ms=100)
    replayed = ref("k", "a", None, event_time_ms=200)
    tie_low = ref("k", "c", None, event_time_ms=300)
    tie_high = ref("k", "d", None, event_time_ms=300)
    # THEN the key is ordered by event time, then sequencer (none first), then version id
    assert oldest_to_newest([tie_high, replayed, tie_low, first]) == [
        first,
        replayed,
        tie_low,
        tie_high,
    ]
    assert select([tie_high, first, tie_low, replayed], all_versions=False).chosen == (tie_high,)


def test_a_version_delivered_twice_counts_once_and_keeps_its_sequencer() -> None:
    # GIVEN one version delivered by a forced replay (no sequencer) and originally (with one)
    replay = ref("k", "v1", None)._replace(window_id="w0", file_id="f#r1")
    original = ref("k", "v1", "00AA")
    selection = select([replay, original], all_versions=True)
    assert selection.chosen == (original,)
    assert (selection.repeats_skipped, selection.older_skipped) == (1, 0)


def test_all_versions_keeps_every_version_oldest_first() -> None:
    v1, v2 = ref("k", "v1", "01"), ref("k", "v2", "02")
    selection = select([v2, v1], all_versions=True)
    assert selection.chosen == (v1, v2)
    assert selection.older_skipped == 0


# ------------------------------------------------------------------------------- names


def test_all_versions_names_a_version_by_its_sequencer_else_its_version_id() -> None:
    assert (
        versioned_key(ref("a/b.txt", "v1", "0055aed6dcd90281e5")) == "a/b.txt~v0055AED6DCD90281E5"
    )
    assert versioned_key(ref("a/b.txt", "3/x+y.z", None)) == "a/b.txt~v3%2Fx%2By.z"
    # a key ending in / names a file beside its folder, not one inside it
    assert versioned_key(ref("clash/dir/", "v1", "01")) == "clash/dir~v01"


def test_keys_that_cannot_coexist_across_windows_get_distinct_safe_names() -> None:
    # GIVEN keys from different windows: a file and a folder of one name, a key ending in /,
    # two keys equal but for case, and a key that is the index's name
    file = ref("clash/dir", "v1", "01", window="w1")
    inner = ref("clash/dir/inner.txt", "v1", "01", window="w2")
    slash = ref("clash/dir/", "v1", "01", window="w3")
    lower = ref("case.txt", "v1", "01", window="w1")
    upper = ref("caSe.txt", "v1", "01", window="w2")
    index = ref(INDEX_NAME, "v1", "01", window="w1")
    escaping = ref("../../etc/passwd", "v1", "01", window="w2")
    chosen = select([file, inner, slash, lower, upper, index, escaping], all_versions=False)
    # WHEN naming the whole selection at once
    names, index_name = output_names(chosen.chosen, all_versions=False)
    # THEN the folder keeps its name, each clashing file is tagged with its file id, the first
    # key in code point order keeps a name equal but for case, and the index keeps its own
    assert names[inner] == "clash/dir/inner.txt"
    assert names[file] == f"clash/dir~{file.file_id[:8]}"
    assert names[slash] == f"clash/dir~{slash.file_id[:8]}"
    assert names[upper] == "caSe.txt"
    assert names[lower] == f"case.txt~{lower.file_id[:8]}"
    assert index_name == INDEX_NAME
    assert names[index] == f"{INDEX_NAME}~{index.file_id[:8]}"
    assert names[escaping] == "%2E%2E/%2E%2E/etc/passwd"
    assert len({name.casefold() for name in names.values()} | {index_name}) == 8


def test_names_do_not_depend_on_the_order_windows_were_read() -> None:
    files = [ref("b", "v1", "01"), ref("B", "v1", "01"), ref("a/b", "v1", "01"), ref("a", "v", "1")]
    first = output_names(select(files, all_versions=False).chosen, all_versions=False)
    second = output_names(select(files[::-1], all_versions=False).chosen, all_versions=False)
    assert first == second


# ------------------------------------------------------------------------------- paths


def test_a_path_inside_the_output_folder_is_accepted(tmp_path: Path) -> None:
    root = tmp_path.resolve()
    assert safe_target(root, "a/b/c.txt") == root / "a" / "b" / "c.txt"


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/etc/passwd", "a//b", "a\\b", "", "./a"])
def test_a_name_that_is_no_plain_relative_path_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(UnsafePath):
        safe_target(tmp_path.resolve(), name)


def test_a_symlink_in_the_output_folder_that_leads_outside_is_refused(tmp_path: Path) -> None:
    # GIVEN an output folder holding a symlink to a folder outside it, and one to a file
    root, outside = tmp_path / "out", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    (root / "nested").symlink_to(outside)
    (root / "passwd").symlink_to(outside / "passwd")
    # THEN paths through or onto them are refused, naming where they would go
    with pytest.raises(UnsafePath, match="outside"):
        safe_target(root.resolve(), "nested/deep/file.bin")
    with pytest.raises(UnsafePath, match="outside"):
        safe_target(root.resolve(), "passwd")


# ------------------------------------------------------------------------------- listing


def test_the_hours_of_a_range_are_those_it_overlaps() -> None:
    since = datetime(2026, 12, 6, 17, 30, tzinfo=UTC)
    assert hour_prefixes("sluice", since, datetime(2026, 12, 6, 19, tzinfo=UTC)) == [
        "sluice/dt=2026-12-06/hour=17/",
        "sluice/dt=2026-12-06/hour=18/",
    ]
    midnight = datetime(2026, 12, 7, tzinfo=UTC)
    assert hour_prefixes("p", midnight, midnight.replace(second=1)) == ["p/dt=2026-12-07/hour=00/"]
    with pytest.raises(ValueError, match="not before"):
        hour_prefixes("p", midnight, midnight)


def test_a_window_is_looked_for_in_its_hour_and_the_hours_beside() -> None:
    assert window_hours("sluice", window_id("2026-12-06-23-59-59", "a")) == [
        "sluice/dt=2026-12-06/hour=22/",
        "sluice/dt=2026-12-06/hour=23/",
        "sluice/dt=2026-12-07/hour=00/",
    ]
    assert window_hours("sluice", "no-time-here") is None


def test_only_window_manifests_are_commit_markers() -> None:
    assert is_window_manifest(f"{WINDOW}.manifest.json")
    assert not is_window_manifest(f"{WINDOW}.p001.manifest.json")  # an old part sidecar
    assert not is_window_manifest(f"{WINDOW}.tar.gz")
    assert part_window_id(f"{WINDOW}.p002.tar.gz") == WINDOW
    assert part_window_id(f"{WINDOW}.tar.gz") == WINDOW
    assert part_window_id("_SUCCESS.json") is None


# ------------------------------------------------------------------------------- manifests


def built_manifest() -> tuple[str, dict[str, object]]:
    window = build_window("2026-12-06", "18", WINDOW, [[Landed("a.txt", b"a", "v1", "01")]])
    return window.manifest_key, json.loads(window.manifest)


def test_a_window_manifest_is_read_with_its_parts_and_files() -> None:
    key, document = built_manifest()
    parsed = parse_window_manifest(key, json.dumps(document).encode())
    assert parsed.window_id == WINDOW
    assert [part.key for part in parsed.parts] == [f"sluice/dt=2026-12-06/hour=18/{WINDOW}.tar.gz"]
    assert [(f.key, f.sequencer, f.part) for f in parsed.files] == [("a.txt", "01", 1)]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"format_version": 1}, "format_version 1"),
        ({"window_id": "another"}, "not the one its name gives"),
        ({"parts": "p001"}, "'parts' is not a list"),
        ({"parts": []}, "part 1 is not one of the 0 parts"),
    ],
)
def test_a_manifest_that_does_not_hold_is_refused(change: dict[str, object], reason: str) -> None:
    key, document = built_manifest()
    with pytest.raises(ManifestError, match=reason):
        parse_window_manifest(key, json.dumps({**document, **change}).encode())


def test_a_manifest_cannot_send_the_reader_to_incoming() -> None:
    # GIVEN a manifest whose part key points under _incoming/
    key, document = built_manifest()
    parts = document["parts"]
    assert isinstance(parts, list)
    parts[0]["key"] = f"sluice/_incoming/{WINDOW}/p001.tar.gz"
    # THEN it is refused: a part's key must be the window's own name beside its manifest
    with pytest.raises(ManifestError, match="is not"):
        parse_window_manifest(key, json.dumps(document).encode())


# ------------------------------------------------------------------------------- archive check


def tar_gz(members: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def one_file_window(expected: bytes) -> tuple[WindowManifest, PartRef, bytes]:
    """A window of one file `a.txt` whose manifests promise `expected`, and its MANIFEST.json."""
    file = ref("a.txt", "v1", "01", body=expected)
    part = PartRef(1, f"sluice/dt=2026-12-06/hour=18/{WINDOW}.tar.gz", "0" * 64, 0, 1)
    planned = ArchiveFile(
        file.file_id, "a.txt", "v1", len(expected), file.sha256, 1_000, "a.txt", "x", "01"
    )
    own = manifest(WINDOW, "buffers/x", 1, 1, [planned], [])
    window = WindowManifest("sluice/x/w.manifest.json", WINDOW, "buffers/x", (part,), (file,), 0)
    return window, part, own


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"tampered", "has sha256"),  # same size, other bytes
        (b"longer than planned", "bytes, the window manifest says"),
    ],
)
def test_a_member_that_is_not_what_the_manifest_says_fails_the_part(
    tmp_path: Path, body: bytes, reason: str
) -> None:
    # GIVEN a part whose MANIFEST.json agrees with the window manifest, but a member's bytes not
    window, part, own = one_file_window(b"expected")
    archive = tmp_path / "part.tar.gz"
    archive.write_bytes(tar_gz([("MANIFEST.json", own), ("a.txt", body)]))
    staging = tmp_path / "staging"
    staging.mkdir()
    # WHEN it is checked, with the member chosen for writing
    with pytest.raises(VerificationError, match=reason) as caught:
        verify_part_archive(
            archive,
            "bucket/key.tar.gz",
            window,
            part,
            wanted={"a.txt": window.files[0]},
            staging=staging,
        )
    # THEN the error names the archive and the member, and nothing is left staged
    assert "bucket/key.tar.gz" in str(caught.value)
    assert "'a.txt'" in str(caught.value)
    assert list(staging.iterdir()) == []


@pytest.mark.parametrize(
    ("members", "reason"),
    [
        ([("a.txt", b"expected")], "first member"),
        ([("MANIFEST.json", b"own"), ("a.txt", b"expected"), ("b.txt", b"")], "not listed"),
        ([("MANIFEST.json", b"own")], "missing"),
    ],
)
def test_an_archive_of_other_members_fails_the_part(
    tmp_path: Path, members: list[tuple[str, bytes]], reason: str
) -> None:
    window, part, own = one_file_window(b"expected")
    archive = tmp_path / "part.tar.gz"
    archive.write_bytes(tar_gz([(n, own if d == b"own" else d) for n, d in members]))
    with pytest.raises(VerificationError, match=reason):
        verify_part_archive(archive, "b/k", window, part, wanted={}, staging=tmp_path)


def test_a_matching_part_stages_the_chosen_members(tmp_path: Path) -> None:
    window, part, own = one_file_window(b"expected")
    archive = tmp_path / "part.tar.gz"
    archive.write_bytes(tar_gz([("MANIFEST.json", own), ("a.txt", b"expected")]))
    staged = verify_part_archive(
        archive, "b/k", window, part, wanted={"a.txt": window.files[0]}, staging=tmp_path
    )
    assert [(file.key, path.read_bytes()) for file, path in staged] == [("a.txt", b"expected")]
    assert hashlib.sha256(b"expected").hexdigest() == window.files[0].sha256


# ------------------------------------------------------------------------------- command line


BASE = ["extract", "--endpoint", "127.0.0.1:1", "--bucket", "archive", "--out"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "say what to extract"),
        (["--until", "1h"], "--until needs --since"),
        (["--since", "1h", "--until", "2h"], "is not before --until"),
        (["--since", "1h", "--insecure", "--endpoint", "https://h:9000"], "says https"),
        (["--since", "1h", "--endpoint", "h:9000/path"], "is not host:port"),
        (["--since", "1h", "--ca-bundle", "/no/such.pem"], "no such file"),
        (["--since", "1h", "--prefix", "/"], "--prefix is empty"),
        (["--since", "1h", "--bucket", "No_Such"], "--bucket: invalid bucket name"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    monkeypatch.setenv("SLUICE_MINIO_ACCESS_KEY", "access")
    monkeypatch.setenv("SLUICE_MINIO_SECRET_KEY", "do-not-print-this")
    assert main.main([*BASE, str(tmp_path), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert "do-not-print-this" not in err


def test_missing_keys_name_the_options_and_the_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SLUICE_MINIO_ACCESS_KEY", raising=False)
    monkeypatch.delenv("SLUICE_MINIO_SECRET_KEY", raising=False)
    assert main.main([*BASE, str(tmp_path), "--since", "1h"]) == 2
    err = capsys.readouterr().err
    assert "--access-key" in err
    assert "SLUICE_MINIO_SECRET_KEY" in err


def test_an_out_that_is_a_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLUICE_MINIO_ACCESS_KEY", "access")
    monkeypatch.setenv("SLUICE_MINIO_SECRET_KEY", "secret")
    out = tmp_path / "file"
    out.write_text("")
    assert main.main([*BASE, str(out), "--since", "1h"]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_a_minio_that_does_not_answer_is_one_line_and_exit_status_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN no server on the endpoint's port
    monkeypatch.setenv("SLUICE_MINIO_ACCESS_KEY", "access")
    monkeypatch.setenv("SLUICE_MINIO_SECRET_KEY", "secret")
    argv = [*BASE, str(tmp_path / "out"), "--insecure", "--window", WINDOW]
    assert main.main(argv) == 1
    err = capsys.readouterr().err
    assert "MinIO at 127.0.0.1:1" in err
    assert err.count("\n") == 1
    assert "Traceback" not in err
