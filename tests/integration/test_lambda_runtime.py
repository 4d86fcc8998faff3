"""The local Lambda runtime (DESIGN §6) against what AWS documents of Lambda.

Handlers are test doubles (tests/integration/handlers/) run in the runtime's worker processes;
they report through files named in their events. SQS is moto in server mode, which implements
visibility timeouts, ApproximateReceiveCount and redrive policies (maxReceiveCount) itself.
Nothing here asserts on durations: tests wait for states with deadlines; the only time checks
are lower bounds that the runtime's own scheduling guarantees.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from infrastructure import environment
from infrastructure.local.lambdas.event_sources import (
    Schedule,
    SqsEventSource,
    batch_item_failures,
)
from infrastructure.local.lambdas.runtime import AsyncInvokeConfig, LambdaRuntime
from infrastructure.local.lambdas.workers import (
    RESERVED_VARIABLES,
    FunctionConfig,
    FunctionError,
    RuntimeStoppedError,
    function_configs,
)
from infrastructure.local.provision import resources
from infrastructure.queues import queue_depth
from infrastructure.tunables import IngestTunables, parse_tunables, read_tunables_document
from tests.conftest import REGION, load_event
from tests.integration.handlers import _log
from tests.integration.handlers.invalid_response import KINDS
from tests.integration.runtime_support import HANDLERS, function, wait_until

RESOURCES = {
    environment.LANDING_BUCKET: "landing",
    environment.STAGING_BUCKET: "staging",
    environment.IDEMPOTENCY_TABLE: "idempotency",
    environment.FIREHOSE_STREAMS: "stream-0,stream-1",
    environment.LEDGER_TABLE: "ledger",
    environment.MINIO_SECRET: "sluice/minio",
    environment.DELIVERY_DLQ_URL: "http://127.0.0.1:1/123456789012/delivery-dlq",
    environment.DELIVERY_FUNCTION: "delivery:live",
    environment.INGEST_QUEUE_URL: "http://127.0.0.1:1/123456789012/ingest",
    environment.PRODUCERS_SECRET: "sluice/intake-producers",
    environment.INGEST_DLQ_URL: "http://127.0.0.1:1/123456789012/ingest-dlq",
    environment.REQUEUE_DLQ_URL: "http://127.0.0.1:1/123456789012/requeue-dlq",
    environment.REPORT_TOPIC_ARN: "arn:aws:sns:eu-west-2:123456789012:reports",
    environment.DEPLOYMENT: "sluice-local",
}


def ingest(
    *,
    batch_size: int = 10,
    window: int = 0,
    visibility: int = 3,
    concurrency: int = 2,
) -> IngestTunables:
    return IngestTunables(
        queue_retention_seconds=345_600,
        dlq_retention_seconds=1_209_600,
        max_receive_count=2,
        visibility_timeout_seconds=visibility,
        batch_size=batch_size,
        batching_window_seconds=window,
        maximum_concurrency=concurrency,
    )


def warm(runtime: LambdaRuntime, name: str, workers: int) -> None:
    """Start `workers` workers of `name` (overlapping no-op invocations), so that cold starts do
    not eat into the visibility timeouts the tests rely on."""

    def invoke() -> None:
        with contextlib.suppress(FunctionError):  # warm, whatever it answers to no records
            runtime.invoke(name, {"Records": []})

    threads = [threading.Thread(target=invoke) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def spawned_children() -> list[int]:
    """Processes whose parent is this one and that run multiprocessing's spawn entry point."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rpartition(")")[2].split()[1])
        if parent == os.getpid() and b"spawn_main" in command:
            children.append(int(entry.name))
    return children


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


@pytest.fixture
def sqs(moto_server: str) -> Any:
    return boto3.client("sqs", region_name=REGION, endpoint_url=moto_server)


def create_queue(sqs: Any, name: str, *, dlq_arn: str | None = None) -> tuple[str, str]:
    """A queue (with a redrive policy of maxReceiveCount 2 to `dlq_arn`); its URL and ARN."""
    attributes = {"VisibilityTimeout": "30"}
    if dlq_arn:
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"}
        )
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return url, arn


# ================================================================== rules, no processes


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (None, set()),
        ({}, set()),
        ({"batchItemFailures": None}, set()),
        ({"batchItemFailures": []}, set()),
        ({"batchItemFailures": [{"itemIdentifier": "m2"}]}, {"m2"}),
        ({"batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "m3"}]}, {"m1", "m3"}),
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, None),
        ({"batchItemFailures": [{"itemIdentifier": None}]}, None),
        ({"batchItemFailures": [{"messageId": "m1"}]}, None),
        ({"batchItemFailures": [{"itemIdentifier": "m9"}]}, None),
        ({"batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "m9"}]}, None),
        ({"batchItemFailures": ["m1"]}, None),
        ({"batchItemFailures": "m1"}, None),
        (["m1"], None),
        ("m1", None),
    ],
)
def test_partial_batch_response_conditions(response: Any, expected: set[str] | None) -> None:
    """Success and failure conditions of partial batch responses, from "Handling errors for an
    SQS event source in Lambda" (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html):
    an empty or null list, or an empty or null response, is complete success; an empty string,
    null, a bad key name or an unknown message id as itemIdentifier, or an invalid response,
    makes "Lambda treat the whole batch as a failure" (None here)."""
    # GIVEN a batch of three messages; WHEN the function answers `response`
    failed = batch_item_failures(response, ["m1", "m2", "m3"])
    # THEN the messages to keep are exactly the reported ones, or the whole batch fails
    assert failed == expected


def test_function_config_is_the_tunables_environment_bound_locally() -> None:
    """The environment is exactly what tunables.json (and so Terraform) sets, plus the local
    profile and endpoints: only the resource variables the function lists are bound."""
    # GIVEN the local profile of the tunables
    tunables = parse_tunables(read_tunables_document(), "local")
    spec = tunables.functions["forwarder"]

    # WHEN the forwarder is configured with every resource binding available
    config = FunctionConfig.from_spec(
        "forwarder",
        spec,
        resources=RESOURCES,
        endpoints={"AWS_ENDPOINT_URL": "http://127.0.0.1:5000"},
    )

    # THEN its environment is its static variables, its own resources, profile and endpoint
    assert config.environment == {
        **spec.environment,
        **{name: RESOURCES[name] for name in spec.resource_environment},
        environment.PROFILE: "local",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
    }
    assert environment.LEDGER_TABLE not in config.environment  # not the forwarder's
    assert config.timeout_seconds == spec.timeout_seconds == 10
    assert config.handler == "transform.forwarder.lambda_handler"
    # ... as are all five functions at once
    configs = function_configs(tunables, resources=RESOURCES, endpoints={})
    assert {c.name: c.handler for c in configs} == {
        name: spec.handler for name, spec in tunables.functions.items()
    }
    assert all(c.environment[environment.PROFILE] == "local" for c in configs)
    # ... a missing binding, a non-endpoint "endpoint" and a variable Lambda reserves are refused
    with pytest.raises(ValueError, match="no local binding"):
        FunctionConfig.from_spec("forwarder", spec, resources={}, endpoints={})
    with pytest.raises(ValueError, match="AWS_ENDPOINT_URL"):
        FunctionConfig.from_spec("forwarder", spec, resources=RESOURCES, endpoints={"X": "y"})
    with pytest.raises(ValueError, match="reserved"):
        function("f", "echo", env={"AWS_REGION": "us-east-1"})


def test_async_invoke_config_limits_and_delivery_settings() -> None:
    """PutFunctionEventInvokeConfig accepts MaximumRetryAttempts 0-2 and MaximumEventAgeInSeconds
    60-21600 (https://docs.aws.amazon.com/lambda/latest/api/API_PutFunctionEventInvokeConfig.html);
    delivery's alias gets its values from the tunables."""
    delivery = parse_tunables(read_tunables_document(), "local").delivery
    config = AsyncInvokeConfig.for_delivery(delivery, "http://queue")
    assert (config.maximum_retry_attempts, config.maximum_event_age_seconds) == (2, 21_600)
    assert config.on_failure == "http://queue"
    for bad in ({"maximum_retry_attempts": 3}, {"maximum_event_age_seconds": 59}):
        with pytest.raises(ValueError, match="Maximum"):
            AsyncInvokeConfig(**bad)  # type: ignore[arg-type]  # ints, as the dataclass takes


def test_event_source_mapping_refuses_what_aws_refuses(
    start_runtime: Callable[..., LambdaRuntime],
) -> None:
    """CreateEventSourceMapping fails when the queue's visibility timeout is below the function's
    timeout, and MaximumConcurrency is 2-1000
    (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html)."""
    runtime = start_runtime(function("f", "echo", timeout=10))
    with pytest.raises(ValueError, match="visibility timeout"):
        SqsEventSource(runtime, "f", "http://queue", ingest(visibility=9))
    with pytest.raises(ValueError, match="MaximumConcurrency"):
        SqsEventSource(runtime, "f", "http://queue", ingest(visibility=10, concurrency=1))


def test_schedule_period_from_the_redrive_tunables(
    start_runtime: Callable[..., LambdaRuntime],
) -> None:
    redrive = parse_tunables(read_tunables_document(), "local").redrive
    runtime = start_runtime(function("redrive", "records"), time_scale=60)
    schedule = Schedule.for_redrive(runtime, redrive)
    assert schedule.every_seconds == redrive.schedule_minutes * 60
    assert schedule.period_seconds == redrive.schedule_minutes  # one minute becomes one second


def test_a_new_time_scale_reaches_the_runtime_the_schedule_and_the_mapping(
    start_runtime: Callable[..., LambdaRuntime],
) -> None:
    # GIVEN the runtime, the redrive schedule and an ingest mapping, at time scale 60
    redrive = parse_tunables(read_tunables_document(), "local").redrive
    runtime = start_runtime(function("redrive", "records", timeout=10), time_scale=60)
    schedule = Schedule.for_redrive(runtime, redrive)
    mapping = SqsEventSource(runtime, "redrive", "http://queue", ingest(window=60, visibility=900))
    assert (mapping.batching_window_seconds, mapping.visibility_timeout_seconds) == (1, 15)
    # WHEN each is given time scale 5
    runtime.time_scale = 5
    schedule.set_time_scale(5)
    mapping.set_time_scale(5)
    # THEN each scales its waits anew: 5 minutes last one real minute, not five seconds
    assert runtime.time_scale == 5
    assert schedule.period_seconds == redrive.schedule_minutes * 12
    # ... the window 12 s, the visibility timeout 180 s (above the function's 10 s and the window)
    assert (mapping.batching_window_seconds, mapping.visibility_timeout_seconds) == (12, 180)
    # ... and none takes a scale that is not positive
    for part in (schedule.set_time_scale, mapping.set_time_scale):
        with pytest.raises(ValueError, match="time_scale must be positive, not 0"):
            part(0)
    with pytest.raises(ValueError, match="time_scale must be positive, not -1"):
        runtime.time_scale = -1


# ================================================================== workers


@pytest.mark.slow
def test_invoke_returns_the_result_and_a_context_with_the_real_remaining_time(
    start_runtime: Callable[..., LambdaRuntime],
) -> None:
    # GIVEN a function with a 3 s timeout
    runtime = start_runtime(function("echo", "echo", timeout=3.0))

    # WHEN it is invoked twice
    first = runtime.invoke("echo", {"n": 1, "text": "ü"})
    second = runtime.invoke("echo", {"n": 2})

    # THEN each gets its event, and a context whose remaining time is real and running down
    assert first["event"] == {"n": 1, "text": "ü"}
    before, after = first["remaining_ms"]
    assert 0 < after < before <= 3000
    assert first["function_name"] == "echo"
    assert first["memory_limit_in_mb"] == 256
    assert first["invoked_function_arn"].endswith(":function:echo:live")
    assert first["request_id"] != second["request_id"]
    # ... and the second ran warm, in the same worker: one cold start
    assert second["pid"] == first["pid"]
    assert runtime.cold_starts("echo") == 1


@pytest.mark.slow
def test_handler_exception_and_init_error_are_function_errors(
    start_runtime: Callable[..., LambdaRuntime], tmp_path: Path
) -> None:
    """A handler's exception comes back as Lambda's Python runtime reports it: errorType (the
    class), errorMessage, requestId, stackTrace; the environment is kept. A module that cannot be
    imported is Runtime.ImportModuleError
    (https://docs.aws.amazon.com/lambda/latest/dg/python-exceptions.html)."""
    runtime = start_runtime(
        function("fails", "fails"),
        FunctionConfig("missing", "tests.integration.handlers.nowhere.lambda_handler", 3, 128),
    )
    log = str(tmp_path / "log")

    # WHEN the failing function is invoked twice
    errors = []
    for _ in range(2):
        with pytest.raises(FunctionError) as caught:
            runtime.invoke("fails", {"log": log})
        errors.append(caught.value)

    # THEN each is a FunctionError with the runtime's payload
    error = errors[0]
    assert error.error_type == "DeliberateError"
    assert error.message.startswith("deliberate failure of request ")
    assert set(error.payload) == {"errorMessage", "errorType", "requestId", "stackTrace"}
    assert error.payload["requestId"] in error.message
    assert any("fails.py" in frame for frame in error.payload["stackTrace"])
    # ... the worker survived its handler's exception
    assert runtime.cold_starts("fails") == 1
    assert len({entry["pid"] for entry in _log.read(log)}) == 1
    # ... and a module that does not import fails the invocation as Lambda reports it
    with pytest.raises(FunctionError) as caught:
        runtime.invoke("missing", {})
    assert caught.value.error_type == "Runtime.ImportModuleError"


@pytest.mark.slow
def test_recycle_starts_new_workers_as_a_deploy_does(
    start_runtime: Callable[..., LambdaRuntime],
) -> None:
    # GIVEN a warm worker
    runtime = start_runtime(function("slow", "slow"))
    pid = runtime.invoke("slow", {"seconds": 0})["pid"]
    assert runtime.invoke("slow", {"seconds": 0})["pid"] == pid
    # WHEN the function's execution environments are recycled (a deploy, locally)
    runtime.recycle("slow")
    # THEN the idle worker is gone and the next invocation is a cold start in a new one
    wait_until(lambda: not alive(pid), what="the recycled worker to be gone", timeout=10)
    assert runtime.invoke("slow", {"seconds": 0})["pid"] != pid
    assert runtime.cold_starts("slow") == 2


def test_a_worker_busy_when_recycled_is_retired_after_its_invocation(
    start_runtime: Callable[..., LambdaRuntime],
) -> None:
    # GIVEN an invocation in flight
    runtime = start_runtime(function("slow", "slow"))
    pid = runtime.invoke("slow", {"seconds": 0})["pid"]
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(runtime.invoke, "slow", {"seconds": 1})
        wait_until(lambda: runtime.stats("slow").invocations == 2, what="the second invocation")
        # WHEN the function is recycled meanwhile
        runtime.recycle("slow")
        # THEN the invocation ends normally, in the old worker, which is then retired
        assert busy.result()["pid"] == pid
    wait_until(lambda: not alive(pid), what="the retired worker to be gone", timeout=10)
    assert runtime.invoke("slow", {"seconds": 0})["pid"] != pid


def test_timeout_kills_the_worker_and_the_next_invocation_is_a_cold_start(
    start_runtime: Callable[..., LambdaRuntime],
) -> None:
    """ "Function errors include ... errors returned by the function's runtime, such as timeouts"
    (https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html); a
    timed-out execution environment is reset
    (https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html)."""
    # GIVEN a warm worker of a function with a 1 s timeout
    runtime = start_runtime(function("slow", "slow", timeout=1.0))
    pid = runtime.invoke("slow", {"seconds": 0})["pid"]
    assert runtime.cold_starts("slow") == 1

    # WHEN an invocation runs past the timeout
    with pytest.raises(FunctionError) as caught:
        runtime.invoke("slow", {"seconds": 60})

    # THEN it is reported as Lambda reports it, and its worker is gone
    assert caught.value.error_type == "Sandbox.Timedout"
    assert "Task timed out after 1." in caught.value.message
    wait_until(lambda: not alive(pid), what="the timed-out worker to be gone", timeout=10)
    assert runtime.worker_pids("slow") == []
    # ... and the next invocation starts a new worker: a cold start
    assert runtime.invoke("slow", {"seconds": 0})["pid"] != pid
    assert runtime.cold_starts("slow") == 2
    assert runtime.stats("slow").timeouts == 1


@pytest.mark.slow
def test_worker_environment_is_exactly_the_configured_one(
    start_runtime: Callable[..., LambdaRuntime], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each function's environment is exactly what tunables.json sets (DESIGN §3), plus the
    variables Lambda defines itself
    (https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime)
    — nothing of the process that runs the local stack."""
    # GIVEN the forwarder's configuration, run by a handler that reports its environment
    spec = parse_tunables(read_tunables_document(), "local").functions["forwarder"]
    config = dataclasses.replace(
        FunctionConfig.from_spec(
            "forwarder",
            spec,
            resources=RESOURCES,
            endpoints={"AWS_ENDPOINT_URL": "http://127.0.0.1:5000"},
        ),
        handler=f"{HANDLERS}.env_report.lambda_handler",
    )
    # ... and variables in the parent's environment that must not leak
    monkeypatch.setenv("SLUICE_LEAK_CANARY", "leaked")
    monkeypatch.setenv(environment.LEDGER_TABLE, "leaked")
    runtime = start_runtime(config, region="eu-west-2")

    # WHEN the function is invoked
    seen: dict[str, str] = runtime.invoke("forwarder", {})

    # THEN its environment holds the configured variables with their values ...
    assert {name: seen.get(name) for name in config.environment} == config.environment
    # ... and apart from them only variables Lambda defines (and PATH, LANG, TZ)
    assert set(seen) - set(config.environment) <= RESERVED_VARIABLES | {"PATH", "LANG", "TZ"}
    assert "SLUICE_LEAK_CANARY" not in seen
    assert environment.LEDGER_TABLE not in seen
    assert "POWERTOOLS_TRACE_DISABLED" not in seen  # set by the test session, not by tunables
    assert seen["AWS_LAMBDA_FUNCTION_NAME"] == "forwarder"
    assert seen["AWS_REGION"] == seen["AWS_DEFAULT_REGION"] == "eu-west-2"
    assert seen["_HANDLER"] == config.handler
    assert seen["_X_AMZN_TRACE_ID"].startswith("Root=1-")


@pytest.mark.slow
def test_the_forwarder_runs_unchanged_in_a_worker(
    start_runtime: Callable[..., LambdaRuntime],
) -> None:
    """The real handler, in its exact environment (Powertools logger, metrics and tracer as in
    Lambda), acknowledges S3's test event with an empty partial batch response."""
    spec = parse_tunables(read_tunables_document(), "local").functions["forwarder"]
    config = FunctionConfig.from_spec(
        "forwarder", spec, resources=RESOURCES, endpoints={"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    )
    runtime = start_runtime(config)
    event = load_event("sqs_event.json")
    event["Records"][0]["body"] = json.dumps(load_event("s3_test_event.json"))
    assert runtime.invoke("forwarder", event) == {"batchItemFailures": []}


@pytest.mark.slow
def test_crash_after_calls_kills_the_worker_at_the_nth_sdk_call(
    moto_server: str, sqs: Any, start_runtime: Callable[..., LambdaRuntime]
) -> None:
    """DESIGN §6: "a crash is the worker killed after N SDK calls". A process that exits while
    invoking is Runtime.ExitError, as Lambda reports a runtime that exits."""
    # GIVEN a function that sends `calls` messages to a queue, one SDK call each
    url, _ = create_queue(sqs, "calls")
    runtime = start_runtime(
        function("caller", "counts_calls", env={"AWS_ENDPOINT_URL": moto_server})
    )

    def invoke(tag: str) -> Any:
        return runtime.invoke("caller", {"queue_url": url, "calls": 5, "tag": tag})

    # WHEN a crash is armed at the 3rd call, before it is sent
    runtime.crash_after_calls("caller", 3)
    with pytest.raises(FunctionError) as before:
        invoke("before")
    # ... then an invocation runs unarmed (the crash was one-shot)
    assert invoke("unarmed") == {"calls": 5}
    # ... then a crash is armed after the 3rd call's answer
    runtime.crash_after_calls("caller", 3, phase="after")
    with pytest.raises(FunctionError) as after:
        invoke("after")

    # THEN the workers died as crashed runtimes do
    for caught in (before, after):
        assert caught.value.error_type == "Runtime.ExitError"
        assert "Runtime exited with error: exit status" in caught.value.message
    # ... exactly 2 calls reached SQS before the first crash, 3 before the second
    sent = Counter(m["Body"].rpartition("-")[0] for m in resources.drain_queue(sqs, url))
    assert sent == {"before": 2, "unarmed": 5, "after": 3}
    assert runtime.stats("caller").crashes == 2
    assert runtime.cold_starts("caller") == 2


def test_crash_at_the_start_and_a_hang_past_the_timeout(
    moto_server: str, sqs: Any, start_runtime: Callable[..., LambdaRuntime]
) -> None:
    """`--after-calls 0` strikes before any handler code (a function that makes no SDK call,
    as the processor); `hang` is an invocation past its timeout, killed as Lambda kills one."""
    url, _ = create_queue(sqs, "hangs")
    runtime = start_runtime(
        function("caller", "counts_calls", timeout=2.0, env={"AWS_ENDPOINT_URL": moto_server})
    )

    def invoke(tag: str) -> Any:
        return runtime.invoke("caller", {"queue_url": url, "calls": 3, "tag": tag})

    # WHEN a crash is armed at call 0, then a hang at the 2nd call, twice
    runtime.crash_after_calls("caller", 0)
    with pytest.raises(FunctionError) as at_start:
        invoke("start")
    runtime.crash_after_calls("caller", 2, phase="hang", times=2)
    hangs = []
    for tag in ("hang-1", "hang-2"):
        with pytest.raises(FunctionError) as hung:
            invoke(tag)
        hangs.append(hung.value)
    # THEN the first died before sending anything; the hung ones timed out after one call
    assert at_start.value.error_type == "Runtime.ExitError"
    assert [h.error_type for h in hangs] == ["Sandbox.Timedout", "Sandbox.Timedout"]
    # ... the hang was spent by the two invocations it struck: the next one runs whole
    assert runtime.armed_crash("caller") is None
    assert invoke("after") == {"calls": 3}
    sent = Counter(m["Body"].rpartition("-")[0] for m in resources.drain_queue(sqs, url))
    assert sent == {"hang-1": 1, "hang-2": 1, "after": 3}


# ================================================================== asynchronous invocation


@pytest.mark.slow
def test_async_retries_with_growing_delays_then_the_on_failure_record(
    moto_server: str, sqs: Any, start_runtime: Callable[..., LambdaRuntime], tmp_path: Path
) -> None:
    """ "If the function returns an error, by default Lambda attempts to run it two more times,
    with a one-minute wait between the first two attempts, and two minutes between the second
    and third attempts" (https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html);
    then the invocation record goes to the on-failure destination with `version`, `timestamp`,
    `requestContext` (requestId, functionArn, condition, approximateInvokeCount),
    `requestPayload`, `responseContext` (statusCode, executedVersion, functionError) and
    `responsePayload` (https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html)."""
    # GIVEN a failing function with MaximumRetryAttempts 2 and an SQS on-failure destination,
    # one minute of Lambda's time lasting one second here
    dlq_url, _ = create_queue(sqs, "delivery-dlq")
    runtime = start_runtime(
        function("delivery", "fails"),
        time_scale=60,
        endpoint_url=moto_server,
        async_configs={"delivery": AsyncInvokeConfig(maximum_retry_attempts=2, on_failure=dlq_url)},
    )
    event = {"log": str(tmp_path / "attempts"), "window": "w-1"}

    # WHEN it is invoked asynchronously
    request_id = runtime.invoke_async("delivery", event)

    # THEN the call returned at once, and the event is attempted 3 times in all
    history = runtime.async_history(request_id)
    wait_until(lambda: history.outcome, what="the retries to end")
    assert history.outcome == "RetriesExhausted"
    attempts = _log.read(event["log"])
    assert [a["requestId"] for a in attempts] == [request_id] * 3
    # ... after waits of 0, 1 and 2 minutes of Lambda's time, never shorter (scaled)
    assert [a.delay_seconds for a in history.attempts] == [0, 60, 120]
    starts = [a.started for a in history.attempts]
    assert starts[1] - starts[0] >= 60 / 60
    assert starts[2] - starts[1] >= 120 / 60
    # ... and the record is in the destination queue, with Lambda's fields
    messages = sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=5).get("Messages", [])
    assert len(messages) == 1
    record = json.loads(messages[0]["Body"])
    assert set(record) == {
        "version",
        "timestamp",
        "requestContext",
        "requestPayload",
        "responseContext",
        "responsePayload",
    }
    assert record["version"] == "1.0"
    assert record["timestamp"].endswith("Z")
    assert record["requestContext"] == {
        "requestId": request_id,
        "functionArn": f"arn:aws:lambda:{REGION}:123456789012:function:delivery:live",
        "condition": "RetriesExhausted",
        "approximateInvokeCount": 3,
    }
    assert record["requestPayload"] == event
    assert record["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert record["responsePayload"]["errorType"] == "DeliberateError"
    assert record["responsePayload"]["errorMessage"].startswith("deliberate failure")
    assert isinstance(record["responsePayload"]["stackTrace"], list)


@pytest.mark.slow
def test_async_success_after_one_failure_sends_no_record(
    moto_server: str, sqs: Any, start_runtime: Callable[..., LambdaRuntime], tmp_path: Path
) -> None:
    """The on-failure destination receives only events that "fail all processing attempts"
    (https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html)."""
    # GIVEN a function that fails its first attempt only
    dlq_url, _ = create_queue(sqs, "delivery-dlq")
    runtime = start_runtime(
        function("delivery", "flaky"),
        time_scale=60,
        endpoint_url=moto_server,
        async_configs={"delivery": AsyncInvokeConfig(on_failure=dlq_url)},
    )

    # WHEN it is invoked asynchronously
    request_id = runtime.invoke_async("delivery", {"marker": str(tmp_path / "marker")})

    # THEN the retry succeeds, and no record is sent
    history = runtime.async_history(request_id)
    wait_until(lambda: history.outcome, what="the event to be processed")
    assert history.outcome == "Success"
    assert [a.error_type for a in history.attempts] == ["RuntimeError", None]
    assert history.record is None
    assert sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=1).get("Messages", []) == []


@pytest.mark.slow
def test_async_event_older_than_the_maximum_age_is_dropped_with_a_record(
    moto_server: str, sqs: Any, start_runtime: Callable[..., LambdaRuntime], tmp_path: Path
) -> None:
    """MaximumEventAgeInSeconds: "The maximum age of a request that Lambda sends to a function
    for processing"; the record's condition is then EventAgeExceeded
    (https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-configuring.html)."""
    # GIVEN a failing function whose events may be 60 s old at most, and a retry delay of 60 s
    dlq_url, _ = create_queue(sqs, "delivery-dlq")
    runtime = start_runtime(
        function("delivery", "fails"),
        time_scale=60,
        endpoint_url=moto_server,
        async_configs={
            "delivery": AsyncInvokeConfig(maximum_event_age_seconds=60, on_failure=dlq_url)
        },
    )

    # WHEN it is invoked asynchronously
    request_id = runtime.invoke_async("delivery", {"log": str(tmp_path / "attempts")})

    # THEN the retry is never made: the event has expired; the record says so
    history = runtime.async_history(request_id)
    wait_until(lambda: history.outcome, what="the event to expire")
    assert history.outcome == "EventAgeExceeded"
    assert len(history.attempts) == 1
    messages = sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=5).get("Messages", [])
    context = json.loads(messages[0]["Body"])["requestContext"]
    assert (context["condition"], context["approximateInvokeCount"]) == ("EventAgeExceeded", 1)


# ================================================================== SQS event source mapping


@pytest.mark.slow
def test_partial_batch_response_deletes_only_the_successful_messages(
    moto_server: str, sqs: Any, start_runtime: Callable[..., LambdaRuntime], tmp_path: Path
) -> None:
    """ "To avoid reprocessing successfully processed messages in a failed batch, you can
    configure your event source mapping to make only the failed messages visible again"
    (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html). The event
    has the shape of https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html."""
    # GIVEN a queue holding 3 messages the function reports failed on their first receive,
    # and 3 it processes
    url, arn = create_queue(sqs, "ingest")
    log = str(tmp_path / "log")
    sent = {}
    for i in range(6):
        body = json.dumps({"log": log, "fail_first": i % 2 == 0, "i": i})
        message_id = sqs.send_message(
            QueueUrl=url,
            MessageBody=body,
            MessageAttributes={"producer": {"DataType": "String", "StringValue": "acme"}},
        )["MessageId"]
        sent[message_id] = json.loads(body)
    runtime = start_runtime(function("forwarder", "partial"), endpoint_url=moto_server)
    warm(runtime, "forwarder", 2)

    # WHEN the event source mapping runs, in batches of up to 10 gathered for up to 1 s
    source = SqsEventSource(runtime, "forwarder", url, ingest(window=1)).start()
    wait_until(lambda: queue_depth(sqs, url) == 0, what="the queue to empty")

    # THEN each failed message came back once (second receive), and the others never did
    entries = _log.read(log)
    seen = Counter(entry["record"]["messageId"] for entry in entries)
    assert seen == {mid: 2 if body["fail_first"] else 1 for mid, body in sent.items()}
    assert source.stats.reported_failures == 3
    # ... and the records are shaped as Lambda's SQS event
    record = entries[0]["record"]
    assert set(record) == {
        "messageId",
        "receiptHandle",
        "body",
        "attributes",
        "messageAttributes",
        "md5OfBody",
        "md5OfMessageAttributes",
        "eventSource",
        "eventSourceARN",
        "awsRegion",
    }
    assert (record["eventSource"], record["eventSourceARN"], record["awsRegion"]) == (
        "aws:sqs",
        arn,
        REGION,
    )
    assert record["md5OfBody"] == hashlib.md5(record["body"].encode()).hexdigest()  # noqa: S324  # SQS's checksum
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert {"SentTimestamp", "ApproximateFirstReceiveTimestamp"} <= set(record["attributes"])
    assert record["messageAttributes"] == {
        "producer": {
            "stringValue": "acme",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "String",
        }
    }


@pytest.mark.slow
def test_an_invalid_partial_batch_response_fails_the_whole_batch(
    moto_server: str, sqs: Any, start_runtime: Callable[..., LambdaRuntime], tmp_path: Path
) -> None:
    """ "If your function returns any of the following, Lambda treats the whole batch as a
    failure": invalid JSON, an empty string, null or a bad key name as itemIdentifier, a message
    ID that doesn't exist (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html)."""
    # GIVEN one message per kind of invalid response, one message per batch
    url, _ = create_queue(sqs, "ingest")
    log = str(tmp_path / "log")
    ids = {
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"log": log, "response": kind}))[
            "MessageId"
        ]
        for kind in KINDS
    }
    runtime = start_runtime(function("forwarder", "invalid_response"), endpoint_url=moto_server)
    warm(runtime, "forwarder", 2)

    # WHEN the mapping runs and the function answers each first receive invalidly
    source = SqsEventSource(runtime, "forwarder", url, ingest(batch_size=1)).start()
    wait_until(lambda: queue_depth(sqs, url) == 0, what="the queue to empty")

    # THEN every message was kept and came back: each was received exactly twice
    received = Counter(entry["messageId"] for entry in _log.read(log))
    assert received == dict.fromkeys(ids, 2)
    assert source.stats.invalid_responses == len(KINDS)


@pytest.mark.slow
def test_function_error_returns_the_batch_and_redrive_moves_it_to_the_dlq(
    moto_server: str, sqs: Any, start_runtime: Callable[..., LambdaRuntime], tmp_path: Path
) -> None:
    """When the function fails, "all messages in that batch become visible in the queue again"
    after the visibility timeout (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html);
    "when the ReceiveCount for a message exceeds the maxReceiveCount for a queue, Amazon SQS moves
    the message to a dead-letter queue"
    (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-dead-letter-queues.html)."""
    # GIVEN a queue with a DLQ after 2 receives, and 3 messages for a function that always fails
    dlq_url, dlq_arn = create_queue(sqs, "ingest-dlq")
    url, _ = create_queue(sqs, "ingest", dlq_arn=dlq_arn)
    log = str(tmp_path / "log")
    ids = {
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"log": log, "i": i}))["MessageId"]
        for i in range(3)
    }
    runtime = start_runtime(function("forwarder", "fails"), endpoint_url=moto_server)
    warm(runtime, "forwarder", 2)

    # WHEN the mapping runs
    source = SqsEventSource(runtime, "forwarder", url, ingest()).start()

    # THEN the messages end in the DLQ, none deleted, each received exactly maxReceiveCount times
    wait_until(lambda: queue_depth(sqs, dlq_url) == 3, what="3 messages in the DLQ")
    assert queue_depth(sqs, url) == 0
    in_dlq = resources.drain_queue(sqs, dlq_url)
    assert {m["MessageId"] for m in in_dlq} == ids
    receives: dict[str, list[int]] = {}
    for entry in _log.read(log):
        receives.setdefault(entry["messageId"], []).append(entry["receiveCount"])
    assert {mid: sorted(counts) for mid, counts in receives.items()} == {mid: [1, 2] for mid in ids}
    assert source.stats.deleted == 0


@pytest.mark.slow
def test_maximum_concurrency_bounds_the_batches_in_flight(
    moto_server: str, sqs: Any, start_runtime: Callable[..., LambdaRuntime], tmp_path: Path
) -> None:
    """ "Maximum concurrency ... limits the number of concurrent instances of the function that
    an Amazon SQS event source can invoke"
    (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html)."""
    # GIVEN 8 one-message batches that take 1 s each, a mapping of maximum concurrency 2 and a
    # function that could run 4 at once
    url, _ = create_queue(sqs, "ingest")
    running, log = tmp_path / "running", str(tmp_path / "log")
    running.mkdir()
    for i in range(8):
        body = {"dir": str(running), "log": log, "seconds": 1.0, "i": i}
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(body))
    runtime = start_runtime(
        function("forwarder", "overlap"), workers_per_function=4, endpoint_url=moto_server
    )
    warm(runtime, "forwarder", 2)

    # WHEN the mapping runs
    SqsEventSource(runtime, "forwarder", url, ingest(batch_size=1, concurrency=2)).start()
    wait_until(lambda: queue_depth(sqs, url) == 0, what="the queue to empty")

    # THEN two invocations overlapped, never more
    entries = _log.read(log)
    assert len(entries) == 8
    assert max(entry["overlapping"] for entry in entries) == 2


@pytest.mark.slow
def test_a_batch_never_waits_for_a_worker_while_its_visibility_timeout_runs(
    moto_server: str, sqs: Any, start_runtime: Callable[..., LambdaRuntime], tmp_path: Path
) -> None:
    """Lambda scales out to run every batch its pollers hold, so a received batch is never left
    waiting for an execution environment. Here the workers are the function's concurrency: a
    mapping allowed more batches than there are workers must not receive them, or they would
    wait, reappear after their visibility timeout and run twice."""
    # GIVEN 4 one-message batches of 2 s each, a visibility timeout of 3 s, one worker, and a
    # mapping of maximum concurrency 4
    url, _ = create_queue(sqs, "ingest")
    running, log = tmp_path / "running", str(tmp_path / "log")
    running.mkdir()
    for i in range(4):
        body = {"dir": str(running), "log": log, "seconds": 2.0, "i": i}
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(body))
    runtime = start_runtime(
        function("forwarder", "overlap"), workers_per_function=1, endpoint_url=moto_server
    )
    warm(runtime, "forwarder", 1)
    # WHEN the mapping runs
    SqsEventSource(
        runtime, "forwarder", url, ingest(batch_size=1, concurrency=4, visibility=3)
    ).start()
    wait_until(lambda: queue_depth(sqs, url) == 0, what="the queue to empty")
    # THEN each message ran exactly once
    assert len(_log.read(log)) == 4


# ================================================================== schedule and stop


@pytest.mark.slow
def test_schedule_invokes_asynchronously_with_a_scheduled_event(
    start_runtime: Callable[..., LambdaRuntime], tmp_path: Path
) -> None:
    """EventBridge's scheduled event
    (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-run-lambda-schedule.html)."""
    # GIVEN a function run every 5 minutes, 5 minutes lasting one second here
    path = tmp_path / "events"
    runtime = start_runtime(
        function("redrive", "records", env={"RECORD_PATH": str(path)}), time_scale=300
    )
    schedule = Schedule(runtime, "redrive", every_seconds=300).start()

    # WHEN two periods have passed
    wait_until(lambda: len(_log.read(path)) >= 2, what="2 events")
    events = _log.read(path)

    # THEN the function got scheduled events from its rule
    for event in events:
        assert set(event) == {
            "version",
            "id",
            "detail-type",
            "source",
            "account",
            "time",
            "region",
            "resources",
            "detail",
        }
        assert (event["detail-type"], event["source"], event["detail"]) == (
            "Scheduled Event",
            "aws.events",
            {},
        )
        assert event["resources"] == [schedule.rule_arn]
        assert event["region"] == REGION
    assert len({event["id"] for event in events}) == len(events)


@pytest.mark.slow
def test_the_report_schedule_runs_once_a_scaled_day_for_the_day_so_far(
    start_runtime: Callable[..., LambdaRuntime], tmp_path: Path
) -> None:
    # GIVEN the report function scheduled at a time scale where a day lasts one second
    path = tmp_path / "events"
    runtime = start_runtime(
        function("report", "records", env={"RECORD_PATH": str(path)}), time_scale=86_400
    )
    schedule = Schedule.for_report(runtime).start()
    assert (schedule.every_seconds, schedule.period_seconds) == (86_400, 1)
    # WHEN two (scaled) days have passed
    wait_until(lambda: len(_log.read(path)) >= 2, what="2 events")
    # THEN each event is the Scheduler's input: its time, and the day so far (days_back 0)
    for event in _log.read(path):
        assert set(event) == {"scheduled_time", "days_back"}
        assert event["days_back"] == 0
        assert datetime.fromisoformat(event["scheduled_time"].replace("Z", "+00:00"))


@pytest.mark.slow
def test_stop_leaves_no_process_and_no_thread(
    moto_server: str, sqs: Any, start_runtime: Callable[..., LambdaRuntime]
) -> None:
    # GIVEN a runtime with two workers idle, an invocation in flight, a retry queue, an event
    # source mapping and a schedule
    url, _ = create_queue(sqs, "ingest")
    runtime = start_runtime(
        function("echo", "echo"),
        function("slow", "slow", timeout=120),
        endpoint_url=moto_server,
    )
    warm(runtime, "echo", 2)
    outcome: list[BaseException] = []

    def in_flight() -> None:
        try:
            runtime.invoke("slow", {"seconds": 100})
        except BaseException as err:  # noqa: BLE001  # recorded for the assertion below
            outcome.append(err)

    invoker = threading.Thread(target=in_flight)
    invoker.start()
    runtime.invoke_async("echo", {})
    source = SqsEventSource(runtime, "echo", url, ingest()).start()
    schedule = Schedule(runtime, "echo", every_seconds=3600).start()
    wait_until(lambda: len(runtime.worker_pids()) == 3, what="3 workers", timeout=30)
    pids = runtime.worker_pids()
    assert sorted(pids) == sorted(spawned_children())

    # WHEN the runtime is stopped
    runtime.stop()

    # THEN every worker is gone, the invocation in flight ended, and no thread is left
    invoker.join(10)
    assert not invoker.is_alive()
    assert [type(err) for err in outcome] == [RuntimeStoppedError]
    assert spawned_children() == []
    assert not any(alive(pid) for pid in pids)
    assert not source.running
    leftover = [
        thread.name
        for thread in threading.enumerate()
        if thread.name.startswith(("lambda-", "esm-", "schedule-"))
    ]
    assert leftover == []
    assert schedule.fired == 0
    with pytest.raises(RuntimeStoppedError):
        runtime.invoke_async("echo", {})
