"""Test double of a function that takes `event["seconds"]` to answer (past its timeout if asked)."""

from __future__ import annotations

import os
import time
from typing import Any


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    time.sleep(event["seconds"])
    return {"pid": os.getpid()}
