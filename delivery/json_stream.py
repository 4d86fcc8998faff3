"""One array of a large JSON document, read an element at a time: the `files` of a manifest of
100,000 files without the whole document (or its 40 MB of text) in memory.

`array_items(path, "files")` yields the elements of the top-level object's `files` array, in
order; the object's other members are read past, arrays among them an element at a time. The
text is read in chunks, and each value is decoded by `json`'s own decoder, so what it accepts
and refuses is what `json.load` would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, TextIO

CHUNK_CHARS: Final = 1 << 16
_WHITESPACE: Final = " \t\n\r"
_DECODER: Final = json.JSONDecoder()


class _Text:
    """The document's text, a chunk at a time: `at(i)` and `decode(i)` read on as needed, and
    what lies before `drop(i)` is let go."""

    def __init__(self, stream: TextIO, chunk_chars: int) -> None:
        self._stream = stream
        self._chunk = chunk_chars
        self.buffer = ""
        self._eof = False

    def _more(self) -> bool:
        if self._eof:
            return False
        data = self._stream.read(self._chunk)
        if not data:
            self._eof = True
            return False
        self.buffer += data
        return True

    def at(self, index: int) -> tuple[str, int]:
        """The first character at or after `index` that is not whitespace, and its index;
        "" at the end of the document."""
        while True:
            while index < len(self.buffer) and self.buffer[index] in _WHITESPACE:
                index += 1
            if index < len(self.buffer) or not self._more():
                return self.buffer[index : index + 1], index

    def decode(self, index: int) -> tuple[Any, int]:
        """The JSON value at `index`, and the index after it. A value is taken only with text
        after it (or at the end of the document): "12" may be the start of "123"."""
        _, index = self.at(index)
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buffer, index)
            except json.JSONDecodeError:
                if self._more():
                    continue
                raise
            if end < len(self.buffer) or not self._more():
                return value, end

    def expect(self, index: int, characters: str) -> tuple[str, int]:
        char, index = self.at(index)
        if not char or char not in characters:
            found = repr(char) if char else "the end"
            raise ValueError(f"expected one of {characters!r} at character {index}, found {found}")
        return char, index + 1

    def drop(self, index: int) -> int:
        """Forget the text before `index`; the same place's new index."""
        if index > self._chunk:
            self.buffer = self.buffer[index:]
            return 0
        return index


def array_items(path: Path, member: str, *, chunk_chars: int = CHUNK_CHARS) -> Iterator[Any]:
    """The elements of the top-level object's `member` array, one at a time (none if the
    object has no such member). ValueError if the document is not such an object."""
    with path.open(encoding="utf-8") as stream:
        text = _Text(stream, chunk_chars)
        _, index = text.expect(0, "{")
        char, index = text.at(index)
        if char == "}":
            return
        while True:
            char, index = text.at(index)
            if char != '"':
                raise ValueError(f"expected an object key at character {index}, found {char!r}")
            key, index = text.decode(index)
            _, index = text.expect(index, ":")
            char, index = text.at(index)
            if char == "[":
                elements = _Elements(text, index + 1)
                if key == member:
                    yield from elements
                else:
                    for _ in elements:
                        pass
                index = elements.end
            else:
                _, index = text.decode(index)
            char, index = text.expect(index, ",}")
            if char == "}":
                return


class _Elements:
    """The elements of an array from just after its `[`; `end`, once done: the index after
    its `]`."""

    def __init__(self, text: _Text, index: int) -> None:
        self._text = text
        self._index = index
        self.end = -1

    def __iter__(self) -> Iterator[Any]:
        text, index = self._text, self._index
        char, index = text.at(index)
        if char == "]":
            self.end = index + 1
            return
        while True:
            index = text.drop(index)
            value, index = text.decode(index)
            yield value
            char, index = text.expect(index, ",]")
            if char == "]":
                self.end = index
                return
