"""A window's files, packed: memory flat in the number of files (docs/delivery.md "Memory").

A window holds up to 100,000 small files, and delivery walks their metadata several times
(claims, names, parts, manifest, archive). As objects, each `WindowEntry` costs ~720 bytes (its
tuple, five strings, four ints); `WindowEntries` keeps each file's strings as one `bytes` (the
two sha256 digests raw) and its numbers in one array, ~220 bytes a file, and makes the
`WindowEntry` again when it is read.
A selection of the files (those the window owns, a part's) is a view: an array of positions,
4 bytes a file. `member_runs` finds the files whose tar members the parse wrote one after
another, for the archive to copy whole.
"""

from __future__ import annotations

import sys
import tarfile
from array import array
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import Final, NamedTuple, overload


class WindowEntry(NamedTuple):
    """One file of the window: everything but its body.

    A NamedTuple, not a frozen dataclass: as immutable, and built in a third of the time (a
    frozen dataclass sets each field through `object.__setattr__`), once for every file."""

    line_number: int
    file_id: str
    bucket: str
    key: str
    version_id: str
    size: int
    event_time_ms: int
    encoding: str
    body_sha256: str | None
    sequencer: str | None = None
    body_offset: int = -1
    """Where its inline body starts in the window's bodies file (`ParsedWindow.bodies`); -1 for
    a ref. The body's length is `size`, or the entry is never made (a mismatch is excluded)."""
    member_offset: int = -1
    """Where its tar member (a ustar header named by its key, the body, the padding) starts in
    that file, the body 512 bytes on; -1 when the parse wrote the body alone (a ref, or a key
    one ustar block cannot name)."""

    @property
    def is_ref(self) -> bool:
        return self.encoding == "ref"


_SEPARATOR: Final = "\0"
_SEPARATOR_BYTE: Final = b"\0"
_DIGEST_BYTES: Final = 32
_NUMBERS: Final = 6
_BLOCK: Final = tarfile.BLOCKSIZE
"""A ustar header's size, and the unit a member's body is padded to."""
_new_tuple: Final = tuple.__new__


class _Store:
    """Every file appended, in window order.

    A file's strings are one `bytes`: its `file_id` and `body_sha256` as 32 raw bytes each when
    both are lowercase sha256 hex (the usual inline file), then `key`, `version_id` and
    `sequencer`, joined by NUL, as UTF-8 (lone surrogates kept); else all five as text. A file
    whose strings hold a NUL themselves (a key may) is kept whole in `whole`, its `bytes`
    empty. Its numbers are six in `numbers`, the fifth its place in `sorts`."""

    __slots__ = ("numbers", "sort_index", "sorts", "strings", "whole")

    def __init__(self) -> None:
        self.strings: list[bytes] = []
        self.numbers = array("q")
        """Six a file: line number, size, event time, body offset, its sort (`sorts`),
        member offset."""
        self.sorts: list[_Sort] = []
        self.sort_index: dict[tuple[str, str, bool, bool, bool], int] = {}
        self.whole: dict[int, WindowEntry] = {}

    def append(self, entry: WindowEntry) -> None:
        (line_number, file_id, bucket, key, version_id, size, event_time_ms, encoding,
         body_sha256, sequencer, body_offset, member_offset) = entry  # fmt: skip
        text = f"{key}\0{version_id}\0{sequencer or ''}"
        digests = _raw_digests(file_id, body_sha256)
        if digests is not None and text.count(_SEPARATOR) == 2:  # 3 strings
            packed = digests + text.encode("utf-8", "surrogatepass")
        else:
            text = f"{file_id}\0{body_sha256 or ''}\0{text}"
            digests = None
            if text.count(_SEPARATOR) == 4:  # between the 5 strings
                packed = text.encode("utf-8", "surrogatepass")
            else:  # a NUL in a string: kept as it is (rare; the names' rules escape such keys)
                self.whole[len(self.strings)] = entry
                packed = b""
        self.strings.append(packed)
        sort = (bucket, encoding, digests is not None, body_sha256 is None, sequencer is None)
        index = self.sort_index.get(sort)
        if index is None:
            index = self.sort_index[sort] = len(self.sorts)
            self.sorts.append(_Sort(sys.intern(bucket), sys.intern(encoding), *sort[2:]))
        self.numbers.extend((line_number, size, event_time_ms, body_offset, index, member_offset))

    def entry(self, position: int) -> WindowEntry:
        packed = self.strings[position]
        start = position * _NUMBERS
        line_number, size, event_time_ms, body_offset, index, member_offset = self.numbers[
            start : start + _NUMBERS
        ]
        bucket, encoding, digests, no_sha256, no_sequencer = self.sorts[index]
        if digests:
            file_id, sha256 = packed[:_DIGEST_BYTES].hex(), packed[_DIGEST_BYTES:64].hex()
            key, version_id, sequencer = (
                packed[64:].decode("utf-8", "surrogatepass").split(_SEPARATOR)
            )
        elif packed:
            file_id, sha256, key, version_id, sequencer = packed.decode(
                "utf-8", "surrogatepass"
            ).split(_SEPARATOR)
        else:
            return self.whole[position]
        return _new_tuple(  # tuple.__new__ at once: WindowEntry's own __new__ is Python
            WindowEntry,
            (
                line_number,
                file_id,
                bucket,
                key,
                version_id,
                size,
                event_time_ms,
                encoding,
                None if no_sha256 else sha256,
                None if no_sequencer else sequencer,
                body_offset,
                member_offset,
            ),
        )

    def _sort(self, position: int) -> _Sort:
        return self.sorts[self.numbers[position * _NUMBERS + 4]]

    def size(self, position: int) -> int:
        return self.numbers[position * _NUMBERS + 1]

    def event_time_ms(self, position: int) -> int:
        return self.numbers[position * _NUMBERS + 2]

    def is_ref(self, position: int) -> bool:
        return self._sort(position).encoding == "ref"

    def file_id(self, position: int) -> str:
        packed = self.strings[position]
        if self._sort(position).digests:
            return packed[:_DIGEST_BYTES].hex()
        if not packed:
            return self.whole[position].file_id
        return packed[: packed.index(_SEPARATOR_BYTE)].decode("utf-8", "surrogatepass")

    def id_and_key(self, position: int) -> tuple[str, str]:
        packed = self.strings[position]
        if self._sort(position).digests:
            end = packed.find(_SEPARATOR_BYTE, 64)
            return packed[:_DIGEST_BYTES].hex(), packed[64:end].decode("utf-8", "surrogatepass")
        if not packed:
            entry = self.whole[position]
            return entry.file_id, entry.key
        file_id, _, key, _ = packed.decode("utf-8", "surrogatepass").split(_SEPARATOR, 3)
        return file_id, key


def _raw_digests(file_id: str, body_sha256: str | None) -> bytes | None:
    """Both as 64 raw bytes when both are lowercase sha256 hex, else None."""
    if body_sha256 is None or len(file_id) != _DIGEST_BYTES * 2:
        return None
    return raw_digest(file_id + body_sha256, count=2)  # one call for both: every file


def raw_digest(text: str, count: int = 1) -> bytes | None:
    """`text`, `count` sha256 digests in lowercase hex, as their raw bytes (so `hex()` gives it
    back exactly: no two such texts share their bytes); None when it is not that."""
    if len(text) != _DIGEST_BYTES * 2 * count:
        return None
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return None
    # Exactly as `hex()` writes it: no uppercase, no spaces (which fromhex skips). Cheaper
    # than `islower()`, which looks up every character's case.
    return raw if raw.hex() == text else None


class _Sort(NamedTuple):
    """What most files of a window share: one of these is kept for each distinct value, and
    each file holds its place (a window has a bucket or two and three encodings)."""

    bucket: str
    encoding: str
    digests: bool
    """Its file_id and body_sha256 are packed as raw bytes."""
    no_sha256: bool
    no_sequencer: bool


class WindowEntries(Sequence[WindowEntry]):
    """Files of a window in window order: all of them (`append` adds one), or a selection
    (`only`, `without`, `split_by_size`) sharing their store. Reading one makes its
    `WindowEntry`; `file_ids`, `ids_and_keys`, `refs` and `event_times_ms` read only what they
    need."""

    __slots__ = ("_positions", "_store")

    def __init__(self, store: _Store | None = None, positions: array[int] | None = None) -> None:
        self._store = _Store() if store is None else store
        self._positions = positions
        """None: every file in the store."""

    @classmethod
    def of(cls, entries: Iterable[WindowEntry]) -> WindowEntries:
        packed = cls()
        for entry in entries:
            packed.append(entry)
        return packed

    def append(self, entry: WindowEntry) -> None:
        if self._positions is not None:
            raise TypeError("files are appended to the window's entries, not to a selection")
        self._store.append(entry)

    def _all(self) -> Sequence[int]:
        return range(len(self._store.strings)) if self._positions is None else self._positions

    def __len__(self) -> int:
        return len(self._store.strings) if self._positions is None else len(self._positions)

    @overload
    def __getitem__(self, index: int) -> WindowEntry: ...

    @overload
    def __getitem__(self, index: slice) -> WindowEntries: ...

    def __getitem__(self, index: int | slice) -> WindowEntry | WindowEntries:
        if isinstance(index, slice):
            return self._select(array("I", self._all()[index]))
        return self._store.entry(self._all()[index])  # IndexError past either end, as a list

    def __iter__(self) -> Iterator[WindowEntry]:
        return map(self._store.entry, self._all())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by content

    def __repr__(self) -> str:
        return f"WindowEntries({list(self)!r})"

    def _select(self, positions: array[int]) -> WindowEntries:
        return WindowEntries(self._store, positions)

    def only(self, file_ids: Collection[str]) -> WindowEntries:
        """The files in `file_ids`, in order."""
        file_id = self._store.file_id
        return self._select(array("I", (p for p in self._all() if file_id(p) in file_ids)))

    def without(self, file_ids: Collection[str]) -> WindowEntries:
        """The files not in `file_ids` (itself when there are none: the usual case)."""
        if not file_ids:
            return self
        file_id = self._store.file_id
        return self._select(array("I", (p for p in self._all() if file_id(p) not in file_ids)))

    def split_by_size(self, max_bytes: int) -> list[WindowEntries]:
        """In order, at most `max_bytes` of file bytes each; a larger file alone; at least one
        (empty for no files)."""
        groups: list[array[int]] = [array("I")]
        total = 0
        size_of = self._store.size
        for position in self._all():
            size = size_of(position)
            if groups[-1] and total + size > max_bytes:
                groups.append(array("I"))
                total = 0
            groups[-1].append(position)
            total += size
        return [self._select(group) for group in groups]

    def file_ids(self) -> Iterator[str]:
        return map(self._store.file_id, self._all())

    def ids_and_keys(self) -> Iterator[tuple[str, str]]:
        return map(self._store.id_and_key, self._all())

    def refs(self) -> Iterator[WindowEntry]:
        """The files passed by reference (`encoding` "ref"), read from the flags alone."""
        is_ref, entry = self._store.is_ref, self._store.entry
        return (entry(p) for p in self._all() if is_ref(p))

    def event_times_ms(self) -> Iterator[int]:
        return map(self._store.event_time_ms, self._all())

    def member_runs(self, renamed: Collection[str]) -> Iterator[WindowEntry | MemberSpan]:
        """The files in order: those whose tar members lie one after another in the bodies
        file as one `MemberSpan`, each other file (a ref, a body written alone, a file in
        `renamed`: its member is named by its key, not its name) as its entry. Reads only
        numbers, and the file id only when `renamed` is not empty."""
        numbers, entry, file_id = self._store.numbers, self._store.entry, self._store.file_id
        start = end = -1
        count = 0
        for position in self._all():
            base = position * _NUMBERS
            member = numbers[base + 5]
            if member < 0 or (renamed and file_id(position) in renamed):
                if count:
                    yield MemberSpan(start, end, count)
                    count = 0
                yield entry(position)
                continue
            if member != end or not count:
                if count:
                    yield MemberSpan(start, end, count)
                start, count = member, 0
            size = numbers[base + 1]
            end = member + _BLOCK + size + (-size % _BLOCK)
            count += 1
        if count:
            yield MemberSpan(start, end, count)


class MemberSpan(NamedTuple):
    """`files` consecutive tar members in a window's bodies file, bytes `start` to `end`."""

    start: int
    end: int
    files: int


def joined(selections: Iterable[WindowEntries]) -> WindowEntries:
    """Selections of one window's files, one after another (a window's parts)."""
    parts = list(selections)
    if not parts:
        return WindowEntries()
    stores = {id(part._store) for part in parts}  # same module
    if len(stores) > 1:
        raise ValueError("selections of different windows")
    store = parts[0]._store  # same module
    return WindowEntries(store, array("I", (p for part in parts for p in part._all())))
