"""The archive format: the manifest and a reproducible, streaming `.tar.gz` (DESIGN §3).

The same plan gives the same bytes (DESIGN §4a rule 3), whoever builds it, whenever, in any
time zone and under any umask. What fixes every byte:

- gzip: header mtime 0, no file name, the given codec and level (`GZIP_CODECS`: ISA-L's
  `igzip`, or zlib's `GzipFile`); both write OS = 255 and a constant XFL byte. The two codecs
  deflate the same bytes differently, so the codec is part of the plan like the level.
- tar: PAX format (`tarfile.PAX_FORMAT`). `MANIFEST.json` is the first member, then the files
  in the given (window) order. Regular files only: no directory entries (extractors create
  parent directories themselves, and an entry per directory would be one more thing to order).
  Every member: uid/gid 0, uname/gname `sluice`, mode 0o644, mtime the file's event time in
  whole seconds (floor); the manifest's mtime is the first file's, or 0 when there is none.
  Headers are the bytes `TarInfo.tobuf(PAX_FORMAT)` gives: a ustar block, preceded by a PAX
  extended header only for what the block cannot hold (a long or non-ASCII path, an mtime past
  2242) under the fixed name `././@PaxHeader`; no atime, ctime or pid anywhere. The end is two
  zero blocks, padded to a 10,240-byte record, as `tarfile` writes it.
- the manifest: canonical JSON of the plan only (no time of building).

Bodies are streamed from `open_body` in `chunk_bytes` reads, hashed and counted on the way, so
memory is bounded whatever the file size; a body that is not the planned size and sha256 raises
`BodyMismatch`. Members are written directly rather than through `TarFile.addfile`, which costs
~50-65 µs a file, copies each `TarInfo` and keeps every one of them in memory; the usual header
(short ASCII name) is assembled from constants, and `tobuf` is called only when PAX is needed.
Members already in tar form (`MemberRun`: the parse writes each small inline file that way) are
copied, not rebuilt: the same bytes, without a Python call per file.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import json
import os
import tarfile
import zlib
from array import array
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, BinaryIO, Final, NamedTuple, Protocol

import orjson
from isal import igzip

from delivery.names import MANIFEST_NAME
from infrastructure.tunables import GZIP_CODECS

FORMAT_VERSION: Final = 1
OWNER: Final = "sluice"
FILE_MODE: Final = 0o644

_BLOCK: Final = tarfile.BLOCKSIZE
_RECORD: Final = tarfile.RECORDSIZE
_BATCH_BYTES: Final = 1 << 18
"""Small writes are gathered up to this size before compressing: one zlib call per write."""
_HEX_DIGITS: Final = "0123456789abcdef"
"""A lowercase sha256 is 64 of these: nothing is left when they are stripped (a regex match
costs three times as much, for every file)."""


class Writable(Protocol):
    """Where the archive goes: any binary stream with `write` and `flush` (a `BinaryIO`, or the
    delivery's hashing spool). Never seeked, told or closed here."""

    def write(self, data: bytes, /) -> object: ...

    def flush(self) -> object: ...


class ArchiveFile(NamedTuple):
    """One member, in window order. `sha256` (lowercase hex) is known before the archive is
    built: from the envelope for inline bodies, from the delivery's hashing pass for refs.
    A NamedTuple for the reason `WindowEntry` is one: it is built once for every file."""

    file_id: str
    key: str
    version_id: str
    size: int
    sha256: str
    event_time_ms: int
    member_name: str
    check: str
    """Which integrity check established `sha256`: "envelope-sha256", "s3-checksum-sha256",
    "streamed-sha256"."""
    sequencer: str | None = None
    """S3's `sequencer` of the version's event (hex; a longer or greater one is later): orders
    the versions of one key across archives. None where the event carried none (a replay)."""


class MemberRun(NamedTuple):
    """Consecutive members already in tar form (each a ustar header, its body, its padding),
    copied as they are, in place of the files they hold (`write_archive`'s `layout`)."""

    files: int
    length: int
    """Their bytes, headers and padding included."""
    read: Callable[[], Iterable[bytes]]
    """Their bytes in order, each chunk checked by whoever wrote them (a spool's CRCs)."""


class Exclusion(NamedTuple):
    """A file of the window that the archive does not hold, and why."""

    file_id: str
    key: str | None
    version_id: str | None
    reason: str
    detail: str


class BodyMismatch(ValueError):
    """A body streamed for the archive is not the planned one (size or sha256).

    The caller discards what was written and treats the attempt as a transient failure.
    """

    def __init__(self, file_id: str, key: str, expected: str, got: str) -> None:
        super().__init__(f"body of {key!r} (file {file_id}): expected {expected}, got {got}")
        self.file_id = file_id
        self.key = key
        self.expected = expected
        self.got = got


def manifest(  # noqa: PLR0917  # the agreed API: the plan's fields, positionally
    window_id: str,
    staged_key: str,
    part: int,
    parts: int,
    files: Sequence[ArchiveFile],
    exclusions: Sequence[Exclusion],
) -> bytes:
    """`MANIFEST.json`'s bytes (`write_manifest`), whole: for a part of a few files."""
    out = io.BytesIO()
    write_manifest(out, window_id, staged_key, (part, parts), files, exclusions)
    return out.getvalue()


def write_manifest(  # noqa: PLR0917  # the plan's fields, positionally, as `manifest`
    out: Writable,
    window_id: str,
    staged_key: str,
    position: tuple[int, int],
    files: Sequence[ArchiveFile],
    exclusions: Sequence[Exclusion],
) -> int:
    """Write `MANIFEST.json` for part `position` (part, parts) to `out`, a file at a time (a
    manifest of 100,000 files is never whole in memory); the number of files.

    Compact JSON, sorted keys, UTF-8 (not \\u-escaped), ending in a newline: fastest to write,
    and `jq .` makes it readable. Files and exclusions keep the order given (window order, and
    the persisted exclusions' order). The bytes are those of the whole document dumped at once.
    """
    part, parts = position
    if not 1 <= part <= parts:
        raise ValueError(f"part {part} is not within 1..{parts}")
    excluded_ids = {exclusion.file_id for exclusion in exclusions}
    if len(excluded_ids) != len(exclusions):
        raise ValueError("a file is excluded twice, or both excluded and archived")
    # Keys sorted: "excluded", "files", then the plan's scalars.
    out.write(b'{"excluded":[')
    out.write(b",".join(canonical_json(exclusion_entry(x)) for x in exclusions))
    out.write(b'],"files":[')
    check = _FileCheck(excluded_ids)
    count = 0
    batch: list[dict[str, Any]] = []
    for file in files:
        check.add(file)
        batch.append(_file_entry(file))
        if len(batch) == _MANIFEST_BATCH:
            out.write(b"," + _json_items(batch) if count else _json_items(batch))
            count += len(batch)
            batch.clear()
    if batch:
        out.write(b"," + _json_items(batch) if count else _json_items(batch))
        count += len(batch)
    check.finish(files)
    scalars = {
        "format_version": FORMAT_VERSION,
        "window_id": window_id,
        "staged_key": staged_key,
        "part": part,
        "parts": parts,
    }
    out.write(b"]," + canonical_json(scalars)[1:] + b"\n")
    return count


_MANIFEST_BATCH: Final = 1024
"""File entries dumped at once: one call per batch costs as little as one for the whole list."""


def _json_items(items: list[dict[str, Any]]) -> bytes:
    """`items` as canonical JSON array elements, comma-separated, without the brackets."""
    return canonical_json(items)[1:-1]


def canonical_json(value: Any) -> bytes:
    """Compact JSON, keys sorted, UTF-8 unescaped. orjson writes these bytes ~5x faster than
    `json` (tests/unit/test_archive.py checks the two agree); what it refuses, `json` decides."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        text = json.dumps(
            value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False
        )
        return text.encode()


def _file_entry(file: ArchiveFile) -> dict[str, Any]:
    return {
        "member_name": file.member_name,
        "key": file.key,
        "version_id": file.version_id,
        "file_id": file.file_id,
        "size": file.size,
        "sha256": file.sha256,
        "event_time_ms": file.event_time_ms,
        "check": file.check,
        "sequencer": file.sequencer,
    }


def exclusion_entry(exclusion: Exclusion) -> dict[str, Any]:
    return {
        "file_id": exclusion.file_id,
        "key": exclusion.key,
        "version_id": exclusion.version_id,
        "reason": exclusion.reason,
        "detail": exclusion.detail,
    }


_UNNAMEABLE: Final = frozenset({MANIFEST_NAME, ""})


class _FileCheck:
    """Plan errors are bugs, not transient failures: refuse them before writing a byte. Files
    are checked one at a time, as a streamed manifest meets them, and their names and ids for
    repeats once all are met (`finish`).

    Names and ids are kept as 8-byte hashes, not as strings: a pass over a window's files makes
    their strings anew (`delivery.window_entries`), and keeping them would hold the window's
    metadata again. A repeated hash is confirmed on the files themselves, so a collision of two
    distinct strings is never an error."""

    def __init__(self, excluded_ids: set[str]) -> None:
        self._excluded_ids = excluded_ids
        self._name_hashes = array("q")
        self._id_hashes = array("q")

    def add(self, file: ArchiveFile) -> None:
        name, file_id = file.member_name, file.file_id
        if name in _UNNAMEABLE:
            raise ValueError(f"no file may be named {MANIFEST_NAME!r} or ''")
        if self._excluded_ids and file_id in self._excluded_ids:
            raise ValueError("a file is excluded twice, or both excluded and archived")
        if file.size < 0 or len(file.sha256) != 64 or file.sha256.strip(_HEX_DIGITS):
            raise ValueError(f"file {file_id}: bad size or sha256 (lowercase hex)")
        if "\0" in name:  # a tar reader would cut the name there
            raise ValueError(f"file {file_id}: NUL in member name")
        self._name_hashes.append(hash(name))
        self._id_hashes.append(hash(file_id))

    def finish(self, files: Iterable[ArchiveFile]) -> None:
        """Refuse repeated names or ids among `files`, the files `add` met, met again."""
        names, ids = _repeated(self._name_hashes), _repeated(self._id_hashes)
        if not names and not ids:
            return
        seen: set[tuple[int, str]] = set()
        for file in files:
            for kind, text, suspects in ((0, file.member_name, names), (1, file.file_id, ids)):
                if hash(text) in suspects:
                    if (kind, text) in seen:
                        raise ValueError("member names and file ids must be distinct")
                    seen.add((kind, text))


def _repeated(hashes: array[int]) -> set[int]:
    ordered = sorted(hashes)
    return {a for a, b in itertools.pairwise(ordered) if a == b}


def write_archive(
    out: Writable,
    manifest_bytes: bytes | Path,
    files: Sequence[ArchiveFile],
    open_body: Callable[[ArchiveFile], AbstractContextManager[BinaryIO]],
    *,
    gzip_codec: str = "zlib",
    gzip_level: int = 6,
    chunk_bytes: int = 1 << 20,
    checked_by_manifest: bool = False,
    layout: Iterable[ArchiveFile | MemberRun] | None = None,
) -> None:
    """Stream the `.tar.gz` of `manifest_bytes` (or the file it names: a manifest written by
    `write_manifest`) then `files` into `out` (see module docstring).

    A bad plan is refused (ValueError) before a byte is written: by `write_manifest`, when
    `checked_by_manifest` says the manifest given was just written from these same files (as
    delivery does: a pass over them fewer), else by a pass here. `out` only needs `write` and
    `flush` (see `Writable`); it is not closed. On any error (`BodyMismatch` included) what was
    written is incomplete, and nothing more is written to `out`, not even the gzip trailer.

    `layout` is `files` in the same order with runs of them already in tar form in their place
    (`MemberRun`): those are copied, the rest built from `open_body`. It must hold as many files
    as `files` (ValueError otherwise).
    """
    if not checked_by_manifest:
        check = _FileCheck(set())
        for file in files:
            check.add(file)
        check.finish(files)
    if chunk_bytes < 1:
        raise ValueError("chunk_bytes must be positive")
    sink = _Sink(out)
    compressed = gzip_writer(sink, gzip_codec, gzip_level)
    try:
        tar = _TarWriter(compressed)
        first_mtime = _mtime(files[0]) if files else 0
        if isinstance(manifest_bytes, Path):
            tar.add_file(MANIFEST_NAME, first_mtime, manifest_bytes, chunk_bytes)
        else:
            tar.add_bytes(MANIFEST_NAME, first_mtime, manifest_bytes)
        written = _write_members(tar, files if layout is None else layout, open_body, chunk_bytes)
        if written != len(files):
            raise ValueError(f"the layout holds {written} files, not the {len(files)} planned")  # noqa: TRY301  # the except below discards what was written, as for any error
        tar.finish()
    except BaseException:
        # GzipFile.close (below, or IOBase.__del__ later) would write a trailer after bytes
        # the caller is about to discard, perhaps into a stream it has closed by then.
        sink.discard()
        raise
    finally:
        compressed.close()
    out.flush()


def _write_members(
    tar: _TarWriter,
    layout: Iterable[ArchiveFile | MemberRun],
    open_body: Callable[[ArchiveFile], AbstractContextManager[BinaryIO]],
    chunk_bytes: int,
) -> int:
    """Every member of `layout`, runs copied and files built; how many files."""
    written = 0
    for item in layout:
        if isinstance(item, MemberRun):
            tar.add_members(item)
            written += item.files
            continue
        with open_body(item) as body:
            tar.add_body(item, body, chunk_bytes)
        written += 1
    return written


def gzip_writer(out: Writable, codec: str, level: int) -> gzip.GzipFile:
    """A gzip stream into `out` by `codec` at `level`: no file name, mtime 0 (reproducible)."""
    if level not in GZIP_CODECS.get(codec, ()):
        known = ", ".join(f"{name} {r.start}-{r.stop - 1}" for name, r in GZIP_CODECS.items())
        raise ValueError(f"gzip codec {codec!r} level {level}: the codecs and levels are {known}")
    if codec == "isal":
        # isal's igzip.py is not annotated (its C modules are)
        return igzip.IGzipFile(  # type: ignore[no-untyped-call]
            filename="", mode="wb", fileobj=out, compresslevel=level, mtime=0
        )
    return gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=level, mtime=0)


def member_mtime(event_time_ms: int) -> int:
    """A member's mtime: its file's event time in whole seconds (floor)."""
    return event_time_ms // 1000


def _mtime(file: ArchiveFile) -> int:
    return member_mtime(file.event_time_ms)


def ustar_header(name: str, size: int, mtime: int) -> bytes | None:
    """The member's header when one ustar block holds it (a short ASCII name, as most are),
    assembled from constants; None when it needs a PAX record."""
    if (
        name.isascii()
        and len(name) <= _NAME_FIELD
        and 0 <= size < _OCTAL_11
        and 0 <= mtime < _OCTAL_11
    ):
        return _ustar_header(name.encode("ascii"), size, mtime)
    return None


def _header(name: str, size: int, mtime: int) -> bytes:
    """The member's header block(s): `ustar_header` when no PAX record is needed (the
    common case, ~10x cheaper), else `TarInfo.tobuf`; both give the same bytes."""
    plain = ustar_header(name, size, mtime)
    if plain is not None:
        return plain
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = mtime
    info.mode = FILE_MODE
    info.uid = info.gid = 0
    info.uname = info.gname = OWNER
    # "strict": a name that is not valid UTF-8 is a planning bug, not something to smuggle in.
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "strict")


# The ustar block `tobuf` writes for a regular file, split around its variable fields (name,
# size, mtime, checksum). The checksum is the byte sum with its own field read as 8 spaces.
_NAME_FIELD: Final = 100
_OCTAL_11: Final = 8**11
_MODE_UID_GID: Final = b"%07o\0" % FILE_MODE + (b"%07o\0" % 0) * 2
_AFTER_CHECKSUM: Final = (
    tarfile.REGTYPE
    + bytes(100)  # linkname
    + tarfile.POSIX_MAGIC
    + OWNER.encode().ljust(32, b"\0")  # uname
    + OWNER.encode().ljust(32, b"\0")  # gname
    + bytes(8 + 8 + 155 + 12)  # devmajor, devminor, prefix, padding to 512
)
_FIXED_SUM: Final = sum(_MODE_UID_GID) + sum(b" " * 8) + sum(_AFTER_CHECKSUM)


def _ustar_header(name: bytes, size: int, mtime: int) -> bytes:
    numbers = b"%011o\0%011o\0" % (size, mtime)  # the size and mtime fields
    # The byte sum of the name and numbers, by Adler-32 in C: its low half is 1 + that sum mod
    # 65521, and the sum is at most 100 x 127 + 24 x 55 = 14,020 for the ASCII names here.
    checksum = _FIXED_SUM + (zlib.adler32(name + numbers) & 0xFFFF) - 1
    return b"".join(
        (
            name.ljust(_NAME_FIELD, b"\0"),
            _MODE_UID_GID,
            numbers,
            b"%06o\0 " % checksum,
            _AFTER_CHECKSUM,
        )
    )


def member_padding(size: int) -> bytes:
    """Zeros from the end of a body of `size` bytes to its member's last block's end."""
    return bytes(-size % _BLOCK)


def _refuse_unplanned(file: ArchiveFile, *, overran: bool, sha256: str) -> None:
    """BodyMismatch if a body read to its planned size went on, or is not the planned one."""
    if overran:
        raise BodyMismatch(
            file.file_id, file.key, f"{file.size} bytes", f"more than {file.size} bytes"
        )
    if sha256 != file.sha256:
        raise BodyMismatch(file.file_id, file.key, f"sha256 {file.sha256}", f"sha256 {sha256}")


class _Sink:
    """Passes writes through to `out` until discarded, then swallows them."""

    def __init__(self, out: Writable) -> None:
        self._out: Writable | None = out

    def write(self, data: bytes) -> int:
        if self._out is not None:
            self._out.write(data)
        return len(data)

    def flush(self) -> None:
        if self._out is not None:
            self._out.flush()

    def discard(self) -> None:
        self._out = None


class _TarWriter:
    """Tar blocks into a gzip stream, small writes batched, large chunks passed straight on."""

    def __init__(self, compressed: gzip.GzipFile) -> None:
        self._compressed = compressed
        # Parts joined once a batch is full: appending to a bytearray that `clear` empties
        # costs ~8x as much (it grows its buffer again every batch).
        self._batch: list[bytes] = []
        self._batched = 0
        self._offset = 0

    def add_bytes(self, name: str, mtime: int, data: bytes) -> None:
        self._write(_header(name, len(data), mtime) + data + member_padding(len(data)))

    def add_file(self, name: str, mtime: int, path: Path, chunk_bytes: int) -> None:
        """A local file of ours (the manifest), copied in chunks: it is not hashed here."""
        with path.open("rb") as source:
            size = os.fstat(source.fileno()).st_size
            self._write(_header(name, size, mtime))
            copied = 0
            while chunk := source.read(chunk_bytes):
                self._write(chunk)
                copied += len(chunk)
        if copied != size:
            raise ValueError(f"{path} changed while it was archived")
        self._write(member_padding(size))

    def add_body(self, file: ArchiveFile, body: BinaryIO, chunk_bytes: int) -> None:
        """Copy exactly `file.size` bytes, hashing them; BodyMismatch if they are not the plan.
        A body read whole at once (a small file: the usual case) is checked before any of it
        is written, and written with its header and padding in one write."""
        header = _header(file.member_name, file.size, _mtime(file))
        first = body.read(min(chunk_bytes, file.size))
        if len(first) == file.size:
            _refuse_unplanned(
                file, overran=bool(body.read(1)), sha256=hashlib.sha256(first).hexdigest()
            )
            self._write(header + first + member_padding(file.size))
            return
        self._add_streamed(file, body, chunk_bytes, header, first)

    def add_members(self, run: MemberRun) -> None:
        """Copy members already in tar form; ValueError if they are not `run.length` bytes."""
        copied = 0
        for chunk in run.read():
            self._write(chunk)
            copied += len(chunk)
        if copied != run.length:
            raise ValueError(f"a run of {run.files} members is {copied} bytes, not {run.length}")

    def _add_streamed(
        self, file: ArchiveFile, body: BinaryIO, chunk_bytes: int, header: bytes, first: bytes
    ) -> None:
        """`add_body` past its first read: the header rides with the first chunk and the
        padding with the last."""
        pending = header
        digest = hashlib.sha256()
        remaining = file.size
        chunk = first
        while remaining:
            if not chunk:
                got = f"{file.size - remaining} bytes"
                raise BodyMismatch(file.file_id, file.key, f"{file.size} bytes", got)
            if len(chunk) > remaining:  # a stream that ignores the size asked for
                break
            digest.update(chunk)
            remaining -= len(chunk)
            if remaining:
                self._write(pending + chunk)
                pending = b""
                chunk = body.read(min(chunk_bytes, remaining))
            else:
                pending += chunk
        _refuse_unplanned(file, overran=bool(remaining or body.read(1)), sha256=digest.hexdigest())
        self._write(pending + member_padding(file.size))

    def finish(self) -> None:
        """End-of-archive: two zero blocks, then zeros to a whole record, as `tarfile` does."""
        end = 2 * _BLOCK
        self._write(bytes(end + (-(self._offset + end) % _RECORD)))
        self._flush()

    def _write(self, data: bytes) -> None:
        self._offset += len(data)
        if self._batched + len(data) <= _BATCH_BYTES:
            self._batch.append(data)
            self._batched += len(data)
            return
        self._flush()
        if len(data) < _BATCH_BYTES:
            self._batch.append(data)
            self._batched = len(data)
        else:
            self._compressed.write(data)

    def _flush(self) -> None:
        if self._batch:
            self._compressed.write(b"".join(self._batch))
            self._batch.clear()
            self._batched = 0
