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
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from infrastructure.cli import deployment, main
from infrastructure.cli.deployment import Deployment
from infrastructure.cli.figures import queue_depth
from infrastructure.local.stack import LocalStack, StackOptions
from tests.integration.runtime_support import wait_until
from tests.slow.test_local_stack import TIME_SCALE

pytestmark = pytest.mark.slow

SETTLE_SECONDS = 420
"""Longest a gameday waits for everything to be delivered: the ingest queue's visibility
timeout (70 s, real time) twice over, plus buffers and retries."""


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
        timeout=120,
    )
    # THEN every file is delivered exactly once, and the DLQ is empty
    gameday.assert_exactly_once(gameday.all_delivered(redrive=True))
    assert queue_depth(target.client("sqs"), target.delivery_dlq_url) == 0


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
