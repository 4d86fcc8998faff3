"""The functions' own costs: processor throughput, forwarder CPU, SDK calls and latency, cold start.

Handlers are called through their Lambda entry points (`lambda_handler`, Powertools decorators
and all) in this process, with the function's environment as Terraform sets it, tracing off (no
X-Ray daemon here) and logs at WARNING (so the bench's output stays readable; INFO costs one
line per batch). AWS is either moto in process (to count SDK calls) or in-process fakes that
answer at no cost (to time Sluice's own work); each figure says which. The cold start is the
exception: each handler is imported from its packaged zip by the Lambda runtime's Python, in a
process of its own (`make package`'s build, needing that interpreter; see `measure_cold_start`).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from unittest import mock

from infrastructure.bench.results import Figure, progress

REGION: Final = "eu-west-2"
LANDING: Final = "sluice-landing-bench"
STAGING: Final = "sluice-staging-bench"
IDEMPOTENCY_TABLE: Final = "sluice-idempotency-bench"
STREAMS: Final = ("sluice-bench-0", "sluice-bench-1")
READ_DELAY_SECONDS: Final = 0.030
BATCH: Final = 10
"""The ingest event source mapping's batch size (tunables.json `ingest.batch_size`)."""


@dataclass(frozen=True)
class Sizes:
    processor_bytes: int
    processor_repeats: int
    forwarder_batches: int
    batch10_repeats: int
    import_repeats: int


FULL: Final = Sizes(3_000_000, 5, 200, 10, 7)
QUICK: Final = Sizes(1_000_000, 3, 50, 5, 3)
TINY: Final = Sizes(20_000, 1, 2, 1, 1)
"""For tests: the figure names, not the numbers."""


# --- environment --------------------------------------------------------------------------------


def function_variables(role: str) -> dict[str, str]:
    """The function's configured variables (tunables.json) with bench resource names, fake
    credentials and the region."""
    from infrastructure import environment  # noqa: PLC0415  # sections import lazily
    from infrastructure.tunables import load_tunables  # noqa: PLC0415

    bindings = {
        environment.LANDING_BUCKET: LANDING,
        environment.STAGING_BUCKET: STAGING,
        environment.IDEMPOTENCY_TABLE: IDEMPOTENCY_TABLE,
        environment.FIREHOSE_STREAMS: ",".join(STREAMS),
    }
    spec = load_tunables().functions[role]
    return {
        **spec.environment,
        **{name: bindings.get(name, f"bench-{name.lower()}") for name in spec.resource_environment},
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",  # a made-up credential for fakes and moto
        "AWS_DEFAULT_REGION": REGION,
    }


@contextlib.contextmanager
def function_env(role: str) -> Iterator[None]:
    """The function's environment (`function_variables`), tracing off and logs at WARNING; no
    AWS endpoint, so nothing can reach a real account or a local server."""
    from infrastructure.tunables import load_tunables  # noqa: PLC0415

    values = {
        **function_variables(role),
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    with mock.patch.dict(os.environ, values):
        for name in [name for name in os.environ if name.startswith("AWS_ENDPOINT_URL")]:
            del os.environ[name]
        load_tunables.cache_clear()
        yield
    load_tunables.cache_clear()


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Powertools prints each invocation's metrics (EMF) to stdout: not the bench's output."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _context(name: str, timeout: float = 60) -> Any:
    from infrastructure.local.lambdas.context import LocalLambdaContext  # noqa: PLC0415

    return LocalLambdaContext(name, timeout)


def _best(repeats: int, run: Callable[[], object]) -> tuple[float, float]:
    """(wall, CPU) seconds of the fastest of `repeats` runs, after a warm-up."""
    run()
    best = (float("inf"), float("inf"))
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        taken = (time.perf_counter() - wall, time.process_time() - cpu)
        best = min(best, taken)
    return best


# --- processor ----------------------------------------------------------------------------------


def processor_event(total_bytes: int, record_bytes: int = 1024) -> dict[str, Any]:
    """A Firehose transformation event of ~`total_bytes` of forwarder envelopes, each
    ~`record_bytes` on the wire (inline text bodies, as most small files travel)."""
    from transform.envelope import Envelope, file_id  # noqa: PLC0415

    records = []
    for n in range(max(1, total_bytes // record_bytes)):
        key = f"acme/2025/11/24/events-{n:06d}.log"
        fields = {
            "file_id": file_id(LANDING, key, f"v{n}"),
            "bucket": LANDING,
            "key": key,
            "version_id": f"v{n}",
            "event_time_ms": 1_764_000_000_000 + n,
            "forwarded_at_ms": 1_764_000_000_500 + n,
        }
        probe = Envelope.inline(b"", size=0, **fields).encode()
        body = (f"{n:08d} GET /api/orders?page={n % 97} 200 " * 40).encode()
        body = body[: max(0, record_bytes - len(probe))]
        data = Envelope.inline(body, size=len(body), **fields).encode()
        records.append(
            {
                "recordId": f"{n:056d}",
                "approximateArrivalTimestamp": 1_764_000_001_000 + n,
                "data": base64.b64encode(data).decode("ascii"),
            }
        )
    return {
        "invocationId": "bench",
        "deliveryStreamArn": f"arn:aws:firehose:{REGION}:123456789012:deliverystream/{STREAMS[0]}",
        "region": REGION,
        "records": records,
    }


def measure_processor(sizes: Sizes, reduced: str) -> Figure:
    with function_env("processor"):
        from transform import processor  # noqa: PLC0415  # after the environment is set

        processor.dependencies.cache_clear()
        event = processor_event(sizes.processor_bytes)
        count = len(event["records"])

        def invoke() -> None:
            with quiet_stdout():
                response = processor.lambda_handler(event, _context("processor"))
            if sum(r["result"] == "Ok" for r in response["records"]) != count:
                raise AssertionError("a bench record failed in the processor")

        wall, cpu = _best(sizes.processor_repeats, invoke)
        processor.dependencies.cache_clear()
    per_core = count / cpu
    return Figure(
        name="processor_records_per_s",
        value=round(per_core),
        unit="records/s/core",
        what=f"{count:,} records of 1 KiB (a {sizes.processor_bytes / 1e6:g} MB transformation "
        f"event) through transform.processor.lambda_handler: decode, validate, enrich{reduced}",
        goal=">= 20,000 per core",
        met=per_core >= 20_000,
        note=f"per CPU second; wall {count / wall:,.0f} records/s (best of "
        f"{sizes.processor_repeats})",
    )


# --- forwarder ----------------------------------------------------------------------------------


class FakeS3:
    """The landing bucket's reads, from memory; each read optionally sleeps (S3's latency)."""

    def __init__(self, bodies: dict[tuple[str, str], bytes], delay: float = 0.0) -> None:
        self._bodies = bodies
        self._delay = delay
        self.calls = 0

    def get_object(  # boto3's parameter names
        self, *, Bucket: str, Key: str, VersionId: str
    ) -> dict[str, Any]:
        self.calls += 1
        if self._delay:
            time.sleep(self._delay)
        return {"Body": io.BytesIO(self._bodies[(Key, VersionId)])}


class FakeDynamoDB:
    """Every idempotency write succeeds at once."""

    def put_item(self, **_: Any) -> dict[str, Any]:
        return {}

    def batch_write_item(self, **_: Any) -> dict[str, Any]:
        return {"UnprocessedItems": {}}


class FakeFirehose:
    """Every record accepted at once."""

    def put_record_batch(  # boto3's parameter names
        self, *, DeliveryStreamName: str, Records: list[Any]
    ) -> dict[str, Any]:
        return {
            "FailedPutCount": 0,
            "RequestResponses": [{"RecordId": f"r{n}"} for n in range(len(Records))],
        }


def sqs_batch(records: list[dict[str, Any]]) -> dict[str, Any]:
    """An SQS event source mapping batch: one S3 notification (one record) per message."""
    return {
        "Records": [
            {
                "messageId": f"m-{n}",
                "receiptHandle": f"h-{n}",
                "body": json.dumps({"Records": [record]}),
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:sluice-ingest",
                "awsRegion": REGION,
            }
            for n, record in enumerate(records)
        ]
    }


def s3_record(key: str, size: int, etag: str, version_id: str) -> dict[str, Any]:
    """An ObjectCreated record as S3 sends it for a versioned bucket (versionId included)."""
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": REGION,
        "eventTime": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "eventName": "ObjectCreated:Put",
        "s3": {
            "bucket": {"name": LANDING, "arn": f"arn:aws:s3:::{LANDING}"},
            "object": {
                "key": key,
                "size": size,
                "eTag": etag,
                "versionId": version_id,
                "sequencer": "0066A1B2C3D4E5F601",
            },
        },
    }


def _fake_batches(count: int, size: int = 1024) -> tuple[dict[tuple[str, str], bytes], list[Any]]:
    bodies: dict[tuple[str, str], bytes] = {}
    batches = []
    for b in range(count):
        records = []
        for n in range(BATCH):
            key, version = f"acme/2025/11/24/b{b:05d}-{n}.json", f"v{b}-{n}"
            bodies[(key, version)] = (b'{"n":%d,"pad":"' % n).ljust(size - 2, b"x") + b'"}'
            records.append(s3_record(key, size, f"{b:016x}{n:016x}", version))
        batches.append(sqs_batch(records))
    return bodies, batches


@contextlib.contextmanager
def _fake_clients(s3: Any) -> Iterator[Any]:
    """transform.clients answering with the fakes; the forwarder built afresh (a cold start)."""
    from transform import clients, forwarder  # noqa: PLC0415  # after the environment is set

    with (
        mock.patch.object(clients, "s3", return_value=s3),
        mock.patch.object(clients, "dynamodb", FakeDynamoDB),
        mock.patch.object(clients, "firehose", FakeFirehose),
    ):
        forwarder.dependencies.cache_clear()
        try:
            yield forwarder
        finally:
            forwarder.dependencies.cache_clear()


def _check(response: dict[str, Any]) -> None:
    if response["batchItemFailures"]:
        raise AssertionError(f"bench batch failed: {response}")


def measure_forwarder_cpu(sizes: Sizes, reduced: str) -> Figure:
    bodies, batches = _fake_batches(sizes.forwarder_batches)
    with function_env("forwarder"), _fake_clients(FakeS3(bodies)) as forwarder, quiet_stdout():
        _check(forwarder.lambda_handler(batches[0], _context("forwarder")))  # warm-up
        cpu = time.process_time()
        for batch in batches:
            _check(forwarder.lambda_handler(batch, _context("forwarder")))
        cpu = time.process_time() - cpu
    files = len(batches) * BATCH
    per_file = cpu / files * 1000
    return Figure(
        name="forwarder_envelope_cpu_ms_per_file",
        value=round(per_file, 3),
        unit="ms CPU/file",
        what=f"{files:,} files of 1 KiB in batches of {BATCH} through "
        f"transform.forwarder.lambda_handler: parse, resolve, claim, read, envelope, send, "
        f"complete{reduced}",
        goal="<= 0.5 ms",
        met=per_file <= 0.5,
        note="SDK calls excluded: S3, DynamoDB and Firehose are in-process fakes that answer at "
        "no cost (boto3 adds ~1.5-2 ms CPU per call, DESIGN §6); thread pool included",
    )


def batch10_ms(repeats: int, tunables: Path | None = None) -> float:
    """Best wall time of one batch of 10 with 30 ms reads (the fake DynamoDB keeps no
    records, so every invocation claims and reads afresh)."""
    from infrastructure import environment  # noqa: PLC0415

    bodies, batches = _fake_batches(1)
    override = {environment.TUNABLES_PATH: str(tunables)} if tunables else {}
    with (
        function_env("forwarder"),
        mock.patch.dict(os.environ, override),
        _fake_clients(FakeS3(bodies, READ_DELAY_SECONDS)) as fwd,
    ):

        def invoke() -> None:
            with quiet_stdout():
                _check(fwd.lambda_handler(batches[0], _context("forwarder")))

        wall, _ = _best(repeats, invoke)
    return wall * 1000


def measure_batch10(sizes: Sizes, workdir: Path, reduced: str) -> Figure:
    from infrastructure.tunables import TUNABLES_FILE, load_tunables  # noqa: PLC0415

    ms = batch10_ms(sizes.batch10_repeats)
    concurrency = load_tunables().forwarder.read_concurrency
    limit = ""
    if ms > 60 and concurrency < BATCH:
        # What the same code does once the tunable covers a whole batch, measured now.
        document = json.loads(TUNABLES_FILE.read_text())
        document["forwarder"]["read_concurrency"] = BATCH
        document.pop("$schema", None)
        changed = workdir / "tunables-read-concurrency-10.json"
        changed.write_text(json.dumps(document))
        limit = (
            f"; read_concurrency {concurrency} < the batch of {BATCH}: two waves of reads, "
            f"so at least {2 * READ_DELAY_SECONDS * 1000:.0f} ms. With read_concurrency "
            f"{BATCH} (tunables.json) the same run measures "
            f"{batch10_ms(sizes.batch10_repeats, changed):.1f} ms"
        )
    return Figure(
        name="forwarder_batch10_ms",
        value=round(ms, 1),
        unit="ms",
        what=f"wall time of a batch of {BATCH} files through the forwarder when every object "
        f"read takes {READ_DELAY_SECONDS * 1000:.0f} ms (fake S3 that sleeps; DynamoDB and "
        f"Firehose fakes answer at once){reduced}",
        goal="<= 60 ms",
        met=ms <= 60,
        reference=f"{READ_DELAY_SECONDS * 1000:.0f} ms: one read; read_concurrency {concurrency}",
        note=f"best of {sizes.batch10_repeats}{limit}",
    )


def measure_sdk_calls(reduced: str) -> Figure:
    """SDK calls per file for one realistic batch on moto in process (S3, DynamoDB, Firehose)."""
    import boto3  # noqa: PLC0415
    from moto import mock_aws  # noqa: PLC0415

    from infrastructure.local.provision import resources  # noqa: PLC0415
    from transform import clients, forwarder  # noqa: PLC0415

    calls: list[str] = []

    def count(event_name: str, **_: Any) -> None:
        calls.append(event_name.removeprefix("before-call."))

    with function_env("forwarder"), mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        resources.create_bucket(s3, LANDING, REGION, versioned=True)
        resources.create_bucket(s3, STAGING, REGION, versioned=True)
        resources.create_idempotency_table(
            boto3.client("dynamodb", region_name=REGION), IDEMPOTENCY_TABLE
        )
        firehose = boto3.client("firehose", region_name=REGION)
        for stream in STREAMS:
            firehose.create_delivery_stream(
                DeliveryStreamName=stream,
                ExtendedS3DestinationConfiguration={
                    "RoleARN": "arn:aws:iam::123456789012:role/firehose",
                    "BucketARN": f"arn:aws:s3:::{STAGING}",
                },
            )
        records = []
        for n in range(BATCH):
            key = f"acme/2025/11/24/f{n}.json"
            put = s3.put_object(Bucket=LANDING, Key=key, Body=b'{"n":%d}' % n)
            records.append(
                s3_record(key, len(f'{{"n":{n}}}'), put["ETag"].strip('"'), put["VersionId"])
            )
        clients.reset()
        forwarder.dependencies.cache_clear()
        for client in (clients.s3(), clients.dynamodb(), clients.firehose()):
            client.meta.events.register("before-call", count)
        with quiet_stdout():
            _check(forwarder.lambda_handler(sqs_batch(records), _context("forwarder")))
        clients.reset()
        forwarder.dependencies.cache_clear()
    per_file = len(calls) / BATCH
    tally = ", ".join(f"{calls.count(c)} {c}" for c in sorted(set(calls)))
    return Figure(
        name="forwarder_sdk_calls_per_file",
        value=round(per_file, 2),
        unit="calls/file",
        what=f"SDK calls for a batch of {BATCH} small files (events with versionId, as S3 sends "
        f"for a versioned bucket) on moto in process{reduced}",
        goal="<= 3",
        met=per_file <= 3,
        reference=tally,
    )


# --- cold start ---------------------------------------------------------------------------------


_IMPORT_LINE: Final = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)$")
SLUICE_PACKAGES: Final = frozenset({"transform", "delivery", "infrastructure"})


@dataclass(frozen=True)
class ImportTime:
    """One `python -X importtime` run of a module: its cumulative time, and the self time of
    every module it pulled in summed by top-level package (where the time really goes)."""

    total_ms: float
    by_package_ms: dict[str, float]


def parse_importtime(stderr: str, module: str) -> ImportTime:
    """`-X importtime`'s lines (`self | cumulative | <indent>name`, microseconds) to an
    ImportTime for `module`; raises when `module` is not among them."""
    by_package: dict[str, float] = {}
    for line in stderr.splitlines():
        match = _IMPORT_LINE.match(line)
        if not match:
            continue
        self_us, cumulative_us, indent, name = match.groups()
        package = name.split(".", 1)[0]
        by_package[package] = by_package.get(package, 0.0) + int(self_us) / 1000
        if name == module and not indent:
            return ImportTime(int(cumulative_us) / 1000, by_package)
    raise ValueError(f"no import time for {module} in: {stderr[-500:]}")


def import_ms(python: str, module: str, task: Path, env: dict[str, str]) -> ImportTime:
    """`module` imported from the unpacked package `task` in a fresh `python -X importtime`.

    As Lambda runs it: `task` is the working directory and the only code on sys.path (-S: no
    site-packages, and `env` is all the environment there is). No bytecode is written
    (PYTHONDONTWRITEBYTECODE, in `cold_start_env`): Lambda's /var/task is read-only, so every
    run, like every cold start, reuses only the bytecode the zip carries.
    """
    done = subprocess.run(  # noqa: S603  # the runtime's interpreter, a fixed module name
        [python, "-S", "-s", "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=task,
    )
    return parse_importtime(done.stderr, module)


def where_import_time_goes(run: ImportTime) -> str:
    """The packages that cost most, Sluice's own modules summed as one."""
    own = sum(ms for package, ms in run.by_package_ms.items() if package in SLUICE_PACKAGES)
    others = {k: v for k, v in run.by_package_ms.items() if k not in SLUICE_PACKAGES}
    top = sorted(others.items(), key=lambda item: -item[1])[:4]
    parts = [f"{name} {ms:,.0f} ms" for name, ms in top]
    return ", ".join(parts) + f"; Sluice's own modules {own:,.0f} ms"


COLD_START_GOAL_MS: Final = 250


def measure_cold_start(
    sizes: Sizes, reduced: str, workdir: Path, packages: Path | None = None
) -> Figure:
    """Each function's handler imported from its zip: `packages` (a `make package` output
    folder for this machine), or zips built here into `workdir`."""
    from infrastructure import packaging  # noqa: PLC0415

    python = packaging.runtime_python()
    if packages is None:
        packages = workdir / "lambda"
        with quiet_stdout():  # packaging reports each step; the bench's output is its figures
            packaging.build_packages(
                host_architecture(), packages, packaging.ROOT / "build" / "package-cache"
            )
    times = cold_start_times(python, packages, workdir, sizes.import_repeats)
    slowest = max(times, key=lambda module: times[module].total_ms)
    worst = times[slowest].total_ms
    each = ", ".join(f"{m} {t.total_ms:,.0f}" for m, t in times.items())
    limit = (
        f"; {slowest}'s import by package (self time): {where_import_time_goes(times[slowest])}"
        if worst >= COLD_START_GOAL_MS
        else ""
    )
    return Figure(
        name="cold_start_ms_max",
        value=round(worst),
        unit="ms",
        what=f"import time of each function's handler module from its packaged zip (`make "
        f"package` for this machine, unpacked), in a fresh `python{packaging.PYTHON_VERSION} -X "
        f"importtime` (the Lambda runtime's version; best of {sizes.import_repeats}), the "
        f"slowest reported{reduced}",
        goal=f"< {COLD_START_GOAL_MS} ms",
        met=worst < COLD_START_GOAL_MS,
        reference=f"each (ms): {each}; interpreter: {interpreter_build(python)}",
        note="the unpacked zip is the only code on sys.path (no site-packages) and reuses only "
        "the bytecode the zip carries (no bytecode written: /var/task is read-only); the "
        "environment is only what Lambda gives the function: its configured variables and the "
        "runtime's own (LAMBDA_TASK_ROOT, AWS_LAMBDA_FUNCTION_NAME, …, as the local runtime "
        "sets them), tracing on as Terraform deploys it (Powertools' Tracer patches boto3 at "
        "import); import only: what a handler defers to its first invocation is not counted, "
        "and the standard library modules Lambda's own bootstrap imports first are" + limit,
    )


def interpreter_build(python: str) -> str:
    """`python`'s version and the build options that change its speed (PGO, LTO, a shared
    libpython), so a figure says what it was measured with."""
    script = (
        "import platform, sysconfig; args = sysconfig.get_config_var('CONFIG_ARGS') or ''; "
        "print(platform.python_version(), '--enable-optimizations' in args, "
        "'--with-lto' in args, '--enable-shared' in args)"
    )
    done = subprocess.run(  # noqa: S603  # the runtime's interpreter, a fixed script
        [python, "-S", "-c", script], capture_output=True, text=True, check=True
    )
    version, pgo, lto, shared = done.stdout.split()
    built = [
        "PGO" if pgo == "True" else "no PGO",
        "LTO" if lto == "True" else "no LTO",
        "shared libpython" if shared == "True" else "static libpython",
    ]
    return f"{version} ({', '.join(built)})"


def host_architecture() -> str:
    """This machine's architecture as Lambda names it: the package whose binaries run here."""
    machine = platform.machine().lower()
    return "arm64" if machine in {"aarch64", "arm64"} else "x86_64"


def cold_start_times(
    python: str, packages: Path, workdir: Path, repeats: int
) -> dict[str, ImportTime]:
    """Handler module → its fastest import of `repeats`, each function's zip unpacked afresh.
    The runs go round the functions in turn, so a slow spell of the machine falls on all of
    them rather than on all the runs of one."""
    from infrastructure.packaging import functions  # noqa: PLC0415

    tasks: dict[str, tuple[Path, dict[str, str]]] = {}
    for role, handler in functions().items():
        task = workdir / f"task-{role}"
        with zipfile.ZipFile(packages / f"{role}.zip") as archive:
            archive.extractall(task)
        tasks[handler.rpartition(".")[0]] = (task, cold_start_env(role, task))
    runs: dict[str, list[ImportTime]] = {module: [] for module in tasks}
    try:
        for _ in range(repeats):
            for module, (task, env) in tasks.items():
                runs[module].append(import_ms(python, module, task, env))
    finally:
        for task, _env in tasks.values():
            shutil.rmtree(task)
    return {module: min(done, key=lambda run: run.total_ms) for module, done in runs.items()}


def cold_start_env(role: str, task: Path) -> dict[str, str]:
    """All the environment a cold start of `role` sees in Lambda, its code unpacked in `task`:
    the function's variables (`function_variables`), Lambda's runtime variables, tracing on
    (Terraform: `tracing_config { mode = "Active" }`), and nothing else of this process's but
    PATH: no virtualenv, no PYTHON* variable, no AWS endpoint.

    Lambda's variables matter: with LAMBDA_TASK_ROOT set the X-Ray SDK samples locally instead
    of building botocore clients for centralized sampling at import (~150 ms here), and with
    AWS_LAMBDA_FUNCTION_NAME set Powertools' Tracer is enabled and patches boto3.
    """
    from infrastructure.local.lambdas.workers import FunctionConfig, runtime_variables  # noqa: PLC0415
    from infrastructure.packaging import PYTHON_VERSION  # noqa: PLC0415
    from infrastructure.tunables import load_tunables  # noqa: PLC0415

    spec = load_tunables().functions[role]
    config = FunctionConfig(
        name=f"sluice-bench-{role}",
        handler=spec.handler,
        timeout_seconds=spec.timeout_seconds,
        memory_mb=spec.memory_mb,
    )
    return {
        **function_variables(role),
        **runtime_variables(config, REGION),
        # the runtime's version, not this process's (the local runtime runs the venv's)
        "AWS_EXECUTION_ENV": f"AWS_Lambda_python{PYTHON_VERSION}",
        "LAMBDA_TASK_ROOT": str(task),
        "PYTHONPATH": str(task),  # Lambda puts /var/task on sys.path
        "PYTHONDONTWRITEBYTECODE": "1",  # /var/task is read-only in Lambda
    }


# --- the section --------------------------------------------------------------------------------


def run(quick: bool, workdir: Path) -> list[Figure]:
    return measure(QUICK if quick else FULL, workdir, reduced=quick)


def measure(sizes: Sizes, workdir: Path, *, reduced: bool = True) -> list[Figure]:
    less = " (quick run: smaller input)" if reduced else ""
    progress("functions: processor")
    figures = [measure_processor(sizes, less)]
    progress("functions: forwarder CPU per file")
    figures.append(measure_forwarder_cpu(sizes, less))
    progress("functions: forwarder SDK calls (moto)")
    figures.append(measure_sdk_calls(""))
    progress("functions: forwarder batch of 10 with 30 ms reads")
    figures.append(measure_batch10(sizes, workdir, less))
    progress("functions: cold start of each handler module, from its packaged zip")
    figures.append(measure_cold_start(sizes, "", workdir))
    return figures
