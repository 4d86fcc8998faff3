"""Find the exact landing version an S3 event names, and read it (DESIGN §4).

The landing bucket is versioned, so a producer that overwrites a key seconds later, or deletes
it, does not take the version this event announced: we read that version, never "the latest".
An event with a `versionId` names it; one without (moto, or an unversioned bucket) is matched
to the version whose ETag equals the event's. A version that no longer exists at all is
`VersionGone`: reported and quarantined by the caller, never retried forever.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from botocore.exceptions import ClientError

from transform.s3_events import ObjectCreated

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

GONE_ERROR_CODES: Final = frozenset({"NoSuchVersion", "NoSuchKey", "404", "InvalidArgument"})
# S3 answers InvalidArgument for a malformed version id: that version cannot ever be read.
MAX_VERSION_PAGES: Final = 20


class VersionGone(LookupError):
    """The version the event announced no longer exists in the landing bucket."""


def resolve_version_id(s3: S3Client, event: ObjectCreated) -> str:
    """The version id the event announced: from the event, else by ETag among the key's versions."""
    if event.version_id:
        return event.version_id
    candidates: list[tuple[str, str]] = []  # (version id, etag), newest first as S3 lists them
    pages = s3.get_paginator("list_object_versions").paginate(
        Bucket=event.bucket,
        Prefix=event.key,
        PaginationConfig={"MaxItems": 1000 * MAX_VERSION_PAGES},
    )
    for page in pages:
        for version in page.get("Versions", []):
            if version["Key"] == event.key:
                candidates.append((version["VersionId"], version["ETag"].strip('"')))
    if event.etag:
        matching = [vid for vid, etag in candidates if etag == event.etag]
    else:
        matching = [vid for vid, _ in candidates]
    if not matching:
        raise VersionGone(
            f"s3://{event.bucket}/{event.key}: no version with ETag {event.etag} remains"
        )
    # Several versions with the same ETag hold the same bytes; without a versionId in the event
    # they are indistinguishable (DESIGN §6), so the newest stands for them.
    return matching[0]


def read_version(s3: S3Client, bucket: str, key: str, version_id: str) -> bytes:
    """The bytes of exactly this version; VersionGone if it was deleted for good."""
    try:
        response = s3.get_object(Bucket=bucket, Key=key, VersionId=version_id)
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        if code in GONE_ERROR_CODES:
            raise VersionGone(f"s3://{bucket}/{key}?versionId={version_id}: {code}") from err
        raise
    return response["Body"].read()
