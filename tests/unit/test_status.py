"""`sluice status` (infrastructure.cli.status), read from moto in process."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest

from delivery.latency import LatencyHistogram
from delivery.ledger import Ledger, PartRecord
from infrastructure.cli.deployment import Deployment
from infrastructure.cli.status import collect
from infrastructure.local.stack_resources import StackNames, provision_stack
from infrastructure.tunables import load_tunables
from tests.conftest import REGION

NAMES = StackNames.for_prefix("st", 1)
WINDOW = "buffers/dt=2026-11-25/hour=12/st-0-1-2026-11-25-12-00-00-{}.json.gz"


@pytest.fixture
def target(aws: None) -> Deployment:
    clients: dict[str, Any] = {
        name: boto3.client(name, region_name=REGION)  # type: ignore[call-overload]
        for name in ("s3", "sqs", "dynamodb", "secretsmanager")
    }
    resources = provision_stack(
        s3=clients["s3"],
        sqs=clients["sqs"],
        dynamodb=clients["dynamodb"],
        secrets=clients["secretsmanager"],
        names=NAMES,
        tunables=load_tunables(),
        minio_secret={},
    )
    return Deployment(
        name="test",
        region=REGION,
        endpoint_url=None,
        landing_bucket=NAMES.landing_bucket,
        staging_bucket=NAMES.staging_bucket,
        idempotency_table=NAMES.idempotency_table,
        ledger_table=NAMES.ledger_table,
        ingest_queue_url=resources.ingest_queue_url,
        ingest_dlq_url=resources.ingest_dlq_url,
        delivery_dlq_url=resources.delivery_dlq_url,
        requeue_dlq_url=resources.requeue_dlq_url,
        minio_secret=NAMES.minio_secret,
    )


def window_id(n: int) -> str:
    return (
        WINDOW.format(f"{n:08d}-0000-0000-0000-000000000000")
        .rsplit("/", 1)[1]
        .removesuffix(".json.gz")
    )


def test_windows_waiting_parked_delivered_and_the_verdict(target: Deployment) -> None:
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


def test_an_idle_deployment_is_healthy_and_a_dlq_message_is_not(target: Deployment) -> None:
    assert collect(target).healthy
    target.client("sqs").send_message(QueueUrl=target.requeue_dlq_url, MessageBody="{}")
    found = collect(target)
    assert found.requeue_dlq_depth == 1
    assert not found.healthy
    assert json.loads(json.dumps(found.latency_ms)) == {"p50": None, "p95": None, "p99": None}
