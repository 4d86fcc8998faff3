"""The moto launcher's changes to moto: DynamoDB requests one at a time, the rest concurrently;
SQS without its per-message queue scans (`faster_sqs`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.sqs import models as sqs_models

from infrastructure.local.provision.moto_service import SerializedDynamoDB, faster_sqs


class SlowApp:
    """A WSGI app that takes a while per request and records how many ran at once."""

    def __init__(self) -> None:
        self.running = 0
        self.most = 0
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.05)
        with self._lock:
            self.running -= 1
        start_response("200 OK", [])
        return [b"ok"]


def run_concurrently(app: Any, target: str | None, count: int = 6) -> None:
    environ = {"HTTP_X_AMZ_TARGET": target} if target else {}
    threads = [
        threading.Thread(target=lambda: list(app(dict(environ), lambda *_: None)))
        for _ in range(count)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_dynamodb_requests_never_overlap() -> None:
    inner = SlowApp()
    run_concurrently(SerializedDynamoDB(inner), "DynamoDB_20120810.TransactWriteItems")
    assert inner.most == 1


def test_other_services_stay_concurrent() -> None:
    inner = SlowApp()
    run_concurrently(SerializedDynamoDB(inner), "AmazonSQS.ReceiveMessage")
    assert inner.most > 1
    inner = SlowApp()
    run_concurrently(SerializedDynamoDB(inner), None)  # S3: REST, no target header
    assert inner.most > 1


@pytest.fixture
def launcher_sqs(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's SQS as the launcher runs it; moto's own restored afterwards."""
    monkeypatch.setattr(sqs_models, "unix_time", sqs_models.unix_time)
    monkeypatch.setattr(sqs_models, "unix_time_millis", sqs_models.unix_time_millis)
    backend = sqs_models.SQSBackend
    check = "is_message_valid_based_on_retention_period"
    monkeypatch.setattr(backend, check, getattr(backend, check))
    faster_sqs()


def test_sqs_clock_tells_the_time_moto_tells(launcher_sqs: None) -> None:
    # GIVEN the launcher's SQS clock  WHEN asked for now and for a given datetime
    now_ms = sqs_models.unix_time_millis()
    # THEN the same as moto's own clock (milliseconds since the epoch), both ways
    assert abs(now_ms - time.time() * 1000) < 1_000
    assert sqs_models.unix_time(datetime(2026, 12, 2)) == 1_796_169_600.0
    assert sqs_models.unix_time_millis(datetime(2026, 12, 2)) == 1_796_169_600_000.0


def test_sqs_with_the_launchers_changes_still_hides_received_messages(launcher_sqs: None) -> None:
    with mock_aws():
        # GIVEN a queue with two messages
        sqs = boto3.client("sqs", region_name="eu-west-2")
        url = sqs.create_queue(QueueName="q", Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
        for body in ("a", "b"):
            sqs.send_message(QueueUrl=url, MessageBody=body)
        # WHEN one is received
        first = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"]
        # THEN it stays hidden for its visibility timeout: the next receive gets the other
        second = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        assert [m["Body"] for m in first + second] in (["a", "b"], ["b", "a"])
        assert sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages") is None
        # AND a message made visible again (timeout 0) comes back
        sqs.change_message_visibility(
            QueueUrl=url, ReceiptHandle=first[0]["ReceiptHandle"], VisibilityTimeout=0
        )
        again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        assert [m["Body"] for m in again] == [first[0]["Body"]]


def test_sqs_with_the_launchers_changes_still_drops_expired_messages(launcher_sqs: None) -> None:
    with mock_aws():
        # GIVEN a queue keeping messages 60 s, holding one sent 61 s ago and one sent now
        sqs = boto3.client("sqs", region_name="eu-west-2")
        url = sqs.create_queue(QueueName="q", Attributes={"MessageRetentionPeriod": "60"})[
            "QueueUrl"
        ]
        sqs.send_message(QueueUrl=url, MessageBody="old")
        backend = sqs_models.sqs_backends["123456789012"]["eu-west-2"]
        (old,) = backend.get_queue("q")._messages
        old.sent_timestamp -= 61_000
        sqs.send_message(QueueUrl=url, MessageBody="new")
        # WHEN the queue is read  THEN the expired message is not delivered
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        assert "old" not in [m["Body"] for m in got]
