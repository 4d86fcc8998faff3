"""boto3 clients for Sluice's functions, created on first use and kept for the process.

Created lazily (not at import) so that tests can start moto's `mock_aws` before any client
exists; `reset()` forgets them between tests. Endpoints come from boto3's own
`AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>` variables, which the local stack sets.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Final

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_firehose import FirehoseClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

TRACED_MODULES: Final = ("botocore",)
"""What each function's Powertools Tracer patches for X-Ray: botocore, so every SDK call is a
subsegment. The Tracer's default patches every library the X-Ray SDK supports, importing a patch
module for each at every cold start; botocore is the only one of them the functions use (the
default never patches `httplib`, so MinIO's calls are not traced either way), so naming it
traces the same calls for less import."""

# Standard retry mode retries throttling and 5xx with backoff; our own, bounded retry of
# PutRecordBatch entries sits on top of it (transform.firehose_sender).
_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=5,
    read_timeout=30,
    max_pool_connections=64,
)


@functools.cache
def s3() -> S3Client:
    return boto3.client("s3", config=_CONFIG)


@functools.cache
def dynamodb() -> DynamoDBClient:
    return boto3.client("dynamodb", config=_CONFIG)


@functools.cache
def firehose() -> FirehoseClient:
    return boto3.client("firehose", config=_CONFIG)


@functools.cache
def sqs() -> SQSClient:
    return boto3.client("sqs", config=_CONFIG)


@functools.cache
def lambda_() -> LambdaClient:
    return boto3.client("lambda", config=_CONFIG)


@functools.cache
def sns() -> Any:  # no type stubs for SNS are installed
    return boto3.client("sns", config=_CONFIG)


@functools.cache
def cloudwatch() -> Any:  # no type stubs for CloudWatch are installed
    return boto3.client("cloudwatch", config=_CONFIG)


def reset() -> None:
    """Forget every client (tests: a new moto mock per test)."""
    for factory in (s3, dynamodb, firehose, sqs, lambda_, sns, cloudwatch):
        factory.cache_clear()
