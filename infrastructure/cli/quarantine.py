"""`sluice quarantine list|show|release`: what is held back, why, and sending it through again.

Reason files are `quarantine/reasons/<file_id>.json` in the staging bucket (transform.quarantine).
Release, once the cause is fixed (a payload schema corrected, `max_file_bytes` raised):

- a record the processor or requeue held back (`record` in the reason file) is put back into
  Firehose as it was, on the stream its file_id maps to; the processor judges it again;
- a file the forwarder held back (too-large) is announced again on the ingest queue as a replay
  of its exact version (`transform.s3_events.replay_notification`), so the forwarder judges it
  again;
- a version gone for good cannot be released: its bytes no longer exist.

A released reason file moves to `quarantine/released/` (history, and out of `list`); should the
record fail again, a new reason file is written.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from botocore.exceptions import ClientError

from infrastructure.cli import deployment
from infrastructure.cli.deployment import Deployment
from transform.forwarding import stream_for
from transform.quarantine import REASONS_PREFIX, reason_key
from transform.s3_events import replay_notification

RELEASED_PREFIX: Final = "quarantine/released/"
DETAIL_WIDTH: Final = 100


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "quarantine",
        help="records and files held back, their reasons, and release",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every reason file, newest first")
    listing.add_argument("--reason", help="only this reason (payload-schema, too-large, …)")
    show = actions.add_parser("show", help="one reason file, whole")
    show.add_argument("file_id")
    release = actions.add_parser("release", help="send held-back records or files through again")
    chosen = release.add_mutually_exclusive_group(required=True)
    chosen.add_argument("file_ids", nargs="*", default=[], metavar="FILE_ID")
    chosen.add_argument("--reason", help="every entry with this reason")
    release.add_argument("--dry-run", action="store_true", help="say what would be released")
    for sub in (listing, show, release):
        deployment.add_arguments(sub)
        sub.add_argument("--json", action="store_true", help="JSON instead of text")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, root: Path) -> int:
    target = deployment.resolve(args, root)
    if args.action == "list":
        entries = list_entries(target, reason=args.reason)
        if args.json:
            print(json.dumps(entries, indent=1))
        else:
            for entry in entries:
                print(_line(entry))
            print(f"{len(entries)} held back")
        return 0
    if args.action == "show":
        found = read_entry(target, args.file_id)
        if found is None:
            print(f"sluice quarantine: no reason file for {args.file_id}", file=sys.stderr)
            return 1
        print(json.dumps(found, indent=1, ensure_ascii=False))
        return 0
    ids = args.file_ids or [e["file_id"] for e in list_entries(target, reason=args.reason)]
    outcomes = [release(target, file_id, dry_run=args.dry_run) for file_id in ids]
    if args.json:
        print(json.dumps([asdict(o) for o in outcomes], indent=1))
    else:
        for outcome in outcomes:
            print(outcome.text())
        print(f"{sum(o.released for o in outcomes)} of {len(outcomes)} released")
    return 0 if all(o.released or (args.dry_run and o.how) for o in outcomes) else 1


def list_entries(target: Deployment, *, reason: str | None = None) -> list[dict[str, Any]]:
    s3 = target.client("s3")
    entries = []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=target.staging_bucket, Prefix=REASONS_PREFIX
    ):
        for obj in page.get("Contents", []):
            entry = _get_json(s3, target.staging_bucket, obj["Key"])
            if entry is not None and (reason is None or entry.get("reason") == reason):
                entries.append(entry)
    return sorted(entries, key=lambda e: (-int(e.get("at_ms", 0)), e.get("file_id", "")))


def read_entry(target: Deployment, file_id: str) -> dict[str, Any] | None:
    return _get_json(target.client("s3"), target.staging_bucket, reason_key(file_id))


@dataclass
class ReleaseOutcome:
    file_id: str
    reason: str | None
    how: str | None = None
    """firehose | ingest-replay; None when it cannot be released"""
    released: bool = False
    detail: str = ""
    stream: str | None = None
    dry_run: bool = field(default=False, repr=False)

    def text(self) -> str:
        if self.released:
            where = f"into {self.stream}" if self.stream else "to the ingest queue"
            return f"released {self.file_id} ({self.reason}) {where}"
        if self.dry_run and self.how:
            return f"would release {self.file_id} ({self.reason}) by {self.how}"
        return f"not released {self.file_id} ({self.reason}): {self.detail}"


def release(target: Deployment, file_id: str, *, dry_run: bool = False) -> ReleaseOutcome:
    entry = read_entry(target, file_id)
    if entry is None:
        return ReleaseOutcome(file_id, None, detail="no reason file (already released?)")
    outcome = ReleaseOutcome(file_id, entry.get("reason"), dry_run=dry_run)
    if entry.get("record"):
        outcome.how = "firehose"
        outcome.stream = stream_for(file_id.removeprefix("raw-"), target.streams)
    elif entry.get("reason") == "too-large" and entry.get("version_id"):
        outcome.how = "ingest-replay"
    else:
        outcome.detail = (
            "its version is gone for good: nothing left to send"
            if entry.get("reason") == "version-gone"
            else "the reason file names neither a record nor a landed version"
        )
        return outcome
    if dry_run:
        return outcome
    problem = (
        _put_record(target, entry, outcome.stream) if outcome.stream else _announce(target, entry)
    )
    if problem:
        outcome.detail = problem
        return outcome
    _retire(target, entry)
    outcome.released = True
    return outcome


def _put_record(target: Deployment, entry: dict[str, Any], stream: str) -> str:
    data = base64.b64decode(entry["record"])
    response = target.client("firehose").put_record_batch(
        DeliveryStreamName=stream, Records=[{"Data": data}]
    )
    if response["FailedPutCount"]:
        failure = response["RequestResponses"][0]
        return f"Firehose refused it: {failure.get('ErrorCode')} {failure.get('ErrorMessage')}"
    return ""


def _announce(target: Deployment, entry: dict[str, Any]) -> str:
    s3 = target.client("s3")
    bucket, key, version_id = entry["bucket"], entry["key"], entry["version_id"]
    try:
        head = s3.head_object(Bucket=bucket, Key=key, VersionId=version_id)
    except ClientError as err:
        return f"s3://{bucket}/{key}?versionId={version_id} cannot be read: {err}"
    released_at = datetime.now(UTC)
    event = replay_notification(
        bucket=bucket,
        key=key,
        version_id=version_id,
        size=head["ContentLength"],
        etag=head.get("ETag"),
        replay_id=f"release-{released_at:%Y%m%dT%H%M%S}",
        force=False,
    )
    target.client("sqs").send_message(
        QueueUrl=target.ingest_queue_url, MessageBody=json.dumps(event)
    )
    return ""


def _retire(target: Deployment, entry: dict[str, Any]) -> None:
    """Move the reason file to quarantine/released/, stamped."""
    s3 = target.client("s3")
    released = {**entry, "released_at_ms": int(datetime.now(UTC).timestamp() * 1000)}
    s3.put_object(
        Bucket=target.staging_bucket,
        Key=f"{RELEASED_PREFIX}{entry['file_id']}.json",
        Body=json.dumps(released, ensure_ascii=False, indent=1).encode(),
        ContentType="application/json",
    )
    s3.delete_object(Bucket=target.staging_bucket, Key=reason_key(entry["file_id"]))


def _get_json(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise
    document: dict[str, Any] = json.loads(body)
    return document


def _line(entry: dict[str, Any]) -> str:
    at = datetime.fromtimestamp(int(entry.get("at_ms", 0)) / 1000, UTC)
    where = (
        f"s3://{entry['bucket']}/{entry['key']}?versionId={entry.get('version_id')}"
        if entry.get("key")
        else "(record only)"
    )
    detail = shorten(str(entry.get("detail", "")), DETAIL_WIDTH)
    return (
        f"{at:%Y-%m-%dT%H:%M:%SZ}  {entry.get('reason', '?'):<24} {entry['file_id']}  {where}  "
        f"{detail}"
    )


def shorten(text: str, width: int) -> str:
    """`text` on one line, at most `width` characters: cut at the last word boundary that fits,
    with an ellipsis (mid-word only when a single word is longer than half the width)."""
    flat = " ".join(text.split())
    if len(flat) <= width:
        return flat
    cut = flat[: width - 1]
    space = cut.rfind(" ")
    if space >= width // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:.") + "…"
