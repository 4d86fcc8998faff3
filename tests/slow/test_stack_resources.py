"""The local stack's resources, created on moto in server mode, behave as the AWS wiring does."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_plus

import boto3
import pytest

from infrastructure.local.provision.resources import drain_queue
from infrastructure.local.provision.stack_resources import StackNames, provision_stack
from infrastructure.tunables import load_tunables
from tests.conftest import REGION

pytestmark = pytest.mark.slow


@pytest.fixture
def provisioned(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    tunables = load_tunables()
    names = StackNames.for_prefix("sluice-local", tunables.firehose.stream_count)
    return provision_stack(
        s3=boto3.client("s3", region_name=REGION),
        sqs=boto3.client("sqs", region_name=REGION),
        dynamodb=boto3.client("dynamodb", region_name=REGION),
        secrets=boto3.client("secretsmanager", region_name=REGION),
        names=names,
        tunables=tunables,
        minio_secret={
            "endpoint": "127.0.0.1:9",
            "access_key": "a",
            "secret_key": "b",
            "bucket": "c",
        },
    )


def test_landing_uploads_reach_the_ingest_queue(provisioned: Any) -> None:
    # GIVEN the provisioned stack
    s3 = boto3.client("s3", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    # WHEN a producer uploads to landing
    s3.put_object(Bucket=provisioned.names.landing_bucket, Key="acme/a.json", Body=b"{}")
    # THEN the ingest queue has S3's test event and the upload's event
    bodies = [json.loads(m["Body"]) for m in drain_queue(sqs, provisioned.ingest_queue_url)]
    assert any(body.get("Event") == "s3:TestEvent" for body in bodies)
    created = [r for body in bodies for r in body.get("Records", [])]
    assert [unquote_plus(r["s3"]["object"]["key"]) for r in created] == ["acme/a.json"]


def test_staging_events_are_split_by_prefix(provisioned: Any) -> None:
    # GIVEN the provisioned stack
    s3 = boto3.client("s3", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    drain_queue(sqs, provisioned.buffers_events_url)  # S3's test events
    drain_queue(sqs, provisioned.errors_events_url)
    # WHEN Firehose writes a window and an error object
    staging = provisioned.names.staging_bucket
    s3.put_object(Bucket=staging, Key="buffers/dt=2026-11-25/hour=12/w.json.gz", Body=b"x")
    s3.put_object(Bucket=staging, Key="errors/processing-failed/dt=2026-11-25/e.gz", Body=b"x")

    # THEN each reaches only its own function's queue
    def keys(url: str) -> list[str]:
        return [
            unquote_plus(record["s3"]["object"]["key"])
            for message in drain_queue(sqs, url)
            for record in json.loads(message["Body"]).get("Records", [])
        ]

    assert keys(provisioned.buffers_events_url) == ["buffers/dt=2026-11-25/hour=12/w.json.gz"]
    assert keys(provisioned.errors_events_url) == ["errors/processing-failed/dt=2026-11-25/e.gz"]


def test_ingest_queue_has_its_dlq_and_timeouts(provisioned: Any) -> None:
    # GIVEN the provisioned stack WHEN its ingest queue is described
    sqs = boto3.client("sqs", region_name=REGION)
    attributes = sqs.get_queue_attributes(
        QueueUrl=provisioned.ingest_queue_url, AttributeNames=["All"]
    )["Attributes"]
    dlq_arn = sqs.get_queue_attributes(
        QueueUrl=provisioned.ingest_dlq_url, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    # THEN it keeps messages 4 days, hides them per the tunables, and redrives to its DLQ
    ingest = load_tunables().ingest
    assert attributes["MessageRetentionPeriod"] == "345600"
    assert attributes["VisibilityTimeout"] == str(ingest.visibility_timeout_seconds)
    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": ingest.max_receive_count,
    }


def test_bindings_cover_every_function(provisioned: Any) -> None:
    # GIVEN the provisioned stack WHEN the functions' resource variables are bound
    bindings = provisioned.function_bindings("sluice-local-delivery")
    # THEN every variable any function asks for has a value
    for name, spec in load_tunables().functions.items():
        missing = set(spec.resource_environment) - set(bindings)
        assert not missing, f"{name} lacks {missing}"
