"""Lambda entry point `delivery.report.lambda_handler`: the daily report (EventBridge Scheduler).

Thin: reads which day to report from the event — `date` (`YYYY-MM-DD`, a rerun of any day whose
data is kept), else `days_back` days (default `report.days_back`, 1) before its
`scheduled_time` (the schedule's own time, so a retry reports the same day) — builds the report
(`delivery.reporting`) with MinIO's client from the secret, then stores and publishes it
(`delivery.report_store`: written and mailed only when it differs from the one stored). Publishes
`ReportRuns` once it is done (its alarm treats missing data as breaching: a report that does
not run says so) and how many files were neither delivered nor accounted for.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from delivery.ledger import Ledger
from delivery.minio_access import MinioAccess
from delivery.reconciling import IngestIndex
from delivery.redrive_log import RedriveLog
from delivery.report_cloudwatch import CloudWatchOperations
from delivery.report_store import StoredReport, store_and_publish
from delivery.reporting import (
    ReportSettings,
    ReportSources,
    build_report,
    fates,
    report_day,
)
from infrastructure import environment
from infrastructure.tunables import ReportTunables, load_tunables, required_env, stream_names
from transform import clients

logger = Logger()
metrics = Metrics()
tracer = Tracer(patch_modules=clients.TRACED_MODULES)

NOT_ACCOUNTED = ("parked", "missing", "delivered_twice", "checksum_mismatch")
"""Fates that are never right; `pending` too once the day has settled (reporting.SETTLE)."""


@dataclass(frozen=True)
class Dependencies:
    settings: ReportSettings
    tunables: ReportTunables
    minio: MinioAccess
    sources: dict[str, Any]
    """ReportSources' fields but MinIO's (bound per call, from the secret)."""
    staging_bucket: str
    topic_arn: str

    def build(self, day: date, now: datetime) -> dict[str, Any]:
        def run(client: Any, settings: Any) -> dict[str, Any]:
            sources = ReportSources(minio=client, archive_bucket=settings.bucket, **self.sources)
            return build_report(sources, self.settings, day, now)

        return self.minio.call(run)


@functools.cache
def dependencies() -> Dependencies:
    tunables = load_tunables()
    deployment = required_env(environment.DEPLOYMENT)
    ledger_table = required_env(environment.LEDGER_TABLE)
    dlqs = {
        "ingest": required_env(environment.INGEST_DLQ_URL),
        "delivery": required_env(environment.DELIVERY_DLQ_URL),
        "requeue": required_env(environment.REQUEUE_DLQ_URL),
    }
    staging_bucket = required_env(environment.STAGING_BUCKET)
    ttl = tunables.delivery.ledger_ttl_seconds
    return Dependencies(
        settings=ReportSettings(
            deployment=deployment,
            slo_p95_seconds=tunables.report.slo_p95_seconds,
            slo_p999_seconds=tunables.report.slo_p999_seconds,
            top_producers=tunables.report.top_producers,
            archive_prefix=tunables.delivery.archive_prefix,
            buffers_prefix=tunables.firehose.buffers_prefix.split("dt=", 1)[0],
            file_extension=tunables.firehose.file_extension,
        ),
        tunables=tunables.report,
        minio=MinioAccess(
            required_env(environment.MINIO_SECRET),
            max_age_seconds=tunables.delivery.secret_max_age_seconds,
            ca_bundle=os.environ.get(environment.MINIO_CA_BUNDLE) or None,
            tls_required=tunables.delivery.minio_tls_required,
        ),
        sources={
            "ingest": IngestIndex(clients.dynamodb(), required_env(environment.IDEMPOTENCY_TABLE)),
            "landing_bucket": required_env(environment.LANDING_BUCKET),
            "staging": clients.s3(),
            "staging_bucket": staging_bucket,
            "ledger": Ledger(clients.dynamodb(), ledger_table, ttl),
            "redrives": RedriveLog(clients.dynamodb(), ledger_table, ttl),
            "sqs": clients.sqs(),
            "dlqs": dlqs,
            "operations": CloudWatchOperations(
                clients.cloudwatch(),
                deployment=deployment,
                namespace=tunables.metrics_namespace,
                streams=stream_names(),
                queues={name: url.rstrip("/").rsplit("/", 1)[-1] for name, url in dlqs.items()},
            ),
        },
        staging_bucket=staging_bucket,
        topic_arn=required_env(environment.REPORT_TOPIC_ARN),
    )


class ReportEventError(ValueError):
    """The event names no day the report can be made for."""


def day_of(event: dict[str, Any], days_back: int, now: datetime) -> date:
    """The UTC day the event asks for (see the module's docstring)."""
    if event.get("date"):
        try:
            return date.fromisoformat(str(event["date"]))
        except ValueError as err:
            raise ReportEventError(f"'date' must be YYYY-MM-DD, not {event['date']!r}") from err
    moment = now
    stamp = event.get("scheduled_time") or event.get("time")
    if stamp:
        try:
            moment = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
        except ValueError as err:
            raise ReportEventError(f"'scheduled_time' is not ISO 8601: {stamp!r}") from err
    back = event.get("days_back", days_back)
    if not isinstance(back, int) or back < 0:
        raise ReportEventError(f"'days_back' must be a whole number of days >= 0, not {back!r}")
    return report_day(moment, back)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deps = dependencies()
    now = datetime.now(UTC)
    day = day_of(event, deps.tunables.days_back, now)
    document = deps.build(day, now)
    stored = store_and_publish(
        document,
        s3=clients.s3(),
        bucket=deps.staging_bucket,
        sns=clients.sns(),
        topic_arn=deps.topic_arn,
    )
    publish(document, stored)
    return {
        "day": document["day"],
        "status": document["verdict"]["status"],
        "verdict": document["verdict"]["sentence"],
        "published": stored.published,
        "keys": list(stored.keys),
    }


def publish(document: dict[str, Any], stored: StoredReport) -> None:
    count = MetricUnit.Count
    counts = fates(document)
    not_accounted = sum(counts[name] for name in NOT_ACCOUNTED)
    if document["period"]["settled"]:
        not_accounted += counts["pending"]
    metrics.add_metric(name="ReportRuns", unit=count, value=1)
    metrics.add_metric(name="ReportFilesNotAccounted", unit=count, value=not_accounted)
    metrics.add_metric(name="ReportsPublished", unit=count, value=int(stored.published))
    logger.info(
        "daily report",
        day=document["day"],
        status=document["verdict"]["status"],
        verdict=document["verdict"]["sentence"],
        published=stored.published,
        keys=list(stored.keys),
        files=document["files"]["landed"],
    )
