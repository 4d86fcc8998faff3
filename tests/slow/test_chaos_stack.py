"""Gameday chaos and pausing on the real local stack (DESIGN §6), armed the way an operator arms
them: `sluice chaos …` and `sluice pause|resume …` (main.main, SLUICE_ROOT at the stack).

Each test checks the chaos is observable where it acts — delivery and redrive see MinIO down,
Firehose refuses records, events arrive twice, a worker dies, an upload is corrupted — and that
the pipeline still delivers every file exactly once, byte for byte. One stack serves the module;
every test clears the chaos it armed. The clock is compressed (TIME_SCALE); no duration is
asserted.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infrastructure.cli import deployment, main
from infrastructure.cli.deployment import Deployment
from infrastructure.local.stack.local_stack import LocalStack, StackOptions
from infrastructure.queues import queue_depth
from tests.slow.test_local_stack import TIME_SCALE, delivered_files, listening, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    root = tmp_path_factory.mktemp("chaos-stack")
    started = LocalStack(StackOptions(root=root, time_scale=TIME_SCALE)).start()
    assert started.file is not None
    opened = [started.file.control_endpoint, started.file.minio_proxy]
    try:
        yield started
    finally:
        started.stop(flush=False)
    # the control API and the MinIO proxy are closed with the stack
    assert [e for e in opened if e is None or listening(e)] == []


@pytest.fixture
def sluice(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Any]:
    """`sluice(*argv)` against the stack: (exit status, stdout); chaos is cleared afterwards."""
    monkeypatch.setenv("SLUICE_ROOT", str(stack.options.root))

    def run(*argv: str) -> tuple[int, str]:
        status = main.main(list(argv))
        captured = capsys.readouterr()
        assert status == 0, captured.err
        return status, captured.out

    yield run
    assert main.main(["chaos", "clear"]) == 0
    assert main.main(["resume", "delivery"]) == 0
    assert main.main(["resume", "forwarder"]) == 0


def target(stack: LocalStack) -> Deployment:
    assert stack.file is not None
    return deployment.from_stack(stack.file)


def put(stack: LocalStack, key: str, body: bytes) -> None:
    assert stack.file is not None
    target(stack).client("s3").put_object(Bucket=stack.file.landing_bucket, Key=key, Body=body)


def arrived(stack: LocalStack, key: str) -> list[bytes]:
    assert stack.file is not None
    return [body for k, body, _ in delivered_files(stack.file) if k == key]


def delivered_once(stack: LocalStack, key: str, body: bytes) -> None:
    """The file is in MinIO, checked against its manifest's sha256, and only once."""
    wait_until(lambda: arrived(stack, key), what=f"{key} in MinIO")
    assert stack.file is not None
    assert Counter(k for k, _, _ in delivered_files(stack.file))[key] == 1
    assert arrived(stack, key) == [body]


def redrive_says_minio_healthy(stack: LocalStack) -> bool:
    answer = target(stack).client("lambda").invoke(FunctionName="redrive", Payload=b"{}")
    assert "FunctionError" not in answer, answer["Payload"].read()
    return bool(json.loads(answer["Payload"].read())["minio_healthy"])


def test_minio_down_is_seen_by_redrive_and_delivery_then_restored(
    stack: LocalStack, sluice: Any
) -> None:
    # WHEN MinIO is cut for longer than this test
    _, out = sluice("chaos", "minio-down", "--seconds", "600", "--json")
    assert json.loads(out)["minio_down"]["armed"]
    # THEN redrive, through the MinIO secret, finds it unhealthy; so does any client of the
    # secret's endpoint, while the stack file's direct address still answers
    assert not redrive_says_minio_healthy(stack)
    client, settings = target(stack).minio()
    with pytest.raises(Exception, match=r"(?i)reset|refused|aborted|disconnected|closed"):
        client.bucket_exists(settings.bucket)
    assert stack.file is not None
    assert stack.file.minio.client().bucket_exists(stack.file.minio.bucket)
    # ... and a file landed now fails its delivery
    assert stack.runtime is not None
    errors = stack.runtime.stats("delivery").errors
    put(stack, "chaos/minio-down.txt", b"waits for MinIO")
    wait_until(
        lambda: stack.runtime is not None and stack.runtime.stats("delivery").errors > errors,
        what="a failed delivery",
    )
    # WHEN MinIO comes back THEN redrive sees it healthy and the file arrives, once
    sluice("chaos", "clear")
    assert redrive_says_minio_healthy(stack)
    delivered_once(stack, "chaos/minio-down.txt", b"waits for MinIO")


def test_throttled_firehose_refuses_records_and_nothing_is_lost(
    stack: LocalStack, sluice: Any
) -> None:
    assert stack.firehose is not None
    firehose = stack.firehose

    def throttled() -> int:
        return sum(s.get("records_throttled", 0) for s in firehose.stats().values())

    before = throttled()
    # WHEN every stream refuses every record, and a file lands
    sluice("chaos", "throttle", "--percent", "100", "--seconds", "600")
    put(stack, "chaos/throttled.txt", b"throttled, then through")
    # THEN the forwarder's records are refused
    wait_until(lambda: throttled() > before, what="throttled records")
    # WHEN the throttling ends THEN the file still arrives, once
    sluice("chaos", "clear")
    delivered_once(stack, "chaos/throttled.txt", b"throttled, then through")


def test_duplicate_events_are_delivered_once(stack: LocalStack, sluice: Any) -> None:
    assert stack.ingest is not None
    ingest = stack.ingest.stats
    sent, redelivered = ingest.duplicates_sent, ingest.redelivered
    # WHEN every event is delivered twice (and every ingest message redelivered once)
    sluice("chaos", "duplicate-events", "--seconds", "600")
    put(stack, "chaos/duplicated.txt", b"once, however often announced")
    # THEN the duplicates happened ...
    wait_until(
        lambda: ingest.duplicates_sent > sent and ingest.redelivered > redelivered,
        what="duplicated and redelivered ingest messages",
    )
    # ... and the file arrives exactly once, byte for byte
    delivered_once(stack, "chaos/duplicated.txt", b"once, however often announced")


def test_a_crashed_forwarder_worker_loses_nothing(stack: LocalStack, sluice: Any) -> None:
    assert stack.runtime is not None
    runtime = stack.runtime
    crashes = runtime.stats("forwarder").crashes
    # GIVEN no forwarder invocation under way: one armed crash arms one invocation at a time,
    # and the landing bucket's test event (no SDK call, so no crash) may still be in flight
    wait_until(lambda: ingest_depth(stack) == 0, what="an idle ingest queue")
    # WHEN the forwarder's next invocation is killed after its first SDK call
    _, out = sluice("chaos", "crash", "forwarder", "--after-calls", "1", "--json")
    assert json.loads(out)["crash"]["forwarder"]["after_calls"] == 1
    put(stack, "chaos/crashed.txt", b"survives a crash")
    # THEN a worker died as armed, and the file still arrives once (SQS redelivers it)
    wait_until(lambda: runtime.stats("forwarder").crashes > crashes, what="the crash")
    delivered_once(stack, "chaos/crashed.txt", b"survives a crash")
    assert runtime.armed_crash("forwarder") is None  # spent


def test_a_corrupted_upload_is_caught_and_the_archive_arrives_verified(
    stack: LocalStack, sluice: Any
) -> None:
    # WHEN the next upload is corrupted between Sluice's hashing and the minio client
    _, out = sluice("chaos", "corrupt-upload", "--count", "1", "--json")
    assert json.loads(out)["corrupt_upload"]["count_left"] == 1
    put(stack, "chaos/corrupted.bin", bytes(range(256)) * 64)
    # THEN the delivery worker spent the corruption, and the archive still arrives, its files
    # matching the manifest's sha256 (delivery caught the bad upload, deleted it and retried)
    delivered_once(stack, "chaos/corrupted.bin", bytes(range(256)) * 64)
    _, out = sluice("chaos", "status", "--json")
    assert json.loads(out)["corrupt_upload"]["count_left"] == 0
    assert stack.file is not None
    delivery_log = (Path(stack.file.logs) / "delivery.log").read_text(errors="replace")
    assert "upload attempt failed; retrying" in delivery_log


def test_paused_delivery_holds_windows_until_resumed(stack: LocalStack, sluice: Any) -> None:
    assert stack.runtime is not None
    runtime = stack.runtime
    # WHEN delivery is paused and a file lands
    _, out = sluice("pause", "delivery")
    assert "sluice redrive" in out
    put(stack, "chaos/paused.txt", b"waits for resume")
    # THEN its window waits, throttled, and nothing arrives
    wait_until(lambda: runtime.async_throttled_waiting("delivery") > 0, what="a waiting event")
    assert arrived(stack, "chaos/paused.txt") == []
    # WHEN delivery is resumed THEN the file arrives, once
    sluice("resume", "delivery")
    delivered_once(stack, "chaos/paused.txt", b"waits for resume")


def test_paused_forwarder_leaves_messages_in_the_ingest_queue(
    stack: LocalStack, sluice: Any
) -> None:
    assert stack.ingest is not None
    source = stack.ingest
    # WHEN the forwarder is paused and a file lands
    _, out = sluice("pause", "forwarder", "--json")
    assert [m["state"] for m in json.loads(out)["mappings"]] == ["Disabled"]
    received = source.stats.messages
    put(stack, "chaos/held.txt", b"held in the queue")
    wait_until(lambda: ingest_depth(stack) > 0, what="the message to wait in the ingest queue")
    assert source.stats.messages == received
    # WHEN it is resumed THEN the file arrives, once
    sluice("resume", "forwarder")
    delivered_once(stack, "chaos/held.txt", b"held in the queue")


def ingest_depth(stack: LocalStack) -> int:
    assert stack.file is not None
    return queue_depth(target(stack).client("sqs"), stack.file.ingest_queue_url)
