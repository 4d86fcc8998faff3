"""Sluice's moto launcher (infrastructure.local.provision.moto_service), over real sockets."""

from __future__ import annotations

import json
import threading
from typing import Any

import boto3
import pytest

from infrastructure.local.provision import resources
from tests.conftest import REGION

pytestmark = pytest.mark.slow


def test_s3_events_carry_the_version_id_and_a_sequencer_as_real_s3s_do(moto_server: str) -> None:
    """https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html:
    `object.versionId` ("object version if bucket is versioning-enabled") and `object.sequencer`
    (to order events for one key)."""
    # GIVEN a versioned bucket notifying a queue
    s3: Any = boto3.client("s3", region_name=REGION, endpoint_url=moto_server)
    sqs: Any = boto3.client("sqs", region_name=REGION, endpoint_url=moto_server)
    resources.create_bucket(s3, "landing", REGION, versioned=True)
    url = resources.create_ingest_queue(sqs, s3, "ingest", "landing")
    # WHEN a key is written twice
    versions = [
        s3.put_object(Bucket="landing", Key="acme/a b.json", Body=body)["VersionId"]
        for body in (b"1", b"2")
    ]
    # THEN each event names its own version, and sequencers grow
    records = [
        record["s3"]["object"]
        for message in resources.drain_queue(sqs, url)
        for record in json.loads(message["Body"]).get("Records", [])
    ]
    assert [r["versionId"] for r in records] == versions
    assert int(records[0]["sequencer"], 16) < int(records[1]["sequencer"], 16)


def test_dynamodb_transactions_from_many_threads_lose_no_item(moto_server: str) -> None:
    """moto's transactions are not safe under concurrent requests; the launcher serializes
    DynamoDB so that concurrent claims (as delivery's ledger makes) all land."""
    dynamodb: Any = boto3.client("dynamodb", region_name=REGION, endpoint_url=moto_server)
    resources.create_ledger_table(dynamodb, "ledger")

    def claim(worker: int) -> None:
        client: Any = boto3.client("dynamodb", region_name=REGION, endpoint_url=moto_server)
        for batch in range(5):
            client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": "ledger",
                            "Item": {"pk": {"S": f"F#{worker}-{batch}-{i}"}},
                        }
                    }
                    for i in range(10)
                ]
            )

    threads = [threading.Thread(target=claim, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    count = dynamodb.scan(TableName="ledger", Select="COUNT")["Count"]
    assert count == 8 * 5 * 10


def test_linear_dynamodb_transactions_are_still_all_or_nothing(moto_server: str) -> None:
    """The launcher backs up the items a transaction names instead of whole tables
    (`linear_dynamodb_transactions`); a transaction must still be all or nothing."""
    # GIVEN a ledger holding one item
    dynamodb: Any = boto3.client("dynamodb", region_name=REGION, endpoint_url=moto_server)
    resources.create_ledger_table(dynamodb, "t")
    dynamodb.put_item(TableName="t", Item={"pk": {"S": "b"}, "v": {"S": "old"}})
    items = [
        {
            "Put": {
                "TableName": "t",
                "Item": {"pk": {"S": key}, "v": {"S": "new"}},
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }
        for key in ("a", "b", "c")
    ]
    # WHEN a transaction's middle item fails its condition
    with pytest.raises(dynamodb.exceptions.TransactionCanceledException):
        dynamodb.transact_write_items(TransactItems=items)
    # THEN nothing of it was written; and a transaction that passes writes everything
    rows = dynamodb.scan(TableName="t")["Items"]
    assert sorted((row["pk"]["S"], row["v"]["S"]) for row in rows) == [("b", "old")]
    dynamodb.transact_write_items(TransactItems=items[::2])
    assert len(dynamodb.scan(TableName="t")["Items"]) == 3


def test_lifecycle_object_size_filters_are_read_back_as_written(moto_server: str) -> None:
    # GIVEN a lifecycle with object-size filters, alone and with a tag (as s3.tf writes them)
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=moto_server)
    resources.create_bucket(s3, "lifecycle-sizes", REGION, versioned=True)
    rules: list[Any] = [
        {
            "ID": "inline",
            "Status": "Enabled",
            "Filter": {"ObjectSizeLessThan": 65537},
            "Expiration": {"Days": 30},
        },
        {
            "ID": "delivered",
            "Status": "Enabled",
            "Filter": {
                "And": {
                    "ObjectSizeGreaterThan": 65536,
                    "Tags": [{"Key": "sluice-delivered", "Value": "true"}],
                }
            },
            "Expiration": {"Days": 30},
        },
        {"ID": "markers", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 1}},
    ]
    s3.put_bucket_lifecycle_configuration(
        Bucket="lifecycle-sizes", LifecycleConfiguration={"Rules": rules}
    )
    # WHEN it is read back THEN every filter is as written (Terraform waits for that)
    read = s3.get_bucket_lifecycle_configuration(Bucket="lifecycle-sizes")["Rules"]
    assert [(r["ID"], r["Filter"]) for r in read] == [(r["ID"], r["Filter"]) for r in rules]
