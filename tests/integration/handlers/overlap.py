"""Test double of an SQS-triggered function that records how many of its invocations overlap.

Each message body names a directory and a duration. While it runs, an invocation holds a file in
that directory; on entry it logs how many such files it sees (itself included) — the number of
invocations running at that moment, whichever worker process runs them.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

from tests.integration.handlers import _log


def lambda_handler(event: dict[str, Any], context: Any) -> None:
    body = _log.sqs_body(event["Records"][0])
    running = Path(body["dir"])
    mine = running / f"{os.getpid()}-{uuid.uuid4().hex}.running"
    mine.touch()
    try:
        overlapping = len(list(running.glob("*.running")))
        _log.append(body["log"], {"overlapping": overlapping, "records": len(event["Records"])})
        time.sleep(body["seconds"])
    finally:
        mine.unlink()
