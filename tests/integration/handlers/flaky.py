"""Test double of a function that fails its first attempt and succeeds on the next.

The event names a marker file: absent, the function creates it and fails; present, it succeeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, str]:
    marker = Path(event["marker"])
    if not marker.exists():
        marker.write_text(context.aws_request_id)
        raise RuntimeError("first attempt fails")
    return {"status": "ok"}
