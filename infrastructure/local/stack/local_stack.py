"""The local stack: Sluice whole on one machine, on the real protocols (`sluice up`).

Starts moto, the local Firehose, the Lambda runtime and its triggers, SeaweedFS behind a proxy and
the chaos API; provisions, wires and stops them in order. Spec: docs/local-stack.md,
`stack/local_stack.py`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import boto3

from infrastructure import environment
from infrastructure.local.apigateway.server import IntakeApiServer
from infrastructure.local.firehose.server import FirehoseServer
from infrastructure.local.firehose.window_assembly import WindowAssembler
from infrastructure.local.lambdas.api import LambdaApiServer
from infrastructure.local.lambdas.event_sources import Schedule, SqsEventSource
from infrastructure.local.lambdas.runtime import AsyncInvokeConfig, LambdaRuntime
from infrastructure.local.lambdas.s3_notifications import S3NotificationInvoker
from infrastructure.local.lambdas.workers import LOCAL_CREDENTIALS, function_configs
from infrastructure.local.provision.moto_service import MotoServer, start_moto
from infrastructure.local.provision.s3_inventory import DailyReports
from infrastructure.local.provision.seaweedfs import READER_SUFFIX, SeaweedFSServer, start_seaweedfs
from infrastructure.local.provision.stack_resources import (
    StackNames,
    StackResources,
    provision_stack,
)
from infrastructure.local.provision.tcp_proxy import TcpProxy
from infrastructure.local.stack.chaos import ChaosState, ControlServer, SecretSwap
from infrastructure.local.stack.stack_file import STATE_DIR, MinioEndpoint, StackFile, stack_path
from infrastructure.names import LIVE_ALIAS
from infrastructure.queues import queue_depth
from infrastructure.tunables import Tunables, parse_tunables, read_tunables_document
from transform.intake import producers
from transform.intake.requests import ROUTES as INTAKE_ROUTES

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)

PROFILE: Final = "local"
PREFIX: Final = "sluice-local"
ARCHIVE_BUCKET: Final = "sluice-archive"
DELIVERY: Final = "delivery"
INTAKE: Final = "intake"
DEMO_PRODUCER: Final = "demo"
"""The intake producer `sluice up` makes a key for, printed with the API's URL."""
MAX_BUFFER_SECONDS: Final = 900
"""Firehose's largest buffering interval."""
DRAIN_POLL_SECONDS: Final = 0.5
CORRUPT_UPLOADS_FILE: Final = "chaos/corrupt-uploads"
"""Under the run directory: the count of uploads still to corrupt, shared with the workers."""


class StackError(RuntimeError):
    """The local stack could not start, or could not stop cleanly."""


@dataclass(frozen=True)
class StackOptions:
    root: Path
    """Project root: state goes to `<root>/.sluice/`."""
    time_scale: float = 1.0
    """Divides every wait (buffers, batching windows, retry delays, schedules); not timeouts."""
    buffer_seconds: int | None = None
    """Firehose's destination buffer interval, before scaling; None: the tunables' (60 s)."""
    minio: MinioEndpoint | None = None
    """A real MinIO to deliver to; None: SeaweedFS, started here."""
    workers_per_function: int = 2
    drain_seconds: float | None = None
    """How long `stop` waits for in-flight deliveries; None: delivery's timeout plus 30 s."""
    sdk_calls_dir: Path | None = None
    """Record the SDK operations each function calls there (the least-privilege test)."""
    tunables_file: Path | None = None
    """Another tunables.json for the stack and its functions (`SLUICE_TUNABLES_PATH`): to try a
    change, a payload schema say, before deploying it. None: the shipped one."""

    def __post_init__(self) -> None:
        if not self.time_scale > 0:
            raise ValueError(f"--time-scale must be positive, not {self.time_scale!r}")
        if self.buffer_seconds is not None and not 0 < self.buffer_seconds <= MAX_BUFFER_SECONDS:
            raise ValueError(
                f"--buffer-seconds must be within (0, {MAX_BUFFER_SECONDS}] as Firehose "
                f"allows, not {self.buffer_seconds!r}"
            )
        if self.workers_per_function < 1:
            raise ValueError("--workers must be at least 1")

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR


def local_tunables(buffer_seconds: int | None, tunables_file: Path | None = None) -> Tunables:
    """The `local` profile, with Firehose's buffer interval replaced when asked (the processor
    buffer never waits longer than the destination's)."""
    tunables = parse_tunables(read_tunables_document(tunables_file), PROFILE)
    if buffer_seconds is None:
        return tunables
    firehose = tunables.firehose._replace(
        destination_buffer_seconds=buffer_seconds,
        processor_buffer_seconds=min(tunables.firehose.processor_buffer_seconds, buffer_seconds),
    )
    return tunables._replace(firehose=firehose)


class LocalStack:
    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self.tunables = local_tunables(options.buffer_seconds, options.tunables_file)
        self.file: StackFile | None = None
        self.resources: StackResources | None = None
        self.runtime: LambdaRuntime | None = None
        self.firehose: FirehoseServer | None = None
        self.ingest: SqsEventSource | None = None
        self._moto: MotoServer | None = None
        self._seaweedfs: SeaweedFSServer | None = None
        self._lambda_api: LambdaApiServer | None = None
        self._notifications: list[S3NotificationInvoker] = []
        self._schedules: list[Schedule] = []
        self._minio_proxy: TcpProxy | None = None
        self._control: ControlServer | None = None
        self._intake_api: IntakeApiServer | None = None
        self._inventory: DailyReports | None = None
        self.chaos: ChaosState | None = None

    # ------------------------------------------------------------------ start

    def start(self, progress: Any = None) -> LocalStack:
        """Start and provision everything, check that each service answers, then write
        `stack.json`. On any failure, stop what was started and raise StackError."""
        say = progress or (lambda _text: None)
        try:
            self._start(say)
        except BaseException:
            self.stop(flush=False)
            raise
        return self

    def _start(self, say: Any) -> None:
        options, tunables = self.options, self.tunables
        state = options.state_dir
        run_dir = state / "run"
        shutil.rmtree(run_dir, ignore_errors=True)  # the last run's data and logs
        logs = run_dir / "logs"
        logs.mkdir(parents=True)
        say("starting moto (S3, SQS, DynamoDB, Secrets Manager)")
        self._moto = start_moto(logs / "moto.log")
        endpoint = self._moto.endpoint
        minio = options.minio
        if minio is None:
            say("starting SeaweedFS as MinIO")
            self._seaweedfs = start_seaweedfs(run_dir / "seaweedfs", tls=False)
            minio = MinioEndpoint(
                endpoint=self._seaweedfs.endpoint,
                access_key=self._seaweedfs.access_key,
                secret_key=self._seaweedfs.secret_key,
                bucket=ARCHIVE_BUCKET,
                secure=False,
            )
        _ensure_bucket(minio)
        # Delivery's way to MinIO goes through the proxy chaos cuts; TLS to a real MinIO goes
        # direct, since its certificate names its own host, not the proxy's.
        delivery_minio = minio.endpoint
        if not minio.secure:
            self._minio_proxy = TcpProxy(minio.endpoint).start()
            delivery_minio = self._minio_proxy.endpoint
        say("provisioning buckets, queues, tables and the MinIO and intake secrets")
        demo_key, demo_digest = producers.new_key(DEMO_PRODUCER)
        names = StackNames.for_prefix(PREFIX, tunables.firehose.stream_count)
        self.resources = resources = provision_stack(
            s3=self._client("s3"),
            sqs=self._client("sqs"),
            dynamodb=self._client("dynamodb"),
            secrets=self._client("secretsmanager"),
            names=names,
            tunables=tunables,
            producers_secret=producers.with_key(None, DEMO_PRODUCER, demo_digest),
            sns=self._client("sns"),
            minio_secret={
                "endpoint": delivery_minio,
                "access_key": minio.access_key,
                "secret_key": minio.secret_key,
                "bucket": minio.bucket,
                "secure": minio.secure,
                "region": tunables.region,
            },
        )
        say("starting the local Firehose and Lambda")
        # Started before the runtime: its endpoint goes into the functions' environment, and
        # no record can reach the processor before the forwarder runs.
        self.firehose = self._firehose(names).start()
        self._lambda_api = LambdaApiServer()
        configs = function_configs(
            tunables,
            resources=resources.function_bindings(f"{DELIVERY}:{LIVE_ALIAS}"),
            endpoints={
                "AWS_ENDPOINT_URL": endpoint,
                "AWS_ENDPOINT_URL_FIREHOSE": self.firehose.endpoint,
                "AWS_ENDPOINT_URL_LAMBDA": self._lambda_api.endpoint,
                # Powertools' get_secret reads only the service-specific variable (DESIGN §6).
                "AWS_ENDPOINT_URL_SECRETS_MANAGER": endpoint,
            },
        )
        if options.tunables_file is not None:
            given = {environment.TUNABLES_PATH: str(options.tunables_file.resolve())}
            configs = [
                dataclasses.replace(config, environment={**config.environment, **given})
                for config in configs
            ]
        self.runtime = runtime = LambdaRuntime(
            configs,
            workers_per_function=options.workers_per_function,
            time_scale=options.time_scale,
            region=tunables.region,
            endpoint_url=endpoint,
            async_configs={
                DELIVERY: AsyncInvokeConfig.for_delivery(
                    tunables.delivery, on_failure=resources.delivery_dlq_url
                ),
                # Lambda's default retries and event age, as Terraform configures requeue.
                "requeue": AsyncInvokeConfig(on_failure=resources.requeue_dlq_url),
            },
            log_dir=logs,
            sdk_calls_dir=options.sdk_calls_dir,
            upload_corruption_path=run_dir / CORRUPT_UPLOADS_FILE,
        )
        (run_dir / CORRUPT_UPLOADS_FILE).parent.mkdir(parents=True, exist_ok=True)
        self.chaos = chaos = ChaosState(
            runtime=runtime,
            firehose=self.firehose,
            minio_proxy=self._minio_proxy,
            counter_path=run_dir / CORRUPT_UPLOADS_FILE,
            minio_read_only=self._read_only_swap(names.minio_secret),
        )
        self._control = ControlServer(chaos).start()
        self._lambda_api.start(runtime)
        self._intake_api = IntakeApiServer(
            INTAKE_ROUTES, lambda event: runtime.invoke(INTAKE, event)
        )
        self._intake_api.start()
        self.ingest = SqsEventSource(
            runtime,
            "forwarder",
            resources.ingest_queue_url,
            tunables.ingest,
            duplicate=chaos.duplicating,
        ).start()
        self._notifications = [
            S3NotificationInvoker(runtime, name, url, duplicate=chaos.duplicating).start()
            for name, url in (
                (DELIVERY, resources.buffers_events_url),
                ("requeue", resources.errors_events_url),
            )
        ]
        self._schedules = [
            Schedule.for_redrive(runtime, tunables.redrive).start(),
            Schedule.for_report(runtime).start(),
        ]
        self._inventory = DailyReports(
            self._client("s3"),
            names.landing_bucket,
            names.staging_bucket,
            time_scale=options.time_scale,
        ).start()
        say("checking that every service answers")
        self._check_ready(names, self.firehose.endpoint, self._lambda_api.endpoint)
        self.file = StackFile(
            aws_endpoint=endpoint,
            region=tunables.region,
            landing_bucket=names.landing_bucket,
            staging_bucket=names.staging_bucket,
            ingest_queue_url=resources.ingest_queue_url,
            ingest_dlq_url=resources.ingest_dlq_url,
            delivery_dlq_url=resources.delivery_dlq_url,
            requeue_dlq_url=resources.requeue_dlq_url,
            idempotency_table=names.idempotency_table,
            ledger_table=names.ledger_table,
            minio_secret=names.minio_secret,
            streams=list(names.streams),
            firehose_endpoint=self.firehose.endpoint,
            lambda_endpoint=self._lambda_api.endpoint,
            minio=minio,
            pids=self._pids(),
            time_scale=options.time_scale,
            buffer_seconds=tunables.firehose.destination_buffer_seconds,
            processor_buffer_seconds=tunables.firehose.processor_buffer_seconds,
            started_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            logs=str(logs),
            control_endpoint=self._control.endpoint,
            minio_proxy=None if self._minio_proxy is None else self._minio_proxy.endpoint,
            intake_endpoint=self._intake_api.endpoint,
            producers_secret=names.producers_secret,
            demo_producer_key=demo_key,
            report_topic_arn=resources.report_topic_arn,
        )
        self.file.write(stack_path(options.root))

    def set_time_scale(self, time_scale: float) -> None:
        """Change the running stack's time scale: Firehose's buffers at once, the ingest
        mapping's window, the retry delays and the schedules from their next wait. A gameday
        builds a backlog at a high scale and measures its drain at a lower one
        (tests/slow/test_long_outage.py); the stack file says the scale now in force."""
        if not time_scale > 0:
            raise ValueError(f"the time scale must be positive, not {time_scale!r}")
        runtime, firehose, ingest, inventory, file = (
            self.runtime,
            self.firehose,
            self.ingest,
            self._inventory,
            self.file,
        )
        if (
            runtime is None
            or firehose is None
            or ingest is None
            or inventory is None
            or file is None
        ):
            raise StackError("the stack is not running")
        runtime.time_scale = time_scale
        firehose.set_time_scale(time_scale)
        ingest.set_time_scale(time_scale)
        for schedule in self._schedules:
            schedule.set_time_scale(time_scale)
        inventory.set_time_scale(time_scale)
        self.file = dataclasses.replace(file, time_scale=time_scale)
        self.file.write(stack_path(self.options.root))
        log.info("time scale now %g", time_scale)

    def _firehose(self, names: StackNames) -> FirehoseServer:
        s3 = self._client("s3")
        assemblers = {
            stream: WindowAssembler(
                stream_name=stream,
                staging_bucket=names.staging_bucket,
                s3=s3,
                processor=self._invoke_processor,
                tunables=self.tunables.firehose,
                processor_arn=(
                    f"arn:aws:lambda:{self.tunables.region}:123456789012:function:processor:{LIVE_ALIAS}"
                ),
                region=self.tunables.region,
            )
            for stream in names.streams
        }
        return FirehoseServer(assemblers, time_scale=self.options.time_scale)

    def _invoke_processor(self, event: dict[str, Any], _context: Any) -> Any:
        if self.runtime is None:
            raise StackError("the Lambda runtime is not running")
        return self.runtime.invoke("processor", event)

    def _check_ready(self, names: StackNames, firehose: str, functions: str) -> None:
        """Each service answers a real request over its protocol."""
        firehose_client = self._client("firehose", firehose)
        for stream in names.streams:
            status = firehose_client.describe_delivery_stream(DeliveryStreamName=stream)
            if status["DeliveryStreamDescription"]["DeliveryStreamStatus"] != "ACTIVE":
                raise StackError(f"Firehose stream {stream} is not ACTIVE")
        lambda_client = self._client("lambda", functions)
        for function in self.tunables.functions:
            lambda_client.invoke(FunctionName=function, InvocationType="DryRun")
        self._client("s3").head_bucket(Bucket=names.landing_bucket)
        self._client("dynamodb").describe_table(TableName=names.ledger_table)

    def _read_only_swap(self, secret_id: str) -> SecretSwap | None:
        """The MinIO secret with SeaweedFS's read-only keys, for `sluice chaos minio-read-only`."""
        if self._seaweedfs is None:
            return None
        secrets = self._client("secretsmanager")
        secret = json.loads(secrets.get_secret_value(SecretId=secret_id)["SecretString"])
        secret["access_key"] += READER_SUFFIX
        secret["secret_key"] += READER_SUFFIX
        return SecretSwap(self._client("secretsmanager"), secret_id, secret)

    def _client(self, service: str, endpoint: str | None = None) -> Any:
        """A client of `service` at `endpoint` (default: moto), with the local credentials."""
        if endpoint is None:
            if self._moto is None:
                raise StackError("moto is not running")
            endpoint = self._moto.endpoint
        return boto3.client(
            service,  # type: ignore[call-overload]  # one helper for several services
            region_name=self.tunables.region,
            endpoint_url=endpoint,
            aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def _pids(self) -> dict[str, int]:
        pids = {"sluice": os.getpid()}
        if self._moto is not None:
            pids["moto"] = self._moto.pid
        if self._seaweedfs is not None:
            pids["seaweedfs"] = self._seaweedfs.pid
        return pids

    # ------------------------------------------------------------------ stop

    def stop(self, *, flush: bool = True, progress: Any = None) -> list[str]:
        """Stop taking work, write Firehose's buffers (`flush`), wait for the deliveries they
        start (up to `drain_seconds`), then stop every thread and process. Returns what was
        left unfinished (empty when everything drained). Idempotent."""
        say = progress or (lambda _text: None)
        stack_path(self.options.root).unlink(missing_ok=True)
        left: list[str] = []
        if self.ingest is not None:
            say("stopping the ingest queue's event source (in-flight batches finish)")
            self.ingest.stop()
            self.ingest = None
        if self.firehose is not None:
            say("flushing the Firehose buffers" if flush else "stopping the local Firehose")
            try:
                self.firehose.stop(flush=flush)
            except RuntimeError as err:
                left.append(f"Firehose: {err}")
            self.firehose = None
        if flush and self.runtime is not None and self.resources is not None:
            say("waiting for the deliveries under way")
            left.extend(self._drain(self.runtime, self.resources))
        if self._inventory is not None:
            self._inventory.stop()
            self._inventory = None
        if self.runtime is not None:
            self.runtime.stop()
            self.runtime = None
        if self._lambda_api is not None:
            self._lambda_api.stop()
            self._lambda_api = None
        if self._control is not None:
            self._control.stop()
            self._control = None
        if self._intake_api is not None:
            self._intake_api.stop()
            self._intake_api = None
        if self._minio_proxy is not None:
            self._minio_proxy.stop()
            self._minio_proxy = None
        if self._seaweedfs is not None:
            self._seaweedfs.stop()
            self._seaweedfs = None
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        return left

    def _drain(self, runtime: LambdaRuntime, resources: StackResources) -> list[str]:
        """Wait until the staging notifications are consumed and no async invocation waits or
        runs; what is still pending at the deadline."""
        timeout = self.options.drain_seconds
        if timeout is None:
            timeout = self.tunables.functions[DELIVERY].timeout_seconds + 30
        sqs: SQSClient = self._client("sqs")
        queues = {
            "staging notifications to delivery": resources.buffers_events_url,
            "staging notifications to requeue": resources.errors_events_url,
        }
        deadline = time.monotonic() + timeout
        while True:
            pending = [name for name, url in queues.items() if queue_depth(sqs, url) > 0]
            # Events of a paused (throttled) function would wait out the whole drain: they are
            # reported, not waited for. In AWS they would wait in Lambda's queue; here they end.
            if not runtime.async_idle(counting_throttled=False):
                pending.append("asynchronous invocations")
            if not pending or time.monotonic() > deadline:
                throttled = runtime.async_throttled_waiting()
                if throttled:
                    pending.append(f"{throttled} asynchronous events of paused functions")
                return pending
            time.sleep(DRAIN_POLL_SECONDS)


def _ensure_bucket(minio: MinioEndpoint) -> None:
    client = minio.client()
    try:
        if not client.bucket_exists(minio.bucket):
            client.make_bucket(minio.bucket)
    except Exception as err:
        raise StackError(
            f"MinIO at {minio.endpoint} (bucket {minio.bucket!r}) is not usable: {err}"
        ) from err
