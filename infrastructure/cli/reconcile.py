"""`sluice reconcile`: every version landed in a time range, and whether it reached MinIO.

The logic is delivery.reconciling (the scheduled redrive runs it too); this module resolves the
deployment into its adapters and prints the report: the files that need a look (or all of them
with --all), then one summary line. Exit status 1 when a file is missing, delivered twice, or
does not match its checksum.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from delivery.ledger import Ledger
from delivery.reconciling import (
    FileReport,
    IngestIndex,
    ReconcileError,
    ReconcileReport,
    ReconcileSources,
    reconcile,
)
from infrastructure.cli import deployment
from infrastructure.cli.deployment import Deployment
from infrastructure.cli.errors import minio_problem
from infrastructure.cli.times import time_argument
from infrastructure.tunables import load_tunables
from transform.intake.keys import is_api_key

DEFAULT_RANGE: Final = timedelta(hours=1)


def register(commands: Any) -> None:
    now = datetime.now(UTC)  # one `now` for every time argument and the defaults
    command = commands.add_parser(
        "reconcile",
        help="did every file landed in a time range reach MinIO exactly once?",
        description="Each version that landed in [--since, --until) against the window "
        "manifests in MinIO, the ledger and the quarantine: delivered, redelivered (by a "
        "forced replay), delivered twice, checksum mismatch, quarantined, excluded, too large, "
        "pending, parked or missing. Times are ISO-8601 (naive means UTC) or a duration ago "
        "(30s, 90m, 2h, 1d). Exit status 1 when a file is missing, delivered twice or does not "
        "match its checksum. What landed comes from the forwarder's index of landed files by "
        "hour (a Query per hour in the range); --list-landing lists every version in the landing "
        "bucket instead, which also finds a file whose S3 event was lost, at a cost that grows "
        "with the bucket's history.",
    )
    deployment.add_arguments(command)
    times = time_argument(now)
    command.add_argument(
        "--since", type=times, metavar="T", help="start, inclusive (default: --until - 1h)"
    )
    command.add_argument("--until", type=times, metavar="T", help="end, exclusive (default: now)")
    command.add_argument("--prefix", default="", help="only landing keys under this prefix")
    command.add_argument(
        "--verify-bytes",
        action="store_true",
        help="also hash each delivered file's landing version (reads every byte)",
    )
    command.add_argument(
        "--all", action="store_true", help="list every file, not only the problems"
    )
    command.add_argument(
        "--list-landing",
        action="store_true",
        help="what landed from a listing of every landing version, not the forwarder's index",
    )
    command.add_argument("--json", action="store_true", help="one JSON object instead of text")
    command.set_defaults(run=run, now=now)


def sources_of(target: Deployment, *, list_landing: bool = False) -> ReconcileSources:
    tunables = load_tunables()
    minio, settings = target.minio()
    s3 = target.client("s3")
    ingest = IngestIndex(target.client("dynamodb"), target.idempotency_table)
    return ReconcileSources(
        ingest=None if list_landing else ingest,
        landing=s3,
        landing_bucket=target.landing_bucket,
        staging=s3,
        staging_bucket=target.staging_bucket,
        ledger=Ledger(
            target.client("dynamodb"), target.ledger_table, tunables.delivery.ledger_ttl_seconds
        ),
        minio=minio,
        archive_bucket=settings.bucket,
        archive_prefix=tunables.delivery.archive_prefix,
    )


def run(args: argparse.Namespace, root: Path) -> int:
    now: datetime = args.now
    until: datetime = args.until or now
    since: datetime = args.since or until - DEFAULT_RANGE
    if since >= until:
        print(
            f"sluice reconcile: --since {since:%Y-%m-%dT%H:%M:%SZ} is not before "
            f"--until {until:%Y-%m-%dT%H:%M:%SZ}",
            file=sys.stderr,
        )
        return 2
    sources = sources_of(deployment.resolve(args, root), list_landing=args.list_landing)
    try:
        report = reconcile(
            sources,
            since,
            until,
            prefix=args.prefix,
            verify_bytes=args.verify_bytes,
            now=now,
        )
    except ReconcileError as err:
        print(f"sluice reconcile: {err}", file=sys.stderr)
        return 1
    except deployment.MINIO_ERRORS as err:
        # As redrive does when MinIO does not answer: say so, and when to run again.
        print(
            f"sluice reconcile: {minio_problem(err)}: nothing reconciled (the manifests are in "
            "MinIO). Run again once MinIO is back.",
            file=sys.stderr,
        )
        return 1
    listed = list(report.files) if args.all else report.problems
    print(json.dumps(as_json(report, listed)) if args.json else text(report, listed))
    return 0 if report.ok else 1


def as_json(report: ReconcileReport, listed: list[FileReport]) -> dict[str, Any]:
    return {
        "since": report.since.isoformat(),
        "until": report.until.isoformat(),
        "summary": {status.value: count for status, count in report.counts().items()},
        "landed_by_api": sum(1 for file in report.files if is_api_key(file.key)),
        "ok": report.ok,
        "unreadable_manifests": list(report.unreadable_manifests),
        "files": [file.as_dict() for file in listed],
    }


def text(report: ReconcileReport, listed: list[FileReport]) -> str:
    lines = [_file_line(file) for file in listed]
    lines += [f"unreadable manifest: {key}" for key in report.unreadable_manifests]
    lines.append(summary(report))
    return "\n".join(lines)


def summary(report: ReconcileReport) -> str:
    counts = ", ".join(
        f"{count} {status.value.replace('-', ' ')}" for status, count in report.counts().items()
    )
    by_api = sum(1 for file in report.files if is_api_key(file.key))
    return (
        f"reconciled {len(report.files)} files landed {_span(report.since, report.until)} "
        f"({by_api} by API): {counts}"
    )


def _file_line(file: FileReport) -> str:
    where = [
        f"window {file.window_id}" if file.window_id else "",
        f"archive {file.archive}" if file.archive else "",
        f"member {file.member_name}" if file.member_name else "",
        f"reason {file.reason}" if file.reason else "",
        file.detail,
    ]
    return (
        f"{file.status.value:<17} {file.key} (version {file.version_id}, "
        f"landed {file.landed_at:%Y-%m-%dT%H:%M:%SZ})  " + "; ".join(w for w in where if w)
    ).rstrip()


def _span(since: datetime, until: datetime) -> str:
    def moment(value: datetime, with_date: bool) -> str:
        shape = "%H:%M:%SZ" if value.second or value.microsecond else "%H:%MZ"
        return value.strftime(("%Y-%m-%dT" if with_date else "") + shape)

    return f"{moment(since, True)}..{moment(until, since.date() != until.date())}"
