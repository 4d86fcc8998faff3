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
from collections.abc import Iterator, Sequence
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
_SHORT_ENOUGH: Final = MAX_SEGMENT_BYTES // 4
"""Characters that fit in a segment whatever they are (UTF-8 takes at most 4 bytes each)."""


def safe_member_names(files: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Map each `(file_id, key)`, given in window order, to its member name (rules above).

    The dict iterates in window order. File ids must be distinct: repeated ids are dropped
    before a window is archived (DESIGN §4a rule 1), so a repeat here is a caller's bug.
    """
    directory_parts: dict[str, tuple[str, str]] = {}
    drafts = [_draft(file_id, key, directory_parts) for file_id, key in files]
    if len({draft.file_id for draft in drafts}) != len(drafts):
        raise ValueError("file ids must be distinct within a window")
    directories = _directories(drafts)
    taken = {_fold(MANIFEST_NAME)}
    keys = [key for _, key in files]
    verbatim = _verbatim_names(drafts, keys, directories, taken)
    names: dict[str, str] = {}
    for index, draft in enumerate(drafts):
        if verbatim[index]:
            name = draft.verbatim() or ""  # never None: `_verbatim_names` found one
            # The key's own string when they are equal (the usual case), not a copy of it:
            # a string a file fewer in a window of 100,000.
            names[draft.file_id] = keys[index] if name == keys[index] else name
        else:
            names[draft.file_id] = _renamed(draft, directories, taken)
    return names


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
    return _Draft(file_id, directory, folded_directory, _escape(raw_leaf), raw_leaf)


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


def _directories(drafts: Sequence[_Draft]) -> set[str]:
    """Every directory prefix, folded. Folding works character by character and never makes
    or moves a `/`, so the prefixes of a folded directory are the folded prefixes."""
    found: set[str] = set()
    for folded in {draft.folded_directory for draft in drafts}:
        end = folded.find("/")
        while end != -1:
            found.add(folded[:end])
            end = folded.find("/", end + 1)
    return found


def _verbatim_names(
    drafts: Sequence[_Draft], keys: Sequence[str], directories: set[str], taken: set[str]
) -> bytearray:
    """Rule 5, first pass: which drafts keep their untagged name (1), first in window order
    wins; updates `taken`."""
    verbatim = bytearray(len(drafts))
    for index, draft in enumerate(drafts):
        name = draft.verbatim()
        if name is None:
            continue
        if name == keys[index]:
            name = keys[index]  # `taken` then holds the key's string when it is its own fold
        folded = draft.fold(name)
        if folded not in taken and folded not in directories:
            verbatim[index] = 1
            taken.add(folded)
    return verbatim


def _renamed(draft: _Draft, directories: set[str], taken: set[str]) -> str:
    """Rule 5, second pass: the first tag that makes the name free; updates `taken`."""
    for tag in _tags(draft.file_id):
        name = draft.tagged(tag)
        folded = draft.fold(name)
        if folded not in taken and folded not in directories:
            taken.add(folded)
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
