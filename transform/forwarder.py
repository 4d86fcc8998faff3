"""Lambda entry point `transform.forwarder.lambda_handler`: the ingest queue's event source mapping.

Thin by design: parse the SQS event, hand the messages to `transform.forwarding`, publish its
counts as metrics, and answer with a partial batch response (`ReportBatchItemFailures`).

The batch is forwarded as a whole (PutRecordBatch spans messages), so Powertools'
`BatchProcessor`, which handles one record at a time, does not fit; the response has the same
shape it would produce.
"""

from __future__ import annotations

import functools
from typing import Any, Final

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from infrastructure import environment
from infrastructure.tunables import load_tunables, required_env, stream_names
from transform import clients
from transform.firehose_sender import FirehoseSender, retry_policy
from transform.forwarding import BatchReport, ForwarderDeps, forward_batch
from transform.idempotency import IdempotencyStore

logger = Logger()
metrics = Metrics()
tracer = Tracer(patch_modules=clients.TRACED_MODULES)

METRIC_NAMES: Final = {
    "files_forwarded": "FilesForwarded",
    "duplicate_events": "DuplicateEvents",
    "duplicates_in_batch": "DuplicatesInBatch",
    "versions_gone": "VersionsGone",
    "too_large": "FilesTooLarge",
    "malformed_messages": "MalformedMessages",
    "send_failures": "SendFailures",
    "test_events": "TestEventsIgnored",
    "ignored_records": "NonCreateRecordsIgnored",
}


@functools.cache
def dependencies() -> ForwarderDeps:
    """Built once per cold start; a bad tunable or missing variable fails here, loudly."""
    tunables = load_tunables()
    settings = tunables.forwarder
    return ForwarderDeps(
        s3=clients.s3(),
        store=IdempotencyStore(
            clients.dynamodb(),
            required_env(environment.IDEMPOTENCY_TABLE),
            settings.idempotency_ttl_seconds,
        ),
        sender=FirehoseSender(
            clients.firehose(),
            retry_policy(settings),
        ),
        staging_bucket=required_env(environment.STAGING_BUCKET),
        streams=stream_names(),
        tunables=settings,
    )


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # The event read as the dict it is: Powertools' SQSEvent would import every one of its
    # event classes at cold start for two fields.
    messages = [(record["messageId"], record["body"]) for record in event["Records"]]
    metrics.add_metric(name="MessagesReceived", unit=MetricUnit.Count, value=len(messages))
    report = forward_batch(messages, dependencies(), context.get_remaining_time_in_millis())
    publish(report, len(messages))
    return {
        "batchItemFailures": [
            {"itemIdentifier": message_id} for message_id in sorted(report.failed_message_ids)
        ]
    }


def publish(report: BatchReport, message_count: int) -> None:
    for name, metric in METRIC_NAMES.items():
        if report.counts[name]:
            metrics.add_metric(name=metric, unit=MetricUnit.Count, value=report.counts[name])
    logger.info(
        "batch forwarded",
        messages=message_count,
        failed_messages=len(report.failed_message_ids),
        counts={name: count for name, count in report.counts.items() if count},
    )
