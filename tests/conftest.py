"""Fixtures shared by every test: a moto AWS per test, Sluice's resources in it, event fixtures.

Process-wide defaults are set in `pytest_configure`, before any module under test is imported:
fake credentials (so no test can ever reach a real account), the region, tracing off (there is no
X-Ray daemon here) and the metrics namespace Powertools reads when handler modules are imported.
Per-test settings go through `monkeypatch`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from infrastructure import environment
from infrastructure.cli.deployment import Deployment
from infrastructure.local.provision import resources
from infrastructure.local.provision.stack_resources import StackNames, provision_stack
from infrastructure.tunables import load_tunables
from transform import clients

EVENTS = Path(__file__).with_name("events")
REGION = "eu-west-2"
LANDING = "sluice-landing-test"
STAGING = "sluice-staging-test"
IDEMPOTENCY_TABLE = "sluice-idempotency-test"
LEDGER_TABLE = "sluice-ledger-test"
MINIO_SECRET_NAME = "sluice/test/minio"
DELIVERY_DLQ_NAME = "sluice-delivery-dlq-test"
INGEST_QUEUE_NAME = "sluice-ingest-test"
DELIVERY_FUNCTION = "sluice-delivery-test:live"
STREAMS = ("sluice-test-0", "sluice-test-1")


def pytest_configure(config: pytest.Config) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "Sluice",
    }.items():
        os.environ[name] = value
    for name in [name for name in os.environ if name.startswith("AWS_ENDPOINT_URL")]:
        del os.environ[name]  # in-process tests must never reach a server by accident


def load_event(name: str) -> dict[str, Any]:
    """A real-shaped event from tests/events/."""
    return json.loads((EVENTS / name).read_text())


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    """Clients, tunables and each handler's dependencies are cached per process (per cold start);
    each test is a cold start."""
    # Imported here, not at the top: handler modules create Powertools objects from the
    # environment that pytest_configure sets first.
    from delivery import handler, redrive, report  # noqa: PLC0415  # see above
    from transform import forwarder, processor, requeue  # noqa: PLC0415  # see above

    def forget() -> None:
        clients.reset()
        load_tunables.cache_clear()
        forwarder.dependencies.cache_clear()
        processor.dependencies.cache_clear()
        requeue.dependencies.cache_clear()
        handler.dependencies.cache_clear()
        redrive.dependencies.cache_clear()
        report.dependencies.cache_clear()

    forget()
    yield
    forget()


@pytest.fixture
def aws() -> Iterator[None]:
    """moto's in-process AWS, started before any client exists."""
    with mock_aws():
        yield


@pytest.fixture
def s3(aws: None) -> Any:
    return boto3.client("s3", region_name=REGION)


@pytest.fixture
def buckets(s3: Any) -> dict[str, str]:
    """A versioned landing bucket and the staging bucket."""
    resources.create_bucket(s3, LANDING, REGION, versioned=True)
    resources.create_bucket(s3, STAGING, REGION, versioned=True)
    return {"landing": LANDING, "staging": STAGING}


@pytest.fixture
def idempotency_table(aws: None) -> str:
    resources.create_idempotency_table(
        boto3.client("dynamodb", region_name=REGION), IDEMPOTENCY_TABLE
    )
    return IDEMPOTENCY_TABLE


@pytest.fixture
def provisioned(aws: None) -> Deployment:
    """Every resource of a deployment on moto in process (as the local stack provisions them),
    named as operator commands find them."""
    clients: dict[str, Any] = {
        name: boto3.client(name, region_name=REGION)  # type: ignore[call-overload]
        for name in ("s3", "sqs", "dynamodb", "secretsmanager")
    }
    names = StackNames.for_prefix("unit", 2)
    created = provision_stack(
        s3=clients["s3"],
        sqs=clients["sqs"],
        dynamodb=clients["dynamodb"],
        secrets=clients["secretsmanager"],
        names=names,
        tunables=load_tunables(),
        minio_secret={},
    )
    return Deployment(
        name="unit",
        region=REGION,
        endpoint_url=None,
        landing_bucket=names.landing_bucket,
        staging_bucket=names.staging_bucket,
        idempotency_table=names.idempotency_table,
        ledger_table=names.ledger_table,
        ingest_queue_url=created.ingest_queue_url,
        ingest_dlq_url=created.ingest_dlq_url,
        delivery_dlq_url=created.delivery_dlq_url,
        requeue_dlq_url=created.requeue_dlq_url,
        minio_secret=names.minio_secret,
        functions={role: role for role in load_tunables().functions},
        streams=names.streams,
    )


@pytest.fixture
def function_env(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Apply a function's environment, as Terraform and the local stack set it."""

    def apply(function: str) -> None:
        spec = load_tunables().functions[function]
        for name, value in spec.environment.items():
            monkeypatch.setenv(name, value)
        bindings = {
            environment.LANDING_BUCKET: LANDING,
            environment.STAGING_BUCKET: STAGING,
            environment.IDEMPOTENCY_TABLE: IDEMPOTENCY_TABLE,
            environment.FIREHOSE_STREAMS: ",".join(STREAMS),
            environment.LEDGER_TABLE: LEDGER_TABLE,
            environment.MINIO_SECRET: MINIO_SECRET_NAME,
            environment.DELIVERY_DLQ_URL: (
                f"https://sqs.{REGION}.amazonaws.com/123456789012/{DELIVERY_DLQ_NAME}"
            ),
            environment.DELIVERY_FUNCTION: DELIVERY_FUNCTION,
            environment.INGEST_QUEUE_URL: (
                f"https://sqs.{REGION}.amazonaws.com/123456789012/{INGEST_QUEUE_NAME}"
            ),
            environment.INGEST_DLQ_URL: (
                f"https://sqs.{REGION}.amazonaws.com/123456789012/{INGEST_QUEUE_NAME}-dlq"
            ),
            environment.REQUEUE_DLQ_URL: (
                f"https://sqs.{REGION}.amazonaws.com/123456789012/sluice-requeue-dlq-test"
            ),
            environment.REPORT_TOPIC_ARN: f"arn:aws:sns:{REGION}:123456789012:sluice-reports-test",
            environment.DEPLOYMENT: "sluice-test",
        }
        for name in spec.resource_environment:
            monkeypatch.setenv(name, bindings[name])

    return apply
