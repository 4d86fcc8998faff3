"""The spooled upload and its checks (DESIGN §3), against SeaweedFS where a server is needed.

SeaweedFS computes ETags as S3 does and verifies `x-amz-checksum-sha256` (BadDigest), so what
is checked here (ETag formula, server-side digest, deletion of what did not verify, retries)
is checked against a real server. Corruption is injected with the `corrupt` hook, between the
spool's hashing and the minio client, as the local runtime's chaos does (DESIGN §6).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import socket
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast

import pytest
import urllib3
from minio import Minio
from minio.commonconfig import ENABLED
from minio.error import InvalidResponseError, S3Error, ServerError
from minio.versioningconfig import VersioningConfig

from delivery.minio_access import MinioAccess
from delivery.upload import (
    CHECK_ETAG,
    CHECK_READ_BACK,
    META_FILE_COUNT,
    META_FORMAT_VERSION,
    META_PART_SIZE,
    META_SHA256,
    META_STAGED_KEY,
    MiB,
    Spooled,
    SpoolWriter,
    UploadError,
    UploadVerificationError,
    is_transient,
    part_size_for,
    upload_verified,
)
from infrastructure.local.provision.seaweedfs import SeaweedFS

P = 5 * MiB
"""The smallest part S3 allows: the tests' min part size, to keep multipart objects small."""

METADATA = {
    META_FILE_COUNT: "3",
    META_STAGED_KEY: "buffers/dt=2026-11-25/hour=12/sluice-test-0-1-2026-11-25-12-00-00-a.json.gz",
    META_FORMAT_VERSION: "1",
}


def pattern(length: int, seed: int = 0) -> bytes:
    """Deterministic bytes that differ from part to part (so that swapped parts would show)."""
    block = hashlib.sha256(seed.to_bytes(8, "big")).digest() * 2048  # 64 KiB
    out = bytearray()
    counter = 0
    while len(out) < length:
        out += counter.to_bytes(8, "big") + block[8:]
        counter += 1
    return bytes(out[:length])


def reference_etag(data: bytes, part_size: int) -> str:
    """S3's ETag, computed independently of delivery.upload."""
    if len(data) <= part_size:
        return hashlib.md5(data, usedforsecurity=False).hexdigest()
    digests = [
        hashlib.md5(data[i : i + part_size], usedforsecurity=False).digest()
        for i in range(0, len(data), part_size)
    ]
    combined = hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest()
    return f"{combined}-{len(digests)}"


def spool(
    data: bytes, directory: Path, *, chunk: int = 777_777, min_part: int = P, max_parts: int = 9000
) -> Spooled:
    with SpoolWriter(directory, min_part_size=min_part, max_parts=max_parts) as writer:
        for start in range(0, len(data), chunk):
            writer.write(data[start : start + chunk])
    return writer.result


class FlipByte:
    """A reader that returns what it wraps with one byte inverted at `offset`."""

    def __init__(self, inner: BinaryIO, offset: int) -> None:
        self._inner = inner
        self._offset = offset
        self._position = 0

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)
        start = self._position
        self._position += len(data)
        if start <= self._offset < self._position:
            at = self._offset - start
            data = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]
        return data


class CorruptAttempts:
    """The chaos hook: corrupts the upload of the first `times` attempts (all: times=None)."""

    def __init__(self, times: int | None, offset: int) -> None:
        self.times = times
        self.offset = offset
        self.calls = 0

    def __call__(self, reader: BinaryIO) -> BinaryIO:
        self.calls += 1
        if self.times is not None and self.calls > self.times:
            return reader
        return cast(BinaryIO, FlipByte(reader, self.offset))


class Sleeps(list[float]):
    """Records the backoff delays instead of sleeping; `then` runs at each (between attempts)."""

    def __init__(self, then: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.then = then

    def __call__(self, seconds: float) -> None:
        self.append(seconds)
        if self.then is not None:
            self.then()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def access_for(put_secret: Any, secret_name: str) -> Callable[..., MinioAccess]:
    """A MinioAccess reading a secret with the given value."""

    def build(value: dict[str, object]) -> MinioAccess:
        put_secret(secret_name, value)
        return MinioAccess(secret_name, max_age_seconds=300)

    return build


@pytest.fixture
def access(seaweedfs: SeaweedFS, access_for: Callable[..., MinioAccess]) -> MinioAccess:
    return access_for(seaweedfs.secret())


def upload(
    access: MinioAccess, key: str, spooled: Spooled, *, attempts: int = 3, **kwargs: Any
) -> Any:
    kwargs.setdefault("sleep", Sleeps())
    return upload_verified(
        access,
        key,
        spooled,
        METADATA,
        attempts=attempts,
        backoff_base=0.01,
        backoff_cap=0.05,
        **kwargs,
    )


def bucket_contents(client: Minio, bucket: str) -> list[tuple[str, str | None]]:
    """Every object version and every open multipart upload in the bucket."""
    versions = [
        (str(obj.object_name), obj.version_id)
        for obj in client.list_objects(bucket, recursive=True, include_version=True)
    ]
    uploads = [
        (f"upload:{upload.object_name}", upload.upload_id)
        for upload in client._list_multipart_uploads(bucket).uploads  # no public call in 7.2
    ]
    return versions + uploads


# ------------------------------------------------------------------------- part size (unit)


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        (0, 8 * MiB),
        (1, 8 * MiB),
        (8 * MiB, 8 * MiB),
        (9000 * 8 * MiB, 8 * MiB),
        (9000 * 8 * MiB + 1, 9 * MiB),  # ceil(L / 9000) is 8 MiB + 1 byte: next whole MiB
        (100 * 1024 * MiB, 12 * MiB),  # 100 GiB / 9000 = 11.38 MiB
        (5 * 1024 * 1024 * MiB, 583 * MiB),  # 5 TiB
    ],
)
def test_part_size_for(length: int, expected: int) -> None:
    assert part_size_for(length) == expected


@pytest.mark.parametrize("length", [0, 1, 5 * MiB, 72 * 1024 * MiB, 10**12 + 7, 5 * 2**40])
@pytest.mark.parametrize(("min_part", "max_parts"), [(8 * MiB, 9000), (5 * MiB + 1, 10), (P, 1)])
def test_part_size_invariants(length: int, min_part: int, max_parts: int) -> None:
    size = part_size_for(length, min_part, max_parts)
    assert size % MiB == 0
    assert size >= min_part
    assert -(-length // size) <= max_parts
    assert size - MiB < max(min_part, -(-length // max_parts))  # the smallest such size


def test_part_size_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="negative"):
        part_size_for(-1)
    with pytest.raises(ValueError, match="min_part_size"):
        SpoolWriter(min_part_size=MiB)


# --------------------------------------------------------------------------- spool (unit)


@pytest.mark.parametrize("length", [0, 1, P - 1, P, P + 1, 3 * P + 5])
def test_spool_hashes_match_hashlib(length: int, tmp_path: Path) -> None:
    data = pattern(length)
    spooled = spool(data, tmp_path)
    assert spooled.length == length
    assert spooled.path.read_bytes() == data
    assert spooled.sha256 == hashlib.sha256(data).hexdigest()
    assert spooled.part_size == P
    assert spooled.expected_etag == reference_etag(data, P)
    assert spooled.multipart == (length > P)


def test_spool_recomputes_parts_when_the_part_size_grows(tmp_path: Path) -> None:
    # 12 MiB + 3 in at most 2 parts: P = max(5 MiB, ceil(L / 2)) rounded up = 7 MiB
    data = pattern(12 * MiB + 3, seed=1)
    spooled = spool(data, tmp_path, max_parts=2)
    assert spooled.part_size == 7 * MiB
    assert spooled.expected_etag == reference_etag(data, 7 * MiB)
    assert spooled.expected_etag.endswith("-2")


def test_spool_is_a_gzip_target_with_deterministic_bytes(tmp_path: Path) -> None:
    """No `name` on the writer: gzip would put the temporary file's name into its header."""
    spools = []
    for directory in ("a", "b"):
        (tmp_path / directory).mkdir()
        with (
            SpoolWriter(tmp_path / directory, min_part_size=P) as writer,
            gzip.GzipFile(fileobj=writer, mode="wb", mtime=0) as compressed,
        ):
            compressed.write(b"same content" * 1000)
        spools.append(writer.result)
    assert spools[0].path != spools[1].path
    assert spools[0].sha256 == spools[1].sha256
    assert gzip.decompress(spools[0].path.read_bytes()) == b"same content" * 1000


def test_spool_context_manager(tmp_path: Path) -> None:
    failed = SpoolWriter(tmp_path, min_part_size=P)

    def build_fails() -> None:
        with failed:
            failed.write(b"partial")
            raise RuntimeError("archive build failed")

    with pytest.raises(RuntimeError):
        build_fails()
    assert not failed.path.exists()
    with SpoolWriter(tmp_path, min_part_size=P) as writer:
        writer.write(b"abc")
        assert writer.tell() == 3
        with pytest.raises(ValueError, match="not closed"):
            writer.result  # noqa: B018  # the property raises
    assert writer.close() is writer.result
    with pytest.raises(ValueError, match="closed"):
        writer.write(b"more")
    with pytest.raises(io.UnsupportedOperation):
        writer.read()
    writer.result.remove()
    assert list(tmp_path.iterdir()) == []


def test_spool_seek_only_to_where_it_is(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path, min_part_size=P)
    writer.write(b"12345")
    assert writer.seek(5) == 5
    assert writer.seek(0, io.SEEK_CUR) == 5
    with pytest.raises(io.UnsupportedOperation):
        writer.seek(0)
    writer.discard()
    assert not writer.path.exists()


# ----------------------------------------------------------------- classification (unit)


def s3_error(code: str) -> S3Error:
    return S3Error(urllib3.HTTPResponse(status=500), code, "m", "/r", "rid", "hid")


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (s3_error("InternalError"), True),
        (s3_error("SlowDown"), True),
        (s3_error("ServiceUnavailable"), True),
        (s3_error("RequestTimeout"), True),
        (s3_error("NoSuchBucket"), False),
        (s3_error("AccessDenied"), False),
        (s3_error("InvalidArgument"), False),
        (s3_error("BadDigest"), False),  # becomes UploadVerificationError inside an attempt
        (UploadVerificationError("x", bucket="b", key="k", attempts=1), True),
        (urllib3.exceptions.NewConnectionError(None, "refused"), True),
        (urllib3.exceptions.ReadTimeoutError(None, "/", "timed out"), True),
        (urllib3.exceptions.ProtocolError("Connection aborted."), True),
        (ConnectionResetError(), True),
        (urllib3.exceptions.SSLError("CERTIFICATE_VERIFY_FAILED"), False),
        (ServerError("bad gateway", 502), True),
        (ServerError("not implemented", 501), False),
        (InvalidResponseError(503, "text/html", "<html>busy</html>"), True),
        (InvalidResponseError(404, "text/html", "<html>no</html>"), False),
        (OSError("stream having not enough data"), False),
        (ValueError("bug"), False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_transient_allow_list(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


def test_metadata_is_checked(tmp_path: Path) -> None:
    spooled = spool(b"x", tmp_path)
    for bad in ({"x-amz-acl": "public-read"}, {META_SHA256: "f00"}, {"name with space": "v"}):
        with pytest.raises(ValueError, match="metadata"):
            upload_verified(
                cast(MinioAccess, None),
                "k",
                spooled,
                bad,
                attempts=1,
                backoff_base=0,
                backoff_cap=0,
            )
    with pytest.raises(ValueError, match="ASCII"):
        upload_verified(
            cast(MinioAccess, None),
            "k",
            spooled,
            {"note": "caf\u00e9"},
            attempts=1,
            backoff_base=0,
            backoff_cap=0,
        )


# ------------------------------------------------------------------ against SeaweedFS (slow)


@pytest.mark.slow
@pytest.mark.parametrize("length", [0, 1, 1000, P], ids=["empty", "1B", "1000B", "exactly-P"])
def test_single_part_upload_verified(
    length: int, seaweedfs: SeaweedFS, access: MinioAccess, tmp_path: Path
) -> None:
    data = pattern(length, seed=length)
    spooled = spool(data, tmp_path)
    result = upload(access, "sluice/single.tar.gz", spooled)
    assert result.check == CHECK_ETAG
    assert (
        result.etag == spooled.expected_etag == hashlib.md5(data, usedforsecurity=False).hexdigest()
    )
    assert (result.size, result.sha256, result.part_size) == (length, spooled.sha256, P)
    assert (result.bucket, result.key, result.attempts) == (
        seaweedfs.bucket,
        "sluice/single.tar.gz",
        1,
    )
    client = seaweedfs.client()
    assert client.get_object(seaweedfs.bucket, result.key).read() == data


@pytest.mark.slow
def test_multipart_upload_verified_with_metadata(
    seaweedfs: SeaweedFS, access: MinioAccess, tmp_path: Path
) -> None:
    data = pattern(2 * P + P // 2, seed=7)
    spooled = spool(data, tmp_path)
    result = upload(access, "sluice/multi.tar.gz", spooled)
    # the server's ETag is the MD5-of-MD5s formula computed locally, twice independently
    assert result.etag == spooled.expected_etag == reference_etag(data, P)
    assert result.etag.endswith("-3")
    assert result.check == CHECK_ETAG
    client = seaweedfs.client()
    stat = client.stat_object(seaweedfs.bucket, result.key)
    metadata = {name.lower(): value for name, value in (stat.metadata or {}).items()}
    assert metadata[f"x-amz-meta-{META_SHA256}"] == hashlib.sha256(data).hexdigest()
    assert metadata[f"x-amz-meta-{META_PART_SIZE}"] == str(P)
    for name, value in METADATA.items():
        assert metadata[f"x-amz-meta-{name}"] == value
    assert client.get_object(seaweedfs.bucket, result.key).read() == data


@pytest.mark.slow
def test_corrupted_single_part_is_refused_by_the_server_then_retried(
    seaweedfs: SeaweedFS, access: MinioAccess, tmp_path: Path
) -> None:
    data = pattern(300_000, seed=3)
    spooled = spool(data, tmp_path)
    corrupt = CorruptAttempts(times=1, offset=123_456)
    client = seaweedfs.client()
    seen: list[str] = []

    def between_attempts() -> None:
        try:
            client.stat_object(seaweedfs.bucket, "sluice/bad-digest.tar.gz")
            seen.append("object present")
        except S3Error as err:
            seen.append(str(err.code))

    sleeps = Sleeps(then=between_attempts)
    result = upload(access, "sluice/bad-digest.tar.gz", spooled, corrupt=corrupt, sleep=sleeps)
    assert corrupt.calls == 2
    assert len(sleeps) == 1
    assert seen == ["NoSuchKey"]  # BadDigest: nothing was stored
    assert result.attempts == 2
    assert client.get_object(seaweedfs.bucket, result.key).read() == data


@pytest.mark.slow
def test_corrupted_multipart_is_caught_by_etag_deleted_then_retried(
    seaweedfs: SeaweedFS, access: MinioAccess, tmp_path: Path
) -> None:
    data = pattern(2 * P + 17, seed=4)
    spooled = spool(data, tmp_path)
    corrupt = CorruptAttempts(times=1, offset=P + 99)  # in the second part
    client = seaweedfs.client()
    key = "sluice/etag-mismatch.tar.gz"
    seen: list[str] = []

    def between_attempts() -> None:
        try:
            client.stat_object(seaweedfs.bucket, key)
            seen.append("object present")
        except S3Error as err:
            seen.append(str(err.code))
        seen.append(f"{len(bucket_contents(client, seaweedfs.bucket))} left")

    result = upload(access, key, spooled, corrupt=corrupt, sleep=Sleeps(then=between_attempts))
    assert seen == ["NoSuchKey", "0 left"]
    assert corrupt.calls == 2
    assert result.etag == spooled.expected_etag
    assert client.get_object(seaweedfs.bucket, key).read() == data


@pytest.mark.slow
@pytest.mark.parametrize("length", [1000, 2 * P + 1], ids=["single-part", "multipart"])
def test_corruption_on_every_attempt_fails_and_leaves_nothing(
    length: int, seaweedfs: SeaweedFS, access: MinioAccess, tmp_path: Path
) -> None:
    spooled = spool(pattern(length, seed=5), tmp_path)
    corrupt = CorruptAttempts(times=None, offset=length - 1)
    sleeps = Sleeps()
    key = "sluice/always-corrupt.tar.gz"
    with pytest.raises(UploadVerificationError) as caught:
        upload(access, key, spooled, attempts=3, corrupt=corrupt, sleep=sleeps)
    message = str(caught.value)
    assert seaweedfs.bucket in message
    assert key in message
    assert ("BadDigest" if length <= P else "ETag") in message
    assert (caught.value.bucket, caught.value.key, caught.value.attempts) == (
        seaweedfs.bucket,
        key,
        3,
    )
    assert corrupt.calls == 3
    assert len(sleeps) == 2
    assert bucket_contents(seaweedfs.client(), seaweedfs.bucket) == []


@pytest.mark.slow
def test_versioned_bucket_loses_only_the_bad_version(
    seaweedfs: SeaweedFS, access: MinioAccess, tmp_path: Path
) -> None:
    client = seaweedfs.client()
    client.set_bucket_versioning(seaweedfs.bucket, VersioningConfig(ENABLED))
    data = pattern(2 * P + 5, seed=6)
    spooled = spool(data, tmp_path)
    result = upload(access, "sluice/versioned.tar.gz", spooled, corrupt=CorruptAttempts(1, 10))
    assert result.version_id
    assert bucket_contents(client, seaweedfs.bucket) == [(result.key, result.version_id)]
    assert client.get_object(seaweedfs.bucket, result.key).read() == data


@pytest.mark.slow
def test_kms_encrypted_target_is_verified_by_reading_back(
    seaweedfs: SeaweedFS, access: MinioAccess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SSE-KMS objects have no MD5 ETag: SeaweedFS's answers are made to look like one's."""
    real_stat = Minio.stat_object

    def kms_stat(self: Minio, *args: Any, **kwargs: Any) -> Any:
        stat = real_stat(self, *args, **kwargs)
        headers = dict(stat.metadata or {})
        headers["x-amz-server-side-encryption"] = "aws:kms"
        object.__setattr__(stat, "metadata", headers)
        object.__setattr__(stat, "etag", "0123456789abcdef0123456789abcdef")  # not an MD5
        return stat

    monkeypatch.setattr(Minio, "stat_object", kms_stat)
    data = pattern(2 * P + 3, seed=8)
    spooled = spool(data, tmp_path)
    corrupt = CorruptAttempts(times=1, offset=7)
    sleeps = Sleeps()
    result = upload(access, "sluice/kms.tar.gz", spooled, corrupt=corrupt, sleep=sleeps)
    assert result.check == CHECK_READ_BACK
    assert corrupt.calls == 2  # the corrupted first upload was caught by hashing it back
    assert len(sleeps) == 1
    assert seaweedfs.client().get_object(seaweedfs.bucket, result.key).read() == data


@pytest.mark.slow
def test_unreachable_endpoint_raises_after_all_attempts(
    access_for: Callable[..., MinioAccess], seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    endpoint = f"127.0.0.1:{closed_port()}"
    access = access_for(seaweedfs.secret(endpoint=endpoint))
    spooled = spool(b"archive", tmp_path)
    sleeps = Sleeps()
    with pytest.raises(UploadError) as caught:
        upload(access, "sluice/unreachable.tar.gz", spooled, attempts=4, sleep=sleeps)
    message = str(caught.value)
    assert endpoint in message
    assert seaweedfs.bucket in message
    assert "sluice/unreachable.tar.gz" in message
    assert "after 4 attempts" in message
    assert caught.value.attempts == 4
    assert len(sleeps) == 3
    assert all(0 <= delay <= 0.05 for delay in sleeps)
    assert isinstance(caught.value.__cause__, urllib3.exceptions.NewConnectionError)
    assert not isinstance(caught.value, UploadVerificationError)


@pytest.mark.slow
def test_missing_bucket_raises_at_once(
    access_for: Callable[..., MinioAccess], seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    access = access_for(seaweedfs.secret(bucket="sluice-no-such-bucket"))
    spooled = spool(pattern(2 * P + 1), tmp_path)
    corrupt = CorruptAttempts(times=0, offset=0)  # counts attempts, corrupts nothing
    sleeps = Sleeps()
    with pytest.raises(UploadError) as caught:
        upload(access, "sluice/k.tar.gz", spooled, attempts=4, corrupt=corrupt, sleep=sleeps)
    assert "not retried" in str(caught.value)
    assert "sluice-no-such-bucket" in str(caught.value)
    assert caught.value.attempts == 1
    assert corrupt.calls == 1
    assert sleeps == []
    assert isinstance(caught.value.__cause__, S3Error)
    assert caught.value.__cause__.code == "NoSuchBucket"


@pytest.mark.slow
def test_multipart_left_open_by_a_failed_abort_is_aborted_before_the_retry(
    seaweedfs: SeaweedFS, access: MinioAccess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """minio-py aborts a failed multipart upload itself; when that abort fails too (MinIO just
    went away), the upload stays open: Sluice aborts it before the next attempt."""
    client = seaweedfs.client()
    real_abort = Minio._abort_multipart_upload
    aborts: list[str] = []

    def flaky_abort(self: Minio, bucket: str, key: str, upload_id: str) -> None:
        aborts.append(upload_id)
        if len(aborts) == 1:
            raise urllib3.exceptions.ProtocolError("Connection aborted.")
        real_abort(self, bucket, key, upload_id)

    monkeypatch.setattr(Minio, "_abort_multipart_upload", flaky_abort)

    class BreakAfterFirstPart:
        def __init__(self) -> None:
            self.calls = 0

        def __call__(self, reader: BinaryIO) -> BinaryIO:
            self.calls += 1
            if self.calls > 1:
                return reader
            parts = iter([True, False])

            class Reader:
                def read(self, size: int = -1) -> bytes:
                    if next(parts, False):
                        return reader.read(size)
                    raise ConnectionResetError("connection reset by peer")

            return cast(BinaryIO, Reader())

    open_uploads: list[int] = []

    def between_attempts() -> None:
        open_uploads.append(len(client._list_multipart_uploads(seaweedfs.bucket).uploads))

    data = pattern(2 * P + 1, seed=9)
    spooled = spool(data, tmp_path)
    result = upload(
        access,
        "sluice/left-open.tar.gz",
        spooled,
        corrupt=BreakAfterFirstPart(),
        sleep=Sleeps(then=between_attempts),
    )
    assert open_uploads == [1]  # minio-py's own abort failed
    assert len(aborts) == 2  # ... and Sluice's, before the second attempt, succeeded
    assert aborts[0] == aborts[1]
    assert [name for name, _ in bucket_contents(client, seaweedfs.bucket)] == [result.key]
    assert client.get_object(seaweedfs.bucket, result.key).read() == data


@pytest.mark.slow
def test_upload_holds_at_most_two_parts_in_memory(
    seaweedfs: SeaweedFS, access: MinioAccess, tmp_path: Path
) -> None:
    part = 8 * MiB
    with SpoolWriter(tmp_path, min_part_size=part) as writer:
        block = pattern(MiB, seed=10)
        for index in range(64):
            writer.write(index.to_bytes(4, "big") + block[4:])
    spooled = writer.result
    assert (spooled.length, spooled.part_size, spooled.parts) == (64 * MiB, part, 8)
    assert access.healthy()  # the secret, boto3 and minio clients exist before measuring
    tracemalloc.start()
    try:
        result = upload(access, "sluice/64mib.tar.gz", spooled)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.etag == spooled.expected_etag
    # minio-py holds the part being sent, and the next one while reading it: two parts
    assert peak < 2.5 * part, f"peak Python allocation {peak / MiB:.1f} MiB"
    print(f"64 MiB upload: peak traced allocation {peak / MiB:.1f} MiB")  # shown with -s


@pytest.fixture(autouse=True)
def _no_stray_spools(tmp_path: Path) -> Iterator[None]:
    yield
    for path in tmp_path.glob("sluice-spool-*"):
        path.unlink()
