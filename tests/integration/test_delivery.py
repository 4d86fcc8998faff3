"""Delivery end to end, in process: moto for S3, DynamoDB and Secrets Manager; SeaweedFS as MinIO.

Each test reads back what reached MinIO and compares it byte for byte with what producers
uploaded. Staged windows are written the way Firehose writes them (gzip of newline-terminated
envelopes under buffers/dt=…/hour=…/), so each test controls exactly what a window holds.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import tarfile
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import moto.s3.models as moto_s3_models
import pytest
from aws_lambda_powertools.utilities import parameters
from minio import Minio
from moto.s3.exceptions import S3AccessDeniedError

from delivery import delivering, extract, handler, lease, redrive, redriving, refs
from delivery.ledger import Ledger, WindowState
from delivery.redriving import staged_event
from delivery.upload import upload_verified as real_upload_verified
from infrastructure import environment
from infrastructure.local.firehose.window_assembly import InProcessFirehose
from infrastructure.local.lambdas.context import LocalLambdaContext
from infrastructure.local.provision import resources
from infrastructure.tunables import TUNABLES_FILE, load_tunables
from tests.conftest import (
    DELIVERY_DLQ_NAME,
    LANDING,
    LEDGER_TABLE,
    MINIO_SECRET_NAME,
    REGION,
    STAGING,
    STREAMS,
)
from tests.integration.runtime_support import wait_until
from tests.support import (
    ENVIRONMENT_ERROR,
    WINDOW_ERROR,
    SerializedClient,
    archives,
    notification,
    on_failure_record,
    put_and_notify,
    sqs_event,
    window_manifests,
)
from transform import clients, envelope, forwarder, processor
from transform.envelope import Envelope, file_id

pytestmark = pytest.mark.slow

WINDOW_PREFIX = "buffers/dt=2026-11-25/hour=12/"
EVENT_TIME_MS = 1_795_608_000_000


# ---------------------------------------------------------------- harness


@pytest.fixture
def tunables_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Override delivery tunables for one test (fast retries always)."""

    def apply(**delivery: Any) -> None:
        document = json.loads(TUNABLES_FILE.read_text())
        document["delivery"].update(
            {
                "retry_backoff_base_seconds": 0.01,
                "retry_backoff_cap_seconds": 0.05,
                "minio_tls_required": False,  # SeaweedFS answers plain HTTP on 127.0.0.1
                **delivery,
            }
        )
        document["forwarder"].update(put_backoff_base_seconds=0.001, put_backoff_cap_seconds=0.005)
        path = tmp_path / "tunables.json"
        path.write_text(json.dumps(document))
        monkeypatch.setenv(environment.TUNABLES_PATH, str(path))
        load_tunables.cache_clear()
        handler.dependencies.cache_clear()

    apply()
    return apply


@pytest.fixture
def minio(seaweedfs: Any) -> Minio:
    return Minio(
        seaweedfs.endpoint,
        access_key=seaweedfs.access_key,
        secret_key=seaweedfs.secret_key,
        secure=False,
    )


def provision_stack(seaweedfs: Any) -> None:
    """Ledger table, delivery DLQ and the MinIO secret (pointing at SeaweedFS), on the AWS that
    boto3 reaches now (moto in process, or a moto server)."""
    resources.create_ledger_table(boto3.client("dynamodb", region_name=REGION), LEDGER_TABLE)
    boto3.client("sqs", region_name=REGION).create_queue(QueueName=DELIVERY_DLQ_NAME)
    set_secret(seaweedfs.endpoint, seaweedfs.access_key, seaweedfs.secret_key, seaweedfs.bucket)


@pytest.fixture
def stack(
    seaweedfs: Any,
    buckets: dict[str, str],
    idempotency_table: str,
    function_env: Any,
    tunables_path: Any,
) -> Any:
    """Every function's environment, on moto in process and SeaweedFS."""
    provision_stack(seaweedfs)
    for function in ("processor", "forwarder", "redrive", "delivery"):
        function_env(function)
    return seaweedfs


def set_secret(endpoint: str, access_key: str, secret_key: str, bucket: str) -> None:
    value = json.dumps(
        {
            "endpoint": endpoint,
            "access_key": access_key,
            "secret_key": secret_key,
            "bucket": bucket,
            "secure": False,
        }
    )
    secrets = boto3.client("secretsmanager", region_name=REGION)
    parameters.clear_caches()  # as if the cache had expired: the next fetch sees this value
    try:
        secrets.put_secret_value(SecretId=MINIO_SECRET_NAME, SecretString=value)
    except secrets.exceptions.ResourceNotFoundException:
        secrets.create_secret(Name=MINIO_SECRET_NAME, SecretString=value)


def upload(s3: Any, key: str, body: bytes) -> dict[str, Any]:
    """Upload to landing; the envelope the forwarder would send (inline unless over the limit)."""
    version = s3.put_object(Bucket=LANDING, Key=key, Body=body)["VersionId"]
    fields = {
        "file_id": file_id(LANDING, key, version),
        "bucket": LANDING,
        "key": key,
        "version_id": version,
        "size": len(body),
        "event_time_ms": EVENT_TIME_MS,
        "forwarded_at_ms": EVENT_TIME_MS + 500,
    }
    if len(body) > load_tunables().forwarder.inline_limit_bytes:
        return Envelope.ref(**fields).to_dict()
    return Envelope.inline(body, **fields).to_dict()


def stage(s3: Any, lines: list[dict[str, Any] | bytes], name: str | None = None) -> str:
    """A staged window as Firehose writes it; returns its key."""
    name = name or f"sluice-test-0-1-2026-11-25-12-00-00-{uuid.uuid4()}"
    key = f"{WINDOW_PREFIX}{name}.json.gz"
    data = b"".join(
        (line if isinstance(line, bytes) else json.dumps(line, ensure_ascii=False).encode()) + b"\n"
        for line in lines
    )
    s3.put_object(Bucket=STAGING, Key=key, Body=gzip.compress(data))
    return key


def deliver(key: str) -> dict[str, Any]:
    return handler.lambda_handler(staged_event(STAGING, key), LocalLambdaContext("delivery", 120))


def delivered(minio: Minio, bucket: str) -> list[tuple[str, bytes]]:
    """(original key, bytes) of every file in every archive, as the manifests map them."""
    files = []
    for manifest, members, _ in archives(minio, bucket).values():
        for entry in manifest["files"]:
            files.append((entry["key"], members[entry["member_name"]]))
    return sorted(files)


def excluded(minio: Minio, bucket: str) -> list[dict[str, Any]]:
    """The exclusions of the one window manifest in MinIO."""
    [window] = window_manifests(minio, bucket).values()
    found: list[dict[str, Any]] = window["excluded"]
    return found


def ledger() -> Ledger:
    return Ledger(boto3.client("dynamodb", region_name=REGION), LEDGER_TABLE, 3_456_000)


def window_id(key: str) -> str:
    return key.rsplit("/", 1)[1].removesuffix(".json.gz")


# ---------------------------------------------------------------- tests


def test_window_is_delivered_byte_for_byte(stack: Any, s3: Any, minio: Minio) -> None:
    # GIVEN a window with text, binary and by-reference files
    bodies = {
        "acme/report.json": b'{"a": 1}',
        "acme/pixel.png": bytes(range(256)),
        "acme/big.bin": bytes(range(256)) * 400,  # over the inline limit: a ref
    }
    key = stage(s3, [upload(s3, k, b) for k, b in bodies.items()])
    # WHEN delivery runs
    result = deliver(key)
    # THEN one archive holds every file byte for byte, MANIFEST.json first
    assert result["windows"][0]["outcome"] == "delivered"
    [(name, (manifest, members, order))] = archives(minio, stack.bucket).items()
    assert order[0] == "MANIFEST.json"
    assert {e["key"]: members[e["member_name"]] for e in manifest["files"]} == bodies
    assert {e["key"]: e["check"] for e in manifest["files"]}["acme/big.bin"] in {
        "streamed-sha256",
        "s3-checksum-sha256",
    }
    assert name == f"sluice/dt=2026-11-25/hour=12/{window_id(key)}.tar.gz"
    # ... and the window manifest, written last, lists the part and every file
    [(manifest_key, window)] = window_manifests(minio, stack.bucket).items()
    assert manifest_key == f"sluice/dt=2026-11-25/hour=12/{window_id(key)}.manifest.json"
    part_bytes = minio.get_object(stack.bucket, name).read()
    assert window["parts"] == [
        {
            "part": 1,
            "key": name,
            "sha256": hashlib.sha256(part_bytes).hexdigest(),
            "size": len(part_bytes),
            "file_count": 3,
        }
    ]
    assert window["files"] == [{**entry, "part": 1} for entry in manifest["files"]]
    assert not list(minio.list_objects(stack.bucket, prefix="sluice/_incoming/", recursive=True))
    # ... the ledger says DELIVERED, with every file's latency, and the staged window is tagged
    record = ledger().get_window(window_id(key))
    assert record.state is WindowState.DELIVERED
    assert record.latency.files == len(bodies)
    tags = s3.get_object_tagging(Bucket=STAGING, Key=key)["TagSet"]
    assert {"Key": "sluice-delivered", "Value": "true"} in tags
    # AND delivering it again returns at once
    assert deliver(key)["windows"][0]["outcome"] == "already-delivered"


def test_same_record_twice_in_a_window_is_delivered_once(stack: Any, s3: Any, minio: Minio) -> None:
    # GIVEN a window where Firehose repeated a record
    record = upload(s3, "acme/twice.txt", b"once")
    key = stage(s3, [record, upload(s3, "acme/other.txt", b"other"), record])
    # WHEN delivered THEN the file is in the archive once
    deliver(key)
    assert delivered(minio, stack.bucket) == [
        ("acme/other.txt", b"other"),
        ("acme/twice.txt", b"once"),
    ]


def test_two_windows_sharing_a_file_concurrently(
    stack: Any, s3: Any, minio: Minio, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN DynamoDB's one-call-at-a-time guarantee, which moto in process lacks
    serialized = SerializedClient(boto3.client("dynamodb", region_name=REGION))
    monkeypatch.setattr(clients, "dynamodb", lambda: serialized)
    handler.dependencies.cache_clear()
    handler.dependencies()  # built once, before the threads race to build it
    # ... and two windows that both carry the same file (a requeue or forwarder retry)
    shared = upload(s3, "acme/shared.txt", b"shared")
    first = stage(s3, [shared, upload(s3, "acme/a.txt", b"a")])
    second = stage(s3, [upload(s3, "acme/b.txt", b"b"), shared])
    # WHEN both are delivered at the same time
    errors: list[BaseException] = []

    def run(key: str) -> None:
        try:
            deliver(key)
        except BaseException as err:  # noqa: BLE001  # reported below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(k,)) for k in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # THEN exactly one archive has the shared file, and every file is delivered once
    assert errors == []
    assert delivered(minio, stack.bucket) == [
        ("acme/a.txt", b"a"),
        ("acme/b.txt", b"b"),
        ("acme/shared.txt", b"shared"),
    ]


def test_crash_after_upload_before_delivered(
    stack: Any, s3: Any, minio: Minio, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a delivery that dies after uploading but before marking the window DELIVERED
    key = stage(s3, [upload(s3, f"acme/c{i}.txt", f"c{i}".encode()) for i in range(5)])
    with monkeypatch.context() as patch:
        patch.setattr(Ledger, "mark_delivered", _raise("killed"))
        with pytest.raises(RuntimeError, match="killed"):
            deliver(key)
    [(name, _)] = archives(minio, stack.bucket).items()
    first_etag = minio.stat_object(stack.bucket, name).etag
    assert ledger().get_window(window_id(key)).state is WindowState.CLAIMED
    # WHEN Lambda retries it
    handler.dependencies.cache_clear()
    assert deliver(key)["windows"][0]["outcome"] == "delivered"
    # THEN the archive was rebuilt to identical bytes and the window is DELIVERED
    assert minio.stat_object(stack.bucket, name).etag == first_etag
    assert len(archives(minio, stack.bucket)) == 1
    assert ledger().get_window(window_id(key)).state is WindowState.DELIVERED
    assert [k for k, _ in delivered(minio, stack.bucket)] == [f"acme/c{i}.txt" for i in range(5)]


def test_archive_settings_changed_between_attempts_do_not_change_the_plan(
    stack: Any, s3: Any, minio: Minio, monkeypatch: pytest.MonkeyPatch, tunables_path: Any
) -> None:
    # GIVEN a first attempt with a 1 MiB part cap that uploads its parts, then dies
    tunables_path(archive_max_input_bytes=1024 * 1024)
    bodies = {f"acme/plan{i}.bin": bytes([i]) * 400_000 for i in range(6)}
    key = stage(s3, [upload(s3, k, b) for k, b in bodies.items()])
    with monkeypatch.context() as patch:
        patch.setattr(Ledger, "mark_delivered", _raise("killed"))
        with pytest.raises(RuntimeError, match="killed"):
            deliver(key)
    first = sorted(archives(minio, stack.bucket))
    # WHEN a deploy raises the part cap before the retry
    tunables_path()
    deliver(key)
    # THEN the retry builds the same parts (the plan persisted at the first attempt)
    assert sorted(archives(minio, stack.bucket)) == first
    assert len(first) == 3
    assert dict(delivered(minio, stack.bucket)) == bodies


def _uploads_killed_after(monkeypatch: pytest.MonkeyPatch, allowed: int) -> list[str]:
    """Count delivery's part uploads by key; the one after `allowed` kills the invocation."""
    uploaded: list[str] = []

    def upload_verified(access: Any, key: str, *args: Any, **kwargs: Any) -> Any:
        if len(uploaded) == allowed:
            raise RuntimeError("killed")
        uploaded.append(key)
        return real_upload_verified(access, key, *args, **kwargs)

    monkeypatch.setattr(delivering, "upload_verified", upload_verified)
    return uploaded


def test_a_window_killed_after_its_first_part_uploads_each_part_once(
    stack: Any, s3: Any, minio: Minio, monkeypatch: pytest.MonkeyPatch, tunables_path: Any
) -> None:
    # GIVEN a window of three parts whose first invocation is killed after part one
    tunables_path(archive_max_input_bytes=1024 * 1024)
    bodies = {f"acme/k{i}.bin": bytes([i]) * 700_000 for i in range(3)}
    key = stage(s3, [upload(s3, k, b) for k, b in bodies.items()])
    uploaded = _uploads_killed_after(monkeypatch, allowed=1)
    with pytest.raises(RuntimeError, match="killed"):
        deliver(key)
    # THEN nothing is under a final key yet: part one waits under _incoming/, recorded verified
    assert archives(minio, stack.bucket) == {}
    assert window_manifests(minio, stack.bucket) == {}
    assert sorted(ledger().get_window(window_id(key)).verified_parts) == [1]
    # WHEN the retry runs (it may upload as much as it needs)
    handler.dependencies.cache_clear()
    uploaded_before = len(uploaded)
    monkeypatch.setattr(delivering, "upload_verified", _counting(uploaded))
    assert deliver(key)["windows"][0]["outcome"] == "delivered"
    # THEN each part was uploaded once in all, and the window holds every file once
    assert uploaded_before == 1
    assert sorted(uploaded) == sorted(set(uploaded))
    assert len(uploaded) == 3
    assert dict(delivered(minio, stack.bucket)) == bodies
    [window] = window_manifests(minio, stack.bucket).values()
    assert [p["key"] for p in window["parts"]] == sorted(archives(minio, stack.bucket))


def test_a_retry_after_a_deploy_that_changes_the_gzip_codec_builds_with_the_first_codec(
    stack: Any, s3: Any, minio: Minio, monkeypatch: pytest.MonkeyPatch, tunables_path: Any
) -> None:
    # GIVEN a window of three parts whose first attempt, with zlib level 6, verifies part one
    tunables_path(archive_max_input_bytes=1024 * 1024, gzip_codec="zlib", gzip_level=6)
    bodies = {f"acme/z{i}.bin": bytes([i]) * 700_000 for i in range(3)}
    key = stage(s3, [upload(s3, k, b) for k, b in bodies.items()])
    _uploads_killed_after(monkeypatch, allowed=1)
    with pytest.raises(RuntimeError, match="killed"):
        deliver(key)
    # WHEN ISA-L is deployed before the retry
    tunables_path(archive_max_input_bytes=1024 * 1024, gzip_codec="isal", gzip_level=2)
    handler.dependencies.cache_clear()
    monkeypatch.setattr(delivering, "upload_verified", real_upload_verified)
    assert deliver(key)["windows"][0]["outcome"] == "delivered"
    # THEN every part is the bytes zlib level 6 gives its tar stream (the persisted plan won)
    assert ledger().get_window(window_id(key)).plan["gzip_codec"] == "zlib"
    for name in archives(minio, stack.bucket):
        data = minio.get_object(stack.bucket, name).read()
        assert gzip.compress(gzip.decompress(data), compresslevel=6, mtime=0)[10:] == data[10:]
    assert dict(delivered(minio, stack.bucket)) == bodies


def _counting(uploaded: list[str]) -> Any:
    """Delivery's part uploads, recorded by key."""

    def upload_verified(access: Any, key: str, *args: Any, **kwargs: Any) -> Any:
        uploaded.append(key)
        return real_upload_verified(access, key, *args, **kwargs)

    return upload_verified


def test_ref_gone_after_its_part_was_verified_is_still_delivered_and_a_later_one_excluded(
    stack: Any, s3: Any, minio: Minio, monkeypatch: pytest.MonkeyPatch, tunables_path: Any
) -> None:
    # GIVEN a window of three parts whose first invocation verified part one, then died
    tunables_path(archive_max_input_bytes=1024 * 1024)
    records = [upload(s3, f"acme/g{i}.bin", bytes([i]) * 700_000) for i in range(3)]
    key = stage(s3, records)
    _uploads_killed_after(monkeypatch, allowed=1)
    with pytest.raises(RuntimeError, match="killed"):
        deliver(key)
    # WHEN the files of parts one and two are deleted for good before the retry
    for record in records[:2]:
        s3.delete_object(Bucket=LANDING, Key=record["key"], VersionId=record["version_id"])
    monkeypatch.setattr(delivering, "upload_verified", real_upload_verified)
    handler.dependencies.cache_clear()
    deliver(key)
    # THEN part one stands as verified (its bytes were read and checked before the delete),
    # the file of part two is excluded with its reason, in the manifest and in the ledger,
    # and no file is in two archives
    assert [k for k, _ in delivered(minio, stack.bucket)] == ["acme/g0.bin", "acme/g2.bin"]
    assert [(x["key"], x["reason"]) for x in excluded(minio, stack.bucket)] == [
        ("acme/g1.bin", "version-gone")
    ]
    assert [x.reason for x in ledger().get_window(window_id(key)).exclusions] == ["version-gone"]


def test_each_ref_is_read_from_s3_once_unless_it_is_over_the_parts_copy_budget(
    stack: Any, s3: Any, minio: Minio, tunables_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN parts of at most 1 MiB of input, and a window of two small refs, an inline file and
    # a ref bigger than a part (alone in its part, and over the budget for a local copy)
    tunables_path(archive_max_input_bytes=1024 * 1024)
    bodies = {
        "acme/ref1.bin": b"1" * 100_000,
        "acme/ref2.bin": b"2" * 200_000,
        "acme/inline.txt": b"inline",
        "acme/huge.bin": bytes(range(256)) * 5_000,  # 1.28 MB
    }
    key = stage(s3, [upload(s3, k, b) for k, b in bodies.items()])
    reads: list[str] = []
    real = handler.dependencies().s3.get_object

    def counting(**kwargs: Any) -> Any:
        if kwargs["Bucket"] == LANDING:
            reads.append(kwargs["Key"])
        return real(**kwargs)

    monkeypatch.setattr(handler.dependencies().s3, "get_object", counting)
    # WHEN delivered
    assert deliver(key)["windows"][0]["outcome"] == "delivered"
    # THEN every file arrives byte for byte, the small refs read once and the big one twice
    assert dict(delivered(minio, stack.bucket)) == bodies
    assert sorted(reads) == ["acme/huge.bin", "acme/huge.bin", "acme/ref1.bin", "acme/ref2.bin"]


def test_crash_between_claims(
    stack: Any, s3: Any, minio: Minio, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a delivery that dies after claiming part of its files
    key = stage(s3, [upload(s3, f"acme/d{i}.txt", f"d{i}".encode()) for i in range(6)])
    real_claim = Ledger.claim_files

    def claim_half_then_die(self: Ledger, window: str, ids: list[str]) -> dict[str, str]:
        real_claim(self, window, ids[:3])
        raise RuntimeError("killed between claims")

    with monkeypatch.context() as patch:
        patch.setattr(Ledger, "claim_files", claim_half_then_die)
        with pytest.raises(RuntimeError, match="between claims"):
            deliver(key)
    assert archives(minio, stack.bucket) == {}, "no byte uploaded before every claim was tried"
    # WHEN it is retried THEN every file is delivered once
    handler.dependencies.cache_clear()
    deliver(key)
    assert [k for k, _ in delivered(minio, stack.bucket)] == [f"acme/d{i}.txt" for i in range(6)]


def test_window_owning_nothing_is_empty(stack: Any, s3: Any, minio: Minio) -> None:
    # GIVEN a window whose only file another window already delivered
    record = upload(s3, "acme/taken.txt", b"taken")
    deliver(stage(s3, [record]))
    late = stage(s3, [record])
    # WHEN the late window is delivered
    result = deliver(late)
    # THEN it is EMPTY and writes no object
    assert result["windows"][0]["outcome"] == "empty"
    assert ledger().get_window(window_id(late)).state is WindowState.EMPTY
    assert len(archives(minio, stack.bucket)) == 1


def test_claims_go_in_batches_and_keep_only_what_another_window_owns(
    stack: Any, s3: Any, minio: Minio, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN claims of 2 ids a call, and a window of 5 files whose 4th another window delivered
    monkeypatch.setattr(delivering, "CLAIM_BATCH", 2)
    records = [upload(s3, f"acme/batch{i}.txt", f"body {i}".encode()) for i in range(5)]
    deliver(stage(s3, [records[3]]))
    calls: list[int] = []
    claim_files = Ledger.claim_files

    def counted(self: Ledger, window: str, file_ids: Any) -> dict[str, str]:
        calls.append(len(file_ids))
        return claim_files(self, window, file_ids)

    monkeypatch.setattr(Ledger, "claim_files", counted)
    # WHEN the window is delivered
    key = stage(s3, records)
    deliver(key)
    # THEN its ids were claimed 2 at a time, and it delivered the 4 files it owns, once each
    assert calls == [2, 2, 1]
    record = ledger().get_window(window_id(key))
    assert (record.state, record.file_count) == (WindowState.DELIVERED, 4)
    assert delivered(minio, stack.bucket) == sorted(
        (f"acme/batch{i}.txt", f"body {i}".encode()) for i in range(5)
    )


def test_window_over_the_part_cap_is_split(
    stack: Any, s3: Any, minio: Minio, tunables_path: Any
) -> None:
    # GIVEN a part cap of 1 MiB and a window of 3 MiB of files (refs: they are 400 KiB each)
    tunables_path(archive_max_input_bytes=1024 * 1024)
    bodies = {f"acme/part{i}.bin": bytes([i]) * 400_000 for i in range(8)}
    key = stage(s3, [upload(s3, k, b) for k, b in bodies.items()])
    # WHEN delivered
    deliver(key)
    # THEN the window is in several numbered parts, each file exactly once, in window order
    found = archives(minio, stack.bucket)
    names = sorted(found)
    assert names == [
        f"sluice/dt=2026-11-25/hour=12/{window_id(key)}.p{n:03d}.tar.gz"
        for n in range(1, len(names) + 1)
    ]
    assert len(names) == 4
    assert dict(delivered(minio, stack.bucket)) == bodies
    for manifest, _, _ in found.values():
        assert sum(e["size"] for e in manifest["files"]) <= 1024 * 1024
        assert manifest["parts"] == 4


def test_large_ref_is_streamed_with_bounded_memory(
    seaweedfs: Any,
    moto_server: str,
    minio: Minio,
    function_env: Any,
    tunables_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a 50 MiB file travelling by reference, on moto in server mode (in process, moto's
    # own copies of the object would count against delivery's memory)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_server)
    s3 = boto3.client("s3", region_name=REGION)
    resources.create_bucket(s3, LANDING, REGION, versioned=True)
    resources.create_bucket(s3, STAGING, REGION, versioned=False)
    provision_stack(seaweedfs)
    function_env("delivery")
    body = bytes(range(256)) * (50 * 4096)
    key = stage(s3, [upload(s3, "acme/large.bin", body)])
    handler.dependencies()  # cold start outside the measurement
    # WHEN delivered, with Python's allocations traced
    tracemalloc.start()
    try:
        deliver(key)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # THEN the file arrives intact and delivery never held it whole
    assert delivered(minio, seaweedfs.bucket) == [("acme/large.bin", body)]
    assert peak < 24 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"


def test_awkward_keys_extract_safely(stack: Any, s3: Any, minio: Minio, tmp_path: Path) -> None:
    # GIVEN a 1,024-byte single-segment key and a file that is also a directory prefix
    long_key = "x" * 1024
    bodies = {long_key: b"long", "acme/dir": b"file", "acme/dir/inner": b"inner"}
    key = stage(s3, [upload(s3, k, b) for k, b in bodies.items()])
    deliver(key)
    [(name, (manifest, _, _))] = archives(minio, stack.bucket).items()
    # WHEN the archive is extracted with tarfile's safe filter
    data = minio.get_object(stack.bucket, name).read()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(tmp_path, filter="data")
    # THEN every file extracts, and the manifest maps each member to its original key
    for entry in manifest["files"]:
        assert (tmp_path / entry["member_name"]).read_bytes() == bodies[entry["key"]]
    assert {e["key"] for e in manifest["files"]} == set(bodies)


def test_corrupted_line_is_excluded_and_the_rest_delivered(
    stack: Any, s3: Any, minio: Minio
) -> None:
    # GIVEN a window with one line that is not an envelope
    key = stage(
        s3, [upload(s3, "acme/ok1.txt", b"1"), b'{"broken": tru', upload(s3, "acme/ok2.txt", b"2")]
    )
    # WHEN delivered
    deliver(key)
    # THEN the two good files are delivered and the bad line is in the manifest's exclusions
    assert delivered(minio, stack.bucket) == [("acme/ok1.txt", b"1"), ("acme/ok2.txt", b"2")]
    [exclusion] = excluded(minio, stack.bucket)
    assert exclusion["reason"] == "unparseable-line"
    assert "line 2" in exclusion["detail"]


def test_a_broken_copy_of_a_file_does_not_keep_its_intact_copy_from_delivery(
    stack: Any, s3: Any, minio: Minio
) -> None:
    # GIVEN a file whose envelope reached one window damaged and another window intact
    intact = upload(s3, "acme/twice.txt", b"twice")
    damaged = {**intact, "size": "five"}
    first = stage(s3, [damaged, upload(s3, "acme/other.txt", b"other")])
    second = stage(s3, [intact])
    # WHEN the window with the damaged copy is delivered first, then the other
    deliver(first)
    deliver(second)
    # THEN the damaged line is excluded without claiming the file, which the intact copy delivers
    assert delivered(minio, stack.bucket) == [
        ("acme/other.txt", b"other"),
        ("acme/twice.txt", b"twice"),
    ]
    [exclusion] = ledger().get_window(window_id(first)).exclusions
    assert exclusion.reason == "unparseable-line"
    assert exclusion.file_id != intact["file_id"]
    assert f"names file_id {intact['file_id']}" in exclusion.detail


def test_ref_whose_version_is_gone_is_excluded(stack: Any, s3: Any, minio: Minio) -> None:
    # GIVEN a window with a ref whose landing version was deleted for good
    gone = upload(s3, "acme/gone.bin", b"g" * 100_000)
    s3.delete_object(Bucket=LANDING, Key="acme/gone.bin", VersionId=gone["version_id"])
    key = stage(s3, [gone, upload(s3, "acme/here.txt", b"here")])
    # WHEN delivered
    deliver(key)
    # THEN the rest is delivered and the loss is recorded with its reason
    assert delivered(minio, stack.bucket) == [("acme/here.txt", b"here")]
    assert [(x["key"], x["reason"]) for x in excluded(minio, stack.bucket)] == [
        ("acme/gone.bin", "version-gone")
    ]
    assert ledger().get_window(window_id(key)).exclusions[0].reason == "version-gone"


def test_ref_s3_refuses_to_read_is_excluded_and_the_window_goes_on(
    stack: Any, s3: Any, minio: Minio, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a window of good files and one ref S3 refuses to read (its KMS key disabled, a
    # policy change: moto enforces no policy, so its GetObject is made to answer AccessDenied)
    denied = upload(s3, "acme/denied.bin", b"d" * 100_000)
    big = b"b" * 90_000  # over the inline limit: a ref that reads
    key = stage(s3, [denied, upload(s3, "acme/ok.txt", b"ok"), upload(s3, "acme/big.bin", big)])
    refused: list[str] = []
    real_get_object = moto_s3_models.S3Backend.get_object

    def get_object(self: Any, bucket_name: str, key_name: str, *args: Any, **kwargs: Any) -> Any:
        if key_name == "acme/denied.bin":
            refused.append(key_name)
            raise S3AccessDeniedError
        return real_get_object(self, bucket_name, key_name, *args, **kwargs)

    monkeypatch.setattr(moto_s3_models.S3Backend, "get_object", get_object)
    monkeypatch.setattr(refs, "READ_RETRY_SECONDS", 0.01)
    reads: list[str] = []
    clients.s3().meta.events.register(  # the client delivery uses (one per cold start)
        "provide-client-params.s3.GetObject", lambda params, **_: reads.append(params["Key"])
    )
    # WHEN delivered
    deliver(key)
    # THEN after its bounded attempts it is excluded with the code, and the rest is delivered
    assert refused
    assert reads.count("acme/denied.bin") == refs.READ_ATTEMPTS
    assert delivered(minio, stack.bucket) == [("acme/big.bin", big), ("acme/ok.txt", b"ok")]
    exclusions = excluded(minio, stack.bucket)
    assert [(x["key"], x["reason"]) for x in exclusions] == [
        ("acme/denied.bin", "unreadable:AccessDenied")
    ]
    assert f"after {refs.READ_ATTEMPTS} attempts" in exclusions[0]["detail"]
    assert ledger().get_window(window_id(key)).state is WindowState.DELIVERED


def test_two_invocations_of_one_window_at_once_deliver_it_once(
    stack: Any, s3: Any, minio: Minio, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN DynamoDB's one-call-at-a-time guarantee, which moto in process lacks (a read could
    # see an item half updated by the other thread), ...
    serialized = SerializedClient(boto3.client("dynamodb", region_name=REGION))
    monkeypatch.setattr(clients, "dynamodb", lambda: serialized)
    handler.dependencies.cache_clear()
    # ... a staged window, and its first upload held until a second invocation of the same
    # window has asked for the lease (a duplicate S3 event, the sweep: they overlap)
    key = stage(s3, [upload(s3, "acme/once.txt", b"once")])
    asked: list[str] = []
    real_acquire = Ledger.acquire_lease

    def acquire(self: Ledger, window_id: str, holder: str, until_ms: int) -> bool:
        asked.append(holder)
        return real_acquire(self, window_id, holder, until_ms)

    uploads: list[str] = []
    real_upload = delivering.upload_verified

    def upload_when_both_asked(*args: Any, **kwargs: Any) -> Any:
        wait_until(lambda: len(set(asked)) >= 2 or None, what="the second invocation", timeout=30)
        uploads.append(args[1])
        return real_upload(*args, **kwargs)

    monkeypatch.setattr(Ledger, "acquire_lease", acquire)
    monkeypatch.setattr(delivering, "upload_verified", upload_when_both_asked)
    monkeypatch.setattr(lease, "POLL_SECONDS", 0.05)
    deps = handler.dependencies()
    # WHEN two invocations deliver it at once
    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = list(pool.map(lambda _: delivering.deliver_window(STAGING, key, deps), [1, 2]))
    # THEN one built and uploaded it; the other waited, wrote nothing, and reports what the first
    # did
    assert len(uploads) == 1
    assert sorted(r.outcome for r in reports) == ["already-delivered", "delivered"]
    assert delivered(minio, stack.bucket) == [("acme/once.txt", b"once")]


def test_a_window_whose_lease_lapsed_is_taken_over(
    stack: Any, s3: Any, minio: Minio, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a window whose lease an invocation took and then died holding (it lapses)
    key = stage(s3, [upload(s3, "acme/orphan.txt", b"orphan")])
    clock = [time.time()]
    monkeypatch.setattr(lease, "POLL_SECONDS", 0.0)
    ledger().acquire_lease(window_id(key), "dead-holder", int((clock[0] + 5) * 1000))
    deps = handler.dependencies()
    waits: list[float] = []

    def sleep(seconds: float) -> None:  # the poll's wait, on a clock the test moves
        waits.append(seconds)
        clock[0] += 3

    ledger_clock = dataclasses.replace(
        deps, clock=lambda: clock[0], sleep=sleep, ledger=ledger_with_clock(lambda: clock[0])
    )
    # WHEN another invocation comes
    report = delivering.deliver_window(STAGING, key, ledger_clock)
    # THEN it waited for the lease to lapse, took it over, and delivered the window
    assert waits
    assert report.outcome == "delivered"
    assert delivered(minio, stack.bucket) == [("acme/orphan.txt", b"orphan")]


def ledger_with_clock(clock: Callable[[], float]) -> Ledger:
    return Ledger(boto3.client("dynamodb", region_name=REGION), LEDGER_TABLE, 3600, clock)


def test_a_staged_window_cut_short_delivers_what_can_be_read(
    stack: Any, s3: Any, minio: Minio
) -> None:
    # GIVEN a staged window whose gzip stream is cut short after its first files
    first = [upload(s3, f"acme/early-{n}.txt", f"early {n}".encode() * 50) for n in range(3)]
    lost = [upload(s3, f"acme/late-{n}.bin", bytes(range(256)) * 40) for n in range(20)]
    key = stage(s3, [*first, *lost])
    whole = s3.get_object(Bucket=STAGING, Key=key)["Body"].read()
    s3.put_object(Bucket=STAGING, Key=key, Body=whole[: len(whole) * 2 // 3])
    # WHEN delivered
    deliver(key)
    # THEN the files read before the cut are delivered, the rest is excluded as one with its
    # reason (reconcile names those files missing), and the window is not parked
    delivered_keys = [k for k, _ in delivered(minio, stack.bucket)]
    assert [u["key"] for u in first] == delivered_keys[: len(first)]
    assert len(delivered_keys) < len(first) + len(lost)
    assert [x["reason"] for x in excluded(minio, stack.bucket)] == ["truncated-window"]
    assert ledger().get_window(window_id(key)).state is WindowState.DELIVERED


def test_minio_unreachable_then_redriven(stack: Any, s3: Any, minio: Minio) -> None:
    # GIVEN MinIO unreachable (the secret points at a closed port)
    set_secret("127.0.0.1:9", stack.access_key, stack.secret_key, stack.bucket)
    key = stage(s3, [upload(s3, "acme/wait.txt", b"waited")])
    # WHEN delivery runs THEN it raises, and nothing is marked delivered
    with pytest.raises(Exception):  # noqa: B017, PT011  # any transport error: Lambda retries
        deliver(key)
    assert ledger().get_window(window_id(key)).state is WindowState.CLAIMED
    assert archives(minio, stack.bucket) == {}
    # GIVEN the on-failure record in the delivery DLQ and MinIO back
    sqs = boto3.client("sqs", region_name=REGION)
    dlq = sqs.get_queue_url(QueueName=DELIVERY_DLQ_NAME)["QueueUrl"]
    sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps(on_failure_record(key)))
    set_secret(stack.endpoint, stack.access_key, stack.secret_key, stack.bucket)
    # WHEN redrive runs (its async invoke stands in for Lambda's, which cannot run here)
    report = run_redrive(
        invoke=lambda event: handler.lambda_handler(event, LocalLambdaContext("delivery", 120))
    )
    # THEN the window is delivered and the DLQ is empty
    assert report["dlq_redriven"] == 1
    assert delivered(minio, stack.bucket) == [("acme/wait.txt", b"waited")]
    assert "Messages" not in sqs.receive_message(QueueUrl=dlq)


def test_wrong_credentials_then_rotated_secret(stack: Any, s3: Any, minio: Minio) -> None:
    # GIVEN the cached secret holds a wrong key, and the secret has since been rotated
    set_secret(stack.endpoint, stack.access_key, "wrong-secret", stack.bucket)
    key = stage(s3, [upload(s3, "acme/rotated.txt", b"rotated")])
    assert handler.dependencies().minio.settings.secret_key == "wrong-secret"  # now cached
    set_secret(stack.endpoint, stack.access_key, stack.secret_key, stack.bucket)
    # WHEN delivery runs THEN the authentication failure refetches the secret once and succeeds
    deliver(key)
    assert delivered(minio, stack.bucket) == [("acme/rotated.txt", b"rotated")]


@pytest.mark.parametrize("parts", ["single", "multi"])
def test_corrupted_upload_is_caught_deleted_and_retried(
    stack: Any,
    s3: Any,
    minio: Minio,
    tunables_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    parts: str,
) -> None:
    # GIVEN bytes corrupted between Sluice's hashing and the minio client on the first attempt
    # (single part: the server's BadDigest; multipart: Sluice's own ETag check)
    tunables_path(min_part_size_bytes=5 * 1024 * 1024)
    size = 100 if parts == "single" else 12 * 1024 * 1024
    body = bytes(range(256)) * (size // 256)
    key = stage(s3, [upload(s3, "acme/corrupt-me.bin", body)])
    corruptions = {"left": 1}

    class FlipFirstByte(io.RawIOBase):
        def __init__(self, inner: Any) -> None:
            self.inner, self.flipped = inner, False

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            data = self.inner.read(size)
            if data and not self.flipped:
                self.flipped = True
                return bytes([data[0] ^ 0xFF]) + data[1:]
            return data

    def corrupt(reader: Any) -> Any:
        if corruptions["left"] > 0:
            corruptions["left"] -= 1
            return FlipFirstByte(reader)
        return reader

    monkeypatch.setattr(handler, "dependencies", _with_corrupt(handler.dependencies(), corrupt))
    # WHEN delivered
    deliver(key)
    # THEN the retry uploaded good bytes: the archive verifies and holds the file intact
    assert corruptions["left"] == 0
    assert delivered(minio, stack.bucket) == [("acme/corrupt-me.bin", body)]


def test_landing_versions_read_by_reference_are_tagged_delivered(
    stack: Any, s3: Any, minio: Minio
) -> None:
    # GIVEN a window with one inline file and one by reference
    small = upload(s3, "acme/small.json", b"{}")
    big = upload(s3, "acme/big.bin", bytes(range(256)) * 400)
    assert (small["body_encoding"], big["body_encoding"]) == ("utf8", "ref")
    # WHEN it is delivered
    assert deliver(stage(s3, [small, big]))["windows"][0]["outcome"] == "delivered"

    # THEN the version read by reference carries the tag the landing lifecycle waits for before
    # it moves or expires the file; the inline one needs none (it travelled in the window)
    def tags(envelope: dict[str, Any]) -> dict[str, str]:
        answer = s3.get_object_tagging(
            Bucket=LANDING, Key=envelope["key"], VersionId=envelope["version_id"]
        )
        return {t["Key"]: t["Value"] for t in answer["TagSet"]}

    assert tags(big) == {"sluice-delivered": "true"}
    assert tags(small) == {}


def test_a_window_staged_into_an_hour_the_sweep_passed_puts_the_sweep_back(
    stack: Any, s3: Any, minio: Minio
) -> None:
    # GIVEN redrive's sweep already past 2026-11-25 12:00 (its hours done and marked)
    book = ledger()
    hour_start = datetime(2026, 11, 25, 12, tzinfo=UTC).timestamp()
    book.set_sweep_low_water(hour_start + 5 * 3600)
    # WHEN a window of that hour, staged late, is delivered
    key = stage(s3, [upload(s3, "acme/late.txt", b"late")])
    assert deliver(key)["windows"][0]["outcome"] == "delivered"
    # THEN the sweep's mark is back on its hour, so the hour's marker is written again with it
    assert book.sweep_low_water() == hour_start


@pytest.mark.parametrize(
    ("error", "parked"),
    [(WINDOW_ERROR, True), (ENVIRONMENT_ERROR, False)],
    ids=["its-own-failure", "minio-unreachable"],
)
def test_only_a_windows_own_failures_park_it(
    stack: Any, s3: Any, error: dict[str, str], parked: bool
) -> None:
    # GIVEN a window that keeps failing and keeps coming back from the DLQ
    key = stage(s3, [upload(s3, "acme/doomed.txt", b"d")])
    sqs = boto3.client("sqs", region_name=REGION)
    dlq = sqs.get_queue_url(QueueName=DELIVERY_DLQ_NAME)["QueueUrl"]
    max_redrives = load_tunables().redrive.max_redrives
    # WHEN redrive sees its on-failure record max_redrives + 1 times (MinIO healthy by then)
    for _ in range(max_redrives + 1):
        sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps(on_failure_record(key, error)))
        run_redrive(invoke=lambda event: None, healthy=True)
    # THEN its own failure PARKS it, alarmed; MinIO's never does (an outage must not park
    # every window): nothing is counted against it, and no message circulates
    record = ledger().get_window(window_id(key))
    assert (record is not None and record.state is WindowState.PARKED) is parked
    assert "Messages" not in sqs.receive_message(QueueUrl=dlq)


def test_files_through_every_function(
    stack: Any, s3: Any, minio: Minio, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN producers uploading files of every kind to the landing bucket
    uploads = {
        "acme/2026/report one.json": b'{"r": 1}',
        "acme/prices+fx.csv": b"ccy,rate\nEUR,1.17\n",
        "globex/ünï/日本.txt": "こんにちは".encode(),
        "globex/blob.bin": bytes(range(256)) * 3,
        "initech/big.json": b'{"x": "' + b"y" * 100_000 + b'"}',
        "orders/2026-11-25.ndjson": b'{"order_id": "A", "amount_pence": 1, "currency": "GBP"}\n',
    }
    records = [put_and_notify(s3, LANDING, k, b) for k, b in uploads.items()]
    firehose = InProcessFirehose.for_streams(
        STREAMS,
        staging_bucket=STAGING,
        s3=s3,
        processor=processor.lambda_handler,
        tunables=load_tunables().firehose,
    )
    monkeypatch.setattr(clients, "firehose", lambda: firehose)
    # WHEN they go through forwarder -> Firehose -> processor -> staging -> delivery
    response = forwarder.lambda_handler(
        sqs_event(*(notification(r) for r in records)), LocalLambdaContext("forwarder")
    )
    assert response["batchItemFailures"] == []
    for staged_key in firehose.flush():
        if staged_key.startswith("buffers/"):
            deliver(staged_key)
    # THEN every file is in MinIO exactly once, byte for byte
    assert delivered(minio, stack.bucket) == sorted(uploads.items())


# ---------------------------------------------------------------- helpers


def _raise(message: str) -> Callable[..., Any]:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(message)

    return fail


def _with_corrupt(deps: Any, corrupt: Callable[[Any], Any]) -> Callable[[], Any]:
    import dataclasses  # noqa: PLC0415  # only this helper needs it

    patched = dataclasses.replace(deps, corrupt=corrupt)
    return lambda: patched


def run_redrive(
    invoke: Callable[[dict[str, Any]], Any], healthy: bool | None = None
) -> dict[str, Any]:
    import dataclasses  # noqa: PLC0415  # only this helper needs it

    deps = redrive.dependencies()
    changes: dict[str, Any] = {"invoke": invoke, "sleep": lambda _: None}
    if healthy is not None:
        changes["minio_healthy"] = lambda: healthy
    tunables = deps.redrive.tunables._replace(min_age_seconds=0)
    patched = dataclasses.replace(
        deps, redrive=dataclasses.replace(deps.redrive, tunables=tunables, **changes)
    )
    original = redrive.dependencies
    redrive.dependencies = lambda: patched  # type: ignore[assignment]
    try:
        return redrive.lambda_handler(
            {"source": "aws.scheduler"}, LocalLambdaContext("redrive", 60)
        )
    finally:
        redrive.dependencies = original  # type: ignore[assignment]
        redrive.dependencies.cache_clear()


def test_a_window_longer_than_the_function_timeout_delivers_across_invocations(
    stack: Any, s3: Any, minio: Minio, monkeypatch: pytest.MonkeyPatch, tunables_path: Any
) -> None:
    # GIVEN a window of three parts, and invocations that each have time for one unit of work
    tunables_path(archive_max_input_bytes=1024 * 1024)
    bodies = {f"acme/t{i}.bin": bytes([i]) * 700_000 for i in range(3)}
    key = stage(s3, [upload(s3, k, b) for k, b in bodies.items()])
    uploaded: list[str] = []
    monkeypatch.setattr(delivering, "upload_verified", _counting(uploaded))
    continued: list[dict[str, Any]] = []
    # Lambda's async Invoke stands in here; the local stack's runtime serves the real one.
    monkeypatch.setattr(handler, "invoke_delivery", lambda _fn, event: continued.append(event))
    short = LocalLambdaContext("delivery", 1)  # 1 s: under the reserve after any unit
    # WHEN S3's event invokes delivery, and each continuation is invoked in turn
    outcomes = [handler.lambda_handler(staged_event(STAGING, key), short)]
    while continued:
        outcomes.append(handler.lambda_handler(continued.pop(), short))
    # THEN each invocation did one part or the commit, each part was uploaded once, the
    # continuations are counted, and the window is delivered whole
    assert [o["windows"][0]["outcome"] for o in outcomes] == [
        "continued",
        "continued",
        "continued",
        "delivered",
    ]
    assert len(uploaded) == len(set(uploaded)) == 3
    assert dict(delivered(minio, stack.bucket)) == bodies
    assert ledger().get_window(window_id(key)).state is WindowState.DELIVERED


def test_a_consumer_never_sees_a_part_of_an_unfinished_window_under_a_final_key(
    stack: Any, s3: Any, minio: Minio, monkeypatch: pytest.MonkeyPatch, tunables_path: Any
) -> None:
    # GIVEN a consumer listing MinIO all along, and a three-part window whose first invocation
    # is killed after part one
    tunables_path(archive_max_input_bytes=1024 * 1024)
    bodies = {f"acme/w{i}.bin": bytes([i]) * 700_000 for i in range(3)}
    key = stage(s3, [upload(s3, k, b) for k, b in bodies.items()])
    listings: list[tuple[bool, set[str]]] = []
    committing = threading.Event()
    real_commit = delivering._commit

    def commit(*args: Any, **kwargs: Any) -> Any:
        committing.set()
        return real_commit(*args, **kwargs)

    monkeypatch.setattr(delivering, "_commit", commit)
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            names = {o.object_name for o in minio.list_objects(stack.bucket, recursive=True)}
            # Read once the listing is done: a commit that began while it ran may show in it
            started_committing = committing.is_set()
            listings.append((started_committing, names))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        _uploads_killed_after(monkeypatch, allowed=1)
        with pytest.raises(RuntimeError, match="killed"):
            deliver(key)
        monkeypatch.setattr(delivering, "upload_verified", real_upload_verified)
        handler.dependencies.cache_clear()
        deliver(key)
    finally:
        stop.set()
        watcher.join()
    # THEN before the window's commit began no listing held a part under a final key (only
    # under _incoming/), and once done its manifest lists exactly the final parts
    final = [n for _, names in listings for n in names if n.endswith(".tar.gz")]
    assert any("/_incoming/" in n for n in final)  # the watcher did see the work in progress
    early = [n for began, names in listings if not began for n in names if "/dt=" in n]
    assert early == []
    [window] = window_manifests(minio, stack.bucket).values()
    assert sorted(p["key"] for p in window["parts"]) == sorted(archives(minio, stack.bucket))


def test_what_delivery_commits_is_what_sluice_extract_rebuilds(
    stack: Any, s3: Any, minio: Minio, tmp_path: Path, tunables_path: Any
) -> None:
    # GIVEN two windows delivered for real: a directory/file clash across them, case variants,
    # and two versions of one key (the newer in the window staged first)
    tunables_path(archive_max_input_bytes=1024 * 1024)
    old = upload(s3, "acme/v.txt", b"old")
    new = upload(s3, "acme/v.txt", b"new")
    new["sequencer"], old["sequencer"] = "0055AED6DCD90281E6", "0055AED6DCD90281E5"
    first = stage(s3, [new, upload(s3, "clash/dir", b"f"), upload(s3, "case.txt", b"lower")])
    second = stage(
        s3,
        [old, upload(s3, "clash/dir/inner.txt", b"i"), upload(s3, "caSe.txt", b"upper")],
    )
    deliver(first)
    deliver(second)
    # WHEN the hour is extracted
    summary = extract.extract(
        minio,
        stack.bucket,
        "sluice",
        tmp_path / "out",
        since=datetime(2026, 11, 25, 12, tzinfo=UTC),
        until=datetime(2026, 11, 25, 13, tzinfo=UTC),
    )
    # THEN both windows verify, the newest version wins, and every file is there once
    assert summary.windows == 2
    index = json.loads((tmp_path / "out" / "extract-index.json").read_text())
    written = {e["key"]: (tmp_path / "out" / e["path"]).read_bytes() for e in index["files"]}
    assert written == {
        "acme/v.txt": b"new",
        "clash/dir": b"f",
        "clash/dir/inner.txt": b"i",
        "case.txt": b"lower",
        "caSe.txt": b"upper",
    }


def test_an_envelope_newer_than_delivery_is_retried_not_excluded(
    stack: Any, s3: Any, minio: Minio, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    # GIVEN a window whose second envelope a newer forwarder wrote (schema_version 2)
    newer = {**upload(s3, "acme/new.txt", b"new"), "schema_version": 2}
    key = stage(s3, [upload(s3, "acme/old.txt", b"old"), newer])
    # WHEN this delivery, which reads version 1, gets it
    with pytest.raises(envelope.NewerSchemaVersion):
        deliver(key)
    # THEN nothing is claimed, excluded or written, the failure is one redrive does not count
    # toward PARKED, and the NewerEnvelopes metric is published for its alarm
    assert ledger().get_window(window_id(key)) is None
    assert archives(minio, stack.bucket) == {}
    assert "NewerSchemaVersion" in redriving.ENVIRONMENT_ERRORS
    assert '"NewerEnvelopes"' in capsys.readouterr().out
    # WHEN delivery is deployed at the newer version, and the retry comes
    monkeypatch.setattr(envelope, "SCHEMA_VERSION", 2)
    handler.dependencies.cache_clear()
    deliver(key)
    # THEN both files are delivered
    assert delivered(minio, stack.bucket) == [("acme/new.txt", b"new"), ("acme/old.txt", b"old")]
