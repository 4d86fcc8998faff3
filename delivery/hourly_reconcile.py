"""Redrive's hourly reconcile: the hour that ended an hour ago, checked once, result kept.

A file lost after ingest (a Firehose drop, an expired DLQ message, a delivery that never
succeeded) leaves no trace in the archives. So once an hour redrive reconciles
(`delivery.reconciling`) the files landed in [H-2h, H-1h), H the current hour, and publishes
`FilesMissing` (alarmed above 0). The hour is over well past the latency objective (p99.9 3 min)
by then. The result is written to `reconcile/dt=…/hour=….json` in the staging bucket: proof it
ran (a run that finds it does nothing) and the list of problem files for the operator, who
follows up with `sluice reconcile` and `sluice replay`.

Its cost is the hour's files, whatever the history: what landed comes from the forwarder's
index of landed files by hour (`IngestIndex`), never a listing of the landing bucket. That
index knows what the forwarder saw: a file whose S3 event never reached the ingest queue is
found by the daily inventory check (`delivery.inventory`), or on demand by
`sluice reconcile --list-landing`, which lists the bucket.
It needs MinIO (the manifests): the caller runs it only when MinIO takes writes, so an outage
never reads as files missing.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final, NamedTuple

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from delivery.reconciling import VIOLATIONS, ReconcileSources, TooManyVersions, reconcile

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = Logger(child=True)

RESULTS_PREFIX: Final = "reconcile/"
MAX_LISTED_PROBLEMS: Final = 1000
"""Problem files written to the result; the counts are always whole."""


class HourlyOutcome(NamedTuple):
    hour_start: datetime
    result_key: str
    ran: bool
    """False: the hour was reconciled by an earlier run."""
    files: int = 0
    missing: int = 0
    violations: int = 0
    """Missing, delivered twice or checksum mismatches."""
    skipped: str | None = None
    """Why the hour could not be reconciled (too many versions to list)."""


def hour_due(now: datetime) -> datetime:
    """Start of the hour to reconcile at `now`: the one that ended an hour ago."""
    return now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)


def result_key(hour_start: datetime) -> str:
    return f"{RESULTS_PREFIX}dt={hour_start:%Y-%m-%d}/hour={hour_start:%H}.json"


def reconcile_hour(sources: ReconcileSources, now: datetime, max_listed: int) -> HourlyOutcome:
    start = hour_due(now)
    key = result_key(start)
    if _exists(sources.staging, sources.staging_bucket, key):
        return HourlyOutcome(start, key, ran=False)
    until = start + timedelta(hours=1)
    try:
        report = reconcile(sources, start, until, now=now, max_listed=max_listed)
    except TooManyVersions as err:
        logger.error(  # noqa: TRY400  # the reason is the message; a traceback adds nothing
            "hourly reconcile skipped", hour=start.isoformat(), reason=str(err)
        )
        outcome = HourlyOutcome(start, key, ran=True, skipped=str(err))
        _write(sources, key, {"since": start.isoformat(), "skipped": str(err)})
        return outcome
    counts = {str(status): n for status, n in report.counts().items()}
    violations = sum(1 for f in report.files if f.status in VIOLATIONS)
    problems = [f.as_dict() for f in report.problems[:MAX_LISTED_PROBLEMS]]
    _write(
        sources,
        key,
        {
            "since": start.isoformat(),
            "until": until.isoformat(),
            "ran_at": now.isoformat(),
            "summary": counts,
            "ok": report.ok,
            "problems": problems,
            "unreadable_manifests": list(report.unreadable_manifests),
        },
    )
    if not report.ok:
        logger.error(
            "hourly reconcile found files not delivered",
            hour=start.isoformat(),
            summary=counts,
            result=key,
        )
    return HourlyOutcome(
        start, key, ran=True, files=len(report.files), missing=report.missing, violations=violations
    )


def _exists(s3: S3Client, bucket: str, key: str) -> bool:
    try:
        s3.get_object(Bucket=bucket, Key=key, Range="bytes=0-0")
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return False
        raise
    return True


def _write(sources: ReconcileSources, key: str, document: dict[str, object]) -> None:
    sources.staging.put_object(
        Bucket=sources.staging_bucket,
        Key=key,
        Body=json.dumps(document, indent=1, default=str).encode(),
        ContentType="application/json",
    )
