"""Reading a staged window (`delivery.window`) and planning its archive parts and keys.

Windows are real gzip files written in each test, line by line as Firehose stores them: one
envelope per line, each ending in a newline (DESIGN §3, "Staged window").
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from itertools import pairwise
from pathlib import Path

import pytest

from delivery.archive import Exclusion
from delivery.commit import window_manifest
from delivery.delivering import plan_parts
from delivery.layout import (
    WindowKeyError,
    WindowName,
    archive_key,
    incoming_key,
    incoming_manifest_key,
    window_manifest_beside,
    window_manifest_key,
    window_name,
)
from delivery.ledger import PartRecord
from delivery.window import InlineBodies, parse_window
from delivery.window_entries import WindowEntries, WindowEntry
from transform import envelope
from transform.envelope import Envelope

EXTENSION = ".json.gz"
LANDING = "sluice-landing-test"
STAGED_KEY = (
    "buffers/dt=2026-03-14/hour=09/"
    "sluice-test-0-1-2026-03-14-09-12-00-0f8fad5b-d9cb-469f-a165-70867728950e.json.gz"
)


def inline(key: str, body: bytes, version_id: str = "v1") -> Envelope:
    return Envelope.inline(
        body,
        file_id=envelope.file_id(LANDING, key, version_id),
        bucket=LANDING,
        key=key,
        version_id=version_id,
        size=len(body),
        event_time_ms=1_773_479_520_000,
        forwarded_at_ms=1_773_479_521_000,
    )


def ref(key: str, size: int, version_id: str = "v1") -> Envelope:
    return Envelope.ref(
        file_id=envelope.file_id(LANDING, key, version_id),
        bucket=LANDING,
        key=key,
        version_id=version_id,
        size=size,
        event_time_ms=1_773_479_520_000,
        forwarded_at_ms=1_773_479_521_000,
    )


def line(item: Envelope | dict[str, object] | bytes) -> bytes:
    """One stored line: the envelope's wire form plus the newline the processor appends."""
    if isinstance(item, Envelope):
        return item.encode() + b"\n"
    if isinstance(item, dict):
        return envelope.encode(item) + b"\n"
    return item


def write_window(path: Path, *items: Envelope | dict[str, object] | bytes) -> Path:
    with gzip.open(path, "wb") as out:
        for item in items:
            out.write(line(item))
    return path


def raw_id(stored_line: bytes) -> str:
    return "raw-" + hashlib.sha256(stored_line.rstrip(b"\n")).hexdigest()


# -- window_name ---------------------------------------------------------------------------


def test_window_name_gives_the_id_and_partition() -> None:
    # GIVEN a key Firehose wrote under buffers/
    # WHEN it is named
    name = window_name(STAGED_KEY, EXTENSION)

    # THEN the id is the object's name without the extension, and dt/hour come from the path
    assert name == WindowName(
        window_id="sluice-test-0-1-2026-03-14-09-12-00-0f8fad5b-d9cb-469f-a165-70867728950e",
        dt="2026-03-14",
        hour="09",
    )


@pytest.mark.parametrize(
    "key",
    [
        "buffers/sluice-test-0-1-2026-03-14-09-12-00-abc.json.gz",  # no partition
        "buffers/dt=2026-03-14/sluice-test-0-1-abc.json.gz",  # no hour
        "buffers/dt=2026-3-14/hour=9/sluice-test-0-1-abc.json.gz",  # not zero-padded
        "buffers/dt=2026-03-14/hour=09/sluice-test-0-1-abc.json",  # another extension
        "buffers/dt=2026-03-14/hour=09/sluice-test-0-1-abc.json.gz.tmp",
        "buffers/dt=2026-03-14/hour=09/.json.gz",  # the extension alone
        "buffers/dt=2026-03-14/hour=09/",
        "",
    ],
)
def test_window_name_refuses_a_key_that_is_not_a_staged_window(key: str) -> None:
    # GIVEN a key that is not buffers/dt=YYYY-MM-DD/hour=HH/<id>.json.gz
    # WHEN it is named
    # THEN WindowKeyError (a ValueError) says so
    with pytest.raises(WindowKeyError, match="is not a staged window"):
        window_name(key, EXTENSION)


# -- parse_window ----------------------------------------------------------------------------


def test_entries_keep_window_order_with_their_metadata(tmp_path: Path) -> None:
    # GIVEN a window of an inline text file, a ref and an inline binary file
    text = inline("in/b.txt", b"hello\n")
    claim = ref("in/a.ndjson", 123_456_789, version_id="v7")
    binary = inline("in/c.bin", b"\xff\x00\xfe")
    path = write_window(tmp_path / "w.json.gz", text, claim, binary)

    # WHEN it is parsed
    parsed = parse_window(path)

    # THEN the entries are in window order, each with its line and metadata
    assert parsed.entries == [
        WindowEntry(
            1,
            text.file_id,
            LANDING,
            "in/b.txt",
            "v1",
            6,
            1_773_479_520_000,
            "utf8",
            hashlib.sha256(b"hello\n").hexdigest(),
            body_offset=512,  # in its tar member, after the header
            member_offset=0,
        ),
        WindowEntry(
            2,
            claim.file_id,
            LANDING,
            "in/a.ndjson",
            "v7",
            123_456_789,
            1_773_479_520_000,
            "ref",
            None,
        ),
        WindowEntry(
            3,
            binary.file_id,
            LANDING,
            "in/c.bin",
            "v1",
            3,
            1_773_479_520_000,
            "base64",
            hashlib.sha256(b"\xff\x00\xfe").hexdigest(),
            # after the first member (header, 6 bytes, padding): a ref has none
            body_offset=1024 + 512,
            member_offset=1024,
        ),
    ]
    assert [entry.is_ref for entry in parsed.entries] == [False, True, False]
    assert (parsed.bad_lines, parsed.repeated, parsed.lines) == ([], 0, 3)


def test_a_repeated_file_id_is_dropped_and_the_first_wins(tmp_path: Path) -> None:
    # GIVEN a file forwarded twice (its second line says a different size: only the first counts)
    first = inline("in/a.txt", b"first")
    other = inline("in/b.txt", b"other")
    again = Envelope.inline(
        b"first, forwarded again",
        **{
            name: getattr(first, name)
            for name in ("file_id", "bucket", "key", "version_id", "event_time_ms")
        },
        size=22,
        forwarded_at_ms=first.forwarded_at_ms + 1,
    )
    path = write_window(tmp_path / "w.json.gz", first, other, again, first)

    # WHEN it is parsed
    parsed = parse_window(path)

    # THEN each file_id appears once, at its first line, and the repeats are counted
    assert [(e.line_number, e.file_id, e.size) for e in parsed.entries] == [
        (1, first.file_id, 5),
        (2, other.file_id, 5),
    ]
    assert parsed.repeated == 2
    assert parsed.lines == 4


def test_blank_lines_are_skipped_but_counted_as_lines(tmp_path: Path) -> None:
    # GIVEN a window with blank lines between (and after) envelopes
    a, b = inline("in/a.txt", b"a"), inline("in/b.txt", b"b")
    path = write_window(tmp_path / "w.json.gz", b"\n", a, b"   \n", b, b"\n")

    # WHEN it is parsed
    parsed = parse_window(path)

    # THEN the blank lines are neither entries nor exclusions; line numbers stay the file's
    assert [(e.line_number, e.file_id) for e in parsed.entries] == [(2, a.file_id), (4, b.file_id)]
    assert parsed.bad_lines == []
    assert parsed.lines == 5


def test_a_line_that_is_not_json_is_excluded_with_its_line_number(tmp_path: Path) -> None:
    # GIVEN a window with a line that is not JSON between two good ones
    good = inline("in/a.txt", b"a")
    garbage = b"{this is not json\n"
    later = inline("in/b.txt", b"b")
    path = write_window(tmp_path / "w.json.gz", good, garbage, later)

    # WHEN it is parsed
    parsed = parse_window(path)

    # THEN the bad line is an exclusion named by the sha256 of the line, and the window goes on
    (bad,) = parsed.bad_lines
    assert bad.file_id == raw_id(garbage)
    assert (bad.key, bad.version_id, bad.reason) == (None, None, "unparseable-line")
    assert bad.detail.startswith("line 2: ")
    assert "not JSON" in bad.detail
    assert [e.file_id for e in parsed.entries] == [good.file_id, later.file_id]


def test_an_invalid_envelope_never_claims_the_file_id_it_names(tmp_path: Path) -> None:
    # GIVEN an envelope missing a required field but carrying a well-formed file_id
    broken = inline("in/a.txt", b"a").to_dict()
    del broken["size"]
    stored = line(broken)
    path = write_window(tmp_path / "w.json.gz", inline("in/0.txt", b"0"), stored)

    # WHEN it is parsed
    parsed = parse_window(path)

    # THEN it is excluded under the hash of the line, not the id it names (a window with an
    # intact copy of that file must still own it), and the detail names the id and the fault
    (bad,) = parsed.bad_lines
    assert bad == Exclusion(
        file_id=raw_id(stored),
        key=None,
        version_id=None,
        reason="unparseable-line",
        detail=bad.detail,
    )
    assert bad.detail.startswith("line 2: ")
    assert "size" in bad.detail
    assert f"names file_id {broken['file_id']}" in bad.detail
    assert len(parsed.entries) == 1


@pytest.mark.parametrize(
    "file_id", ["not-a-sha256", "A" * 64, "0" * 63, 12345, None, "0" * 64 + "#r"]
)
def test_an_invalid_envelope_with_a_malformed_file_id_is_excluded_under_a_raw_id(
    tmp_path: Path, file_id: object
) -> None:
    # GIVEN an invalid envelope whose file_id is missing, not a string or not a sha256
    broken = inline("in/a.txt", b"a").to_dict()
    broken["file_id"] = file_id
    broken["size"] = "one"
    stored = line(broken)
    path = write_window(tmp_path / "w.json.gz", stored)

    # WHEN it is parsed
    parsed = parse_window(path)

    # THEN it is excluded under raw-<sha256 of the line>
    (bad,) = parsed.bad_lines
    assert (bad.file_id, bad.reason) == (raw_id(stored), "unparseable-line")
    assert bad.detail.startswith("line 1: ")
    assert parsed.entries == []


def test_a_json_line_that_is_not_an_object_is_excluded(tmp_path: Path) -> None:
    # GIVEN lines that are JSON but not objects
    path = write_window(tmp_path / "w.json.gz", b"[1, 2]\n", b'"text"\n', b"42\n")

    # WHEN it is parsed
    parsed = parse_window(path)

    # THEN each is an unparseable line under its raw id
    assert [(x.file_id, x.reason) for x in parsed.bad_lines] == [
        (raw_id(b"[1, 2]\n"), "unparseable-line"),
        (raw_id(b'"text"\n'), "unparseable-line"),
        (raw_id(b"42\n"), "unparseable-line"),
    ]


def test_an_invalid_replay_envelope_names_the_replay_file_id(tmp_path: Path) -> None:
    # GIVEN an invalid envelope of a forced replay (file_id + "#r<replay_id>")
    broken = inline("in/a.txt", b"a").to_dict()
    broken["file_id"] = f"{broken['file_id']}#r2026-03-14.1"
    broken["body_encoding"] = "gzip"
    path = write_window(tmp_path / "w.json.gz", broken)

    # WHEN it is parsed
    (bad,) = parse_window(path).bad_lines

    # THEN the exclusion, under the line's own hash, names the replay's file_id
    assert bad.file_id == raw_id(line(broken))
    assert bad.detail.endswith(f"(names file_id {broken['file_id']})")


@pytest.mark.parametrize("body", [b"utf8 body", b"\xff\xfebinary"])
def test_an_inline_body_not_matching_its_sha256_is_a_checksum_mismatch(
    tmp_path: Path, body: bytes
) -> None:
    # GIVEN an inline envelope whose body was altered after its sha256 was taken
    record = inline("in/a.txt", body, version_id="v3").to_dict()
    record["body_sha256"] = hashlib.sha256(b"something else").hexdigest()
    good = inline("in/b.txt", b"b")
    path = write_window(tmp_path / "w.json.gz", good, record)

    # WHEN it is parsed
    parsed = parse_window(path)

    # THEN it is excluded as a checksum mismatch, with its key, version and line
    (bad,) = parsed.bad_lines
    assert (bad.file_id, bad.key, bad.version_id, bad.reason) == (
        record["file_id"],
        "in/a.txt",
        "v3",
        "checksum-mismatch",
    )
    assert bad.detail.startswith("line 2: ")
    assert [e.file_id for e in parsed.entries] == [good.file_id]


def test_an_invalid_base64_body_is_a_checksum_mismatch(tmp_path: Path) -> None:
    # GIVEN a base64 envelope whose body is not base64
    record = inline("in/a.bin", b"\xff\x00").to_dict()
    record["body"] = "***not base64***"
    path = write_window(tmp_path / "w.json.gz", record)

    # WHEN it is parsed
    (bad,) = parse_window(path).bad_lines

    # THEN it is a checksum mismatch: its body cannot be what the envelope says
    assert (bad.file_id, bad.reason) == (record["file_id"], "checksum-mismatch")


def test_the_same_bad_line_twice_is_excluded_once(tmp_path: Path) -> None:
    # GIVEN the same unparseable line twice, and the same mismatched envelope twice
    garbage = b"not json at all\n"
    mismatched = inline("in/a.txt", b"a").to_dict()
    mismatched["body_sha256"] = "0" * 64
    path = write_window(tmp_path / "w.json.gz", garbage, mismatched, garbage, mismatched)

    # WHEN it is parsed
    parsed = parse_window(path)

    # THEN each is excluded once, at its first line
    assert [(x.file_id, x.reason, x.detail.split(":")[0]) for x in parsed.bad_lines] == [
        (raw_id(garbage), "unparseable-line", "line 1"),
        (mismatched["file_id"], "checksum-mismatch", "line 2"),
    ]
    assert parsed.entries == []


def test_an_empty_window_parses_to_nothing(tmp_path: Path) -> None:
    # GIVEN a window with no line at all
    path = write_window(tmp_path / "w.json.gz")

    # WHEN it is parsed
    parsed = parse_window(path)

    # THEN nothing
    assert (parsed.entries, parsed.bad_lines, parsed.repeated, parsed.lines) == ([], [], 0, 0)


# -- InlineBodies --------------------------------------------------------------------------


def test_inline_bodies_are_read_in_window_order(tmp_path: Path) -> None:
    # GIVEN a window of text, a ref, binary and a blank line, then text again
    bodies = {1: b"first body\n", 3: b"\x00\x01\xff binary", 5: "caf\u00e9 \u2603".encode()}
    path = write_window(
        tmp_path / "w.json.gz",
        inline("in/1.txt", bodies[1]),
        ref("in/2.bin", 10),
        inline("in/3.bin", bodies[3]),
        b"\n",
        inline("in/5.txt", bodies[5]),
    )
    parsed = parse_window(path)
    inline_entries = [entry for entry in parsed.entries if not entry.is_ref]

    # WHEN the inline bodies are read, in window order and then backwards
    reader = InlineBodies(parsed)
    try:
        read = {entry.line_number: reader.body(entry) for entry in inline_entries}
        backwards = [reader.body(entry) for entry in reversed(inline_entries)]
    finally:
        reader.close()

    # THEN each is its file's exact bytes, whatever the order (the archive's pass and the
    # tables' read the same reader)
    assert read == bodies
    assert backwards == [bodies[5], bodies[3], bodies[1]]


def test_inline_bodies_across_read_buffers_come_back_whole_in_any_order(tmp_path: Path) -> None:
    # GIVEN a window whose bodies straddle the reader's 1 MiB buffers (one is 2.5 MiB)
    sizes = [700_000, 2_621_440, 1, 900_000, 300_000]
    bodies = [bytes([n]) * size for n, size in enumerate(sizes)]
    path = write_window(
        tmp_path / "w.json.gz", *(inline(f"in/{n}.bin", b) for n, b in enumerate(bodies))
    )
    parsed = parse_window(path)
    entries = parsed.entries

    # WHEN they are read in window order, twice (the tables' pass, then the archive's), then
    # every other one from the end
    reader = InlineBodies(parsed)
    try:
        passes = [[reader.body(entry) for entry in entries] for _ in range(2)]
        skipping = [reader.body(entry) for entry in entries[::-2]]
    finally:
        reader.close()

    # THEN each read is the file's exact bytes
    assert passes == [bodies, bodies]
    assert skipping == bodies[::-2]


def test_a_ref_has_no_inline_body_to_read(tmp_path: Path) -> None:
    # GIVEN a window of a ref
    parsed = parse_window(write_window(tmp_path / "w.json.gz", ref("in/2.bin", 10)))
    reader = InlineBodies(parsed)
    try:
        # WHEN its body is asked for  THEN LookupError naming the file
        [entry] = parsed.entries
        with pytest.raises(LookupError, match=entry.file_id):
            reader.body(entry)
    finally:
        reader.close()


def test_a_body_whose_length_is_not_its_size_is_excluded_as_a_mismatch(tmp_path: Path) -> None:
    # GIVEN an envelope whose body matches its sha256 but not its size
    lying = inline("in/1.txt", b"four").to_dict()
    lying["size"] = 5
    path = write_window(tmp_path / "w.json.gz", lying)
    # WHEN parsed  THEN the file is excluded, saying both lengths
    parsed = parse_window(path)
    assert parsed.entries == []
    [bad] = parsed.bad_lines
    assert bad.reason == "checksum-mismatch"
    assert "4 bytes, its size says 5" in bad.detail


# -- plan_parts ----------------------------------------------------------------------------


def entry(n: int, size: int) -> WindowEntry:
    return WindowEntry(
        line_number=n,
        file_id=hashlib.sha256(str(n).encode()).hexdigest(),
        bucket=LANDING,
        key=f"in/{n}",
        version_id="v1",
        size=size,
        event_time_ms=0,
        encoding="ref",
        body_sha256=None,
    )


def sizes(parts: list[WindowEntries]) -> list[list[int]]:
    return [[e.size for e in part] for part in parts]


def test_an_empty_window_plans_one_empty_part() -> None:
    # GIVEN no member
    # WHEN parts are planned
    # THEN one part, holding nothing (the archive of exclusions only)
    assert plan_parts(WindowEntries(), 100) == [[]]


@pytest.mark.parametrize(
    ("file_sizes", "cap", "expected"),
    [
        ([10, 20, 30], 100, [[10, 20, 30]]),
        ([50, 50], 100, [[50, 50]]),  # exactly the cap: one part
        ([50, 51], 100, [[50], [51]]),
        ([40, 40, 40, 40, 40], 100, [[40, 40], [40, 40], [40]]),
        ([10, 500, 10], 100, [[10], [500], [10]]),  # a larger file gets a part of its own
        ([500, 10, 10], 100, [[500], [10, 10]]),
        ([10, 500, 600], 100, [[10], [500], [600]]),
        ([0, 0, 100, 0], 100, [[0, 0, 100, 0]]),
    ],
)
def test_parts_follow_window_order_within_the_cap(
    file_sizes: list[int], cap: int, expected: list[list[int]]
) -> None:
    # GIVEN members of these sizes, in window order
    members = [entry(n, size) for n, size in enumerate(file_sizes, start=1)]

    # WHEN parts are planned with this cap
    parts = plan_parts(WindowEntries.of(members), cap)

    # THEN the parts are as expected, and together they are the members in order
    assert sizes(parts) == expected
    assert [e for part in parts for e in part] == members


def test_no_part_exceeds_the_cap_unless_one_file_alone_is_larger() -> None:
    # GIVEN many windows of random sizes around the cap (seeded: the same cases every run)
    rng = random.Random(20260314)
    cap = 1000
    for _ in range(300):
        members = [entry(n, rng.choice([0, 1, 300, 999, 1000, 1001, 5000])) for n in range(12)]

        # WHEN parts are planned
        parts = plan_parts(WindowEntries.of(members), cap)

        # THEN window order is kept, no part is empty, and a part over the cap is one file
        assert [e for part in parts for e in part] == members
        assert all(parts)
        for part in parts:
            assert sum(e.size for e in part) <= cap or len(part) == 1
        # AND no two neighbouring parts could have been one (greedy: parts are as few as can be)
        for left, right in pairwise(parts):
            assert sum(e.size for e in left) + right[0].size > cap


# -- archive, manifest and incoming keys -----------------------------------------------------

NAME = WindowName(window_id="sluice-test-0-1-2026-03-14-09-12-00-abc", dt="2026-03-14", hour="09")


def test_a_single_part_archive_key_has_no_part_suffix() -> None:
    # GIVEN a window archived in one part
    # WHEN its keys are named
    key = archive_key("sluice", NAME, 1, 1)

    # THEN <prefix>/dt=…/hour=…/<window-id>.tar.gz, the window manifest beside it
    assert key == "sluice/dt=2026-03-14/hour=09/sluice-test-0-1-2026-03-14-09-12-00-abc.tar.gz"
    manifest = "sluice/dt=2026-03-14/hour=09/sluice-test-0-1-2026-03-14-09-12-00-abc.manifest.json"
    assert window_manifest_key("sluice", NAME) == manifest
    assert window_manifest_beside(key, NAME.window_id) == manifest


@pytest.mark.parametrize(("part", "suffix"), [(1, ".p001"), (2, ".p002"), (12, ".p012")])
def test_a_multi_part_archive_key_numbers_its_part(part: int, suffix: str) -> None:
    # GIVEN a window archived in several parts
    # WHEN part `part` is named
    key = archive_key("archive/sluice", NAME, part, 12)

    # THEN the part number, three digits, comes before .tar.gz; one manifest for the window
    base = "archive/sluice/dt=2026-03-14/hour=09/sluice-test-0-1-2026-03-14-09-12-00-abc"
    assert key == f"{base}{suffix}.tar.gz"
    assert window_manifest_beside(key, NAME.window_id) == f"{base}.manifest.json"


def test_parts_are_uploaded_under_the_incoming_prefix_outside_the_hour_tree() -> None:
    # GIVEN a window's part 3
    # WHEN its incoming keys are named
    key = incoming_key("sluice", NAME.window_id, 3)

    # THEN they sit under <prefix>/_incoming/<window-id>/, which no dt= listing reaches
    assert key == "sluice/_incoming/sluice-test-0-1-2026-03-14-09-12-00-abc/p003.tar.gz"
    assert incoming_manifest_key("sluice", NAME.window_id, 3) == key.replace(
        ".tar.gz", ".manifest.json"
    )


def test_archive_keys_of_a_window_id_from_window_name_round_trip() -> None:
    # GIVEN a staged key
    name = window_name(STAGED_KEY, EXTENSION)

    # WHEN its archive is named
    key = archive_key("sluice", name, 1, 1)

    # THEN the archive sits in the staged window's partition, under the window's id
    assert key == STAGED_KEY.replace("buffers/", "sluice/").removesuffix(".json.gz") + ".tar.gz"


def test_the_window_manifest_is_jsons_canonical_form_of_every_parts_entries() -> None:
    # GIVEN two parts whose manifest entries hold keys an encoder might escape differently,
    # and an exclusion
    parts = [
        PartRecord(n, f"sluice/w.p00{n}.tar.gz", f"v{n}", "a" * 64, "e", 10 * n, 5, 2, "sha256")
        for n in (1, 2)
    ]
    entries = [
        [{"file_id": "f1", "key": "ü/\u2028\x7f.csv", "size": 1, "sequencer": None}],
        [{"file_id": "f2", "key": "中\U0001f600", "size": 2}, {"file_id": "f3", "key": "/"}],
    ]
    exclusions = [Exclusion("e" * 64, "k\x01", None, "unparseable-line", "line 1: \u2028")]
    # WHEN the window manifest is written (entries streamed from their parts)
    data = window_manifest(
        "w", STAGED_KEY, [(p, iter(e)) for p, e in zip(parts, entries, strict=True)], exclusions
    )
    # THEN it is byte for byte `json`'s canonical dump of the whole document
    document = json.loads(data)
    canonical = json.dumps(document, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    assert data == canonical.encode() + b"\n"
    # ... every file in part order, each with its part number
    assert [(f["file_id"], f["part"]) for f in document["files"]] == [
        ("f1", 1),
        ("f2", 2),
        ("f3", 2),
    ]
    assert [p["key"] for p in document["parts"]] == [p.minio_key for p in parts]
    assert document["excluded"][0]["key"] == "k\x01"


def test_an_envelope_whose_file_id_is_not_its_own_is_excluded_under_a_raw_id(
    tmp_path: Path,
) -> None:
    # GIVEN an envelope naming another file's id (a bug upstream, or a forged line) beside the
    # real envelope of that other file, and a forced replay's envelope (`#r<id>` appended)
    other = inline("in/other.txt", b"o")
    forged = inline("in/a.txt", b"a").to_dict()
    forged["file_id"] = other.file_id
    replayed = inline("in/r.txt", b"r").to_dict()
    replayed["file_id"] = f"{replayed['file_id']}#rreplay-1"
    stored = line(forged)
    path = write_window(tmp_path / "w.json.gz", stored, other, replayed)

    # WHEN it is parsed
    parsed = parse_window(path)

    # THEN the forged line is excluded under its own hash, never the id it names, and the real
    # file and the replay go on
    (bad,) = parsed.bad_lines
    assert (bad.file_id, bad.key, bad.reason) == (raw_id(stored), "in/a.txt", "file-id-mismatch")
    assert envelope.file_id(LANDING, "in/a.txt", "v1") in bad.detail
    assert [e.file_id for e in parsed.entries] == [other.file_id, replayed["file_id"]]


def test_the_sequencer_travels_from_the_envelope(tmp_path: Path) -> None:
    # GIVEN envelopes with S3's sequencer and one without (a replay's synthetic event)
    with_sequencer = inline("in/a.txt", b"a").to_dict()
    with_sequencer["sequencer"] = "0055AED6DCD90281E5"
    path = write_window(tmp_path / "w.json.gz", with_sequencer, inline("b", b"b"))
    # WHEN parsed THEN each entry carries it, for the manifest
    assert [e.sequencer for e in parse_window(path).entries] == ["0055AED6DCD90281E5", None]
