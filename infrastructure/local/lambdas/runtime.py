"""The local Lambda runtime: synchronous and asynchronous invocation over worker pools.

Around the pools, what the Lambda service adds: async retries and on-failure records, reserved
concurrency 0, the registry of event source mappings. Spec: docs/local-stack.md,
`lambdas/runtime.py`.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

import boto3

from infrastructure.local.lambdas.sandbox import ACCOUNT_ID, FUNCTION_VERSION, CrashPhase
from infrastructure.local.lambdas.workers import (
    LOCAL_CREDENTIALS,
    FunctionConfig,
    FunctionError,
    PoolStats,
    RuntimeStoppedError,
    WorkerPool,
)
from infrastructure.names import LIVE_ALIAS

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

    from infrastructure.tunables import DeliveryTunables

log = logging.getLogger(__name__)

DEFAULT_REGION: Final = "eu-west-2"

RETRY_DELAYS_SECONDS: Final = (60.0, 120.0)
"""Lambda's waits before the second and the third attempt of an asynchronous invocation."""

THROTTLE_RETRY_SECONDS: Final = (1.0, 300.0)
"""Lambda retries a throttled asynchronous event after 1 s, doubling up to 5 minutes."""

RECORD_VERSION: Final = "1.0"
HISTORY_LIMIT: Final = 10_000

Outcome = Literal["Success", "RetriesExhausted", "EventAgeExceeded", "Stopped"]


class _Stoppable(Protocol):
    def request_stop(self) -> None: ...

    def join(self, timeout: float) -> None: ...


class EventSourceMapping(Protocol):
    """What the Lambda API needs of an event source mapping (event_sources.SqsEventSource)."""

    uuid: str
    function: str

    @property
    def event_source_arn(self) -> str: ...

    def configuration(self) -> dict[str, Any]:
        """As `EventSourceMappingConfiguration` spells it."""
        ...

    def set_enabled(self, enabled: bool) -> None: ...


class FunctionThrottledError(FunctionError):
    """The function takes no invocation: its reserved concurrency is 0."""

    def __init__(self, function: str) -> None:
        super().__init__(
            "TooManyRequestsException",
            f"Rate Exceeded. (function {function} has a reserved concurrency of 0)",
        )
        self.function = function


@dataclass(frozen=True)
class AsyncInvokeConfig:
    """A function's (alias's) asynchronous invocation configuration; the defaults are Lambda's."""

    maximum_retry_attempts: int = 2
    maximum_event_age_seconds: int = 21_600
    on_failure: str | None = None
    """URL of the SQS queue that receives the record of an event that failed every attempt."""

    def __post_init__(self) -> None:
        # PutFunctionEventInvokeConfig's limits
        if not 0 <= self.maximum_retry_attempts <= 2:
            raise ValueError("MaximumRetryAttempts must be 0-2")
        if not 60 <= self.maximum_event_age_seconds <= 21_600:
            raise ValueError("MaximumEventAgeInSeconds must be 60-21600")

    @classmethod
    def for_delivery(cls, delivery: DeliveryTunables, on_failure: str) -> AsyncInvokeConfig:
        """Delivery's configuration as Terraform sets it on its `live` alias."""
        return cls(
            maximum_retry_attempts=delivery.async_retry_attempts,
            maximum_event_age_seconds=delivery.async_max_event_age_seconds,
            on_failure=on_failure,
        )


@dataclass(frozen=True)
class AsyncAttempt:
    number: int
    delay_seconds: float
    """The wait before this attempt as Lambda counts it (unscaled): 0, 60, 120."""
    started: float
    """`time.monotonic()` when the attempt started."""
    error_type: str | None
    """None when the attempt succeeded."""


@dataclass
class AsyncHistory:
    """What happened to one asynchronously invoked event."""

    request_id: str
    function: str
    attempts: list[AsyncAttempt] = field(default_factory=list)
    outcome: Outcome | None = None
    record: dict[str, Any] | None = None
    """The on-failure record, when one was sent."""


@dataclass(order=True)
class _Pending:
    due: float
    sequence: int
    request_id: str = field(compare=False)
    event_json: str = field(compare=False)
    enqueued: float = field(compare=False)
    delay_seconds: float = field(compare=False, default=0.0)
    last_error: FunctionError | None = field(compare=False, default=None)
    throttles: int = field(compare=False, default=0)
    """Times the event found its function throttled (not attempts: the function never ran)."""


class _AsyncQueue:
    """Lambda's internal queue of one function's asynchronous events, with its retry schedule."""

    def __init__(self, runtime: LambdaRuntime, function: str, consumers: int) -> None:
        self._runtime = runtime
        self._function = function
        self._heap: list[_Pending] = []
        self._sequence = itertools.count()
        self._condition = threading.Condition()
        self._busy = 0
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._consume, name=f"lambda-async-{function}-{i}", daemon=True)
            for i in range(consumers)
        ]
        for thread in self._threads:
            thread.start()

    def put(self, pending: _Pending) -> None:
        with self._condition:
            heapq.heappush(self._heap, pending)
            self._condition.notify()

    def idle(self, *, counting_throttled: bool = True) -> bool:
        """No event waiting or running; with `counting_throttled=False`, events that wait only
        because their function is throttled do not count."""
        with self._condition:
            waiting = [p for p in self._heap if counting_throttled or not p.throttles]
            return not waiting and self._busy == 0

    def throttled_waiting(self) -> int:
        with self._condition:
            return sum(1 for p in self._heap if p.throttles)

    def retry_throttled_now(self) -> None:
        with self._condition:
            now = time.monotonic()
            for pending in self._heap:
                if pending.throttles:
                    pending.due = now
            heapq.heapify(self._heap)
            self._condition.notify_all()

    def request_stop(self) -> None:
        with self._condition:
            self._stopping = True
            self._condition.notify_all()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _next(self) -> _Pending | None:
        with self._condition:
            while True:
                if self._stopping:
                    return None
                now = time.monotonic()
                if self._heap and self._heap[0].due <= now:
                    self._busy += 1
                    return heapq.heappop(self._heap)
                self._condition.wait(self._heap[0].due - now if self._heap else None)

    def _consume(self) -> None:
        while (pending := self._next()) is not None:
            try:
                retry = self._runtime._attempt(self._function, pending)  # the runtime's own queue
                if retry is not None:
                    self.put(retry)
            except Exception:
                log.exception("async invocation of %s failed unexpectedly", self._function)
            finally:
                with self._condition:
                    self._busy -= 1
                    self._condition.notify_all()


class LambdaRuntime:
    """Lambda, locally: functions by name, invoked synchronously or asynchronously."""

    def __init__(
        self,
        functions: Iterable[FunctionConfig],
        *,
        workers_per_function: int = 2,
        time_scale: float = 1.0,
        region: str = DEFAULT_REGION,
        endpoint_url: str | None = None,
        async_configs: Mapping[str, AsyncInvokeConfig] | None = None,
        log_dir: Path | None = None,
        sdk_calls_dir: Path | None = None,
        upload_corruption_path: Path | None = None,
    ) -> None:
        """`endpoint_url` is where the runtime itself sends on-failure records and where event
        sources poll SQS (moto); the functions reach AWS through their own environment.
        `log_dir`: where each function's workers append their output (`<function>.log`);
        `sdk_calls_dir`: where they record the SDK operations they call (`<function>.sdk.jsonl`);
        `upload_corruption_path`: the shared count of uploads to corrupt (chaos, see
        sandbox.py; only a function whose dependencies have a `corrupt` hook uses it)."""
        self.time_scale = time_scale
        self.region = region
        self.endpoint_url = endpoint_url
        self.workers_per_function = workers_per_function
        self._pools = {
            config.name: WorkerPool(
                config,
                size=workers_per_function,
                region=region,
                log_dir=log_dir,
                sdk_calls_dir=sdk_calls_dir,
                upload_corruption_path=upload_corruption_path,
            )
            for config in functions
        }
        self._async_configs = dict(async_configs or {})
        unknown = set(self._async_configs) - set(self._pools)
        if unknown:
            raise ValueError(f"async configuration for unknown functions {sorted(unknown)}")
        self._queues: dict[str, _AsyncQueue] = {}
        self._history: OrderedDict[str, AsyncHistory] = OrderedDict()
        self._stoppables: list[_Stoppable] = []
        self._mappings: list[EventSourceMapping] = []
        self._reserved: dict[str, int] = {}
        self._lock = threading.Lock()
        self._sqs: SQSClient | None = None
        self._stopped = False
        self.destination_failures = 0

    # ------------------------------------------------------------------ invocation

    def invoke(self, name: str, event: Any) -> Any:
        """`RequestResponse`: the handler's result, or FunctionError (FunctionThrottledError
        when the function's reserved concurrency is 0)."""
        pool = self._pool(name)
        if self.throttled(name):
            raise FunctionThrottledError(name)
        return pool.invoke(_event_json(event), str(uuid.uuid4()))

    def invoke_async(self, name: str, event: Any) -> str:
        """`Event`: queue the event and return its request id at once."""
        self._pool(name)
        event_json = _event_json(event)
        request_id = str(uuid.uuid4())
        now = time.monotonic()
        with self._lock:
            if self._stopped:
                raise RuntimeStoppedError(name)
            self._history[request_id] = AsyncHistory(request_id, name)
            while len(self._history) > HISTORY_LIMIT:
                self._history.popitem(last=False)
            queue = self._queues.get(name)
            if queue is None:
                queue = self._queues[name] = _AsyncQueue(self, name, self.workers_per_function)
        queue.put(_Pending(now, next(_SEQUENCE), request_id, event_json, now))
        return request_id

    def async_config(self, name: str) -> AsyncInvokeConfig:
        return self._async_configs.get(name, AsyncInvokeConfig())

    def async_history(self, request_id: str) -> AsyncHistory:
        with self._lock:
            return self._history[request_id]

    def async_idle(self, *, counting_throttled: bool = True) -> bool:
        """No asynchronous event waiting or running (but, with `counting_throttled=False`, those
        that wait only because their function is throttled)."""
        with self._lock:
            queues = list(self._queues.values())
        return all(queue.idle(counting_throttled=counting_throttled) for queue in queues)

    def async_throttled_waiting(self, name: str | None = None) -> int:
        """Asynchronous events waiting because their function is throttled."""
        with self._lock:
            queues = [q for n, q in self._queues.items() if name is None or n == name]
        return sum(queue.throttled_waiting() for queue in queues)

    # ------------------------------------------------------------------ reserved concurrency

    def put_function_concurrency(self, name: str, reserved: int) -> None:
        """PutFunctionConcurrency: 0 throttles the function (docs/local-stack.md)."""
        self._pool(name)
        if reserved < 0:
            raise ValueError(f"reserved concurrency must be at least 0, not {reserved}")
        with self._lock:
            self._reserved[name] = reserved
        if reserved > 0:
            self._retry_throttled(name)

    def delete_function_concurrency(self, name: str) -> None:
        """DeleteFunctionConcurrency: back to the unreserved pool."""
        self._pool(name)
        with self._lock:
            self._reserved.pop(name, None)
        self._retry_throttled(name)

    def function_concurrency(self, name: str) -> int | None:
        """The reserved concurrency, None when none is reserved."""
        self._pool(name)
        with self._lock:
            return self._reserved.get(name)

    def throttled(self, name: str) -> bool:
        with self._lock:
            return self._reserved.get(name) == 0

    def _retry_throttled(self, name: str) -> None:
        with self._lock:
            queue = self._queues.get(name)
        if queue is not None:
            queue.retry_throttled_now()

    # ------------------------------------------------------------------ event source mappings

    def add_event_source_mapping(self, mapping: EventSourceMapping) -> None:
        with self._lock:
            self._mappings.append(mapping)

    def event_source_mappings(self) -> list[EventSourceMapping]:
        with self._lock:
            return list(self._mappings)

    # ------------------------------------------------------------------ chaos and state

    def crash_after_calls(
        self, function: str, n: int, *, phase: CrashPhase = "before", times: int = 1
    ) -> None:
        """Kill the worker of the next `times` invocations of `function` at their n-th SDK call
        (see workers.py: with `phase="before"` the n-th call is never sent)."""
        self._pool(function).crash_after_calls(n, phase=phase, times=times)

    def recycle(self, function: str) -> None:
        """New execution environments for `function`, as after a deploy (WorkerPool.recycle)."""
        self._pool(function).recycle()

    def armed_crash(self, function: str) -> tuple[int, CrashPhase, int] | None:
        """(calls, phase, crashes still to cause) of `function`'s armed crash, if any."""
        return self._pool(function).armed_crash()

    def clear_crash(self, function: str) -> None:
        self._pool(function).clear_crash()

    def stats(self, name: str) -> PoolStats:
        return self._pool(name).stats

    def cold_starts(self, name: str) -> int:
        return self._pool(name).stats.cold_starts

    def worker_pids(self, name: str | None = None) -> list[int]:
        pools = [self._pool(name)] if name else list(self._pools.values())
        return [pid for pool in pools for pid in pool.pids()]

    @property
    def functions(self) -> dict[str, FunctionConfig]:
        return {name: pool.config for name, pool in self._pools.items()}

    def sqs_client(self) -> SQSClient:
        """A new SQS client on the runtime's endpoint (event sources use one each)."""
        if self.endpoint_url is None:
            return boto3.client("sqs", region_name=self.region)
        return boto3.client(
            "sqs",
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def register(self, stoppable: _Stoppable) -> None:
        """Event sources and schedules register here, so that `stop()` stops them."""
        with self._lock:
            if self._stopped:
                raise RuntimeStoppedError("runtime stopped")
            self._stoppables.append(stoppable)

    def stop(self) -> None:
        """Stop event sources, schedules and retry queues, then kill every worker."""
        with self._lock:
            self._stopped = True
            stoppables = [*self._stoppables, *self._queues.values()]
        for stoppable in stoppables:
            stoppable.request_stop()
        for pool in self._pools.values():
            pool.stop()
        for stoppable in stoppables:
            stoppable.join(10.0)

    def __enter__(self) -> LambdaRuntime:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def time_scale(self) -> float:
        """Divides retry delays and event ages; read at each use, so that a running stack's
        scale can change (`LocalStack.set_time_scale`)."""
        return self._time_scale

    @time_scale.setter
    def time_scale(self, time_scale: float) -> None:
        if not time_scale > 0:
            raise ValueError(f"time_scale must be positive, not {time_scale!r}")
        self._time_scale = time_scale

    # ------------------------------------------------------------------ internals

    def _pool(self, name: str) -> WorkerPool:
        try:
            return self._pools[name]
        except KeyError:
            raise ValueError(f"no function named {name!r}") from None

    def _attempt(self, name: str, pending: _Pending) -> _Pending | None:
        """One attempt of an asynchronous event; the retry to schedule, if any."""
        config = self.async_config(name)
        history = self.async_history(pending.request_id)
        age = (time.monotonic() - pending.enqueued) * self.time_scale
        if age >= config.maximum_event_age_seconds:
            self._finish(name, pending, history, "EventAgeExceeded")
            return None
        if self.throttled(name):
            return self._throttled(pending, config)
        started = time.monotonic()
        try:
            self._pool(name).invoke(pending.event_json, pending.request_id)
        except RuntimeStoppedError:
            history.outcome = "Stopped"
            return None
        except FunctionError as err:
            number = len(history.attempts) + 1
            history.attempts.append(
                AsyncAttempt(number, pending.delay_seconds, started, err.error_type)
            )
            pending.last_error = err
            if number <= config.maximum_retry_attempts:
                delay = RETRY_DELAYS_SECONDS[number - 1]
                pending.delay_seconds = delay
                pending.due = time.monotonic() + delay / self.time_scale
                pending.sequence = next(_SEQUENCE)
                return pending
            self._finish(name, pending, history, "RetriesExhausted")
            return None
        history.attempts.append(
            AsyncAttempt(len(history.attempts) + 1, pending.delay_seconds, started, None)
        )
        history.outcome = "Success"
        return None

    def _throttled(self, pending: _Pending, config: AsyncInvokeConfig) -> _Pending:
        """The event back in the queue: retried as Lambda retries a throttled event, and due no
        later than the moment it expires, so that it reaches its destination on time."""
        first, longest = THROTTLE_RETRY_SECONDS
        delay = min(longest, first * 2**pending.throttles) / self.time_scale
        pending.throttles += 1
        expires = pending.enqueued + config.maximum_event_age_seconds / self.time_scale
        pending.due = min(time.monotonic() + delay, expires)
        pending.sequence = next(_SEQUENCE)
        return pending

    def _finish(
        self, name: str, pending: _Pending, history: AsyncHistory, condition: Outcome
    ) -> None:
        destination = self.async_config(name).on_failure
        if destination is not None:
            record = invocation_record(
                function_arn=self.function_arn(name),
                request_id=pending.request_id,
                condition=condition,
                attempts=len(history.attempts),
                request_payload=json.loads(pending.event_json),
                error=pending.last_error,
            )
            history.record = record
            try:
                self._destination_client().send_message(
                    QueueUrl=destination, MessageBody=json.dumps(record)
                )
            except Exception:
                # Lambda counts DestinationDeliveryFailures; the event is lost either way.
                self.destination_failures += 1
                log.exception("could not send the on-failure record of %s to %s", name, destination)
        history.outcome = condition

    def _destination_client(self) -> SQSClient:
        with self._lock:
            if self._sqs is None:
                self._sqs = self.sqs_client()
            return self._sqs

    def function_arn(self, name: str) -> str:
        """The ARN of the function's `live` alias, which every trigger targets (DESIGN §7)."""
        return f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{name}:{LIVE_ALIAS}"


_SEQUENCE = itertools.count()


def _event_json(event: Any) -> str:
    try:
        return json.dumps(event)
    except (TypeError, ValueError) as err:
        raise ValueError(f"the event is not JSON: {err}") from err


def invocation_record(
    *,
    function_arn: str,
    request_id: str,
    condition: Outcome,
    attempts: int,
    request_payload: Any,
    error: FunctionError | None,
) -> dict[str, Any]:
    """Lambda's record of an asynchronous invocation that failed, as its destinations receive it
    (https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html).

    `responseContext` and `responsePayload` describe the last attempt; an event that expired
    before any attempt has neither."""
    now = datetime.now(UTC)
    record: dict[str, Any] = {
        "version": RECORD_VERSION,
        "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
        "requestContext": {
            "requestId": request_id,
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": attempts,
        },
        "requestPayload": request_payload,
    }
    if error is not None:
        record["responseContext"] = {
            "statusCode": 200,
            "executedVersion": FUNCTION_VERSION,
            "functionError": "Unhandled",
        }
        record["responsePayload"] = error.payload
    return record
