"""Where the intake lands what producers post (docs/intake.md): one key layout, for the intake
that writes it and for whatever counts what it landed (the daily report, reconcile), which so
need not import the intake's request checks."""

from __future__ import annotations

from datetime import UTC, datetime


def file_key(producer: str, name: str, now: datetime) -> str:
    """Where a file posted as `name` lands: under the producer's own prefix, by UTC date."""
    return f"{producer}/api/files/{now.astimezone(UTC):%Y-%m-%d}/{name}"


def events_key(producer: str, request_id: str, now: datetime) -> str:
    """Where one request's events land, as one NDJSON file."""
    return f"{producer}/api/events/{now.astimezone(UTC):%Y-%m-%d}/{request_id}.ndjson"


def is_api_key(key: str) -> bool:
    """Whether the intake landed `key`: `<producer>/api/files|events/…` (docs/intake.md)."""
    parts = key.split("/", 3)
    return len(parts) == 4 and parts[1] == "api" and parts[2] in {"files", "events"}
