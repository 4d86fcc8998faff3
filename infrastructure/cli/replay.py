"""`sluice replay`: landed files through the pipeline again, as synthetic S3 events.

Every version (not delete markers) that landed in [--since, --until), under --prefix, is
announced again on the ingest queue with a replay id (`transform.s3_events.replay_notification`);
no object is uploaded again. Without --force the file keeps its file_id: the forwarder sends it
(its idempotency record is the replay's own), and delivery's ledger keeps out every file already
delivered — so a replay recovers exactly what was lost. With --force the file travels as
`<file_id>#r<replay_id>` and is delivered again, in a new archive; `sluice reconcile` reports it
as redelivered, not as a duplicate.
"""

from __future__ import annotations

import argparse
import json
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from delivery.reconciling import LandedVersion, list_landed
from infrastructure.cli import deployment
from infrastructure.cli.deployment import Deployment
from infrastructure.cli.errors import UsageError
from infrastructure.cli.times import time_argument
from transform.s3_events import REPLAY_ID_PATTERN, replay_notification

SQS_BATCH: Final = 10


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "replay",
        help="send landed files through again (synthetic S3 events, never re-uploads)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    deployment.add_arguments(parser)
    now = datetime.now(UTC)
    moment = time_argument(now)
    parser.add_argument(
        "--since",
        type=moment,
        required=True,
        help="landed at or after: ISO 8601 (naive means UTC) or a duration ago (2h, 90m)",
    )
    parser.add_argument(
        "--until", type=moment, default=now, help="landed before: as --since (default now)"
    )
    parser.add_argument("--prefix", default="", help="only keys under this prefix")
    parser.add_argument(
        "--force", action="store_true", help="deliver again even what was delivered"
    )
    parser.add_argument("--replay-id", help="the replay's id (default: time and random)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be sent")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of text")
    parser.set_defaults(run=run)


@dataclass
class ReplayReport:
    replay_id: str
    force: bool
    since: str
    until: str
    prefix: str
    found: int = 0
    sent: int = 0
    failed: list[str] = field(default_factory=list)
    """`key?versionId=…: reason` of the events SQS refused."""
    dry_run: bool = False
    versions: list[str] = field(default_factory=list)
    """With --dry-run: what would be sent."""

    @property
    def ok(self) -> bool:
        return not self.failed

    def text(self) -> str:
        if self.dry_run:
            return "\n".join(
                [*self.versions, f"would replay {self.found} version(s) as {self.replay_id}"]
            )
        lines = [f"not sent: {failure}" for failure in self.failed]
        mode = "forced: delivered again" if self.force else "delivered files stay out"
        lines.append(
            f"replay {self.replay_id}: {self.sent} of {self.found} version(s) landed "
            f"{self.since}..{self.until} sent to the ingest queue ({mode}); follow them with "
            "`sluice status` and `sluice reconcile`"
        )
        return "\n".join(lines)


def run(args: argparse.Namespace, root: Path) -> int:
    since, until = args.since, args.until
    if since >= until:
        raise UsageError(f"--since {_iso(since)} is not before --until {_iso(until)}")
    replay_id = args.replay_id or f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    if not REPLAY_ID_PATTERN.fullmatch(replay_id):
        raise UsageError(f"--replay-id must match {REPLAY_ID_PATTERN.pattern}")
    report = replay(
        deployment.resolve(args, root),
        since=since,
        until=until,
        prefix=args.prefix,
        force=args.force,
        replay_id=replay_id,
        dry_run=args.dry_run,
    )
    print(json.dumps(asdict(report), indent=1) if args.json else report.text())
    return 0 if report.ok else 1


def replay(
    target: Deployment,
    *,
    since: datetime,
    until: datetime,
    prefix: str,
    force: bool,
    replay_id: str,
    dry_run: bool,
) -> ReplayReport:
    report = ReplayReport(replay_id, force, _iso(since), _iso(until), prefix, dry_run=dry_run)
    s3 = target.client("s3")
    batch: list[LandedVersion] = []
    for version in list_landed(s3, target.landing_bucket, since, until, prefix):
        report.found += 1
        if dry_run:
            report.versions.append(
                f"s3://{target.landing_bucket}/{version.key}?versionId={version.version_id}"
            )
            continue
        batch.append(version)
        if len(batch) == SQS_BATCH:
            _send(target, batch, report)
            batch = []
    if batch:
        _send(target, batch, report)
    return report


def _send(target: Deployment, versions: list[LandedVersion], report: ReplayReport) -> None:
    entries = [
        {
            "Id": str(index),
            "MessageBody": json.dumps(
                replay_notification(
                    bucket=target.landing_bucket,
                    key=version.key,
                    version_id=version.version_id,
                    size=version.size,
                    etag=version.etag,
                    replay_id=report.replay_id,
                    force=report.force,
                )
            ),
        }
        for index, version in enumerate(versions)
    ]
    response = target.client("sqs").send_message_batch(
        QueueUrl=target.ingest_queue_url, Entries=entries
    )
    report.sent += len(response.get("Successful", []))
    for failure in response.get("Failed", []):
        version = versions[int(failure["Id"])]
        report.failed.append(
            f"{version.key}?versionId={version.version_id}: {failure.get('Message', failure)}"
        )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
