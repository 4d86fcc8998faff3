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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import boto3

from infrastructure.local.stack_file import StackFile, read_stack
from infrastructure.tunables import load_tunables

TERRAFORM_DIR: Final = Path("infrastructure/terraform")


class DeploymentError(RuntimeError):
    """The deployment could not be found; the message says how to get one."""


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

    def client(self, service: str) -> Any:
        arguments: dict[str, Any] = {"region_name": self.region}
        if self.endpoint_url is not None:
            arguments.update(
                endpoint_url=self.endpoint_url,
                aws_access_key_id="local",
                aws_secret_access_key="local",  # noqa: S106  # moto takes any key
            )
        return boto3.client(service, **arguments)  # type: ignore[call-overload]  # by name


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
    )


def from_terraform(root: Path, environment: str) -> Deployment:
    data_dir = root / "build" / "terraform" / environment
    try:
        completed = subprocess.run(  # noqa: S603  # fixed argv, no shell
            ["terraform", f"-chdir={root / TERRAFORM_DIR}", "output", "-json"],  # noqa: S607  # terraform from PATH, as make deploy uses it
            env={**os.environ, "TF_DATA_DIR": str(data_dir)},
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError) as err:
        detail = getattr(err, "stderr", "") or str(err)
        raise DeploymentError(
            f"cannot read the Terraform outputs of {environment!r} (data in {data_dir}; "
            f"run `make deploy ENV={environment}` first): {detail.strip()}"
        ) from err
    outputs = {name: value["value"] for name, value in json.loads(completed.stdout).items()}
    if "landing_bucket" not in outputs:
        raise DeploymentError(
            f"environment {environment!r} has no Terraform outputs: is it deployed?"
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
    )
