"""The moto launcher's changes to moto: DynamoDB requests one at a time, the rest concurrently;
SQS without its per-message queue scans (`faster_sqs`); projections without whole-item
conversions (`faster_dynamodb_projection`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.dynamodb.models import dynamo_type
from moto.sqs import models as sqs_models

from infrastructure.local.provision.moto_service import (
    SerializedDynamoDB,
    faster_dynamodb_projection,
    faster_sqs,
)


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
    monkeypatch.setattr(backend, "send_message", backend.send_message)
    monkeypatch.setattr(sqs_models.Queue, "attributes", sqs_models.Queue.attributes)
    monkeypatch.setattr(sqs_models.Queue, "delete_message", sqs_models.Queue.delete_message)
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


def test_sqs_send_with_the_launchers_changes_reads_no_queued_message(
    launcher_sqs: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with mock_aws():
        # GIVEN a queue holding 300 messages, and every look at a message's state counted
        sqs = boto3.client("sqs", region_name="eu-west-2")
        url = sqs.create_queue(QueueName="q")["QueueUrl"]
        for start in range(0, 300, 10):
            entries = [{"Id": str(n), "MessageBody": f"m{start + n}"} for n in range(10)]
            sqs.send_message_batch(QueueUrl=url, Entries=entries)
        looks = [0]
        for state in ("visible", "delayed"):
            moto_state = getattr(sqs_models.Message, state)

            def counted(message: Any, moto_state: Any = moto_state) -> bool:
                looks[0] += 1
                return bool(moto_state.fget(message))

            monkeypatch.setattr(sqs_models.Message, state, property(counted))
        # WHEN one more message is sent (what an S3 event notification does)
        sqs.send_message(QueueUrl=url, MessageBody="one more")
        # THEN no queued message was looked at: a send costs the same at any depth
        assert looks[0] == 0
        # AND the queue's attributes still count its messages, 301 now
        counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert counts["ApproximateNumberOfMessages"] == "301"
        assert looks[0] > 0


def test_sqs_a_delete_holds_the_lock_sends_append_under(
    launcher_sqs: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with mock_aws():
        # GIVEN a queue with one received message
        sqs = boto3.client("sqs", region_name="eu-west-2")
        url = sqs.create_queue(QueueName="q")["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody="old")
        (received,) = sqs.receive_message(QueueUrl=url)["Messages"]
        queue = sqs_models.sqs_backends["123456789012"]["eu-west-2"].get_queue("q")
        # ... and, while the delete scans the queue, another thread trying the lock a send
        # appends under (moto's delete rebinds the message list: a send in between is lost)
        free_to_another_thread: list[bool] = []
        moto_check = sqs_models.Message.had_receipt_handle

        def try_the_lock(message: Any, handle: str) -> bool:
            def attempt() -> None:
                taken = queue._messages_lock.acquire(blocking=False)  # moto's
                if taken:
                    queue._messages_lock.release()  # as above
                free_to_another_thread.append(taken)

            other = threading.Thread(target=attempt)
            other.start()
            other.join()
            return bool(moto_check(message, handle))

        monkeypatch.setattr(sqs_models.Message, "had_receipt_handle", try_the_lock)
        # WHEN the received message is deleted
        sqs.delete_message(QueueUrl=url, ReceiptHandle=received["ReceiptHandle"])
        # THEN no other thread could take the lock at any point of the scan: a send waits
        assert free_to_another_thread
        assert not any(free_to_another_thread)


def test_sqs_with_the_launchers_changes_still_deduplicates_by_content(launcher_sqs: None) -> None:
    with mock_aws():
        # GIVEN a FIFO queue deduplicating by content
        sqs = boto3.client("sqs", region_name="eu-west-2")
        url = sqs.create_queue(
            QueueName="q.fifo",
            Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
        )["QueueUrl"]
        # WHEN the same body is sent twice
        for _ in range(2):
            sqs.send_message(QueueUrl=url, MessageBody="same", MessageGroupId="g")
        # THEN one message is queued
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        assert [m["Body"] for m in got] == ["same"]


ITEM: dict[str, Any] = {
    "pk": {"S": "WIN#s1-1-2026-12-07-07-30-00-abc"},
    "state": {"S": "DELIVERED"},
    "file_count": {"N": "12"},
    "ratio": {"N": "0.25"},
    "parts": {"L": [{"M": {"part": {"N": "1"}, "sha256": {"S": "ab" * 32}}}]},
    "latency": {"M": {"buckets": {"L": [{"N": "3"}, {"N": "0"}]}, "max_ms": {"N": "1500"}}},
    "tags": {"SS": ["b", "a"]},
    "sizes": {"NS": ["1", "2"]},
    "digest": {"B": b"\x00\xffbytes"},
    "flag": {"BOOL": True},
    "nothing": {"NULL": True},
}


def unordered_sets(value: Any) -> Any:
    """`value` with every set attribute (SS, NS, BS) sorted: sets have no order, and moto's own
    projection passes them through Python sets."""
    if isinstance(value, dict):
        return {
            key: sorted(inner) if key in {"SS", "NS", "BS"} else unordered_sets(inner)
            for key, inner in value.items()
        }
    if isinstance(value, list):
        return [unordered_sets(inner) for inner in value]
    return value


@pytest.mark.parametrize(
    "paths",
    [
        [["state"], ["file_count"], ["parts"], ["latency"], ["tags"], ["sizes"], ["digest"]],
        [["flag"], ["nothing"], ["ratio"], ["no_such_attribute"]],
        [["latency", "max_ms"], ["state"]],  # nested: moto's own way
        [["parts[0]"]],  # a list index: moto's own way
    ],
)
def test_a_projection_gives_the_items_moto_gives(
    monkeypatch: pytest.MonkeyPatch, paths: list[list[str]]
) -> None:
    # GIVEN an item of every attribute type, and moto's own projection of it
    item = dynamo_type.Item(dynamo_type.DynamoType(ITEM["pk"]), None, ITEM)
    expected = item.project(paths).to_json()
    monkeypatch.setattr(dynamo_type.Item, "project", dynamo_type.Item.project)
    faster_dynamodb_projection()

    # WHEN the launcher's projection runs
    projected = item.project(paths)

    # THEN it gives the same item, and leaves the original whole
    assert unordered_sets(projected.to_json()) == unordered_sets(expected)
    assert (
        item.to_json() == dynamo_type.Item(dynamo_type.DynamoType(ITEM["pk"]), None, ITEM).to_json()
    )


def test_a_projected_item_shares_nothing_with_the_stored_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN the launcher's projection of a map attribute
    monkeypatch.setattr(dynamo_type.Item, "project", dynamo_type.Item.project)
    faster_dynamodb_projection()
    item = dynamo_type.Item(dynamo_type.DynamoType(ITEM["pk"]), None, ITEM)
    projected = item.project([["latency"]])

    # WHEN the projection is changed (as moto's responses may)
    projected.attrs["latency"].value["max_ms"] = dynamo_type.DynamoType({"N": "1"})

    # THEN the stored item is not
    assert item.attrs["latency"].value["max_ms"].value == "1500"


def test_a_top_level_projection_converts_no_item(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the launcher's projection, and items that must not be converted whole
    monkeypatch.setattr(dynamo_type.Item, "project", dynamo_type.Item.project)
    faster_dynamodb_projection()
    item = dynamo_type.Item(dynamo_type.DynamoType(ITEM["pk"]), None, ITEM)

    def refuse(_: Any) -> dict[str, Any]:
        raise AssertionError("the whole item was converted")

    monkeypatch.setattr(dynamo_type.Item, "to_regular_json", refuse)

    # WHEN top-level attributes are projected  THEN they come without a whole-item conversion
    assert item.project([["state"], ["file_count"]]).attrs["state"].value == "DELIVERED"
