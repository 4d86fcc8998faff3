"""`sluice put` and `sluice load`: files into the running stack's landing bucket.

`put` uploads the files it is given. `load` writes a realistic mix (infrastructure.cli.workload)
at a steady rate for a while, then waits for every file to arrive in MinIO and reports what
arrived — matched by key and sha256 against the archives' manifests — with the latency
percentiles of the windows that carried them (from the ledger, as the status line). Its progress
counts each file forwarded as the forwarder completes it, since MinIO receives them a window
(a minute's files) at a time.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from minio import Minio

from delivery.latency import LatencyHistogram
from delivery.ledger import Ledger
from infrastructure.cli import deployment, workload
from infrastructure.cli.arrivals import Arrival, ManifestReader
from infrastructure.cli.errors import DeploymentError, UsageError
from infrastructure.cli.figures import PERCENTILES, seconds_text
from infrastructure.local.stack.stack_file import StackFile, read_stack
from transform.envelope import file_id
from transform.idempotency import COMPLETED

PUT_THREADS: Final = 8
POLL_SECONDS: Final = 2.0
WAIT_SLACK_SECONDS: Final = 120.0
QUIET_SECONDS: Final = 30.0
"""Longest `load` goes without a progress line while nothing moves."""
BATCH_GET: Final = 100
"""DynamoDB's BatchGetItem limit."""


# ---------------------------------------------------------------------- put


def put(args: argparse.Namespace, root: Path) -> int:
    stack = read_stack(root)
    uploads: list[tuple[Path, str]] = []
    for name in args.files:
        path = Path(name)
        if path.is_dir():
            uploads.extend(
                (file, args.prefix + file.relative_to(path).as_posix())
                for file in sorted(path.rglob("*"))
                if file.is_file()
            )
        elif path.is_file():
            uploads.append((path, args.prefix + path.name))
        else:
            print(
                f"sluice put: {name}: no such file or directory; nothing uploaded",
                file=sys.stderr,
            )
            return 2
    if args.api:
        _post(stack, uploads)
    else:
        s3 = deployment.from_stack(stack).client("s3")
        for path, key in uploads:
            with path.open("rb") as body:
                response = s3.put_object(Bucket=stack.landing_bucket, Key=key, Body=body)
            version = response.get("VersionId", "-")
            size = path.stat().st_size
            print(f"s3://{stack.landing_bucket}/{key}  version {version}  ({size} bytes)")
    print(
        f"{len(uploads)} file(s) landed; the archive reaches MinIO after Firehose's buffers, "
        f"in about {stack.expected_wait_seconds:.0f} s plus a few"
    )
    return 0


def _post(stack: StackFile, uploads: list[tuple[Path, str]]) -> None:
    """Each file POSTed to the stack's HTTPS intake as the producer demo."""
    if stack.intake_endpoint is None or stack.demo_producer_key is None:
        raise UsageError("this stack has no HTTPS intake; restart it with `sluice up`")
    for path, name in uploads:
        request = urllib.request.Request(  # noqa: S310  # the stack's own loopback endpoint
            f"{stack.intake_endpoint}/v1/files/{urllib.parse.quote(name)}",
            data=path.read_bytes(),
            method="POST",
            headers={
                "Authorization": f"Bearer {stack.demo_producer_key}",
                "Content-Type": "application/octet-stream",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310  # as above
                landed = json.loads(response.read())
        except urllib.error.HTTPError as err:
            problem = json.loads(err.read() or b"{}")
            raise DeploymentError(
                f"the intake refused {path}: {err.code} {problem.get('detail', err.reason)}"
            ) from err
        print(
            f"s3://{landed['bucket']}/{landed['key']}  version {landed['version_id']}  "
            f"({landed['size']} bytes, file_id {landed['file_id']})"
        )


# ---------------------------------------------------------------------- load


@dataclass
class LoadReport:
    sent: dict[tuple[str, str], str] = field(default_factory=dict)
    """(key, sha256) -> kind of every file landed."""
    send_errors: list[str] = field(default_factory=list)
    arrived: Counter[tuple[str, str]] = field(default_factory=Counter)
    windows: set[str] = field(default_factory=set)
    started: float = 0.0
    sending_seconds: float = 0.0
    landed_at: list[float] = field(default_factory=list)
    """Wall-clock time (epoch s) of each successful put, in the order they completed."""
    not_sent: int = 0
    """Files `land`'s time limit left unsent."""
    file_ids: dict[tuple[str, str], str] = field(default_factory=dict)
    """(key, sha256) -> file_id of every file landed (its landing version's)."""

    @property
    def missing(self) -> int:
        return sum(1 for file in self.sent if file not in self.arrived)

    @property
    def duplicated(self) -> int:
        return sum(1 for file, count in self.arrived.items() if count > 1)


def load(args: argparse.Namespace, root: Path) -> int:
    if args.rate <= 0 or args.seconds <= 0:
        print("sluice load: --rate and --seconds must be positive", file=sys.stderr)
        return 2
    stack = read_stack(root)
    run_id = f"run-{uuid.uuid4().hex[:8]}"
    report = LoadReport(started=time.monotonic())
    total = round(args.rate * args.seconds)
    print(f"sluice load: {total} files at {args.rate:g}/s for {args.seconds:g} s ({run_id})")
    progress = Progress.of(stack, report)
    _send(stack, run_id, args, total, report, progress=progress)
    print(
        f"sent {len(report.sent)} in {report.sending_seconds:.1f} s "
        f"({len(report.sent) / max(report.sending_seconds, 1e-9):.1f} files/s), "
        f"{len(report.send_errors)} failed to land"
    )
    wait = args.wait if args.wait is not None else _default_wait(stack)
    _await_arrivals(progress, wait)
    return _summarise(stack, report)


def _default_wait(stack: StackFile) -> float:
    return 2 * stack.expected_wait_seconds + WAIT_SLACK_SECONDS


def _send(
    stack: StackFile,
    run_id: str,
    args: argparse.Namespace,
    total: int,
    report: LoadReport,
    *,
    progress: Progress,
) -> None:
    land(
        stack,
        run_id,
        rate=args.rate,
        total=total,
        seed=args.seed,
        report=report,
        progress=lambda _sent: progress.show(),
    )


def land(
    stack: StackFile,
    run_id: str,
    *,
    rate: float,
    total: int,
    seed: int,
    report: LoadReport,
    threads: int = PUT_THREADS,
    progress: Callable[[str], None] | None = None,
    stop_after: float | None = None,
) -> None:
    """Land `total` files of the workload's mix under `run_id` at `rate` files/s (paced from the
    start, so a slow put does not lower the rate while threads are free), recording each in
    `report`. `stop_after` seconds: put nothing more after that (a stack that cannot keep up
    would otherwise stretch a timed run without end); what was left is `report.not_sent`.
    Also what `make bench-e2e` lands with."""
    s3 = deployment.from_stack(stack).client("s3")
    lock = threading.Lock()

    def put_one(file: workload.WorkloadFile) -> None:
        try:
            put = s3.put_object(Bucket=stack.landing_bucket, Key=file.key, Body=file.body)
        except Exception as err:  # noqa: BLE001  # counted and reported, the run goes on
            with lock:
                report.send_errors.append(f"{file.key}: {err}")
            return
        landed = time.time()
        version = put.get("VersionId") or "null"
        with lock:
            report.file_ids[(file.key, file.sha256)] = file_id(
                stack.landing_bucket, file.key, version
            )
            report.sent[(file.key, file.sha256)] = file.kind
            report.landed_at.append(landed)

    start = time.monotonic()
    stop_at = math.inf if stop_after is None else start + stop_after
    futures: list[Future[None]] = []
    with ThreadPoolExecutor(threads) as pool:
        for number, file in enumerate(workload.files(run_id, seed)):
            if number >= total or time.monotonic() > stop_at:
                break
            delay = start + number / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(put_one, file))
            if progress and number and number % max(1, round(rate * 10)) == 0:
                progress(f"  {number} sent")
        if stop_after is not None:
            wait(futures, timeout=max(0.0, stop_at - time.monotonic()))
            cancelled = [future for future in futures if future.cancel()]
            report.not_sent = total - len(futures) + len(cancelled)
    for future in futures:
        if not future.cancelled():
            future.result()
    report.sending_seconds = time.monotonic() - start


def minio_of(stack: StackFile) -> Minio:
    """The stack's MinIO at its direct address (whatever the chaos on its proxy), built as every
    command builds a minio client."""
    return deployment.minio_client(
        stack.minio.endpoint,
        access_key=stack.minio.access_key,
        secret_key=stack.minio.secret_key,
        secure=stack.minio.secure,
    )


class Progress:
    """`load`'s progress: files sent, forwarded (the forwarder's record of each COMPLETED, read
    only for files not yet seen forwarded) and in MinIO (from the window manifests), printed
    when a figure changed."""

    def __init__(
        self,
        report: LoadReport,
        *,
        reader: ManifestReader,
        dynamodb: Any,
        idempotency_table: str,
        out: Callable[[str], None] | None = None,
    ) -> None:
        self.report = report
        self._reader = reader
        self._dynamodb = dynamodb
        self._table = idempotency_table
        self._forwarded: set[str] = set()
        self._out = out or (lambda line: print(line, flush=True))
        self.last: tuple[int, int, int] = (0, 0, 0)
        """(sent, forwarded, in MinIO) when last polled."""
        self._shown: tuple[int, int, int] | None = None
        self._shown_at = 0.0

    @classmethod
    def of(cls, stack: StackFile, report: LoadReport) -> Progress:
        return cls(
            report,
            reader=ManifestReader(minio_of(stack), stack.minio.bucket),
            dynamodb=deployment.from_stack(stack).client("dynamodb"),
            idempotency_table=stack.idempotency_table,
        )

    @property
    def arrived(self) -> int:
        return sum(1 for file in dict(self.report.sent) if file in self.report.arrived)

    def poll(self) -> tuple[int, int, int]:
        """(sent, forwarded, in MinIO) now."""
        file_ids = dict(self.report.file_ids)  # a copy: put threads may be adding to it
        self._forwarded |= self._completed(set(file_ids.values()) - self._forwarded)
        for arrival in self._reader.new_arrivals():
            self._arrived(arrival, file_ids)
        return len(file_ids), len(self._forwarded), self.arrived

    def show(self) -> None:
        """Poll, and print a line if anything moved (or nothing did for a while)."""
        self.last = self.poll()
        now = time.monotonic()
        if self.last != self._shown or now - self._shown_at >= QUIET_SECONDS:
            sent, forwarded, arrived = self.last
            self._out(f"  {sent} sent, {forwarded} forwarded, {arrived} in MinIO")
            self._shown, self._shown_at = self.last, now

    def _arrived(self, arrival: Arrival, sent: dict[tuple[str, str], str]) -> None:
        file = (arrival.key, arrival.sha256)
        if file in sent:
            self.report.arrived[file] += 1
            self.report.windows.add(arrival.window_id)

    def _completed(self, file_ids: set[str]) -> set[str]:
        done: set[str] = set()
        pending = sorted(file_ids)
        for start in range(0, len(pending), BATCH_GET):
            request: Any = {
                self._table: {
                    "Keys": [{"id": {"S": i}} for i in pending[start : start + BATCH_GET]],
                    "ProjectionExpression": "id, #status",
                    "ExpressionAttributeNames": {"#status": "status"},
                }
            }
            while request:
                answer = self._dynamodb.batch_get_item(RequestItems=request)
                done |= {
                    item["id"]["S"]
                    for item in answer["Responses"].get(self._table, [])
                    if item.get("status", {}).get("S") == COMPLETED
                }
                request = answer.get("UnprocessedKeys") or None
        return done


def _await_arrivals(progress: Progress, wait: float) -> None:
    deadline = time.monotonic() + wait
    print(f"waiting up to {wait:.0f} s for the files in MinIO")
    while True:
        progress.show()
        sent, _, arrived = progress.last
        if arrived == sent or time.monotonic() > deadline:
            return
        time.sleep(POLL_SECONDS)


def _summarise(stack: StackFile, report: LoadReport) -> int:
    histogram = LatencyHistogram()
    ledger = Ledger(deployment.from_stack(stack).client("dynamodb"), stack.ledger_table, 1)
    for window_id in sorted(report.windows):
        record = ledger.get_window(window_id)
        if record is not None:
            histogram.add(record.latency)
    latency = " ".join(f"{name} {seconds_text(histogram.percentile(q))}" for name, q in PERCENTILES)
    kinds = Counter(report.sent.values())
    arrived = sum(1 for file in report.sent if file in report.arrived)
    print(
        f"result: {arrived}/{len(report.sent)} arrived in MinIO, byte-identical by sha256 "
        f"({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}); "
        f"missing {report.missing}, delivered twice {report.duplicated}, "
        f"failed to land {len(report.send_errors)}; {len(report.windows)} windows; "
        f"latency {latency}"
    )
    for error in report.send_errors[:10]:
        print(f"  not landed: {error}", file=sys.stderr)
    failed = report.missing or report.duplicated or report.send_errors
    return 1 if failed else 0
