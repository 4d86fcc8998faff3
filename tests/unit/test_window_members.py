"""The parse writes each small inline file as its tar member; the archive copies runs of them.

A member (ustar header named by the key, body, padding) goes to the window's bodies file when
one ustar block can name the file; the archive copies runs of such members whole, each MiB
checked against its CRC-32, and builds every other file (a long or non-ASCII key, a renamed
one, a ref) itself. The bytes must be those of building every member one by one.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from delivery import archive
from delivery.delivering import ArchiveFiles
from delivery.names import MANIFEST_NAME, member_names
from delivery.window import (
    SPOOL_BLOCK_BYTES,
    InlineBodies,
    ParsedWindow,
    SpoolChanged,
    parse_window,
)
from delivery.window_entries import MemberSpan, WindowEntries, WindowEntry
from tests.unit.test_window import LANDING, STAGED_KEY, inline, write_window
from transform import envelope


def build(parsed: ParsedWindow, members: WindowEntries, *, copy_runs: bool) -> bytes:
    """The part's archive, runs of members copied (as delivery builds it) or every member
    built from its body."""
    files = ArchiveFiles(members, member_names(members.ids_and_keys), {})
    bodies = InlineBodies(parsed)
    out = io.BytesIO()
    try:
        archive.write_archive(
            out,
            archive.manifest("w", STAGED_KEY, 1, 1, files, []),
            files,
            lambda file: io.BytesIO(bodies.body(files.entry_of(file))),
            gzip_codec="isal",
            gzip_level=2,
            layout=files.layout(bodies) if copy_runs else None,
        )
    finally:
        bodies.close()
    return out.getvalue()


MIXED = [
    inline("in/a.json", b'{"n":1}'),
    inline("in/" + "long" * 30 + ".txt", b"a name past 100 bytes: PAX, built"),
    inline("in/b.bin", bytes(range(256)) * 3),  # base64 on the wire, a member all the same
    inline("in/caf\u00e9.txt", b"non-ASCII name: PAX, built"),
    inline("in/c.txt", b""),
    inline("in/../d.txt", b"an escaped name: renamed, built"),
    inline("in/e.txt", b"x" * 1500),
    inline("in/E.TXT", b"a case clash with e.txt: renamed, built"),
    inline("in/f.txt", b"last"),
]


def test_copied_runs_give_the_bytes_of_building_every_member(tmp_path: Path) -> None:
    # GIVEN a window of short ASCII keys among ones the parse cannot name in one ustar block
    # (long, non-ASCII) and ones the names rename (an escape, a case clash), one file repeated
    items = [*MIXED[:3], MIXED[0], *MIXED[3:]]
    parsed = parse_window(write_window(tmp_path / "w.json.gz", *items))
    assert parsed.repeated == 1

    # WHEN the archive is built by copying runs of members, and by building each member
    copied = build(parsed, parsed.entries, copy_runs=True)
    built = build(parsed, parsed.entries, copy_runs=False)

    # THEN the bytes are the same, and every file is there with its body under its name
    assert copied == built
    with tarfile.open(fileobj=io.BytesIO(copied), mode="r:gz") as tar:
        names = tar.getnames()
        bodies = [tar.extractfile(member).read() for member in tar.getmembers()[1:]]  # type: ignore[union-attr]
    assert names[0] == MANIFEST_NAME
    assert bodies == [envelope.body_bytes(item.to_dict()) for item in MIXED]
    assert "in/a.json" in names
    assert "in/%2E%2E/d.txt" in names


def test_the_runs_are_the_members_the_parse_wrote_one_after_another(tmp_path: Path) -> None:
    # GIVEN the mixed window, parsed
    parsed = parse_window(write_window(tmp_path / "w.json.gz", *MIXED))
    entries = parsed.entries
    renamed = member_names(entries.ids_and_keys)

    # WHEN its files are laid out for the archive
    layout = list(entries.member_runs(renamed))

    # THEN short ASCII keys not renamed come as spans of the bodies file, the rest as entries
    kinds = [
        f"span of {item.files}" if isinstance(item, MemberSpan) else item.key for item in layout
    ]
    assert kinds == [
        "span of 1",
        MIXED[1].key,
        "span of 1",
        MIXED[3].key,
        "span of 1",  # c.txt: then d.txt is renamed
        MIXED[5].key,
        "span of 1",
        MIXED[7].key,
        "span of 1",
    ]
    # ... each span exactly its members: a header block, the body, padding to a block
    spans = [item for item in layout if isinstance(item, MemberSpan)]
    assert [span.end - span.start for span in spans] == [
        512 + 512,
        512 + 1024,
        512,
        512 + 1536,
        512 + 512,
    ]


def test_consecutive_members_are_one_span_and_a_selection_breaks_it(tmp_path: Path) -> None:
    # GIVEN five short ASCII keys in a row
    items = [inline(f"in/{n}.txt", b"%d" % n * 700) for n in range(5)]
    parsed = parse_window(write_window(tmp_path / "w.json.gz", *items))

    # WHEN all of them, then all but the middle one, are laid out
    whole = list(parsed.entries.member_runs({}))
    holed = list(parsed.entries.without({items[2].file_id}).member_runs({}))

    # THEN all five are one span, and without the middle file two spans of two
    assert [(s.files, s.start) for s in whole if isinstance(s, MemberSpan)] == [(5, 0)]
    assert [(s.files, s.start) for s in holed if isinstance(s, MemberSpan)] == [
        (2, 0),
        (2, 3 * 1536),
    ]
    assert build(parsed, parsed.entries.without({items[2].file_id}), copy_runs=True) == build(
        parsed, parsed.entries.without({items[2].file_id}), copy_runs=False
    )


def test_a_ref_has_no_member_and_breaks_a_run() -> None:
    # GIVEN entries as the parse makes them: two members, a ref, a member after it
    def member(n: int, offset: int) -> WindowEntry:
        return WindowEntry(n, f"{n:064x}", LANDING, f"in/{n}", "v1", 10, 0, "utf8", f"{n:064x}",
                           body_offset=offset + 512, member_offset=offset)  # fmt: skip

    entries = WindowEntries.of(
        [
            member(1, 0),
            member(2, 1024),
            WindowEntry(3, f"{3:064x}", LANDING, "in/3", "v1", 10, 0, "ref", None),
            member(4, 2048),
        ]
    )
    # WHEN laid out  THEN the ref stands alone between two spans
    assert list(entries.member_runs({})) == [
        MemberSpan(0, 2048, 2),
        entries[2],
        MemberSpan(2048, 3072, 1),
    ]


def test_a_changed_block_of_the_bodies_file_fails_the_build(tmp_path: Path) -> None:
    # GIVEN a window of members spanning three CRC blocks, parsed
    items = [inline(f"in/{n}.bin", bytes([n]) * 700_000) for n in range(4)]
    parsed = parse_window(write_window(tmp_path / "w.json.gz", *items))
    assert parsed.bodies is not None
    assert len(parsed.block_crcs) == -(-parsed.bodies.stat().st_size // SPOOL_BLOCK_BYTES) == 3
    assert build(parsed, parsed.entries, copy_runs=True)  # whole, it builds

    # WHEN one byte of its second block changes on the disk before the archive is built
    with parsed.bodies.open("r+b") as spool:
        spool.seek(SPOOL_BLOCK_BYTES + 12_345)
        spool.write(b"\xff")

    # THEN the build stops with SpoolChanged naming the block, not an archive of other bytes
    with pytest.raises(SpoolChanged, match="block 1 is not what was written"):
        build(parsed, parsed.entries, copy_runs=True)


def test_a_cut_bodies_file_fails_the_build(tmp_path: Path) -> None:
    # GIVEN a parsed window whose bodies file then loses its end
    items = [inline(f"in/{n}.txt", b"%d" % n * 3000) for n in range(3)]
    parsed = parse_window(write_window(tmp_path / "w.json.gz", *items))
    assert parsed.bodies is not None
    with parsed.bodies.open("r+b") as spool:
        spool.truncate(parsed.bodies.stat().st_size - 1)

    # WHEN the archive is built  THEN SpoolChanged
    with pytest.raises(SpoolChanged, match="block 0"):
        build(parsed, parsed.entries, copy_runs=True)


def test_a_layout_that_does_not_hold_every_file_is_refused() -> None:
    # GIVEN two planned files and a layout of one run holding only one of them
    files = [
        archive.ArchiveFile(f"{n:064x}", f"k{n}", "v", 1, "0" * 64, 0, f"k{n}", "envelope-sha256")
        for n in range(2)
    ]
    member = archive.ustar_header("k0", 1, 0)
    assert member is not None
    run = archive.MemberRun(1, 1024, lambda: [member + b"a" + bytes(511)])

    # WHEN the archive is written  THEN ValueError: the layout and the plan disagree
    with pytest.raises(ValueError, match="the layout holds 1 files, not the 2 planned"):
        archive.write_archive(io.BytesIO(), b"{}", files, lambda _: io.BytesIO(b"a"), layout=[run])
