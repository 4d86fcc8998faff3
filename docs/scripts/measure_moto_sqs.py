"""moto's SQS as its queue deepens, with its own clock and with the launcher's
(`infrastructure.local.moto_service.fast_sqs_clock`): what one forwarder poll costs moto.

In process (`mock_aws`), so it times moto's work, not HTTP: five cycles of ReceiveMessage (10)
and DeleteMessageBatch at 500, 1,000 and 2,000 waiting messages of 1.5 KB (an S3 event's size).

Run: .venv/bin/python docs/scripts/measure_moto_sqs.py   (figures in the moto launcher's
docstring and docs/BENCHMARKS.md)
"""

from __future__ import annotations

import time

import boto3
from moto import mock_aws
from moto.sqs import models

from infrastructure.local.moto_service import fast_sqs_clock

DEPTHS = (500, 1_000, 2_000)
CYCLES = 5


def cycles_ms() -> dict[int, float]:
    """Milliseconds per receive-and-delete cycle at each depth."""
    with mock_aws():
        sqs = boto3.client("sqs", region_name="eu-west-2")
        url = sqs.create_queue(QueueName="ingest", Attributes={"VisibilityTimeout": "60"})[
            "QueueUrl"
        ]
        body = "x" * 1_500
        result = {}
        waiting = 0
        for depth in DEPTHS:
            while waiting < depth:
                entries = [{"Id": str(i), "MessageBody": body} for i in range(10)]
                sqs.send_message_batch(QueueUrl=url, Entries=entries)
                waiting += 10
            started = time.perf_counter()
            for _ in range(CYCLES):
                messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
                sqs.delete_message_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": m["MessageId"], "ReceiptHandle": m["ReceiptHandle"]}
                        for m in messages
                    ],
                )
                waiting -= len(messages)
            result[depth] = (time.perf_counter() - started) * 1000 / CYCLES
        return result


def main() -> None:
    original = models.unix_time, models.unix_time_millis
    mine = cycles_ms()
    fast_sqs_clock()
    try:
        fast = cycles_ms()
    finally:
        models.unix_time, models.unix_time_millis = original
    print("messages waiting | moto's clock | launcher's clock   (ms per receive 10 + delete 10)")
    for depth in DEPTHS:
        print(f"{depth:>16,} | {mine[depth]:>12,.0f} | {fast[depth]:>16,.0f}")


if __name__ == "__main__":
    main()
