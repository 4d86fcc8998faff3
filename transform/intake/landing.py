"""Putting a request's bytes into the landing bucket, checksummed, and saying where they are."""

from __future__ import annotations

import base64
import hashlib
from typing import TYPE_CHECKING, Any, NamedTuple

from botocore.exceptions import ClientError

from transform.envelope import file_id

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class LandingError(RuntimeError):
    """S3 refused the put; the message names the bucket and key."""


class Landed(NamedTuple):
    file_id: str
    bucket: str
    key: str
    version_id: str
    sha256: str
    size: int

    def as_dict(self) -> dict[str, Any]:
        return self._asdict()


def land(
    s3: S3Client,
    bucket: str,
    key: str,
    body: bytes,
    *,
    content_type: str,
    metadata: dict[str, str],
) -> Landed:
    """Put `body` at `key` with its SHA-256 for S3 to check (the bucket's default encryption
    applies, as for any producer), and return what a producer needs to follow the file."""
    digest = hashlib.sha256(body)
    try:
        response = s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=body,
            ContentType=content_type or "application/octet-stream",
            ChecksumSHA256=base64.b64encode(digest.digest()).decode(),
            Metadata=metadata,
        )
    except ClientError as err:
        raise LandingError(f"s3://{bucket}/{key}: {err}") from err
    version = response.get("VersionId")
    if not version:
        raise LandingError(
            f"s3://{bucket}/{key}: no VersionId; the landing bucket must be versioned"
        )
    return Landed(
        file_id=file_id(bucket, key, version),
        bucket=bucket,
        key=key,
        version_id=version,
        sha256=digest.hexdigest(),
        size=len(body),
    )
