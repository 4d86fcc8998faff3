"""`sluice smoke`: the seeds' validation, end to end — upload a sample file to the landing bucket,
wait for its archive in MinIO, and check it byte for byte.

Against the local stack (`--local`, from `.sluice/stack.json`) or a deployment (`--env ENV`, from
`terraform output -json` of infrastructure/terraform with that environment's data directory):
the same code, only the endpoints and names differ. MinIO's endpoint and keys come from the MinIO
secret in Secrets Manager, as delivery reads them.

Checks: the sample appears in an archive's sidecar manifest under its key and landing version;
the archive's member has the sample's bytes and the manifest's sha256; the sidecar equals the
archive's own MANIFEST.json. Exit status 0 when all hold, 1 otherwise (with what failed).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import secrets
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import boto3
from minio import Minio

from delivery.minio_access import MinioSettings
from infrastructure.local.arrivals import SIDECAR_SUFFIX, Arrival, ManifestReader
from infrastructure.local.stack_file import read_stack
from infrastructure.tunables import load_tunables

TERRAFORM_DIR: Final = Path("infrastructure/terraform")
POLL_SECONDS: Final = 2.0
DEFAULT_TIMEOUT_SECONDS: Final = 300.0
"""Firehose's two buffers (70 s) and a delivery, with room to spare."""


@dataclass(frozen=True)
class Target:
    region: str
    endpoint_url: str | None
    """None: AWS itself."""
    landing_bucket: str
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


def local_target(root: Path) -> Target:
    stack = read_stack(root)
    return Target(stack.region, stack.aws_endpoint, stack.landing_bucket, stack.minio_secret)


def terraform_target(root: Path, environment: str) -> Target:
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
        raise SmokeError(
            f"cannot read the Terraform outputs of {environment!r} (data in {data_dir}; "
            f"run `make deploy ENV={environment}` first): {detail.strip()}"
        ) from err
    outputs = {name: value["value"] for name, value in json.loads(completed.stdout).items()}
    if "landing_bucket" not in outputs:
        raise SmokeError(f"environment {environment!r} has no Terraform outputs: is it deployed?")
    return Target(
        region=load_tunables().region,
        endpoint_url=None,
        landing_bucket=outputs["landing_bucket"],
        minio_secret=outputs["minio_secret_arn"],
    )


class SmokeError(RuntimeError):
    """The smoke test could not run or did not pass; the message says which check."""


def minio_of(target: Target) -> tuple[Minio, MinioSettings]:
    value = target.client("secretsmanager").get_secret_value(SecretId=target.minio_secret)
    settings = MinioSettings.from_secret(
        json.loads(value["SecretString"]), secret_name=target.minio_secret
    )
    client = Minio(
        settings.endpoint,
        access_key=settings.access_key,
        secret_key=settings.secret_key,
        secure=settings.secure,
        region=settings.region,
    )
    return client, settings


def run_smoke(target: Target, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> str:
    """Upload a sample, wait for it in MinIO, verify it; a line saying what passed, or
    SmokeError saying what did not."""
    client, settings = minio_of(target)
    now = datetime.now(UTC)
    key = f"smoke/{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}.json"
    body = json.dumps({"smoke": key, "nonce": secrets.token_hex(16)}).encode()
    put = target.client("s3").put_object(Bucket=target.landing_bucket, Key=key, Body=body)
    version = put.get("VersionId")
    print(f"uploaded s3://{target.landing_bucket}/{key} (version {version}); waiting for MinIO")
    prefix = f"{load_tunables().delivery.archive_prefix}/dt={now:%Y-%m-%d}/"
    reader = ManifestReader(client, settings.bucket, prefix)
    started = time.monotonic()
    while True:
        found = [a for a in reader.new_arrivals() if a.key == key]
        if found:
            break
        if time.monotonic() - started > timeout:
            raise SmokeError(
                f"{key} is not in MinIO bucket {settings.bucket} after {timeout:.0f} s"
            )
        time.sleep(POLL_SECONDS)
    elapsed = time.monotonic() - started
    if len(found) != 1:
        raise SmokeError(f"{key} is in {len(found)} archives: {[a.archive for a in found]}")
    (arrival,) = found
    _verify(client, settings.bucket, arrival, body, version)
    return (
        f"smoke passed: {key} in {arrival.archive} after {elapsed:.0f} s, "
        f"sha256 {arrival.sha256[:16]}… verified against the upload and the manifest"
    )


def _verify(client: Minio, bucket: str, arrival: Arrival, body: bytes, version: str | None) -> None:
    if version is not None and arrival.version_id != version:
        raise SmokeError(f"the manifest names version {arrival.version_id}, not {version}")
    if arrival.sha256 != hashlib.sha256(body).hexdigest():
        raise SmokeError("the manifest's sha256 is not the sample's")
    archive = _read(client, bucket, arrival.archive)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        manifest_member = tar.extractfile("MANIFEST.json")
        if manifest_member is None:
            raise SmokeError(f"{arrival.archive} has no MANIFEST.json")
        manifest = json.loads(manifest_member.read())
        (entry,) = [e for e in manifest["files"] if e["key"] == arrival.key]
        member = tar.extractfile(entry["member_name"])
        if member is None or member.read() != body:
            raise SmokeError(f"{arrival.archive}: member {entry['member_name']} is not the sample")
    sidecar = json.loads(
        _read(client, bucket, arrival.archive.removesuffix(".tar.gz") + SIDECAR_SUFFIX)
    )
    if sidecar != manifest:
        raise SmokeError(f"{arrival.archive}: the sidecar manifest differs from MANIFEST.json")


def _read(client: Minio, bucket: str, name: str) -> bytes:
    response = client.get_object(bucket, name)
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


def smoke(args: argparse.Namespace, root: Path) -> int:
    try:
        target = local_target(root) if args.local else terraform_target(root, args.env)
        print(run_smoke(target, timeout=args.timeout))
    except SmokeError as err:
        print(f"sluice smoke: {err}", file=sys.stderr)
        return 1
    return 0
