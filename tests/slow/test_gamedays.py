"""Gamedays (issue 6): Sluice broken on purpose on the local stack while files keep landing, each
ending with `sluice reconcile` reporting every file delivered — nothing missing, nothing
corrupted, nothing delivered twice.

Chaos is armed the way an operator arms it (`sluice chaos …`, main.main with SLUICE_ROOT at the
stack) and lives in the runtime and its proxies, never in handler code. One stack serves the
module, its clock compressed (TIME_SCALE); each gameday reconciles only what it landed (by key
prefix and time), and clears its chaos. No duration is asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from delivery.ledger import Ledger, WindowState
from infrastructure.cli import deployment, main
from infrastructure.cli.deployment import Deployment
from infrastructure.local.provision.s3_inventory import write_report
from infrastructure.local.stack.local_stack import LocalStack, StackOptions
from infrastructure.queues import queue_depth
from infrastructure.tunables import read_tunables_document
from tests.integration.runtime_support import wait_until
from tests.slow.test_local_stack import TIME_SCALE
from transform.envelope import file_id

pytestmark = pytest.mark.slow

SETTLE_SECONDS = 420
"""Longest a gameday waits for everything to be delivered: the ingest queue's visibility
timeout (70 s, real time) twice over, plus buffers and retries."""

KILL_ALLOWANCE_SECONDS = 60
"""Past a function's timeout, how long the runtime may take to notice and kill it: its watch is
a timed poll on the worker's pipe, so this covers only a starved thread on a loaded machine."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    root = tmp_path_factory.mktemp("gamedays")
    started = LocalStack(StackOptions(root=root, time_scale=TIME_SCALE)).start()
    try:
        yield started
    finally:
        started.stop(flush=False)


@dataclass
class Gameday:
    stack: LocalStack
    capsys: pytest.CaptureFixture[str]
    prefix: str = field(default_factory=lambda: f"gameday-{uuid.uuid4().hex[:8]}/")
    started: datetime = field(default_factory=lambda: datetime.now(UTC) - timedelta(seconds=1))
    landed: dict[str, bytes] = field(default_factory=dict)

    @property
    def target(self) -> Deployment:
        assert self.stack.file is not None
        return deployment.from_stack(self.stack.file)

    def sluice(self, *argv: str, expect: int | None = 0) -> str:
        """`sluice …` against the stack; its stdout (the exit status checked unless None)."""
        status = main.main(list(argv))
        captured = self.capsys.readouterr()
        if expect is not None:
            assert status == expect, f"sluice {' '.join(argv)}: {captured.out}{captured.err}"
        return captured.out

    def land(self, count: int, *, every: float = 0.0, name: str = "file") -> None:
        """`count` files under the gameday's prefix, `every` seconds apart."""
        s3 = self.target.client("s3")
        for n in range(count):
            key = f"{self.prefix}{name}-{len(self.landed):04d}.json"
            body = json.dumps({"gameday": self.prefix, "n": n, "pad": "x" * (n * 37 % 900)})
            s3.put_object(Bucket=self.target.landing_bucket, Key=key, Body=body.encode())
            self.landed[key] = body.encode()
            time.sleep(every)

    def reconcile(self) -> dict[str, Any]:
        out = self.sluice(
            "reconcile",
            "--since",
            self.started.isoformat(),
            "--prefix",
            self.prefix,
            "--json",
            expect=None,
        )
        document: dict[str, Any] = json.loads(out)
        return document

    def all_delivered(self, *, redrive: bool = False) -> dict[str, Any]:
        """Wait until reconcile finds every landed file delivered; its final report. With
        `redrive`, runs `sluice redrive --min-age 0` between looks, as an operator would."""

        def settled() -> dict[str, Any] | None:
            if redrive:
                self.sluice("redrive", "--min-age", "0", "--json", expect=None)
            report = self.reconcile()
            summary = report["summary"]
            arrived = summary["delivered"] + summary["redelivered"]
            return report if arrived == len(self.landed) else None

        return wait_until(
            settled, what=f"{len(self.landed)} files reconciled", timeout=SETTLE_SECONDS, every=5
        )

    def assert_exactly_once(self, report: dict[str, Any]) -> None:
        """Reconcile's verdict, and the bytes: each file once in MinIO, as landed."""
        assert report["ok"], report
        summary = report["summary"]
        assert summary["delivered"] == len(self.landed), summary
        for status in ("missing", "delivered-twice", "checksum-mismatch", "pending", "parked"):
            assert summary[status] == 0, (status, report)
        out = self.sluice(
            "reconcile",
            "--since",
            self.started.isoformat(),
            "--prefix",
            self.prefix,
            "--verify-bytes",
        )
        assert f"{len(self.landed)} delivered" in out


@pytest.fixture
def gameday(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Gameday]:
    yield from gameday_on(stack, monkeypatch, capsys)


def gameday_on(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Gameday]:
    """A gameday on `stack`, its chaos cleared and every stage resumed afterwards."""
    monkeypatch.setenv("SLUICE_ROOT", str(stack.options.root))
    day = Gameday(stack, capsys)
    yield day
    day.sluice("chaos", "clear")
    day.sluice("resume", "delivery")
    day.sluice("resume", "forwarder")


def test_minio_down_longer_than_delivery_retries_then_back_and_redriven(gameday: Gameday) -> None:
    target = gameday.target
    # GIVEN files flowing, then MinIO cut for a minute while more keep landing
    gameday.land(5)
    gameday.sluice("chaos", "minio-down", "--seconds", "60")
    gameday.land(25, every=0.5)
    # THEN deliveries fail past Lambda's retries into the delivery DLQ
    wait_until(
        lambda: queue_depth(target.client("sqs"), target.delivery_dlq_url) > 0,
        what="failed deliveries in the delivery DLQ",
        timeout=SETTLE_SECONDS,
    )
    status = json.loads(gameday.sluice("status", "--json", expect=1))
    assert status["delivery_dlq_depth"] > 0
    # WHEN MinIO is back and the operator redrives
    wait_until(
        lambda: not json.loads(gameday.sluice("chaos", "status", "--json"))["minio_down"]["armed"],
        what="MinIO back",
        timeout=SETTLE_SECONDS,
    )
    # THEN every file is delivered exactly once, and the DLQ is empty
    gameday.assert_exactly_once(gameday.all_delivered(redrive=True))
    assert queue_depth(target.client("sqs"), target.delivery_dlq_url) == 0


def test_commands_that_read_minio_while_it_is_down_fail_in_one_line(gameday: Gameday) -> None:
    # GIVEN a file delivered, then MinIO cut
    gameday.land(1)
    gameday.all_delivered()
    [key] = gameday.landed
    gameday.sluice("chaos", "minio-down", "--seconds", "60")
    root = str(gameday.stack.options.root)
    # WHEN the operator's commands that read MinIO run, as the operator runs them
    commands = [
        ["reconcile", "--since", "5m"],
        ["trace", f"s3://{gameday.target.landing_bucket}/{key}"],
        ["redrive", "--dry-run"],
        ["smoke", "--timeout", "30"],
    ]
    results = {
        command[0]: subprocess.run(  # noqa: S603  # our own command
            [str(Path(sys.executable).with_name("sluice")), *command],
            env={**os.environ, "SLUICE_ROOT": root},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        for command in commands
    }
    # THEN each fails with one line saying MinIO does not answer, exit status 1, no traceback
    for name, result in results.items():
        assert "Traceback" not in result.stdout + result.stderr, name
        assert result.returncode == 1, (name, result.stdout, result.stderr)
        [line] = result.stderr.splitlines() or result.stdout.splitlines()[-1:]
        assert "MinIO does not answer" in line, (name, line)


def test_minio_refusing_writes_past_delivery_retries_parks_nothing(gameday: Gameday) -> None:
    target = gameday.target
    # GIVEN MinIO answering reads and HEADs but refusing every write for longer than delivery's
    # retries (a full disk, a policy change) while files keep landing
    gameday.land(5)
    gameday.sluice("chaos", "minio-read-only", "--seconds", "90")
    gameday.land(20, every=0.5)
    # THEN deliveries fail past Lambda's retries into the delivery DLQ ...
    wait_until(
        lambda: queue_depth(target.client("sqs"), target.delivery_dlq_url) > 0,
        what="failed deliveries in the delivery DLQ",
        timeout=SETTLE_SECONDS,
    )
    # ... redrive's health probe, a write, says MinIO is not healthy (its HEAD still answers),
    # so redrive spends no window's redrives on it, and no window is parked
    answer = target.client("lambda").invoke(FunctionName="redrive", Payload=b"{}")
    assert "FunctionError" not in answer
    assert json.loads(answer["Payload"].read())["minio_healthy"] is False
    assert parked_windows(target) == []
    # WHEN writes work again
    wait_until(
        lambda: (
            not json.loads(gameday.sluice("chaos", "status", "--json"))["minio_read_only"]["armed"]
        ),
        what="MinIO taking writes again",
        timeout=SETTLE_SECONDS,
    )
    # THEN every file is delivered exactly once, nothing was parked, and the DLQ is empty
    gameday.assert_exactly_once(gameday.all_delivered(redrive=True))
    assert parked_windows(target) == []
    assert queue_depth(target.client("sqs"), target.delivery_dlq_url) == 0


def parked_windows(target: Deployment) -> list[str]:
    ledger = Ledger(target.client("dynamodb"), target.ledger_table, 3600)
    return [r.window_id for r in ledger.pending_windows(WindowState.PARKED, limit=100)]


def test_firehose_throttling_half_the_records(gameday: Gameday) -> None:
    # GIVEN Firehose refusing half the records for 20 s while files land
    gameday.sluice("chaos", "throttle", "--percent", "50", "--seconds", "20")
    gameday.land(40, every=0.4)
    # THEN the forwarder's retries and SQS's redelivery bring every file through, once
    gameday.assert_exactly_once(gameday.all_delivered())


def test_every_event_twice_and_every_message_redelivered(gameday: Gameday) -> None:
    # GIVEN every S3 event delivered twice, every ingest message redelivered once
    gameday.sluice("chaos", "duplicate-events", "--seconds", "30")
    gameday.land(30, every=0.3)
    # THEN each file is delivered once
    gameday.assert_exactly_once(gameday.all_delivered())


def test_forwarder_and_delivery_killed_mid_work(gameday: Gameday) -> None:
    # GIVEN the forwarder killed mid-batch (after its second SDK call: resolving versions)
    gameday.sluice("chaos", "crash", "forwarder", "--after-calls", "2")
    gameday.land(10)
    # ... and delivery killed once between its claims and its upload, and once after the
    # upload, before the window is marked delivered (its calls: the ledger read, the staged
    # window, the claims transaction, begin; then mark delivered)
    gameday.sluice("chaos", "crash", "delivery", "--after-calls", "3")
    gameday.land(10)
    gameday.all_delivered()
    gameday.sluice("chaos", "crash", "delivery", "--after-calls", "5", "--phase", "before")
    gameday.land(10)
    # THEN Lambda's retries and SQS's redelivery deliver each file once
    gameday.assert_exactly_once(gameday.all_delivered())
    assert gameday.stack.runtime is not None
    assert gameday.stack.runtime.stats("forwarder").crashes >= 1
    assert gameday.stack.runtime.stats("delivery").crashes >= 2


def test_corrupted_uploads_are_caught_and_retried(gameday: Gameday) -> None:
    # GIVEN the next three archive uploads corrupted between Sluice's hashing and MinIO
    gameday.sluice("chaos", "corrupt-upload", "--count", "3")
    gameday.land(30, every=0.2)
    # THEN every file arrives verified, once, and the corruptions were all spent
    gameday.assert_exactly_once(gameday.all_delivered())
    left = json.loads(gameday.sluice("chaos", "status", "--json"))["corrupt_upload"]
    assert left["count_left"] == 0


def test_forwarder_invocation_past_its_timeout(gameday: Gameday) -> None:
    assert gameday.stack.runtime is not None
    runtime = gameday.stack.runtime
    timeouts = runtime.stats("forwarder").timeouts
    # GIVEN nothing left in the ingest queue from earlier gamedays (a stray redelivery would
    # take the crash meant for this file) ...
    target = gameday.target
    wait_until(
        lambda: queue_depth(target.client("sqs"), target.ingest_queue_url) == 0,
        what="the ingest queue to be empty",
        timeout=SETTLE_SECONDS,
    )
    # ... and the forwarder's next invocation stuck before its 3rd SDK call — for a one-file
    # batch: after claiming the file (IN_PROGRESS) and reading it, before sending it
    gameday.sluice("chaos", "crash", "forwarder", "--after-calls", "3", "--phase", "hang")
    gameday.land(1, name="stuck")
    [stuck] = gameday.landed
    # THEN the forwarder claims it (each wait starts at the event before it, and allows what the
    # pipeline itself allows: a loaded machine slows the path to the claim, not the timeout) ...
    wait_until(
        lambda: idempotency_status(gameday.target, stuck) == "IN_PROGRESS",
        what="the forwarder to claim the stuck file",
        timeout=SETTLE_SECONDS,
    )
    # ... and is killed at its timeout, its idempotency record left IN_PROGRESS
    forwarder_timeout = runtime.functions["forwarder"].timeout_seconds
    wait_until(
        lambda: runtime.stats("forwarder").timeouts > timeouts,
        what=f"the forwarder killed at its {forwarder_timeout} s timeout",
        timeout=forwarder_timeout + KILL_ALLOWANCE_SECONDS,
    )
    assert idempotency_status(gameday.target, stuck) == "IN_PROGRESS"
    # WHEN more files land, and the stuck message returns after its visibility timeout
    gameday.land(9)
    # THEN the in-progress record had expired: the file was sent, and every file went through
    # exactly once
    gameday.assert_exactly_once(gameday.all_delivered())
    assert idempotency_status(gameday.target, stuck) == "COMPLETED"


def test_processor_invocations_failing_as_a_whole_are_requeued(gameday: Gameday) -> None:
    assert gameday.stack.runtime is not None
    runtime = gameday.stack.runtime
    requeued = runtime.stats("requeue").invocations
    # GIVEN the processor's next invocations dying as they start — more than Firehose's
    # retries of a batch, so whole batches go to errors/
    retries = gameday.stack.tunables.firehose.processor_retries
    times = str(2 * (1 + retries))  # both streams' batches
    gameday.sluice("chaos", "crash", "processor", "--after-calls", "0", "--times", times)
    gameday.land(20)
    # THEN requeue puts those records back into Firehose, and every file arrives once
    wait_until(
        lambda: runtime.stats("requeue").invocations > requeued,
        what="requeue invoked for errors/",
        timeout=SETTLE_SECONDS,
    )
    gameday.assert_exactly_once(gameday.all_delivered())


def idempotency_status(target: Deployment, key: str) -> str | None:
    """The forwarder's record of the key's only version."""
    s3 = target.client("s3")
    [version] = s3.list_object_versions(Bucket=target.landing_bucket, Prefix=key)["Versions"]
    item = target.client("dynamodb").get_item(
        TableName=target.idempotency_table,
        Key={"id": {"S": file_id(target.landing_bucket, key, version["VersionId"])}},
        ConsistentRead=True,
    )
    status: str | None = item.get("Item", {}).get("status", {}).get("S")
    return status


# ---------------------------------------------------------------- poison files

READING_FIELDS: list[dict[str, Any]] = [{"name": "sensor", "type": "string"}]
STRICT_SCHEMA = {
    "type": "record",
    "name": "Reading",
    "fields": [*READING_FIELDS, {"name": "celsius", "type": "double"}],
}
FIXED_SCHEMA = {
    "type": "record",
    "name": "Reading",
    "fields": [*READING_FIELDS, {"name": "celsius", "type": ["null", "double"], "default": None}],
}


@pytest.fixture(scope="module")
def schema_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("schemas") / "reading.avsc"


@pytest.fixture(scope="module")
def poison_stack(
    tmp_path_factory: pytest.TempPathFactory, schema_file: Path
) -> Iterator[LocalStack]:
    """A stack whose tunables check `poison/` against a schema of the test's (an absolute
    path: a schema tried locally before it is shipped)."""
    schema_file.write_text(json.dumps(STRICT_SCHEMA))
    document = read_tunables_document()
    document["processor"]["payload_schemas"].append(
        {"prefix": "poison/", "schema": str(schema_file), "format": "ndjson", "table": "poison"}
    )
    tunables = tmp_path_factory.mktemp("tunables") / "tunables.json"
    tunables.write_text(json.dumps(document))
    root = tmp_path_factory.mktemp("poison")
    options = StackOptions(root=root, time_scale=TIME_SCALE, tunables_file=tunables)
    started = LocalStack(options).start()
    try:
        yield started
    finally:
        started.stop(flush=False)


def test_poison_files_quarantined_schema_fixed_released_delivered(
    poison_stack: LocalStack,
    schema_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SLUICE_ROOT", str(poison_stack.options.root))
    gameday = Gameday(poison_stack, capsys, prefix="poison/")
    s3 = gameday.target.client("s3")
    # GIVEN readings that pass the schema, and readings in Fahrenheit that fail it
    for n in range(10):
        key = f"poison/sensor-{n}.ndjson"
        field_ = "celsius" if n % 2 else "fahrenheit"
        body = (json.dumps({"sensor": f"s{n}", field_: 20.5}) + "\n").encode()
        s3.put_object(Bucket=gameday.target.landing_bucket, Key=key, Body=body)
        gameday.landed[key] = body

    def quarantined() -> list[dict[str, Any]]:
        out = gameday.sluice("quarantine", "list", "--reason", "payload-schema", "--json")
        entries: list[dict[str, Any]] = json.loads(out)
        return entries

    # THEN the five failing ones are quarantined with their reason, the others delivered
    def five_held() -> list[dict[str, Any]] | None:
        entries = quarantined()
        return entries if len(entries) == 5 else None

    held = wait_until(five_held, what="5 quarantined", timeout=SETTLE_SECONDS)
    assert all("celsius" in entry["detail"] for entry in held)

    def good_delivered() -> dict[str, Any] | None:
        report = gameday.reconcile()
        return report if report["summary"]["delivered"] == 5 else None

    report = wait_until(good_delivered, what="the good readings delivered", timeout=SETTLE_SECONDS)
    assert report["summary"]["quarantined"] == 5
    # WHEN the schema is fixed (deployed: new execution environments) and they are released
    schema_file.write_text(json.dumps(FIXED_SCHEMA))
    assert poison_stack.runtime is not None
    poison_stack.runtime.recycle("processor")
    out = gameday.sluice("quarantine", "release", "--reason", "payload-schema")
    assert "5 of 5 released" in out
    # THEN they are delivered, each once, and nothing is held back any more
    gameday.assert_exactly_once(gameday.all_delivered())
    assert quarantined() == []


def ingest_events(target: Deployment) -> list[dict[str, Any]] | None:
    """Up to 10 messages off the ingest queue, or None."""
    got = target.client("sqs").receive_message(
        QueueUrl=target.ingest_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
    )
    return got.get("Messages") or None


def test_events_in_the_ingest_dlq_are_moved_back_and_delivered(gameday: Gameday) -> None:
    target = gameday.target
    sqs = target.client("sqs")
    # GIVEN the forwarder paused while files land, and their events moved to the ingest DLQ
    # by hand (as `maxReceiveCount` failures would leave them)
    gameday.sluice("pause", "forwarder")
    gameday.land(5)

    moved = 0
    while moved < len(gameday.landed):
        for message in wait_until(
            lambda: ingest_events(target), what="ingest events", timeout=SETTLE_SECONDS
        ):
            sqs.send_message(QueueUrl=target.ingest_dlq_url, MessageBody=message["Body"])
            sqs.delete_message(
                QueueUrl=target.ingest_queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
            moved += "Records" in message["Body"]
    gameday.sluice("resume", "forwarder")
    # WHEN the operator moves them back (moto server lacks StartMessageMoveTask)
    out = gameday.sluice("redrive", "--ingest", "--json")
    # THEN they are moved one by one, and every file is delivered once
    assert json.loads(out)["method"] == "message-by-message"
    assert json.loads(out)["moved"] >= len(gameday.landed)
    assert queue_depth(sqs, target.ingest_dlq_url) == 0
    gameday.assert_exactly_once(gameday.all_delivered())


def test_s3_events_lost_are_found_by_the_inventory_check(gameday: Gameday) -> None:
    target = gameday.target
    sqs = target.client("sqs")
    # GIVEN files landing while the forwarder is paused, and every one of their S3 events lost
    # (taken off the ingest queue and dropped: nothing in Sluice has seen these files)
    gameday.sluice("pause", "forwarder")
    gameday.land(4, name="unannounced")

    dropped = 0
    while dropped < len(gameday.landed):
        for message in wait_until(
            lambda: ingest_events(target), what="ingest events", timeout=SETTLE_SECONDS
        ):
            sqs.delete_message(
                QueueUrl=target.ingest_queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
            dropped += "Records" in message["Body"]
    gameday.sluice("resume", "forwarder")
    # WHEN S3 Inventory's daily report lists them (stamped an hour ahead, as the next report
    # would be: the check leaves the last hour to events still on their way) and redrive runs
    write_report(
        target.client("s3"),
        target.landing_bucket,
        target.staging_bucket,
        now=datetime.now(UTC) + timedelta(hours=1, minutes=1),
    )
    answer = target.client("lambda").invoke(FunctionName="redrive", Payload=b"{}")
    assert "FunctionError" not in answer, answer["Payload"].read()
    # THEN each is delivered once: with their events gone, only the inventory check (this run
    # or the schedule's) could have announced them
    gameday.assert_exactly_once(gameday.all_delivered())
