"""Create, on any S3/DynamoDB endpoint, the resources Terraform creates in AWS.

Used by the tests, the demo, the benchmarks and the local stack, so that all of them agree with
each other on table keys and bucket settings. Spec: docs/local-stack.md, `provision/resources.py`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from delivery.ledger import (
    LEDGER_KEY,
    LEDGER_TTL_ATTRIBUTE,
    PENDING_INDEX,
    PENDING_KEY,
    PENDING_SINCE,
)
from transform.idempotency import (
    IDEMPOTENCY_KEY,
    IDEMPOTENCY_TTL_ATTRIBUTE,
    LANDED_HOUR,
    LANDED_INDEX,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient


def create_bucket(s3: S3Client, name: str, region: str, *, versioned: bool) -> None:
    if region == "us-east-1":
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(
            Bucket=name,
            CreateBucketConfiguration={"LocationConstraint": region},  # type: ignore[typeddict-item]  # any region string is valid
        )
    if versioned:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})


def create_idempotency_table(dynamodb: DynamoDBClient, name: str) -> None:
    """The forwarder's records, and the index of landed files by hour (as dynamodb.tf has it)."""
    _create_table(
        dynamodb,
        name,
        key=IDEMPOTENCY_KEY,
        ttl=IDEMPOTENCY_TTL_ATTRIBUTE,
        index=(LANDED_INDEX, (LANDED_HOUR, "S"), (IDEMPOTENCY_KEY, "S")),
    )


def create_ledger_table(dynamodb: DynamoDBClient, name: str) -> None:
    """Delivery's ledger: `FILE#…` claims and `WIN#…` window records under one key, and the
    sparse index of windows not yet final (as dynamodb.tf declares it)."""
    _create_table(
        dynamodb,
        name,
        key=LEDGER_KEY,
        ttl=LEDGER_TTL_ATTRIBUTE,
        index=(PENDING_INDEX, (PENDING_KEY, "S"), (PENDING_SINCE, "N")),
    )


def _create_table(
    dynamodb: DynamoDBClient,
    name: str,
    *,
    key: str,
    ttl: str,
    index: tuple[str, tuple[str, str], tuple[str, str]],
) -> None:
    """An on-demand table keyed on `key` (S) with TTL on `ttl`, and one index of every
    attribute: (name, (hash key, type), (range key, type))."""
    index_name, *index_keys = index
    definitions = {key: "S", **dict(index_keys)}
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
        AttributeDefinitions=[
            {"AttributeName": attribute, "AttributeType": kind}  # type: ignore[typeddict-item]  # "S" or "N", from the callers above
            for attribute, kind in definitions.items()
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": index_name,
                "KeySchema": [
                    {"AttributeName": index_keys[0][0], "KeyType": "HASH"},
                    {"AttributeName": index_keys[1][0], "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl}
    )


def create_ingest_queue(sqs: SQSClient, s3: S3Client, name: str, landing_bucket: str) -> str:
    """A queue the landing bucket notifies of every created object; returns the queue URL.

    The notification makes S3 send its `s3:TestEvent` to the queue first, as in AWS.
    """
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=landing_bucket,
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    return queue_url


def drain_queue(sqs: SQSClient, queue_url: str) -> list[dict[str, Any]]:
    """Receive and delete every message now in the queue."""
    messages: list[dict[str, Any]] = []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages"):
        messages.extend(batch)  # type: ignore[arg-type]  # TypedDicts are dicts
        for message in batch:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return messages
