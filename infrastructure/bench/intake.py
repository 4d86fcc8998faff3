"""`make bench`, intake section: small JSON events through the HTTPS intake over real HTTP on
loopback, one client after another, so the figure is one worker's throughput on one core.

The intake's handler runs in process behind the local API Gateway stand-in
(`infrastructure/local/apigateway`), against moto in process for S3, DynamoDB and Secrets
Manager: each request pays the stand-in's HTTP and event building, the handler's work (key check,
rate count, validation, the landing put, its `landed#` record) and moto's own handling of those
calls, which stand in for the network round trips AWS would take.

- `intake_requests_per_s`: requests answered 201 per second of wall time, one at a time.
- `intake_p99_ms`: the 99th percentile of those requests' latency, as the client saw it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import boto3
import requests
from aws_lambda_powertools.utilities import parameters
from moto import mock_aws

from infrastructure import environment
from infrastructure.bench.results import Figure, progress
from infrastructure.local.apigateway.server import IntakeApiServer
from infrastructure.local.lambdas.context import LocalLambdaContext
from infrastructure.local.provision import resources
from infrastructure.tunables import TUNABLES_FILE, load_tunables

REGION: Final = "eu-west-2"
LANDING: Final = "bench-landing"
IDEMPOTENCY: Final = "bench-idempotency"
LEDGER: Final = "bench-ledger"
SECRET: Final = "bench/producers"  # noqa: S105  # a secret's name
REQUESTS: Final = {True: 300, False: 2000}
"""Requests measured, by `quick`; a warm-up of 20 comes first."""
WARM_UP: Final = 20
RATE_GOAL: Final = 100.0
P99_GOAL_MS: Final = 50.0
EVENT: Final = json.dumps({"order_id": "o-1", "amount_pence": 1250, "currency": "GBP"}).encode()


def run(quick: bool, workdir: Path) -> list[Figure]:
    count = REQUESTS[quick]
    with _intake(workdir) as (endpoint, key):
        session = requests.Session()
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        for _ in range(WARM_UP):
            _post(session, endpoint, headers)
        progress(f"intake: {count} events, one request at a time")
        latencies = []
        started = time.perf_counter()
        for _ in range(count):
            latencies.append(_post(session, endpoint, headers))
        elapsed = time.perf_counter() - started
    rate = count / elapsed
    p99 = statistics.quantiles(latencies, n=100)[98] * 1000
    what = f"{count} small JSON events (POST /v1/events), one at a time, over loopback HTTP"
    return [
        Figure(
            name="intake_requests_per_s",
            value=round(rate, 1),
            unit="requests/s",
            what=what,
            goal=f">= {RATE_GOAL:.0f}",
            met=rate >= RATE_GOAL,
            note="" if rate >= RATE_GOAL else "moto in process answers the handler's calls",
        ),
        Figure(
            name="intake_p99_ms",
            value=round(p99, 1),
            unit="ms",
            what=what,
            goal=f"<= {P99_GOAL_MS:.0f}",
            met=p99 <= P99_GOAL_MS,
            reference=f"p50 {statistics.median(latencies) * 1000:.1f} ms",
        ),
    ]


def _post(session: requests.Session, endpoint: str, headers: dict[str, str]) -> float:
    started = time.perf_counter()
    response = session.post(f"{endpoint}/v1/events", data=EVENT, headers=headers, timeout=30)
    elapsed = time.perf_counter() - started
    if response.status_code != 201:  # Created
        raise RuntimeError(f"the intake answered {response.status_code}: {response.text[:300]}")
    return elapsed


@contextmanager
def _intake(workdir: Path) -> Iterator[tuple[str, str]]:
    """The intake on loopback over moto in process; its endpoint and a producer's key. Each
    producer's rate limit is lifted: what is measured is the work a request costs, not a limit."""
    tunables_file = workdir / "tunables.json"
    document = json.loads(TUNABLES_FILE.read_text())
    document["intake"]["producer_requests_per_second"] = dict.fromkeys(
        document["intake"]["producer_requests_per_second"], 1_000_000
    )
    tunables_file.write_text(json.dumps(document))
    saved = dict(os.environ)
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": REGION,
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_NAMESPACE": "Sluice",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            environment.LANDING_BUCKET: LANDING,
            environment.IDEMPOTENCY_TABLE: IDEMPOTENCY,
            environment.LEDGER_TABLE: LEDGER,
            environment.PRODUCERS_SECRET: SECRET,
            environment.TUNABLES_PATH: str(tunables_file),
        }
    )
    try:
        # Imported once the environment is set: Powertools reads it at import.
        from transform.intake import handler, producers  # noqa: PLC0415  # see above
        from transform.intake.requests import ROUTES  # noqa: PLC0415  # as above

        with mock_aws():
            key, digest = producers.new_key("bench")
            _provision(producers.with_key(None, "bench", digest))
            load_tunables.cache_clear()
            parameters.clear_caches()  # type: ignore[no-untyped-call]  # Powertools leaves it untyped
            handler.dependencies.cache_clear()
            server = IntakeApiServer(ROUTES, lambda event: _invoke(handler, event))
            server.start()
            try:
                yield server.endpoint, key
            finally:
                server.stop()
                handler.dependencies.cache_clear()
    finally:
        os.environ.clear()
        os.environ.update(saved)
        load_tunables.cache_clear()


def _invoke(handler: Any, event: dict[str, Any]) -> Any:
    # The handler's metrics are flushed as in AWS (one EMF line an invocation), into nothing:
    # disabling them instead would let them pile up until Powertools' 100-metric flush fails.
    with contextlib.redirect_stdout(io.StringIO()):
        return handler.lambda_handler(event, LocalLambdaContext("intake", 29))


def _provision(secret: str) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    resources.create_bucket(s3, LANDING, REGION, versioned=True)
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    resources.create_idempotency_table(dynamodb, IDEMPOTENCY)
    resources.create_ledger_table(dynamodb, LEDGER)
    boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name=SECRET, SecretString=secret
    )
