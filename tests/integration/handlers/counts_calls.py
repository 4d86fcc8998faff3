"""Test double of a function making SDK calls: sends `event["calls"]` messages to an SQS queue."""

from __future__ import annotations

from typing import Any

import boto3


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    sqs = boto3.client("sqs")
    for number in range(1, event["calls"] + 1):
        sqs.send_message(QueueUrl=event["queue_url"], MessageBody=f"{event['tag']}-{number}")
    return {"calls": event["calls"]}
