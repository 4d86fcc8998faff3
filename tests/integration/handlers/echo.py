"""Test double of a function: returns its event and what its Lambda context says."""

from __future__ import annotations

import os
import time
from typing import Any


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    before = context.get_remaining_time_in_millis()
    time.sleep(0.05)
    after = context.get_remaining_time_in_millis()
    return {
        "event": event,
        "pid": os.getpid(),
        "remaining_ms": [before, after],
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "invoked_function_arn": context.invoked_function_arn,
    }
