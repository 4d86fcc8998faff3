"""Lambda entry point `delivery.redrive.lambda_handler`: the redrive schedule (EventBridge).

Thin: builds the adapters once per cold start, runs `delivery.redriving.redrive`, then (MinIO
answering) the hourly reconcile (`delivery.hourly_reconcile`), then the daily inventory check's
next few data files (`delivery.inventory`), and publishes what they did: the age of the oldest
undelivered window, `FilesMissing`, the inventory check's lag and `FilesUnannounced`. Its MinIO
probe and redrives are also logged by day in the ledger (`delivery.redrive_log`), for the
daily report.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from delivery.hour_markers import HourMarkers
from delivery.hourly_reconcile import HourlyOutcome, reconcile_hour
from delivery.inventory import InventoryDeps, InventoryOutcome, check_inventory
from delivery.invocation import invoke_delivery
from delivery.ledger import Ledger
from delivery.minio_access import MinioAccess
from delivery.reconciling import IngestIndex, ReconcileSources
from delivery.redrive_log import RedriveLog
from delivery.redriving import Health, RedriveDeps, RedriveReport, check_health, redrive
from infrastructure import environment
from infrastructure.tunables import load_tunables, required_env
from transform import clients

logger = Logger()
metrics = Metrics()
tracer = Tracer(patch_modules=clients.TRACED_MODULES)


@dataclass(frozen=True)
class Dependencies:
    redrive: RedriveDeps
    minio: MinioAccess
    landing_bucket: str
    idempotency_table: str
    archive_prefix: str
    reconcile_max_versions: int
    inventory: InventoryDeps
    probe_interval_cap_ms: int
    """A failed probe counts at most this much time as MinIO unavailable (two periods)."""

    def reconcile_hour(self, now: datetime) -> HourlyOutcome:
        """The hourly reconcile, its MinIO reads through the secret's client."""
        deps = self.redrive

        def run(client: Any, settings: Any) -> HourlyOutcome:
            sources = ReconcileSources(
                ingest=IngestIndex(clients.dynamodb(), self.idempotency_table),
                landing=deps.s3,
                landing_bucket=self.landing_bucket,
                staging=deps.s3,
                staging_bucket=deps.staging_bucket,
                ledger=deps.ledger,
                minio=client,
                archive_bucket=settings.bucket,
                archive_prefix=self.archive_prefix,
            )
            return reconcile_hour(sources, now, self.reconcile_max_versions)

        return self.minio.call(run)


@functools.cache
def dependencies() -> Dependencies:
    tunables = load_tunables()
    function = required_env(environment.DELIVERY_FUNCTION)
    minio = MinioAccess(
        required_env(environment.MINIO_SECRET),
        max_age_seconds=tunables.delivery.secret_max_age_seconds,
        ca_bundle=os.environ.get(environment.MINIO_CA_BUNDLE) or None,
        tls_required=tunables.delivery.minio_tls_required,
    )
    redrive_deps = RedriveDeps(
        s3=clients.s3(),
        sqs=clients.sqs(),
        ledger=Ledger(
            clients.dynamodb(),
            required_env(environment.LEDGER_TABLE),
            tunables.delivery.ledger_ttl_seconds,
        ),
        minio_healthy=minio.healthy,
        invoke=functools.partial(invoke_delivery, function),
        staging_bucket=required_env(environment.STAGING_BUCKET),
        dlq_url=required_env(environment.DELIVERY_DLQ_URL),
        tunables=tunables.redrive,
        destination_buffer_seconds=tunables.firehose.destination_buffer_seconds,
        file_extension=tunables.firehose.file_extension,
        markers=HourMarkers(minio, tunables.delivery.archive_prefix),
        log=RedriveLog(
            clients.dynamodb(),
            required_env(environment.LEDGER_TABLE),
            tunables.delivery.ledger_ttl_seconds,
        ),
    )
    return Dependencies(
        probe_interval_cap_ms=2 * tunables.redrive.schedule_minutes * 60_000,
        redrive=redrive_deps,
        minio=minio,
        landing_bucket=required_env(environment.LANDING_BUCKET),
        idempotency_table=required_env(environment.IDEMPOTENCY_TABLE),
        archive_prefix=tunables.delivery.archive_prefix,
        reconcile_max_versions=tunables.redrive.reconcile_max_versions,
        inventory=InventoryDeps(
            s3=redrive_deps.s3,
            dynamodb=clients.dynamodb(),
            sqs=redrive_deps.sqs,
            landing_bucket=required_env(environment.LANDING_BUCKET),
            staging_bucket=redrive_deps.staging_bucket,
            ledger_table=required_env(environment.LEDGER_TABLE),
            idempotency_table=required_env(environment.IDEMPOTENCY_TABLE),
            ingest_queue_url=required_env(environment.INGEST_QUEUE_URL),
            files_per_run=tunables.redrive.inventory_files_per_run,
            idempotency_ttl_seconds=tunables.forwarder.idempotency_ttl_seconds,
        ),
    )


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deps = dependencies()
    health = check_health(deps.redrive)
    publish_health(health)
    metrics.flush_metrics()  # sent now: the alarms on these treat missing data as breaching
    log_probe(deps, health)
    report = redrive(deps.redrive, health=health)
    publish(report, health)
    hourly = None
    if report.minio_healthy and deps.reconcile_max_versions > 0:
        try:
            hourly = deps.reconcile_hour(datetime.now(UTC))
        except Exception:  # redrive's own work is done; the next run reconciles the hour
            logger.exception("hourly reconcile failed; the next run tries again")
            metrics.add_metric(name="ReconcileFailed", unit=MetricUnit.Count, value=1)
        else:
            publish_reconcile(hourly)
    inventory = run_inventory_check(deps.inventory)
    return {
        "minio_healthy": report.minio_healthy,
        "dlq_redriven": report.dlq_redriven,
        "unrecorded_redriven": report.unrecorded_redriven,
        "stale_redriven": report.stale_redriven,
        "parked": report.parked,
        "oldest_undelivered_age_seconds": report.oldest_undelivered_age_seconds,
        "hour_markers": report.hour_markers,
        "reconcile": None if hourly is None else hourly.result_key if hourly.ran else "done before",
        "inventory": None if inventory is None else inventory.__dict__,
    }


def log_probe(deps: Dependencies, health: Health) -> None:
    """The probe into the day's log (the daily report's MinIO figure); redrive goes on without."""
    log = deps.redrive.log
    if log is None:
        return
    try:
        log.record_probe(health.minio_healthy, max_interval_ms=deps.probe_interval_cap_ms)
    except Exception:  # the report then says the day's figure is incomplete; redrive's work is not
        logger.exception("MinIO probe not logged")
        metrics.add_metric(name="RedriveLogFailed", unit=MetricUnit.Count, value=1)


def run_inventory_check(deps: InventoryDeps) -> InventoryOutcome | None:
    """The inventory check's next data files; it needs no MinIO, so it runs through outages."""
    try:
        outcome = check_inventory(deps, int(time.time() * 1000))
    except Exception:  # redrive's own work is done; the next run resumes where this one was
        logger.exception("inventory check failed; the next run tries again")
        metrics.add_metric(name="InventoryCheckFailed", unit=MetricUnit.Count, value=1)
        return None
    count = MetricUnit.Count
    metrics.add_metric(name="InventoryCheckLag", unit=MetricUnit.Seconds, value=outcome.lag_seconds)
    if outcome.data_files_read:
        metrics.add_metric(
            name="InventoryVersionsChecked", unit=count, value=outcome.versions_checked
        )
        metrics.add_metric(name="FilesUnannounced", unit=count, value=len(outcome.announced))
    return outcome


def publish_health(health: Health) -> None:
    count = MetricUnit.Count
    metrics.add_metric(name="RedriveRuns", unit=count, value=1)
    metrics.add_metric(name="MinioHealthy", unit=count, value=int(health.minio_healthy))
    metrics.add_metric(
        name="OldestUndeliveredWindowAge",
        unit=MetricUnit.Seconds,
        value=health.oldest_undelivered_age_seconds or 0.0,
    )


def publish(report: RedriveReport, health: Health) -> None:
    count = MetricUnit.Count
    metrics.add_metric(name="WindowsRedriven", unit=count, value=report.dlq_redriven)
    metrics.add_metric(
        name="WindowsReinvoked",
        unit=count,
        value=report.unrecorded_redriven + report.stale_redriven,
    )
    metrics.add_metric(name="WindowsParked", unit=count, value=len(report.parked))
    metrics.add_metric(name="HourMarkersWritten", unit=count, value=len(report.hour_markers))
    swept_oldest = report.oldest_undelivered_age_seconds or 0.0
    if swept_oldest > (health.oldest_undelivered_age_seconds or 0.0):
        # an unrecorded staged window (no ledger record, so not in the index) is older
        metrics.add_metric(
            name="OldestUndeliveredWindowAge", unit=MetricUnit.Seconds, value=swept_oldest
        )
    logger.info("redrive run", report=report.__dict__)


def publish_reconcile(outcome: HourlyOutcome) -> None:
    if not outcome.ran:
        return
    count = MetricUnit.Count
    metrics.add_metric(name="ReconcileSkipped", unit=count, value=int(outcome.skipped is not None))
    if outcome.skipped is None:
        metrics.add_metric(name="ReconcileRuns", unit=count, value=1)
        metrics.add_metric(name="FilesMissing", unit=count, value=outcome.missing)
        metrics.add_metric(name="FilesNotDelivered", unit=count, value=outcome.violations)
    logger.info("hourly reconcile", outcome=outcome._asdict())
