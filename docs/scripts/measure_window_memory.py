"""Delivery's memory against the number of files in a window: what each file costs while the
archive is built (the metadata delivery keeps per file, and the manifest, the archive's first
member, which lists every file).

Python's peak traced allocation (tracemalloc) of `infrastructure.bench.core.deliver` — parse,
names, manifest, archive into a spool, hashing — for windows of 1 KiB inline files; the slope
between two sizes is the cost per file. The ledger's claims and the upload are not in it (see
`delivery_rss_growth_mib_window` in docs/BENCHMARKS.md for the whole delivery's RSS).

Run: .venv/bin/python docs/scripts/measure_window_memory.py   (figures in docs/BENCHMARKS.md)
"""

from __future__ import annotations

import gc
import tempfile
import tracemalloc
from pathlib import Path

from infrastructure.bench import core

COUNTS = (2_000, 16_000, 100_000)


def peak_mib(count: int, workdir: Path) -> float:
    window = core.make_window(workdir / f"w{count}.json.gz", core.Payload(), count, 1024, ref=False)
    gc.collect()
    tracemalloc.start()
    try:
        core.deliver(window, workdir)
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="sluice-window-memory-") as tmp:
        core.deliver(
            core.make_window(Path(tmp) / "warm.json.gz", core.Payload(), 10, 1024, ref=False),
            Path(tmp),
        )
        peaks = {count: peak_mib(count, Path(tmp)) for count in COUNTS}
    for count, peak in peaks.items():
        print(f"{count:>7,} files of 1 KiB: peak traced {peak:6.1f} MiB")
    low, high = COUNTS[0], COUNTS[-1]
    slope = (peaks[high] - peaks[low]) * 2**20 / (high - low)
    print(f"per file: {slope:,.0f} B ({low:,} -> {high:,} files)")


if __name__ == "__main__":
    main()
