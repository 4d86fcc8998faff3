"""`.sluice/stack.json` (infrastructure.local.stack.stack_file)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infrastructure.local.stack.stack_file import (
    MinioEndpoint,
    NoStackError,
    StackFile,
    read_stack,
    stack_path,
)


def example() -> StackFile:
    return StackFile(
        aws_endpoint="http://127.0.0.1:5000",
        region="eu-west-2",
        landing_bucket="sluice-local-landing",
        staging_bucket="sluice-local-staging",
        ingest_queue_url="http://127.0.0.1:5000/123456789012/sluice-local-ingest",
        ingest_dlq_url="http://127.0.0.1:5000/123456789012/sluice-local-ingest-dlq",
        delivery_dlq_url="http://127.0.0.1:5000/123456789012/sluice-local-delivery-dlq",
        requeue_dlq_url="http://127.0.0.1:5000/123456789012/sluice-local-requeue-dlq",
        idempotency_table="sluice-local-idempotency",
        ledger_table="sluice-local-ledger",
        minio_secret="sluice-local/minio",
        streams=["sluice-local-0", "sluice-local-1"],
        firehose_endpoint="http://127.0.0.1:5001",
        lambda_endpoint="http://127.0.0.1:5002",
        minio=MinioEndpoint("127.0.0.1:9000", "access", "secret", "sluice-archive", False),
        pids={"sluice": 1, "moto": 2, "seaweedfs": 3},
        time_scale=10.0,
        buffer_seconds=60,
        processor_buffer_seconds=10,
        started_at="2026-11-25T12:00:00Z",
        logs=".sluice/run/logs",
        control_endpoint="http://127.0.0.1:5003",
        minio_proxy="127.0.0.1:9001",
    )


def test_written_atomically_and_read_back_whole(tmp_path: Path) -> None:
    # WHEN a stack file is written
    example().write(stack_path(tmp_path))
    # THEN it reads back equal, and no temporary file is left beside it
    assert read_stack(tmp_path) == example()
    assert [p.name for p in stack_path(tmp_path).parent.iterdir()] == ["stack.json"]


def test_no_file_means_no_stack_and_says_how_to_start_one(tmp_path: Path) -> None:
    with pytest.raises(NoStackError, match="make run"):
        read_stack(tmp_path)


def test_a_damaged_file_is_named(tmp_path: Path) -> None:
    path = stack_path(tmp_path)
    path.parent.mkdir()
    path.write_text('{"aws_endpoint": "x"}')
    with pytest.raises(NoStackError, match="not a stack file"):
        read_stack(tmp_path)


def test_the_expected_wait_is_both_buffers_at_the_time_scale() -> None:
    assert example().expected_wait_seconds == 7.0


def test_a_file_written_before_the_chaos_fields_still_reads(tmp_path: Path) -> None:
    # GIVEN a stack file without `control_endpoint` and `minio_proxy` (an older `sluice up`)
    path = stack_path(tmp_path)
    path.parent.mkdir()
    raw = json.loads(example().to_json())
    del raw["control_endpoint"], raw["minio_proxy"]
    path.write_text(json.dumps(raw))
    # WHEN it is read THEN it is that stack, with neither chaos control nor MinIO proxy
    read = read_stack(tmp_path)
    assert (read.control_endpoint, read.minio_proxy) == (None, None)
    assert read.aws_endpoint == example().aws_endpoint
