"""Every environment variable Sluice's functions read, named once.

Static variables (Powertools' service name, log level) come from each function's `environment`
in tunables.json; the `SLUICE_*` resource variables are bound to deployed names by Terraform and
by the local stack, and listed per function under `resource_environment`.
"""

from typing import Final

PROFILE: Final = "SLUICE_PROFILE"
"""Which profile of tunables.json applies: unset or `aws` for AWS, `local` for the local stack."""

TUNABLES_PATH: Final = "SLUICE_TUNABLES_PATH"
"""Optional path to another tunables.json (tests, experiments); defaults to the packaged one."""

LANDING_BUCKET: Final = "SLUICE_LANDING_BUCKET"
"""Bucket producers put files into; redrive's hourly reconcile lists its versions."""

STAGING_BUCKET: Final = "SLUICE_STAGING_BUCKET"
"""Bucket Firehose writes windows to; also holds `quarantine/` reason files."""

IDEMPOTENCY_TABLE: Final = "SLUICE_IDEMPOTENCY_TABLE"
"""DynamoDB table of idempotency records: the forwarder's per file, the HTTPS intake's per
`Idempotency-Key`, and the intake's per-producer request counts."""

FIREHOSE_STREAMS: Final = "SLUICE_FIREHOSE_STREAMS"
"""Comma-separated Firehose stream names; records are spread over them by file_id."""

LEDGER_TABLE: Final = "SLUICE_LEDGER_TABLE"
"""DynamoDB table of delivery's ledger: file claims and window states."""

MINIO_SECRET: Final = "SLUICE_MINIO_SECRET"  # noqa: S105  # a variable name, not a secret
"""Secrets Manager secret (name or ARN) holding MinIO's endpoint, bucket and credentials."""

MINIO_CA_BUNDLE: Final = "SLUICE_MINIO_CA_BUNDLE"
"""Optional path to a PEM bundle that MinIO's TLS certificate must chain to (default: system)."""

DELIVERY_DLQ_URL: Final = "SLUICE_DELIVERY_DLQ_URL"
"""Delivery's on-failure destination, which redrive drains."""

DELIVERY_FUNCTION: Final = "SLUICE_DELIVERY_FUNCTION"
"""Delivery function (with its `live` alias) that redrive invokes asynchronously."""

INGEST_QUEUE_URL: Final = "SLUICE_INGEST_QUEUE_URL"
"""The ingest queue, where the inventory check announces a version whose S3 event was lost."""

PRODUCERS_SECRET: Final = "SLUICE_PRODUCERS_SECRET"  # noqa: S105  # a variable name, not a secret
"""Secrets Manager secret (name or ARN) holding the sha256 of each producer's API keys."""

INGEST_DLQ_URL: Final = "SLUICE_INGEST_DLQ_URL"
"""The ingest queue's DLQ; the daily report says how many messages it holds."""

REQUEUE_DLQ_URL: Final = "SLUICE_REQUEUE_DLQ_URL"
"""Requeue's on-failure destination; the daily report says how many messages it holds."""

REPORT_TOPIC_ARN: Final = "SLUICE_REPORT_TOPIC_ARN"
"""SNS topic the daily report publishes its verdict and text to."""

DEPLOYMENT: Final = "SLUICE_DEPLOYMENT"
"""The deployment's name prefix (`<name_prefix>-<environment>`, locally `sluice-local`): what
the daily report calls it, and the prefix of its CloudWatch alarms' names."""

RESOURCE_VARIABLES: Final = frozenset(
    {
        LANDING_BUCKET,
        STAGING_BUCKET,
        IDEMPOTENCY_TABLE,
        FIREHOSE_STREAMS,
        LEDGER_TABLE,
        MINIO_SECRET,
        DELIVERY_DLQ_URL,
        DELIVERY_FUNCTION,
        INGEST_QUEUE_URL,
        PRODUCERS_SECRET,
        INGEST_DLQ_URL,
        REQUEUE_DLQ_URL,
        REPORT_TOPIC_ARN,
        DEPLOYMENT,
    }
)
"""The names `resource_environment` in tunables.json may list."""

ROOT: Final = "SLUICE_ROOT"
"""The `sluice` command's project root, where `.sluice/` (the local stack's state) lives;
defaults to the checkout Sluice runs from, else the current directory. Not a function's."""
