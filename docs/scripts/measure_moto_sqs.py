"""moto's SQS as its queue deepens, as it is and with the launcher's changes
(`infrastructure.local.provision.moto_service.faster_sqs`): what one forwarder poll costs moto.

In process (`mock_aws`), so it times moto's work, not HTTP: five cycles of ReceiveMessage (10)
and DeleteMessageBatch, and five SendMessage (what an S3 event notification is), at 500, 1,000 and
2,000 waiting messages of 1.5 KB (an S3 event's size).

Run: .venv/bin/python docs/scripts/measure_moto_sqs.py   (figures in the moto launcher's
docstring and docs/BENCHMARKS.md)
"""

from __future__ import annotations

import time

import boto3
from moto import mock_aws

from infrastructure.local.provision.moto_service import faster_sqs

DEPTHS = (500, 1_000, 2_000)
CYCLES = 5


def cycles_ms() -> dict[int, tuple[float, float]]:
    """Milliseconds per receive-and-delete cycle, and per send, at each depth."""
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
            cycle_ms = (time.perf_counter() - started) * 1000 / CYCLES
            started = time.perf_counter()
            for _ in range(CYCLES):
                sqs.send_message(QueueUrl=url, MessageBody=body)
                waiting += 1
            result[depth] = (cycle_ms, (time.perf_counter() - started) * 1000 / CYCLES)
        return result


def main() -> None:
    as_it_is = cycles_ms()
    faster_sqs()  # for the rest of this process
    changed = cycles_ms()
    print("ms of moto's work, by messages waiting: moto as it is / with the launcher's changes")
    print("messages waiting | receive 10 + delete 10 | one send")
    for depth in DEPTHS:
        (cycle, send), (cycle_now, send_now) = as_it_is[depth], changed[depth]
        receive = f"{cycle:>9,.0f} / {cycle_now:>9,.0f}"
        print(f"{depth:>16,} | {receive} | {send:>6,.1f} / {send_now:>4,.1f}")


if __name__ == "__main__":
    main()
