"""Test double of a function that reports its whole environment."""

from __future__ import annotations

import os
from typing import Any


def lambda_handler(event: Any, context: Any) -> dict[str, str]:
    return dict(os.environ)
