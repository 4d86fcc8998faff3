"""The forwarder over real sockets: moto in server mode for S3 (with its notifications to SQS),
SQS, DynamoDB and Firehose, reached the way Lambda reaches AWS, through boto3's endpoint settings.

moto's Firehose writes each PutRecordBatch straight to the destination bucket (no buffering, no
processor), which is enough to see exactly what the forwarder sent.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from infrastructure.local.lambdas.context import LocalLambdaContext
from infrastructure.local.provision import resources
from tests.conftest import IDEMPOTENCY_TABLE, LANDING, REGION, STAGING, STREAMS
from transform import forwarder
from transform.envelope import body_bytes, check

pytestmark = pytest.mark.slow

DESTINATION = "sluice-firehose-destination"


def concatenated_json(data: bytes) -> list[dict[str, Any]]:
    """Firehose adds no delimiter: split back-to-back JSON objects."""
    decoder = json.JSONDecoder()
    text, position, objects = data.decode(), 0, []
    while position < len(text):
        obj, position = decoder.raw_decode(text, position)
        objects.append(obj)
    return objects


def test_forwarder_against_moto_server(
    moto_server: str, monkeypatch: pytest.MonkeyPatch, function_env: Any
) -> None:
    # GIVEN the landing bucket, queue, table and two streams on a moto server
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    function_env("forwarder")
    forwarder.dependencies.cache_clear()
    s3 = boto3.client("s3", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    for bucket in (LANDING, STAGING, DESTINATION):
        resources.create_bucket(s3, bucket, REGION, versioned=bucket == LANDING)
    resources.create_idempotency_table(
        boto3.client("dynamodb", region_name=REGION), IDEMPOTENCY_TABLE
    )
    firehose = boto3.client("firehose", region_name=REGION)
    for stream in STREAMS:
        firehose.create_delivery_stream(
            DeliveryStreamName=stream,
            DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration={
                "RoleARN": "arn:aws:iam::123456789012:role/firehose",
                "BucketARN": f"arn:aws:s3:::{DESTINATION}",
            },
        )
    queue_url = resources.create_ingest_queue(sqs, s3, "ingest", LANDING)
    # ... and producers uploading files with awkward keys, one of them overwritten
    uploads = {
        f"acme/batch {i}/file+{i}/ü-{i}.json": json.dumps({"i": i}).encode() for i in range(25)
    }
    uploads["globex/blob.bin"] = bytes(range(256))
    for key, body in uploads.items():
        s3.put_object(Bucket=LANDING, Key=key, Body=body)
    s3.put_object(Bucket=LANDING, Key="acme/overwritten.txt", Body=b"first")
    s3.put_object(Bucket=LANDING, Key="acme/overwritten.txt", Body=b"second")

    # WHEN the forwarder consumes the queue in batches of 10, as the event source mapping would,
    # and then the same messages arrive once more (SQS is at-least-once)
    received = resources.drain_queue(sqs, queue_url)
    failures = []
    for _round in range(2):
        for start in range(0, len(received), 10):
            event = {
                "Records": [
                    {"messageId": m["MessageId"], "body": m["Body"], "eventSource": "aws:sqs"}
                    for m in received[start : start + 10]
                ]
            }
            response = forwarder.lambda_handler(event, LocalLambdaContext("forwarder", 30))
            failures += response["batchItemFailures"]

    # THEN nothing failed, and Firehose received every version exactly once, byte for byte
    assert failures == []
    sent = []
    for obj in s3.list_objects_v2(Bucket=DESTINATION).get("Contents", []):
        data = s3.get_object(Bucket=DESTINATION, Key=obj["Key"])["Body"].read()
        sent.extend(check(record) for record in concatenated_json(data))
    assert len(sent) == len({e["file_id"] for e in sent}), "no file sent twice"
    by_key: dict[str, list[bytes]] = {}
    for envelope in sent:
        by_key.setdefault(envelope["key"], []).append(body_bytes(envelope))
    expected = {key: [body] for key, body in uploads.items()}
    expected["acme/overwritten.txt"] = [b"first", b"second"]
    assert {key: sorted(bodies) for key, bodies in by_key.items()} == expected
