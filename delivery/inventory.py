"""The daily inventory check: a landed version whose S3 event never reached the forwarder is found
and announced again (DESIGN §4a, docs/DESIGN.md "Reconcile").

A lost S3 event leaves no trace where the other checks look (the ingest index, the ledger, the
manifests), so this one reads what S3 itself lists: S3 Inventory writes the landing bucket's
versions once a day (CSV, gzip) under the staging bucket's `inventory/`. Redrive reads the newest
report a few data files a run, keeping its place in a cursor item in the ledger table. For each
version landed since the previous report was checked (and at least `GRACE` before this one was
made) it asks the idempotency table whether the forwarder claimed it (BatchGetItem, 100 a call).
One it never claimed and did not quarantine is announced again: an S3 notification on the ingest
queue with the upload's own time, so the forwarder, idempotent, takes it from there.

Cost per report: its data files (the landing bucket's retained versions, bounded by the landing
lifecycle) and one BatchGetItem per 100 versions of the day — never the ledger's or the index's
history.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, NamedTuple
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from delivery.ledger import LEDGER_KEY
from transform.envelope import file_id as compute_file_id
from transform.idempotency import IDEMPOTENCY_KEY
from transform.quarantine import reason_key
from transform.s3_events import created_notification

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

logger = Logger(child=True)

INVENTORY_PREFIX: Final = "inventory/"
"""Where S3 Inventory writes in the staging bucket (Terraform: inventory.tf)."""
INVENTORY_ID: Final = "landing-versions"
"""The inventory configuration's id on the landing bucket (Terraform: inventory.tf)."""
CURSOR_KEY: Final = "INVENTORY#landing"
GRACE_MS: Final = 3600 * 1000
"""Versions landed in the last hour before a report are not judged: their events may still be on
their way (the next report sees them)."""
BATCH_GET_LIMIT: Final = 100
FIRST_REPORT_LOOKBACK_MS: Final = 24 * 3600 * 1000
"""With no report checked before, a report's last day is checked."""
REQUIRED_FIELDS: Final = ("Key", "VersionId", "IsDeleteMarker", "Size", "LastModifiedDate")
_REPORT_FOLDER: Final = re.compile(r"/(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}Z)/$")


class InventoryError(RuntimeError):
    """A report could not be read or is not what S3 Inventory writes; the message names the key."""


class Report(NamedTuple):
    """One report's manifest.json."""

    manifest_key: str
    created_ms: int
    data_keys: tuple[str, ...]
    fields: tuple[str, ...]


class Cursor(NamedTuple):
    """Where the check stands: the report being read and the next data file, and the landing
    time up to which versions were checked. `waiting_since_ms`: when the check first ran, the
    age reported while no report has ever arrived."""

    waiting_since_ms: int
    manifest_key: str = ""
    next_file: int = 0
    checked_until_ms: int = 0
    report_created_ms: int = 0


@dataclass
class InventoryOutcome:
    lag_seconds: float
    """How far behind the check is: since the landing time it has checked up to; with no report
    checked yet, since the check first ran. About a day and an hour when it keeps up."""
    data_files_read: int = 0
    versions_checked: int = 0
    announced: list[str] = field(default_factory=list)
    """`s3://bucket/key?versionId=` of each version announced again."""


@dataclass(frozen=True)
class InventoryDeps:
    s3: S3Client
    dynamodb: DynamoDBClient
    sqs: SQSClient
    landing_bucket: str
    staging_bucket: str
    ledger_table: str
    idempotency_table: str
    ingest_queue_url: str
    files_per_run: int
    idempotency_ttl_seconds: int


def report_prefix(landing_bucket: str) -> str:
    """S3's layout: `<prefix><source bucket>/<configuration id>/`."""
    return f"{INVENTORY_PREFIX}{landing_bucket}/{INVENTORY_ID}/"


def check_inventory(deps: InventoryDeps, now_ms: int) -> InventoryOutcome:
    """Read up to `files_per_run` data files of the report in hand (or the newest, once the last
    is done), and announce again each version of the checked span the forwarder never saw."""
    cursor = _load_cursor(deps, now_ms)
    outcome = InventoryOutcome(lag_seconds=_lag_seconds(cursor, now_ms))
    newest = latest_report(deps.s3, deps.staging_bucket, deps.landing_bucket)
    report = None if newest is None else _report_in_hand(deps, cursor, newest)
    if report is None:
        return outcome  # no report yet, or the newest is checked already
    if cursor.manifest_key != report.manifest_key:
        cursor = Cursor(
            waiting_since_ms=cursor.waiting_since_ms,
            manifest_key=report.manifest_key,
            checked_until_ms=cursor.checked_until_ms,
            report_created_ms=report.created_ms,
        )
        _save_cursor(deps, cursor)
    since_ms = max(
        cursor.checked_until_ms or report.created_ms - FIRST_REPORT_LOOKBACK_MS,
        # older than the idempotency records' TTL: the forwarder's record is gone, not missing
        report.created_ms - (deps.idempotency_ttl_seconds * 1000 - FIRST_REPORT_LOOKBACK_MS),
    )
    until_ms = report.created_ms - GRACE_MS
    while cursor.next_file < len(report.data_keys) and outcome.data_files_read < deps.files_per_run:
        data_key = report.data_keys[cursor.next_file]
        landed = [
            row
            for row in read_rows(deps.s3, deps.staging_bucket, data_key, report.fields)
            if not row.delete_marker and since_ms <= row.landed_ms < until_ms
        ]
        outcome.versions_checked += len(landed)
        for row in _unclaimed(deps, landed):
            if not _quarantined(deps, row):
                _announce(deps, row)
                outcome.announced.append(
                    f"s3://{deps.landing_bucket}/{row.key}?versionId={row.version_id}"
                )
        outcome.data_files_read += 1
        done = cursor.next_file + 1 == len(report.data_keys)
        cursor = Cursor(
            waiting_since_ms=cursor.waiting_since_ms,
            manifest_key=cursor.manifest_key,
            next_file=cursor.next_file + 1,
            checked_until_ms=until_ms if done else cursor.checked_until_ms,
            report_created_ms=report.created_ms,
        )
        _save_cursor(deps, cursor)  # after each file: a run cut short resumes at the next
    outcome.lag_seconds = _lag_seconds(cursor, now_ms)
    if outcome.announced:
        logger.error(
            "landed versions the forwarder never saw, announced again",
            count=len(outcome.announced),
            versions=outcome.announced[:20],
        )
    return outcome


def _lag_seconds(cursor: Cursor, now_ms: int) -> float:
    return (now_ms - (cursor.checked_until_ms or cursor.waiting_since_ms)) / 1000


# ---------------------------------------------------------------- the report


class InventoryRow(NamedTuple):
    key: str
    version_id: str
    delete_marker: bool
    size: int
    landed_ms: int
    etag: str


def latest_report(s3: S3Client, bucket: str, landing_bucket: str) -> Report | None:
    """The newest report's manifest (the dated folders are kept a week by the staging lifecycle:
    a listing of a few prefixes, whatever the history)."""
    prefix = report_prefix(landing_bucket)
    folders: list[str] = []
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix, Delimiter="/"
    )
    for page in pages:
        folders += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    dated = sorted(f for f in folders if _REPORT_FOLDER.search(f))
    for folder in reversed(dated):
        report = _read_manifest(s3, bucket, f"{folder}manifest.json")
        if report is not None:
            return report
    return None


def _read_manifest(s3: S3Client, bucket: str, key: str) -> Report | None:
    """None while S3 is still writing the report (no manifest yet)."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise InventoryError(f"s3://{bucket}/{key}: {err}") from err
    try:
        manifest = json.loads(body)
        fields = tuple(name.strip() for name in manifest["fileSchema"].split(","))
        report = Report(
            manifest_key=key,
            created_ms=int(manifest["creationTimestamp"]),
            data_keys=tuple(str(entry["key"]) for entry in manifest["files"]),
            fields=fields,
        )
        file_format = manifest["fileFormat"]
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise InventoryError(f"s3://{bucket}/{key} is not an S3 Inventory manifest: {err}") from err
    if file_format != "CSV" or not set(REQUIRED_FIELDS) <= set(fields):
        raise InventoryError(
            f"s3://{bucket}/{key}: expected a CSV report with {', '.join(REQUIRED_FIELDS)}, "
            f"found {file_format} with {', '.join(fields)} (inventory.tf sets the fields)"
        )
    return report


def read_rows(s3: S3Client, bucket: str, key: str, fields: Iterable[str]) -> Iterator[InventoryRow]:
    """One data file's rows, streamed (gzip CSV; keys URL-encoded)."""
    column = {name: n for n, name in enumerate(fields)}
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        with gzip.GzipFile(fileobj=body) as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            for line, row in enumerate(csv.reader(text), start=1):
                try:
                    yield _row(row, column)
                except (IndexError, ValueError) as err:
                    raise InventoryError(f"s3://{bucket}/{key} line {line}: {err}") from err
    except (ClientError, OSError, EOFError) as err:
        raise InventoryError(f"s3://{bucket}/{key}: {err}") from err


def _row(row: list[str], column: dict[str, int]) -> InventoryRow:
    landed = datetime.fromisoformat(row[column["LastModifiedDate"]].replace("Z", "+00:00"))
    size = row[column["Size"]]
    return InventoryRow(
        key=unquote_plus(row[column["Key"]]),
        version_id=row[column["VersionId"]],
        delete_marker=row[column["IsDeleteMarker"]].lower() == "true",
        size=int(size) if size else 0,
        landed_ms=int(landed.astimezone(UTC).timestamp() * 1000),
        etag=row[column["ETag"]] if "ETag" in column else "",
    )


def _report_in_hand(deps: InventoryDeps, cursor: Cursor, newest: Report) -> Report | None:
    """The report to read now: the one the cursor is in, if unfinished; else the newest, unless
    the cursor finished it already."""
    if cursor.manifest_key == newest.manifest_key:
        return newest if cursor.next_file < len(newest.data_keys) else None
    if cursor.manifest_key:
        current = _read_manifest(deps.s3, deps.staging_bucket, cursor.manifest_key)
        if current is not None and cursor.next_file < len(current.data_keys):
            return current
    return newest


# ---------------------------------------------------------------- the checks


def _unclaimed(deps: InventoryDeps, rows: list[InventoryRow]) -> Iterator[InventoryRow]:
    """The rows with no record in the idempotency table (BatchGetItem, keys only)."""
    by_id = {compute_file_id(deps.landing_bucket, r.key, r.version_id): r for r in rows}
    ids = list(by_id)
    for start in range(0, len(ids), BATCH_GET_LIMIT):
        wanted = {i: {IDEMPOTENCY_KEY: {"S": i}} for i in ids[start : start + BATCH_GET_LIMIT]}
        found: set[str] = set()
        request: dict[str, Any] = {
            deps.idempotency_table: {
                "Keys": list(wanted.values()),
                "ProjectionExpression": "#id",
                "ExpressionAttributeNames": {"#id": IDEMPOTENCY_KEY},
            }
        }
        while request:
            response = deps.dynamodb.batch_get_item(RequestItems=request)
            for item in response.get("Responses", {}).get(deps.idempotency_table, []):
                found.add(item[IDEMPOTENCY_KEY]["S"])
            request = dict(response.get("UnprocessedKeys") or {})
        for missing in wanted.keys() - found:
            yield by_id[missing]


def _quarantined(deps: InventoryDeps, row: InventoryRow) -> bool:
    """Held back on purpose (too large, version gone): the forwarder wrote its reason file."""
    key = reason_key(compute_file_id(deps.landing_bucket, row.key, row.version_id))
    try:
        deps.s3.head_object(Bucket=deps.staging_bucket, Key=key)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return False
        raise
    return True


def _announce(deps: InventoryDeps, row: InventoryRow) -> None:
    notification = created_notification(
        bucket=deps.landing_bucket,
        key=row.key,
        version_id=row.version_id,
        size=row.size,
        etag=row.etag,
        at=datetime.fromtimestamp(row.landed_ms / 1000, UTC),
    )
    deps.sqs.send_message(QueueUrl=deps.ingest_queue_url, MessageBody=json.dumps(notification))


# ---------------------------------------------------------------- the cursor


def _load_cursor(deps: InventoryDeps, now_ms: int) -> Cursor:
    item = deps.dynamodb.get_item(
        TableName=deps.ledger_table, Key={LEDGER_KEY: {"S": CURSOR_KEY}}, ConsistentRead=True
    ).get("Item")
    if item is None:
        cursor = Cursor(waiting_since_ms=now_ms)
        _save_cursor(deps, cursor)
        return cursor
    return Cursor(
        waiting_since_ms=int(item["waiting_since_ms"]["N"]),
        manifest_key=item.get("manifest_key", {}).get("S", ""),
        next_file=int(item.get("next_file", {}).get("N", "0")),
        checked_until_ms=int(item.get("checked_until_ms", {}).get("N", "0")),
        report_created_ms=int(item.get("report_created_ms", {}).get("N", "0")),
    )


def _save_cursor(deps: InventoryDeps, cursor: Cursor) -> None:
    deps.dynamodb.put_item(
        TableName=deps.ledger_table,
        Item={
            LEDGER_KEY: {"S": CURSOR_KEY},
            "waiting_since_ms": {"N": str(cursor.waiting_since_ms)},
            "manifest_key": {"S": cursor.manifest_key},
            "next_file": {"N": str(cursor.next_file)},
            "checked_until_ms": {"N": str(cursor.checked_until_ms)},
            "report_created_ms": {"N": str(cursor.report_created_ms)},
        },
    )
