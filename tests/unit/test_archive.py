"""delivery/archive.py: the manifest and the reproducible, streaming `.tar.gz`.

Archives are read back with the real `tarfile` and `gzip`; byte-for-byte reproducibility is
checked in process and in a subprocess with another time zone, umask, locale and hash seed.
"""

from __future__ import annotations

import gc
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
import tracemalloc
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, BinaryIO, cast

import pytest

from delivery.archive import (
    FORMAT_VERSION,
    ArchiveFile,
    BodyMismatch,
    Exclusion,
    manifest,
    write_archive,
    write_manifest,
)
from delivery.names import safe_member_names

ROOT = Path(__file__).resolve().parents[2]
EVENT_MS = 1_714_521_600_123
WINDOW = "sluice-0-1-2024-05-01-00-00-00-7a1c"
STAGED = "buffers/dt=2024-05-01/hour=00/" + WINDOW + ".json.gz"
MiB = 1 << 20

Opener = Callable[[ArchiveFile], AbstractContextManager[BinaryIO]]


def fid(n: int | str) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def plan(
    items: Sequence[tuple[str, bytes]], *, check: str = "envelope-sha256"
) -> tuple[list[ArchiveFile], dict[str, bytes]]:
    """ArchiveFiles for (key, body) pairs in window order, named by safe_member_names."""
    ids = [fid(index) for index in range(len(items))]
    names = safe_member_names([(id_, key) for id_, (key, _) in zip(ids, items, strict=True)])
    files = [
        ArchiveFile(
            file_id=id_,
            key=key,
            version_id=f"v{index}",
            size=len(body),
            sha256=hashlib.sha256(body).hexdigest(),
            event_time_ms=EVENT_MS + index * 1_500,
            member_name=names[id_],
            check=check,
            sequencer=f"{0x61A0 + index:016X}",
        )
        for index, (id_, (key, body)) in enumerate(zip(ids, items, strict=True))
    ]
    return files, {file.file_id: body for file, (_, body) in zip(files, items, strict=True)}


class Collect:
    """A write-only, non-seekable output, as the caller's hashing spool is; refuses writes
    once closed."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> int:
        assert not self.closed, "written after the caller closed it"
        self.chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


class Trickle(io.RawIOBase):
    """A body that returns at most `most` bytes a read, as a network stream may."""

    def __init__(self, data: bytes, most: int | None = None) -> None:
        self._data = io.BytesIO(data)
        self._most = most

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._most is not None and (size < 0 or size > self._most):
            size = self._most
        return self._data.read(size)


def opener(bodies: Mapping[str, bytes], most: int | None = None) -> Opener:
    @contextmanager
    def open_body(file: ArchiveFile) -> Iterator[BinaryIO]:
        yield cast(BinaryIO, Trickle(bodies[file.file_id], most))

    return open_body


def build(
    files: Sequence[ArchiveFile],
    bodies: Mapping[str, bytes],
    exclusions: Sequence[Exclusion] = (),
    **options: Any,
) -> bytes:
    out = Collect()
    manifest_bytes = manifest(WINDOW, STAGED, 1, 1, files, exclusions)
    write_archive(cast(BinaryIO, out), manifest_bytes, files, opener(bodies), **options)
    return out.data


def members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return tar.getmembers()


def pax_records(tar_bytes: bytes) -> list[dict[str, str]]:
    """The records of every PAX extended header ('x') in an uncompressed tar, in order."""
    found, offset = [], 0
    while tar_bytes[offset : offset + 512].strip(b"\0"):
        header = tar_bytes[offset : offset + 512]
        size = int(header[124:136].rstrip(b"\0 ") or b"0", 8)
        payload = tar_bytes[offset + 512 : offset + 512 + size]
        if header[156:157] == b"x":
            records, position = {}, 0
            while position < len(payload):
                length = int(payload[position:].split(b" ", 1)[0])
                keyword, value = (
                    payload[position : position + length - 1].split(b" ", 1)[1].split(b"=", 1)
                )
                records[keyword.decode()] = value.decode()
                position += length
            found.append(records)
        offset += 512 + -(-size // 512) * 512
    return found


SAMPLE = [
    ("acme/orders/2024-05-01 ü.json", b'{"order_id": "o-1"}\n'),
    ("acme/orders/../../etc/passwd", b"root:x:0:0\n"),
    ("acme/" + "long-" * 60 + ".csv", b"a,b\n1,2\n"),
    ("ACME/orders/2024-05-01 Ü.json", b"case clash\n"),
    ("/acme/empty", b""),
    ("acme/bin", bytes(range(256)) * 9),
]


def sample_archive() -> bytes:
    """One archive with unicode, escapes, a long name, a case clash, an empty file, binary."""
    files, bodies = plan(SAMPLE)
    exclusions = [Exclusion(fid("gone"), "acme/gone.json", "v9", "version-gone", "NoSuchVersion")]
    return build(files, bodies, exclusions)


# --- manifest -----------------------------------------------------------------------------------


def test_manifest_holds_the_plan_and_nothing_else() -> None:
    # GIVEN a planned part with files and an exclusion
    files, _ = plan([("a/ü.txt", b"x"), ("b", b"yz")], check="streamed-sha256")
    gone = Exclusion(fid("gone"), None, None, "unparseable-line", "line 7: not JSON")
    # WHEN its manifest is made
    data = manifest(WINDOW, STAGED, 2, 3, files, [gone])
    # THEN it says exactly what the plan says
    assert json.loads(data) == {
        "format_version": FORMAT_VERSION,
        "window_id": WINDOW,
        "staged_key": STAGED,
        "part": 2,
        "parts": 3,
        "files": [
            {
                "member_name": file.member_name,
                "key": file.key,
                "version_id": file.version_id,
                "file_id": file.file_id,
                "size": file.size,
                "sha256": file.sha256,
                "event_time_ms": file.event_time_ms,
                "check": "streamed-sha256",
                "sequencer": file.sequencer,
            }
            for file in files
        ],
        "excluded": [
            {
                "file_id": fid("gone"),
                "key": None,
                "version_id": None,
                "reason": "unparseable-line",
                "detail": "line 7: not JSON",
            }
        ],
    }


def test_manifest_is_canonical_utf8_json() -> None:
    # GIVEN a plan with a non-ASCII key
    files, _ = plan([("ü/€.txt", b"x")])
    # WHEN the manifest is made twice
    data = manifest(WINDOW, STAGED, 1, 1, files, [])
    # THEN it is the same bytes: sorted keys, compact, raw UTF-8, one trailing newline
    assert data == manifest(WINDOW, STAGED, 1, 1, files, [])
    canonical = json.dumps(
        json.loads(data), sort_keys=True, ensure_ascii=False, separators=(",", ":")
    )
    assert data == canonical.encode() + b"\n"
    assert "ü/€.txt".encode() in data


def test_manifest_bytes_are_jsons_canonical_form_for_any_key() -> None:
    # GIVEN keys of every ASCII control character, DEL, line and paragraph separators, a BOM,
    # astral and CJK characters: what an encoder might escape differently
    tricky = [chr(c) for c in [*range(0x20), 0x22, 0x5C, 0x7F, 0x80, 0x2028, 0x2029, 0xFEFF]]
    tricky += ["\U0001f600", "中", "é", "/"]
    files, _ = plan([(f"k{n}/{char}x{char}", b"x") for n, char in enumerate(tricky)])
    exclusions = [Exclusion("e" * 64, "k\x01", None, "unparseable-line", "line 1: \u2028\x7f")]
    # WHEN the manifest is made
    data = manifest(WINDOW, STAGED, 1, 1, files, exclusions)
    # THEN it is byte for byte what `json` writes canonically (the format's definition)
    canonical = json.dumps(
        json.loads(data), sort_keys=True, ensure_ascii=False, separators=(",", ":")
    )
    assert data == canonical.encode() + b"\n"


def test_a_manifest_written_in_batches_is_the_whole_documents_bytes() -> None:
    # GIVEN more files than one batch of entries (1,024), non-ASCII keys among them
    files, _ = plan([(f"d/ü{n}.txt", b"x") for n in range(2_500)])
    # WHEN the manifest is streamed to a file-like object
    out = io.BytesIO()
    count = write_manifest(out, WINDOW, STAGED, (1, 1), files, [])
    # THEN it counts every file and is `json`'s canonical dump of the whole document
    assert count == 2_500
    document = json.loads(out.getvalue())
    canonical = json.dumps(document, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    assert out.getvalue() == canonical.encode() + b"\n"
    assert [f["file_id"] for f in document["files"]] == [f.file_id for f in files]


@pytest.mark.parametrize(("part", "parts"), [(0, 1), (2, 1), (1, 0)])
def test_manifest_refuses_a_part_outside_the_parts(part: int, parts: int) -> None:
    # GIVEN a part number outside 1..parts
    # WHEN a manifest is made
    # THEN it is refused
    with pytest.raises(ValueError, match="part"):
        manifest(WINDOW, STAGED, part, parts, [], [])


def test_manifest_refuses_a_file_both_archived_and_excluded() -> None:
    # GIVEN a file that is also in the exclusions
    files, _ = plan([("a", b"x")])
    both = Exclusion(files[0].file_id, "a", "v0", "checksum-mismatch", "")
    # WHEN a manifest is made
    # THEN it is refused
    with pytest.raises(ValueError, match="excluded"):
        manifest(WINDOW, STAGED, 1, 1, files, [both])


# --- layout -------------------------------------------------------------------------------------


def test_manifest_first_then_files_in_window_order_without_directories() -> None:
    # GIVEN files in a window order that is not sorted, nested in directories
    files, bodies = plan([("z/2", b"2"), ("a/b/1", b"1"), ("m", b"3")])
    # WHEN archived
    data = build(files, bodies)
    # THEN MANIFEST.json comes first, then the files in window order, all regular files
    infos = members(data)
    assert [info.name for info in infos] == ["MANIFEST.json", "z/2", "a/b/1", "m"]
    assert all(info.isreg() for info in infos)


def test_round_trip_gives_every_byte_and_the_manifest(tmp_path: Path) -> None:
    # GIVEN the sample plan (unicode, .., a long name, a case clash, an empty and a binary file)
    files, bodies = plan(SAMPLE)
    exclusions = [Exclusion(fid("gone"), "acme/gone.json", "v9", "version-gone", "NoSuchVersion")]
    # WHEN archived and extracted with filter="data"
    data = build(files, bodies, exclusions)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(tmp_path, filter="data")
    # THEN every file is there byte for byte, and the manifest is the one planned
    for file in files:
        assert (tmp_path / file.member_name).read_bytes() == bodies[file.file_id]
    expected = manifest(WINDOW, STAGED, 1, 1, files, exclusions)
    assert (tmp_path / "MANIFEST.json").read_bytes() == expected
    listed = json.loads(expected)["files"]
    assert [entry["sha256"] for entry in listed] == [
        hashlib.sha256(bodies[file.file_id]).hexdigest() for file in files
    ]
    extracted = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert len(extracted) == len(files) + 1


def test_empty_files_are_members_of_size_zero() -> None:
    # GIVEN two empty files
    files, bodies = plan([("e1", b""), ("d/e2", b"")])
    # WHEN archived
    infos = members(build(files, bodies))
    # THEN both are there, empty
    assert [(info.name, info.size) for info in infos[1:]] == [("e1", 0), ("d/e2", 0)]


def test_an_archive_of_exclusions_only_holds_just_the_manifest() -> None:
    # GIVEN a part whose every file was excluded
    gone = [Exclusion(fid(n), f"k{n}", "v", "version-gone", "NoSuchVersion") for n in range(3)]
    # WHEN archived
    data = build([], {}, gone)
    # THEN the archive holds only the manifest (mtime 0), listing the exclusions
    (info,) = members(data)
    assert (info.name, info.mtime) == ("MANIFEST.json", 0)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        document = json.loads(cast(BinaryIO, tar.extractfile(info)).read())
    assert document["files"] == []
    assert [entry["file_id"] for entry in document["excluded"]] == [fid(n) for n in range(3)]


def test_member_metadata_is_fixed() -> None:
    # GIVEN files with different event times
    files, bodies = plan([("a", b"1"), ("b/c", b"22"), ("d", b"333")])
    # WHEN archived
    infos = members(build(files, bodies))
    # THEN owner, group, mode are fixed and mtimes are the event times in whole seconds;
    # the manifest's mtime is the first file's
    assert [info.mtime for info in infos] == [EVENT_MS // 1000] + [
        file.event_time_ms // 1000 for file in files
    ]
    for info in infos:
        assert (info.uid, info.gid, info.uname, info.gname) == (0, 0, "sluice", "sluice")
        assert info.mode == 0o644
        assert info.type == tarfile.REGTYPE


def test_long_and_non_ascii_names_use_pax_headers_with_only_a_path() -> None:
    # GIVEN an ASCII name over 100 bytes, a non-ASCII name, a 255-byte segment
    long_ascii = "dir/" + "x" * 150
    unicode_name = "données/naïve €.txt"
    long_segment = "é" * 127 + "a"
    files, bodies = plan([(long_ascii, b"1"), (unicode_name, b"2"), (long_segment, b"3")])
    # WHEN archived
    data = build(files, bodies)
    # THEN the names come back whole
    assert [info.name for info in members(data)[1:]] == [long_ascii, unicode_name, long_segment]
    # AND each name has a PAX 'x' header carrying only its path: no atime, ctime, pid or mtime
    records = pax_records(gzip.decompress(data))
    assert records == [{"path": long_ascii}, {"path": unicode_name}, {"path": long_segment}]
    assert b"@PaxHeader" in gzip.decompress(data)
    assert b"PaxHeaders." not in gzip.decompress(data)  # no GNU-style pid-based header name


def test_the_tar_stream_is_what_tarfile_itself_writes() -> None:
    # GIVEN members taking every header path: short ASCII, long, non-ASCII, a far-future mtime
    files, bodies = plan([("a", b"1" * 700), ("d/" + "y" * 120, b""), ("ü", b"2")])
    files.append(
        ArchiveFile(fid("f"), "f", "v", 3, hashlib.sha256(b"333").hexdigest(), 9 * 10**12, "f", "c")
    )
    bodies[fid("f")] = b"333"
    manifest_bytes = manifest(WINDOW, STAGED, 1, 1, files, [])
    # WHEN archived, and the same members are written by tarfile's own addfile
    out = Collect()
    write_archive(cast(BinaryIO, out), manifest_bytes, files, opener(bodies))
    reference = io.BytesIO()
    with tarfile.open(fileobj=reference, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entries = [("MANIFEST.json", files[0].event_time_ms, manifest_bytes)]
        entries += [(f.member_name, f.event_time_ms, bodies[f.file_id]) for f in files]
        for name, event_ms, body in entries:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(body), event_ms // 1000, 0o644
            info.uname = info.gname = "sluice"
            tar.addfile(info, io.BytesIO(body))
    # THEN the uncompressed streams are identical, end-of-archive padding included
    assert gzip.decompress(out.data) == reference.getvalue()


# --- gzip ---------------------------------------------------------------------------------------


def test_gzip_header_has_mtime_zero_and_no_name(tmp_path: Path) -> None:
    # GIVEN an output that is a named file (GzipFile would otherwise record its name)
    files, bodies = plan([("a", b"x")])
    path = tmp_path / "window.tar.gz"
    # WHEN archived into it
    with path.open("wb") as out:
        write_archive(out, manifest(WINDOW, STAGED, 1, 1, files, []), files, opener(bodies))
    header = path.read_bytes()[:10]
    # THEN: magic, deflate, no flags (so no FNAME), mtime 0, XFL 0 (level 6), OS 255
    assert header == b"\x1f\x8b\x08\x00" + b"\x00\x00\x00\x00" + b"\x00\xff"


def test_gzip_level_is_the_one_asked_for() -> None:
    # GIVEN a compressible body
    files, bodies = plan([("a", b"abc" * 50_000)])
    # WHEN archived at levels 1 and 9
    fast, best = build(files, bodies, gzip_level=1), build(files, bodies, gzip_level=9)
    # THEN the XFL byte says so, and both decompress to the same tar
    assert (fast[8], best[8]) == (4, 2)
    assert gzip.decompress(fast) == gzip.decompress(best)


def test_the_isal_codec_writes_an_archive_any_gzip_reader_reads() -> None:
    # GIVEN the sample plan and a compressible body
    files, bodies = plan([*SAMPLE, ("big", b"abc" * 50_000)])
    # WHEN archived by ISA-L (delivery's shipped codec) and by zlib
    isal, zlib_ = build(files, bodies, gzip_codec="isal", gzip_level=2), build(files, bodies)
    # THEN the bytes differ, but stdlib gzip reads the same tar from both, with the same header
    # fields that make the archive reproducible (mtime 0, no name, OS 255)
    assert isal != zlib_
    assert gzip.decompress(isal) == gzip.decompress(zlib_)
    assert isal[3:8] == b"\x00" * 5
    assert isal[9] == 0xFF
    # ... the same bytes every time, and tarfile lists every file
    assert build(files, bodies, gzip_codec="isal", gzip_level=2) == isal
    assert [m.name for m in members(isal)][1:] == [f.member_name for f in files]


@pytest.mark.parametrize(("codec", "level"), [("isal", 4), ("zlib", 0), ("brotli", 1)])
def test_a_codec_or_level_it_does_not_take_is_refused_before_writing(
    codec: str, level: int
) -> None:
    # GIVEN the sample plan  WHEN archived with an unknown codec or a level out of its range
    files, bodies = plan(SAMPLE)
    out = Collect()
    with pytest.raises(ValueError, match=f"gzip codec {codec!r} level {level}"):
        write_archive(
            cast(BinaryIO, out),
            manifest(WINDOW, STAGED, 1, 1, files, []),
            files,
            opener(bodies),
            gzip_codec=codec,
            gzip_level=level,
        )
    # THEN nothing was written
    assert out.data == b""


# --- reproducibility ----------------------------------------------------------------------------


def test_same_plan_same_bytes_whatever_the_chunking() -> None:
    # GIVEN the sample plan
    files, bodies = plan(SAMPLE)
    manifest_bytes = manifest(WINDOW, STAGED, 1, 1, files, [])
    outputs = []
    # WHEN archived with 1 MiB chunks, with 3-byte chunks, and from streams giving 7 bytes a read
    for chunk_bytes, most in [(MiB, None), (3, None), (MiB, 7)]:
        out = Collect()
        write_archive(
            cast(BinaryIO, out),
            manifest_bytes,
            files,
            opener(bodies, most),
            chunk_bytes=chunk_bytes,
        )
        outputs.append(out.data)
    # THEN every output is the same bytes
    assert outputs[0] == outputs[1] == outputs[2]
    assert sample_archive() == sample_archive()


def test_same_bytes_in_another_process_time_zone_umask_and_locale() -> None:
    # GIVEN a child process with another TZ, umask, locale and hash seed
    script = textwrap.dedent(
        f"""
        import hashlib, os, runpy, sys, time
        os.umask(0o077)
        time.tzset()
        sample_archive = runpy.run_path({str(Path(__file__))!r})["sample_archive"]
        sys.stdout.write(hashlib.sha256(sample_archive()).hexdigest())
        """
    )
    env = {**os.environ, "TZ": "Pacific/Chatham", "LC_ALL": "C", "PYTHONHASHSEED": "4242"}
    # WHEN it builds the sample archive
    child = subprocess.run(  # noqa: S603  # fixed argv: this interpreter and a literal script
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    # THEN it gets the bytes this process gets
    assert child.stdout == hashlib.sha256(sample_archive()).hexdigest()


# --- streaming and verification -----------------------------------------------------------------

SEED = hashlib.sha256(b"seed").digest() * 2049  # 65,568 bytes: a period deflate cannot see


class Generated(io.RawIOBase):
    """`size` bytes of a long repeating pattern, made as they are read, never held whole."""

    def __init__(self, size: int) -> None:
        self._remaining = size
        self._position = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        assert size >= 0, "a whole-body read would hold the body in memory"
        size = min(size, self._remaining)
        parts, start = [], self._position % len(SEED)
        left = size
        while left:
            part = SEED[start : start + left]
            parts.append(part)
            left -= len(part)
            start = 0
        self._position += size
        self._remaining -= size
        return b"".join(parts)


def test_a_large_body_streams_in_bounded_memory(tmp_path: Path) -> None:
    # GIVEN a 50 MiB body made on demand, and its sha256 from a first pass
    size = 50 * MiB
    digest, body = hashlib.sha256(), Generated(size)
    while chunk := body.read(MiB):
        digest.update(chunk)
    file = ArchiveFile(fid(0), "big.bin", "v", size, digest.hexdigest(), EVENT_MS, "big.bin", "c")

    @contextmanager
    def open_body(_: ArchiveFile) -> Iterator[BinaryIO]:
        yield cast(BinaryIO, Generated(size))

    # WHEN it is archived into a file while tracemalloc watches
    path = tmp_path / "big.tar.gz"
    manifest_bytes = manifest(WINDOW, STAGED, 1, 1, [file], [])
    tracemalloc.start()
    try:
        with path.open("wb") as out:
            write_archive(out, manifest_bytes, [file], open_body, gzip_level=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # THEN the peak allocation is a few chunks, far below the body's size
    assert peak < 8 * MiB, f"peak {peak / MiB:.1f} MiB"
    # AND the member reads back with the planned sha256
    with path.open("rb") as raw, tarfile.open(fileobj=raw, mode="r|gz") as tar:
        for info in tar:
            if info.name == "big.bin":
                stream = cast(BinaryIO, tar.extractfile(info))
                check = hashlib.sha256()
                while chunk := stream.read(MiB):
                    check.update(chunk)
                assert (info.size, check.hexdigest()) == (size, file.sha256)


def mismatched(body: bytes, size: int, sha256: str, most: int | None = None) -> BodyMismatch:
    """Archive one good file then a file whose body is `body`; return the error raised."""
    good = hashlib.sha256(b"good").hexdigest()
    files = [
        ArchiveFile(fid(0), "good", "v", 4, good, EVENT_MS, "good", "c"),
        ArchiveFile(fid(1), "bad/key", "v", size, sha256, EVENT_MS, "bad/key", "c"),
    ]
    out = Collect()
    with pytest.raises(BodyMismatch) as raised:
        write_archive(
            cast(BinaryIO, out),
            manifest(WINDOW, STAGED, 1, 1, files, []),
            files,
            opener({fid(0): b"good", fid(1): body}, most),
        )
    # The output is left incomplete (no gzip trailer), and nothing reaches it afterwards,
    # not even when the abandoned GzipFile is collected after the caller closed its stream.
    out.closed = True
    gc.collect()
    with pytest.raises(EOFError):
        gzip.decompress(out.data)
    return raised.value


def test_a_short_body_is_a_mismatch() -> None:
    # GIVEN a body 5 bytes short of its planned size
    # WHEN archived
    error = mismatched(b"12345", 10, hashlib.sha256(b"1234567890").hexdigest())
    # THEN BodyMismatch names the file, the key, and both lengths
    assert isinstance(error, ValueError)
    assert (error.file_id, error.key) == (fid(1), "bad/key")
    assert (error.expected, error.got) == ("10 bytes", "5 bytes")


@pytest.mark.parametrize("most", [None, 3])
def test_a_long_body_is_a_mismatch(most: int | None) -> None:
    # GIVEN a body 1 byte longer than planned (read whole or a few bytes at a time)
    # WHEN archived
    error = mismatched(b"12345678901", 10, hashlib.sha256(b"1234567890").hexdigest(), most)
    # THEN BodyMismatch says more bytes came than planned
    assert (error.expected, error.got) == ("10 bytes", "more than 10 bytes")


def test_a_stream_returning_more_than_asked_is_a_mismatch() -> None:
    # GIVEN a body stream that ignores the size it is asked for
    class Greedy(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            return super().read(-1)

    files, _ = plan([("k", b"0123456789")])

    @contextmanager
    def open_body(_: ArchiveFile) -> Iterator[BinaryIO]:
        yield Greedy(b"0123456789" * 2)

    # WHEN archived with small chunks
    # THEN it is a BodyMismatch, not a corrupt member
    with pytest.raises(BodyMismatch, match="more than 10 bytes"):
        write_archive(cast(BinaryIO, Collect()), b"{}", files, open_body, chunk_bytes=4)


def test_a_body_with_the_wrong_sha256_is_a_mismatch() -> None:
    # GIVEN a body of the planned size whose sha256 is not the planned one
    planned = hashlib.sha256(b"1234567890").hexdigest()
    # WHEN archived
    error = mismatched(b"1234567899", 10, planned)
    # THEN BodyMismatch gives both digests
    assert error.expected == f"sha256 {planned}"
    assert error.got == f"sha256 {hashlib.sha256(b'1234567899').hexdigest()}"


@pytest.mark.parametrize(
    "change",
    [
        {"member_name": "MANIFEST.json"},
        {"member_name": "a"},  # the other file's name
        {"member_name": "a\0b"},
        {"sha256": "A" * 64},
        {"size": -1},
    ],
)
def test_a_bad_plan_is_refused_before_a_byte_is_written(change: dict[str, Any]) -> None:
    # GIVEN a plan with a reserved or repeated name, an uppercase sha256 or a negative size
    files, bodies = plan([("a", b"1"), ("b", b"2")])
    files[1] = files[1]._replace(**change)
    out = Collect()
    # WHEN it is archived
    # THEN it is refused as a bug (ValueError, not BodyMismatch) and nothing is written
    with pytest.raises(ValueError) as raised:  # noqa: PT011  # the message varies by defect
        write_archive(cast(BinaryIO, out), b"{}", files, opener(bodies))
    assert not isinstance(raised.value, BodyMismatch)
    assert out.data == b""
