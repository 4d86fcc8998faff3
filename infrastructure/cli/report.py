"""`sluice report`: the daily report of one UTC day, from the local stack or a deployment.

The same figures as the scheduled report function (delivery.reporting) and the same renderers
(delivery.report_render), built here from the deployment's adapters; nothing is stored or
published. The default day is today, so far. Without --out the chosen format is printed and the
HTML page is written under build/reports/ as well; with --out the chosen format goes there.
Exit status 1 when the verdict is not "ok".
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from delivery import report_render
from delivery.ledger import Ledger
from delivery.reconciling import IngestIndex, ReconcileError
from delivery.redrive_log import RedriveLog
from delivery.report_cloudwatch import CloudWatchOperations
from delivery.report_store import encode
from delivery.reporting import ReportSettings, ReportSources, build_report
from infrastructure.cli import deployment
from infrastructure.cli.deployment import Deployment
from infrastructure.cli.errors import UsageError, minio_problem

FORMATS: Final = ("txt", "json", "html")
REPORTS_DIR: Final = Path("build/reports")


def register(commands: Any) -> None:
    command = commands.add_parser(
        "report",
        help="the daily report: what came in, what went out, how fast, what is wrong",
        description="One UTC day of Sluice (default: today, so far): every file landed and "
        "what became of it, bytes and archives, end-to-end latency against the objective, "
        "producers, and operations (alarms, DLQs, redrives, MinIO's availability, requeues, "
        "Firehose's headroom), each figure from where Sluice keeps it or 'unknown' with why "
        "(docs/report.md). The scheduled report function stores the same report under "
        "reports/daily/ in the staging bucket and mails its verdict. Exit status 1 when the "
        "verdict is not ok.",
    )
    deployment.add_arguments(command)
    command.add_argument(
        "--date",
        type=day_argument,
        metavar="D",
        help="the UTC day, YYYY-MM-DD, today or yesterday (default: today, so far)",
    )
    command.add_argument(
        "--format", choices=FORMATS, default="txt", help="what to print or write (default txt)"
    )
    command.add_argument(
        "--out",
        type=Path,
        metavar="PATH",
        help="write the report there instead of printing it (a directory: <day>.<format> in it)",
    )
    command.set_defaults(run=run)


def day_argument(text: str) -> date:
    today = datetime.now(UTC).date()
    named = {"today": today, "yesterday": today - timedelta(days=1)}
    if text in named:
        return named[text]
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a day: YYYY-MM-DD, today or yesterday"
        ) from None


def name_prefix(target: Deployment) -> str:
    """`<name_prefix>-<environment>`: what the deployment's functions and alarms start with."""
    forwarder = target.functions.get("forwarder", "")
    if forwarder.endswith("-forwarder"):
        return forwarder.removesuffix("-forwarder")
    return target.landing_bucket.removesuffix("-landing")


def settings_of(target: Deployment) -> ReportSettings:
    tunables = target.tunables()
    return ReportSettings(
        deployment=name_prefix(target),
        slo_p95_seconds=tunables.report.slo_p95_seconds,
        slo_p999_seconds=tunables.report.slo_p999_seconds,
        top_producers=tunables.report.top_producers,
        archive_prefix=tunables.delivery.archive_prefix,
        buffers_prefix=tunables.firehose.buffers_prefix.split("dt=", 1)[0],
        file_extension=tunables.firehose.file_extension,
    )


def sources_of(target: Deployment) -> ReportSources:
    tunables = target.tunables()
    minio, minio_settings = target.minio()
    dynamodb = target.client("dynamodb")
    ttl = tunables.delivery.ledger_ttl_seconds
    dlqs = {
        "ingest": target.ingest_dlq_url,
        "delivery": target.delivery_dlq_url,
        "requeue": target.requeue_dlq_url,
    }
    return ReportSources(
        ingest=IngestIndex(dynamodb, target.idempotency_table),
        landing_bucket=target.landing_bucket,
        staging=target.client("s3"),
        staging_bucket=target.staging_bucket,
        ledger=Ledger(dynamodb, target.ledger_table, ttl),
        redrives=RedriveLog(dynamodb, target.ledger_table, ttl),
        minio=minio,
        archive_bucket=minio_settings.bucket,
        sqs=target.client("sqs"),
        dlqs=dlqs,
        operations=CloudWatchOperations(
            target.client("cloudwatch"),
            deployment=name_prefix(target),
            namespace=tunables.metrics_namespace,
            streams=target.streams,
            queues={name: url.rstrip("/").rsplit("/", 1)[-1] for name, url in dlqs.items()},
        ),
    )


def render(document: dict[str, Any], form: str) -> str:
    if form == "json":
        return encode(document).decode()
    if form == "html":
        return report_render.page(document)
    return report_render.text(document)


def run(args: argparse.Namespace, root: Path) -> int:
    now = datetime.now(UTC)
    day: date = args.date or now.date()
    if datetime(day.year, day.month, day.day, tzinfo=UTC) >= now:
        raise UsageError(f"--date {day.isoformat()} has not begun yet (it is {now:%Y-%m-%d} UTC)")
    target = deployment.resolve(args, root)
    try:
        document = build_report(sources_of(target), settings_of(target), day, now)
    except ReconcileError as err:
        print(f"sluice report: {err}", file=sys.stderr)
        return 1
    except deployment.MINIO_ERRORS as err:
        print(
            f"sluice report: {minio_problem(err)}: no report (what arrived is read from the "
            "window manifests in MinIO). Run again once MinIO is back.",
            file=sys.stderr,
        )
        return 1
    output = render(document, args.format)
    if args.out is not None:
        path = args.out / f"{day.isoformat()}.{args.format}" if args.out.is_dir() else args.out
        path.write_text(output)
        print(f"report written to {path}", file=sys.stderr)
    else:
        sys.stdout.write(output)
        if args.format != "html":
            page = root / REPORTS_DIR / f"{name_prefix(target)}-{day.isoformat()}.html"
            page.parent.mkdir(parents=True, exist_ok=True)
            page.write_text(report_render.page(document))
            print(f"HTML report: {page}", file=sys.stderr)
    return 0 if document["verdict"]["status"] == "ok" else 1
