"""Benchmark figures and where they are written: `build/bench.json` (name -> value and unit) and
a section of `docs/BENCHMARKS.md` (a table with each goal, measured figure and reference).

Each benchmark run owns one section of the document (between its markers) and its own JSON file,
so `make bench` and `make bench-e2e` never overwrite each other's results.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

DOC: Final = Path("docs/BENCHMARKS.md")
DOC_TITLE: Final = "# Benchmarks"


@dataclass(frozen=True)
class Figure:
    name: str
    """The key in bench.json (issue 7 names them), e.g. `delivery_files_per_s_1k`."""
    value: float
    unit: str
    what: str
    """One line: what was measured, on what input."""
    goal: str = ""
    """The goal as text (`>= 3x naive`), empty for a reference figure."""
    met: bool | None = None
    """Whether the goal is met; None for a reference or a figure without a goal."""
    reference: str = ""
    """The reference it is compared with, measured in the same run (`naive: 3,412 files/s`)."""
    note: str = ""
    """What limits it, when a goal is not met; how it was reduced in a quick run."""


def machine() -> str:
    cpus = os.cpu_count()
    memory = ""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            kib = int(meminfo.readline().split()[1])
            memory = f", {kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip() + ", "
                    break
    except OSError:
        pass
    return f"{model}{cpus} cores{memory}, Python {platform.python_version()}, {platform.system()}"


def commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607  # git from PATH
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def write_json(path: Path, figures: list[Figure]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {f.name: {"value": f.value, "unit": f.unit} for f in figures}
    path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")


def table(figures: list[Figure]) -> str:
    rows = [
        "| figure | measured | goal | met | reference (same run) | what |",
        "|---|---|---|---|---|---|",
    ]
    for f in figures:
        met = "" if f.met is None else ("yes" if f.met else "**no**")
        what = f.what + (f" — {f.note}" if f.note else "")
        rows.append(
            f"| `{f.name}` | {_number(f.value)} {f.unit} | {f.goal} | {met} | {f.reference} "
            f"| {what} |"
        )
    return "\n".join(rows)


def write_section(name: str, command: str, body: str, doc: Path = DOC) -> None:
    """Replace (or append) the section `name` of the document with `body`, stamped with the
    command, machine, commit and date."""
    begin, end = f"<!-- {name}: begin -->", f"<!-- {name}: end -->"
    stamp = (
        f"Measured by `{command}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {commit()}, "
        f"on {machine()}."
    )
    section = f"{begin}\n{stamp}\n\n{body.strip()}\n{end}"
    text = doc.read_text(encoding="utf-8") if doc.exists() else f"{DOC_TITLE}\n"
    if begin in text and end in text:
        head, _, rest = text.partition(begin)
        _, _, tail = rest.partition(end)
        text = f"{head}{section}{tail}"
    else:
        text = f"{text.rstrip()}\n\n{section}\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text, encoding="utf-8")


def _number(value: float) -> str:
    if value == int(value) and abs(value) >= 100:
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


_STARTED: Final = time.monotonic()


def progress(message: str) -> None:
    """One progress line on stderr, with the seconds since the run started."""
    print(f"[{time.monotonic() - _STARTED:6.1f} s] {message}", file=sys.stderr, flush=True)
