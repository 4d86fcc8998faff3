"""S3 event notifications, as the ingest queue delivers them, parsed into what the forwarder needs.

An SQS message body holds one S3 notification: `s3:TestEvent` (sent when a notification is
configured; acknowledged and ignored) or `Records`, one or more. Only `ObjectCreated:*` records
are forwarded; deletes and other events are ignored, because the landing bucket is versioned and
the version that was created is still there to forward. Keys arrive URL-encoded, `+` for space.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus


class MalformedMessage(ValueError):
    """The message is not an S3 notification we can act on; the message fails (and is retried,
    then lands in the ingest DLQ), so nothing is dropped unseen."""


@dataclass(frozen=True, slots=True)
class ObjectCreated:
    bucket: str
    key: str
    """URL-decoded."""
    size: int
    etag: str | None
    version_id: str | None
    sequencer: str | None
    event_time_ms: int
    event_name: str


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    created: tuple[ObjectCreated, ...]
    ignored: int
    """Records that are not object creations (deletes, restores, ...)."""
    test_event: bool = False


def parse_message(body: str) -> ParsedMessage:
    try:
        notification = json.loads(body)
    except json.JSONDecodeError as err:
        raise MalformedMessage(f"SQS body is not JSON: {err}") from err
    if not isinstance(notification, dict):
        raise MalformedMessage("SQS body is not a JSON object")
    if notification.get("Event") == "s3:TestEvent":
        return ParsedMessage(created=(), ignored=0, test_event=True)
    records = notification.get("Records")
    if not isinstance(records, list) or not records:
        raise MalformedMessage("SQS body has no S3 'Records' (and is not an s3:TestEvent)")
    created = []
    ignored = 0
    for index, record in enumerate(records):
        event_name = record.get("eventName", "") if isinstance(record, dict) else ""
        if not event_name.startswith("ObjectCreated:"):
            if not event_name:
                raise MalformedMessage(f"Records[{index}] has no eventName")
            ignored += 1
            continue
        created.append(_object_created(record, index))
    return ParsedMessage(created=tuple(created), ignored=ignored)


def _object_created(record: dict[str, Any], index: int) -> ObjectCreated:
    try:
        s3 = record["s3"]
        bucket = s3["bucket"]["name"]
        obj = s3["object"]
        raw_key = obj["key"]
        size = obj["size"]
        event_time = record["eventTime"]
    except (KeyError, TypeError) as err:
        raise MalformedMessage(f"Records[{index}] lacks {err}") from err
    if not isinstance(raw_key, str) or not raw_key:
        raise MalformedMessage(f"Records[{index}] has an empty or non-string key")
    if not isinstance(size, int) or size < 0:
        raise MalformedMessage(f"Records[{index}] s3://{bucket}/{raw_key}: bad size {size!r}")
    try:
        event_time_ms = int(
            datetime.fromisoformat(event_time.replace("Z", "+00:00")).timestamp() * 1000
        )
    except (AttributeError, ValueError) as err:
        raise MalformedMessage(f"Records[{index}] has a bad eventTime {event_time!r}") from err
    etag = obj.get("eTag") or obj.get("etag")
    return ObjectCreated(
        bucket=bucket,
        key=unquote_plus(raw_key),
        size=size,
        etag=etag.strip('"') if isinstance(etag, str) and etag else None,
        version_id=obj.get("versionId") or None,
        sequencer=obj.get("sequencer") or None,
        event_time_ms=event_time_ms,
        event_name=record["eventName"],
    )
