"""What runs inside a local Lambda worker process: the execution environment of one function.

`serve`, the spawn target of `WorkerPool` (workers.py), imports the handler once and serves
invocations over its pipe; it also holds the chaos hooks (a crash at the n-th SDK call, corrupted
uploads). Spec: docs/local-stack.md, `lambdas/sandbox.py`.
"""

from __future__ import annotations

import dataclasses
import fcntl
import io
import json
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Final, Literal

from infrastructure.local.lifeline import watch_parent

ACCOUNT_ID: Final = "123456789012"
FUNCTION_VERSION: Final = "$LATEST"
CRASH_EXIT_CODE: Final = 86
"""Exit status of a worker killed by a crash it was armed with, told from other deaths."""

CrashPhase = Literal["before", "after", "hang"]
"""Where an armed crash strikes at its K-th SDK call: `before` it goes out, `after` it was
answered, or `hang`: the worker stops dead before it, until the runtime kills it at the
function's timeout. K = 0 strikes as the invocation starts, before any handler code."""


@dataclass(frozen=True)
class SandboxSpec:
    """What a worker needs to become the function: plain values, pickled to the new process."""

    name: str
    handler: str
    timeout_seconds: float
    memory_mb: int
    region: str
    variables: dict[str, str]
    """The worker's whole environment (but `_X_AMZN_TRACE_ID`, set per invocation)."""
    log_path: str | None = None
    """Where the worker's stdout and stderr go (appended), as CloudWatch Logs takes a function's
    output; None: the parent's."""
    sdk_calls_path: str | None = None
    """Where to append each distinct SDK operation the function calls (JSON lines), for the
    least-privilege test; None: not recorded."""
    upload_corruption_path: str | None = None
    """The `SharedCounter` of uploads to corrupt (docs/local-stack.md); None: no hook."""


class SharedCounter:
    """A count in a file, read and changed under an exclusive fcntl lock, so that the `sluice up`
    process (which arms it) and every worker process (which spend it) agree on it."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)

    def set(self, value: int) -> None:
        if value < 0:
            raise ValueError(f"a count is at least 0, not {value}")
        self._update(lambda _current: value)

    def value(self) -> int:
        return self._update(lambda current: current)

    def take(self) -> bool:
        """Spend one, if any is left; whether one was."""
        before = self._update(lambda current: max(0, current - 1), report_before=True)
        return before > 0

    def _update(self, change: Any, *, report_before: bool = False) -> int:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            text = os.read(fd, 64).decode().strip()
            current = int(text) if text.isdigit() else 0
            new = int(change(current))
            if new != current or not text:
                os.lseek(fd, 0, os.SEEK_SET)
                os.ftruncate(fd, 0)
                os.write(fd, str(new).encode())
            return current if report_before else new
        finally:
            os.close(fd)  # releases the lock


class _FirstByteFlipped(io.RawIOBase):
    """The reader minio reads an upload from, with its first byte inverted: the sha256 Sluice
    computed while spooling no longer matches what is sent."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._flipped = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._inner.read(size)
        if data and not self._flipped:
            self._flipped = True
            return bytes([data[0] ^ 0xFF]) + data[1:]
        return data


def install_upload_corruption(module: Any, counter: SharedCounter) -> bool:
    """Give `module.dependencies()`'s result a `corrupt` hook spending `counter`; False when the
    module has no such dependencies (any function but delivery)."""
    original = getattr(module, "dependencies", None)
    if not callable(original):
        return False

    def corrupt(reader: Any) -> Any:
        return _FirstByteFlipped(reader) if counter.take() else reader

    def dependencies() -> Any:
        deps = original()
        if not dataclasses.is_dataclass(deps) or isinstance(deps, type):
            return deps
        if "corrupt" not in {f.name for f in dataclasses.fields(deps)}:
            return deps
        return dataclasses.replace(deps, corrupt=corrupt)

    module.dependencies = dependencies
    return True


class _SdkCallRecorder:
    """Appends `{"service", "operation", "version_id", "items"}` once per distinct call shape:
    whether a version was named (S3 authorises that read as another action) and, for
    TransactWriteItems, the kinds of its items (each is authorised as its own action)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._seen: set[tuple[str, str, bool, tuple[str, ...]]] = set()

    def install(self) -> None:
        from botocore import handlers  # noqa: PLC0415  # imported in the worker, after its env is set

        handlers.BUILTIN_HANDLERS.append(("before-parameter-build", self._record))

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        items = tuple(sorted({kind for item in params.get("TransactItems", []) for kind in item}))
        shape = (model.service_model.service_name, model.name, "VersionId" in params, items)
        if shape in self._seen:
            return
        self._seen.add(shape)
        service, operation, version_id = shape[:3]
        line = json.dumps(
            {"service": service, "operation": operation, "version_id": version_id, "items": items}
        )
        fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)


class _SdkCallCounter:
    """Counts botocore API calls of the current invocation; exits the process at the armed one.

    Calls can run in several threads at once (the forwarder reads objects in a pool), so the
    calls begun and the calls answered are counted apart, under a lock: `before` strikes when the
    n-th call begins, `after` when the n-th answer arrives, whichever call it belongs to. (One
    count for both missed its moment when a third call began before a second was answered.)
    """

    def __init__(self) -> None:
        self.calls = 0
        self.answered = 0
        self.crash_at: int | None = None
        self.phase: CrashPhase = "before"
        self._lock = threading.Lock()

    def install(self) -> None:
        """Register on every botocore session created from now on (boto3's default one and
        those Powertools creates): botocore registers its `BUILTIN_HANDLERS` on each new session."""
        from botocore import handlers  # noqa: PLC0415  # imported in the worker, after its env is set

        handlers.BUILTIN_HANDLERS.append(("before-call", self._before_call))
        handlers.BUILTIN_HANDLERS.append(("after-call", self._after_call))

    def arm(self, crash: tuple[int, CrashPhase] | None) -> None:
        with self._lock:
            self.calls = self.answered = 0
            self.crash_at, self.phase = crash if crash else (None, "before")
        if self.crash_at == 0:
            self._strike()

    def _strike(self) -> None:
        if self.phase == "hang":
            while True:  # the runtime kills the worker at the invocation's deadline
                time.sleep(3600)
        os._exit(CRASH_EXIT_CODE)

    def _before_call(self, **_: Any) -> None:
        with self._lock:
            self.calls += 1
            strike = self.phase in ("before", "hang") and self.calls == self.crash_at
        if strike:
            self._strike()

    def _after_call(self, **_: Any) -> None:
        with self._lock:
            self.answered += 1
            strike = self.phase == "after" and self.answered == self.crash_at
        if strike:
            os._exit(CRASH_EXIT_CODE)


def _error_payload(exc: BaseException, request_id: str | None) -> dict[str, Any]:
    """What Lambda's Python runtime returns for an exception raised by the handler."""
    payload: dict[str, Any] = {"errorMessage": str(exc), "errorType": type(exc).__name__}
    if request_id is not None:
        payload["requestId"] = request_id
    payload["stackTrace"] = traceback.format_list(traceback.extract_tb(exc.__traceback__))
    return payload


def _load_handler(handler: str) -> tuple[Callable[[Any, Any], Any] | None, dict[str, Any] | None]:
    import importlib  # noqa: PLC0415  # worker side only

    module_name, _, attribute = handler.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001  # any import failure is the function's init error
        message = f"Unable to import module '{module_name}': {exc}"
        return None, {"errorMessage": message, "errorType": "Runtime.ImportModuleError"}
    function = getattr(module, attribute, None)
    if not callable(function):
        message = f"Handler '{attribute}' missing on module '{module_name}'"
        return None, {"errorMessage": message, "errorType": "Runtime.HandlerNotFound"}
    return function, None


def _trace_header() -> str:
    """A new `_X_AMZN_TRACE_ID`, not sampled: nothing is sent to X-Ray (there is none here)."""
    epoch = f"{int(time.time()):08x}"
    return f"Root=1-{epoch}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};Sampled=0"


def _redirect_output(path: str) -> None:
    """Point file descriptors 1 and 2 at `path`, so that everything the handler, its libraries
    and the import print lands there, line by line."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(line_buffering=True)


def serve(conn: Connection, spec: SandboxSpec) -> None:
    """Entry point of a worker process (spawned): become the function's environment, import its
    handler (the cold start), then serve invocations until the pipe closes or `None` arrives."""
    from infrastructure.local.lambdas.context import LocalLambdaContext  # noqa: PLC0415  # light

    watch_parent()  # a stack killed outright closes no pipe this worker would notice mid-call
    if spec.log_path is not None:
        _redirect_output(spec.log_path)
    os.environ.clear()
    os.environ.update(spec.variables)
    counter = _SdkCallCounter()
    counter.install()
    if spec.sdk_calls_path is not None:
        _SdkCallRecorder(spec.sdk_calls_path).install()
    handler, init_error = _load_handler(spec.handler)
    if handler is None:
        conn.send(("init_error", init_error))
        return
    if spec.upload_corruption_path is not None:
        module = sys.modules[spec.handler.rpartition(".")[0]]
        install_upload_corruption(module, SharedCounter(spec.upload_corruption_path))
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        request_id, event_json, deadline, crash = message
        os.environ["_X_AMZN_TRACE_ID"] = _trace_header()
        context = LocalLambdaContext(
            function_name=spec.name,
            timeout_seconds=spec.timeout_seconds,
            memory_limit_in_mb=spec.memory_mb,
            function_version=FUNCTION_VERSION,
            region=spec.region,
            account_id=ACCOUNT_ID,
            aws_request_id=request_id,
            log_group_name=spec.variables.get("AWS_LAMBDA_LOG_GROUP_NAME", ""),
            log_stream_name=spec.variables.get("AWS_LAMBDA_LOG_STREAM_NAME", ""),
            _started=deadline - spec.timeout_seconds,  # time.monotonic is system-wide
        )
        counter.arm(crash)
        try:
            result = handler(json.loads(event_json), context)
        except Exception as exc:  # noqa: BLE001  # the handler's error is the invocation's result
            conn.send(("error", _error_payload(exc, request_id)))
            continue
        finally:
            counter.arm(None)
        try:
            answer = json.dumps(result)
        except (TypeError, ValueError) as exc:
            marshal_error = {
                "errorMessage": f"Unable to marshal response: {exc}",
                "errorType": "Runtime.MarshalError",
                "requestId": request_id,
            }
            conn.send(("error", marshal_error))
        else:
            conn.send(("ok", answer))
