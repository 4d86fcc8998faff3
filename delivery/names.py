"""Archive member names: S3 keys made safe to extract (DESIGN §3 "Archive").

`safe_member_names` maps each file of a window to the name it gets inside the `.tar.gz`. The
result is a function of the input alone (no clock, no randomness, no hash seed), so every
attempt at a window builds the same archive (DESIGN §4a rule 3).

Rules, applied to each key in this order:

1. Segments. The key is split on `/`; empty segments and `.` are dropped. This strips a
   leading `/` and collapses `a//b` and `a/./b` to `a/b`.
2. Escaping. A segment is kept verbatim unless it is `..`, holds a NUL or a lone surrogate
   (neither can be a Linux file name or valid UTF-8), a backslash or a `:` (a path separator and a
   drive or stream marker on Windows), is a name Windows reserves (`CON`, `PRN`, `AUX`, `NUL`,
   `COM1`-`COM9`, `LPT1`-`LPT9`, in any case, with or without an extension), or holds one of
   the escape's own markers (`_MARKERS`). Such a segment is percent-encoded as a whole: `%` ->
   `%25`, NUL -> `%00`, a lone surrogate -> its UTF-8 bytes (`surrogatepass`) as `%ED%xx%xx`,
   backslash -> `%5C`, `:` -> `%3A`, a reserved name's first letter -> its `%XX` (`CON.txt` ->
   `%43ON.txt`), and `..` -> `%2E%2E`; every other character stays. Every encoded segment
   contains a marker and no verbatim segment does, and the encoding decodes uniquely, so no two
   distinct segments escape to the same text; ordinary keys such as `100%20off.txt` are left
   alone.
3. Length. A segment of more than 255 UTF-8 bytes is cut on a character boundary (never
   inside a `%XX` escape) and tagged: `~` + 8 hex. The last segment is tagged from the file id;
   a directory segment is tagged from its own text (sha256 of the segment), so the files under
   one long directory stay together.
4. Reserved name. `MANIFEST.json` at the root belongs to the manifest: a file with that name
   (in any case) is renamed by rule 5; a root directory with that name is tagged like a long
   directory segment.
5. Clashes. Names are compared as an extracting file system that ignores case and Unicode
   normalisation would (canonical caseless match: NFD, casefold, NFD). A file whose name
   equals a directory prefix of any file (key `a/b` against key `a/b/c`) is renamed, whatever
   the window order; of files whose names are equal (exactly, after rule 1, or but for case),
   the first in window order keeps its name and the others are renamed. Renaming appends
   `~` + 8 hex of the file id to the last segment (cutting it to stay within 255 bytes).
   Verbatim names are settled before any renamed one is chosen, so a key that was already safe
   and clash-free is never renamed; should a renamed name still clash (a key that happens to
   end in another file's tag), the tag grows to 16 hex, then all 64, then `-1`, `-2`, ....
6. Empty key. A key that normalises to nothing (`/`, `./.`) is named `~` + 8 hex of its file
   id, as if its (empty) last segment had been renamed.

"Hex of the file id" is the file id itself when it is a sha256 hex digest (the usual case,
DESIGN §4a), else the sha256 of the file id (replays' ids end in `#r<replay_id>`).

No name is empty, absolute, `.`, `..`, or holds NUL; every segment fits in 255 bytes; so every
name extracts with `tarfile`'s `filter="data"` on Linux, one file per input.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Final, NamedTuple

MANIFEST_NAME: Final = "MANIFEST.json"
MAX_SEGMENT_BYTES: Final = 255
TAG_HEX: Final = 8

_MARKERS: Final = "%(?:25|2E|00|ED|5C|3A|4[13CE]|50|6[13CE]|70)"
"""What escaping writes: `%`, `.`, NUL, a surrogate's lead byte, `\\`, `:`, and the first
letters of Windows' reserved names (A C L N P, a c l n p)."""
_NEEDS_ESCAPE: Final = re.compile("[\0\ud800-\udfff\\\\:]|" + _MARKERS)
"""NUL, a lone surrogate, `\\`, `:`, or one of the escape's markers."""
_RESERVED_NAME: Final = r"(?:CON|PRN|AUX|NUL|COM[1-9]|LPT[1-9])(?:\..*)?"
_WINDOWS_RESERVED: Final = re.compile("(?i)" + _RESERVED_NAME)
_ESCAPED: Final = re.compile(r"(?i:\A" + _RESERVED_NAME + r"\Z)|" + _NEEDS_ESCAPE.pattern)
"""A segment rule 2 escapes, but `..`: `_NEEDS_ESCAPE` or a reserved name, in one search."""
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_SHA256_HEX: Final = re.compile("[0-9a-f]{64}")
_new_tuple: Final = tuple.__new__
_SHORT_ENOUGH: Final = MAX_SEGMENT_BYTES // 4
"""Characters that fit in a segment whatever they are (UTF-8 takes at most 4 bytes each)."""


def safe_member_names(files: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Map each `(file_id, key)`, given in window order, to its member name (rules above).

    The dict iterates in window order. File ids must be distinct: repeated ids are dropped
    before a window is archived (DESIGN §4a rule 1), so a repeat here is a caller's bug.
    """
    if len({file_id for file_id, _ in files}) != len(files):
        raise ValueError("file ids must be distinct within a window")
    renamed = member_names(lambda: files)
    return {file_id: renamed.get(file_id, key) for file_id, key in files}


def member_names(files: Callable[[], Iterable[tuple[str, str]]]) -> dict[str, str]:
    """`safe_member_names` for a window too big to hold its keys at once: each call of `files`
    gives the `(file_id, key)` pairs again, in window order, and the result maps only the files
    not named by their key, file_id -> name (none, usually).

    One pass settles the verbatim names against the directories met so far; only when a name
    settled so turns out to be a later file's directory (rule 5: it must be renamed) is it
    settled again, every directory known. Memory is a 16-byte digest a file (the folded names
    taken, compared by digest: a clash is always found, and two distinct names share a digest
    with odds of 2^-128 against; then one of them is renamed, never lost).
    """
    directory_parts: dict[str, tuple[str, str]] = {}
    directories: set[str] = set()
    taken, names, to_rename = _verbatim_names(files(), directory_parts, directories)
    if any(_digest(directory) in taken for directory in directories):
        taken, names, to_rename = _verbatim_names(files(), directory_parts, directories)
    for draft in to_rename:  # verbatim names settled first: a safe, free key keeps its name
        names[draft.file_id] = _renamed(draft, directories, taken)
    return names


def _verbatim_names(
    files: Iterable[tuple[str, str]],
    directory_parts: dict[str, tuple[str, str]],
    directories: set[str],
) -> tuple[set[bytes], dict[str, str], list[_Draft]]:
    """Rule 5, first pass: the folded names taken (digests, `_digest`) by the files that keep
    their untagged name, first in window order; those of them not named by their key; the
    drafts of the others. Adds each new directory's prefixes to `directories` as it goes."""
    taken = {_digest(_fold(MANIFEST_NAME))}
    names: dict[str, str] = {}
    to_rename: list[_Draft] = []
    for file_id, key in files:
        known = len(directory_parts)
        draft = _draft(file_id, key, directory_parts)
        if len(directory_parts) != known:
            _add_prefixes(directories, draft.folded_directory)
        name = draft.verbatim()
        if name is None:
            to_rename.append(draft)
            continue
        folded = draft.fold(name)
        digest = _digest(folded)
        if digest in taken or folded in directories:
            to_rename.append(draft)
            continue
        taken.add(digest)
        if name != key:
            names[file_id] = name
    return taken, names, to_rename


def _digest(folded: str) -> bytes:
    return hashlib.blake2b(folded.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class _Draft(NamedTuple):
    """A key after rules 1-4: its final directory part and its escaped last segment (a
    NamedTuple: one for every file, built in a third of a frozen dataclass's time)."""

    file_id: str
    directory: str
    """Final directory segments, each followed by `/`; empty at the root."""
    folded_directory: str
    leaf: str
    """The escaped last segment; empty when the key normalises to nothing."""
    raw_leaf: str

    def verbatim(self) -> str | None:
        """The name without a tag, or None when the leaf is empty or too long for one."""
        if not self.leaf or _too_long(self.leaf):
            return None
        return self.directory + self.leaf

    def tagged(self, tag: str) -> str:
        suffix = "~" + tag  # ASCII, so its length is its byte length
        return self.directory + _cut(self.raw_leaf, MAX_SEGMENT_BYTES - len(suffix)) + suffix

    def fold(self, name: str) -> str:
        """`_fold(name)` for a name in this draft's directory, reusing the folded directory
        (`name` itself when it is its own form)."""
        folded = self.folded_directory + _fold(name[len(self.directory) :])
        return name if folded == name else folded


def _draft(file_id: str, key: str, directories: dict[str, tuple[str, str]]) -> _Draft:
    """Rules 1-4 for one key; `directories` caches each raw directory part's (directory,
    folded directory), since the files of a window share a few directories."""
    raw_directory, _, raw_leaf = key.rpartition("/")
    if raw_leaf in ("", "."):  # rule 1 drops the last segment: the leaf is further up
        segments = _segments(key)
        if not segments:
            return _Draft(file_id, "", "", "", "")
        raw_leaf = segments[-1]
        raw_directory = "/".join(segments[:-1])
    if raw_directory not in directories:
        directory = "".join(
            _directory_segment(segment, is_root=depth == 0) + "/"
            for depth, segment in enumerate(_segments(raw_directory))
        )
        directories[raw_directory] = (directory, _fold(directory))
    directory, folded_directory = directories[raw_directory]
    # tuple.__new__ at once: _Draft's own __new__ is Python, and this runs for every file.
    return _new_tuple(_Draft, (file_id, directory, folded_directory, _escape(raw_leaf), raw_leaf))


def _segments(path: str) -> list[str]:
    """Rule 1: `path` split on `/`, empty segments and `.` dropped."""
    return [segment for segment in path.split("/") if segment not in ("", ".")]


def _escape(segment: str) -> str:
    """Rule 2."""
    if segment != ".." and _ESCAPED.search(segment) is None:
        return segment  # the usual case, without splitting it into tokens
    return "".join(_tokens(segment))


def _tokens(segment: str) -> list[str]:
    """Rule 2 as tokens, a character or one character's escape each, so that a cut never
    splits either."""
    if segment == "..":
        return ["%2E", "%2E"]
    reserved = _reserved(segment)
    if _NEEDS_ESCAPE.search(segment) is None and not reserved:
        return list(segment)
    tokens = [_escape_char(char) for char in segment]
    if reserved:
        tokens[0] = f"%{ord(segment[0]):02X}"
    return tokens


def _reserved(segment: str) -> bool:
    return _WINDOWS_RESERVED.fullmatch(segment) is not None


def _escape_char(char: str) -> str:
    if char in ("%", "\0", "\\", ":") or _SURROGATE.match(char):
        return "".join(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))
    return char


def _too_long(text: str) -> bool:
    return len(text) > _SHORT_ENOUGH and len(text.encode()) > MAX_SEGMENT_BYTES


def _directory_segment(segment: str, *, is_root: bool) -> str:
    """Rules 2-4 for a directory: tagged from its own text, so its files stay together."""
    text = _escape(segment)
    if not _too_long(text) and not (is_root and _fold(text) == _fold(MANIFEST_NAME)):
        return text
    suffix = "~" + hashlib.sha256(text.encode()).hexdigest()[:TAG_HEX]
    return _cut(segment, MAX_SEGMENT_BYTES - len(suffix)) + suffix


def _cut(segment: str, limit: int) -> str:
    """The longest run of whole escaped tokens of `segment` that fits in `limit` bytes."""
    tokens = _tokens(segment)
    size = 0
    for count, token in enumerate(tokens):
        size += len(token.encode())
        if size > limit:
            return "".join(tokens[:count])
    return "".join(tokens)


def _add_prefixes(found: set[str], folded_directory: str) -> None:
    """Every directory prefix of `folded_directory`, folded. Folding works character by
    character and never makes or moves a `/`, so the prefixes of a folded directory are the
    folded prefixes."""
    end = folded_directory.find("/")
    while end != -1:
        found.add(folded_directory[:end])
        end = folded_directory.find("/", end + 1)


def _renamed(draft: _Draft, directories: set[str], taken: set[bytes]) -> str:
    """Rule 5, second pass: the first tag that makes the name free; updates `taken`."""
    for tag in _tags(draft.file_id):
        name = draft.tagged(tag)
        folded = draft.fold(name)
        digest = _digest(folded)
        if digest not in taken and folded not in directories:
            taken.add(digest)
            return name
    raise AssertionError("unreachable: _tags is endless")  # pragma: no cover


def _tags(file_id: str) -> Iterator[str]:
    digest = file_id
    if not _SHA256_HEX.fullmatch(file_id):
        digest = hashlib.sha256(file_id.encode("utf-8", "surrogatepass")).hexdigest()
    yield digest[:TAG_HEX]
    yield digest[: 2 * TAG_HEX]
    yield digest
    for count in itertools.count(1):
        yield f"{digest}-{count}"


def _fold(name: str) -> str:
    """Canonical caseless form: what a case- and normalisation-insensitive file system sees
    (`name` itself when it is its own form: no second string)."""
    if name.isascii():  # casefold is lower, and NFD the identity, on ASCII
        folded = name.lower()
        return name if folded == name else folded
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", name).casefold())
