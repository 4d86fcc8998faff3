"""Test double of an SQS-triggered function answering with a partial batch response.

A message whose body has `"fail_first": true` is reported in `batchItemFailures` on its first
receive only. Every record is logged whole (to the file its body names), with the batch size.
"""

from __future__ import annotations

from typing import Any

from tests.integration.handlers import _log


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, list[dict[str, str]]]:
    failures = []
    for record in event["Records"]:
        body = _log.sqs_body(record)
        _log.append(body["log"], {"record": record, "batch": len(event["Records"])})
        if body.get("fail_first") and _log.receive_count(record) == 1:
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
