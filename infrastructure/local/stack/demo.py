"""`make demo`: a handful of files through every function, in process, into SeaweedFS as MinIO.

moto in this process for AWS, the window-assembly library for Firehose, the handlers Lambda runs
called with their triggers' events. Nothing is left behind. Spec: docs/local-stack.md,
`stack/demo.py`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from moto import mock_aws

from infrastructure import environment
from infrastructure.local.firehose.window_assembly import InProcessFirehose
from infrastructure.local.lambdas.context import LocalLambdaContext
from infrastructure.local.provision import resources
from infrastructure.local.provision.seaweedfs import SeaweedFSServer, start_seaweedfs
from infrastructure.tunables import load_tunables

REGION = "eu-west-2"
LANDING = "sluice-demo-landing"
STAGING = "sluice-demo-staging"
TABLE = "sluice-demo-idempotency"
LEDGER = "sluice-demo-ledger"
SECRET = "sluice/demo/minio"  # noqa: S105  # a secret's name, not its value
STREAMS = ("sluice-demo-0",)

SAMPLES: dict[str, bytes] = {
    "acme/2026/11/25/daily report.json": b'{"report": "daily", "rows": 3}',
    "acme/2026/11/25/prices+fx.csv": b"currency,rate\nEUR,1.17\nUSD,1.27\n",
    "globex/ünïcødé/日本語.txt": "こんにちは, Sluice".encode(),
    "globex/images/pixel.png": bytes.fromhex("89504e470d0a1a0a0000000d49484452"),
    "orders/2026-11-25.ndjson": (
        b'{"order_id": "A-1", "amount_pence": 1250, "currency": "GBP"}\n'
        b'{"order_id": "A-2", "amount_pence": 999, "currency": "EUR", "note": "gift"}\n'
    ),
    "orders/broken.ndjson": b'{"order_id": "B-1", "amount_pence": "lots", "currency": "GBP"}\n',
    "initech/big/export.json": b'{"blob": "' + b"x" * 70_000 + b'"}',
}


def say(text: str) -> None:
    print(text, flush=True)


@contextmanager
def function_environment() -> Iterator[None]:
    """Set what Terraform sets for the forwarder and processor (both read the same names)."""
    tunables = load_tunables()
    values = {
        "AWS_ACCESS_KEY_ID": "demo",
        "AWS_SECRET_ACCESS_KEY": "demo",
        "AWS_DEFAULT_REGION": REGION,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "ERROR",
        "POWERTOOLS_METRICS_DISABLED": "true",  # EMF lines would drown the story
        # The local profile: SeaweedFS answers plain HTTP, which the aws profile refuses.
        environment.PROFILE: "local",
        environment.STAGING_BUCKET: STAGING,
        environment.IDEMPOTENCY_TABLE: TABLE,
        environment.FIREHOSE_STREAMS: ",".join(STREAMS),
        environment.LEDGER_TABLE: LEDGER,
        environment.MINIO_SECRET: SECRET,
    }
    values.setdefault("POWERTOOLS_METRICS_NAMESPACE", tunables.metrics_namespace)
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    load_tunables.cache_clear()  # read again, for the local profile
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def main() -> int:
    with (
        function_environment(),
        mock_aws(),
        tempfile.TemporaryDirectory(prefix="sluice-demo-") as tmp,
    ):
        say("0. starting SeaweedFS (weed mini) on 127.0.0.1 as MinIO …")
        with start_seaweedfs(Path(tmp), tls=False) as minio:
            say(f"   {minio.endpoint} (ready in {minio.startup_seconds:.1f} s)")
            return run(minio)


def run(minio: SeaweedFSServer) -> int:
    # Imported here: the handlers' module-level Powertools objects read the environment above.
    from delivery import handler  # noqa: PLC0415  # after the env is set
    from delivery.redriving import staged_event  # noqa: PLC0415  # after the env is set
    from transform import clients, forwarder, processor  # noqa: PLC0415  # after the env is set

    s3 = boto3.client("s3", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    resources.create_bucket(s3, LANDING, REGION, versioned=True)
    resources.create_bucket(s3, STAGING, REGION, versioned=True)
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    resources.create_idempotency_table(dynamodb, TABLE)
    resources.create_ledger_table(dynamodb, LEDGER)
    bucket = minio.create_bucket("sluice-demo")
    boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name=SECRET,
        SecretString=json.dumps(
            {
                "endpoint": minio.endpoint,
                "access_key": minio.access_key,
                "secret_key": minio.secret_key,
                "bucket": bucket,
                "secure": False,
            }
        ),
    )
    queue_url = resources.create_ingest_queue(sqs, s3, "sluice-demo-ingest", LANDING)
    firehose = InProcessFirehose.for_streams(
        STREAMS,
        staging_bucket=STAGING,
        s3=s3,
        processor=processor.lambda_handler,
        tunables=load_tunables().firehose,
    )
    clients.firehose = lambda: firehose  # type: ignore[assignment]  # the stand-in for Firehose

    say(f"1. {len(SAMPLES)} files PUT into s3://{LANDING}/ (moto; notifications to SQS)")
    for key, body in SAMPLES.items():
        s3.put_object(Bucket=LANDING, Key=key, Body=body)
        say(f"   {len(body):>7} B  {key}")

    messages = resources.drain_queue(sqs, queue_url)
    say(f"2. forwarder: {len(messages)} SQS messages (incl. S3's test event)")
    response = forwarder.lambda_handler(sqs_event(messages), LocalLambdaContext("forwarder", 30))
    say(f"   batchItemFailures: {response['batchItemFailures']}")

    say("3. Firehose (window assembly): buffers flushed, processor invoked, GZIP written")
    keys = firehose.flush()
    show_staging(s3, keys)

    windows = sorted(key for key in keys if key.startswith("buffers/"))
    say(f"5. delivery: {len(windows)} staged window(s) -> SeaweedFS bucket {bucket}")
    for key in windows:
        result = handler.lambda_handler(
            staged_event(STAGING, key), LocalLambdaContext("delivery", 120)
        )
        say(f"   {result['windows']}")
    show_archives(minio, bucket)
    failures = response["batchItemFailures"]
    return 1 if failures else 0


def sqs_event(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The event the SQS event source mapping would hand the forwarder."""
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": message["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:sluice-demo-ingest",
                "awsRegion": REGION,
            }
            for message in messages
        ]
    }


def show_staging(s3: Any, keys: list[str]) -> None:
    for key in sorted(keys):
        data = gzip.decompress(s3.get_object(Bucket=STAGING, Key=key)["Body"].read())
        lines = data.splitlines()
        say(f"   s3://{STAGING}/{key}  ({len(lines)} lines, {len(data)} B unzipped)")
        for line in lines:
            record = json.loads(line)
            if key.startswith("buffers/"):
                body = record.get("body")
                shown = (body[:40] + "…") if body and len(body) > 40 else body
                say(
                    f"     {record['body_encoding']:<6} {record.get('content_kind', '-'):<7} "
                    f"{record['key']}  body={shown!r}"
                )
            else:
                say(f"     {record['errorCode']}: {record['errorMessage'][:80]}")
    reasons = s3.list_objects_v2(Bucket=STAGING, Prefix="quarantine/reasons/").get("Contents", [])
    say(f"4. quarantine: {len(reasons)} reason file(s)")
    for obj in reasons:
        entry = json.loads(s3.get_object(Bucket=STAGING, Key=obj["Key"])["Body"].read())
        say(f"   {entry.get('key', entry['file_id'])}: {entry['reason']}: {entry['detail'][:100]}")


def show_archives(minio: SeaweedFSServer, bucket: str) -> None:
    """Each file's archive, member name and checksum verdict, checked again here."""
    client = minio.client()
    say("6. MinIO: every archive re-read and every member's sha256 checked against its manifest")
    for obj in client.list_objects(bucket, recursive=True):
        if not obj.object_name.endswith(".tar.gz"):
            say(f"   {obj.object_name}")
            continue
        data = client.get_object(bucket, obj.object_name).read()
        stat = client.stat_object(bucket, obj.object_name)
        stored = (stat.metadata or {}).get("x-amz-meta-sluice-sha256")
        archive_ok = stored == hashlib.sha256(data).hexdigest()
        say(f"   {obj.object_name}  {len(data)} B  archive sha256 {'ok' if archive_ok else 'BAD'}")
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            manifest = json.loads(_read(tar, "MANIFEST.json"))
            for entry in manifest["files"]:
                body = _read(tar, entry["member_name"])
                verdict = "ok" if hashlib.sha256(body).hexdigest() == entry["sha256"] else "BAD"
                say(f"     {verdict:<3} {entry['check']:<18} {entry['member_name']}")
            for excluded in manifest["excluded"]:
                say(f"     excluded ({excluded['reason']}): {excluded['key']}")


def _read(tar: tarfile.TarFile, name: str) -> bytes:
    member = tar.extractfile(name)
    if member is None:
        raise LookupError(f"{name} is not a file in the archive")
    return member.read()


if __name__ == "__main__":
    sys.exit(main())
