"""Lambda entry point `delivery.redrive.lambda_handler`: the redrive schedule (EventBridge).

Thin: builds the adapters once per cold start, runs `delivery.redriving.redrive`, and publishes
what it did, including the age of the oldest undelivered window.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from delivery.ledger import Ledger
from delivery.minio_access import MinioAccess
from delivery.redriving import RedriveDeps, RedriveReport, redrive
from infrastructure import environment
from infrastructure.tunables import load_tunables, required_env
from transform import clients

logger = Logger()
metrics = Metrics()
tracer = Tracer()


class InvokeRefused(RuntimeError):
    """Lambda did not accept an asynchronous invocation of delivery."""


def invoke_delivery(function: str, event: dict[str, Any]) -> None:
    """Invoke delivery asynchronously (InvocationType Event); raise unless Lambda accepted it."""
    response = clients.lambda_().invoke(
        FunctionName=function, InvocationType="Event", Payload=json.dumps(event).encode()
    )
    if response["StatusCode"] != 202:
        raise InvokeRefused(f"{function} answered {response['StatusCode']} to an async invoke")


@functools.cache
def dependencies() -> RedriveDeps:
    tunables = load_tunables()
    function = required_env(environment.DELIVERY_FUNCTION)
    minio = MinioAccess(
        required_env(environment.MINIO_SECRET),
        max_age_seconds=tunables.delivery.secret_max_age_seconds,
        ca_bundle=os.environ.get(environment.MINIO_CA_BUNDLE) or None,
    )
    return RedriveDeps(
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
    )


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = redrive(dependencies())
    publish(report)
    return {
        "minio_healthy": report.minio_healthy,
        "dlq_redriven": report.dlq_redriven,
        "unrecorded_redriven": report.unrecorded_redriven,
        "stale_redriven": report.stale_redriven,
        "parked": report.parked,
        "oldest_undelivered_age_seconds": report.oldest_undelivered_age_seconds,
    }


def publish(report: RedriveReport) -> None:
    count = MetricUnit.Count
    metrics.add_metric(name="MinioHealthy", unit=count, value=int(report.minio_healthy))
    metrics.add_metric(name="WindowsRedriven", unit=count, value=report.dlq_redriven)
    metrics.add_metric(
        name="WindowsReinvoked",
        unit=count,
        value=report.unrecorded_redriven + report.stale_redriven,
    )
    metrics.add_metric(name="WindowsParked", unit=count, value=len(report.parked))
    metrics.add_metric(
        name="OldestUndeliveredWindowAge",
        unit=MetricUnit.Seconds,
        value=report.oldest_undelivered_age_seconds or 0.0,
    )
    logger.info("redrive run", extra={"report": report.__dict__})
