"""Instructions delivery executes per 1 KiB file: a figure the machine's speed does not move,
where `make bench`'s files per second (`delivery_files_per_s_1k`) vary by a fifth between runs.

A child process builds a window of 5,000 inline files of 1 KiB and runs the archive path
(`infrastructure.bench.core.deliver`: parse, names, manifest, archive) once, then three times,
each under valgrind's cachegrind with the cache simulation off; the difference over two
deliveries and 5,000 files is the cost of one file, set-up and warm-up excluded.

Run: .venv/bin/python docs/scripts/count_delivery_instructions.py
(needs valgrind: `apt-get install valgrind`; ~2 min). Figures in docs/delivery.md "Memory".
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

FILES = 5_000
_TOTAL = re.compile(r"I\s+refs:\s+([\d,]+)")
_CHILD = """
import sys, tempfile
from pathlib import Path
from infrastructure.bench import core
workdir = Path(tempfile.mkdtemp(prefix="sluice-instructions-"))
window = core.make_window(workdir / "w.json.gz", core.Payload(), {files}, 1024, ref=False)
for _ in range({runs}):
    core.deliver(window, workdir)
"""


def instructions(valgrind: str, runs: int) -> int:
    done = subprocess.run(  # noqa: S603  # fixed tools, a fixed script
        [
            valgrind,
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
            sys.executable,
            "-c",
            _CHILD.format(files=FILES, runs=runs),
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    found = _TOTAL.search(done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output: {done.stderr[-500:]}")
    return int(found.group(1).replace(",", ""))


def main() -> int:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("valgrind is not installed: apt-get install valgrind", file=sys.stderr)
        return 2
    once, thrice = instructions(valgrind, 1), instructions(valgrind, 3)
    print(
        f"delivery (archive path), 1 KiB inline files: {(thrice - once) / 2 / FILES:,.0f} "
        f"instructions a file"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
