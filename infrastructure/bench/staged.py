"""Benchmark input: staged windows as Firehose writes them, and large landing objects.

Windows are written to a local gzip file line by line (never whole in memory), then uploaded.
Inline bodies are drawn from a pool of generated bodies — JSON documents, CSV, and binary
(which travels as base64) — with sizes spread log-normally up to the inline limit, as producers'
small files are: each file gets its own key, version and file_id, so delivery sees distinct
files. Large bodies (`ref` files) come from `PatternStream`: incompressible bytes produced on the
fly, so a 2 GiB object never exists in memory or on local disk.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import random
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from transform.envelope import Envelope, file_id

GZIP_LEVEL: Final = 6
"""Firehose's GZIP; its level is not documented, zlib's default is the likely one."""
EVENT_TIME_MS: Final = 1_795_608_000_000
"""2026-11-25 12:00 UTC, the partition the windows are staged under."""
WINDOW_PREFIX: Final = "buffers/dt=2026-11-25/hour=12/"
MEDIAN_BODY_BYTES: Final = 4096
MAX_INLINE_BODY_BYTES: Final = 60_000
"""Below the forwarder's 64 KiB inline limit (a larger file would travel as a ref)."""
_WORDS: Final = [
    *("order", "invoice", "payment", "refund", "shipment", "customer", "account", "ledger"),
    *("balance", "credit", "debit", "pending", "settled", "failed", "retry", "batch"),
    *("region", "store", "warehouse", "sku", "quantity", "price", "currency", "GBP", "EUR"),
    *("USD", "london", "leeds", "bristol", "acme", "globex", "initech", "umbrella"),
]


@dataclass(frozen=True)
class Body:
    data: bytes
    envelope: dict[str, object]
    """The envelope's body fields (`body`, `body_encoding`, `body_sha256`), computed once."""


class BodyPool:
    """`size` generated bodies to draw files from (sha256 and encoding done once per body)."""

    def __init__(
        self, rng: random.Random, size: int = 256, median_bytes: int = MEDIAN_BODY_BYTES
    ) -> None:
        self.bodies = [self._body(rng, median_bytes) for _ in range(size)]

    @staticmethod
    def _body(rng: random.Random, median_bytes: int) -> Body:
        length = min(
            MAX_INLINE_BODY_BYTES,
            max(64, round(rng.lognormvariate(math.log(median_bytes), 1.1))),
        )
        kind = rng.random()
        if kind < 0.7:
            data = _json_document(rng, length)
        elif kind < 0.85:
            data = _csv(rng, length)
        else:
            data = rng.randbytes(length)
        fields = Envelope.inline(
            data,
            file_id="0" * 64,
            bucket="-",
            key="-",
            version_id="-",
            size=len(data),
            event_time_ms=0,
            forwarded_at_ms=0,
        ).to_dict()
        return Body(
            data=data,
            envelope={k: fields[k] for k in ("body", "body_encoding", "body_sha256")},
        )

    def pick(self, rng: random.Random) -> Body:
        return rng.choice(self.bodies)


def _json_document(rng: random.Random, length: int) -> bytes:
    records: list[str] = []
    size = 2
    while size < length:
        record = json.dumps(
            {
                "id": f"{rng.getrandbits(64):016x}",
                "ts": EVENT_TIME_MS + rng.randrange(3_600_000),
                "kind": rng.choice(_WORDS),
                "amount_pence": rng.randrange(100_000),
                "tags": rng.sample(_WORDS, 3),
                "note": " ".join(rng.choices(_WORDS, k=rng.randrange(2, 12))),
            },
            separators=(",", ":"),
        )
        records.append(record)
        size += len(record) + 1
    return ("[" + ",".join(records) + "]").encode()


def _csv(rng: random.Random, length: int) -> bytes:
    rows = ["id,ts,kind,amount_pence,currency"]
    size = len(rows[0]) + 1
    while size < length:
        row = (
            f"{rng.getrandbits(48):012x},{EVENT_TIME_MS + rng.randrange(3_600_000)},"
            f"{rng.choice(_WORDS)},{rng.randrange(100_000)},{rng.choice(('GBP', 'EUR', 'USD'))}"
        )
        rows.append(row)
        size += len(row) + 1
    return ("\n".join(rows) + "\n").encode()


@dataclass(frozen=True)
class StagedWindow:
    key: str
    """Its key in the staging bucket (`buffers/dt=…/hour=…/<window-id>.json.gz`)."""
    path: Path
    """The local gzip file (removed once uploaded, by the caller)."""
    files: int
    envelope_bytes: int
    """Uncompressed: the newline-terminated envelopes, what Firehose's buffer size counts."""
    staged_bytes: int
    """The gzip object as stored: what a copy tool moves."""


def window_key(rng: random.Random, stream: str = "sluice-bench-0") -> str:
    """A key as Firehose names its objects, unique per call."""
    unique = uuid.UUID(int=rng.getrandbits(128), version=4)
    return f"{WINDOW_PREFIX}{stream}-1-2026-11-25-12-00-00-{unique}.json.gz"


def write_inline_window(
    path: Path,
    *,
    target_bytes: int,
    pool: BodyPool,
    rng: random.Random,
    landing_bucket: str,
    producer: str = "acme",
    max_files: int | None = None,
) -> StagedWindow:
    """A window of inline files, `target_bytes` of envelopes (the last line may pass it), or
    `max_files` files if that comes first."""
    files = written = 0
    with gzip.GzipFile(path, "wb", compresslevel=GZIP_LEVEL, mtime=0) as out:
        while written < target_bytes and (max_files is None or files < max_files):
            body = pool.pick(rng)
            key = f"{producer}/2026/11/25/{rng.getrandbits(64):016x}-{files}.json"
            version = f"{rng.getrandbits(128):032x}"
            record = {
                "schema_version": 1,
                "file_id": file_id(landing_bucket, key, version),
                "bucket": landing_bucket,
                "key": key,
                "version_id": version,
                "size": len(body.data),
                "event_time_ms": EVENT_TIME_MS,
                "forwarded_at_ms": EVENT_TIME_MS + 500,
                **body.envelope,
            }
            line = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
            out.write(line)
            written += len(line)
            files += 1
    return StagedWindow(window_key(rng), path, files, written, path.stat().st_size)


@dataclass(frozen=True)
class LandedRef:
    bucket: str
    key: str
    version_id: str
    size: int


def write_ref_window(path: Path, refs: list[LandedRef], rng: random.Random) -> StagedWindow:
    """A window of `ref` envelopes: the bodies stay in the landing bucket."""
    written = 0
    with gzip.GzipFile(path, "wb", compresslevel=GZIP_LEVEL, mtime=0) as out:
        for ref in refs:
            line = (
                Envelope.ref(
                    file_id=file_id(ref.bucket, ref.key, ref.version_id),
                    bucket=ref.bucket,
                    key=ref.key,
                    version_id=ref.version_id,
                    size=ref.size,
                    event_time_ms=EVENT_TIME_MS,
                    forwarded_at_ms=EVENT_TIME_MS + 500,
                ).encode()
                + b"\n"
            )
            out.write(line)
            written += len(line)
    return StagedWindow(window_key(rng), path, len(refs), written, path.stat().st_size)


class PatternStream(io.RawIOBase):
    """`size` incompressible bytes, made on the fly: a 1 MiB random block, repeated.

    Deflate looks back only 32 KiB, so the repetition does not help gzip: delivery compresses
    this as it would a video or an archive a producer dropped. `seed` makes it reproducible.
    """

    BLOCK: Final = 1 << 20

    def __init__(self, size: int, seed: int = 0) -> None:
        super().__init__()
        self._block = random.Random(seed).randbytes(self.BLOCK)  # noqa: S311  # data, not security
        self._remaining = size
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]  # RawIOBase's is typed for any buffer
        view = memoryview(buffer).cast("B")
        want = min(len(view), self._remaining)
        done = 0
        while done < want:
            take = min(want - done, self.BLOCK - self._offset)
            view[done : done + take] = self._block[self._offset : self._offset + take]
            done += take
            self._offset = (self._offset + take) % self.BLOCK
        self._remaining -= done
        return done
