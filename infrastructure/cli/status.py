"""`sluice status`: where every file is, and how late, for the local stack or a deployment.

Read from where the state lives, as the status line of `sluice up` is (figures.py): the queues'
attributes, the staging bucket's `buffers/` listing against the ledger's windows and its
quarantine reason files, the latency histograms delivery keeps on each delivered window, and
whether `sluice pause` holds a stage (the forwarder's ingest mapping disabled, delivery's
reserved concurrency 0): a paused stage is not "ok", since what waits for it expires. The
oldest ingest message's age is CloudWatch's `ApproximateAgeOfOldestMessage` (SQS has no such
attribute); moto keeps no SQS metrics, so locally it is reported as unknown rather than guessed —
receiving a message to look at it would count as a receive towards `maxReceiveCount`.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from botocore.exceptions import BotoCoreError, ClientError

from delivery.latency import LatencyHistogram
from delivery.layout import WindowKeyError, window_name
from delivery.ledger import WindowState
from infrastructure.cli import deployment, pause
from infrastructure.cli.deployment import Deployment
from infrastructure.cli.errors import DeploymentError, one_line
from infrastructure.cli.figures import (
    BUFFERS_PREFIX,
    PERCENTILES,
    ledger_windows,
    seconds_text,
)
from infrastructure.queues import queue_depth
from infrastructure.tunables import load_tunables
from transform.quarantine import REASONS_PREFIX

SETTLED: Final = frozenset({WindowState.DELIVERED, WindowState.EMPTY})
PAUSED_MAPPING_STATES: Final = frozenset({"Disabled", "Disabling"})


@dataclass
class Status:
    deployment: str
    ingest_depth: int = 0
    ingest_oldest_age_seconds: float | None = None
    ingest_dlq_depth: int = 0
    delivery_dlq_depth: int = 0
    requeue_dlq_depth: int = 0
    windows_waiting: int = 0
    """Staged in `buffers/` with no DELIVERED or EMPTY record in the ledger."""
    oldest_waiting_age_seconds: float | None = None
    windows_parked: int = 0
    windows_delivered: int = 0
    last_delivery: str | None = None
    latency_ms: dict[str, int | None] = field(default_factory=dict)
    quarantined: int = 0
    """Reason files in the staging bucket's `quarantine/reasons/`: files and records held back
    until released (`sluice quarantine`). Shown, not judged: a version gone for good stays."""
    paused: list[str] = field(default_factory=list)
    """Stages `sluice pause` holds: forwarder, delivery."""
    pause_unknown: dict[str, str] = field(default_factory=dict)
    """Stages whose pause state could not be read, and why."""

    @property
    def healthy(self) -> bool:
        dlqs = self.ingest_dlq_depth + self.delivery_dlq_depth + self.requeue_dlq_depth
        return dlqs == 0 and self.windows_parked == 0 and not self.paused

    def verdict(self) -> str:
        if self.healthy:
            return "ok"
        problems = []
        if self.ingest_dlq_depth + self.delivery_dlq_depth + self.requeue_dlq_depth:
            problems.append("a DLQ holds messages (`sluice redrive`)")
        if self.windows_parked:
            problems.append("windows parked (`sluice redrive --parked`)")
        problems += [f"{stage} paused (`sluice resume {stage}`)" for stage in self.paused]
        return "needs attention: " + "; ".join(problems)

    def stages(self) -> str:
        def state(stage: str) -> str:
            if stage in self.paused:
                return f"{stage} PAUSED"
            if stage in self.pause_unknown:
                return f"{stage} unknown ({self.pause_unknown[stage]})"
            return f"{stage} running"

        return ", ".join(state(stage) for stage in pause.FUNCTIONS)

    def text(self) -> str:
        def age(seconds: float | None, unknown: str = "-") -> str:
            return unknown if seconds is None else f"{seconds:.0f} s"

        latency = " ".join(f"{name} {seconds_text(v)}" for name, v in self.latency_ms.items())
        held = " (`sluice quarantine list`)" if self.quarantined else ""
        return "\n".join(
            [
                f"Sluice ({self.deployment})",
                f"  ingest queue      {self.ingest_depth} messages, oldest "
                f"{age(self.ingest_oldest_age_seconds, 'unknown (no CloudWatch metric)')}",
                f"  DLQs              ingest {self.ingest_dlq_depth}, delivery "
                f"{self.delivery_dlq_depth}, requeue {self.requeue_dlq_depth}",
                f"  windows waiting   {self.windows_waiting}, oldest "
                f"{age(self.oldest_waiting_age_seconds)}",
                f"  windows parked    {self.windows_parked}",
                f"  delivered         {self.windows_delivered} windows, last "
                f"{self.last_delivery or '-'}",
                f"  latency           {latency}",
                f"  quarantined       {self.quarantined} held back{held}",
                f"  stages            {self.stages()}",
                f"  verdict           {self.verdict()}",
            ]
        )


def collect(target: Deployment, *, now: float | None = None) -> Status:
    now = time.time() if now is None else now
    sqs = target.client("sqs")
    found = Status(
        deployment=target.name,
        ingest_depth=queue_depth(sqs, target.ingest_queue_url),
        ingest_dlq_depth=queue_depth(sqs, target.ingest_dlq_url),
        delivery_dlq_depth=queue_depth(sqs, target.delivery_dlq_url),
        requeue_dlq_depth=queue_depth(sqs, target.requeue_dlq_url),
        ingest_oldest_age_seconds=_oldest_message_age(target, now),
        quarantined=_count_keys(target, REASONS_PREFIX),
    )
    found.paused, found.pause_unknown = _paused(target)
    windows = {
        w.window_id: w for w in ledger_windows(target.client("dynamodb"), target.ledger_table)
    }
    histogram = LatencyHistogram()
    last_ms = 0
    for window in windows.values():
        if window.state == WindowState.PARKED:
            found.windows_parked += 1
        if window.state == WindowState.DELIVERED:
            found.windows_delivered += 1
            histogram.add(window.latency)
            last_ms = max(last_ms, window.delivered_at_ms or 0)
    found.latency_ms = {name: histogram.percentile(q) for name, q in PERCENTILES}
    if last_ms:
        found.last_delivery = datetime.fromtimestamp(last_ms / 1000, UTC).isoformat(
            timespec="seconds"
        )
    extension = load_tunables().firehose.file_extension
    oldest: float | None = None
    for key, modified in _staged(target):
        try:
            window_id = window_name(key, extension).window_id
        except WindowKeyError:
            continue
        recorded = windows.get(window_id)
        if recorded is not None and recorded.state in SETTLED:
            continue
        found.windows_waiting += 1
        oldest = modified if oldest is None else min(oldest, modified)
    if oldest is not None:
        found.oldest_waiting_age_seconds = max(0.0, now - oldest)
    return found


def _staged(target: Deployment) -> list[tuple[str, float]]:
    paginator = target.client("s3").get_paginator("list_objects_v2")
    return [
        (obj["Key"], obj["LastModified"].timestamp())
        for page in paginator.paginate(Bucket=target.staging_bucket, Prefix=BUFFERS_PREFIX)
        for obj in page.get("Contents", [])
    ]


def _count_keys(target: Deployment, prefix: str) -> int:
    paginator = target.client("s3").get_paginator("list_objects_v2")
    return sum(
        page.get("KeyCount", 0)
        for page in paginator.paginate(Bucket=target.staging_bucket, Prefix=prefix)
    )


def _paused(target: Deployment) -> tuple[list[str], dict[str, str]]:
    """The stages `sluice pause` holds, and those whose state could not be read (and why)."""
    client = target.client("lambda")
    paused: list[str] = []
    unknown: dict[str, str] = {}
    try:
        mappings = pause.ingest_mappings(target, client)
        if any(m.get("State") in PAUSED_MAPPING_STATES for m in mappings):
            paused.append("forwarder")
    except (ClientError, BotoCoreError, DeploymentError) as err:
        unknown["forwarder"] = one_line(str(err))
    try:
        reserved = client.get_function_concurrency(FunctionName=target.function("delivery"))
        if reserved.get("ReservedConcurrentExecutions") == 0:
            paused.append("delivery")
    except (ClientError, BotoCoreError, DeploymentError) as err:
        unknown["delivery"] = one_line(str(err))
    return paused, unknown


def _oldest_message_age(target: Deployment, now: float) -> float | None:
    """CloudWatch's ApproximateAgeOfOldestMessage of the ingest queue, last 5 minutes."""
    queue = target.ingest_queue_url.rstrip("/").rsplit("/", 1)[-1]
    end = datetime.fromtimestamp(now, UTC)
    try:
        points = target.client("cloudwatch").get_metric_statistics(
            Namespace="AWS/SQS",
            MetricName="ApproximateAgeOfOldestMessage",
            Dimensions=[{"Name": "QueueName", "Value": queue}],
            StartTime=end - timedelta(minutes=5),
            EndTime=end,
            Period=60,
            Statistics=["Maximum"],
        )["Datapoints"]
    except (ClientError, BotoCoreError):
        return None
    if not points:
        return None
    latest = max(points, key=lambda point: point["Timestamp"])
    return float(latest["Maximum"])


def status(args: argparse.Namespace, root: Path) -> int:
    found = collect(deployment.resolve(args, root))
    document = asdict(found) | {"healthy": found.healthy, "verdict": found.verdict()}
    print(json.dumps(document) if args.json else found.text())
    return 0 if found.healthy else 1
