"""`sluice up` and `sluice down`: the local stack in the foreground, in the background, stopped.

One stack per project root: `up` holds an exclusive lock on `.sluice/up.lock` for its whole
life (the kernel drops it if the process dies, so a crash never leaves a stale lock), and a
second `up` is refused while it is held. `down` signals the `up` process named in
`.sluice/stack.json` and waits for it to flush and exit.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, NoReturn

from infrastructure.cli import deployment, figures
from infrastructure.local.lifeline import alive, stop_process_group
from infrastructure.local.stack.local_stack import LocalStack, StackError, StackOptions
from infrastructure.local.stack.stack_file import (
    STATE_DIR,
    MinioEndpoint,
    NoStackError,
    StackFile,
    read_stack,
    stack_path,
)

LOCK_FILE: Final = "up.lock"
DETACHED_LOG: Final = "up.log"
DETACH_TIMEOUT_SECONDS: Final = 180.0
DOWN_TIMEOUT_SECONDS: Final = 240.0
"""Longer than the stack's own drain (delivery's timeout plus 30 s) and its flush."""


class Shutdown(Exception):
    """SIGTERM arrived: stop as for Ctrl-C."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="divide every wait (buffers, batching windows, retry delays, the redrive schedule) "
        "by this; function timeouts are not scaled (default 1: production's timing)",
    )
    parser.add_argument(
        "--buffer-seconds",
        type=int,
        default=None,
        help="Firehose's buffer interval before scaling (default: tunables.json's, 60 s)",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="worker processes per function (default 2)"
    )
    parser.add_argument(
        "--status-every",
        type=float,
        default=5.0,
        help="seconds between status lines (default 5; 0: none)",
    )
    parser.add_argument(
        "--detach",
        action="store_true",
        help="start in the background and return once the stack is up; `sluice down` stops it",
    )
    parser.add_argument(
        "--tunables",
        type=Path,
        metavar="FILE",
        help="another tunables.json for the stack and its functions (try a change before "
        "deploying it; its `local` profile applies)",
    )
    minio = parser.add_argument_group(
        "a real MinIO instead of SeaweedFS (all four of endpoint, keys and bucket)"
    )
    minio.add_argument("--minio-endpoint", help="host:port")
    minio.add_argument("--minio-access-key")
    minio.add_argument("--minio-secret-key")
    minio.add_argument("--minio-bucket", help="created if missing")
    minio.add_argument("--minio-secure", action="store_true", help="use HTTPS")


def _minio(args: argparse.Namespace) -> MinioEndpoint | None:
    given = [args.minio_endpoint, args.minio_access_key, args.minio_secret_key, args.minio_bucket]
    if not any(given):
        return None
    if not all(given):
        raise ValueError(
            "a real MinIO needs --minio-endpoint, --minio-access-key, --minio-secret-key "
            "and --minio-bucket"
        )
    if "://" in args.minio_endpoint:
        raise ValueError("--minio-endpoint is host:port, without a scheme (--minio-secure: https)")
    return MinioEndpoint(
        endpoint=args.minio_endpoint,
        access_key=args.minio_access_key,
        secret_key=args.minio_secret_key,
        bucket=args.minio_bucket,
        secure=args.minio_secure,
    )


def options_from(args: argparse.Namespace, root: Path) -> StackOptions:
    return StackOptions(
        root=root,
        time_scale=args.time_scale,
        buffer_seconds=args.buffer_seconds,
        minio=_minio(args),
        workers_per_function=args.workers,
        tunables_file=args.tunables,
    )


# ---------------------------------------------------------------------- up


def up(args: argparse.Namespace, root: Path) -> int:
    try:
        options = options_from(args, root)
    except ValueError as err:
        print(f"sluice up: {err}", file=sys.stderr)
        return 2
    if args.detach:
        return _detach(args, root)
    with _exclusive(root) as locked:
        if not locked:
            return _already_running(root)
        return _run(options, args.status_every)


@contextlib.contextmanager
def _exclusive(root: Path) -> Iterator[bool]:
    state = root / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    with (state / LOCK_FILE).open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


def _already_running(root: Path) -> int:
    try:
        running = read_stack(root)
        where = f"pid {running.pids['sluice']}, started {running.started_at}"
    except NoStackError:
        where = "still starting or stopping"
    print(
        f"sluice up: a local stack is already running here ({where}); `sluice down` stops it",
        file=sys.stderr,
    )
    return 1


def _run(options: StackOptions, status_every: float) -> int:
    _log_to_file(options.root)
    stack = LocalStack(options)
    previous = signal.signal(signal.SIGTERM, _raise_shutdown)
    # A shell starting `sluice up &` without job control leaves SIGINT ignored, and Python then
    # installs no KeyboardInterrupt for it: `kill -INT` must stop the stack all the same.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        try:
            stack.start(progress=_say)
        except (KeyboardInterrupt, Shutdown):
            _say("interrupted while starting; everything started is stopped")
            return 1
        except (StackError, RuntimeError, OSError) as err:
            _say(f"the local stack could not start: {err}")
            return 1
        assert stack.file is not None  # noqa: S101  # start() wrote it
        print(how_to_upload(stack.file), flush=True)
        with contextlib.suppress(KeyboardInterrupt, Shutdown):
            _watch(stack.file, status_every)
        # From here on a second Ctrl-C or SIGTERM must not cut the flush short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print(file=sys.stderr)
        left = stack.stop(progress=_say)
        if left:
            _say("stopped, but these had not finished: " + "; ".join(left))
            return 1
        _say("stopped; every process the stack started has exited")
        return 0
    finally:
        stack.stop(flush=False)
        signal.signal(signal.SIGTERM, previous)


def _raise_shutdown(_signum: int, _frame: Any) -> NoReturn:
    raise Shutdown


def _say(text: str) -> None:
    print(f"sluice: {text}", file=sys.stderr, flush=True)


def _log_to_file(root: Path) -> None:
    """The runtime's own log (warnings from event sources, Firehose, retries) goes to a file, so
    the terminal keeps the status line."""
    path = root / STATE_DIR / "sluice.log"
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)


def _how_to_post(file: StackFile) -> list[str]:
    """The HTTPS intake's lines: its URL, the demo producer's key, a curl that posts a file."""
    if file.intake_endpoint is None or file.demo_producer_key is None:
        return []
    return [
        "",
        f"Or post them to the HTTPS intake at {file.intake_endpoint} (docs/intake.md) as the "
        f"producer demo, key {file.demo_producer_key}:",
        "",
        f"  curl -X POST {file.intake_endpoint}/v1/files/hello.json -H 'Authorization: Bearer "
        f"{file.demo_producer_key}' -H 'Content-Type: application/json' -d '{{\"hello\": 1}}'",
        "  .venv/bin/sluice put --api FILE...",
    ]


def how_to_upload(file: StackFile) -> str:
    landing = file.landing_bucket
    endpoint = file.aws_endpoint
    minio = file.minio
    scheme = "https" if minio.secure else "http"
    return "\n".join(
        [
            "",
            f"Sluice is up (time scale {file.time_scale:g}). Drop files into s3://{landing}:",
            "",
            "  .venv/bin/sluice put FILE...",
            f"  AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local aws --region {file.region} "
            f"--endpoint-url {endpoint} s3 cp FILE s3://{landing}/KEY",
            f"  python -c \"import boto3; boto3.client('s3', endpoint_url='{endpoint}', "
            f"region_name='{file.region}', aws_access_key_id='local', "
            f"aws_secret_access_key='local').upload_file('FILE', '{landing}', 'KEY')\"",
            *_how_to_post(file),
            "",
            f"About {file.expected_wait_seconds:.0f} s later (Firehose's processor buffer of "
            f"{file.processor_buffer_seconds} s, then its {file.buffer_seconds} s window, both "
            f"divided by the time scale) archives arrive in MinIO at {scheme}://{minio.endpoint}, "
            f"bucket {minio.bucket} (access key {minio.access_key}, "
            f"secret key {minio.secret_key}).",
            f"Stack file {stack_path(Path('.'))}; logs in {file.logs}. "
            "Ctrl-C (or `sluice down`) flushes and stops.",
            "Gamedays: `sluice pause|resume forwarder|delivery`, `sluice chaos --help` "
            f"(control API {file.control_endpoint}).",
            "",
        ]
    )


def _watch(file: StackFile, every: float) -> None:
    """Print the status line every `every` seconds until interrupted."""
    target = deployment.from_stack(file)
    tty = sys.stdout.isatty()
    last = ""
    while True:
        if every <= 0:
            time.sleep(3600)
            continue
        time.sleep(every)
        try:
            line = figures.collect(target).line()
        except Exception as err:  # noqa: BLE001  # a status line must not stop the stack
            line = f"status unavailable: {err}"
        if tty:
            print("\r\033[K" + line, end="", flush=True)
        elif line != last:
            print(line, flush=True)
        last = line


# ---------------------------------------------------------------------- detach and down


def _detach(args: argparse.Namespace, root: Path) -> int:
    with _exclusive(root) as free:
        if not free:
            return _already_running(root)
    argv = [a for a in sys.argv[1:] if a != "--detach"]
    log_path = root / STATE_DIR / DETACHED_LOG
    with log_path.open("wb") as log:
        child = subprocess.Popen(  # noqa: S603  # our own command line, no shell
            [sys.executable, "-m", "infrastructure.cli.main", *argv, "--status-every", "0"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # not in the terminal's process group: Ctrl-C there is ours
            env={**os.environ, "SLUICE_ROOT": str(root)},
        )
    deadline = time.monotonic() + DETACH_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if child.poll() is not None:
            print(
                f"sluice up --detach: the stack did not start (exit {child.returncode}):\n"
                + _tail(log_path),
                file=sys.stderr,
            )
            return 1
        with contextlib.suppress(NoStackError):
            file = read_stack(root)
            if file.pids.get("sluice") == child.pid:
                print(how_to_upload(file).replace("Ctrl-C (or `sluice down`)", "`sluice down`"))
                print(f"Running in the background as pid {child.pid}; its output: {log_path}")
                return 0
        time.sleep(0.2)
    stop_process_group(child.pid)
    print(
        f"sluice up --detach: not up after {DETACH_TIMEOUT_SECONDS:.0f} s; stopped it",
        file=sys.stderr,
    )
    return 1


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def down(args: argparse.Namespace, root: Path) -> int:
    try:
        file = read_stack(root)
    except NoStackError:
        print("sluice down: no local stack is running here", file=sys.stderr)
        return 0
    pid = file.pids["sluice"]
    if not alive(pid):
        return _clean_up_after(file, root, "its process had already exited")
    print(f"sluice down: stopping the stack (pid {pid}): flushing Firehose, finishing deliveries")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    while alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            return _clean_up_after(file, root, f"it did not stop within {args.timeout:.0f} s")
        time.sleep(0.2)
    print("sluice down: stopped")
    return 0


def _clean_up_after(file: StackFile, root: Path, why: str) -> int:
    """The `up` process is gone without cleaning up: stop the servers it had started."""
    for name, pid in file.pids.items():
        if name != "sluice" and alive(pid):
            stop_process_group(pid)
    stack_path(root).unlink(missing_ok=True)
    print(f"sluice down: {why}; stopped what it had started", file=sys.stderr)
    return 1
