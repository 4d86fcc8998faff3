"""The status line's figures (infrastructure.cli.figures), read from moto in process."""

from __future__ import annotations

from delivery.latency import LatencyHistogram
from delivery.ledger import Ledger, PartRecord
from infrastructure.cli import figures
from infrastructure.cli.deployment import Deployment


def part(number: int) -> PartRecord:
    return PartRecord(number, f"sluice/w.p{number:03d}.tar.gz", None, "0" * 64, "e", 10, 8, 1, "x")


def test_figures_count_each_stage_and_merge_the_windows_latency(provisioned: Deployment) -> None:
    target = provisioned
    s3, sqs, dynamodb = target.client("s3"), target.client("sqs"), target.client("dynamodb")
    # GIVEN three landed files, two forwarded (one still in progress), one staged window
    for key in ("a.json", "b.csv", "c.bin"):
        s3.put_object(Bucket=target.landing_bucket, Key=key, Body=b"x")
    for file_id, status in (("f1", "COMPLETED"), ("f2", "COMPLETED"), ("f3", "IN_PROGRESS")):
        dynamodb.put_item(
            TableName=target.idempotency_table,
            Item={"id": {"S": file_id}, "status": {"S": status}},
        )
    s3.put_object(Bucket=target.staging_bucket, Key="buffers/dt=x/hour=1/w1.json.gz", Body=b"")
    s3.put_object(Bucket=target.staging_bucket, Key="errors/processing-failed/e.json.gz", Body=b"")
    # ... two windows delivered (one in two parts), one parked, one claimed
    ledger = Ledger(dynamodb, target.ledger_table, 3600)
    for window, parts, latencies in (
        ("w1", [part(1)], [61_000, 62_000]),
        ("w2", [part(1), part(2)], [70_000, 190_000]),
    ):
        ledger.begin(window, f"buffers/{window}.json.gz", [])
        ledger.mark_delivered(
            window, parts, file_count=len(latencies), latency=LatencyHistogram.of(latencies)
        )
    ledger.begin("w3", "buffers/w3.json.gz", [])
    ledger.mark_parked("w3", "MinIO down")
    ledger.begin("w4", "buffers/w4.json.gz", [])
    # ... one message in the delivery DLQ, two in requeue's
    sqs.send_message(QueueUrl=target.delivery_dlq_url, MessageBody="{}")
    sqs.send_message(QueueUrl=target.requeue_dlq_url, MessageBody="{}")
    sqs.send_message(QueueUrl=target.requeue_dlq_url, MessageBody="{}")
    # WHEN the figures are collected
    found = figures.collect(target)
    # THEN each stage is counted where its state lives
    assert (found.files_landed, found.files_forwarded, found.windows_staged) == (3, 2, 1)
    assert (found.windows_delivered, found.files_delivered, found.archives_delivered) == (2, 4, 3)
    assert found.windows_parked == 1
    # ... the ingest queue holds the three files' S3 events and S3's test event
    assert (found.ingest_depth, found.ingest_dlq_depth, found.delivery_dlq_depth) == (4, 0, 1)
    assert found.requeue_dlq_depth == 2
    # ... and the percentiles come from both windows' histograms
    assert found.latency_ms() == {"p50": 62_000, "p95": 190_000, "p99": 190_000}
    line = found.line()
    assert "delivered 2 (4 files, 3 archives, 1 parked)" in line
    assert "latency p50 62s p95 190s p99 190s" in line


def test_no_delivery_yet_shows_no_latency(provisioned: Deployment) -> None:
    found = figures.collect(provisioned)
    assert found.files_landed == 0
    assert found.line().endswith("latency p50 - p95 - p99 -")


def test_landed_and_forwarded_both_count_versions(provisioned: Deployment) -> None:
    target = provisioned
    s3, dynamodb = target.client("s3"), target.client("dynamodb")
    # GIVEN one key landed three times and another once through the HTTPS intake, then deleted
    # (a delete marker), and every one of the four versions forwarded
    for body in (b"1", b"2", b"3"):
        s3.put_object(Bucket=target.landing_bucket, Key="acme/daily.json", Body=body)
    api_key = "acme/api/files/2026-12-06/once.json"
    s3.put_object(Bucket=target.landing_bucket, Key=api_key, Body=b"x")
    s3.delete_object(Bucket=target.landing_bucket, Key=api_key)
    for n in range(4):
        dynamodb.put_item(
            TableName=target.idempotency_table,
            Item={"id": {"S": f"f{n}"}, "status": {"S": "COMPLETED"}},
        )
    # WHEN the figures are collected
    found = figures.collect(target)
    # THEN landed counts the four versions, as forwarded does, one of them by API, and the line
    # says they are versions
    assert (found.files_landed, found.files_landed_by_api, found.files_forwarded) == (4, 1, 4)
    assert found.line().startswith("versions landed 4 (1 by API), forwarded 4 | ")
