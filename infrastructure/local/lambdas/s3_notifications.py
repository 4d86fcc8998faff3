"""S3's Lambda notifications, made locally: staging `buffers/` → delivery, `errors/` → requeue.

moto notifies an internal queue per target; `S3NotificationInvoker` turns each message into the
asynchronous invocation S3 would have made.
Spec: docs/local-stack.md, `lambdas/s3_notifications.py`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from infrastructure.local.lambdas.event_sources import RuntimeLoop
from infrastructure.local.lambdas.runtime import LambdaRuntime
from infrastructure.local.lambdas.workers import RuntimeStoppedError

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)

WAIT_SECONDS: Final = 1
RECEIVE_MAX: Final = 10
VISIBILITY_SECONDS: Final = 30
ERROR_BACKOFF_SECONDS: Final = 1.0


@dataclass
class NotificationStats:
    invoked: int = 0
    test_events: int = 0
    not_s3_events: int = 0
    duplicated: int = 0
    """Chaos: events invoked a second time."""


def _never() -> bool:
    return False


class S3NotificationInvoker(RuntimeLoop):
    """Invoke `function` asynchronously with each S3 event that arrives on `queue_url`."""

    def __init__(
        self,
        runtime: LambdaRuntime,
        function: str,
        queue_url: str,
        *,
        sqs: SQSClient | None = None,
        duplicate: Callable[[], bool] = _never,
    ) -> None:
        """`duplicate`: whether chaos duplicates events now."""
        if function not in runtime.functions:
            raise ValueError(f"no function named {function!r}")
        super().__init__(runtime)
        self.thread_name = f"s3-notify-{function}"
        self.function = function
        self.queue_url = queue_url
        self.stats = NotificationStats()
        self._sqs = sqs or runtime.sqs_client()
        self._duplicate = duplicate

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                messages = self._sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=RECEIVE_MAX,
                    WaitTimeSeconds=WAIT_SECONDS,
                    VisibilityTimeout=VISIBILITY_SECONDS,
                ).get("Messages", [])
                for message in messages:
                    if not self._handle(message["Body"]):
                        return
                    self._sqs.delete_message(
                        QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
                    )
            except Exception:
                log.exception("S3 notifications for %s: receiving failed", self.function)
                self._stopping.wait(ERROR_BACKOFF_SECONDS)

    def _handle(self, body: str) -> bool:
        """Act on one message; False when the runtime has stopped (the message stays)."""
        event = _s3_event(body)
        if event is None:
            if _is_test_event(body):
                self.stats.test_events += 1
            else:
                self.stats.not_s3_events += 1
                log.error("not an S3 event on %s, deleted: %.500s", self.queue_url, body)
            return True
        copies = 2 if self._duplicate() else 1
        try:
            for _ in range(copies):
                self.runtime.invoke_async(self.function, event)
        except RuntimeStoppedError:
            return False
        self.stats.invoked += 1
        self.stats.duplicated += copies - 1
        return True


def _s3_event(body: str) -> dict[str, Any] | None:
    try:
        event = json.loads(body)
    except ValueError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("Records"), list):
        return None
    return event


def _is_test_event(body: str) -> bool:
    try:
        return bool(json.loads(body).get("Event") == "s3:TestEvent")
    except (ValueError, AttributeError):
        return False
