"""`sluice smoke`: the seeds' validation, end to end — upload a sample file to the landing bucket,
wait for its archive in MinIO, and check it byte for byte.

Against the local stack (`--local`) or a deployment (`--env ENV`), as
infrastructure.cli.deployment finds them: the same code, only the endpoints and names differ.
MinIO's endpoint and keys come from the MinIO secret in Secrets Manager, as delivery reads them,
and its client is the one every command builds (`deployment.minio_client`: TLS verified against
`SLUICE_MINIO_CA_BUNDLE` when set).

Checks: the sample appears in a window manifest (the commit marker) under its key and landing
version; the archive's member has the sample's bytes and the manifest's sha256; the archive is
the part the window manifest lists, by sha256 and size. Exit status 0 when all hold, 1
otherwise (with what failed).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import secrets
import sys
import tarfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from minio import Minio

from delivery.layout import window_manifest_beside
from infrastructure.cli import deployment
from infrastructure.cli.arrivals import Arrival, ManifestReader
from infrastructure.cli.deployment import Deployment
from infrastructure.tunables import load_tunables

POLL_SECONDS: Final = 2.0
DEFAULT_TIMEOUT_SECONDS: Final = 300.0
"""Firehose's two buffers (70 s) and a delivery, with room to spare."""


class SmokeError(RuntimeError):
    """The smoke test could not run or did not pass; the message says which check."""


def run_smoke(target: Deployment, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> str:
    """Upload a sample, wait for it in MinIO, verify it; a line saying what passed, or
    SmokeError saying what did not."""
    client, settings = target.minio()
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
    window = json.loads(
        _read(client, bucket, window_manifest_beside(arrival.archive, arrival.window_id))
    )
    (part,) = [p for p in window["parts"] if p["key"] == arrival.archive]
    if part["sha256"] != hashlib.sha256(archive).hexdigest() or part["size"] != len(archive):
        raise SmokeError(f"{arrival.archive}: not the part its window manifest lists")


def _read(client: Minio, bucket: str, name: str) -> bytes:
    response = client.get_object(bucket, name)
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


def smoke(args: argparse.Namespace, root: Path) -> int:
    try:
        print(run_smoke(deployment.resolve(args, root), timeout=args.timeout))
    except SmokeError as err:
        print(f"sluice smoke: {err}", file=sys.stderr)
        return 1
    return 0
