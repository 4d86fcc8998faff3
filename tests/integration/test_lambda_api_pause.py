"""The Lambda API operations `sluice pause|resume` calls (infrastructure.local.lambdas.api), with a
real boto3 Lambda client, and the commands themselves against a local stack file.

No function runs here: a function at reserved concurrency 0 is throttled before any worker
starts, and the event source mapping is a stand-in (the real one is tested over SQS in
test_lambda_runtime_pause.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from infrastructure.cli import main
from infrastructure.local.lambdas.api import LambdaApiServer
from infrastructure.local.lambdas.runtime import LambdaRuntime
from infrastructure.local.stack.stack_file import MinioEndpoint, StackFile, stack_path
from tests.conftest import REGION
from tests.integration.runtime_support import function, wait_until

INGEST_ARN = f"arn:aws:sqs:{REGION}:123456789012:sluice-local-ingest"


@dataclass
class StandInMapping:
    """An event source mapping as the runtime lists it (event_sources.SqsEventSource's API)."""

    function: str
    event_source_arn: str
    uuid: str = "0f6a4a5e-7c1f-4d2e-9a51-3c2a4e1b9d10"
    enabled: bool = True
    changes: list[bool] = field(default_factory=list)

    def configuration(self) -> dict[str, Any]:
        return {
            "UUID": self.uuid,
            "BatchSize": 10,
            "MaximumBatchingWindowInSeconds": 1,
            "EventSourceArn": self.event_source_arn,
            "FunctionArn": f"arn:aws:lambda:{REGION}:123456789012:function:{self.function}:live",
            "LastModified": 1_764_000_000.0,
            "State": "Enabled" if self.enabled else "Disabled",
            "StateTransitionReason": "USER_INITIATED",
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "ScalingConfig": {"MaximumConcurrency": 2},
        }

    def set_enabled(self, enabled: bool) -> None:
        self.enabled = enabled
        self.changes.append(enabled)


@pytest.fixture
def api(start_runtime: Callable[..., LambdaRuntime]) -> Iterator[LambdaApiServer]:
    runtime = start_runtime(
        function("forwarder", "echo"), function("delivery", "echo"), region=REGION
    )
    runtime.add_event_source_mapping(StandInMapping("forwarder", INGEST_ARN))
    server = LambdaApiServer().start(runtime)
    yield server
    server.stop()


def mapping(api: LambdaApiServer) -> StandInMapping:
    found = api.runtime.event_source_mappings()[0]
    assert isinstance(found, StandInMapping)
    return found


def client(endpoint: str, *, validate: bool = True) -> Any:
    return boto3.client(
        "lambda",
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(retries={"max_attempts": 1}, parameter_validation=validate),
    )


# ---------------------------------------------------------------------- event source mappings


def test_list_get_and_disable_an_event_source_mapping(api: LambdaApiServer) -> None:
    lam = client(api.endpoint)
    # WHEN the forwarder's mappings are listed, by name and by its alias
    listed = lam.list_event_source_mappings(FunctionName="forwarder")["EventSourceMappings"]
    by_alias = lam.list_event_source_mappings(FunctionName="forwarder:live")
    # THEN the ingest mapping is there, with the fields Lambda answers
    assert [m["EventSourceArn"] for m in listed] == [INGEST_ARN]
    assert by_alias["EventSourceMappings"][0]["UUID"] == listed[0]["UUID"]
    assert listed[0]["State"] == "Enabled"
    assert listed[0]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # ... and another function, or another source, has none
    assert lam.list_event_source_mappings(FunctionName="delivery")["EventSourceMappings"] == []
    other_queue = lam.list_event_source_mappings(EventSourceArn=INGEST_ARN + "-dlq")
    assert other_queue["EventSourceMappings"] == []
    # WHEN it is disabled by its UUID
    uuid = listed[0]["UUID"]
    updated = lam.update_event_source_mapping(UUID=uuid, Enabled=False)
    # THEN the mapping was told, and Get shows the new state
    assert updated["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert mapping(api).changes == [False]
    assert lam.get_event_source_mapping(UUID=uuid)["State"] == "Disabled"


def test_update_changes_enabled_only_and_names_what_it_refuses(api: LambdaApiServer) -> None:
    lam = client(api.endpoint)
    uuid = mapping(api).uuid
    with pytest.raises(ClientError) as refused:
        lam.update_event_source_mapping(UUID=uuid, Enabled=False, BatchSize=5)
    error = refused.value.response["Error"]
    assert error["Code"] == "InvalidParameterValueException"
    assert "BatchSize" in error["Message"]
    assert mapping(api).changes == []  # nothing was changed, not even Enabled


def test_an_unknown_mapping_is_resource_not_found(api: LambdaApiServer) -> None:
    with pytest.raises(ClientError) as missing:
        client(api.endpoint).get_event_source_mapping(UUID="00000000-0000-0000-0000-000000000000")
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"


# ---------------------------------------------------------------------- reserved concurrency


def test_put_get_delete_function_concurrency(api: LambdaApiServer) -> None:
    lam = client(api.endpoint)
    # GIVEN no reservation: Get answers without one
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(
        FunctionName="delivery"
    )
    # WHEN 0 is reserved THEN Put and Get both say so
    put = lam.put_function_concurrency(FunctionName="delivery", ReservedConcurrentExecutions=0)
    assert put["ReservedConcurrentExecutions"] == 0
    got = lam.get_function_concurrency(FunctionName="delivery")
    assert got["ReservedConcurrentExecutions"] == 0
    assert api.runtime.throttled("delivery")
    # WHEN it is deleted THEN the function is unreserved again
    deleted = lam.delete_function_concurrency(FunctionName="delivery")
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert api.runtime.function_concurrency("delivery") is None
    assert not api.runtime.throttled("delivery")


def test_concurrency_errors_have_aws_codes(api: LambdaApiServer) -> None:
    lam = client(api.endpoint)
    with pytest.raises(ClientError) as missing:
        lam.put_function_concurrency(FunctionName="nope", ReservedConcurrentExecutions=0)
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"
    unchecked = client(api.endpoint, validate=False)  # as a client without botocore's checks
    with pytest.raises(ClientError) as negative:
        unchecked.put_function_concurrency(FunctionName="delivery", ReservedConcurrentExecutions=-1)
    assert negative.value.response["Error"]["Code"] == "InvalidParameterValueException"


def test_a_function_at_concurrency_zero_throttles_sync_invoke_and_queues_events(
    api: LambdaApiServer,
) -> None:
    """Lambda answers 429 TooManyRequestsException to a synchronous invocation of a function
    with no concurrency; an asynchronous one is still accepted, and waits."""
    lam = client(api.endpoint)
    lam.put_function_concurrency(FunctionName="delivery", ReservedConcurrentExecutions=0)
    # WHEN it is invoked synchronously THEN 429, with the throttling reason
    with pytest.raises(ClientError) as throttled:
        lam.invoke(FunctionName="delivery:live", Payload=b"{}")
    response = throttled.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert response["Error"]["Code"] == "TooManyRequestsException"
    assert response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    # WHEN it is invoked asynchronously THEN the event is accepted and waits, throttled
    accepted = lam.invoke(FunctionName="delivery", InvocationType="Event", Payload=b"{}")
    assert accepted["StatusCode"] == 202
    wait_until(
        lambda: api.runtime.async_throttled_waiting("delivery") == 1, what="a throttled event"
    )
    assert not api.runtime.async_idle()
    assert api.runtime.async_idle(counting_throttled=False)


# ---------------------------------------------------------------------- the commands


@pytest.fixture
def local_stack(api: LambdaApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stack file naming the Lambda API above (nothing else is used by pause and resume)."""
    StackFile(
        aws_endpoint="http://127.0.0.1:9",
        region=REGION,
        landing_bucket="landing",
        staging_bucket="staging",
        ingest_queue_url="http://127.0.0.1:9/123456789012/sluice-local-ingest",
        ingest_dlq_url="http://127.0.0.1:9/123456789012/sluice-local-ingest-dlq",
        delivery_dlq_url="http://127.0.0.1:9/123456789012/sluice-local-delivery-dlq",
        requeue_dlq_url="http://127.0.0.1:9/123456789012/sluice-local-requeue-dlq",
        idempotency_table="idempotency",
        ledger_table="ledger",
        minio_secret="minio",
        streams=["stream-0"],
        firehose_endpoint="http://127.0.0.1:9",
        lambda_endpoint=api.endpoint,
        minio=MinioEndpoint("127.0.0.1:9", "access", "secret", "archive", False),
        pids={"sluice": 1},
        time_scale=1.0,
        buffer_seconds=60,
        processor_buffer_seconds=10,
        started_at="2026-11-25T12:00:00Z",
        logs=str(tmp_path),
    ).write(stack_path(tmp_path))
    monkeypatch.setenv("SLUICE_ROOT", str(tmp_path))
    return tmp_path


def sluice(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main.main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_pause_and_resume_the_forwarder(
    api: LambdaApiServer, local_stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # WHEN the forwarder is paused
    status, out, _ = sluice(capsys, "pause", "forwarder", "--local", "--json")
    # THEN its ingest mapping is disabled, and the report says so and warns of the retention
    assert status == 0
    report = json.loads(out)
    assert mapping(api).enabled is False
    assert [m["state"] for m in report["mappings"]] == ["Disabled"]
    assert "4 days" in report["warning"]
    # WHEN it is resumed THEN the mapping is enabled again
    status, out, _ = sluice(capsys, "resume", "forwarder")
    assert status == 0
    assert mapping(api).enabled is True
    assert "Enabled" in out


def test_pause_and_resume_delivery(
    api: LambdaApiServer, local_stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # WHEN delivery is paused
    status, out, _ = sluice(capsys, "pause", "delivery")
    # THEN it has a reserved concurrency of 0, and the warning names the DLQ and redrive
    assert status == 0
    assert api.runtime.function_concurrency("delivery") == 0
    assert "maximum event age" in out
    assert "sluice redrive" in out
    # WHEN it is resumed THEN it is unreserved, as the local stack (tunables.json) configures
    status, out, _ = sluice(capsys, "resume", "delivery", "--json")
    assert status == 0
    assert json.loads(out)["reserved_concurrency"] is None
    assert api.runtime.function_concurrency("delivery") is None


def test_resume_restores_the_reserved_concurrency_terraform_configured() -> None:
    from infrastructure.cli.pause import reserved_in_state  # noqa: PLC0415  # one test

    def state(value: int) -> dict[str, Any]:
        resource = {
            "address": 'aws_lambda_function.this["delivery"]',
            "values": {"reserved_concurrent_executions": value},
        }
        return {"values": {"root_module": {"resources": [resource]}}}

    assert reserved_in_state(state(25), "prod") == 25
    assert reserved_in_state(state(-1), "prod") is None  # Terraform's "unreserved"


def test_pausing_stays_within_its_wait(
    api: LambdaApiServer, local_stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mapping that never settles is reported as such when --wait runs out, not waited on."""
    stuck = mapping(api)
    stuck.set_enabled = stuck.changes.append  # type: ignore[method-assign]  # never settles
    status, out, _ = sluice(capsys, "pause", "forwarder", "--wait", "0", "--json")
    assert status == 0
    assert json.loads(out)["settled"] is False
    assert "still in flight" not in out  # JSON, not text
