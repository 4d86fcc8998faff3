"""Builders for real-shaped events, from the fixtures in tests/events/."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import tarfile
import threading
import uuid
from typing import Any, Final
from urllib.parse import quote_plus

from minio import Minio

from delivery.redriving import staged_event
from tests.conftest import STAGING, load_event


def created_record(
    bucket: str,
    key: str,
    size: int,
    etag: str | None,
    version_id: str | None,
    *,
    encoded_key: str | None = None,
    event_name: str = "ObjectCreated:Put",
) -> dict[str, Any]:
    """One S3 ObjectCreated notification record, as S3 sends it (key URL-encoded, + for space)."""
    record = copy.deepcopy(load_event("s3_object_created.json")["Records"][0])
    record["eventName"] = event_name
    record["s3"]["bucket"]["name"] = bucket
    record["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
    obj = record["s3"]["object"]
    obj["key"] = encoded_key if encoded_key is not None else quote_plus(key, safe="/")
    obj["size"] = size
    for name, value in (("eTag", etag), ("versionId", version_id)):
        if value is None:
            obj.pop(name, None)
        else:
            obj[name] = value
    return record


def removed_record(bucket: str, key: str) -> dict[str, Any]:
    record = copy.deepcopy(load_event("s3_object_removed.json")["Records"][0])
    record["s3"]["bucket"]["name"] = bucket
    record["s3"]["object"]["key"] = quote_plus(key, safe="/")
    return record


def notification(*records: dict[str, Any]) -> str:
    return json.dumps({"Records": list(records)})


def sqs_event(*bodies: str) -> dict[str, Any]:
    """An SQS event source mapping batch carrying these bodies, one message each."""
    template = load_event("sqs_event.json")["Records"][0]
    messages = []
    for body in bodies:
        message = copy.deepcopy(template)
        message["messageId"] = str(uuid.uuid4())
        message["body"] = body
        message["md5OfBody"] = hashlib.md5(body.encode()).hexdigest()  # noqa: S324  # SQS's own checksum
        messages.append(message)
    return {"Records": messages}


def put_and_notify(s3: Any, bucket: str, key: str, body: bytes) -> dict[str, Any]:
    """Upload to the (versioned) landing bucket and return the record S3 would send for it."""
    response = s3.put_object(Bucket=bucket, Key=key, Body=body)
    return created_record(
        bucket, key, len(body), response["ETag"].strip('"'), response.get("VersionId")
    )


class SerializedClient:
    """A boto3 client whose calls run one at a time.

    moto's in-process DynamoDB is not thread-safe: two threads' transactions can interleave
    between a condition check and its write, which DynamoDB itself never allows. Serializing
    whole calls restores that guarantee while the threads still interleave between calls —
    which is where Sluice's own races would be.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attribute(*args, **kwargs)

        return call


WINDOW_ERROR: Final = {
    "errorMessage": "part 1 of the archive read back from MinIO does not match what was spooled",
    "errorType": "UploadVerificationError",
}
"""A failure of the window itself: it counts toward PARKED."""
ENVIRONMENT_ERROR: Final = {"errorMessage": "MinIO unreachable", "errorType": "MaxRetryError"}
"""A failure of the environment: redriven without counting."""


def on_failure_record(staged_key: str, error: dict[str, str] = WINDOW_ERROR) -> dict[str, Any]:
    """What Lambda sends the on-failure destination once delivery's async retries are spent: the
    S3 event it was invoked with, its key URL-encoded as S3 sends it (`=` as `%3D`), and the
    error of the last attempt."""
    payload = staged_event(STAGING, quote_plus(staged_key, safe="/"))
    return {
        "version": "1.0",
        "timestamp": "2026-11-25T12:10:00.000Z",
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": "arn:aws:lambda:eu-west-2:123456789012:function:sluice-delivery:live",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": payload,
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "7",
            "functionError": "Unhandled",
        },
        "responsePayload": dict(error),
    }


def window_manifests(minio: Minio, bucket: str) -> dict[str, dict[str, Any]]:
    """Every window manifest (the commit markers) in MinIO, by key."""
    return {
        obj.object_name: json.loads(minio.get_object(bucket, obj.object_name).read())
        for obj in minio.list_objects(bucket, recursive=True)
        if obj.object_name.endswith(".manifest.json") and "/_incoming/" not in obj.object_name
    }


def archives(
    minio: Minio, bucket: str
) -> dict[str, tuple[dict[str, Any], dict[str, bytes], list[str]]]:
    """Every archive a consumer sees in MinIO (not `_incoming/`): (MANIFEST.json, members by
    name, member order)."""
    found = {}
    for obj in minio.list_objects(bucket, recursive=True):
        if not obj.object_name.endswith(".tar.gz") or "/_incoming/" in obj.object_name:
            continue
        data = minio.get_object(bucket, obj.object_name).read()
        members: dict[str, bytes] = {}
        order = []
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar:
                order.append(member.name)
                extracted = tar.extractfile(member)
                members[member.name] = extracted.read() if extracted else b""
        found[obj.object_name] = (json.loads(members["MANIFEST.json"]), members, order)
    return found
