"""Pausing and chaos in the local Lambda runtime, over moto's SQS: a disabled event source
mapping, a function at reserved concurrency 0 (its events waiting, then expiring with
`EventAgeExceeded`), and duplicated events (event_sources.py, s3_notifications.py).

Handlers are the test doubles of tests/integration/handlers/; nothing asserts on durations.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from infrastructure.local.lambdas.event_sources import SqsEventSource
from infrastructure.local.lambdas.runtime import AsyncInvokeConfig, LambdaRuntime
from infrastructure.local.lambdas.s3_notifications import S3NotificationInvoker
from infrastructure.queues import queue_depth
from tests.conftest import REGION
from tests.integration.handlers import _log
from tests.integration.runtime_support import function, wait_until
from tests.integration.test_lambda_runtime import create_queue, ingest

pytestmark = pytest.mark.slow


@pytest.fixture
def sqs(moto_server: str) -> Any:
    return boto3.client("sqs", region_name=REGION, endpoint_url=moto_server)


def visible(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def test_a_disabled_mapping_receives_nothing_until_enabled(
    moto_server: str, sqs: Any, start_runtime: Callable[..., LambdaRuntime], tmp_path: Path
) -> None:
    # GIVEN the ingest mapping of a function, disabled (as `sluice pause forwarder` does)
    url, _ = create_queue(sqs, "ingest")
    runtime = start_runtime(function("forwarder", "partial"), endpoint_url=moto_server)
    source = SqsEventSource(runtime, "forwarder", url, ingest()).start()
    source.set_enabled(False)
    wait_until(lambda: source.state == "Disabled", what="the mapping to be disabled")
    assert source.configuration()["State"] == "Disabled"
    # WHEN a message arrives and several polls' worth of time passes
    log = tmp_path / "log"
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"log": str(log)}))
    threading.Event().wait(3 * 1.0)
    # THEN it was never received: still visible in the queue, the function never ran
    assert visible(sqs, url) == 1
    assert _log.read(log) == []
    assert source.stats.messages == 0
    # WHEN the mapping is enabled again THEN the message is processed and deleted
    source.set_enabled(True)
    wait_until(lambda: _log.read(log), what="the message to be processed")
    wait_until(lambda: queue_depth(sqs, url) == 0, what="the message to be deleted")
    assert source.state == "Enabled"


def test_a_function_at_concurrency_zero_keeps_its_events_then_expires_them(
    moto_server: str, sqs: Any, start_runtime: Callable[..., LambdaRuntime], tmp_path: Path
) -> None:
    """Reserved concurrency 0: Lambda retries throttled asynchronous events until their maximum
    age, then sends them to the on-failure destination with condition EventAgeExceeded."""
    # GIVEN delivery (max event age 60 s, one second here) and a patient function (6 h), both
    # at reserved concurrency 0, as `sluice pause delivery` leaves delivery
    dlq_url, _ = create_queue(sqs, "delivery-dlq")
    log = tmp_path / "ran"
    runtime = start_runtime(
        function("delivery", "records", env={"RECORD_PATH": str(log)}),
        function("patient", "records", env={"RECORD_PATH": str(log)}),
        time_scale=60,
        endpoint_url=moto_server,
        async_configs={
            "delivery": AsyncInvokeConfig(maximum_event_age_seconds=60, on_failure=dlq_url)
        },
    )
    for name in ("delivery", "patient"):
        runtime.put_function_concurrency(name, 0)
    # WHEN each is invoked asynchronously
    expiring = runtime.invoke_async("delivery", {"window": "w-1"})
    waiting = runtime.invoke_async("patient", {"window": "w-2"})
    # THEN delivery's event expires without ever running, and its record says why
    history = runtime.async_history(expiring)
    wait_until(lambda: history.outcome, what="the event to expire")
    assert history.outcome == "EventAgeExceeded"
    assert history.attempts == []
    messages = sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=5).get("Messages", [])
    record = json.loads(messages[0]["Body"])
    assert record["requestContext"]["condition"] == "EventAgeExceeded"
    assert record["requestContext"]["approximateInvokeCount"] == 0
    assert record["requestPayload"] == {"window": "w-1"}
    assert "responsePayload" not in record
    # ... the patient function's event is still waiting, unrun
    assert runtime.async_history(waiting).outcome is None
    assert runtime.async_throttled_waiting("patient") == 1
    assert _log.read(log) == []
    # WHEN the patient function's concurrency is restored (`sluice resume`)
    runtime.delete_function_concurrency("patient")
    # THEN its event runs, once
    wait_until(lambda: runtime.async_history(waiting).outcome, what="the waiting event")
    assert runtime.async_history(waiting).outcome == "Success"
    assert _log.read(log) == [{"window": "w-2"}]


def test_duplicate_events_send_each_message_twice_and_redeliver_each_once(
    moto_server: str, sqs: Any, start_runtime: Callable[..., LambdaRuntime], tmp_path: Path
) -> None:
    # GIVEN an ingest mapping while chaos duplicates events
    url, _ = create_queue(sqs, "ingest")
    runtime = start_runtime(function("forwarder", "partial"), endpoint_url=moto_server)
    # (A visibility timeout of 10 s: the redelivery waits for it, and a loaded machine's second
    # delivery must finish inside it, or SQS delivers a third time.)
    source = SqsEventSource(
        runtime, "forwarder", url, ingest(visibility=10), duplicate=lambda: True
    ).start()
    # WHEN one S3 event arrives
    log = tmp_path / "log"
    body = json.dumps({"log": str(log)})
    sqs.send_message(QueueUrl=url, MessageBody=body)
    # THEN the function sees two messages with its body (S3 sent it twice), each twice, with
    # the same messageId and a receive count of 1 then 2 (a lapsed visibility timeout) ...
    wait_until(lambda: len(_log.read(log)) >= 4, what="four deliveries")
    wait_until(lambda: queue_depth(sqs, url) == 0, what="every message to be deleted")
    received: dict[str, list[int]] = defaultdict(list)
    for entry in _log.read(log):
        record = entry["record"]
        assert record["body"] == body
        received[record["messageId"]].append(_log.receive_count(record))
    assert sorted(sorted(counts) for counts in received.values()) == [[1, 2], [1, 2]]
    # ... and no more: a duplicate is not duplicated again, a redelivery not redelivered
    assert (source.stats.duplicates_sent, source.stats.redelivered) == (1, 2)


def test_duplicate_events_invoke_staging_notifications_twice(
    moto_server: str, sqs: Any, start_runtime: Callable[..., LambdaRuntime], tmp_path: Path
) -> None:
    # GIVEN the staging bucket's notifications to delivery while chaos duplicates events
    url, _ = create_queue(sqs, "buffers-events")
    log = tmp_path / "invocations"
    runtime = start_runtime(
        function("delivery", "records", env={"RECORD_PATH": str(log)}), endpoint_url=moto_server
    )
    invoker = S3NotificationInvoker(runtime, "delivery", url, duplicate=lambda: True).start()
    # WHEN one S3 event arrives
    event = {
        "Records": [{"eventName": "ObjectCreated:Put", "s3": {"object": {"key": "buffers/w"}}}]
    }
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(event))
    # THEN delivery is invoked twice with it, and the message is consumed
    wait_until(lambda: len(_log.read(log)) == 2, what="two invocations")
    assert _log.read(log) == [event, event]
    assert (invoker.stats.invoked, invoker.stats.duplicated) == (1, 1)
    wait_until(lambda: queue_depth(sqs, url) == 0, what="the message to be deleted")
