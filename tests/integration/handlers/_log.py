"""Appending one JSON line to a shared file, from several worker processes at once."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def append(path: str, entry: dict[str, Any]) -> None:
    """One `write` of one line with O_APPEND: lines of concurrent writers never mix."""
    line = (json.dumps(entry) + "\n").encode()
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line)
    finally:
        os.close(descriptor)


def read(path: str | Path) -> list[dict[str, Any]]:
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line]


def sqs_body(record: dict[str, Any]) -> dict[str, Any]:
    """The JSON body of an SQS record of a Lambda event."""
    body: dict[str, Any] = json.loads(record["body"])
    return body


def receive_count(record: dict[str, Any]) -> int:
    return int(record["attributes"]["ApproximateReceiveCount"])
