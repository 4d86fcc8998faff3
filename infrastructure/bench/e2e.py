"""`make bench-e2e`: the local stack at production buffering, end to end, and where it saturates.

    .venv/bin/python -m infrastructure.bench.e2e            # 10 files/s for 5 min, 100 files/s
                                                            # for 2 min; 60 s buffer; < 20 min
    .venv/bin/python -m infrastructure.bench.e2e --quick    # 30 s + 20 s, 10 s buffer (~3 min)

It starts the local stack at time scale 1 (real time), lands `sluice load`'s realistic mix
(infrastructure.cli.workload, through infrastructure.cli.files.land) phase after phase, waits
for every file in MinIO, and reports per phase: the landing rate achieved, files delivered, lost
and duplicated (matched by key and sha256 against the window manifests), and latency per file —
from its S3 event time (`event_time_ms` in the manifest) to its window's `delivered_at_ms` in
the ledger, the moment delivery marked it DELIVERED, which is when DESIGN §4a counts a file
delivered. Every few seconds a sampler records what shows saturation: the ingest queue's depth
and (estimated) oldest message, Firehose's buffered records, invocations and CPU of each
function's workers, moto's requests/s and CPU, SeaweedFS's CPU.

What it measures is the local stand-ins (moto, the local Firehose and Lambda runtime, SeaweedFS)
on this machine, not AWS: it says whether the pipeline's own code and buffering meet the SLO
(p95 <= 2 min, p99.9 <= 3 min) here, and which stand-in gives out first.

Results: build/bench-e2e.json and the `bench-e2e` section of docs/BENCHMARKS.md (`--quick`:
build/bench-e2e-quick.json and section `bench-e2e-quick`, so a development run never passes for
the real one).
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from delivery.layout import placements
from delivery.ledger import Ledger
from infrastructure.bench.results import Figure, table, write_json, write_section
from infrastructure.cli import deployment
from infrastructure.cli.arrivals import ManifestReader
from infrastructure.cli.files import LoadReport, land
from infrastructure.local.lifeline import alive
from infrastructure.local.stack.local_stack import LocalStack, StackOptions
from infrastructure.local.stack.stack_file import StackFile
from infrastructure.queues import queue_depth

SLO_P95_S: Final = 120.0
SLO_P999_S: Final = 180.0
SAMPLE_SECONDS: Final = 3.0
PUT_THREADS: Final = 16
"""Enough that 100 files/s of puts (some of several MiB) are not held up by the client."""
WAIT_SLACK_SECONDS: Final = 300.0
PHASE_OVERRUN: Final = 1.5
"""A phase stops landing at 1.5x its duration: a stack that cannot keep up shows as a lower
rate and files not sent, and the run keeps to its time budget."""
SATURATED_CPU: Final = 0.9
"""Of one core: a single Python process (moto, the stack) is saturated there, whatever the GIL
lets its threads do."""
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
FUNCTIONS: Final = ("forwarder", "processor", "delivery")
MACHINE: Final = "machine"
"""The whole machine's busy cores: other work competes with the stack for them."""
CORES: Final = os.cpu_count() or 1


@dataclass(frozen=True)
class Phase:
    name: str
    """In the figure names: `10fps` -> e2e_10fps_p95_s."""
    rate: float
    seconds: float


@dataclass(frozen=True)
class Plan:
    phases: tuple[Phase, ...]
    buffer_seconds: int | None
    """Firehose's destination buffer; None: the tunables' 60 s."""
    section: str
    json_path: Path
    command: str
    budget_seconds: float
    """From the stack's start to the end of the wait for arrivals (then stopping: < 2 min)."""


FULL: Final = Plan(
    (Phase("10fps", 10, 300), Phase("100fps", 100, 120)),
    None,
    "bench-e2e",
    Path("build/bench-e2e.json"),
    "make bench-e2e",
    17 * 60,
)
QUICK: Final = Plan(
    (Phase("10fps", 10, 30), Phase("100fps", 100, 20)),
    10,
    "bench-e2e-quick",
    Path("build/bench-e2e-quick.json"),
    "python -m infrastructure.bench.e2e --quick",
    6 * 60,
)


# ------------------------------------------------------------------ pure helpers (unit-tested)


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest rank: the smallest value with at least `fraction` of the values at or below it;
    None for no values."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be within (0, 1], not {fraction!r}")
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def latencies_s(
    event_times_ms: dict[tuple[str, str], int],
    owner: dict[tuple[str, str], str],
    delivered_ms: dict[str, int],
) -> dict[tuple[str, str], float]:
    """Per file (key, sha256): seconds from its S3 event to its window's delivery; files whose
    window has no delivery time are left out."""
    found: dict[tuple[str, str], float] = {}
    for file, event_ms in event_times_ms.items():
        window = owner.get(file)
        if window is not None and window in delivered_ms:
            found[file] = (delivered_ms[window] - event_ms) / 1000
    return found


def oldest_waiting_age(landed_at: Sequence[float], forwarded: int, now: float) -> float:
    """Age of the oldest message not yet forwarded, assuming the queue hands messages out in
    landing order (moto does, near enough; SQS standard queues only roughly): the landing time
    of the (forwarded+1)-th file. `landed_at` sorted; 0 when nothing waits."""
    if forwarded >= len(landed_at):
        return 0.0
    return max(0.0, now - landed_at[max(0, forwarded)])


def cpu_share(before_ticks: int, after_ticks: int, seconds: float) -> float:
    """Cores used over an interval (1.0 = one core busy throughout)."""
    if seconds <= 0:
        return 0.0
    return max(0, after_ticks - before_ticks) / CLOCK_TICKS / seconds


@dataclass(frozen=True)
class Sample:
    t: float
    """Seconds since the first file was sent."""
    landed: int
    forwarded: int
    delivered: int
    ingest_depth: int
    oldest_s: float
    firehose_buffered: int
    firehose_throttled: int
    invocations_per_s: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    """Cores per component: moto, seaweedfs, stack (this process: Firehose, runtime, sender),
    and each function's workers."""
    moto_s3_rps: float = 0.0
    moto_other_rps: float = 0.0
    """SQS, DynamoDB, Secrets Manager: moto logs them all as `POST /`."""


@dataclass(frozen=True)
class Saturation:
    max_depth: int
    max_depth_at: float
    drained_at: float | None
    """First sample after the peak with the queue empty; None: never, within the run."""
    max_oldest_s: float
    peak_cpu: dict[str, float]
    saturated: list[str]
    """Components at or above SATURATED_CPU of a core at their peak, busiest first."""
    max_moto_rps: float


def saturation(samples: Sequence[Sample]) -> Saturation:
    if not samples:
        return Saturation(0, 0.0, None, 0.0, {}, [], 0.0)
    peak = max(samples, key=lambda s: (s.ingest_depth, -s.t))
    drained = next((s.t for s in samples if s.t >= peak.t and s.ingest_depth == 0), None)
    peak_cpu: dict[str, float] = {}
    for sample in samples:
        for name, cores in sample.cpu.items():
            peak_cpu[name] = max(peak_cpu.get(name, 0.0), cores)
    # Worker pools have several processes: saturated when every worker is busy on CPU.
    # The machine is saturated when all its cores are busy, a process when one core is.
    saturated = sorted(
        (
            name
            for name, cores in peak_cpu.items()
            if cores >= SATURATED_CPU * (CORES if name == MACHINE else 1)
        ),
        key=lambda name: -peak_cpu[name],
    )
    return Saturation(
        max_depth=peak.ingest_depth,
        max_depth_at=peak.t,
        drained_at=drained,
        max_oldest_s=max(s.oldest_s for s in samples),
        peak_cpu=peak_cpu,
        saturated=saturated,
        max_moto_rps=max(s.moto_s3_rps + s.moto_other_rps for s in samples),
    )


def count_requests(lines: Iterable[str]) -> tuple[int, int]:
    """(S3, other) requests in moto's request log lines (`"PUT /bucket/key HTTP/1.1" 200`)."""
    s3 = other = 0
    for line in lines:
        if 'HTTP/1.1"' not in line:
            continue
        if '"POST / HTTP' in line or '"GET / HTTP' in line:
            other += 1
        else:
            s3 += 1
    return s3, other


# ------------------------------------------------------------------ arrivals


class TimedManifestReader(ManifestReader):
    """`sluice load`'s reader, keeping what latency needs: each file's event time and window."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.event_ms: dict[tuple[str, str], int] = {}
        self.owner: dict[tuple[str, str], str] = {}
        self.first_seen_ms: dict[str, int] = {}
        self.arrived: Counter[tuple[str, str]] = Counter()

    def poll(self) -> None:
        for name in self._manifests():
            if name in self._seen:
                continue
            manifest = self._read(name)
            self._seen.add(name)
            window = str(manifest["window_id"])
            self.first_seen_ms.setdefault(window, int(time.time() * 1000))
            for _, entry in placements(manifest):
                file = (entry["key"], entry["sha256"])
                self.arrived[file] += 1
                self.event_ms.setdefault(file, int(entry["event_time_ms"]))
                self.owner.setdefault(file, window)


# ------------------------------------------------------------------ sampler


def _machine_ticks() -> int:
    """Busy ticks of every core (all processes, this run's and others')."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return 0
    return sum(fields) - fields[3] - fields[4]  # less idle and iowait


def _ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


class Sampler:
    """Every SAMPLE_SECONDS: the figures of `Sample`, and new arrivals in MinIO."""

    def __init__(self, stack: LocalStack, reports: list[LoadReport], say: Callable[[str], None]):
        if stack.file is None or stack.runtime is None or stack.ingest is None:
            raise RuntimeError("the stack is not started")
        self.stack, self.file, self.runtime, self.ingest = (
            stack,
            stack.file,
            stack.runtime,
            stack.ingest,
        )
        self.reports = reports
        self.say = say
        self.samples: list[Sample] = []
        self.reader = TimedManifestReader(self.file.minio.client(), self.file.minio.bucket)
        self.lock = threading.Lock()
        self._sqs = deployment.from_stack(self.file).client("sqs")
        self._forwarded0 = self.ingest.stats.deleted  # moto's s3:TestEvent, before the run
        self._log = Path(self.file.logs) / "moto.log"
        self._log_offset = self._log.stat().st_size if self._log.exists() else 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="e2e-sampler", daemon=True)
        self.started = time.time()

    def start(self) -> Sampler:
        self.started = time.time()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def arrived_of(self, files: Iterable[tuple[str, str]]) -> int:
        with self.lock:
            return sum(1 for file in files if file in self.reader.arrived)

    def _loop(self) -> None:
        last_time = time.monotonic()
        last = self._counters()
        printed = 0.0
        while not self._stop.wait(SAMPLE_SECONDS):
            now = time.monotonic()
            try:
                with self.lock:
                    self.reader.poll()
                current = self._counters()
                sample = self._sample(last, current, now - last_time)
            except Exception as err:  # noqa: BLE001  # a missed sample is reported, not fatal
                self.say(f"  (sample missed: {err})")
                continue
            last, last_time = current, now
            self.samples.append(sample)
            if sample.t - printed >= 15:
                printed = sample.t
                self.say(_progress(sample))

    def _counters(self) -> dict[str, Any]:
        pids = self.file.pids
        ticks = {
            "moto": _ticks(pids["moto"]),
            "stack": _ticks(os.getpid()),
            MACHINE: _machine_ticks(),
        }
        if "seaweedfs" in pids:
            ticks["seaweedfs"] = _ticks(pids["seaweedfs"])
        for name in FUNCTIONS:
            ticks[name] = sum(_ticks(pid) for pid in self.runtime.worker_pids(name))
        s3, other = self._moto_requests()
        return {
            "ticks": ticks,
            "invocations": {name: self.runtime.stats(name).invocations for name in FUNCTIONS},
            "s3": s3,
            "other": other,
        }

    def _moto_requests(self) -> tuple[int, int]:
        try:
            with self._log.open("rb") as log:
                log.seek(self._log_offset)
                chunk = log.read()
        except OSError:
            return 0, 0
        cut = chunk.rfind(b"\n") + 1  # whole lines only; the rest next time
        self._log_offset += cut
        return count_requests(chunk[:cut].decode("utf-8", "replace").splitlines())

    def _sample(self, last: dict[str, Any], current: dict[str, Any], seconds: float) -> Sample:
        now = time.time()
        landed_at = sorted(t for report in self.reports for t in report.landed_at)
        forwarded = self.ingest.stats.deleted - self._forwarded0
        firehose = self.stack.firehose.stats() if self.stack.firehose is not None else {}
        with self.lock:
            delivered = sum(self.reader.arrived.values())
        # Worker pids come and go (cold starts): a pool's ticks can drop; cpu_share clamps at 0.
        return Sample(
            t=now - self.started,
            landed=len(landed_at),
            forwarded=forwarded,
            delivered=delivered,
            ingest_depth=queue_depth(self._sqs, self.file.ingest_queue_url),
            oldest_s=oldest_waiting_age(landed_at, forwarded, now),
            firehose_buffered=sum(s.get("buffered_records", 0) for s in firehose.values()),
            firehose_throttled=sum(s.get("throttled_calls", 0) for s in firehose.values()),
            invocations_per_s={
                name: (current["invocations"][name] - last["invocations"][name]) / seconds
                for name in FUNCTIONS
            },
            cpu={
                name: cpu_share(last["ticks"].get(name, 0), ticks, seconds)
                for name, ticks in current["ticks"].items()
            },
            moto_s3_rps=current["s3"] / seconds,
            moto_other_rps=current["other"] / seconds,
        )


def _progress(s: Sample) -> str:
    cpu = " ".join(f"{name} {100 * cores:.0f}%" for name, cores in s.cpu.items())
    return (
        f"  t={s.t:4.0f}s landed {s.landed} forwarded {s.forwarded} in MinIO {s.delivered} | "
        f"ingest {s.ingest_depth} (oldest ~{s.oldest_s:.0f}s) | firehose buffered "
        f"{s.firehose_buffered} | moto {s.moto_s3_rps:.0f} S3 + {s.moto_other_rps:.0f} other "
        f"req/s | cpu {cpu}"
    )


# ------------------------------------------------------------------ the run


@dataclass
class PhaseResult:
    phase: Phase
    report: LoadReport
    started_t: float = 0.0
    """Seconds since the sampler started."""
    latencies: list[float] = field(default_factory=list)
    lost: int = 0
    duplicates: int = 0
    delivered: int = 0
    without_ledger_time: int = 0

    @property
    def rate(self) -> float:
        return len(self.report.sent) / max(self.report.sending_seconds, 1e-9)


@dataclass
class Run:
    results: list[PhaseResult]
    samples: list[Sample] = field(default_factory=list)
    dlq_depths: dict[str, int] = field(default_factory=dict)
    """At the end of the wait: where files that failed too often would be."""
    unfinished: list[str] = field(default_factory=list)
    """What the stack's stop could not finish."""
    processes_left: list[int] = field(default_factory=list)
    load: tuple[float, float] = (0.0, 0.0)
    """1-minute load average at the start and at the end: other work on the machine."""


def run(plan: Plan, root: Path, say: Callable[[str], None]) -> Run:
    """Start the stack, land every phase, wait for arrivals, stop the stack (always)."""
    stack = LocalStack(StackOptions(root=root, time_scale=1.0, buffer_seconds=plan.buffer_seconds))
    found = Run([PhaseResult(phase, LoadReport(started=time.monotonic())) for phase in plan.phases])
    sampler: Sampler | None = None
    pids: set[int] = set()
    begun = time.monotonic()
    load_start = os.getloadavg()[0]
    try:
        say("starting the local stack (time scale 1)")
        stack.start(progress=lambda text: say(f"  {text}"))
        file, runtime = stack.file, stack.runtime
        if file is None or runtime is None:
            raise RuntimeError("the local stack started without its stack file or runtime")
        say(
            f"stack up: buffers {file.processor_buffer_seconds} s + {file.buffer_seconds} s, "
            f"{stack.options.workers_per_function} workers per function"
        )
        sampler = Sampler(stack, [r.report for r in found.results], say).start()
        run_id = f"e2e-{uuid.uuid4().hex[:8]}"
        for result in found.results:
            _land_phase(file, f"{run_id}-{result.phase.name}", result, sampler.started, say)
        left = plan.budget_seconds - (time.monotonic() - begun)
        _await(
            sampler,
            found.results,
            min(
                2 * file.expected_wait_seconds + WAIT_SLACK_SECONDS,
                max(left, file.expected_wait_seconds),
            ),
            say,
        )
        sampler.stop()
        target = deployment.from_stack(file)
        _account(sampler, found.results, Ledger(target.client("dynamodb"), file.ledger_table, 1))
        sqs = target.client("sqs")
        found.dlq_depths = {
            "ingest": queue_depth(sqs, file.ingest_dlq_url),
            "delivery": queue_depth(sqs, file.delivery_dlq_url),
            "requeue": queue_depth(sqs, file.requeue_dlq_url),
        }
    finally:
        if sampler is not None:
            sampler.stop()
            found.samples = sampler.samples
        if stack.file is not None:
            pids.update(stack.file.pids.values())
        if stack.runtime is not None:
            pids.update(stack.runtime.worker_pids())
        say("stopping the local stack")
        found.load = (load_start, os.getloadavg()[0])
        found.unfinished = stack.stop(progress=lambda text: say(f"  {text}"))
        if found.unfinished:
            say(f"  left unfinished: {', '.join(found.unfinished)}")
    found.processes_left = sorted(pid for pid in pids if pid != os.getpid() and alive(pid))
    say(f"processes left: {found.processes_left or 'none'}")
    return found


def _land_phase(
    file: StackFile, run_id: str, result: PhaseResult, origin: float, say: Callable[[str], None]
) -> None:
    phase = result.phase
    total = round(phase.rate * phase.seconds)
    result.started_t = time.time() - origin
    say(f"phase {phase.name}: {total} files at {phase.rate:g}/s for {phase.seconds:g} s")
    land(
        file,
        run_id,
        rate=phase.rate,
        total=total,
        seed=len(phase.name),
        report=result.report,
        threads=PUT_THREADS,
        progress=None,  # the sampler's lines say more
        stop_after=PHASE_OVERRUN * phase.seconds,
    )
    report = result.report
    cut = f", {report.not_sent} not sent (time limit)" if report.not_sent else ""
    say(
        f"phase {phase.name}: landed {len(report.sent)} in {report.sending_seconds:.1f} s "
        f"({result.rate:.1f} files/s), {len(report.send_errors)} failed to land{cut}"
    )


def _await(
    sampler: Sampler, results: list[PhaseResult], wait: float, say: Callable[[str], None]
) -> None:
    sent = [file for r in results for file in r.report.sent]
    say(f"waiting up to {wait:.0f} s for {len(sent)} files in MinIO")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if sampler.arrived_of(sent) == len(sent):
            time.sleep(SAMPLE_SECONDS)  # one more sample: duplicates would show by then
            break
        time.sleep(1)
    say(f"in MinIO: {sampler.arrived_of(sent)}/{len(sent)}")


def _account(sampler: Sampler, results: list[PhaseResult], ledger: Ledger) -> None:
    reader = sampler.reader
    reader.poll()
    delivered_ms: dict[str, int] = {}
    for window in set(reader.owner.values()):
        record = ledger.get_window(window)
        if record is not None and record.delivered_at_ms is not None:
            delivered_ms[window] = record.delivered_at_ms
    for result in results:
        sent = set(result.report.sent)
        events = {f: ms for f, ms in reader.event_ms.items() if f in sent}
        found = latencies_s(events, reader.owner, delivered_ms)
        # A window missing from the ledger: the time its window manifest was first seen (poll-late).
        fallback = {w: ms for w, ms in reader.first_seen_ms.items() if w not in delivered_ms}
        extra = latencies_s(
            {f: events[f] for f in events if f not in found}, reader.owner, fallback
        )
        result.without_ledger_time = len(extra)
        result.latencies = sorted([*found.values(), *extra.values()])
        result.delivered = sum(1 for f in sent if f in reader.arrived)
        result.lost = len(sent) - result.delivered
        result.duplicates = sum(1 for f in sent if reader.arrived[f] > 1)


# ------------------------------------------------------------------ report


def figures(results: Sequence[PhaseResult], sat: Saturation, plan: Plan) -> list[Figure]:
    quick = "" if plan is FULL else "quick run"
    found: list[Figure] = []
    for r in results:
        p = r.phase
        prefix = f"e2e_{p.name}"
        what = f"{p.rate:g} files/s for {p.seconds:g} s, realistic mix"
        p50, p95, p999 = (percentile(r.latencies, q) for q in (0.5, 0.95, 0.999))
        found += [
            Figure(
                f"{prefix}_rate",
                round(r.rate, 2),
                "files/s",
                f"landing rate achieved, {what}",
                f">= {0.95 * p.rate:g}",
                r.rate >= 0.95 * p.rate,
                note=quick,
            ),
            Figure(
                f"{prefix}_delivered",
                r.delivered,
                "files",
                f"files in MinIO of {len(r.report.sent)} landed",
                note=quick,
            ),
            Figure(
                f"{prefix}_p50_s",
                _round(p50),
                "s",
                "latency p50, S3 event -> DELIVERED",
                note=quick,
            ),
            Figure(
                f"{prefix}_p95_s",
                _round(p95),
                "s",
                "latency p95, S3 event -> DELIVERED",
                f"<= {SLO_P95_S:g}",
                p95 is not None and p95 <= SLO_P95_S,
                note=quick,
            ),
            Figure(
                f"{prefix}_p999_s",
                _round(p999),
                "s",
                "latency p99.9, S3 event -> DELIVERED",
                f"<= {SLO_P999_S:g}",
                p999 is not None and p999 <= SLO_P999_S,
                note=quick,
            ),
            Figure(
                f"{prefix}_lost",
                r.lost,
                "files",
                "landed, not in MinIO by the end of the wait",
                "0",
                r.lost == 0,
                note=quick,
            ),
            Figure(
                f"{prefix}_duplicates",
                r.duplicates,
                "files",
                "in MinIO more than once",
                "0",
                r.duplicates == 0,
                note=quick,
            ),
        ]
    moto = sat.peak_cpu.get("moto", 0.0)
    drained = "never" if sat.drained_at is None else f"at t={sat.drained_at:.0f} s"
    found += [
        Figure(
            "e2e_ingest_max_depth",
            sat.max_depth,
            "messages",
            f"ingest queue's deepest, at t={sat.max_depth_at:.0f} s; empty again {drained}",
            note=quick,
        ),
        Figure(
            "e2e_ingest_max_oldest_s",
            round(sat.max_oldest_s, 1),
            "s",
            "oldest ingest message (estimated: landing order)",
            "<= 3600",
            sat.max_oldest_s <= 3600,
            note=quick,
        ),
        Figure(
            "e2e_moto_peak_cpu",
            round(100 * moto),
            "% of a core",
            "moto server's busiest sample (one Python process)",
            note=quick,
        ),
        Figure(
            "e2e_moto_peak_rps",
            round(sat.max_moto_rps),
            "requests/s",
            "moto's busiest sample, all services",
            note=quick,
        ),
    ]
    return found


def _round(value: float | None) -> float:
    return math.nan if value is None else round(value, 1)


def _plan_text(plan: Plan) -> str:
    phases = " then ".join(f"{p.rate:g} files/s for {p.seconds:g} s" for p in plan.phases)
    buffer = "the production 60 s" if plan.buffer_seconds is None else f"a {plan.buffer_seconds} s"
    return f"{phases}, {buffer} buffer, time scale 1"


def timeline(samples: Sequence[Sample], rows: int = 30) -> str:
    step = max(1, math.ceil(len(samples) / rows))
    kept = list(samples[::step])
    if samples and kept[-1] is not samples[-1]:
        kept.append(samples[-1])
    names = sorted({name for s in samples for name in s.cpu})
    lines = [
        "| t (s) | landed | forwarded | in MinIO | ingest depth | oldest (s, est.) | firehose "
        "buffered | moto S3 / other req/s | invocations/s fwd / proc / deliv | CPU % "
        + " / ".join(names)
        + " |",
        "|" + "---|" * 10,
    ]
    for s in kept:
        inv = " / ".join(f"{s.invocations_per_s.get(n, 0):.1f}" for n in FUNCTIONS)
        cpu = " / ".join(f"{100 * s.cpu.get(n, 0):.0f}" for n in names)
        lines.append(
            f"| {s.t:.0f} | {s.landed} | {s.forwarded} | {s.delivered} | {s.ingest_depth} | "
            f"{s.oldest_s:.0f} | {s.firehose_buffered} | {s.moto_s3_rps:.0f} / "
            f"{s.moto_other_rps:.0f} | {inv} | {cpu} |"
        )
    return "\n".join(lines)


def body(outcome: Run, sat: Saturation, plan: Plan) -> str:
    results, samples = outcome.results, outcome.samples
    found = figures(results, sat, plan)
    not_sent = ", ".join(
        f"{r.phase.name} {r.report.not_sent}" for r in results if r.report.not_sent
    )
    dlqs = ", ".join(f"{name} {depth}" for name, depth in outcome.dlq_depths.items())
    cut = f"Not sent within {PHASE_OVERRUN:g}x a phase's time: {not_sent}." if not_sent else ""
    starts = ", ".join(f"{r.phase.name} at t={r.started_t:.0f} s" for r in results)
    fallback = sum(r.without_ledger_time for r in results)
    seen = (
        f"; {fallback} files timed by their window manifest's first sight instead"
        if fallback
        else ""
    )
    saturated = (
        ", ".join(f"{name} ({100 * sat.peak_cpu[name]:.0f}% of a core)" for name in sat.saturated)
        or "nothing reached 90 % of a core"
    )
    drained = (
        "did not empty within the run"
        if sat.drained_at is None
        else f"was empty again at t={sat.drained_at:.0f} s"
    )
    return f"""
{_plan_text(plan)}; {len(plan.phases)} phases ({starts}).
**This measures the local stand-ins** — moto for S3/SQS/DynamoDB, Sluice's local Firehose and
Lambda runtime (2 worker processes per function), SeaweedFS as MinIO — on this machine, not
AWS: it shows whether Sluice's own code and buffering meet the SLO (p95 <= {SLO_P95_S:g} s,
p99.9 <= {SLO_P999_S:g} s) and which stand-in gives out first.

Latency per file: from its S3 event time (`event_time_ms` in the archive's manifest) to its
window's `delivered_at_ms` in the ledger (the moment delivery marked it DELIVERED){seen}.
Lost and duplicated: each landed file (key, sha256) against every window manifest in MinIO;
lost means not in MinIO by the end of the wait. DLQs at the end: {dlqs or "not read"}.
{cut}
Load average (1 min) at the start / end: {outcome.load[0]:.1f} / {outcome.load[1]:.1f} on
{os.cpu_count()} cores. Stack stopped; unfinished: {", ".join(outcome.unfinished) or "nothing"};
processes left: {outcome.processes_left or "none"}.

{table(found)}

Where it saturates: the ingest queue peaked at {sat.max_depth} messages at
t={sat.max_depth_at:.0f} s and {drained}; oldest message about {sat.max_oldest_s:.0f} s
(estimated from landing order: moto has no `ApproximateAgeOfOldestMessage`). Busiest
components (CPU, sampled every {SAMPLE_SECONDS:g} s): {saturated}. Peak CPU per component:
{", ".join(f"{n} {100 * c:.0f}%" for n, c in sorted(sat.peak_cpu.items()))} (`stack` is the
process running the local Firehose, the Lambda runtime's dispatch and this benchmark's sender;
`machine` all {CORES} cores, other work included: at {100 * CORES:.0f}% every process waits for
CPU and the figures say more about the machine than the stack).

Timeline (every {SAMPLE_SECONDS:g} s, thinned):

{timeline(samples)}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infrastructure.bench.e2e",
        description="The local stack at production buffering: 10 then 100 files/s; rate, "
        "latency, losses, duplicates, and where it saturates.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"for development: {_plan_text(QUICK)} (results kept apart from the real run's)",
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=Path("build/bench-e2e-root"),
        help="where the stack keeps its state (not the checkout's .sluice/, "
        "so a `make run` stack is left alone)",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    # SIGTERM (kill, CI's stop) ends the run as Ctrl-C does: `run` stops the stack on the way
    # out. Python's default would exit at once and leave moto and SeaweedFS running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    def say(text: str) -> None:
        print(text, flush=True)

    say(f"bench-e2e: {_plan_text(plan)}")
    args.root.mkdir(parents=True, exist_ok=True)
    outcome = run(plan, args.root.resolve(), say)
    results = outcome.results
    sat = saturation(outcome.samples)
    found = figures(results, sat, plan)
    write_json(plan.json_path, found)
    write_section(plan.section, plan.command, body(outcome, sat, plan))
    for f in found:
        met = "" if f.met is None else ("  ok" if f.met else "  NOT MET")
        say(f"{f.name:28} {f.value:>10} {f.unit}{met}")
    say(f"wrote {plan.json_path} and the `{plan.section}` section of docs/BENCHMARKS.md")
    failed = any(r.lost or r.duplicates or r.report.send_errors for r in results)
    failed = failed or bool(outcome.processes_left)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
