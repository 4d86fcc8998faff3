"""S3 event notifications, as the ingest queue delivers them, parsed into what the forwarder needs.

An SQS message body holds one S3 notification: `s3:TestEvent` (sent when a notification is
configured; acknowledged and ignored) or `Records`, one or more. Only `ObjectCreated:*` records
are forwarded; deletes and other events are ignored, because the landing bucket is versioned and
the version that was created is still there to forward. Keys arrive URL-encoded, `+` for space.

A replay (`sluice replay`, `sluice quarantine release`) sends the same shape for one exact
version, with a `sluiceReplay` member in the record: `{"replayId": …, "force": bool}`.
`replay_notification` writes it, so the format lives here beside its parser.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple
from urllib.parse import quote_plus, unquote_plus

REPLAY_MEMBER: Final = "sluiceReplay"
REPLAY_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
"""As `#r<replay_id>` in a forced replay's file_id (transform.envelope.FILE_ID_PATTERN)."""


class MalformedMessage(ValueError):
    """The message is not an S3 notification we can act on; the message fails (and is retried,
    then lands in the ingest DLQ), so nothing is dropped unseen."""


class ObjectCreated(NamedTuple):
    bucket: str
    key: str
    """URL-decoded."""
    size: int
    etag: str | None
    version_id: str | None
    sequencer: str | None
    event_time_ms: int
    event_name: str
    replay_id: str | None = None
    """Set for a replay's synthetic event."""
    force: bool = False
    """A forced replay: delivered again under `<file_id>#r<replay_id>`, whatever was before."""


class ParsedMessage(NamedTuple):
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
    replay_id, force = _replay(record, index, f"s3://{bucket}/{raw_key}", obj.get("versionId"))
    return ObjectCreated(
        bucket=bucket,
        key=unquote_plus(raw_key),
        size=size,
        etag=etag.strip('"') if isinstance(etag, str) and etag else None,
        version_id=obj.get("versionId") or None,
        sequencer=obj.get("sequencer") or None,
        event_time_ms=event_time_ms,
        event_name=record["eventName"],
        replay_id=replay_id,
        force=force,
    )


def _replay(
    record: dict[str, Any], index: int, where: str, version_id: object
) -> tuple[str | None, bool]:
    replay = record.get(REPLAY_MEMBER)
    if replay is None:
        return None, False
    if not isinstance(replay, dict):
        raise MalformedMessage(f"Records[{index}] {where}: {REPLAY_MEMBER} is not an object")
    replay_id = replay.get("replayId")
    force = replay.get("force", False)
    if not isinstance(replay_id, str) or not REPLAY_ID_PATTERN.fullmatch(replay_id):
        raise MalformedMessage(
            f"Records[{index}] {where}: replayId {replay_id!r} is not {REPLAY_ID_PATTERN.pattern}"
        )
    if not isinstance(force, bool):
        raise MalformedMessage(f"Records[{index}] {where}: replay force must be true or false")
    if not version_id:
        raise MalformedMessage(f"Records[{index}] {where}: a replay must name its versionId")
    return replay_id, force


def created_notification(
    *,
    bucket: str,
    key: str,
    version_id: str,
    size: int,
    etag: str | None,
    at: datetime,
    replay: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The S3 notification of one landed version (`key` not yet encoded), as S3 sends it: what
    a replay sends (with `replay`), and what the inventory check sends for an event S3 lost."""
    obj: dict[str, Any] = {"key": quote_plus(key, safe="/"), "size": size, "versionId": version_id}
    if etag:
        obj["eTag"] = etag.strip('"')
    record: dict[str, Any] = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventTime": at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": bucket}, "object": obj},
    }
    if replay is not None:
        record[REPLAY_MEMBER] = replay
    return {"Records": [record]}


def replay_notification(
    *,
    bucket: str,
    key: str,
    version_id: str,
    size: int,
    etag: str | None,
    replay_id: str,
    force: bool,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The S3 notification a replay sends for one landed version (`key` not yet encoded).

    Its eventTime is the replay's, not the upload's: latency figures then measure the replay.
    """
    if not REPLAY_ID_PATTERN.fullmatch(replay_id):
        raise ValueError(f"replay id {replay_id!r} is not {REPLAY_ID_PATTERN.pattern}")
    return created_notification(
        bucket=bucket,
        key=key,
        version_id=version_id,
        size=size,
        etag=etag,
        at=now or datetime.now(UTC),
        replay={"replayId": replay_id, "force": force},
    )
