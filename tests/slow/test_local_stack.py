"""The local stack end to end (DESIGN §6, `make run`): files in the landing bucket come out of
MinIO exactly once, byte for byte; starting and stopping leaves no process and no port.

The clock is compressed (`time_scale`): Firehose's 60 s buffer is written after 3 s. Latency
percentiles are printed (run with `-s` to see them), never asserted.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest

from infrastructure.cli import deployment, figures, workload
from infrastructure.cli.arrivals import ManifestReader
from infrastructure.local.provision.seaweedfs import start_seaweedfs
from infrastructure.local.stack.local_stack import LocalStack, StackOptions
from infrastructure.local.stack.stack_file import MinioEndpoint, StackFile, read_stack, stack_path
from tests.integration.runtime_support import wait_until as waiting
from tests.slow.least_privilege import OPERATIONS_FILE, call_shape, recorded_operations
from tests.support import archives

pytestmark = pytest.mark.slow

T = TypeVar("T")
TIME_SCALE = 20.0
AWKWARD_KEYS = {
    "acme/2026/11/25/daily report.json": b'{"report": "daily", "rows": 3}',
    "acme/prices+fx 100%.csv": b"currency,rate\nEUR,1.17\n",
    "globex/ünïcødé/日本語.txt": "こんにちは, Sluice".encode(),
    "initech/a/b/c/d/e/deep #1.bin": bytes(range(256)) * 3,
    "umbrella/empty.txt": b"",
}


def wait_until(condition: Callable[[], T], *, what: str) -> T:
    return waiting(condition, what=what, timeout=240, every=0.5)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def descendants(pid: int) -> set[int]:
    """Every process below `pid`, by walking /proc's parent links; but multiprocessing's
    resource tracker, which belongs to the interpreter (it lives as long as pytest does)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rpartition(")")[2].split()[1]
                )
            except (OSError, IndexError, ValueError):
                continue
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return {p for p in found if b"resource_tracker" not in _cmdline(p)}


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def listening(endpoint: str) -> bool:
    parts = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((parts.hostname or "127.0.0.1", parts.port or 80)) == 0


def endpoints(file: StackFile) -> list[str]:
    return [file.aws_endpoint, file.firehose_endpoint, file.lambda_endpoint, file.minio.endpoint]


def delivered_files(file: StackFile) -> list[tuple[str, bytes, dict[str, Any]]]:
    """(key, bytes, manifest entry) of every file in every archive in MinIO, each archive read
    whole and its members checked against its manifest's sha256."""
    found = []
    for manifest, members, _ in archives(file.minio.client(), file.minio.bucket).values():
        for entry in manifest["files"]:
            body = members[entry["member_name"]]
            assert hashlib.sha256(body).hexdigest() == entry["sha256"], entry
            found.append((entry["key"], body, entry))
    return found


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LocalStack]:
    options = StackOptions(root=tmp_path, time_scale=TIME_SCALE, sdk_calls_dir=tmp_path)
    started = LocalStack(options).start()
    try:
        yield started
    finally:
        started.stop(flush=False)


def test_files_come_out_of_minio_exactly_once_byte_for_byte(stack: LocalStack) -> None:
    # GIVEN the running stack and a few hundred files of every kind, with awkward keys
    file = stack.file
    assert file is not None
    sent = dict(AWKWARD_KEYS)
    for item in itertools.islice(workload.files("e2e", seed=4), 300):
        sent[item.key] = item.body
    target = deployment.from_stack(file)
    s3 = target.client("s3")
    # WHEN they land in the landing bucket, as producers put them
    started = time.monotonic()
    for key, body in sent.items():
        s3.put_object(Bucket=file.landing_bucket, Key=key, Body=body)
    # THEN every one of them arrives in MinIO
    reader = ManifestReader(file.minio.client(), file.minio.bucket)
    arrived: set[str] = set()

    def all_arrived() -> bool:
        arrived.update(arrival.key for arrival in reader.new_arrivals())
        return arrived >= set(sent)

    wait_until(all_arrived, what=f"{len(sent)} files in MinIO")
    took = time.monotonic() - started
    delivered = delivered_files(file)
    # ... exactly once, byte for byte, and nothing else
    assert Counter(key for key, _, _ in delivered) == Counter(list(sent))
    assert {key: body for key, body, _ in delivered} == sent
    # ... with its landing version recorded
    versions = {
        v["Key"]: v["VersionId"]
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=file.landing_bucket)
        for v in page.get("Versions", [])
    }
    assert {key: entry["version_id"] for key, _, entry in delivered} == versions
    found = figures.collect(target)
    assert found.files_delivered == len(sent)
    assert found.ingest_dlq_depth == found.delivery_dlq_depth == 0
    print(f"\n{len(sent)} files put and delivered in {took:.0f} s at time scale {TIME_SCALE:g}")
    print(found.line())
    # ... and every SDK call a function made is one least_privilege.py checks its policy for
    listed = json.loads(OPERATIONS_FILE.read_text())
    for function, calls in recorded_operations(stack.options.root).items():
        known = {json.dumps(call_shape(c)) for c in listed[function]}
        unlisted = [c for c in calls if json.dumps(call_shape(c)) not in known]
        assert unlisted == [], f"{function} calls what {OPERATIONS_FILE.name} does not list"


def test_stopping_flushes_the_buffers_and_leaves_no_process_or_port(tmp_path: Path) -> None:
    # GIVEN a stack delivering to a MinIO of our own (SeaweedFS started here, so it outlives the
    # stack), with production's 60 s buffer: nothing would be written for a minute
    minio = start_seaweedfs(tmp_path / "minio", tls=False)
    try:
        target = MinioEndpoint(
            minio.endpoint, minio.access_key, minio.secret_key, "archive", secure=False
        )
        before = descendants(os.getpid())  # this worker's own: other tests' servers, say
        stack = LocalStack(StackOptions(root=tmp_path / "root", minio=target)).start()
        try:
            file = stack.file
            assert file is not None
            assert stack.runtime is not None
            assert stack_path(tmp_path / "root").is_file()
            assert "seaweedfs" not in file.pids
            target = deployment.from_stack(file)
            target.client("s3").put_object(
                Bucket=file.landing_bucket, Key="late/file.txt", Body=b"late"
            )
            wait_until(
                lambda: figures.collect(target).files_forwarded,
                what="the file to be forwarded",
            )
            assert delivered_files(file) == []
            workers = stack.runtime.worker_pids()
            children = descendants(os.getpid()) - before
        finally:
            # WHEN it stops
            left = stack.stop()
        # THEN the buffered file was written and delivered before the stack stopped
        assert left == []
        assert [(k, b) for k, b, _ in delivered_files(file)] == [("late/file.txt", b"late")]
    finally:
        minio.stop()
    # ... and no process it started, nor any port it opened, is left, nor its stack file
    assert not stack_path(tmp_path / "root").exists()
    pids = [*file.pids.values(), *workers]
    assert [pid for pid in pids if pid != os.getpid() and alive(pid)] == []
    assert [pid for pid in children if alive(pid)] == []
    assert [e for e in endpoints(file) if listening(e)] == []


# ---------------------------------------------------------------------- the command


def sluice(root: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603  # our own command
        [str(Path(sys.executable).with_name("sluice")), *args],
        env={**os.environ, "SLUICE_ROOT": str(root)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_up_detach_put_smoke_down_and_a_second_up_is_refused(tmp_path: Path) -> None:
    # GIVEN a stack started in the background
    started = sluice(tmp_path, "up", "--detach", "--time-scale", str(TIME_SCALE))
    assert started.returncode == 0, started.stderr + started.stdout
    assert "sluice put FILE" in started.stdout
    file = read_stack(tmp_path)
    up_pid = file.pids["sluice"]
    try:
        # WHEN another `sluice up` is tried, it says so and fails
        second = sluice(tmp_path, "up")
        assert second.returncode == 1
        assert "already running" in second.stderr
        # ... and a file put the way the stack printed arrives in MinIO
        upload = tmp_path / "hello world.json"
        upload.write_bytes(b'{"hello": "world"}')
        put = sluice(tmp_path, "put", str(upload), "--prefix", "acme/")
        assert put.returncode == 0, put.stderr
        wait_until(
            lambda: [b for k, b, _ in delivered_files(file) if k == "acme/hello world.json"],
            what="the file in MinIO",
        )
        # ... and the smoke test (the seeds' validation) passes against it
        checked = sluice(tmp_path, "smoke", "--local", "--timeout", "120")
        assert checked.returncode == 0, checked.stderr + checked.stdout
        assert "smoke passed" in checked.stdout
        # ... and `sluice status` sees the deliveries and nothing wrong
        shown = sluice(tmp_path, "status", "--json")
        assert shown.returncode == 0, shown.stderr + shown.stdout
        state = json.loads(shown.stdout)
        assert state["healthy"]
        assert state["windows_delivered"] >= 2
        assert state["latency_ms"]["p50"] is not None
        processes = descendants(up_pid) | {up_pid, *file.pids.values()}
    finally:
        stopped = sluice(tmp_path, "down")
    # THEN `down` stops it cleanly, leaving no process, port or stack file
    assert stopped.returncode == 0, stopped.stderr
    assert [pid for pid in processes if alive(pid)] == []
    assert [e for e in endpoints(file) if listening(e)] == []
    assert not stack_path(tmp_path).exists()


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("inherited", ["default", "ignored"])
def test_foreground_up_stops_cleanly_on_ctrl_c(tmp_path: Path, inherited: str) -> None:
    """Also when started with SIGINT ignored, as a shell without job control starts `cmd &`."""
    # GIVEN `sluice up` in the foreground
    process = subprocess.Popen(  # noqa: S603  # our own command
        [str(Path(sys.executable).with_name("sluice")), "up", "--time-scale", str(TIME_SCALE)],
        env={**os.environ, "SLUICE_ROOT": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_ignore_sigint if inherited == "ignored" else None,  # noqa: PLW1509  # no threads start before exec
    )
    try:
        wait_until(lambda: stack_path(tmp_path).exists(), what="the stack file")
        file = read_stack(tmp_path)
        processes = descendants(process.pid) | set(file.pids.values())
        # WHEN the user presses Ctrl-C
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:  # it did not stop: stop it as `sluice down` would, and fail
            sluice(tmp_path, "down", "--timeout", "60")
            process.kill()
            process.wait()
    # THEN it flushes, stops everything and exits 0
    assert process.returncode == 0, output
    assert "flushing the Firehose buffers" in output
    assert [pid for pid in processes if alive(pid)] == []
    assert [e for e in endpoints(file) if listening(e)] == []
    assert not stack_path(tmp_path).exists()


def test_commands_that_need_a_stack_say_how_to_start_one(tmp_path: Path) -> None:
    commands = (["put", __file__], ["load", "--seconds", "1"], ["smoke"], ["status", "--json"])
    for command in commands:
        result = sluice(tmp_path, *command)
        assert result.returncode == 1, command
        assert "no local stack is running" in result.stderr
        assert "make run" in result.stderr
    assert sluice(tmp_path, "down").returncode == 0
