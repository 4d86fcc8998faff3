"""Reasons a file or record is held back, written beside the staged windows.

Firehose carries no reason for a failed record, so whoever decides to hold something back writes
`quarantine/reasons/<file_id>.json` in the staging bucket: what, why, at which stage, and enough
to find the bytes again (the landing version, or the Firehose record itself). Nothing here
deletes anything: the file stays in the landing bucket, the record in `errors/`.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REASONS_PREFIX: Final = "quarantine/reasons/"
PROCESSING_FAILED_PREFIX: Final = "errors/processing-failed/"
"""Where Firehose writes the records its processor failed (the requeue function reads them)."""
RECORD_FAILED_CODE: Final = "Lambda.ProcessingFailed"
"""The processor answered ProcessingFailed for this record: it stays quarantined."""

Reason = Literal[
    "too-large",  # forwarder: over max_file_bytes
    "version-gone",  # forwarder: the event's version was deleted for good before it was read
    "invalid-envelope",  # processor: the record is not a valid envelope
    "payload-schema",  # processor: an inline body fails its payload schema
    "requeue-exhausted",  # requeue: put back max_attempts times and failed again
    "unreadable-error-record",  # requeue: an errors/ line it cannot parse
]


@dataclass(frozen=True)
class QuarantineEntry:
    file_id: str
    reason: Reason
    detail: str
    stage: Literal["forwarder", "processor", "requeue"]
    bucket: str | None = None
    key: str | None = None
    version_id: str | None = None
    size: int | None = None
    record: str | None = None
    """The Firehose record (base64) when the envelope itself is what is held back."""
    at_ms: int = field(default_factory=lambda: int(time.time() * 1000))


def reason_key(file_id: str) -> str:
    return f"{REASONS_PREFIX}{file_id}.json"


def raw_record_id(data: bytes) -> str:
    """An id for a record too broken to carry a file_id: the sha256 of its bytes."""
    return "raw-" + hashlib.sha256(data).hexdigest()


def write(s3: S3Client, staging_bucket: str, entry: QuarantineEntry) -> str:
    """Write (or overwrite, idempotently) the entry's reason file; returns its key."""
    key = reason_key(entry.file_id)
    body: dict[str, Any] = {
        name: value for name, value in asdict(entry).items() if value is not None
    }
    s3.put_object(
        Bucket=staging_bucket,
        Key=key,
        Body=json.dumps(body, ensure_ascii=False, indent=1).encode("utf-8"),
        ContentType="application/json",
    )
    return key
