"""Spool-while-hashing vs build-twice: what knowing an archive's length and sha256 up front costs.

Run: .venv/bin/python docs/scripts/measure_spool.py   (figures in docs/delivery.md)
"""

from __future__ import annotations

import hashlib
import io
import random
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from delivery import archive
from delivery.upload import SpoolWriter

WORDS = [b"alpha", b"beta", b"gamma", b"delta", b'"id":', b"1234", b"\n", b","]
Item = tuple[archive.ArchiveFile, bytes]


def json_like(count: int, size: int, rng: random.Random) -> list[Item]:
    items = []
    for i in range(count):
        body = b" ".join(rng.choice(WORDS) for _ in range(size // 5))[:size].ljust(size, b" ")
        file = archive.ArchiveFile(
            file_id=f"{i:064x}",
            key=f"k/{i}.json",
            version_id="v",
            size=len(body),
            sha256=hashlib.sha256(body).hexdigest(),
            event_time_ms=1_795_608_000_000,
            member_name=f"k/{i}.json",
            check="envelope-sha256",
        )
        items.append((file, body))
    return items


class HashSink:
    """Hashes what it is given (sha256 and MD5, as the spool does) and keeps nothing."""

    def __init__(self) -> None:
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5(usedforsecurity=False)

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.md5.update(data)
        return len(data)

    def flush(self) -> None:
        pass


def build(out: archive.Writable, items: list[Item]) -> None:
    bodies = {file.file_id: body for file, body in items}

    @contextmanager
    def open_body(file: archive.ArchiveFile) -> Iterator[BinaryIO]:
        yield io.BytesIO(bodies[file.file_id])

    archive.write_archive(out, b"{}", [file for file, _ in items], open_body)


def measure(items: list[Item]) -> dict[str, float]:
    best: dict[str, float] = {}
    for _ in range(3):
        started = time.perf_counter()
        build(HashSink(), items)
        once = time.perf_counter() - started
        started = time.perf_counter()
        with SpoolWriter(dir=tempfile.gettempdir()) as writer:
            build(writer, items)
        writer.result.remove()
        spooled = time.perf_counter() - started
        for name, seconds in (("build once", once), ("spool", spooled), ("build twice", 2 * once)):
            best[name] = min(best.get(name, float("inf")), seconds)
    return best


def main() -> None:
    rng = random.Random(7)  # noqa: S311  # test data, not security
    for label, items in (
        ("600 x 100 KiB", json_like(600, 100 * 1024, rng)),
        ("10,000 x 1 KiB", json_like(10_000, 1024, rng)),
    ):
        megabytes = sum(file.size for file, _ in items) / 1e6
        print(f"{label} ({megabytes:.1f} MB of payload), best of 3:")
        for name, seconds in measure(items).items():
            print(f"  {name:<12} {seconds * 1000:7.0f} ms  {megabytes / seconds:6.1f} MB/s")


if __name__ == "__main__":
    main()
