"""Lambda entry point `delivery.handler.lambda_handler`: S3 ObjectCreated on the staging `buffers/`.

Invoked asynchronously (by S3, by redrive with the same event, or by itself to continue a window
near its deadline): each staged window in the event is delivered by
`delivery.delivering.deliver_window`. Any error raises, so Lambda's async retries apply and then
the on-failure record goes to the delivery DLQ, which redrive drains. A window stopped at its
deadline (WindowContinues) is not an error: the handler invokes the function again with that
window's record, and counts `WindowsContinued` apart from failures.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from delivery.delivering import DeliveryDeps, DeliveryReport, WindowContinues, deliver_window
from delivery.invocation import CONTINUATION_FIELD, invoke_delivery
from delivery.layout import window_name
from delivery.ledger import Ledger
from delivery.minio_access import MinioAccess
from delivery.tables import load_tables
from infrastructure import environment
from infrastructure.tunables import load_tunables, required_env
from transform import clients, payload_schemas
from transform.envelope import NewerSchemaVersion

logger = Logger()
metrics = Metrics()
tracer = Tracer(patch_modules=clients.TRACED_MODULES)

BUFFERS_PREFIX: Final = "buffers/"
MAX_CONTINUATIONS: Final = 1000
"""A window still unfinished after this many invocations is failed, not continued: Lambda's
retries, the DLQ and redrive take it from there (each invocation verifies at least one part)."""
LATENCY_VALUES_PER_FLUSH: Final = 100
"""CloudWatch's embedded metric format takes at most 100 values per metric per document."""


@functools.cache
def dependencies() -> DeliveryDeps:
    """Built once per cold start; a bad tunable or missing variable fails here, loudly."""
    tunables = load_tunables()
    return DeliveryDeps(
        s3=clients.s3(),
        ledger=Ledger(
            clients.dynamodb(),
            required_env(environment.LEDGER_TABLE),
            tunables.delivery.ledger_ttl_seconds,
        ),
        minio=MinioAccess(
            required_env(environment.MINIO_SECRET),
            max_age_seconds=tunables.delivery.secret_max_age_seconds,
            ca_bundle=os.environ.get(environment.MINIO_CA_BUNDLE) or None,
            tls_required=tunables.delivery.minio_tls_required,
        ),
        schemas=payload_schemas.load(tunables.processor.payload_schemas),
        tables=load_tables(tunables.processor.payload_schemas),
        tunables=tunables.delivery,
        file_extension=tunables.firehose.file_extension,
        spool_dir=Path(os.environ.get("TMPDIR", "/tmp")),  # noqa: S108  # Lambda's ephemeral storage
    )


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deps = dependencies()
    continuation = int(event.get(CONTINUATION_FIELD, 0))
    outcomes = []
    # The event read as the dict it is: Powertools' S3Event would import every one of its
    # event classes at cold start for two fields.
    for record in event["Records"]:
        bucket = record["s3"]["bucket"]["name"]
        key = unquote_plus(record["s3"]["object"]["key"])
        if not key.startswith(BUFFERS_PREFIX):
            logger.warning("not a staged window; ignored", bucket=bucket, key=key)
            continue
        window_id = window_name(key, deps.file_extension).window_id
        logger.set_correlation_id(window_id)
        try:
            report = deliver_window(
                bucket, key, deps, remaining_seconds=lambda: _remaining_seconds(context)
            )
        except NewerSchemaVersion as err:
            # Retried (Lambda, the DLQ, redrive: not counted toward PARKED), never excluded;
            # alarmed, because only a deploy of delivery ends it.
            logger.error(  # noqa: TRY400  # an expected state with its alarm, not a crash
                "window holds an envelope newer than this delivery; retried, not excluded",
                alarm="NewerEnvelopes",
                staged_key=key,
                error=str(err),
            )
            metrics.add_metric(name="NewerEnvelopes", unit=MetricUnit.Count, value=1)
            raise
        except WindowContinues as stop:
            if continuation + 1 >= MAX_CONTINUATIONS:
                raise
            _continue(context, record, continuation + 1, stop)
            outcomes.append({"window_id": window_id, "outcome": "continued"})
            continue
        publish(report, key)
        outcomes.append({"window_id": report.window_id, "outcome": report.outcome})
    return {"windows": outcomes}


def _remaining_seconds(context: LambdaContext) -> float:
    return context.get_remaining_time_in_millis() / 1000


def _continue(
    context: LambdaContext, record: dict[str, Any], continuation: int, stop: WindowContinues
) -> None:
    """The same window, in a new invocation of this function (async: its own timeout)."""
    invoke_delivery(
        context.invoked_function_arn,
        {"Records": [record], CONTINUATION_FIELD: continuation},
    )
    logger.info(
        "window continues in a new invocation",
        parts_verified=stop.done,
        parts=stop.parts,
        continuation=continuation,
    )
    metrics.add_metric(name="WindowsContinued", unit=MetricUnit.Count, value=1)


def publish(report: DeliveryReport, staged_key: str) -> None:
    logger.info(
        "window handled",
        staged_key=staged_key,
        outcome=report.outcome,
        parts=len(report.parts),
        files_delivered=report.files_delivered,
        excluded=len(report.excluded),
        not_owned=report.not_owned,
        repeated=report.repeated,
        table_rows={
            table: {"rows": counts.rows, "invalid": counts.invalid}
            for table, counts in report.table_rows.items()
        },
    )
    for table, counts in report.table_rows.items():
        if counts.invalid:
            logger.warning(
                "payload table rows invalid: the files are delivered as they are",
                table=table,
                invalid=counts.invalid,
                rows=counts.rows,
                first=counts.first_error,
            )
    for exclusion in report.excluded:
        logger.error(
            "file excluded",
            alarm="FilesExcluded",
            file_id=exclusion.file_id,
            key=exclusion.key,
            version_id=exclusion.version_id,
            reason=exclusion.reason,
            detail=exclusion.detail,
        )
    metrics.add_metric(name="WindowsHandled", unit=MetricUnit.Count, value=1)
    if report.outcome != "delivered":
        return
    metrics.add_metric(name="FilesDelivered", unit=MetricUnit.Count, value=report.files_delivered)
    metrics.add_metric(name="FilesExcluded", unit=MetricUnit.Count, value=len(report.excluded))
    metrics.add_metric(name="ArchiveParts", unit=MetricUnit.Count, value=len(report.parts))
    rows = report.table_rows.values()
    metrics.add_metric(
        name="TableRowsWritten", unit=MetricUnit.Count, value=sum(c.rows for c in rows)
    )
    metrics.add_metric(
        name="TableRowsInvalid", unit=MetricUnit.Count, value=sum(c.invalid for c in rows)
    )
    for start in range(0, len(report.latencies_ms), LATENCY_VALUES_PER_FLUSH):
        for latency in report.latencies_ms[start : start + LATENCY_VALUES_PER_FLUSH]:
            metrics.add_metric(name="EndToEndLatency", unit=MetricUnit.Milliseconds, value=latency)
        if start + LATENCY_VALUES_PER_FLUSH < len(report.latencies_ms):
            metrics.flush_metrics()
