"""S3's asynchronous Lambda notifications, made locally from an SQS hop
(infrastructure.local.lambdas.s3_notifications), against moto's real S3 → SQS events.

https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-how-to-event-types-and-destinations.html
("Amazon S3 invokes your function asynchronously" with the event's `Records`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import boto3
import pytest

from infrastructure.local.lambdas.runtime import LambdaRuntime
from infrastructure.local.lambdas.s3_notifications import S3NotificationInvoker
from infrastructure.local.provision import resources
from infrastructure.queues import queue_depth
from tests.conftest import REGION
from tests.integration.handlers import _log
from tests.integration.runtime_support import function, wait_until

pytestmark = pytest.mark.slow


def test_each_object_event_becomes_one_async_invocation_with_the_s3_event(
    moto_server: str, start_runtime: Callable[..., LambdaRuntime], tmp_path: Path
) -> None:
    # GIVEN a bucket notifying a queue of `buffers/` objects (S3 sends its test event first)
    s3: Any = boto3.client("s3", region_name=REGION, endpoint_url=moto_server)
    sqs: Any = boto3.client("sqs", region_name=REGION, endpoint_url=moto_server)
    resources.create_bucket(s3, "staging", REGION, versioned=True)
    url = sqs.create_queue(QueueName="buffers-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    s3.put_bucket_notification_configuration(
        Bucket="staging",
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "buffers/"}]}},
                }
            ]
        },
    )
    log = tmp_path / "events"
    runtime = start_runtime(
        function("delivery", "records", env={"RECORD_PATH": str(log)}),
        endpoint_url=moto_server,
        region=REGION,
    )
    invoker = S3NotificationInvoker(runtime, "delivery", url).start()
    # WHEN two windows are staged, and something that is no S3 event arrives too
    s3.put_object(Bucket="staging", Key="buffers/dt=2026-11-25/hour=12/w1.json.gz", Body=b"1")
    s3.put_object(Bucket="staging", Key="buffers/dt=2026-11-25/hour=12/w2.json.gz", Body=b"2")
    s3.put_object(Bucket="staging", Key="elsewhere/w3.json.gz", Body=b"3")
    sqs.send_message(QueueUrl=url, MessageBody='{"not": "an event"}')
    # THEN the function runs once per object event, with the S3 event itself
    events = wait_until(
        lambda: (entries := _log.read(log)) and len(entries) >= 2 and entries,
        what="two invocations",
    )
    wait_until(lambda: queue_depth(sqs, url) == 0, what="the queue to be emptied")
    keys = sorted(unquote_plus(e["Records"][0]["s3"]["object"]["key"]) for e in events)
    assert keys == [
        "buffers/dt=2026-11-25/hour=12/w1.json.gz",
        "buffers/dt=2026-11-25/hour=12/w2.json.gz",
    ]
    assert all(e["Records"][0]["eventSource"] == "aws:s3" for e in events)
    # ... the test event and the stray message invoke nothing and are gone
    assert invoker.stats.invoked == 2
    assert invoker.stats.test_events == 1
    assert invoker.stats.not_s3_events == 1
    assert len(_log.read(log)) == 2
