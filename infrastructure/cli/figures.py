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
from typing import TYPE_CHECKING, Any, Final, Protocol

from delivery.latency import LatencyHistogram
from delivery.ledger import WINDOW_PREFIX, WindowState
from transform.idempotency import COMPLETED

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

BUFFERS_PREFIX: Final = "buffers/"
PERCENTILES: Final = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))


class Deployment(Protocol):
    """Where a deployment's state lives (a local stack's StackFile is one)."""

    @property
    def landing_bucket(self) -> str: ...

    @property
    def staging_bucket(self) -> str: ...

    @property
    def idempotency_table(self) -> str: ...

    @property
    def ledger_table(self) -> str: ...

    @property
    def ingest_queue_url(self) -> str: ...

    @property
    def ingest_dlq_url(self) -> str: ...

    @property
    def delivery_dlq_url(self) -> str: ...

    @property
    def requeue_dlq_url(self) -> str: ...


@dataclass
class Figures:
    files_landed: int = 0
    files_forwarded: int = 0
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
            f"landed {self.files_landed} | forwarded {self.files_forwarded} | "
            f"windows staged {self.windows_staged} | delivered {self.windows_delivered} "
            f"({self.files_delivered} files, {self.archives_delivered} archives{parked}) | "
            f"ingest {self.ingest_depth} dlq {self.ingest_dlq_depth} | "
            f"delivery dlq {self.delivery_dlq_depth} | requeue dlq {self.requeue_dlq_depth} | "
            f"latency {percentiles}"
        )


def seconds_text(value: int | None) -> str:
    return "-" if value is None else f"{value / 1000:.0f}s"


def collect(
    names: Deployment, *, s3: S3Client, sqs: SQSClient, dynamodb: DynamoDBClient
) -> Figures:
    figures = Figures(
        files_landed=_count_objects(s3, names.landing_bucket, ""),
        windows_staged=_count_objects(s3, names.staging_bucket, BUFFERS_PREFIX),
        files_forwarded=_count_completed(dynamodb, names.idempotency_table),
        ingest_depth=queue_depth(sqs, names.ingest_queue_url),
        ingest_dlq_depth=queue_depth(sqs, names.ingest_dlq_url),
        delivery_dlq_depth=queue_depth(sqs, names.delivery_dlq_url),
        requeue_dlq_depth=queue_depth(sqs, names.requeue_dlq_url),
    )
    for window in _windows(dynamodb, names.ledger_table):
        state = window.get("state", {}).get("S")
        if state == WindowState.PARKED:
            figures.windows_parked += 1
        if state != WindowState.DELIVERED:
            continue
        figures.windows_delivered += 1
        figures.files_delivered += int(window.get("file_count", {}).get("N", 0))
        figures.archives_delivered += len(window.get("parts", {}).get("L", []))
        histogram = {k: int(v["N"]) for k, v in window.get("latency_ms", {}).get("M", {}).items()}
        figures.latency.add(LatencyHistogram.from_item(histogram))
    return figures


def queue_depth(sqs: SQSClient, url: str) -> int:
    """Messages waiting plus messages in flight."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(value) for value in attributes.values())


def _count_objects(s3: S3Client, bucket: str, prefix: str) -> int:
    count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        count += page.get("KeyCount", 0)
    return count


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


def _windows(dynamodb: DynamoDBClient, table: str) -> list[dict[str, Any]]:
    arguments: dict[str, Any] = {
        "TableName": table,
        "FilterExpression": "begins_with(pk, :win)",
        "ProjectionExpression": "#state, file_count, parts, latency_ms",
        "ExpressionAttributeNames": {"#state": "state"},
        "ExpressionAttributeValues": {":win": {"S": WINDOW_PREFIX}},
    }
    items: list[dict[str, Any]] = []
    while True:
        page = dynamodb.scan(**arguments)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]
