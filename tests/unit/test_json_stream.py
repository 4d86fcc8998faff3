"""Reading one array of a JSON document an element at a time (delivery.json_stream)."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from delivery.json_stream import array_items

DOCUMENT: dict[str, Any] = {
    "excluded": [{"file_id": "x", "detail": 'a "files":[ inside a string ], }'}],
    "files": [
        {"key": "ü/ß 1.csv", "size": 1234567, "sequencer": None, "ok": True},
        {"key": "b", "size": 0, "nested": {"files": [1, 2]}, "list": [[], {}]},
        {"key": 'c\n"quoted"', "size": -1.5e3},
        12345,
        "text",
    ],
    "format_version": 1,
    "part": 1,
    "staged_key": "buffers/dt=2026-12-07/hour=11/w",
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "document.json"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("chunk_chars", [1, 2, 3, 7, 64, 1 << 16])
@pytest.mark.parametrize("indent", [None, 2])
def test_the_elements_are_what_json_load_reads_whatever_the_chunks(
    tmp_path: Path, chunk_chars: int, indent: int | None
) -> None:
    # GIVEN a document written compact (as manifests are) or indented
    path = write(tmp_path, json.dumps(DOCUMENT, ensure_ascii=False, indent=indent))
    # WHEN its files are read in chunks of every size, down to one character
    files = list(array_items(path, "files", chunk_chars=chunk_chars))
    # THEN they are json.load's, numbers cut at a chunk's end included
    assert files == DOCUMENT["files"]
    # ... and another array (read past element by element) is read the same way
    assert list(array_items(path, "excluded", chunk_chars=chunk_chars)) == DOCUMENT["excluded"]


def test_a_missing_member_or_an_empty_array_gives_nothing(tmp_path: Path) -> None:
    assert list(array_items(write(tmp_path, '{"part": 1}'), "files")) == []
    assert list(array_items(write(tmp_path, '{"files": [], "a": 2}'), "files")) == []
    assert list(array_items(write(tmp_path, "{}"), "files")) == []


def test_a_long_array_is_not_held_whole(tmp_path: Path) -> None:
    # GIVEN 20,000 elements, about 1.6 MB of text
    document = {"files": [{"file_id": f"{n:064x}", "n": n} for n in range(20_000)]}
    path = write(tmp_path, json.dumps(document))
    size = path.stat().st_size
    del document
    # WHEN they are read in 4 KiB chunks, the allocations traced
    tracemalloc.start()
    try:
        in_order = sum(
            item["n"] == n for n, item in enumerate(array_items(path, "files", chunk_chars=4096))
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # THEN every one is read, in order
    assert in_order == 20_000
    # ... and what was held at once is a small fraction of the text
    assert peak < size / 10


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]", "expected one of '{'"),
        ('{"files": [1, 2', "Expecting|expected"),
        ('{"files": [1 2]}', "expected one of ',]'"),
        ('{"files": [1], "part" 1}', "expected one of ':'"),
        ('{"files": [1]', "expected one of ',}'"),
        ("", "expected one of '{'"),
    ],
)
def test_a_document_that_is_not_such_an_object_is_refused(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        list(array_items(write(tmp_path, text), "files"))
