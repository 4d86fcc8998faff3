"""Lambda entry point of the Firehose data-transformation processor (DESIGN §4).

Thin: the per-record work is `transform.processing`. This module reads the configuration once per
cold start, writes a reason file for every failed record (Firehose keeps no reason), and emits
logs and metrics. A bad record never fails the invocation; a misconfiguration does, on purpose:
Firehose then retries and keeps the whole batch under `errors/` for the requeue function.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, TypedDict

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import KinesisFirehoseEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from infrastructure import environment
from infrastructure.tunables import load_tunables, required_env
from transform import clients, processing, quarantine
from transform.processing import ProcessorConfig, Rejection

logger = Logger()
metrics = Metrics()
tracer = Tracer(patch_modules=clients.TRACED_MODULES)

REASON_WRITERS: Final = 16
"""Reason files are written in parallel: a batch of thousands of bad small files would otherwise
spend its whole timeout on sequential PUTs, and Firehose would then retry the batch."""
REASON_RESERVE_MS: Final = 3_000
"""Stop writing reason files this close to the timeout: answering matters more. A record whose
reason is not written is still ProcessingFailed and kept under `errors/`."""

_METRIC_BY_REASON: Final = {
    "invalid-envelope": "RecordsFailedInvalidEnvelope",
    "payload-schema": "RecordsFailedPayloadSchema",
}


@functools.cache
def dependencies() -> ProcessorConfig:
    """Read once per cold start; a missing variable or bad tunable fails the invocation."""
    tunables = load_tunables()
    return processing.load_config(tunables, required_env(environment.STAGING_BUCKET))


class _RecordFields(TypedDict):
    """The log fields of a failed record (typed, so they spread into the logger's keywords)."""

    record_id: str
    file_id: str
    reason: str
    detail: str
    error_type: str
    bucket: str | None
    key: str | None
    version_id: str | None


@logger.inject_lambda_context(correlation_id_path="invocationId", clear_state=True)
# The response is the whole batch (up to 6 MB): far over X-Ray's metadata limit, so not captured.
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
@event_source(data_class=KinesisFirehoseEvent)
def lambda_handler(event: KinesisFirehoseEvent, context: LambdaContext) -> dict[str, Any]:
    settings = dependencies()
    result = processing.process_batch(event, settings.payload_schemas)
    unwritten = _write_reasons(result.rejections, settings.staging_bucket, context)

    failed = len(result.rejections)
    metrics.add_metric(name="RecordsOk", unit=MetricUnit.Count, value=result.ok)
    metrics.add_metric(name="RecordsFailed", unit=MetricUnit.Count, value=failed)
    for reason, name in _METRIC_BY_REASON.items():
        count = sum(1 for rejection in result.rejections if rejection.entry.reason == reason)
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=count)
    metrics.add_metric(name="ReasonWritesFailed", unit=MetricUnit.Count, value=unwritten)
    logger.info(
        "batch processed",
        delivery_stream_arn=event.get("deliveryStreamArn"),
        records_ok=result.ok,
        records_failed=failed,
        reason_writes_failed=unwritten,
    )
    return result.response.asdict()


def _write_reasons(rejections: Sequence[Rejection], bucket: str, context: LambdaContext) -> int:
    """Log every failed record and write its reason file; returns how many were not written."""
    if not rejections:
        return 0
    s3 = clients.s3()

    def write(rejection: Rejection) -> bool:
        entry = rejection.entry
        where: _RecordFields = {
            "record_id": rejection.record_id,
            "file_id": entry.file_id,
            "reason": entry.reason,
            "detail": entry.detail,
            "error_type": rejection.error_type,
            "bucket": entry.bucket,
            "key": entry.key,
            "version_id": entry.version_id,
        }
        logger.warning("record failed", **where)
        if context.get_remaining_time_in_millis() < REASON_RESERVE_MS:
            logger.error("reason file not written: invocation out of time", **where)
            return False
        try:
            quarantine.write(s3, bucket, entry)
        except Exception:  # the record is still answered ProcessingFailed and kept in errors/
            logger.exception("reason file not written", **where, staging_bucket=bucket)
            return False
        return True

    with ThreadPoolExecutor(max_workers=min(REASON_WRITERS, len(rejections))) as pool:
        written = list(pool.map(write, rejections))
    return written.count(False)
