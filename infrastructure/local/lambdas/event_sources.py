"""What invokes Sluice's functions locally: the SQS event source mapping and the redrive schedule.

`SqsEventSource` is Lambda's SQS mapping with `ReportBatchItemFailures`; `Schedule` an EventBridge
rate rule. Spec: docs/local-stack.md, `lambdas/event_sources.py`.
"""

from __future__ import annotations

import base64
import logging
import math
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Self

from infrastructure.local.lambdas.runtime import LambdaRuntime
from infrastructure.local.lambdas.sandbox import ACCOUNT_ID
from infrastructure.local.lambdas.workers import FunctionError, RuntimeStoppedError

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageAttributeValueOutputTypeDef, MessageTypeDef

    from infrastructure.tunables import IngestTunables, RedriveTunables

log = logging.getLogger(__name__)

POLL_WAIT_SECONDS: Final = 1
"""Long-poll wait of each receive while no batch is being gathered; also bounds how long
`stop()` waits for the poller."""

SQS_RECEIVE_MAX: Final = 10
RECEIVE_ERROR_BACKOFF_SECONDS: Final = 1.0
JOIN_SECONDS: Final = 10.0
DISABLED_POLL_SECONDS: Final = 0.2
COPIES_REMEMBERED: Final = 100_000
"""Message ids of the duplicates chaos sent, so that a duplicate is never duplicated again."""


def _never() -> bool:
    return False


def batch_item_failures(result: Any, message_ids: Sequence[str]) -> set[str] | None:
    """The message ids a partial batch response reports as failed; None if the response is
    invalid, which fails the whole batch.

    Success and failure conditions of
    https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html: a null response,
    a response without `batchItemFailures` (null) or with an empty list is complete success; an
    `itemIdentifier` that is null, empty, under another key name, or not a message id of the batch
    fails the whole batch, as does a response that is not a JSON object.
    """
    failures = result.get("batchItemFailures") if isinstance(result, dict) else result
    if failures is None:
        return set()
    if not isinstance(result, dict) or not isinstance(failures, list):
        return None
    known = set(message_ids)
    identifiers = [
        item.get("itemIdentifier") if isinstance(item, dict) else None for item in failures
    ]
    if not all(isinstance(i, str) and i in known for i in identifiers):
        return None
    return {str(i) for i in identifiers}


def _attribute(value: MessageAttributeValueOutputTypeDef) -> dict[str, Any]:
    """A message attribute as Lambda's SQS event spells it (binary values base64-encoded)."""
    attribute: dict[str, Any] = {}
    if "StringValue" in value:
        attribute["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        attribute["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
    attribute["stringListValues"] = list(value.get("StringListValues", []))
    attribute["binaryListValues"] = [
        base64.b64encode(item).decode() for item in value.get("BinaryListValues", [])
    ]
    attribute["dataType"] = value["DataType"]
    return attribute


def sqs_record(message: MessageTypeDef, queue_arn: str, region: str) -> dict[str, Any]:
    """One record of the event Lambda's SQS event source mapping sends, from a received message."""
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {
            name: _attribute(value) for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message["MD5OfBody"],
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    record.update({"eventSource": "aws:sqs", "eventSourceARN": queue_arn, "awsRegion": region})
    return record


@dataclass
class SourceStats:
    batches: int = 0
    messages: int = 0
    deleted: int = 0
    function_errors: int = 0
    invalid_responses: int = 0
    reported_failures: int = 0
    duplicates_sent: int = 0
    """Chaos: second messages sent to the queue with a received message's body."""
    redelivered: int = 0
    """Chaos: messages made visible again instead of being deleted."""


class SqsEventSource:
    """Lambda's SQS event source mapping for one queue and one function."""

    def __init__(
        self,
        runtime: LambdaRuntime,
        function: str,
        queue_url: str,
        ingest: IngestTunables,
        time_scale: float | None = None,
        *,
        report_batch_item_failures: bool = True,
        sqs: SQSClient | None = None,
        duplicate: Callable[[], bool] = _never,
    ) -> None:
        """`duplicate`: whether chaos duplicates events now (docs/local-stack.md)."""
        config = runtime.functions.get(function)
        if config is None:
            raise ValueError(f"no function named {function!r}")
        scale = runtime.time_scale if time_scale is None else time_scale
        # CreateEventSourceMapping's checks for a standard queue
        if not 1 <= ingest.batch_size <= 10_000:
            raise ValueError("BatchSize must be 1-10000")
        if ingest.batch_size > SQS_RECEIVE_MAX and ingest.batching_window_seconds < 1:
            raise ValueError("a batch size over 10 needs a batching window of at least 1 s")
        if not 0 <= ingest.batching_window_seconds <= 300:
            raise ValueError("MaximumBatchingWindowInSeconds must be 0-300")
        if not 2 <= ingest.maximum_concurrency <= 1000:
            raise ValueError("ScalingConfig.MaximumConcurrency must be 2-1000")
        if ingest.visibility_timeout_seconds < config.timeout_seconds:
            raise ValueError(
                f"queue visibility timeout {ingest.visibility_timeout_seconds} s is less than "
                f"function {function}'s timeout {config.timeout_seconds} s"
            )
        self.runtime = runtime
        self.function = function
        self.queue_url = queue_url
        self.batch_size = ingest.batch_size
        self._configured_batching_window = ingest.batching_window_seconds
        self._configured_visibility_timeout = ingest.visibility_timeout_seconds
        self._function_timeout = config.timeout_seconds
        self.set_time_scale(scale)
        self.maximum_concurrency = min(ingest.maximum_concurrency, runtime.workers_per_function)
        self.report_batch_item_failures = report_batch_item_failures
        self.stats = SourceStats()
        self._sqs = sqs or runtime.sqs_client()
        self._slots = threading.BoundedSemaphore(self.maximum_concurrency)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._batches: set[threading.Thread] = set()
        self._poller: threading.Thread | None = None
        self._queue_arn = ""
        self._region = runtime.region
        self._duplicate = duplicate
        self._copies: OrderedDict[str, None] = OrderedDict()
        self.uuid = str(uuid.uuid4())
        self._enabled = threading.Event()
        self._enabled.set()
        self._poller_active = False
        """The poller has seen the mapping enabled (and may be receiving)."""
        self._last_modified = time.time()

    def set_time_scale(self, time_scale: float) -> None:
        """Scale the batching window and the visibility timeout (never below the function's
        timeout plus the window); the poller uses them from its next receive on."""
        if not time_scale > 0:
            raise ValueError(f"time_scale must be positive, not {time_scale!r}")
        self.batching_window_seconds = self._configured_batching_window / time_scale
        self.visibility_timeout_seconds = max(
            math.ceil(self._configured_visibility_timeout / time_scale),
            math.ceil(self._function_timeout + self.batching_window_seconds),
        )

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> SqsEventSource:
        if self._poller is not None:
            raise RuntimeError("this event source mapping is already started")
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["QueueArn"]
        )
        self._queue_arn = attributes["Attributes"]["QueueArn"]
        self._region = self._queue_arn.split(":")[3] or self.runtime.region
        self.runtime.register(self)
        self.runtime.add_event_source_mapping(self)
        self._poller = threading.Thread(target=self._poll, name=f"esm-{self.function}", daemon=True)
        self._poller.start()
        return self

    def request_stop(self) -> None:
        self._stopping.set()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        if self._poller is not None:
            self._poller.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            batches = list(self._batches)
        for thread in batches:
            thread.join(max(0.0, deadline - time.monotonic()))

    def stop(self) -> None:
        """Stop polling and wait for the batches in flight (at most the function's timeout)."""
        self.request_stop()
        self.join(self.runtime.functions[self.function].timeout_seconds + JOIN_SECONDS)

    @property
    def running(self) -> bool:
        return self._poller is not None and self._poller.is_alive()

    # ------------------------------------------------------------------ the mapping's API

    @property
    def event_source_arn(self) -> str:
        return self._queue_arn

    @property
    def enabled(self) -> bool:
        return self._enabled.is_set()

    def set_enabled(self, enabled: bool) -> None:
        """Disabled: nothing more is received; batches in flight finish."""
        if enabled == self._enabled.is_set():
            return
        if enabled:
            self._enabled.set()
        else:
            self._enabled.clear()
        self._last_modified = time.time()
        log.info(
            "event source mapping %s of %s %s",
            self.uuid,
            self.function,
            "enabled" if enabled else "disabled",
        )

    @property
    def state(self) -> str:
        """Lambda's `State`: Enabling, Enabled, Disabling (still receiving, or batches in
        flight), Disabled."""
        with self._lock:
            busy = self._poller_active or bool(self._batches)
            active = self._poller_active
        if self._enabled.is_set():
            return "Enabled" if active or self._stopping.is_set() else "Enabling"
        return "Disabling" if busy else "Disabled"

    def configuration(self) -> dict[str, Any]:
        """`EventSourceMappingConfiguration`, as GetEventSourceMapping answers."""
        return {
            "UUID": self.uuid,
            "BatchSize": self.batch_size,
            "MaximumBatchingWindowInSeconds": self._configured_batching_window,
            "EventSourceArn": self._queue_arn,
            "FunctionArn": self.runtime.function_arn(self.function),
            "LastModified": self._last_modified,
            "State": self.state,
            "StateTransitionReason": "USER_INITIATED",
            "FunctionResponseTypes": (
                ["ReportBatchItemFailures"] if self.report_batch_item_failures else []
            ),
            "ScalingConfig": {"MaximumConcurrency": self.maximum_concurrency},
        }

    # ------------------------------------------------------------------ polling

    def _poll(self) -> None:
        while not self._stopping.is_set():
            if not self._enabled.is_set():
                with self._lock:
                    self._poller_active = False
                self._enabled.wait(DISABLED_POLL_SECONDS)
                continue
            with self._lock:
                self._poller_active = True
            if not self._slots.acquire(timeout=0.2):
                continue
            try:
                messages = self._gather()
            except Exception:
                self._slots.release()
                log.exception("receiving from %s failed", self.queue_url)
                self._stopping.wait(RECEIVE_ERROR_BACKOFF_SECONDS)
                continue
            if not messages:
                self._slots.release()
                continue
            thread = threading.Thread(
                target=self._process,
                args=(messages,),
                name=f"esm-{self.function}-batch",
                daemon=True,
            )
            with self._lock:
                self._batches.add(thread)
            thread.start()

    def _receive(self, count: int, wait_seconds: int) -> list[MessageTypeDef]:
        response = self._sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=min(count, SQS_RECEIVE_MAX),
            WaitTimeSeconds=wait_seconds,
            VisibilityTimeout=self.visibility_timeout_seconds,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(response.get("Messages", []))

    def _gather(self) -> list[MessageTypeDef]:
        """One batch: the first receive waits for messages; then more are gathered until the
        batch is full or the batching window, counted from the first message, has passed."""
        batch = self._receive(self.batch_size, POLL_WAIT_SECONDS)
        if not batch:
            return []
        window_end = time.monotonic() + self.batching_window_seconds
        while len(batch) < self.batch_size and not self._stopping.is_set():
            remaining = window_end - time.monotonic()
            if remaining <= 0:
                break
            more = self._receive(self.batch_size - len(batch), min(int(remaining), 20))
            batch.extend(more)
            if not more and remaining < 1:
                self._stopping.wait(min(remaining, 0.05))
        return batch

    # ------------------------------------------------------------------ one batch

    def _process(self, messages: list[MessageTypeDef]) -> None:
        try:
            self._invoke(messages)
        except Exception:
            log.exception("a batch of %s failed unexpectedly", self.function)
        finally:
            self._slots.release()
            with self._lock:
                self._batches.discard(threading.current_thread())

    def _invoke(self, messages: list[MessageTypeDef]) -> None:
        duplicating = self._duplicate()
        if duplicating:
            self._send_duplicates(messages)
        event = {"Records": [sqs_record(m, self._queue_arn, self._region) for m in messages]}
        with self._lock:
            self.stats.batches += 1
            self.stats.messages += len(messages)
        try:
            result = self.runtime.invoke(self.function, event)
        except RuntimeStoppedError:
            return
        except FunctionError as err:
            with self._lock:
                self.stats.function_errors += 1
            log.warning("%s failed a batch of %d: %s", self.function, len(messages), err)
            return
        ids = [m["MessageId"] for m in messages]
        failed = batch_item_failures(result, ids) if self.report_batch_item_failures else set()
        if failed is None:
            with self._lock:
                self.stats.invalid_responses += 1
            log.warning(
                "%s returned an invalid partial batch response: %.200r", self.function, result
            )
            return
        with self._lock:
            self.stats.reported_failures += len(failed)
        succeeded = [m for m in messages if m["MessageId"] not in failed]
        if duplicating:
            again = [m for m in succeeded if _first_receive(m)]
            self._make_visible(again)
            succeeded = [m for m in succeeded if not _first_receive(m)]
        self._delete(succeeded)

    def _send_duplicates(self, messages: list[MessageTypeDef]) -> None:
        """Chaos: S3 delivering each event twice — a second message with the same body."""
        for message in messages:
            # Sent and remembered under the lock, checked under it too: a poller that received
            # the copy before it was remembered would take it for an original and copy it again.
            with self._lock:
                if not _first_receive(message) or message["MessageId"] in self._copies:
                    continue
                sent = self._sqs.send_message(QueueUrl=self.queue_url, MessageBody=message["Body"])
                self._copies[sent["MessageId"]] = None
                while len(self._copies) > COPIES_REMEMBERED:
                    self._copies.popitem(last=False)
                self.stats.duplicates_sent += 1

    def _make_visible(self, messages: list[MessageTypeDef]) -> None:
        """Chaos: a lapsed visibility timeout — SQS hands these out again, same messageId."""
        for start in range(0, len(messages), SQS_RECEIVE_MAX):
            chunk = messages[start : start + SQS_RECEIVE_MAX]
            response = self._sqs.change_message_visibility_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                    for i, m in enumerate(chunk)
                ],
            )
            with self._lock:
                self.stats.redelivered += len(chunk) - len(response.get("Failed", []))

    def _delete(self, messages: list[MessageTypeDef]) -> None:
        for start in range(0, len(messages), SQS_RECEIVE_MAX):
            chunk = messages[start : start + SQS_RECEIVE_MAX]
            response = self._sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)
                ],
            )
            failed = response.get("Failed", [])
            if failed:
                # The message comes back after its visibility timeout: at least once, as in AWS.
                log.warning(
                    "could not delete %d messages from %s: %s", len(failed), self.queue_url, failed
                )
            with self._lock:
                self.stats.deleted += len(chunk) - len(failed)


def _first_receive(message: MessageTypeDef) -> bool:
    return message.get("Attributes", {}).get("ApproximateReceiveCount") == "1"


class RuntimeLoop:
    """A background loop that its LambdaRuntime stops: `start()` registers it and runs `_run` in
    a daemon thread, which should return soon after `self._stopping` is set."""

    thread_name = "runtime-loop"

    def __init__(self, runtime: LambdaRuntime) -> None:
        self.runtime = runtime
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError(f"{self.thread_name} is already started")
        self.runtime.register(self)
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def request_stop(self) -> None:
        self._stopping.set()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def stop(self) -> None:
        self.request_stop()
        self.join(JOIN_SECONDS)

    def _run(self) -> None:
        raise NotImplementedError


def scheduled_event(rule_arn: str, region: str) -> dict[str, Any]:
    """The event an EventBridge schedule rule sends its target."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


class Schedule(RuntimeLoop):
    """An EventBridge `rate(...)` rule invoking a function asynchronously every period (scaled);
    the first invocation one period after `start()`. With `payload`, the event is what it
    returns at each firing, as EventBridge Scheduler sends a target's input."""

    def __init__(
        self,
        runtime: LambdaRuntime,
        function: str,
        every_seconds: float,
        time_scale: float | None = None,
        *,
        rule_name: str | None = None,
        payload: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        if function not in runtime.functions:
            raise ValueError(f"no function named {function!r}")
        scale = runtime.time_scale if time_scale is None else time_scale
        if every_seconds <= 0:
            raise ValueError(f"the period must be positive, not {every_seconds!r}")
        super().__init__(runtime)
        self.thread_name = f"schedule-{function}"
        self.function = function
        self.every_seconds = every_seconds
        self.set_time_scale(scale)
        rule = rule_name or f"{function}-schedule"
        self.rule_arn = f"arn:aws:events:{runtime.region}:{ACCOUNT_ID}:rule/{rule}"
        self.request_ids: list[str] = []
        self._payload = payload

    @classmethod
    def for_redrive(
        cls,
        runtime: LambdaRuntime,
        redrive: RedriveTunables,
        time_scale: float | None = None,
        *,
        function: str = "redrive",
    ) -> Schedule:
        """The redrive schedule as Terraform sets it: `rate(schedule_minutes minutes)`."""
        return cls(runtime, function, redrive.schedule_minutes * 60, time_scale)

    @classmethod
    def for_report(
        cls,
        runtime: LambdaRuntime,
        time_scale: float | None = None,
        *,
        function: str = "report",
    ) -> Schedule:
        """The daily report: once a (scaled) day. Terraform's schedule runs at
        `report.schedule_hour_utc` and reports the day before; a local stack's scaled day passes
        within one real day, so each run here reports the real UTC day so far (`days_back` 0),
        as `sluice report` does, and the event carries its time as the Scheduler's does."""

        def payload() -> dict[str, Any]:
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            return {"scheduled_time": now, "days_back": 0}

        return cls(runtime, function, 86_400, time_scale, payload=payload)

    def set_time_scale(self, time_scale: float) -> None:
        """The period at `time_scale`, from the next firing on (the wait under way ends first)."""
        if not time_scale > 0:
            raise ValueError(f"time_scale must be positive, not {time_scale!r}")
        self.period_seconds = self.every_seconds / time_scale

    @property
    def fired(self) -> int:
        return len(self.request_ids)

    def _run(self) -> None:
        while not self._stopping.wait(self.period_seconds):
            try:
                event = (
                    self._payload()
                    if self._payload is not None
                    else scheduled_event(self.rule_arn, self.runtime.region)
                )
                self.request_ids.append(self.runtime.invoke_async(self.function, event))
            except RuntimeStoppedError:
                return
            except Exception:
                log.exception("the schedule of %s could not invoke it", self.function)
