"""Where the daily report goes: `reports/daily/<day>.{json,txt,html}` in the staging bucket and
a message on the report topic, once per distinct report.

Idempotent: the JSON is compared with the one already stored, and a report equal to it is
neither written nor published again, so a retry, or a rerun on data that has not changed, leaves
the same objects and mails nothing twice. The JSON is written last, after the message: it is the
mark that a report was published (a run that failed before it publishes on its retry), so the
topic gets each distinct report at least once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from botocore.exceptions import ClientError

from delivery import report_render

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REPORTS_PREFIX: Final = "reports/daily/"
SNS_MESSAGE_LIMIT: Final = 256 * 1024
"""Bytes of an SNS message; a longer text is cut, saying where the whole report is."""


class StoredReport(NamedTuple):
    keys: tuple[str, ...]
    published: bool
    """False: an equal report was stored already; nothing was written or sent."""
    message_id: str | None = None


def report_key(day: str, extension: str) -> str:
    return f"{REPORTS_PREFIX}{day}.{extension}"


def encode(document: Mapping[str, Any]) -> bytes:
    """The JSON report's bytes: the same document, the same bytes."""
    return (json.dumps(document, indent=1, ensure_ascii=False) + "\n").encode()


def store_and_publish(
    document: Mapping[str, Any], *, s3: S3Client, bucket: str, sns: Any, topic_arn: str
) -> StoredReport:
    day = str(document["day"])
    body = encode(document)
    json_key = report_key(day, "json")
    keys = (report_key(day, "txt"), report_key(day, "html"), json_key)
    if _stored(s3, bucket, json_key) == body:
        return StoredReport(keys, published=False)
    text = report_render.text(document)
    s3.put_object(
        Bucket=bucket, Key=keys[0], Body=text.encode(), ContentType="text/plain; charset=utf-8"
    )
    s3.put_object(
        Bucket=bucket,
        Key=keys[1],
        Body=report_render.page(document).encode(),
        ContentType="text/html; charset=utf-8",
    )
    message = _message(text, bucket, keys[1])
    answer = sns.publish(
        TopicArn=topic_arn, Subject=str(document["verdict"]["subject"]), Message=message
    )
    s3.put_object(Bucket=bucket, Key=json_key, Body=body, ContentType="application/json")
    return StoredReport(keys, published=True, message_id=answer.get("MessageId"))


def _message(text: str, bucket: str, html_key: str) -> str:
    footer = f"\nThe whole report, with charts: s3://{bucket}/{html_key}\n"
    room = SNS_MESSAGE_LIMIT - len(footer.encode())
    encoded = text.encode()
    if len(encoded) > room:
        text = encoded[: room - 100].decode(errors="ignore") + "\n[cut: too long for a message]\n"
    return text + footer


def _stored(s3: S3Client, bucket: str, key: str) -> bytes | None:
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
            return None
        raise
