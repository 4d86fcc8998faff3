"""Reading a staged window: gzip of newline-terminated envelopes (DESIGN §3, "Staged window").

The window is spooled to local storage and read once, so memory stays bounded whatever its size:
`parse_window` keeps each file's metadata and writes each inline body, decoded and checked, to a
bodies file beside the window, as its tar member where one ustar block can name it by its key;
`InlineBodies` reads a body back from there by its place, or a run of members whole for the
archive to copy, while the archive (and the payload tables) are built. Each MiB of that file
carries a CRC-32, checked when a run is copied.
Repeated `file_id`s are dropped, first wins (§4a rule 1); a line that is not a valid envelope is
an exclusion with its reason and line number, and the window goes on.
"""

from __future__ import annotations

import gzip
import io
import zlib
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Final, cast

from isal import igzip, isal_zlib
from isal.isal_zlib import crc32

from delivery.archive import Exclusion, MemberRun, member_mtime, member_padding, ustar_header
from delivery.window_entries import WindowEntries, WindowEntry, raw_digest
from transform import envelope
from transform.quarantine import raw_record_id
from transform.typed_envelope import decode_typed

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class SpoolChanged(OSError):
    """A window's bodies file does not hold what the parse wrote (a block's CRC-32 differs, or
    it is shorter): local storage failed between the two passes. The build fails, and the
    window is delivered again from its staged object."""


@dataclass
class ParsedWindow:
    entries: WindowEntries = field(default_factory=WindowEntries)
    """Distinct files in window order (packed: `delivery.window_entries`)."""
    bad_lines: list[Exclusion] = field(default_factory=list)
    repeated: int = 0
    """Lines dropped because their file_id appeared earlier in the window."""
    lines: int = 0
    bodies: Path | None = None
    """The inline bodies, decoded, one after another (`WindowEntry.body_offset`), each in its tar
    member where it has one (`WindowEntry.member_offset`)."""
    block_crcs: array[int] = field(default_factory=lambda: array("I"))
    """The CRC-32 of each MiB of `bodies` (`SPOOL_BLOCK_BYTES`), the last block's as far as
    it goes."""
    truncated: str | None = None
    """Why the staged object could not be read to its end (a cut gzip stream): the lines read
    before are delivered; the files after it, unknown here, are left for reconcile to find."""


def spool_window(s3: S3Client, bucket: str, key: str, path: Path) -> Path:
    """Download the staged object to `path`, a MiB at a time: memory holds one chunk, where
    `download_fileobj` buffers up to ten 8 MiB ranges at once (s3transfer's defaults)."""
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    try:
        with path.open("wb") as out:
            for chunk in body.iter_chunks(_READ_BUFFER):
                out.write(chunk)
    finally:
        body.close()
    return path


_ISAL_ERROR: Final = cast("type[Exception]", isal_zlib.error)
"""ISA-L's inflate error (its stub declares an instance, not the class it is)."""


def parse_window(path: Path) -> ParsedWindow:
    """Each file's metadata, repeats dropped, bad lines excluded with a reason; the inline
    bodies written to `<path>.bodies` (`ParsedWindow.bodies`)."""
    bodies = path.with_name(path.name + ".bodies")
    try:
        parsed = ParsedWindow(bodies=bodies)
        _parse_lines(path, parsed, set())
    except (EOFError, zlib.error, _ISAL_ERROR, gzip.BadGzipFile) as err:
        # Cut short: keep its whole lines as a valid gzip file in its place, and say where it
        # ended.
        kept = _salvage(path)
        parsed = ParsedWindow(bodies=bodies)
        _parse_lines(path, parsed, set())
        parsed.truncated = f"unreadable after line {kept}: {type(err).__name__}: {err}"
    return parsed


def _salvage(path: Path) -> int:
    """Rewrite `path` with the whole lines its gzip stream yields before it breaks; their
    count. Streamed: memory holds a chunk and one partial line."""
    salvaged = path.with_suffix(".salvaged")
    kept = 0
    partial = b""
    with path.open("rb") as raw, gzip.open(salvaged, "wb") as out:
        stream = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            for read in iter(lambda: raw.read(_READ_BUFFER), b""):
                pending = read
                while pending:
                    data = partial + stream.decompress(pending)
                    *lines, partial = data.split(b"\n")
                    for line in lines:
                        out.write(line + b"\n")
                    kept += len(lines)
                    pending = stream.unused_data if stream.eof else b""
                    if stream.eof:  # the next gzip member, if any
                        stream = zlib.decompressobj(16 + zlib.MAX_WBITS)
        except zlib.error:
            pass  # the break itself: what came before is kept
    salvaged.replace(path)
    return kept


def _parse_lines(path: Path, parsed: ParsedWindow, seen: set[bytes | str]) -> None:
    """One pass over `path`, into `parsed` (its bodies file written from the start)."""
    if parsed.bodies is None:
        raise ValueError("parsed.bodies: where to write the inline bodies")
    with _lines(path) as lines, parsed.bodies.open("wb", buffering=_READ_BUFFER) as file:
        bodies = _BodyWriter(file, parsed.block_crcs)
        line_number = 0
        for line_number, line in enumerate(lines, start=1):
            if not line or line.isspace():  # as `not line.strip()`, without copying the line
                continue
            entry_or_exclusion = _entry(line, line_number, bodies)
            seen_as = _seen_as(entry_or_exclusion.file_id)
            if isinstance(entry_or_exclusion, Exclusion):
                if seen_as not in seen:
                    seen.add(seen_as)
                    parsed.bad_lines.append(entry_or_exclusion)
                continue
            if seen_as in seen:
                parsed.repeated += 1
                continue
            seen.add(seen_as)
            parsed.entries.append(entry_or_exclusion)
        parsed.lines = line_number
        bodies.finish()


def _seen_as(file_id: str) -> bytes | str:
    """How the parse remembers a file_id: its 32 raw bytes when it is lowercase sha256 hex
    (the usual id: 65 bytes of object, not 113), else the id itself."""
    return raw_digest(file_id) or file_id


class _BodyWriter:
    """Appends bodies to the bodies file, counting where each starts (no seek per body), and
    the CRC-32 of each `SPOOL_BLOCK_BYTES` into `crcs`. Each write goes to the file's buffer at
    once: gathering them costs more (a body's bytes held is fresh memory touched)."""

    def __init__(self, file: BinaryIO, crcs: array[int]) -> None:
        self._file = file
        self._crcs = crcs
        self._offset = 0
        self._crc = 0
        self._room = SPOOL_BLOCK_BYTES
        """Bytes left in the current block."""

    def add(self, body: bytes, header: bytes | None) -> tuple[int, int]:
        """Write `body`, as a tar member after `header` when there is one; where the member
        starts (-1 for none) and where the body does."""
        member = self._offset
        data = body if header is None else header + body + member_padding(len(body))
        self._file.write(data)
        self._offset += len(data)
        if len(data) < self._room:  # the usual case: the block goes on
            self._crc = crc32(data, self._crc)
            self._room -= len(data)
        else:
            self._end_blocks(data)
        return (-1, member) if header is None else (member, member + len(header))

    def _end_blocks(self, data: bytes) -> None:
        """The CRCs of the blocks that end in `data`, and the start of the next one's."""
        while len(data) >= self._room:
            self._crcs.append(crc32(data[: self._room], self._crc))
            data = data[self._room :]
            self._crc, self._room = 0, SPOOL_BLOCK_BYTES
        self._crc = crc32(data)
        self._room -= len(data)

    def finish(self) -> None:
        if self._room < SPOOL_BLOCK_BYTES:
            self._crcs.append(self._crc)


def _entry(line: bytes, line_number: int, bodies: _BodyWriter) -> WindowEntry | Exclusion:
    try:
        record = decode_typed(line)
    except envelope.NewerSchemaVersion:
        raise  # unknown is not bad: the whole window waits for a delivery that reads it
    except envelope.EnvelopeError as err:
        # Unknown is not bad: claimed under the line's own hash, never the file_id it names, so
        # a window holding an intact copy of that file (a Firehose retry) still owns and
        # delivers it; the named id goes in the detail for whoever looks.
        named = _named_id(line)
        return Exclusion(
            file_id=raw_record_id(line.rstrip(b"\n")),
            key=None,
            version_id=None,
            reason="unparseable-line",
            detail=f"line {line_number}: {str(err)[:2000]}"
            + (f" (names file_id {named})" if named else ""),
        )
    file_id, key, size = record.file_id, record.key, record.size
    expected = envelope.file_id(record.bucket, key, record.version_id)
    if not file_id.startswith(expected):  # a forced replay adds `#r<id>`
        return Exclusion(
            # Claimed under the line's own hash, never the id it names: a wrong id must not
            # take another file's place in the ledger.
            file_id=raw_record_id(line.rstrip(b"\n")),
            key=key,
            version_id=record.version_id,
            reason="file-id-mismatch",
            detail=f"line {line_number}: file_id {file_id[:64]} is not "
            f"sha256(bucket, key, version_id) = {expected}",
        )
    body_offset = member_offset = -1
    encoding = record.body_encoding
    if encoding != "ref":
        try:
            # The body must still match its sha256, and its size.
            body = envelope.checked_body_of(encoding, record.body, record.body_sha256, file_id)
            if len(body) != size:
                raise envelope.EnvelopeError(  # noqa: TRY301  # excluded as a mismatch below
                    f"body of {file_id} is {len(body)} bytes, its size says {size}"
                )
        except envelope.EnvelopeError as err:
            return Exclusion(
                file_id=file_id,
                key=key,
                version_id=record.version_id,
                reason="checksum-mismatch",
                detail=f"line {line_number}: {err}",
            )
        header = ustar_header(key, size, member_mtime(record.event_time_ms))
        member_offset, body_offset = bodies.add(body, header)
    # tuple.__new__ at once, in the order WindowEntry declares: its own __new__ is Python.
    return _new_tuple(
        WindowEntry,
        (
            line_number,
            file_id,
            record.bucket,
            key,
            record.version_id,
            size,
            record.event_time_ms,
            encoding,
            record.body_sha256,
            record.sequencer,
            body_offset,
            member_offset,
        ),
    )


def _named_id(line: bytes) -> str | None:
    """The well-formed file_id an unparseable line carries, if any."""
    try:
        candidate = envelope.loads(line).get("file_id")
    except (ValueError, AttributeError):
        return None
    if isinstance(candidate, str) and envelope.FILE_ID_PATTERN.fullmatch(candidate):
        return candidate
    return None


def _lines(path: Path) -> io.BufferedReader:
    """The window's decompressed lines (`\n`-terminated, as iterating `GzipFile` gives them),
    read 1 MiB at a time: `GzipFile`'s own 8 KiB buffer costs a Python-level read per 8 KiB.
    ISA-L's inflate (the same stream, ~2x faster than zlib's), as the archive's deflate."""
    opened = igzip.open(path, "rb")  # type: ignore[no-untyped-call]  # igzip.py is not annotated
    return io.BufferedReader(opened, buffer_size=_READ_BUFFER)


_READ_BUFFER: Final = 1 << 20
_new_tuple: Final = tuple.__new__
SPOOL_BLOCK_BYTES: Final = 1 << 20
"""The bodies file's CRC-32 blocks: a run copied is read a block at a time, each checked."""


class InlineBodies:
    """The inline bodies `parse_window` wrote, read back by place: any order, any number of
    passes (the archive's and the payload tables'), from one thread.

    A pass reads the bodies in window order, so each is read from a 1 MiB buffer where the
    last one ended: one system call per MiB, not one per body (a seek elsewhere is cheap).
    Bodies are not hashed again here: the archive writer checks each one against the sha256
    the parse verified, and a body that differs fails the build (`archive.BodyMismatch`).
    """

    def __init__(self, parsed: ParsedWindow) -> None:
        if parsed.bodies is None:
            raise ValueError("the window was parsed without a bodies file")
        self._path = parsed.bodies
        self._file = parsed.bodies.open("rb", buffering=_READ_BUFFER)
        self._crcs = parsed.block_crcs
        self._position = 0

    def run(self, files: int, start: int, end: int) -> MemberRun:
        """The `files` tar members from `start` to `end`, to be copied into an archive."""
        return MemberRun(files, end - start, lambda: self._blocks(start, end))

    def _blocks(self, start: int, end: int) -> Iterator[bytes]:
        """Bytes `start` to `end`, read a block at a time, each block checked against its
        CRC-32 before any of it is given; SpoolChanged if one differs."""
        block = start // SPOOL_BLOCK_BYTES
        self._position = -1  # unknown until the run is read to its end: `body` seeks
        self._file.seek(block * SPOOL_BLOCK_BYTES)
        while block * SPOOL_BLOCK_BYTES < end:
            data = self._file.read(SPOOL_BLOCK_BYTES)
            if block >= len(self._crcs) or crc32(data) != self._crcs[block]:
                raise SpoolChanged(f"{self._path}: block {block} is not what was written")
            first = block * SPOOL_BLOCK_BYTES
            low, high = max(start - first, 0), min(end - first, len(data))
            yield data if (low, high) == (0, len(data)) else data[low:high]
            block += 1
        self._position = self._file.tell()

    def body(self, entry: WindowEntry) -> bytes:
        if entry.body_offset < 0:
            raise LookupError(f"file {entry.file_id} has no inline body (a ref)")
        if entry.body_offset != self._position:
            self._file.seek(entry.body_offset)
        data = self._file.read(entry.size)  # short only if the file was cut: the archive
        self._position = entry.body_offset + len(data)  # writer's size check says so
        return data

    def close(self) -> None:
        self._file.close()
