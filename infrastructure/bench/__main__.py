"""`make bench`: `python -m infrastructure.bench [--quick] [--only core,functions,transfer]`.

Runs each section (a module with `run(quick, workdir) -> list[Figure]`), prints the table,
writes build/bench.json and the `bench` section of docs/BENCHMARKS.md: the table, what each
goal means, and what limits each goal not met. Sections are imported only when they run, and a
section whose module is missing fails the run before anything is measured: its figures are
never invented.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from infrastructure.bench import results
from infrastructure.bench.results import Figure

JSON_PATH: Final = Path("build/bench.json")
SECTIONS: Final = {
    "core": (
        "delivery_files_per_s_1k",
        "naive_files_per_s_1k",
        "delivery_mb_per_s_100k",
        "reference_mb_per_s_100k",
        "delivery_mb_per_s_64m",
        "delivery_cpu_s_per_staged_mb",
        "limit_cpu_s_per_staged_mb",
        "delivery_vs_limit",
        "tables_records_per_s",
    ),
    "functions": (
        "processor_records_per_s",
        "forwarder_envelope_cpu_ms_per_file",
        "forwarder_sdk_calls_per_file",
        "forwarder_batch10_ms",
        "cold_start_ms_max",
    ),
    "transfer": (
        "delivery_rss_growth_mib_window",
        "delivery_rss_growth_mib_small_files",
        "delivery_rss_growth_mib_ref",
        "rclone_mb_per_s",
        "sluice_delivery_mb_per_s_peer_input",
        "sluice_delivery_mb_per_s_vs_rclone",
    ),
    "safety": (
        "redrive_requests_history_ratio",
        "reconcile_requests_history_ratio",
        "outage_drain_ratio",
    ),
    "intake": ("intake_requests_per_s", "intake_p99_ms"),
}
"""Each section's figures (issue 7 names them), in the order the table shows them."""

GOALS: Final = {
    "delivery_files_per_s_1k": "Small files are most of the traffic (10 files/s, bursts of "
    "100/s): delivery's per-file cost must be far below the obvious implementation's, so a "
    "burst window is archived in seconds.",
    "delivery_mb_per_s_100k": "Past the per-file cost, delivery should run near the speed of "
    "the work it cannot avoid (deflate and sha256 of every byte): at least half of it.",
    "delivery_vs_limit": "Delivery's CPU per staged MB should be within 2x of the work no "
    "delivery of those bytes can skip (inflate, deflate, sha256 once each, fastest codec shipped).",
    "processor_records_per_s": "A 3 MB Firehose batch must be answered well inside the "
    "processor's timeout, and the processor must never be what throttles a stream.",
    "forwarder_envelope_cpu_ms_per_file": "The forwarder's own work per file must be small "
    "beside the SDK calls it cannot avoid (~1.5-2 ms CPU each).",
    "forwarder_sdk_calls_per_file": "SDK calls dominate the forwarder's cost and latency: read, "
    "claim, and a share of the batched send and completion.",
    "forwarder_batch10_ms": "Object reads must overlap: a batch of 10 should take about two "
    "reads' time, not ten, to keep end-to-end latency inside p95 2 min.",
    "delivery_rss_growth_mib_window": "Delivery must fit its Lambda memory whatever the window: "
    "growth at most 64 MiB, independent of the window's size.",
    "delivery_rss_growth_mib_small_files": "Memory must not grow with the number of files "
    "either: at most 64 MiB for the most small files one window can hold (issue 19: 100,000).",
    "delivery_rss_growth_mib_ref": "A file of any size passes through by reference: streamed, "
    "so memory growth stays at most 64 MiB for a 2 GiB file.",
    "redrive_requests_history_ratio": "Redrive runs every 5 minutes over a ledger of ~35 M "
    "items at 10 files/s: a run must cost what is pending, not what was delivered before.",
    "reconcile_requests_history_ratio": "The hourly reconcile must read one hour's files, "
    "whatever the landing bucket's history, or it stops running within hours of traffic.",
    "outage_drain_ratio": "After a MinIO outage of days, redrive must drain the backlog at "
    "least 10x faster than new windows arrive, oldest first.",
    "intake_requests_per_s": "Producers post small events one request each: one intake worker "
    "should answer at least 100 a second, so that a burst of 100 files/s needs few workers.",
    "intake_p99_ms": "A producer waits for its answer: the intake's own work should add at "
    "most 50 ms at the 99th percentile, beside the network.",
    "cold_start_ms_max": "Every new Lambda execution environment (scale-out, a new deploy) pays "
    "its handler's import before its first event, as Lambda runs it (the packaged zip, its "
    "bytecode, the runtime's Python): each should stay under a quarter of a second.",
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infrastructure.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller inputs: under 2 minutes")
    parser.add_argument(
        "--only",
        type=_sections,
        default=list(SECTIONS),
        help=f"comma-separated sections to run, of {','.join(SECTIONS)} (default: all)",
    )
    args = parser.parse_args(argv)
    try:
        runners = {name: load_section(name) for name in args.only}
    except SectionMissing as err:
        print(f"bench: {err}", file=sys.stderr)
        return 2
    started = time.monotonic()
    figures: list[Figure] = []
    for name, run in runners.items():
        results.progress(f"section {name}: starting")
        with tempfile.TemporaryDirectory(prefix=f"sluice-bench-{name}-") as workdir:
            produced = run(args.quick, Path(workdir))
        check_names(name, produced)
        figures += produced
        results.progress(f"section {name}: done")
    print(results.table(figures))
    results.write_json(JSON_PATH, figures)
    command = "python -m infrastructure.bench" + (" --quick" if args.quick else "")
    if args.only != list(SECTIONS):
        command += f" --only {','.join(args.only)}"
    # A quick run, or one of some sections only, has its own section: it never replaces the
    # full run's figures.
    section = "bench-quick" if args.quick else "bench"
    if args.only != list(SECTIONS):
        section += "-" + "-".join(args.only)
    results.write_section(section, command, document(figures, args.quick))
    results.progress(
        f"wrote {JSON_PATH} and the `{section}` section of {results.DOC} in "
        f"{time.monotonic() - started:,.0f} s"
    )
    return 0


class SectionMissing(RuntimeError):
    """A section's module is not there (yet)."""


def load_section(name: str) -> Callable[[bool, Path], list[Figure]]:
    """The section's `run`, imported now (not before): a missing module is a clear failure."""
    module_name = f"infrastructure.bench.{name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise
        raise SectionMissing(
            f"section {name!r} needs {module_name.replace('.', '/')}.py, which is not there "
            f"yet; its figures ({', '.join(SECTIONS[name])}) cannot be measured. Run the other "
            f"sections with --only {','.join(s for s in SECTIONS if s != name)}."
        ) from err
    run: Callable[[bool, Path], list[Figure]] = module.run
    return run


def check_names(section: str, figures: Sequence[Figure]) -> None:
    """A section must produce exactly its figures: bench.json's keys are a contract."""
    got = [figure.name for figure in figures]
    if sorted(got) != sorted(SECTIONS[section]):
        raise RuntimeError(f"section {section} produced {got}, expected {SECTIONS[section]}")


def document(figures: Sequence[Figure], quick: bool) -> str:
    """The `bench` section's body: the table, what each goal is, what limits each goal not met."""
    parts = [results.table(list(figures))]
    if quick:
        parts.append(
            "**Quick run**: smaller inputs (each figure says so); these figures are not the "
            "ones the goals are judged on."
        )
    goals = [f"- `{f.name}` ({f.goal}): {GOALS.get(f.name, f.what)}" for f in figures if f.goal]
    if goals:
        parts.append("### Goals\n\n" + "\n".join(goals))
    missed = [f"- `{f.name}`: {f.note or 'see the figure'}" for f in figures if f.met is False]
    parts.append(
        "### Goals not met\n\n" + ("\n".join(missed) if missed else "None: every goal is met.")
    )
    return "\n\n".join(parts)


def _sections(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SECTIONS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown section(s) {unknown or text!r}; choose from {','.join(SECTIONS)}"
        )
    return list(dict.fromkeys(names))


if __name__ == "__main__":
    sys.exit(main())
