"""Instructions each function's cold-start import executes: a figure the machine's speed does
not move, where `make bench`'s milliseconds (`cold_start_ms_max`) vary by a fifth between runs.

Each handler module is imported from its packaged zip exactly as the bench's cold start does it
(the runtime's Python, `-S`, the unpacked zip the only code on sys.path, Lambda's environment:
`infrastructure.bench.functions.cold_start_env`), under valgrind's cachegrind with the cache
simulation off, which counts every instruction the process executes. The interpreter's own
start-up (`-c pass`, the same way) is printed beside it.

Run: make package && .venv/bin/python docs/scripts/count_import_instructions.py [build/lambda]
(needs valgrind: `apt-get install valgrind`; ~10 s a function). Figures in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from infrastructure.bench.functions import cold_start_env
from infrastructure.packaging import functions, runtime_python

_TOTAL = re.compile(r"I\s+refs:\s+([\d,]+)")


def instructions(valgrind: str, python: str, code: str, task: Path, env: dict[str, str]) -> int:
    """Instructions `python -S -s -c code` executes in `task` with only `env`."""
    done = subprocess.run(  # noqa: S603  # fixed tools, a fixed module name
        [
            valgrind,
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
            python,
            "-S",
            "-s",
            "-c",
            code,
        ],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=task,
    )
    found = _TOTAL.search(done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output: {done.stderr[-500:]}")
    return int(found.group(1).replace(",", ""))


def main(packages: Path) -> int:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("valgrind is not installed: apt-get install valgrind", file=sys.stderr)
        return 2
    python = runtime_python()
    print(f"{'function':<10} {'handler module':<26} {'import':>15} {'start-up':>13}")
    with tempfile.TemporaryDirectory(prefix="sluice-count-") as scratch:
        for role, handler in functions().items():
            zipped = packages / f"{role}.zip"
            if not zipped.is_file():
                print(f"no {zipped}: run `make package` first", file=sys.stderr)
                return 2
            task = Path(scratch) / role
            with zipfile.ZipFile(zipped) as archive:
                archive.extractall(task)
            env = {**cold_start_env(role, task), "PATH": "/usr/bin:/bin"}
            module = handler.rpartition(".")[0]
            imported = instructions(valgrind, python, f"import {module}", task, env)
            started = instructions(valgrind, python, "pass", task, env)
            print(f"{role:<10} {module:<26} {imported:>15,} {started:>13,}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("build/lambda")))
