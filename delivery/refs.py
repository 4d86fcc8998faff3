"""Claim-check (`ref`) bodies: streamed from the landing bucket, hashed, checked (DESIGN §4).

Before an archive is built, each ref the window owns is read once at its exact version, into a
local copy the archive is built from (`digest_ref(copy_to=…)`; a ref too big for the part's disk
budget is read again instead): its
sha256 is computed while streaming (it goes into the manifest, the archive's first member), its
size compared, S3's stored full-object SHA-256 compared where S3 keeps one, and its payload
schema checked where a rule applies. A ref that cannot be delivered — version gone, checksum or
size mismatch, schema failure — becomes an exclusion; the window goes on. So does a ref S3 refuses
to read after `READ_ATTEMPTS` (access denied, its KMS key disabled or gone, archived):
`unreadable:<code>`, replayable once fixed (`sluice replay --force`); the other files of the
window do not wait for it. Other S3 errors raise, so the whole attempt is retried.
"""

from __future__ import annotations

import base64
import hashlib
import io
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, BinaryIO, Final, NamedTuple

from botocore.exceptions import ClientError

from delivery.archive import Exclusion
from delivery.window_entries import WindowEntry
from transform.payload_schemas import PayloadSchema, PayloadSchemaError, PayloadSchemas

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

GONE_CODES: Final = frozenset({"NoSuchVersion", "NoSuchKey", "404", "InvalidArgument"})
UNREADABLE_CODES: Final = frozenset(
    {
        "AccessDenied",
        "InvalidObjectState",  # archived: the landing lifecycle and policy keep refs in Standard
        "KMS.DisabledException",
        "KMS.KMSInvalidStateException",
        "KMS.NotFoundException",
        "KMS.AccessDeniedException",
        "KMS.InvalidKeyUsageException",
    }
)
"""Refusals of one object that a retry within seconds does not change."""
READ_ATTEMPTS: Final = 3
READ_RETRY_SECONDS: Final = 1.0
MAX_DETAIL_CHARS: Final = 500


class RefDigest(NamedTuple):
    sha256: str
    check: str
    """`s3-checksum-sha256` when S3's stored full-object checksum matched too, else
    `streamed-sha256`."""


def digest_ref(
    s3: S3Client,
    entry: WindowEntry,
    schemas: PayloadSchemas,
    *,
    chunk_bytes: int,
    max_json_bytes: int,
    copy_to: BinaryIO | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> RefDigest | Exclusion:
    """Read the ref once: its sha256 and which check ran, or the reason it is excluded.
    `copy_to` receives the bytes as they are read, so the archive can be built from that copy
    instead of a second read (what it holds is only good when a RefDigest is returned)."""
    response = _get_ref(s3, entry, sleep)
    if isinstance(response, Exclusion):
        return response
    rule = schemas.for_key(entry.key)
    if rule is not None and rule.format == "json" and entry.size > max_json_bytes:
        response["Body"].close()
        return _exclude(
            entry,
            "payload-schema",
            f"{entry.size} bytes is over max_json_validation_bytes ({max_json_bytes}) for a "
            f"'json' payload rule",
        )
    digest = hashlib.sha256()
    size = 0
    lines = _LineSplitter(max_json_bytes) if rule is not None and rule.format == "ndjson" else None
    whole = io.BytesIO() if rule is not None and rule.format == "json" else None
    body = response["Body"]
    try:
        for chunk in iter(lambda: body.read(chunk_bytes), b""):
            digest.update(chunk)
            size += len(chunk)
            if copy_to is not None:
                copy_to.write(chunk)
            if lines is not None and rule is not None:
                _check_lines(rule, lines.feed(chunk))
            if whole is not None:
                whole.write(chunk)
        if lines is not None and rule is not None:
            _check_lines(rule, lines.finish())
        if whole is not None and rule is not None:
            rule.check(whole.getvalue())
    except PayloadSchemaError as err:
        return _exclude(entry, "payload-schema", str(err))
    finally:
        body.close()
    if size != entry.size:
        return _exclude(
            entry, "size-mismatch", f"read {size} bytes, the envelope says {entry.size}"
        )
    sha256 = digest.hexdigest()
    stored = _full_object_checksum(response)
    if stored is not None and stored != base64.b64encode(digest.digest()).decode():
        return _exclude(
            entry, "checksum-mismatch", f"S3's stored SHA-256 {stored} differs from the bytes read"
        )
    return RefDigest(sha256=sha256, check="s3-checksum-sha256" if stored else "streamed-sha256")


def _get_ref(s3: S3Client, entry: WindowEntry, sleep: Callable[[float], None]) -> Any | Exclusion:
    """The ref's GetObject response, or why it is excluded: its version gone, or S3 refusing it
    `READ_ATTEMPTS` times over (UNREADABLE_CODES)."""
    for attempt in range(1, READ_ATTEMPTS + 1):
        try:
            return s3.get_object(
                Bucket=entry.bucket,
                Key=entry.key,
                VersionId=entry.version_id,
                ChecksumMode="ENABLED",
            )
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            if code in GONE_CODES:
                detail = f"{code}: the landing version no longer exists"
                return _exclude(entry, "version-gone", detail)
            if code not in UNREADABLE_CODES:
                raise
            if attempt == READ_ATTEMPTS:
                detail = f"{code} after {READ_ATTEMPTS} attempts: {err}"[:MAX_DETAIL_CHARS]
                return _exclude(entry, f"unreadable:{code}", detail)
            sleep(READ_RETRY_SECONDS * attempt)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _full_object_checksum(response: Any) -> str | None:
    """S3's SHA-256 of the whole object, when it keeps one (not a checksum of part checksums)."""
    value = response.get("ChecksumSHA256")
    if not value:
        return None
    if response.get("ChecksumType", "FULL_OBJECT") != "FULL_OBJECT" or "-" in value:
        return None
    return str(value)


@contextmanager
def open_ref(s3: S3Client, entry: WindowEntry) -> Iterator[BinaryIO]:
    """The ref's bytes at its exact version, as a stream (the archive writer verifies them)."""
    response = s3.get_object(Bucket=entry.bucket, Key=entry.key, VersionId=entry.version_id)
    body = response["Body"]
    try:
        yield body  # type: ignore[misc]  # botocore's StreamingBody reads like a binary file
    finally:
        body.close()


def _check_lines(rule: PayloadSchema, lines: list[tuple[int, bytes]]) -> None:
    for number, line in lines:
        if line.strip():
            rule.check_value(line, where=f"line {number}")


def _exclude(entry: WindowEntry, reason: str, detail: str) -> Exclusion:
    return Exclusion(
        file_id=entry.file_id,
        key=entry.key,
        version_id=entry.version_id,
        reason=reason,
        detail=detail,
    )


class _LineSplitter:
    """Splits a byte stream into lines, holding at most one partial line of `max_line_bytes`.

    The partial line is kept as pieces (joined once, when its newline arrives), so a long line
    costs linear time; a line longer than the limit fails the file's payload check rather than
    growing memory with the file (an NDJSON file with no newline at all would otherwise be read
    whole).
    """

    def __init__(self, max_line_bytes: int) -> None:
        self._pieces: list[bytes] = []
        self._pending = 0
        self._max = max_line_bytes
        self.line_number = 0

    def feed(self, chunk: bytes) -> list[tuple[int, bytes]]:
        *complete, rest = chunk.split(b"\n")
        lines = []
        if complete:
            lines.append(b"".join([*self._pieces, complete[0]]))
            lines.extend(complete[1:])
            self._pieces, self._pending = [], 0
        for index, line in enumerate(lines):
            if len(line) > self._max:
                self._too_long(self.line_number + index + 1)
        if rest:
            self._pieces.append(rest)
            self._pending += len(rest)
            if self._pending > self._max:
                self._too_long(self.line_number + len(lines) + 1)
        return self._number(lines)

    def _too_long(self, line_number: int) -> None:
        raise PayloadSchemaError(
            f"line {line_number} is longer than max_json_validation_bytes ({self._max})"
        )

    def finish(self) -> list[tuple[int, bytes]]:
        rest = b"".join(self._pieces)
        self._pieces, self._pending = [], 0
        return self._number([rest] if rest.strip() else [])

    def _number(self, lines: list[bytes]) -> list[tuple[int, bytes]]:
        numbered = []
        for line in lines:
            self.line_number += 1
            numbered.append((self.line_number, line))
        return numbered
