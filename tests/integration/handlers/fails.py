"""Test double of a function that always fails, after logging what it was given.

Invoked directly (or asynchronously) its event names the log file: `{"log": path}`. Invoked by
the SQS event source mapping, each message body does, and each record is logged with its
ApproximateReceiveCount.
"""

from __future__ import annotations

import os
import time
from typing import Any

from tests.integration.handlers import _log


class DeliberateError(ValueError):
    """What this function raises."""


def lambda_handler(event: dict[str, Any], context: Any) -> None:
    for record in event.get("Records", []):
        _log.append(
            _log.sqs_body(record)["log"],
            {"messageId": record["messageId"], "receiveCount": _log.receive_count(record)},
        )
    if "log" in event:
        _log.append(
            event["log"],
            {"requestId": context.aws_request_id, "pid": os.getpid(), "time": time.time()},
        )
    raise DeliberateError(f"deliberate failure of request {context.aws_request_id}")
