"""Which Sluice an operator command talks to: the local stack or a Terraform deployment.

`--local` reads `.sluice/stack.json` (the running `sluice up`); `--env ENV` reads
`terraform output -json` of infrastructure/terraform with that environment's data directory
(`build/terraform/<ENV>`, as `make deploy ENV=…` leaves it). Either way the result names the
same things, and clients reach them with the same code: only the endpoint differs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import boto3
import urllib3
from minio import Minio
from minio.error import MinioException

from delivery.minio_access import (
    CONNECT_TIMEOUT_SECONDS,
    READ_TIMEOUT_SECONDS,
    MinioSettings,
    MinioSettingsError,
    ProbeMismatch,
    http_client,
    write_probe,
)
from infrastructure import environment
from infrastructure.cli.errors import DeploymentError, one_line
from infrastructure.local.stack.stack_file import StackFile, read_stack
from infrastructure.names import LIVE_ALIAS
from infrastructure.tunables import (
    DEFAULT_PROFILE,
    Tunables,
    load_tunables,
    parse_tunables,
    read_tunables_document,
)

TERRAFORM_DIR: Final = Path("infrastructure/terraform")
LOCAL_PROFILE: Final = "local"
MINIO_ERRORS: Final = (OSError, MinioException, urllib3.exceptions.HTTPError)
"""What a minio call raises when MinIO is down, unreachable or refuses: what redrive's health
check counts as MinIO not answering (`Deployment.minio_healthy`)."""

T = TypeVar("T")


@dataclass(frozen=True)
class Deployment:
    name: str
    """`local`, or the Terraform environment."""
    region: str
    endpoint_url: str | None
    """None: AWS itself; else the local stack's moto."""
    landing_bucket: str
    staging_bucket: str
    idempotency_table: str
    ledger_table: str
    ingest_queue_url: str
    ingest_dlq_url: str
    delivery_dlq_url: str
    requeue_dlq_url: str
    minio_secret: str
    functions: dict[str, str] = field(default_factory=dict)
    """Function name per Sluice function (forwarder, processor, requeue, delivery, redrive)."""
    streams: tuple[str, ...] = ()
    """The Firehose streams, in the order the forwarder spreads records over them."""
    service_endpoints: dict[str, str] = field(default_factory=dict)
    """Locally, services not served by moto: `firehose` and `lambda` have stand-ins of their own."""
    profile: str = DEFAULT_PROFILE
    """The tunables' profile the deployment was made with."""
    producers_secret: str = ""
    """The HTTPS intake's secret of producers' key hashes; empty: a deployment without one."""

    def tunables(self) -> Tunables:
        """The deployment's tunables: its profile of tunables.json, or of the file
        `SLUICE_TUNABLES_PATH` names (a stack started with another one, as its functions see)."""
        override = os.environ.get(environment.TUNABLES_PATH)
        document = read_tunables_document(Path(override) if override else None)
        return parse_tunables(document, self.profile)

    def client(self, service: str) -> Any:
        arguments: dict[str, Any] = {"region_name": self.region}
        if self.endpoint_url is not None:
            arguments.update(
                endpoint_url=self.service_endpoints.get(service, self.endpoint_url),
                aws_access_key_id="local",
                aws_secret_access_key="local",  # noqa: S106  # moto takes any key
            )
        return boto3.client(service, **arguments)  # type: ignore[call-overload]  # by name

    def function(self, role: str) -> str:
        try:
            return self.functions[role]
        except KeyError:
            raise DeploymentError(
                f"deployment {self.name!r} names no {role} function (it has: "
                f"{', '.join(sorted(self.functions)) or 'none'})"
            ) from None

    def live(self, role: str) -> str:
        """The function's `live` alias, as triggers invoke it: its async retries and on-failure
        destination apply (an unqualified invoke would run $LATEST without them)."""
        return f"{self.function(role)}:{LIVE_ALIAS}"

    def minio_settings(self) -> MinioSettings:
        """MinIO as delivery reaches it: the endpoint and keys in the deployment's secret."""
        value = self.client("secretsmanager").get_secret_value(SecretId=self.minio_secret)
        try:
            parsed = json.loads(value["SecretString"])
        except (KeyError, ValueError) as err:
            raise DeploymentError(f"MinIO secret {self.minio_secret!r} is not JSON") from err
        try:
            return MinioSettings.from_secret(parsed, secret_name=self.minio_secret)
        except MinioSettingsError as err:
            raise DeploymentError(f"{err}: correct the secret") from err

    def minio(self) -> tuple[Minio, MinioSettings]:
        """A minio client for the archive bucket, as delivery reaches it (`minio_client`)."""
        settings = self.minio_settings()
        client = minio_client(
            settings.endpoint,
            access_key=settings.access_key,
            secret_key=settings.secret_key,
            secure=settings.secure,
            region=settings.region,
        )
        return client, settings

    def minio_caller(self) -> DirectMinio:
        """MinIO as delivery's code calls it (`call(fn)`), resolved on first use."""
        return DirectMinio(self)

    def minio_healthy(self) -> bool:
        """Whether MinIO takes a write to the archive bucket, as redrive's health check asks
        (the same probe: put, read back, delete under `.sluice-health/`)."""
        try:
            client, settings = self.minio()
            write_probe(client, settings)
        except (*MINIO_ERRORS, ProbeMismatch):
            return False
        return True


def minio_client(
    endpoint: str,
    *,
    access_key: str,
    secret_key: str,
    secure: bool,
    region: str | None = None,
    ca_bundle: str | None = None,
    retries: urllib3.Retry | None = None,
    connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
    read_timeout: float = READ_TIMEOUT_SECONDS,
) -> Minio:
    """Every minio client an operator command builds: TLS verified as delivery verifies it,
    against `ca_bundle`, else `SLUICE_MINIO_CA_BUNDLE` when set, else the system's trust store;
    delivery's timeouts; no retries unless given (`sluice extract` retries, on-prem)."""
    bundle = ca_bundle or os.environ.get(environment.MINIO_CA_BUNDLE, "").strip() or None
    if not secure:
        bundle = None  # plain HTTP: no certificate to verify
    if bundle is not None and not Path(bundle).is_file():
        raise DeploymentError(
            f"the MinIO CA bundle {bundle!r} (--ca-bundle or {environment.MINIO_CA_BUNDLE}) is "
            "not a readable file: point it at the PEM file of MinIO's CA"
        )
    if retries is None:
        pool = http_client(bundle, connect_timeout=connect_timeout, read_timeout=read_timeout)
    else:
        pool = urllib3.PoolManager(
            cert_reqs="CERT_REQUIRED",
            ca_certs=bundle,
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            retries=retries,
        )
    return Minio(
        endpoint,
        access_key=access_key,
        secret_key=secret_key,
        secure=secure,
        region=region,
        http_client=pool,
    )


class DirectMinio:
    """`call(fn(client, settings))`, as `delivery.minio_access.MinioAccess` offers it, for code
    of delivery's that operator commands run (hour markers)."""

    def __init__(self, target: Deployment) -> None:
        self._target = target
        self._resolved: tuple[Minio, MinioSettings] | None = None

    def call(self, fn: Callable[[Minio, MinioSettings], T]) -> T:
        if self._resolved is None:
            self._resolved = self._target.minio()
        return fn(*self._resolved)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--local", action="store_true", help="the running local stack (the default)")
    where.add_argument("--env", help="a Terraform deployment (make deploy ENV=…)")


def resolve(args: argparse.Namespace, root: Path) -> Deployment:
    if getattr(args, "env", None):
        return from_terraform(root, args.env)
    return from_local(root)


def from_local(root: Path) -> Deployment:
    return from_stack(read_stack(root))


def from_stack(stack: StackFile) -> Deployment:
    return Deployment(
        name="local",
        region=stack.region,
        endpoint_url=stack.aws_endpoint,
        landing_bucket=stack.landing_bucket,
        staging_bucket=stack.staging_bucket,
        idempotency_table=stack.idempotency_table,
        ledger_table=stack.ledger_table,
        ingest_queue_url=stack.ingest_queue_url,
        ingest_dlq_url=stack.ingest_dlq_url,
        delivery_dlq_url=stack.delivery_dlq_url,
        requeue_dlq_url=stack.requeue_dlq_url,
        minio_secret=stack.minio_secret,
        functions={
            role: role for role in parse_tunables(read_tunables_document(), LOCAL_PROFILE).functions
        },
        streams=tuple(stack.streams),
        service_endpoints={"firehose": stack.firehose_endpoint, "lambda": stack.lambda_endpoint},
        profile=LOCAL_PROFILE,
        producers_secret=stack.producers_secret or "",
    )


def terraform_json(root: Path, environment: str, command: str) -> Any:
    """`terraform <command> -json` of the environment's working data (`build/terraform/<ENV>`,
    as `make deploy ENV=…` leaves it); a DeploymentError of one line when it cannot be read."""
    data_dir = root / "build" / "terraform" / environment
    todo = (
        f"run `make deploy ENV={environment}` first (or `make tf-init ENV={environment} "
        "TF_STATE_BUCKET=…` for a deployment made elsewhere)"
    )
    if not data_dir.is_dir():
        raise DeploymentError(
            f"environment {environment!r} is not deployed from here (no {data_dir}): {todo}"
        )
    try:
        completed = subprocess.run(  # noqa: S603  # fixed argv, no shell
            ["terraform", f"-chdir={root / TERRAFORM_DIR}", command, "-json", "-no-color"],  # noqa: S607  # terraform from PATH, as make deploy uses it
            env={**os.environ, "TF_DATA_DIR": str(data_dir)},
            capture_output=True,
            text=True,
            check=True,
        )
    except OSError as err:
        raise DeploymentError(
            f"cannot run terraform to read environment {environment!r} ({err.strerror or err}): "
            "install Terraform and put it on PATH"
        ) from err
    except subprocess.CalledProcessError as err:
        raise DeploymentError(
            f"cannot read the Terraform {command} of environment {environment!r} "
            f"({terraform_error(err.stderr or '')}): {todo}"
        ) from err
    try:
        return json.loads(completed.stdout)
    except ValueError as err:
        raise DeploymentError(
            f"terraform {command} -json of environment {environment!r} is not JSON: {todo}"
        ) from err


def terraform_error(stderr: str) -> str:
    """The first `Error:` of Terraform's boxed, coloured diagnostics, as one line."""
    lines = [one_line(line).strip(" \u2502\u2577\u2575") for line in stderr.splitlines()]
    errors = [line for line in lines if line.startswith("Error")]
    return (errors or [line for line in lines if line] or ["no output"])[0]


def from_terraform(root: Path, environment: str) -> Deployment:
    document = terraform_json(root, environment, "output")
    outputs = {name: value["value"] for name, value in document.items()}
    if "landing_bucket" not in outputs:
        raise DeploymentError(
            f"environment {environment!r} has no Terraform outputs: run "
            f"`make deploy ENV={environment}` first"
        )
    return Deployment(
        name=environment,
        region=load_tunables().region,
        endpoint_url=None,
        landing_bucket=outputs["landing_bucket"],
        staging_bucket=outputs["staging_bucket"],
        idempotency_table=outputs["idempotency_table"],
        ledger_table=outputs["ledger_table"],
        ingest_queue_url=outputs["ingest_queue_url"],
        ingest_dlq_url=outputs["ingest_dlq_url"],
        delivery_dlq_url=outputs["delivery_dlq_url"],
        requeue_dlq_url=outputs["requeue_dlq_url"],
        minio_secret=outputs["minio_secret_arn"],
        functions=dict(outputs["function_names"]),
        streams=tuple(outputs["firehose_streams"]),
        producers_secret=outputs.get("producers_secret", ""),
    )
