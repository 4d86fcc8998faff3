"""Chaos state, its control API and `sluice chaos` (infrastructure.local.stack.chaos,
infrastructure.cli.chaos), and the upload-corruption hook of the sandbox
(infrastructure.local.lambdas.sandbox), on real objects with nothing running in them: a runtime
whose functions are never invoked, a Firehose with no stream, a proxy nobody connects through.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import types
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from infrastructure.cli import main
from infrastructure.local.firehose.server import FirehoseServer
from infrastructure.local.lambdas.runtime import LambdaRuntime
from infrastructure.local.lambdas.sandbox import SharedCounter, install_upload_corruption
from infrastructure.local.provision.tcp_proxy import TcpProxy
from infrastructure.local.stack.chaos import ChaosState, ControlServer, SecretSwap
from infrastructure.local.stack.stack_file import MinioEndpoint, StackFile, stack_path
from tests.conftest import REGION
from tests.integration.runtime_support import function, wait_until


@dataclass
class Stand:
    chaos: ChaosState
    control: ControlServer
    runtime: LambdaRuntime
    firehose: FirehoseServer
    proxy: TcpProxy
    root: Path


@pytest.fixture
def stand(
    start_runtime: Callable[..., LambdaRuntime], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stand]:
    runtime = start_runtime(function("forwarder", "echo"), function("delivery", "echo"))
    firehose = FirehoseServer({})
    proxy = TcpProxy("127.0.0.1:9").start()
    chaos = ChaosState(
        runtime=runtime, firehose=firehose, minio_proxy=proxy, counter_path=tmp_path / "corrupt"
    )
    control = ControlServer(chaos).start()
    write_stack_file(tmp_path, control.endpoint)
    monkeypatch.setenv("SLUICE_ROOT", str(tmp_path))
    try:
        yield Stand(chaos, control, runtime, firehose, proxy, tmp_path)
    finally:
        control.stop()
        proxy.stop()


def write_stack_file(root: Path, control_endpoint: str | None) -> None:
    StackFile(
        aws_endpoint="http://127.0.0.1:9",
        region=REGION,
        landing_bucket="landing",
        staging_bucket="staging",
        ingest_queue_url="http://127.0.0.1:9/123456789012/ingest",
        ingest_dlq_url="http://127.0.0.1:9/123456789012/ingest-dlq",
        delivery_dlq_url="http://127.0.0.1:9/123456789012/delivery-dlq",
        requeue_dlq_url="http://127.0.0.1:9/123456789012/requeue-dlq",
        idempotency_table="idempotency",
        ledger_table="ledger",
        minio_secret="minio",
        streams=[],
        firehose_endpoint="http://127.0.0.1:9",
        lambda_endpoint="http://127.0.0.1:9",
        minio=MinioEndpoint("127.0.0.1:9", "access", "secret", "archive", False),
        pids={"sluice": 1},
        time_scale=1.0,
        buffer_seconds=60,
        processor_buffer_seconds=10,
        started_at="2026-11-25T12:00:00Z",
        logs=str(root),
        control_endpoint=control_endpoint,
    ).write(stack_path(root))


def sluice(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main.main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# ---------------------------------------------------------------------- the command


def test_each_chaos_armed_through_the_command_is_armed_on_the_stack(
    stand: Stand, capsys: pytest.CaptureFixture[str]
) -> None:
    # WHEN every chaos is armed with `sluice chaos`
    for argv in (
        ["minio-down", "--seconds", "600"],
        ["throttle", "--percent", "40", "--seconds", "600"],
        ["duplicate-events", "--seconds", "600"],
        ["crash", "forwarder", "--after-calls", "3", "--phase", "before"],
        ["corrupt-upload", "--count", "2"],
    ):
        status, _, err = sluice(capsys, "chaos", *argv)
        assert status == 0, err
    # THEN each is armed where it acts
    assert stand.proxy.cut
    assert stand.firehose.throttle_state()[0] == 40.0
    assert stand.chaos.duplicating()
    assert stand.runtime.armed_crash("forwarder") == (3, "before", 1)
    assert stand.chaos.corruptions.value() == 2
    # ... and `status` reports all of it
    status, out, _ = sluice(capsys, "chaos", "status", "--json")
    report = json.loads(out)
    assert report["minio_down"]["armed"]
    assert report["throttle"]["percent"] == 40.0
    assert report["duplicate_events"]["armed"]
    assert report["crash"] == {"forwarder": {"after_calls": 3, "phase": "before", "times": 1}}
    assert report["corrupt_upload"] == {"count_left": 2}
    _, text, _ = sluice(capsys, "chaos", "status")
    assert "40 % of records" in text
    assert "2 uploads to corrupt" in text
    # WHEN cleared THEN nothing is armed any more
    status, out, _ = sluice(capsys, "chaos", "clear", "--json")
    assert status == 0
    assert not stand.proxy.cut
    assert stand.firehose.throttle_state()[1] == 0
    assert not stand.chaos.duplicating()
    assert stand.runtime.armed_crash("forwarder") is None
    assert json.loads(out)["corrupt_upload"] == {"count_left": 0}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["throttle", "--percent", "0", "--seconds", "5"], "percent must be within"),
        (["minio-down", "--seconds", "-1"], "seconds must be within"),
        (["corrupt-upload", "--count", "0"], "count must be an integer of at least 1"),
        (
            ["crash", "delivery", "--after-calls", "-1"],
            "after_calls must be an integer of at least 0",
        ),
        (["crash", "delivery", "--times", "0"], "times must be an integer of at least 1"),
    ],
)
def test_values_out_of_range_are_refused_with_the_reason(
    stand: Stand, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    status, _, err = sluice(capsys, "chaos", *argv)
    assert status == 1
    assert message in err
    assert stand.chaos.status()["corrupt_upload"]["count_left"] == 0


def test_chaos_against_a_deployment_is_refused(
    stand: Stand, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = sluice(capsys, "chaos", "minio-down", "--seconds", "5", "--env", "prod")
    assert status == 2
    assert "local stack only" in err
    assert not stand.proxy.cut


def test_a_stack_without_a_control_api_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_stack_file(tmp_path, None)
    monkeypatch.setenv("SLUICE_ROOT", str(tmp_path))
    status, _, err = sluice(capsys, "chaos", "status")
    assert status == 1
    assert "no chaos control API" in err


def test_no_running_stack_says_how_to_start_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLUICE_ROOT", str(tmp_path))
    status, _, err = sluice(capsys, "chaos", "status")
    assert status == 1
    assert "make run" in err


# ---------------------------------------------------------------------- the control API


def request(endpoint: str, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
    call = urllib.request.Request(endpoint + path, data=body, method=method)  # noqa: S310  # loopback
    try:
        with urllib.request.urlopen(call, timeout=10) as answer:  # noqa: S310  # loopback
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_the_control_api_answers_json_errors(stand: Stand) -> None:
    endpoint = stand.control.endpoint
    status, answer = request(endpoint, "POST", "/chaos/earthquake", b"{}")
    assert status == 404
    assert "minio-down" in answer["error"]  # the known ones are listed
    status, answer = request(endpoint, "POST", "/chaos/throttle", b"not json")
    assert (status, "not JSON" in answer["error"]) == (400, True)
    status, answer = request(endpoint, "POST", "/chaos/throttle", b'{"percent": 50}')
    assert (status, "seconds" in answer["error"]) == (400, True)
    status, answer = request(endpoint, "GET", "/elsewhere")
    assert status == 404


def test_minio_down_is_refused_without_a_proxy(
    start_runtime: Callable[..., LambdaRuntime], tmp_path: Path
) -> None:
    """A real MinIO over TLS is reached directly: there is nothing to cut."""
    chaos = ChaosState(
        runtime=start_runtime(function("delivery", "echo")),
        firehose=FirehoseServer({}),
        minio_proxy=None,
        counter_path=tmp_path / "corrupt",
    )
    with pytest.raises(ValueError, match="TLS"):
        chaos.minio_down(10)
    assert chaos.status()["minio_down"]["armed"] is False


# ---------------------------------------------------------------------- corrupted uploads


def _take_many(path: str, times: int) -> int:
    counter = SharedCounter(path)
    return sum(counter.take() for _ in range(times))


def test_the_shared_counter_is_spent_exactly_once_across_processes(tmp_path: Path) -> None:
    # GIVEN 25 corruptions armed
    counter = SharedCounter(tmp_path / "corrupt")
    counter.set(25)
    # WHEN 4 processes try to take 10 each at once
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        taken = pool.starmap(_take_many, [(str(counter.path), 10)] * 4)
    # THEN exactly 25 were taken, and none is left
    assert sum(taken) == 25
    assert counter.value() == 0


@dataclass(frozen=True)
class Deps:
    name: str
    corrupt: Callable[[Any], Any] | None = None


@dataclass(frozen=True)
class OtherDeps:
    name: str


def test_the_hook_corrupts_as_many_uploads_as_armed(tmp_path: Path) -> None:
    # GIVEN a handler module whose dependencies have a `corrupt` hook, and 1 corruption armed
    module = types.SimpleNamespace(dependencies=lambda: Deps("delivery"))
    counter = SharedCounter(tmp_path / "corrupt")
    counter.set(1)
    assert install_upload_corruption(module, counter)
    deps = module.dependencies()
    assert deps.name == "delivery"
    assert deps.corrupt is not None
    # WHEN two uploads read their spool through the hook
    first = deps.corrupt(io.BytesIO(b"abc")).read()
    second = deps.corrupt(io.BytesIO(b"abc")).read()
    # THEN the first had its first byte flipped, the second is untouched, and none is left
    assert first == bytes([ord("a") ^ 0xFF]) + b"bc"
    assert second == b"abc"
    assert counter.value() == 0


def test_dependencies_without_a_hook_are_left_as_they_are(tmp_path: Path) -> None:
    other = OtherDeps("redrive")
    module = types.SimpleNamespace(dependencies=lambda: other)
    assert install_upload_corruption(module, SharedCounter(tmp_path / "corrupt"))
    assert module.dependencies() is other
    assert not install_upload_corruption(types.SimpleNamespace(), SharedCounter(tmp_path / "c"))


def test_a_secret_swap_holds_until_cleared_or_its_time_is_up(aws: None) -> None:
    # GIVEN the MinIO secret, and a swap to read-only keys
    secrets = boto3.client("secretsmanager", region_name=REGION)
    secrets.create_secret(Name="minio", SecretString=json.dumps({"access_key": "writer"}))
    swap = SecretSwap(secrets, "minio", {"access_key": "writer-reader"})

    def value() -> str:
        return str(
            json.loads(secrets.get_secret_value(SecretId="minio")["SecretString"])["access_key"]
        )

    # WHEN it is armed for an hour, armed again, then cleared
    swap.on_for(3600)
    swap.on_for(3600)
    during, left = value(), swap.seconds_left()
    swap.restore()
    # THEN the secret names the reader meanwhile, and the writer again after (not the reader:
    # arming twice kept the first original)
    assert (during, value()) == ("writer-reader", "writer")
    assert 3500 < left <= 3600
    assert swap.seconds_left() == 0
    # WHEN armed for a moment THEN it puts the writer back by itself
    swap.on_for(0.2)
    wait_until(lambda: value() == "writer", what="the secret restored by its timer")
