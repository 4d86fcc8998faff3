"""A spooled, hashed archive uploaded to MinIO, then verified (DESIGN §3 "Upload and verification").

1. `SpoolWriter` is the stream the archive builder writes into: the bytes go to a temporary file
   (Lambda's ephemeral storage is sized for the part cap) while their sha256 and the MD5 of every
   `min_part_size` part are computed. `close()` returns `Spooled`: length L, sha256, the part
   size `P = part_size_for(L)` and the ETag S3 will compute (plain MD5 when L <= P, else the MD5
   of the part MD5s plus `-N`).
2. `upload_verified` uploads it with minio-py at a known length and fixed part size, one part in
   flight, from a reader that returns whole parts (DESIGN §6: minio-py joins short reads
   quadratically), so at most two parts are in memory. A single-part upload also carries
   `x-amz-checksum-sha256`, so the server refuses bytes that differ from ours (`BadDigest`).
3. Then `stat_object`: size == L, our sha256 metadata came back, ETag == the expected one; where
   the object is SSE-KMS encrypted the ETag is no MD5, so the object is read back and hashed
   (`check="read-back"`). On any mismatch the uploaded object (its version, where versioned) is
   deleted before `UploadVerificationError` is raised.
4. Own bounded retry, full-jitter backoff, over an explicit allow-list of transient errors
   (`is_transient`); anything else raises `UploadError` at once, from the original error, with
   bucket and key. minio-py aborts the multipart upload of a failed `put_object` itself, but that
   abort is one request that fails when MinIO is down; before each retry (and after the last
   failure) uploads of the key still in progress are aborted, best effort.

`corrupt` is a chaos hook (DESIGN §6), used by tests and the local runtime only: it wraps the
reader between Sluice's hashing (done while spooling) and the minio client, once per attempt.
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
import os
import random
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO, Final, NamedTuple

import urllib3
from aws_lambda_powertools import Logger
from minio.error import InvalidResponseError, S3Error, ServerError

from delivery.minio_access import MinioAccess, MinioSettings

if TYPE_CHECKING:
    from minio import Minio
    from minio.datatypes import Object
    from minio.helpers import ObjectWriteResult

logger = Logger(child=True)

MiB: Final = 1024 * 1024
DEFAULT_MIN_PART_SIZE: Final = 8 * MiB
DEFAULT_MAX_PARTS: Final = 9000
S3_MIN_PART_SIZE: Final = 5 * MiB
S3_MAX_PART_SIZE: Final = 5 * 1024 * MiB
S3_MAX_PARTS: Final = 10_000
READ_CHUNK: Final = MiB
"""Re-reading the spool (part MD5s for a larger part size) and reading back go 1 MiB at a time."""

META_SHA256: Final = "sluice-sha256"
META_PART_SIZE: Final = "sluice-part-size"
META_FILE_COUNT: Final = "sluice-file-count"
META_STAGED_KEY: Final = "sluice-staged-key"
META_FORMAT_VERSION: Final = "sluice-format-version"
"""User metadata names (sent as `x-amz-meta-<name>`); the caller gives the last three."""

MAX_USER_METADATA_BYTES: Final = 2048
"""S3's limit on the user metadata of an object (names and values)."""

CHECK_ETAG: Final = "etag"
CHECK_READ_BACK: Final = "read-back"

TRANSIENT_S3_CODES: Final = frozenset(
    {
        "InternalError",  # 500: S3 and MinIO ask clients to retry
        "ServiceUnavailable",  # 503
        "SlowDown",  # 503: throttling
        "RequestTimeout",  # 400: the socket idled mid-body; a new request goes through
        "OperationAborted",  # 409: a conflicting operation on the key is in progress
        "IncompleteBody",  # the body arrived short: the connection broke
        "XAmzContentSHA256Mismatch",  # MinIO: the signed body digest differs (damaged in transit)
        "NoSuchUpload",  # our multipart upload was aborted (by a concurrent attempt's cleanup)
        "XMinioServerNotInitialized",  # MinIO starting up
        "XMinioReadQuorum",  # MinIO: drives/nodes restarting (503)
        "XMinioWriteQuorum",
    }
)
"""S3 error codes worth another attempt. `BadDigest` (the server's sha256 of the body differs
from ours) becomes `UploadVerificationError`, which is retried too. Everything else
(`NoSuchBucket`, `AccessDenied` after the secret was fetched again, `InvalidArgument`,
`EntityTooLarge`, quota, ...) will not heal by waiting and raises at once."""

TRANSIENT_TRANSPORT_ERRORS: Final = (
    urllib3.exceptions.TimeoutError,  # connect/read timeouts, and NewConnectionError (refused)
    urllib3.exceptions.ProtocolError,  # connection reset or closed mid-request, short reads
    ConnectionError,  # the same raised raw from the socket
)
"""Transport errors worth another attempt. TLS errors (`urllib3.exceptions.SSLError`: an
untrusted certificate, TLS spoken to a plain-HTTP port) are not: they need a fix, not a wait."""

TRANSIENT_HTTP_STATUSES: Final = frozenset({500, 502, 503, 504})
"""For errors without an S3 error body (a proxy or load balancer in front of MinIO)."""


class UploadError(RuntimeError):
    """The archive could not be uploaded; names bucket and key. Raised from the last error."""

    def __init__(self, message: str, *, bucket: str, key: str, attempts: int) -> None:
        super().__init__(message)
        self.bucket = bucket
        self.key = key
        self.attempts = attempts


class UploadVerificationError(UploadError):
    """What MinIO stored is not what was spooled: the message says what mismatched."""


def part_size_for(
    length: int, min_part: int = DEFAULT_MIN_PART_SIZE, max_parts: int = DEFAULT_MAX_PARTS
) -> int:
    """`max(min_part, ceil(length / max_parts))` rounded up to a whole MiB."""
    if length < 0:
        raise ValueError(f"length must not be negative, got {length}")
    if max_parts < 1:
        raise ValueError(f"max_parts must be at least 1, got {max_parts}")
    size = max(min_part, -(-length // max_parts))
    return -(-size // MiB) * MiB


def _check_part_settings(min_part: int, max_parts: int) -> None:
    if not S3_MIN_PART_SIZE <= min_part <= S3_MAX_PART_SIZE:
        raise ValueError(
            f"min_part_size must be between {S3_MIN_PART_SIZE} and {S3_MAX_PART_SIZE} bytes "
            f"(S3's part limits), got {min_part}"
        )
    if not 1 <= max_parts <= S3_MAX_PARTS:
        raise ValueError(f"max_parts must be between 1 and {S3_MAX_PARTS}, got {max_parts}")


def expected_etag(part_digests: list[bytes], length: int, part_size: int) -> str:
    """The ETag S3 computes: the MD5 for one part, else MD5(concatenated part MD5s)-N."""
    if length <= part_size:
        return part_digests[0].hex()
    combined = hashlib.md5(b"".join(part_digests), usedforsecurity=False).hexdigest()
    return f"{combined}-{len(part_digests)}"


class Spooled(NamedTuple):
    """A finished spool file, its length, sha256, part size and expected ETag."""

    path: Path
    length: int
    sha256: str
    part_size: int
    expected_etag: str

    @property
    def parts(self) -> int:
        return max(1, math.ceil(self.length / self.part_size))

    @property
    def multipart(self) -> bool:
        return self.length > self.part_size

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


class SpoolWriter:
    """A write-only binary stream into a temporary file, hashing as it goes.

    Use it as `gzip.GzipFile(fileobj=...)` or `tarfile.open(fileobj=...)` output: it has
    `write`, `flush`, `tell`, a no-op `seek` to the current position, and no `name` attribute
    on purpose: gzip would write a file name into its header, and the archive's bytes must not
    depend on the temporary name. As a context manager it closes on success (then `result`
    holds the `Spooled`) and removes the file on an exception. The caller removes the file of
    a `Spooled` when done (`Spooled.remove()`).
    """

    mode: Final = "wb"

    def __init__(
        self,
        dir: str | Path | None = None,  # named as tempfile's parameter
        *,
        min_part_size: int = DEFAULT_MIN_PART_SIZE,
        max_parts: int = DEFAULT_MAX_PARTS,
    ) -> None:
        _check_part_settings(min_part_size, max_parts)
        self._min_part = min_part_size
        self._max_parts = max_parts
        fd, name = tempfile.mkstemp(prefix="sluice-spool-", suffix=".part", dir=dir)
        self._path = Path(name)
        self._file = os.fdopen(fd, "wb")
        self._sha256 = hashlib.sha256()
        self._part_md5 = hashlib.md5(usedforsecurity=False)
        self._part_fill = 0
        self._part_digests: list[bytes] = []
        self._length = 0
        self._result: Spooled | None = None
        self._discarded = False

    @property
    def path(self) -> Path:
        return self._path

    @property
    def closed(self) -> bool:
        return self._result is not None or self._discarded

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        if self.closed:
            raise ValueError("write to a closed SpoolWriter")
        view = memoryview(data).cast("B")
        size = len(view)
        self._file.write(view)
        self._sha256.update(view)
        position = 0
        while position < size:
            take = min(size - position, self._min_part - self._part_fill)
            self._part_md5.update(view[position : position + take])
            self._part_fill += take
            position += take
            if self._part_fill == self._min_part:
                self._part_digests.append(self._part_md5.digest())
                self._part_md5 = hashlib.md5(usedforsecurity=False)
                self._part_fill = 0
        self._length += size
        return size

    def flush(self) -> None:
        if not self.closed:
            self._file.flush()

    def tell(self) -> int:
        return self._length

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        """Only to where it already is (what `tarfile` may ask); anything else is unsupported."""
        here = offset if whence == io.SEEK_SET else self._length + offset
        if whence not in (io.SEEK_SET, io.SEEK_CUR, io.SEEK_END) or here != self._length:
            raise io.UnsupportedOperation("SpoolWriter is append-only")
        return self._length

    def read(self, size: int = -1, /) -> bytes:
        raise io.UnsupportedOperation("SpoolWriter is write-only")

    def close(self) -> Spooled:
        """Finish the spool: flush, close the file, compute the part size and expected ETag."""
        if self._result is not None:
            return self._result
        if self._discarded:
            raise ValueError("SpoolWriter was discarded")
        self._file.close()
        if self._part_fill or not self._part_digests:
            self._part_digests.append(self._part_md5.digest())
        part_size = part_size_for(self._length, self._min_part, self._max_parts)
        digests = self._part_digests
        if part_size != self._min_part and self._length > part_size:
            digests = _part_digests(self._path, part_size)
        self._result = Spooled(
            path=self._path,
            length=self._length,
            sha256=self._sha256.hexdigest(),
            part_size=part_size,
            expected_etag=expected_etag(digests, self._length, part_size),
        )
        return self._result

    @property
    def result(self) -> Spooled:
        """The `Spooled` of a closed writer."""
        if self._result is None:
            raise ValueError("SpoolWriter is not closed yet")
        return self._result

    def discard(self) -> None:
        """Close and remove the spool file (a failed build)."""
        if self._result is None:
            self._discarded = True
            self._file.close()
        self._path.unlink(missing_ok=True)

    def __enter__(self) -> SpoolWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()


def _part_digests(path: Path, part_size: int) -> list[bytes]:
    """MD5 of each `part_size` part of the file, reading it 1 MiB at a time."""
    digests = []
    with path.open("rb") as stream:
        while True:
            md5 = hashlib.md5(usedforsecurity=False)
            filled = 0
            while filled < part_size:
                chunk = stream.read(min(READ_CHUNK, part_size - filled))
                if not chunk:
                    break
                md5.update(chunk)
                filled += len(chunk)
            if filled:
                digests.append(md5.digest())
            if filled < part_size:
                return digests or [hashlib.md5(b"", usedforsecurity=False).digest()]


class UploadResult(NamedTuple):
    key: str
    etag: str
    version_id: str | None
    size: int
    sha256: str
    part_size: int
    check: str
    """`etag` or `read-back`: which verification ran."""
    bucket: str
    attempts: int


def upload_verified(
    access: MinioAccess,
    key: str,
    spooled: Spooled,
    metadata: Mapping[str, str],
    *,
    attempts: int,
    backoff_base: float,
    backoff_cap: float,
    corrupt: Callable[[BinaryIO], BinaryIO] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> UploadResult:
    """Upload `spooled` to `key` in the secret's bucket and verify it (see the module docstring).

    `metadata` is the caller's user metadata (file count, staged key, format version); the
    sha256 and part size are added here. Raises `UploadVerificationError` when what MinIO holds
    differs from the spool on every attempt, `UploadError` for anything else.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts}")
    headers = _metadata(metadata, spooled)
    for attempt in range(1, attempts + 1):
        if attempt > 1 and spooled.multipart:
            _abort_leftover_uploads(access, key)
        try:
            result = access.call(
                lambda client, settings: _attempt(
                    client, settings, key=key, spooled=spooled, headers=headers, corrupt=corrupt
                )
            )
        except Exception as err:
            where = f"{key!r} in {access.describe()}"
            if not is_transient(err):
                if spooled.multipart:
                    _abort_leftover_uploads(access, key)
                raise UploadError(
                    f"upload of {where} failed (not retried): {_summary(err)}",
                    bucket=_bucket(access),
                    key=key,
                    attempts=attempt,
                ) from err
            if attempt == attempts:
                if spooled.multipart:
                    _abort_leftover_uploads(access, key)
                error_type = (
                    UploadVerificationError
                    if isinstance(err, UploadVerificationError)
                    else UploadError
                )
                raise error_type(
                    f"upload of {where} failed after {attempt} attempts: {_summary(err)}",
                    bucket=_bucket(access),
                    key=key,
                    attempts=attempt,
                ) from err
            delay = min(backoff_cap, backoff_base * 2 ** (attempt - 1)) * random.random()  # noqa: S311  # jitter, not security
            logger.warning(
                "upload attempt failed; retrying",
                key=key,
                minio=access.describe(),
                attempt=attempt,
                attempts=attempts,
                delay_seconds=round(delay, 3),
                error=_summary(err),
            )
            sleep(delay)
            continue
        return UploadResult(
            key=key,
            etag=result.etag,
            version_id=result.version_id,
            size=result.size,
            sha256=spooled.sha256,
            part_size=spooled.part_size,
            check=result.check,
            bucket=result.bucket,
            attempts=attempt,
        )
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


def is_transient(err: BaseException) -> bool:
    """Whether another attempt may succeed: the explicit allow-list of this module."""
    if isinstance(err, UploadVerificationError):
        return True
    if isinstance(err, S3Error):
        return err.code in TRANSIENT_S3_CODES
    if isinstance(err, ServerError):
        return err.status_code in TRANSIENT_HTTP_STATUSES
    if isinstance(err, InvalidResponseError):
        # minio-py keeps the HTTP status of a non-XML error answer only in this attribute
        return err._code in TRANSIENT_HTTP_STATUSES
    return isinstance(err, TRANSIENT_TRANSPORT_ERRORS)


class _Verified(NamedTuple):
    bucket: str
    etag: str
    version_id: str | None
    size: int
    check: str


def _attempt(
    client: Minio,
    settings: MinioSettings,
    *,
    key: str,
    spooled: Spooled,
    headers: dict[str, str],
    corrupt: Callable[[BinaryIO], BinaryIO] | None,
) -> _Verified:
    bucket = settings.bucket
    with spooled.path.open("rb") as spool:
        reader: BinaryIO = corrupt(spool) if corrupt is not None else spool
        try:
            written = client.put_object(
                bucket,
                key,
                reader,
                length=spooled.length,
                part_size=spooled.part_size,
                metadata=dict(headers),  # minio-py's type is a dict of str | list | tuple
                num_parallel_uploads=1,
            )
        except S3Error as err:
            if err.code == "BadDigest":
                raise UploadVerificationError(
                    f"MinIO refused {key!r} in bucket {bucket!r}: the bytes it received do not "
                    f"have the spooled sha256 {spooled.sha256} (BadDigest)",
                    bucket=bucket,
                    key=key,
                    attempts=0,
                ) from err
            raise
    problems, check, stat = _verify(client, bucket, key, spooled, written)
    if problems:
        detail = "; ".join(problems)
        try:
            client.remove_object(bucket, key, version_id=written.version_id)
        except Exception as err:
            raise UploadVerificationError(
                f"{key!r} in bucket {bucket!r} does not match the spool ({detail}), and "
                f"deleting it failed: {_summary(err)}",
                bucket=bucket,
                key=key,
                attempts=0,
            ) from err
        logger.warning(
            "uploaded object did not verify; deleted",
            key=key,
            bucket=bucket,
            version_id=written.version_id,
            why=detail,
        )
        raise UploadVerificationError(
            f"{key!r} in bucket {bucket!r} does not match the spool ({detail}); the uploaded "
            f"object{' version ' + written.version_id if written.version_id else ''} was deleted",
            bucket=bucket,
            key=key,
            attempts=0,
        )
    return _Verified(
        bucket=bucket,
        etag=str(stat.etag),
        version_id=written.version_id or stat.version_id,
        size=int(stat.size or 0),
        check=check,
    )


def _verify(
    client: Minio, bucket: str, key: str, spooled: Spooled, written: ObjectWriteResult
) -> tuple[list[str], str, Object]:
    stat = client.stat_object(bucket, key, version_id=written.version_id)
    headers = {name.lower(): value for name, value in (stat.metadata or {}).items()}
    problems = []
    if stat.size != spooled.length:
        problems.append(f"size {stat.size} != spooled {spooled.length}")
    stored_sha256 = headers.get(f"x-amz-meta-{META_SHA256}")
    if stored_sha256 != spooled.sha256:
        problems.append(f"sha256 metadata {stored_sha256!r} != spooled {spooled.sha256}")
    encryption = str(headers.get("x-amz-server-side-encryption", "")).lower()
    if encryption.startswith("aws:kms"):
        # SSE-KMS: the ETag is no MD5 of the content; hash what MinIO gives back instead.
        check = CHECK_READ_BACK
        if not problems:
            read_sha256, read_length = _read_back(client, bucket, key, written.version_id)
            if read_length != spooled.length or read_sha256 != spooled.sha256:
                problems.append(
                    f"read back {read_length} bytes with sha256 {read_sha256} != spooled "
                    f"{spooled.length} bytes with sha256 {spooled.sha256}"
                )
    else:
        check = CHECK_ETAG
        if stat.etag != spooled.expected_etag:
            problems.append(f"ETag {stat.etag} != expected {spooled.expected_etag}")
    return problems, check, stat


def _read_back(client: Minio, bucket: str, key: str, version_id: str | None) -> tuple[str, int]:
    response = client.get_object(bucket, key, version_id=version_id)
    try:
        digest = hashlib.sha256()
        length = 0
        for chunk in response.stream(READ_CHUNK):
            digest.update(chunk)
            length += len(chunk)
        return digest.hexdigest(), length
    finally:
        response.close()
        response.release_conn()


def _abort_leftover_uploads(access: MinioAccess, key: str) -> None:
    """Abort multipart uploads of `key` still open (a failed attempt's), best effort.

    minio-py offers no public call for these; `_list_multipart_uploads` and
    `_abort_multipart_upload` are its own S3 API wrappers (minio>=7.2.20,<7.3 is pinned).
    Failing is harmless: the next attempt (or MinIO's expiry of stale uploads) clears them.
    """

    def abort(client: Minio, settings: MinioSettings) -> int:
        listing = client._list_multipart_uploads(settings.bucket, prefix=key)
        aborted = 0
        for upload in listing.uploads:
            if upload.object_name == key and upload.upload_id:
                client._abort_multipart_upload(
                    settings.bucket, key, upload.upload_id
                )  # see docstring
                aborted += 1
        return aborted

    try:
        aborted = access.call(abort)
    except Exception as err:  # noqa: BLE001  # best effort: the next attempt or MinIO's own expiry clears it
        logger.info("could not abort leftover multipart uploads", key=key, error=_summary(err))
        return
    if aborted:
        logger.info("aborted leftover multipart uploads", key=key, count=aborted)


def _metadata(metadata: Mapping[str, str], spooled: Spooled) -> dict[str, str]:
    """The caller's user metadata plus sha256 and part size, checked against S3's rules, and
    `x-amz-checksum-sha256` for a single-part upload (minio-py sends `x-amz-*` keys as headers)."""
    headers: dict[str, str] = {}
    for name, value in metadata.items():
        lowered = name.lower()
        if lowered in (META_SHA256, META_PART_SIZE):
            raise ValueError(f"metadata {name!r} is set by upload_verified itself")
        if lowered.startswith("x-amz-") or not lowered.replace("-", "").isalnum():
            raise ValueError(
                f"metadata name {name!r} must be letters, digits and '-' (not an x-amz- header)"
            )
        if not value.isascii() or not value.isprintable():
            raise ValueError(f"metadata {name!r} must be printable ASCII")
        headers[lowered] = value
    headers[META_SHA256] = spooled.sha256
    headers[META_PART_SIZE] = str(spooled.part_size)
    size = sum(len(name) + len(value) for name, value in headers.items())
    if size > MAX_USER_METADATA_BYTES:
        raise ValueError(f"user metadata is {size} bytes; S3 allows {MAX_USER_METADATA_BYTES}")
    if not spooled.multipart:
        headers["x-amz-checksum-sha256"] = base64.b64encode(bytes.fromhex(spooled.sha256)).decode()
    return headers


def _bucket(access: MinioAccess) -> str:
    known = access.last_settings
    return known.bucket if known is not None else "?"


def _summary(err: BaseException) -> str:
    if isinstance(err, S3Error):
        return f"{err.code}: {err.message}"
    return f"{type(err).__name__}: {err}"
