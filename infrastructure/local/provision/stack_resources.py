"""What Terraform creates in AWS, created on moto in server mode for the local stack, from
`tunables.json`; S3 notifies internal queues where AWS invokes delivery and requeue.
Spec: docs/local-stack.md, `provision/stack_resources.py`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from infrastructure import environment
from infrastructure.local.provision import resources
from infrastructure.tunables import Tunables

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient


@dataclass(frozen=True)
class StackNames:
    landing_bucket: str
    staging_bucket: str
    ingest_queue: str
    ingest_dlq: str
    delivery_dlq: str
    requeue_dlq: str
    buffers_events_queue: str
    errors_events_queue: str
    idempotency_table: str
    ledger_table: str
    minio_secret: str
    producers_secret: str
    streams: tuple[str, ...]
    report_topic: str = ""
    deployment: str = ""
    """The name prefix, as Terraform's `<name_prefix>-<environment>`: what the report calls the
    deployment."""

    @classmethod
    def for_prefix(cls, prefix: str, stream_count: int) -> StackNames:
        return cls(
            landing_bucket=f"{prefix}-landing",
            staging_bucket=f"{prefix}-staging",
            ingest_queue=f"{prefix}-ingest",
            ingest_dlq=f"{prefix}-ingest-dlq",
            delivery_dlq=f"{prefix}-delivery-dlq",
            requeue_dlq=f"{prefix}-requeue-dlq",
            buffers_events_queue=f"{prefix}-staging-buffers-events",
            errors_events_queue=f"{prefix}-staging-errors-events",
            idempotency_table=f"{prefix}-idempotency",
            ledger_table=f"{prefix}-ledger",
            minio_secret=f"{prefix}/minio",
            producers_secret=f"{prefix}/intake-producers",
            streams=tuple(f"{prefix}-{index}" for index in range(stream_count)),
            report_topic=f"{prefix}-reports",
            deployment=prefix,
        )


@dataclass(frozen=True)
class StackResources:
    names: StackNames
    ingest_queue_url: str
    ingest_dlq_url: str
    delivery_dlq_url: str
    requeue_dlq_url: str
    buffers_events_url: str
    errors_events_url: str
    report_topic_arn: str = ""
    """The daily report's SNS topic (moto's SNS); empty when none was created."""

    def function_bindings(self, delivery_function: str) -> dict[str, str]:
        """Values of every `resource_environment` variable, as Terraform binds them."""
        return {
            environment.LANDING_BUCKET: self.names.landing_bucket,
            environment.STAGING_BUCKET: self.names.staging_bucket,
            environment.IDEMPOTENCY_TABLE: self.names.idempotency_table,
            environment.FIREHOSE_STREAMS: ",".join(self.names.streams),
            environment.LEDGER_TABLE: self.names.ledger_table,
            environment.MINIO_SECRET: self.names.minio_secret,
            environment.DELIVERY_DLQ_URL: self.delivery_dlq_url,
            environment.DELIVERY_FUNCTION: delivery_function,
            environment.INGEST_QUEUE_URL: self.ingest_queue_url,
            environment.PRODUCERS_SECRET: self.names.producers_secret,
            environment.INGEST_DLQ_URL: self.ingest_dlq_url,
            environment.REQUEUE_DLQ_URL: self.requeue_dlq_url,
            environment.REPORT_TOPIC_ARN: self.report_topic_arn,
            environment.DEPLOYMENT: self.names.deployment,
        }

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def provision_stack(
    *,
    s3: S3Client,
    sqs: SQSClient,
    dynamodb: DynamoDBClient,
    secrets: SecretsManagerClient,
    names: StackNames,
    tunables: Tunables,
    minio_secret: dict[str, Any],
    producers_secret: str = '{"producers": {}}',  # noqa: S107  # key hashes, and no key yet
    sns: Any = None,
) -> StackResources:
    """Create every resource; returns the URLs the stack file and the runtime need.
    `producers_secret`: the intake's producers and their key hashes (transform/intake); `sns`
    (a client, no type stubs installed): where the daily report's topic is made, if given."""
    ingest = tunables.ingest
    resources.create_bucket(s3, names.landing_bucket, tunables.region, versioned=True)
    resources.create_bucket(s3, names.staging_bucket, tunables.region, versioned=True)
    ingest_dlq_url = _queue(sqs, names.ingest_dlq, retention=ingest.dlq_retention_seconds)
    ingest_url = _queue(
        sqs,
        names.ingest_queue,
        retention=ingest.queue_retention_seconds,
        visibility=ingest.visibility_timeout_seconds,
        redrive_to=_arn(sqs, ingest_dlq_url),
        max_receive_count=ingest.max_receive_count,
    )
    delivery_dlq_url = _queue(
        sqs, names.delivery_dlq, retention=tunables.delivery.dlq_retention_seconds
    )
    requeue_dlq_url = _queue(sqs, names.requeue_dlq, retention=ingest.dlq_retention_seconds)
    buffers_url = _queue(sqs, names.buffers_events_queue, retention=ingest.dlq_retention_seconds)
    errors_url = _queue(sqs, names.errors_events_queue, retention=ingest.dlq_retention_seconds)
    _notify(s3, names.landing_bucket, [(_arn(sqs, ingest_url), None)])
    _notify(
        s3,
        names.staging_bucket,
        [(_arn(sqs, buffers_url), "buffers/"), (_arn(sqs, errors_url), "errors/")],
    )
    resources.create_idempotency_table(dynamodb, names.idempotency_table)
    resources.create_ledger_table(dynamodb, names.ledger_table)
    secrets.create_secret(Name=names.minio_secret, SecretString=json.dumps(minio_secret))
    secrets.create_secret(Name=names.producers_secret, SecretString=producers_secret)
    topic_arn = ""
    if sns is not None and names.report_topic:
        topic_arn = str(sns.create_topic(Name=names.report_topic)["TopicArn"])
    return StackResources(
        report_topic_arn=topic_arn,
        names=names,
        ingest_queue_url=ingest_url,
        ingest_dlq_url=ingest_dlq_url,
        delivery_dlq_url=delivery_dlq_url,
        requeue_dlq_url=requeue_dlq_url,
        buffers_events_url=buffers_url,
        errors_events_url=errors_url,
    )


def _queue(
    sqs: SQSClient,
    name: str,
    *,
    retention: int,
    visibility: int | None = None,
    redrive_to: str | None = None,
    max_receive_count: int | None = None,
) -> str:
    attributes = {"MessageRetentionPeriod": str(retention), "SqsManagedSseEnabled": "true"}
    if visibility is not None:
        attributes["VisibilityTimeout"] = str(visibility)
    if redrive_to is not None:
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": redrive_to, "maxReceiveCount": max_receive_count}
        )
    return sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]  # type: ignore[arg-type]  # attribute names are valid QueueAttributeName values


def _arn(sqs: SQSClient, url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    return attributes["QueueArn"]


def _notify(s3: S3Client, bucket: str, targets: list[tuple[str, str | None]]) -> None:
    configurations: list[Any] = []
    for queue_arn, prefix in targets:
        configuration: dict[str, Any] = {"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}
        if prefix is not None:
            configuration["Filter"] = {
                "Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}
            }
        configurations.append(configuration)
    s3.put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration={"QueueConfigurations": configurations}
    )
