"""`sluice trace s3://BUCKET/KEY[?versionId=V]`: one landed file's story, stage by stage.

Per version (all versions of the key, newest first, unless one is named): the landing version,
its file_id, the forwarder's idempotency record, the ledger's claim and the owner window, then the
archive part and member (from the window manifest), or the exclusion, or the quarantine reason.
`where` says plainly where the file is when the story stops.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from botocore.exceptions import ClientError

from delivery.layout import placements, window_manifest_beside
from delivery.ledger import WindowRecord, WindowState
from delivery.reconciling import ReconcileError, ReconcileSources, read_manifest
from infrastructure.cli import deployment
from infrastructure.cli.deployment import Deployment
from infrastructure.cli.errors import UsageError, minio_problem
from infrastructure.cli.quarantine import DETAIL_WIDTH, shorten
from infrastructure.cli.reconcile import sources_of
from infrastructure.queues import queue_depth
from transform.envelope import file_id as compute_file_id
from transform.quarantine import reason_key


class TraceError(LookupError):
    """The file to trace does not exist, or its address is malformed."""


@dataclass
class Story:
    bucket: str
    key: str
    version_id: str
    size: int
    last_modified: str
    etag: str
    file_id: str
    forwarder: dict[str, Any] | None = None
    owner_window: str | None = None
    window: dict[str, Any] | None = None
    archive: dict[str, Any] | None = None
    exclusion: dict[str, Any] | None = None
    quarantine: dict[str, Any] | None = None
    where: str = ""

    def text(self) -> str:
        lines = [
            f"s3://{self.bucket}/{self.key}?versionId={self.version_id}",
            f"  landed       {self.last_modified}, {self.size} bytes, etag {self.etag}",
            f"  file_id      {self.file_id}",
            f"  forwarder    {_fields(self.forwarder)}",
            f"  claim        {self.owner_window or 'none'}",
        ]
        lines += [f"  window       {_fields(self.window)}"] if self.window else []
        lines += [f"  archive      {_fields(self.archive)}"] if self.archive else []
        lines += [f"  excluded     {_fields(self.exclusion)}"] if self.exclusion else []
        lines += [f"  quarantine   {self._held()}"] if self.quarantine else []
        return "\n".join([*lines, f"  where        {self.where}"])

    def _held(self) -> str:
        """The reason file in short: its record (base64, up to a whole file) only by size."""
        entry = self.quarantine or {}
        at = entry.get("at_ms")
        when = (
            datetime.fromtimestamp(int(at) / 1000, UTC).isoformat(timespec="seconds")
            if at
            else None
        )
        summary = {
            "reason": entry.get("reason"),
            "stage": entry.get("stage"),
            "at": when,
            "detail": shorten(str(entry["detail"]), DETAIL_WIDTH) if entry.get("detail") else None,
        }
        record = entry.get("record")
        held = (
            f"; record of {len(record) * 3 // 4 - record.count('='):,} bytes "
            f"(whole: `sluice quarantine show {self.file_id}`)"
            if record
            else ""
        )
        return _fields(summary) + held


def register(commands: Any) -> None:
    command = commands.add_parser(
        "trace",
        help="one landed file's story: forwarded, claimed, archived (or held back, and why)",
        description="Every version of the key (newest first), or the one named by ?versionId=: "
        "landing, file_id, forwarder record, ledger claim, window state, archive member and "
        "sha256 from the manifest, or the exclusion or quarantine reason. Exit status 1 when "
        "the key or version does not exist.",
    )
    command.add_argument("uri", metavar="s3://BUCKET/KEY[?versionId=V]")
    deployment.add_arguments(command)
    command.add_argument("--json", action="store_true", help="a JSON list instead of text")
    command.set_defaults(run=run)


def run(args: argparse.Namespace, root: Path) -> int:
    bucket, key, version_id = parse_uri(args.uri)
    target = deployment.resolve(args, root)
    try:
        stories = trace(target, sources_of(target), bucket, key, version_id)
    except (TraceError, ReconcileError) as err:
        print(f"sluice trace: {err}", file=sys.stderr)
        return 1
    except deployment.MINIO_ERRORS as err:
        print(
            f"sluice trace: {minio_problem(err)}: the archives cannot be read. Run again once "
            "MinIO is back.",
            file=sys.stderr,
        )
        return 1
    if args.json:
        print(json.dumps([asdict(story) for story in stories]))
    else:
        print("\n\n".join(story.text() for story in stories))
    return 0


def parse_uri(uri: str) -> tuple[str, str, str | None]:
    """`s3://BUCKET/KEY[?versionId=V]` -> (bucket, key, version id or None)."""
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise UsageError(f"{uri!r} is not s3://BUCKET/KEY[?versionId=V]")
    bucket, _, key = uri[5:].partition("/")
    key, marker, version_id = (
        key.rpartition("?versionId=") if "?versionId=" in key else (key, "", "")
    )
    if not bucket or not key:
        raise UsageError(f"{uri!r} names no bucket or no key: s3://BUCKET/KEY[?versionId=V]")
    return bucket, key, unquote(version_id) if marker else None


def trace(
    target: Deployment,
    sources: ReconcileSources,
    bucket: str,
    key: str,
    version_id: str | None = None,
) -> list[Story]:
    """The story of each version of `key` (newest first), or of `version_id` alone."""
    if bucket != target.landing_bucket:
        raise TraceError(
            f"s3://{bucket} is not the landing bucket of deployment {target.name} "
            f"({target.landing_bucket}): trace s3://{target.landing_bucket}/KEY"
        )
    s3 = sources.landing
    paginator = s3.get_paginator("list_object_versions")
    try:
        versions = [
            version
            for page in paginator.paginate(Bucket=bucket, Prefix=key)
            for version in page.get("Versions", [])
            if version["Key"] == key and version_id in (None, version.get("VersionId"))
        ]
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") != "NoSuchBucket":
            raise
        raise TraceError(
            f"no bucket {bucket} in deployment {target.name}: trace "
            f"s3://{target.landing_bucket}/KEY"
        ) from err
    if not versions:
        what = f"version {version_id} of " if version_id else ""
        raise TraceError(f"no {what}s3://{bucket}/{key}: not in the landing bucket {bucket}")
    versions.sort(key=lambda v: v["LastModified"], reverse=True)
    return [_story(target, sources, bucket, version) for version in versions]


def _story(target: Deployment, sources: ReconcileSources, bucket: str, version: Any) -> Story:
    version_id = version.get("VersionId") or "null"
    story = Story(
        bucket=bucket,
        key=version["Key"],
        version_id=version_id,
        size=version["Size"],
        last_modified=version["LastModified"].astimezone(UTC).isoformat(timespec="seconds"),
        etag=version.get("ETag", "").strip('"'),
        file_id=compute_file_id(bucket, version["Key"], version_id),
    )
    story.forwarder = _forwarder(target, story.file_id)
    story.quarantine = _quarantine(sources, story.file_id)
    story.owner_window = sources.ledger.owners([story.file_id]).get(story.file_id)
    record = sources.ledger.get_window(story.owner_window) if story.owner_window else None
    if record is not None:
        story.window = {
            "state": record.state.value,
            "staged_key": record.staged_key,
            "redrive_count": record.redrive_count,
            "parked_reason": record.parked_reason,
        }
        _find_in_archives(sources, record, story)
    story.where = _where(target, story, record)
    return story


def _forwarder(target: Deployment, file_id: str) -> dict[str, Any] | None:
    item = (
        target.client("dynamodb")
        .get_item(
            TableName=target.idempotency_table, Key={"id": {"S": file_id}}, ConsistentRead=True
        )
        .get("Item")
    )
    if item is None:
        return None
    expires = int(item.get("expiration", {}).get("N", "0"))
    return {
        "status": item.get("status", {}).get("S"),
        "expires": datetime.fromtimestamp(expires, UTC).isoformat(timespec="seconds"),
    }


def _quarantine(sources: ReconcileSources, file_id: str) -> dict[str, Any] | None:
    try:
        response = sources.staging.get_object(
            Bucket=sources.staging_bucket, Key=reason_key(file_id)
        )
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
            return None
        raise
    document: dict[str, Any] = json.loads(response["Body"].read())
    return document


def _find_in_archives(sources: ReconcileSources, record: WindowRecord, story: Story) -> None:
    for exclusion in record.exclusions:
        if exclusion.file_id == story.file_id:
            story.exclusion = {"reason": exclusion.reason, "detail": exclusion.detail}
    for part in record.parts[:1]:
        key = window_manifest_beside(part.minio_key, record.window_id)
        manifest = read_manifest(sources.minio, sources.archive_bucket, key)
        numbers = {p.minio_key: p.part for p in record.parts}
        for archive_key, entry in placements(manifest):
            if entry["file_id"] == story.file_id:
                story.archive = {
                    "bucket": sources.archive_bucket,
                    "minio_key": archive_key,
                    "part": numbers.get(archive_key, entry["part"]),
                    "member_name": entry["member_name"],
                    "sha256": entry["sha256"],
                    "check": entry.get("check"),
                }
                return


def _where(target: Deployment, story: Story, record: WindowRecord | None) -> str:
    if story.archive:
        archive = story.archive
        return (
            f"delivered: {archive['bucket']}/{archive['minio_key']}, "
            f"member {archive['member_name']}"
        )
    if story.exclusion:
        return (
            f"excluded from window {story.owner_window}: {story.exclusion['reason']} "
            "(it stays in the landing bucket)"
        )
    if story.quarantine:
        return (
            f"quarantined ({story.quarantine.get('reason')}): held in the landing bucket, "
            f"reason file {reason_key(story.file_id)} in the staging bucket"
        )
    if story.owner_window is None:
        return _before_claim(story)
    return _after_claim(target, story.owner_window, record)


def _before_claim(story: Story) -> str:
    if story.forwarder is None:
        return "not forwarded yet: its event is in the ingest queue (or the ingest DLQ)"
    if story.forwarder["status"] != "COMPLETED":
        return "being forwarded: the forwarder holds it IN_PROGRESS"
    return (
        "no claim yet: in the ingest queue or Firehose's buffers "
        "(or in a staged window delivery has not begun)"
    )


def _after_claim(target: Deployment, window: str, record: WindowRecord | None) -> str:
    if record is None:
        return f"claimed by window {window}, which delivery is building (no window record yet)"
    if record.state is WindowState.PARKED:
        return (
            f"window {window} is PARKED ({record.parked_reason}): "
            f"`sluice redrive --window {window}` releases it"
        )
    if record.state is WindowState.CLAIMED:
        return _claimed(target, window, record)
    return (
        f"window {window} is {record.state.value} but no manifest lists the file: "
        "run `sluice reconcile`"
    )


def _claimed(target: Deployment, window: str, record: WindowRecord) -> str:
    """Both ways redrive (delivery.redriving) takes a CLAIMED window up again, with their times:
    a delivery that failed past its retries leaves an on-failure record in the delivery DLQ,
    drained by the next run once `min_age_seconds` old; one that stopped mid-way leaves none,
    and the sweep invokes delivery again once the claim is `claimed_stale_seconds` old. Either
    only while MinIO takes writes."""
    redrive = target.tunables().redrive
    since = datetime.fromtimestamp(record.updated_at_ms / 1000, UTC)
    stale = since + timedelta(seconds=redrive.claimed_stale_seconds)
    waiting = queue_depth(target.client("sqs"), target.delivery_dlq_url)
    return (
        f"window {window} is CLAIMED (since {since:%Y-%m-%dT%H:%M:%SZ}): delivery has not "
        f"finished it. If delivery failed past its retries, the window is in the delivery DLQ "
        f"({waiting} message(s) there now): redrive, every {redrive.schedule_minutes} min, "
        f"invokes delivery again once the failure is {redrive.min_age_seconds} s old; if "
        f"delivery stopped mid-way, redrive invokes it again from {stale:%Y-%m-%dT%H:%M:%SZ} "
        f"({redrive.claimed_stale_seconds // 60} min after the claim). Either once MinIO takes "
        "writes; `sluice redrive` does it now"
    )


def _fields(values: dict[str, Any] | None) -> str:
    if not values:
        return "none"
    return ", ".join(f"{name} {value}" for name, value in values.items() if value is not None)
