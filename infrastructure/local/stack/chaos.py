"""Chaos for gamedays on the local stack, and the control API `sluice chaos` uses.

`ChaosState` arms MinIO down or read-only, throttling, duplicate events, crashes and corrupted
uploads on what `sluice up` runs; `ControlServer` serves it on loopback. Spec: docs/local-stack.md,
`stack/chaos.py`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from email.message import Message
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, get_args

from infrastructure.local.lambdas.sandbox import CrashPhase, SharedCounter
from infrastructure.local.loopback import LoopbackServer, Reply

if TYPE_CHECKING:
    from infrastructure.local.firehose.server import FirehoseServer
    from infrastructure.local.lambdas.runtime import LambdaRuntime
    from infrastructure.local.provision.tcp_proxy import TcpProxy

log = logging.getLogger(__name__)

CHAOS_FUNCTIONS: Final = ("forwarder", "processor", "delivery")
"""Functions `crash` may be armed on (the CLI's choices; others could be, but are not asked)."""
PHASES: Final = get_args(CrashPhase)
MAX_SECONDS: Final = 24 * 3600.0
METHODS: Final = frozenset({"GET", "POST"})


class ChaosError(ValueError):
    """A chaos request was refused; the message says why."""


class TimedSwitch:
    """On until a wall-clock deadline (monotonic), then off by itself."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until = 0.0

    def on_for(self, seconds: float) -> None:
        with self._lock:
            self._until = time.monotonic() + seconds

    def off(self) -> None:
        with self._lock:
            self._until = 0.0

    def seconds_left(self) -> float:
        with self._lock:
            return max(0.0, self._until - time.monotonic())

    def __call__(self) -> bool:
        return self.seconds_left() > 0


def _seconds(value: Any, what: str = "seconds") -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ChaosError(f"{what} must be a number, not {value!r}")
    if not 0 < value <= MAX_SECONDS:
        raise ChaosError(f"{what} must be within (0, {MAX_SECONDS:.0f}], not {value!r}")
    return float(value)


def _count(value: Any, what: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ChaosError(f"{what} must be an integer of at least {minimum}, not {value!r}")
    return value


class SecretSwap:
    """A secret's value replaced by another until a wall-clock deadline, then put back."""

    def __init__(self, secrets: Any, secret_id: str, replacement: dict[str, Any]) -> None:
        self._secrets = secrets
        self._secret_id = secret_id
        self._replacement = json.dumps(replacement)
        self._lock = threading.Lock()
        self._original: str | None = None
        self._timer: threading.Timer | None = None
        self._until = 0.0

    def on_for(self, seconds: float) -> None:
        with self._lock:
            if self._original is None:
                self._original = self._secrets.get_secret_value(SecretId=self._secret_id)[
                    "SecretString"
                ]
                self._secrets.put_secret_value(
                    SecretId=self._secret_id, SecretString=self._replacement
                )
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(seconds, self.restore)
            self._timer.daemon = True
            self._timer.start()
            self._until = time.monotonic() + seconds

    def restore(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._original is not None:
                self._secrets.put_secret_value(
                    SecretId=self._secret_id, SecretString=self._original
                )
                self._original = None
            self._until = 0.0

    def seconds_left(self) -> float:
        return max(0.0, self._until - time.monotonic()) if self._original is not None else 0.0


class ChaosState:
    """The stack's chaos switches (docs/local-stack.md)."""

    def __init__(
        self,
        *,
        runtime: LambdaRuntime,
        firehose: FirehoseServer,
        minio_proxy: TcpProxy | None,
        counter_path: Path,
        minio_read_only: SecretSwap | None = None,
    ) -> None:
        """`minio_proxy` None: MinIO is reached directly (a real MinIO over TLS), and
        `minio_down` is refused. `minio_read_only` None: no read-only identity (a MinIO not
        started by the stack), and `minio_read_only` is refused."""
        self._runtime = runtime
        self._firehose = firehose
        self._proxy = minio_proxy
        self._read_only = minio_read_only
        self.corruptions = SharedCounter(counter_path)
        self.corruptions.set(0)
        self.duplicating = TimedSwitch()

    def minio_down(self, seconds: Any) -> None:
        if self._proxy is None:
            raise ChaosError(
                "minio-down needs the TCP proxy in front of MinIO, and this stack delivers to a "
                "MinIO over TLS directly (the proxy would break its certificate's host name)"
            )
        self._proxy.cut_for(_seconds(seconds))

    def minio_read_only(self, seconds: Any) -> None:
        if self._read_only is None:
            raise ChaosError(
                "minio-read-only needs the read-only identity of the SeaweedFS the stack "
                "started; this stack delivers to a MinIO it was given"
            )
        self._read_only.on_for(_seconds(seconds))

    def throttle(self, percent: Any, seconds: Any) -> None:
        if isinstance(percent, bool) or not isinstance(percent, int | float):
            raise ChaosError(f"percent must be a number, not {percent!r}")
        if not 0 < percent <= 100:
            raise ChaosError(f"percent must be within (0, 100], not {percent!r}")
        self._firehose.throttle_for(float(percent), _seconds(seconds))

    def duplicate_events(self, seconds: Any) -> None:
        self.duplicating.on_for(_seconds(seconds))

    def crash(
        self, function: Any, after_calls: Any = 1, phase: Any = "after", times: Any = 1
    ) -> None:
        if function not in self._functions():
            known = ", ".join(self._functions())
            raise ChaosError(f"function must be one of {known}, not {function!r}")
        if phase not in PHASES:
            raise ChaosError(f"phase must be one of {', '.join(PHASES)}, not {phase!r}")
        self._runtime.crash_after_calls(
            function,
            _count(after_calls, "after_calls", minimum=0),
            phase=phase,
            times=_count(times, "times"),
        )

    def corrupt_uploads(self, count: Any) -> None:
        self.corruptions.set(_count(count, "count"))

    def clear(self) -> None:
        if self._proxy is not None:
            self._proxy.restore()
        if self._read_only is not None:
            self._read_only.restore()
        self._firehose.throttle_for(0.0, 0.0)
        self.duplicating.off()
        for function in self._functions():
            self._runtime.clear_crash(function)
        self.corruptions.set(0)

    def status(self) -> dict[str, Any]:
        percent, throttle_left = self._firehose.throttle_state()
        crashes = {}
        for function in self._functions():
            armed = self._runtime.armed_crash(function)
            if armed is not None:
                calls, phase, times = armed
                crashes[function] = {"after_calls": calls, "phase": phase, "times": times}
        minio_left = 0.0 if self._proxy is None else self._proxy.cut_seconds_left()
        read_only_left = 0.0 if self._read_only is None else self._read_only.seconds_left()
        return {
            "minio_down": {"armed": minio_left > 0, "seconds_left": round(minio_left, 1)},
            "minio_read_only": {
                "armed": read_only_left > 0,
                "seconds_left": round(read_only_left, 1),
            },
            "throttle": {
                "armed": throttle_left > 0,
                "percent": percent if throttle_left > 0 else 0.0,
                "seconds_left": round(throttle_left, 1),
            },
            "duplicate_events": {
                "armed": self.duplicating(),
                "seconds_left": round(self.duplicating.seconds_left(), 1),
            },
            "crash": crashes,
            "corrupt_upload": {"count_left": self.corruptions.value()},
        }

    def _functions(self) -> list[str]:
        return [name for name in CHAOS_FUNCTIONS if name in self._runtime.functions]

    def actions(self) -> dict[str, Callable[[dict[str, Any]], None]]:
        """What `POST /chaos/<action>` runs, with the request's arguments."""
        return {
            "minio-down": lambda a: self.minio_down(a.get("seconds")),
            "minio-read-only": lambda a: self.minio_read_only(a.get("seconds")),
            "throttle": lambda a: self.throttle(a.get("percent"), a.get("seconds")),
            "duplicate-events": lambda a: self.duplicate_events(a.get("seconds")),
            "crash": lambda a: self.crash(
                a.get("function"),
                a.get("after_calls", 1),
                a.get("phase", "after"),
                a.get("times", 1),
            ),
            "corrupt-upload": lambda a: self.corrupt_uploads(a.get("count")),
            "clear": lambda _a: self.clear(),
        }


class ControlServer:
    """The chaos control API on `host:port` (0: a free port), served from a daemon thread."""

    def __init__(self, chaos: ChaosState, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.chaos = chaos
        self._httpd = LoopbackServer(
            self._route, name="chaos-control", host=host, port=port, methods=METHODS
        )

    @property
    def endpoint(self) -> str:
        return self._httpd.endpoint

    def start(self) -> ControlServer:
        self._httpd.start()
        return self

    def stop(self) -> None:
        self._httpd.stop()

    def _route(self, method: str, path: str, headers: Message, body: bytes) -> Reply:
        try:
            status, answer = self.handle(method, path, body)
        except Exception as err:  # an answer rather than a dropped connection
            log.exception("chaos control: %s %s failed", method, path)
            status, answer = 500, {"error": f"{type(err).__name__}: {err}"}
        return Reply.json(status, answer)

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        path = path.split("?", 1)[0].rstrip("/")
        if method == "GET" and path == "/chaos":
            return 200, self.chaos.status()
        prefix = "/chaos/"
        if method != "POST" or not path.startswith(prefix):
            return 404, {"error": f"no such operation: {method} {path}"}
        name = path[len(prefix) :]
        action = self.chaos.actions().get(name)
        if action is None:
            known = ", ".join(self.chaos.actions())
            return 404, {"error": f"no chaos named {name!r}; known: {known}"}
        try:
            arguments = _arguments(body)
            action(arguments)
        except ChaosError as err:
            return 400, {"error": str(err)}
        log.warning("chaos armed: %s %s", name, arguments)
        return 200, self.chaos.status()


def _arguments(body: bytes) -> dict[str, Any]:
    try:
        arguments = json.loads(body or b"{}")
    except ValueError as err:
        raise ChaosError(f"the request body is not JSON: {err}") from err
    if not isinstance(arguments, dict):
        raise ChaosError("the request body must be a JSON object")
    return arguments
