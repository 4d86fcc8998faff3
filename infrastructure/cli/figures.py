"""The figures of the status line, read from the stack's own services.

Counts come from where the state lives — the landing and staging buckets, the forwarder's
idempotency table, the queues, and delivery's ledger — and latency percentiles from the
histograms delivery keeps on each delivered window (delivery.latency), so the same code reads
the same figures from AWS as from the local stack: only the endpoint differs.

Each figure is one listing or scan: fine for a local stack or a small deployment, refreshed
every few seconds; not meant for millions of objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from delivery.latency import LatencyHistogram
from delivery.ledger import WINDOW_PREFIX, WindowState
from infrastructure.cli.deployment import Deployment
from infrastructure.queues import queue_depth
from transform.idempotency import COMPLETED
from transform.intake.keys import is_api_key

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client

BUFFERS_PREFIX: Final = "buffers/"
PERCENTILES: Final = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))


@dataclass
class Figures:
    files_landed: int = 0
    """Versions in the landing bucket (not delete markers): each version is a file to deliver."""
    files_landed_by_api: int = 0
    """Of those, the ones the HTTPS intake landed (under `<producer>/api/`)."""
    files_forwarded: int = 0
    """Versions the forwarder completed (its idempotency records): the same unit as landed."""
    windows_staged: int = 0
    windows_delivered: int = 0
    windows_parked: int = 0
    files_delivered: int = 0
    archives_delivered: int = 0
    ingest_depth: int = 0
    ingest_dlq_depth: int = 0
    delivery_dlq_depth: int = 0
    requeue_dlq_depth: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    def latency_ms(self) -> dict[str, int | None]:
        return {name: self.latency.percentile(q) for name, q in PERCENTILES}

    def line(self) -> str:
        """One line for a terminal."""
        percentiles = " ".join(
            f"{name} {seconds_text(value)}" for name, value in self.latency_ms().items()
        )
        parked = f", {self.windows_parked} parked" if self.windows_parked else ""
        return (
            f"versions landed {self.files_landed} ({self.files_landed_by_api} by API), "
            f"forwarded {self.files_forwarded} | "
            f"windows staged {self.windows_staged} | delivered {self.windows_delivered} "
            f"({self.files_delivered} files, {self.archives_delivered} archives{parked}) | "
            f"ingest {self.ingest_depth} dlq {self.ingest_dlq_depth} | "
            f"delivery dlq {self.delivery_dlq_depth} | requeue dlq {self.requeue_dlq_depth} | "
            f"latency {percentiles}"
        )


def seconds_text(value: int | None) -> str:
    return "-" if value is None else f"{value / 1000:.0f}s"


def collect(target: Deployment) -> Figures:
    s3, sqs, dynamodb = target.client("s3"), target.client("sqs"), target.client("dynamodb")
    landed, by_api = _count_versions(s3, target.landing_bucket)
    figures = Figures(
        files_landed=landed,
        files_landed_by_api=by_api,
        windows_staged=_count_objects(s3, target.staging_bucket, BUFFERS_PREFIX),
        files_forwarded=_count_completed(dynamodb, target.idempotency_table),
        ingest_depth=queue_depth(sqs, target.ingest_queue_url),
        ingest_dlq_depth=queue_depth(sqs, target.ingest_dlq_url),
        delivery_dlq_depth=queue_depth(sqs, target.delivery_dlq_url),
        requeue_dlq_depth=queue_depth(sqs, target.requeue_dlq_url),
    )
    for window in ledger_windows(dynamodb, target.ledger_table):
        if window.state == WindowState.PARKED:
            figures.windows_parked += 1
        if window.state != WindowState.DELIVERED:
            continue
        figures.windows_delivered += 1
        figures.files_delivered += window.file_count
        figures.archives_delivered += window.parts
        figures.latency.add(window.latency)
    return figures


def _count_objects(s3: S3Client, bucket: str, prefix: str) -> int:
    count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        count += page.get("KeyCount", 0)
    return count


def _count_versions(s3: S3Client, bucket: str) -> tuple[int, int]:
    """Versions in `bucket`, and how many of them the HTTPS intake landed."""
    count = by_api = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        versions = page.get("Versions", [])
        count += len(versions)
        by_api += sum(1 for v in versions if is_api_key(v["Key"]))
    return count, by_api


def _count_completed(dynamodb: DynamoDBClient, table: str) -> int:
    count = 0
    arguments: dict[str, Any] = {
        "TableName": table,
        "Select": "COUNT",
        "FilterExpression": "#status = :completed",
        "ExpressionAttributeNames": {"#status": "status"},
        "ExpressionAttributeValues": {":completed": {"S": COMPLETED}},
    }
    while True:
        page = dynamodb.scan(**arguments)
        count += page.get("Count", 0)
        if "LastEvaluatedKey" not in page:
            return count
        arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]


@dataclass(frozen=True)
class WindowSummary:
    """What the figures need of one ledger window."""

    window_id: str
    state: str | None
    file_count: int
    parts: int
    delivered_at_ms: int | None
    latency: LatencyHistogram


def ledger_windows(dynamodb: DynamoDBClient, table: str) -> list[WindowSummary]:
    """Every window of the ledger, from one filtered scan projecting only what is summarised."""
    arguments: dict[str, Any] = {
        "TableName": table,
        "FilterExpression": "begins_with(pk, :win)",
        "ProjectionExpression": "pk, #state, file_count, parts, delivered_at_ms, latency_ms",
        "ExpressionAttributeNames": {"#state": "state"},
        "ExpressionAttributeValues": {":win": {"S": WINDOW_PREFIX}},
    }
    found: list[WindowSummary] = []
    while True:
        page = dynamodb.scan(**arguments)
        found.extend(_summary(item) for item in page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return found
        arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _summary(item: dict[str, Any]) -> WindowSummary:
    delivered = item.get("delivered_at_ms", {}).get("N")
    histogram = {k: int(v["N"]) for k, v in item.get("latency_ms", {}).get("M", {}).items()}
    return WindowSummary(
        window_id=item["pk"]["S"].removeprefix(WINDOW_PREFIX),
        state=item.get("state", {}).get("S"),
        file_count=int(item.get("file_count", {}).get("N", 0)),
        parts=len(item.get("parts", {}).get("L", [])),
        delivered_at_ms=None if delivered is None else int(delivered),
        latency=LatencyHistogram.from_item(histogram),
    )
