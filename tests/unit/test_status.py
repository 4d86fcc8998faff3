"""`sluice status` (infrastructure.cli.status), read from moto in process."""

from __future__ import annotations

import io
import json
import time
import zipfile
from typing import Any

import boto3
import pytest

from delivery.latency import LatencyHistogram
from delivery.ledger import Ledger, PartRecord
from infrastructure.cli import main
from infrastructure.cli.deployment import Deployment
from infrastructure.cli.status import collect
from transform import quarantine

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


def functions(target: Deployment) -> Any:
    """The forwarder and delivery as Lambda functions in moto, the forwarder mapped from the
    ingest queue as Terraform maps it; the Lambda client."""
    iam = boto3.client("iam", region_name=target.region)
    role = iam.create_role(RoleName="sluice", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context): pass\n")
    lambda_ = target.client("lambda")
    for role_name in ("forwarder", "delivery"):
        lambda_.create_function(
            FunctionName=target.function(role_name),
            Runtime="python3.12",
            Role=role,
            Handler="handler.handler",
            Code={"ZipFile": code.getvalue()},
        )
    queue_arn = target.client("sqs").get_queue_attributes(
        QueueUrl=target.ingest_queue_url, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    lambda_.create_event_source_mapping(
        EventSourceArn=queue_arn, FunctionName=target.function("forwarder")
    )
    return lambda_


def test_a_paused_stage_is_not_ok(
    provisioned: Deployment,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = provisioned
    lambda_ = functions(target)
    running = collect(target)
    # GIVEN the forwarder's ingest mapping disabled and delivery's concurrency 0, as
    # `sluice pause` leaves them
    [mapping] = lambda_.list_event_source_mappings(FunctionName=target.function("forwarder"))[
        "EventSourceMappings"
    ]
    lambda_.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)
    lambda_.put_function_concurrency(
        FunctionName=target.function("delivery"), ReservedConcurrentExecutions=0
    )
    monkeypatch.setattr("infrastructure.cli.deployment.resolve", lambda args, root: target)
    # WHEN the status is read
    paused = collect(target)
    status = main.main(["status"])
    # THEN both stages show as paused, the verdict says how to resume them, and it exits 1
    assert (running.paused, running.healthy) == ([], True)
    assert "stages            forwarder running, delivery running" in running.text()
    assert paused.paused == ["forwarder", "delivery"]
    assert not paused.healthy
    out = capsys.readouterr().out
    assert "stages            forwarder PAUSED, delivery PAUSED" in out
    assert (
        "verdict           needs attention: forwarder paused (`sluice resume forwarder`); "
        "delivery paused (`sluice resume delivery`)"
    ) in out
    assert status == 1


def test_quarantined_files_are_shown(provisioned: Deployment) -> None:
    target = provisioned
    # GIVEN two files held back
    for n in range(2):
        quarantine.write(
            target.client("s3"),
            target.staging_bucket,
            quarantine.QuarantineEntry(
                file_id=f"{n}" * 64, reason="too-large", detail="big", stage="forwarder"
            ),
        )
    # WHEN the status is read
    found = collect(target)
    # THEN they are counted and where to look is named; being held back is not a failure of the
    # pipeline (a version gone for good is held for ever)
    assert found.quarantined == 2
    assert "quarantined       2 held back (`sluice quarantine list`)" in found.text()
    assert found.healthy
