"""Test double of a scheduled function: appends each event to the file named by its environment
variable RECORD_PATH."""

from __future__ import annotations

import os
from typing import Any

from tests.integration.handlers import _log


def lambda_handler(event: dict[str, Any], context: Any) -> None:
    _log.append(os.environ["RECORD_PATH"], event)
