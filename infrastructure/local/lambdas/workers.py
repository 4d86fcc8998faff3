"""Lambda's execution environments, locally: pools of worker processes, one invocation at a time.

Each worker is spawned (a cold start) with exactly the function's environment; the parent enforces
timeouts by killing it. Spec: docs/local-stack.md, `lambdas/workers.py`.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Final

from infrastructure import environment
from infrastructure.local.lambdas.sandbox import (
    CRASH_EXIT_CODE,
    FUNCTION_VERSION,
    CrashPhase,
    SandboxSpec,
    serve,
)
from infrastructure.tunables import FunctionSpec, Tunables

log = logging.getLogger(__name__)

LOCAL_PROFILE: Final = "local"

INIT_TIMEOUT_SECONDS: Final = 60.0
"""How long a new worker may take to start and import its handler. Lambda allows 10 s; a spawned
interpreter importing boto3 and Powertools on a loaded laptop can take longer, and this is no
AWS invariant the functions rely on."""

STOP_JOIN_SECONDS: Final = 5.0

LOCAL_CREDENTIALS: Final = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_SESSION_TOKEN": "local",
}
"""The execution role's credentials, as Lambda sets them: fixed fakes here (moto accepts any)."""

RESERVED_VARIABLES: Final = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_DEFAULT_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_LAMBDA_RUNTIME_API",
        "AWS_REGION",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "LAMBDA_RUNTIME_DIR",
        "LAMBDA_TASK_ROOT",
    }
)
"""Names Lambda defines itself and refuses in a function's configuration ("Defined runtime
environment variables", https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html)."""


class FunctionError(Exception):
    """An invocation failed: the handler raised, timed out, or its process died.

    `payload` is what Lambda returns as the response payload (`errorMessage`, `errorType`, and
    for a handler exception `requestId` and `stackTrace`).
    """

    def __init__(self, error_type: str, message: str, payload: dict[str, Any] | None = None):
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message
        self.payload: dict[str, Any] = payload or {"errorMessage": message, "errorType": error_type}


class RuntimeStoppedError(Exception):
    """The runtime was stopped while this invocation waited or ran."""


@dataclass(frozen=True)
class FunctionConfig:
    """One function as Lambda runs it: handler, limits and its whole configured environment."""

    name: str
    handler: str
    timeout_seconds: float
    memory_mb: int
    environment: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        module, _, attribute = self.handler.rpartition(".")
        if not module or not attribute:
            raise ValueError(f"function {self.name}: handler {self.handler!r} is not module.name")
        if self.timeout_seconds <= 0:
            raise ValueError(f"function {self.name}: timeout must be positive")
        reserved = sorted(RESERVED_VARIABLES & set(self.environment))
        if reserved:
            raise ValueError(
                f"function {self.name}: {reserved} are reserved by Lambda and cannot be configured"
            )

    @classmethod
    def from_spec(
        cls,
        name: str,
        spec: FunctionSpec,
        *,
        resources: Mapping[str, str],
        endpoints: Mapping[str, str],
        profile: str = LOCAL_PROFILE,
    ) -> FunctionConfig:
        """The function as `tunables.json` (and so Terraform) configures it, bound locally.

        Its environment is `spec.environment`, the resource variables it lists in
        `resource_environment` (taken from `resources`; one missing is an error, others are left
        out, as Terraform binds only those), `SLUICE_PROFILE`, and boto3's endpoint variables
        (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`) pointing at the local stand-ins.
        """
        missing = [variable for variable in spec.resource_environment if variable not in resources]
        if missing:
            raise ValueError(f"function {name}: no local binding for {missing}")
        not_endpoints = [
            variable for variable in endpoints if not variable.startswith("AWS_ENDPOINT_URL")
        ]
        if not_endpoints:
            raise ValueError(
                f"endpoints must be AWS_ENDPOINT_URL[_<SERVICE>] variables: {not_endpoints}"
            )
        variables = dict(spec.environment)
        variables.update({variable: resources[variable] for variable in spec.resource_environment})
        variables[environment.PROFILE] = profile
        variables.update(endpoints)
        return cls(
            name=name,
            handler=spec.handler,
            timeout_seconds=spec.timeout_seconds,
            memory_mb=spec.memory_mb,
            environment=variables,
        )


def function_configs(
    tunables: Tunables, *, resources: Mapping[str, str], endpoints: Mapping[str, str]
) -> list[FunctionConfig]:
    """Every function of the tunables, configured for the local stack (see `from_spec`)."""
    return [
        FunctionConfig.from_spec(
            name, spec, resources=resources, endpoints=endpoints, profile=tunables.profile
        )
        for name, spec in tunables.functions.items()
    ]


def runtime_variables(config: FunctionConfig, region: str) -> dict[str, str]:
    """The variables Lambda sets in every execution environment of `config` (besides
    `_X_AMZN_TRACE_ID`, set per invocation). PATH and LANG as Lambda sets them, PATH from here."""
    return {
        "_HANDLER": config.handler,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_python{sys.version_info.major}.{sys.version_info.minor}",
        "AWS_LAMBDA_FUNCTION_NAME": config.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": FUNCTION_VERSION,
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{config.name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "local",
        "LAMBDA_TASK_ROOT": str(Path.cwd()),
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        **LOCAL_CREDENTIALS,
    }


def worker_environment(config: FunctionConfig, region: str) -> dict[str, str]:
    """A worker's whole environment, apart from the per-invocation `_X_AMZN_TRACE_ID`."""
    return {**runtime_variables(config, region), **config.environment}


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    generation: int = 0
    """The pool's generation it was started in (`WorkerPool.recycle`)."""
    _kill_lock: threading.Lock = field(default_factory=threading.Lock)
    _killed: bool = False

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def kill(self) -> None:
        """Idempotent and thread-safe: `stop()` and the invoking thread may both get here, and a
        pipe closed twice at once fails with EBADF."""
        with self._kill_lock:
            if self._killed:
                return
            self._killed = True
        if self.process.is_alive():
            self.process.kill()
        self.process.join(STOP_JOIN_SECONDS)
        self.conn.close()


@dataclass
class PoolStats:
    cold_starts: int = 0
    invocations: int = 0
    errors: int = 0
    timeouts: int = 0
    crashes: int = 0


@dataclass
class _Crash:
    calls: int
    phase: CrashPhase
    times: int
    """Crashes still to cause."""
    armed: int = 0
    """Invocations in flight that carry this crash: at most `times`, so that concurrent
    invocations never crash more workers than asked."""


class WorkerPool:
    """The execution environments of one function: at most `size` workers, each one invocation
    at a time. An invocation waits for a free worker (rather than being throttled)."""

    def __init__(
        self,
        config: FunctionConfig,
        *,
        size: int,
        region: str,
        log_dir: Path | None = None,
        sdk_calls_dir: Path | None = None,
        upload_corruption_path: Path | None = None,
    ) -> None:
        """`log_dir`: where each worker appends its output, to `<function>.log`; None: inherited.
        `sdk_calls_dir`: where the SDK operations it calls are recorded, `<function>.sdk.jsonl`.
        `upload_corruption_path`: the shared count of uploads to corrupt (sandbox.py)."""
        if size < 1:
            raise ValueError("a function needs at least one worker")
        self.config = config
        self.region = region
        self.stats = PoolStats()
        self._spec = SandboxSpec(
            name=config.name,
            handler=config.handler,
            timeout_seconds=config.timeout_seconds,
            memory_mb=config.memory_mb,
            region=region,
            variables=worker_environment(config, region),
            log_path=None if log_dir is None else str(log_dir / f"{config.name}.log"),
            sdk_calls_path=(
                None if sdk_calls_dir is None else str(sdk_calls_dir / f"{config.name}.sdk.jsonl")
            ),
            upload_corruption_path=(
                None if upload_corruption_path is None else str(upload_corruption_path)
            ),
        )
        self._context = multiprocessing.get_context("spawn")
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._workers: list[_Worker] = []
        self._crash: _Crash | None = None
        self._stopped = False
        self._generation = 0

    # ---------------------------------------------------------------- public

    def invoke(self, event_json: str, request_id: str) -> Any:
        """Run one invocation; its JSON result, or raise FunctionError / RuntimeStoppedError."""
        self._acquire_slot()
        try:
            worker = self._take_idle() or self._start_worker(request_id)
            return self._run(worker, event_json, request_id)
        finally:
            self._slots.release()

    def crash_after_calls(
        self, calls: int, *, phase: CrashPhase = "before", times: int = 1
    ) -> None:
        if calls < 0 or times < 1:
            raise ValueError("calls must be at least 0 and times at least 1")
        with self._lock:
            self._crash = _Crash(calls, phase, times)

    def armed_crash(self) -> tuple[int, CrashPhase, int] | None:
        """(calls, phase, crashes still to cause) of the armed crash, if any."""
        with self._lock:
            crash = self._crash
            return None if crash is None else (crash.calls, crash.phase, crash.times)

    def clear_crash(self) -> None:
        """Disarm: invocations already carrying the crash still crash."""
        with self._lock:
            self._crash = None

    def pids(self) -> list[int]:
        with self._lock:
            return [w.pid for w in self._workers if w.pid is not None and w.process.is_alive()]

    def recycle(self) -> None:
        """New execution environments from now on, as a deploy gives: idle workers stop at once,
        busy ones when their invocation ends; the next invocations start cold (and so read
        their code, schemas and configuration again)."""
        with self._lock:
            self._generation += 1
            idle, self._idle = self._idle, []
        for worker in idle:
            self._discard(worker)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            workers, self._workers, self._idle = self._workers, [], []
        for worker in workers:
            worker.kill()

    # ---------------------------------------------------------------- internals

    def _acquire_slot(self) -> None:
        while not self._slots.acquire(timeout=0.1):
            if self._stopped:
                raise RuntimeStoppedError(self.config.name)
        if self._stopped:
            self._slots.release()
            raise RuntimeStoppedError(self.config.name)

    def _take_idle(self) -> _Worker | None:
        with self._lock:
            return self._idle.pop() if self._idle else None

    def _discard(self, worker: _Worker) -> None:
        worker.kill()
        with self._lock:
            if worker in self._workers:
                self._workers.remove(worker)

    def _start_worker(self, request_id: str) -> _Worker:
        parent_end, child_end = self._context.Pipe()
        process = self._context.Process(
            target=serve,
            args=(child_end, self._spec),
            name=f"lambda-{self.config.name}",
            daemon=True,  # killed by multiprocessing at exit should stop() be forgotten
        )
        worker = _Worker(process, parent_end, generation=self._generation)
        with self._lock:
            if self._stopped:
                raise RuntimeStoppedError(self.config.name)
            self._workers.append(worker)
            process.start()
            self.stats.cold_starts += 1
        child_end.close()  # so that the worker's death reads as EOF here
        try:
            kind: str = "init_timeout"
            detail: Any = None
            if parent_end.poll(INIT_TIMEOUT_SECONDS):
                kind, detail = parent_end.recv()
        except (EOFError, OSError):
            self._discard(worker)
            if self._stopped:
                raise RuntimeStoppedError(self.config.name) from None
            raise self._exit_error(worker, request_id) from None
        if kind == "init_timeout":
            self._discard(worker)
            message = f"RequestId: {request_id} Error: init did not end in {INIT_TIMEOUT_SECONDS} s"
            raise FunctionError("Runtime.InitError", message)
        if kind != "ready":
            self._discard(worker)
            raise FunctionError(detail["errorType"], detail["errorMessage"], detail)
        return worker

    def _arm_crash(self) -> tuple[_Crash, tuple[int, CrashPhase]] | None:
        with self._lock:
            crash = self._crash
            if crash is None or crash.armed >= crash.times:
                return None
            crash.armed += 1
            return crash, (crash.calls, crash.phase)

    def _settle_crash(
        self, armed: tuple[_Crash, tuple[int, CrashPhase]] | None, *, crashed: bool
    ) -> None:
        with self._lock:
            if crashed:
                self.stats.crashes += 1
            if armed is None:
                return
            crash = armed[0]
            crash.armed -= 1
            if crashed:
                crash.times -= 1
                if crash.times == 0 and self._crash is crash:
                    self._crash = None

    def _run(self, worker: _Worker, event_json: str, request_id: str) -> Any:
        started = time.monotonic()
        deadline = started + self.config.timeout_seconds
        armed = self._arm_crash()
        self._count("invocations")
        try:
            worker.conn.send((request_id, event_json, deadline, armed[1] if armed else None))
            kind: str = "timeout"
            detail: Any = None
            if worker.conn.poll(max(0.0, deadline - time.monotonic())):
                kind, detail = worker.conn.recv()
        except (EOFError, OSError):
            self._discard(worker)
            crashed = armed is not None and worker.process.exitcode == CRASH_EXIT_CODE
            self._settle_crash(armed, crashed=crashed)
            if self._stopped:
                raise RuntimeStoppedError(self.config.name) from None
            self._count("errors")
            raise self._exit_error(worker, request_id) from None
        hung = kind == "timeout" and armed is not None and armed[1][1] == "hang"
        self._settle_crash(armed, crashed=hung)
        if kind == "timeout":
            self._discard(worker)
            if self._stopped:
                raise RuntimeStoppedError(self.config.name)
            self._count("timeouts", "errors")
            elapsed = time.monotonic() - started
            message = f"RequestId: {request_id} Error: Task timed out after {elapsed:.2f} seconds"
            raise FunctionError("Sandbox.Timedout", message)
        with self._lock:
            retired = self._stopped or worker.generation != self._generation
            if not retired:
                self._idle.append(worker)
        if retired:
            self._discard(worker)
        if kind == "ok":
            return json.loads(detail)
        self._count("errors")
        raise FunctionError(detail["errorType"], detail["errorMessage"], detail)

    def _count(self, *names: str) -> None:
        with self._lock:
            for name in names:
                setattr(self.stats, name, getattr(self.stats, name) + 1)

    def _exit_error(self, worker: _Worker, request_id: str) -> FunctionError:
        code = worker.process.exitcode
        status = f"signal: {-code}" if code is not None and code < 0 else f"exit status {code}"
        if code == -9:
            status = "signal: killed"
        message = f"RequestId: {request_id} Error: Runtime exited with error: {status}"
        return FunctionError("Runtime.ExitError", message)
