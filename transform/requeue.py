"""Lambda entry point `transform.requeue.lambda_handler`: S3 ObjectCreated on the staging `errors/`.

Thin: for each object in the event, `transform.requeuing.requeue_object`. A failure to put
records back raises, so Lambda's asynchronous retries (and then the on-failure destination) apply.
"""

from __future__ import annotations

import functools
from collections import Counter
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from infrastructure import environment
from infrastructure.tunables import load_tunables, required_env, stream_names
from transform import clients
from transform.firehose_sender import FirehoseSender, retry_policy
from transform.requeuing import RequeueDeps, requeue_object

logger = Logger()
metrics = Metrics()
tracer = Tracer(patch_modules=clients.TRACED_MODULES)

METRIC_NAMES = {
    "records_requeued": "RecordsRequeued",
    "requeue_exhausted": "RequeueExhausted",
    "records_left_quarantined": "RecordsLeftQuarantined",
    "held_unreadable_error_record": "UnreadableErrorRecords",
    "held_invalid_envelope": "InvalidEnvelopesInErrors",
}


@functools.cache
def dependencies() -> RequeueDeps:
    tunables = load_tunables()
    settings = tunables.forwarder
    return RequeueDeps(
        s3=clients.s3(),
        sender=FirehoseSender(
            clients.firehose(),
            retry_policy(settings),
        ),
        staging_bucket=required_env(environment.STAGING_BUCKET),
        streams=stream_names(),
        max_attempts=tunables.requeue.max_attempts,
    )


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    totals: Counter[str] = Counter()
    metrics.add_metric(
        name="ErrorObjectsHandled", unit=MetricUnit.Count, value=len(event["Records"])
    )
    # The event read as the dict it is: Powertools' S3Event would import every one of its
    # event classes at cold start for two fields.
    for record in event["Records"]:
        bucket = record["s3"]["bucket"]["name"]
        key = unquote_plus(record["s3"]["object"]["key"])
        report = requeue_object(bucket, key, dependencies())
        logger.info("errors object handled", bucket=bucket, key=key, counts=dict(report.counts))
        totals.update(report.counts)
    for name, metric in METRIC_NAMES.items():
        if totals[name]:
            metrics.add_metric(name=metric, unit=MetricUnit.Count, value=totals[name])
    return dict(totals)
