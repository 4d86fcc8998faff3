"""`sluice status` (infrastructure.cli.status), read from moto in process."""

from __future__ import annotations

import json
import time

from delivery.latency import LatencyHistogram
from delivery.ledger import Ledger, PartRecord
from infrastructure.cli.deployment import Deployment
from infrastructure.cli.status import collect

WINDOW = "buffers/dt=2026-11-25/hour=12/st-0-1-2026-11-25-12-00-00-{}.json.gz"


def window_id(n: int) -> str:
    return (
        WINDOW.format(f"{n:08d}-0000-0000-0000-000000000000")
        .rsplit("/", 1)[1]
        .removesuffix(".json.gz")
    )


def test_windows_waiting_parked_delivered_and_the_verdict(provisioned: Deployment) -> None:
    target = provisioned
    # GIVEN four staged windows: one delivered, one parked, one claimed, one never begun
    s3, dynamodb = target.client("s3"), target.client("dynamodb")
    for n in range(4):
        s3.put_object(
            Bucket=target.staging_bucket,
            Key=WINDOW.format(f"{n:08d}-0000-0000-0000-000000000000"),
            Body=b"",
        )
    ledger = Ledger(dynamodb, target.ledger_table, 3600)
    ledger.begin(window_id(0), "k0", [])
    part = PartRecord(1, "sluice/w.tar.gz", None, "0" * 64, "e", 10, 8, 1, "x")
    ledger.mark_delivered(
        window_id(0), [part], file_count=2, latency=LatencyHistogram.of([61_000, 64_000])
    )
    ledger.begin(window_id(1), "k1", [])
    ledger.mark_parked(window_id(1), "MinIO down")
    ledger.begin(window_id(2), "k2", [])
    # WHEN the status is collected a minute later
    found = collect(target, now=time.time() + 60)
    # THEN the three undelivered windows wait, the oldest for about a minute
    assert found.windows_waiting == 3
    assert found.oldest_waiting_age_seconds is not None
    assert 55 <= found.oldest_waiting_age_seconds <= 120
    assert (found.windows_parked, found.windows_delivered) == (1, 1)
    assert found.last_delivery is not None
    assert found.latency_ms == {"p50": 61_000, "p95": 64_000, "p99": 64_000}
    # ... moto keeps no SQS metrics: the oldest message's age is unknown, not made up
    assert found.ingest_oldest_age_seconds is None
    # ... and a parked window needs attention
    assert not found.healthy
    assert "needs attention" in found.text()


def test_an_idle_deployment_is_healthy_and_a_dlq_message_is_not(
    provisioned: Deployment,
) -> None:
    target = provisioned
    assert collect(target).healthy
    target.client("sqs").send_message(QueueUrl=target.requeue_dlq_url, MessageBody="{}")
    found = collect(target)
    assert found.requeue_dlq_depth == 1
    assert not found.healthy
    assert json.loads(json.dumps(found.latency_ms)) == {"p50": None, "p95": None, "p99": None}
