"""The delivery core on its own: a staged window -> archive bytes, hashing and ETag included.

The same calls as `delivery.delivering` makes for one window, minus the ledger and MinIO:
`window.parse_window`, `refs.digest_ref` for claim checks, `names.safe_member_names`,
`archive.manifest`, `archive.write_archive` into `upload.SpoolWriter` (the archive's sha256,
part MD5s and expected ETag). Ref bodies come from an in-memory stand-in for S3, so what is
timed is Sluice's CPU work, not a network.

Figures (issue 7): 10,000 x 1 KiB inline files against a naive delivery of the same window;
600 x 100 KiB refs against the per-byte reference (gzip + sha256 of the same payload bytes,
same run); one 64 MiB ref. Each is the best of N runs after a warm-up, wall time by
`perf_counter`, with the CPU time of that run in the note. Issue 17 adds the payload tables
(infrastructure/bench/typed.py): records written to a table per CPU second, CSV and NDJSON, and
a window of typed files delivered with and without its table rules.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import io
import json
import random
import tarfile
import time
import zlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final, cast

from isal import igzip, isal_zlib

from infrastructure.bench.results import Figure, progress

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from delivery.tables import Tables
    from delivery.window import ParsedWindow
    from delivery.window_entries import WindowEntry


KiB: Final = 1024
MiB: Final = 1024 * KiB
MB: Final = 1_000_000
GZIP_LEVEL: Final = 6
"""zlib's level of the naive delivery and of the staged windows the bench builds (Firehose's
own gzip); delivery's codec and level are its tunables' (`delivery.gzip_codec`, `.gzip_level`)."""
_LANDING: Final = "sluice-landing-bench"
_EVENT_MS: Final = 1_764_000_000_000
_STAGED_KEY: Final = "buffers/dt=2025-11-24/hour=16/sluice-bench-0-1-2025-11-24-16-00-00-0.json.gz"


@dataclass(frozen=True)
class Sizes:
    small_files: int
    small_bytes: int
    medium_files: int
    medium_bytes: int
    large_bytes: int
    repeats: int
    large_repeats: int
    table_records: int
    """Records of each of CSV and NDJSON for `tables_records_per_s` (files of TABLE_FILE_ROWS)."""


FULL: Final = Sizes(
    10_000, KiB, 600, 100 * KiB, 64 * MiB, repeats=5, large_repeats=3, table_records=200_000
)
QUICK: Final = Sizes(
    2_000, KiB, 150, 100 * KiB, 16 * MiB, repeats=3, large_repeats=2, table_records=40_000
)
TINY: Final = Sizes(
    20, KiB, 4, 100 * KiB, 256 * KiB, repeats=1, large_repeats=1, table_records=2 * 100
)
"""For tests: the figure names, not the numbers."""


# --- input ------------------------------------------------------------------------------------


class Payload:
    """Deterministic NDJSON-like text: slices of a 4 MiB pool at pseudo-random offsets.

    Text like producers' files (JSON records, repeated field names, varied values) so gzip
    works as hard as it would on them; the pool is larger than gzip's 32 KiB window, so slices
    do not compress against each other any more than real files would.
    """

    def __init__(self, seed: int = 7) -> None:
        rng = random.Random(seed)  # noqa: S311  # test data, not security
        words = ["alpha", "bravo", "delta", "echo", "kilo", "lima", "oscar", "tango", "zulu"]
        lines = []
        size = 0
        while size < 4 * MiB:
            line = (
                f'{{"order_id":"o-{rng.getrandbits(40):010x}","customer":"c-{rng.randrange(10**6)}",'
                f'"amount_pence":{rng.randrange(100, 10**6)},"currency":"GBP",'
                f'"ts":"2025-11-24T16:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{rng.randrange(1000):03d}Z",'
                f'"note":"{" ".join(rng.choices(words, k=rng.randrange(1, 8)))}"}}\n'
            )
            lines.append(line)
            size += len(line)
        self._pool = "".join(lines).encode()
        self._rng = rng

    def take(self, size: int) -> bytes:
        parts = []
        while size:
            start = self._rng.randrange(len(self._pool) // 2)
            part = self._pool[start : start + min(size, len(self._pool) - start)]
            parts.append(part)
            size -= len(part)
        return b"".join(parts)


@dataclass
class Window:
    """A staged window on local disk (the page cache: it was just written), and the bodies of
    its refs, by (key, version)."""

    path: Path
    files: int
    payload_bytes: int
    refs: dict[tuple[str, str], bytes]


def make_window(path: Path, payload: Payload, count: int, size: int, *, ref: bool) -> Window:
    """`count` files of `size` bytes as the processor stages them: enriched envelopes, one a
    line, gzip. Inline bodies ride in the envelope; refs stay in `Window.refs`."""
    files = [(f"acme/2025/11/24/orders-{n:06d}.json", payload.take(size)) for n in range(count)]
    return make_window_of(path, files, ref=ref)


def make_window_of(path: Path, files: list[tuple[str, bytes]], *, ref: bool) -> Window:
    """A staged window of these (key, body) files, as `make_window`."""
    from transform.envelope import Envelope, file_id  # noqa: PLC0415  # sections import lazily

    lines = []
    refs: dict[tuple[str, str], bytes] = {}
    for n, (key, body) in enumerate(files):
        version = f"v{n:06d}.bench"
        fields: dict[str, Any] = {
            "file_id": file_id(_LANDING, key, version),
            "bucket": _LANDING,
            "key": key,
            "version_id": version,
            "size": len(body),
            "event_time_ms": _EVENT_MS + n,
            "forwarded_at_ms": _EVENT_MS + n + 500,
        }
        if ref:
            refs[(key, version)] = body
            wire = Envelope.ref(**fields).encode()
        else:
            wire = Envelope.inline(body, **fields).encode()
        # The processor's enrichment, spliced as it splices it (transform.processing.enrich).
        lines.append(wire[:-1] + b',"firehose_arrival_ms":%d,"content_kind":"json"}\n' % _EVENT_MS)
    path.write_bytes(gzip.compress(b"".join(lines), compresslevel=GZIP_LEVEL, mtime=0))
    return Window(path, len(files), sum(len(body) for _, body in files), refs)


class _MemoryS3:
    """Just the S3 calls delivery makes for refs, answered from memory at no cost."""

    def __init__(self, bodies: dict[tuple[str, str], bytes]) -> None:
        self._bodies = bodies

    def get_object(  # boto3's parameter names
        self, *, Bucket: str, Key: str, VersionId: str, **_: Any
    ) -> dict[str, Any]:
        return {"Body": io.BytesIO(self._bodies[(Key, VersionId)])}


# --- the delivery core --------------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    length: int
    sha256: str
    etag: str
    files: int
    path: Path | None
    """The spooled archive, when kept."""


def deliver(
    window: Window, workdir: Path, *, keep: bool = False, tables: Tables | None = None
) -> Built:
    """What `delivering.deliver_window` does to one window between claiming and uploading;
    with `tables`, the part's payload table rows too (before the archive, as delivery does)."""
    from delivery import archive  # noqa: PLC0415  # sections import lazily
    from delivery.archive import ArchiveFile  # noqa: PLC0415
    from delivery.delivering import ArchiveFiles  # noqa: PLC0415
    from delivery.names import member_names  # noqa: PLC0415
    from delivery.refs import RefDigest, digest_ref, open_ref  # noqa: PLC0415
    from delivery.upload import SpoolWriter  # noqa: PLC0415
    from delivery.window import InlineBodies, parse_window  # noqa: PLC0415
    from infrastructure.tunables import load_tunables  # noqa: PLC0415
    from transform.payload_schemas import load  # noqa: PLC0415

    tunables = load_tunables()
    settings = tunables.delivery
    schemas = load(tunables.processor.payload_schemas)
    s3 = cast("S3Client", _MemoryS3(window.refs))
    parsed = parse_window(window.path)
    digests: dict[str, RefDigest] = {}
    for entry in parsed.entries.refs():
        outcome = digest_ref(
            s3,
            entry,
            schemas,
            chunk_bytes=settings.read_chunk_bytes,
            max_json_bytes=settings.max_json_validation_bytes,
        )
        if not isinstance(outcome, RefDigest):
            raise AssertionError(f"bench input excluded: {outcome}")  # noqa: TRY004  # a failed input, not a type
        digests[entry.file_id] = outcome
    members = parsed.entries
    files = ArchiveFiles(members, member_names(members.ids_and_keys), digests)

    manifest = workdir / "bench.manifest.json"
    with manifest.open("wb", buffering=1 << 20) as out:
        count = archive.write_manifest(out, "bench", _STAGED_KEY, (1, 1), files, parsed.bad_lines)
    if tables is not None:
        _write_tables(tables, parsed, members, s3, workdir, settings.max_json_validation_bytes)
    bodies = InlineBodies(parsed)

    def open_body(file: ArchiveFile) -> AbstractContextManager[BinaryIO]:
        entry = files.entry_of(file)
        return open_ref(s3, entry) if entry.is_ref else io.BytesIO(bodies.body(entry))

    try:
        writer = SpoolWriter(
            dir=workdir, min_part_size=settings.min_part_size_bytes, max_parts=settings.max_parts
        )
        with writer:
            archive.write_archive(
                writer,
                manifest,
                files,
                open_body,
                gzip_codec=settings.gzip_codec,
                gzip_level=settings.gzip_level,
                chunk_bytes=settings.read_chunk_bytes,
                checked_by_manifest=True,
                layout=files.layout(bodies),
            )
    finally:
        bodies.close()
        manifest.unlink()
    spooled = writer.result
    if not keep:
        spooled.remove()
    path = spooled.path if keep else None
    return Built(spooled.length, spooled.sha256, spooled.expected_etag, count, path)


def _write_tables(  # noqa: PLR0917  # the window's context, passed whole
    tables: Tables,
    parsed: ParsedWindow,
    members: Sequence[WindowEntry],
    s3: S3Client,
    workdir: Path,
    max_json_bytes: int,
) -> None:
    """The tables' own pass over the inline bodies, refs read again, as delivery does."""
    from delivery.refs import open_ref  # noqa: PLC0415  # sections import lazily
    from delivery.window import InlineBodies  # noqa: PLC0415
    from infrastructure.bench.typed import write_tables  # noqa: PLC0415

    bodies = InlineBodies(parsed)

    def body(entry: WindowEntry) -> BinaryIO:
        if entry.is_ref:
            with open_ref(s3, entry) as stream:
                return io.BytesIO(stream.read())
        return io.BytesIO(bodies.body(entry))

    try:
        write_tables(tables, members, body, workdir, max_json_bytes)
    finally:
        bodies.close()


def deflate_floor(built: Built, repeats: int) -> Timing:
    """Deflate alone of the archive's tar stream by delivery's codec and level: work no delivery
    of these bytes can skip."""
    if built.path is None:
        raise ValueError("the archive was not kept")
    tar = gzip.decompress(built.path.read_bytes())
    built.path.unlink()
    compressobj = delivery_gzip()

    def deflate() -> None:
        compressor = compressobj()
        compressor.compress(tar)
        compressor.flush()

    return best_of(repeats, deflate)


def delivery_gzip() -> Callable[[], Any]:
    """A compressobj factory of delivery's gzip codec and level (tunables), gzip framing."""
    from infrastructure.tunables import load_tunables  # noqa: PLC0415  # sections import lazily

    settings = load_tunables().delivery
    module: Any = isal_zlib if settings.gzip_codec == "isal" else zlib
    return functools.partial(module.compressobj, settings.gzip_level, zlib.DEFLATED, 31)


def limit_of(window: Window, repeats: int) -> Timing:
    """The physical limit of delivering `window`: its staged bytes inflated, the result deflated
    by delivery's codec and level, and hashed (sha256), once each, with the fastest codec
    shipped (ISA-L); no parsing, no per-file work, no second hash."""
    staged = window.path.read_bytes()
    refs = list(window.refs.values())
    compressobj = delivery_gzip()

    def once() -> None:
        compressor = compressobj()
        inflated = igzip.decompress(staged)  # type: ignore[no-untyped-call]  # igzip.py is not annotated
        for data in [inflated, *refs]:
            hashlib.sha256(data).digest()
            compressor.compress(data)
        compressor.flush()

    return best_of(repeats, once)


# --- what delivery is compared with -------------------------------------------------------------


class _HashingFile:
    """Output with the same hashing as the spool (sha256 and MD5), into a file."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("wb")
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5(usedforsecurity=False)

    def write(self, data: bytes) -> int:
        self._file.write(data)
        self.sha256.update(data)
        self.md5.update(data)
        return len(data)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def naive_deliver(window: Window, workdir: Path) -> int:
    """The obvious delivery: stdlib gzip level 6, `json.loads` per line, `tarfile` (PAX), every
    inline body checked against its sha256, the output hashed like the spool. Fewer checks
    than Sluice (no schema validation, no safe names): a floor, not a straw man."""
    records = []
    with gzip.open(window.path, "rb") as lines:
        for line in lines:
            record = json.loads(line)
            body = (
                record["body"].encode()
                if record["body_encoding"] == "utf8"
                else base64.b64decode(record["body"])
            )
            if hashlib.sha256(body).hexdigest() != record["body_sha256"]:
                raise AssertionError("bench input is corrupt")
            records.append((record, body))
    manifest = json.dumps(
        {"files": [{k: v for k, v in r.items() if k != "body"} for r, _ in records]},
        sort_keys=True,
    ).encode()
    out = _HashingFile(workdir / "naive.tar.gz")
    try:
        with tarfile.open(
            fileobj=cast("BinaryIO", out),
            mode="w:gz",
            compresslevel=GZIP_LEVEL,
            format=tarfile.PAX_FORMAT,
        ) as tar:
            for name, data, mtime in [("MANIFEST.json", manifest, 0)] + [
                (r["key"], body, r["event_time_ms"] // 1000) for r, body in records
            ]:
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), mtime, 0o644
                info.uname = info.gname = "sluice"
                tar.addfile(info, io.BytesIO(data))
    finally:
        out.close()
    out.sha256.hexdigest()
    out.md5.hexdigest()
    return len(records)


def reference(bodies: list[bytes], compressobj: Callable[[], Any]) -> int:
    """The per-byte floor: one gzip stream of the bodies by delivery's codec and level, and
    their sha256."""
    compressor = compressobj()
    out = 0
    for body in bodies:
        hashlib.sha256(body).digest()
        out += len(compressor.compress(body))
    return out + len(compressor.flush())


# --- timing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    wall: float
    cpu: float


def best_of(repeats: int, run: Callable[[], object]) -> Timing:
    """One warm-up, then the fastest of `repeats` runs (the least disturbed by other load)."""
    run()
    best = Timing(float("inf"), float("inf"))
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if wall < best.wall:
            best = Timing(wall, cpu)
    return best


def _cpu(t: Timing) -> str:
    return f"best of N wall {t.wall * 1000:,.0f} ms, CPU {t.cpu * 1000:,.0f} ms"


# --- the section --------------------------------------------------------------------------------


def run(quick: bool, workdir: Path) -> list[Figure]:
    return measure(QUICK if quick else FULL, workdir, reduced=quick)


def measure(sizes: Sizes, workdir: Path, *, reduced: bool = True) -> list[Figure]:
    payload = Payload()
    less = " (quick run: smaller input)" if reduced else ""
    progress("core: building windows")
    small = make_window(
        workdir / "small.json.gz", payload, sizes.small_files, sizes.small_bytes, ref=False
    )
    medium = make_window(
        workdir / "medium.json.gz", payload, sizes.medium_files, sizes.medium_bytes, ref=True
    )
    large = make_window(workdir / "large.json.gz", payload, 1, sizes.large_bytes, ref=True)

    progress(f"core: {sizes.small_files:,} x 1 KiB, Sluice then naive")
    sluice_small = best_of(sizes.repeats, lambda: deliver(small, workdir))
    naive_small = best_of(sizes.repeats, lambda: naive_deliver(small, workdir))
    sluice_rate = small.files / sluice_small.wall
    naive_rate = small.files / naive_small.wall
    ratios = compression_ratios(deliver(small, workdir, keep=True), workdir / "naive.tar.gz")
    floor = deflate_floor(deliver(small, workdir, keep=True), sizes.repeats)
    limit = (
        f"; deflate alone of the tar stream takes {floor.wall * 1000:,.0f} ms "
        f"({floor.wall / sluice_small.wall:.0%} of this)"
    )
    against_limit = limit_figures(small, sluice_small, sizes.repeats, less)

    progress(f"core: {sizes.medium_files:,} x 100 KiB refs, Sluice then the reference")
    sluice_medium = best_of(sizes.repeats, lambda: deliver(medium, workdir))
    bodies = list(medium.refs.values())
    compressobj = delivery_gzip()  # outside the timed runs: it reads the tunables
    reference_medium = best_of(sizes.repeats, lambda: reference(bodies, compressobj))
    medium_rate = medium.payload_bytes / MB / sluice_medium.wall
    reference_rate = medium.payload_bytes / MB / reference_medium.wall

    progress(f"core: one {sizes.large_bytes // MiB or 1} MiB ref")
    sluice_large = best_of(sizes.large_repeats, lambda: deliver(large, workdir))
    large_rate = large.payload_bytes / MB / sluice_large.wall
    (workdir / "naive.tar.gz").unlink(missing_ok=True)

    tables = measure_tables(sizes, workdir)

    return [
        Figure(
            name="delivery_files_per_s_1k",
            value=round(sluice_rate),
            unit="files/s",
            what=f"window of {small.files:,} x 1 KiB inline files -> spooled .tar.gz with sha256 "
            f"and ETag (parse, validate, names, manifest, archive){less}",
            goal=">= 3x naive",
            met=sluice_rate >= 3 * naive_rate,
            reference=f"naive: {naive_rate:,.0f} files/s ({sluice_rate / naive_rate:.2f}x); "
            + ratios,
            note=_cpu(sluice_small)
            + (limit if sluice_rate < 3 * naive_rate else "")
            + f"; {tables.delivery_cost}",
        ),
        Figure(
            name="naive_files_per_s_1k",
            value=round(naive_rate),
            unit="files/s",
            what=f"naive delivery of the same window: gzip level {GZIP_LEVEL}, json.loads per "
            f"line, tarfile, body sha256 checked, output hashed{less}",
            note=_cpu(naive_small),
        ),
        Figure(
            name="delivery_mb_per_s_100k",
            value=round(medium_rate, 1),
            unit="MB/s",
            what=f"window of {medium.files:,} x 100 KiB refs (bodies from memory) -> spooled "
            f".tar.gz: ref sha256 pass, archive, sha256 + part MD5s{less}",
            goal=">= 50% of the per-byte reference",
            met=medium_rate >= 0.5 * reference_rate,
            reference=f"reference: {reference_rate:,.1f} MB/s ({medium_rate / reference_rate:.0%})",
            note=_cpu(sluice_medium)
            + (
                "; beyond the reference's deflate and sha256, delivery hashes each ref twice "
                "(claim-check pass, archive pass) and the archive once more (sha256, MD5)"
                if medium_rate < 0.5 * reference_rate
                else ""
            ),
        ),
        Figure(
            name="reference_mb_per_s_100k",
            value=round(reference_rate, 1),
            unit="MB/s",
            what=f"the same payload bytes through delivery's gzip ({codec_name()}) and sha256, "
            f"once each{less}",
            note=_cpu(reference_medium),
        ),
        Figure(
            name="delivery_mb_per_s_64m",
            value=round(large_rate, 1),
            unit="MB/s",
            what=f"one {sizes.large_bytes / MiB:g} MiB ref (from memory) -> spooled .tar.gz"
            + (" (quick run: 16 MiB, not 64 MiB)" if reduced and sizes is QUICK else less),
            reference=f"reference (100 KiB files): {reference_rate:,.1f} MB/s",
            note=_cpu(sluice_large),
        ),
        *against_limit,
        tables.figure(less),
    ]


def codec_name() -> str:
    """Delivery's gzip, as the figures name it (`isal level 2`)."""
    from infrastructure.tunables import load_tunables  # noqa: PLC0415  # sections import lazily

    settings = load_tunables().delivery
    return f"{settings.gzip_codec} level {settings.gzip_level}"


def compression_ratios(built: Built, naive: Path) -> str:
    """What the faster deflate costs in bytes: each archive's tar stream ÷ its size."""
    if built.path is None:
        raise ValueError("the archive was not kept")
    tar_bytes = len(gzip.decompress(built.path.read_bytes()))
    built.path.unlink()
    ratio, naive_ratio = tar_bytes / built.length, tar_bytes / naive.stat().st_size
    return (
        f"compression {ratio:.2f}:1 ({codec_name()}) against naive's {naive_ratio:.2f}:1 "
        f"(zlib level {GZIP_LEVEL}): archives {naive_ratio / ratio - 1:+.0%} in bytes"
    )


def limit_figures(window: Window, delivered: Timing, repeats: int, less: str) -> list[Figure]:
    """Delivery's CPU per staged MB against the limit of the same work (`limit_of`)."""
    staged_mb = window.path.stat().st_size / MB
    limit = limit_of(window, repeats)
    delivery_cost, limit_cost = delivered.cpu / staged_mb, limit.cpu / staged_mb
    ratio = delivery_cost / limit_cost
    return [
        Figure(
            name="delivery_cpu_s_per_staged_mb",
            value=round(delivery_cost, 3),
            unit="CPU s/MB",
            what=f"delivery's CPU per MB of staged window (gzip), the {window.files:,} x 1 KiB "
            f"window of delivery_files_per_s_1k ({staged_mb:.1f} MB staged){less}",
            note=_cpu(delivered),
        ),
        Figure(
            name="limit_cpu_s_per_staged_mb",
            value=round(limit_cost, 3),
            unit="CPU s/MB",
            what=f"the same staged bytes inflated, deflated ({codec_name()}, the fastest codec "
            f"shipped) and hashed (sha256), once each: no parsing, no per-file work{less}",
            note=_cpu(limit),
        ),
        Figure(
            name="delivery_vs_limit",
            value=round(ratio, 2),
            unit="x",
            what="delivery_cpu_s_per_staged_mb / limit_cpu_s_per_staged_mb",
            goal="<= 2x",
            met=ratio <= 2,  # the goal, written above
            reference=f"limit: {limit_cost:.3f} CPU s/MB",
            note=""
            if ratio <= 2
            else "per-file work (parse, check, name, tar header, manifest "
            "entry) is most of a 1 KiB file's cost; the limit has none",
        ),
    ]


# --- payload tables ----------------------------------------------------------------------------

TABLE_FILE_ROWS: Final = 100
"""Records a file for `tables_records_per_s`: per-file work (a reader, its source columns) is
in the figure, as it is in delivery."""
TYPED_CSV_ROWS: Final = 20
TYPED_NDJSON_ROWS: Final = 12
"""Records a typed file of about 1 KiB, for the with/without comparison of delivery."""


@dataclass(frozen=True)
class TablesMeasured:
    csv_rate: float
    ndjson_rate: float
    csv_cpu: Timing
    ndjson_cpu: Timing
    typed_files: int
    with_tables: float
    without_tables: float

    @property
    def delivery_cost(self) -> str:
        extra = self.without_tables / self.with_tables - 1
        return (
            f"a window of {self.typed_files:,} typed ~1 KiB files (CSV, NDJSON): "
            f"{self.with_tables:,.0f} files per CPU second writing their payload tables, "
            f"{self.without_tables:,.0f} without (the tables take {extra:.0%} more CPU)"
        )

    def figure(self, less: str) -> Figure:
        return Figure(
            name="tables_records_per_s",
            value=round(min(self.csv_rate, self.ndjson_rate)),
            unit="records/s",
            what="records written to a payload table per CPU second (parse, convert, validate "
            "with fastavro, format the JSON line, gzip), the slower of CSV meter readings and "
            f"NDJSON orders, files of {TABLE_FILE_ROWS} records{less}",
            reference=f"csv {self.csv_rate:,.0f}/s, ndjson {self.ndjson_rate:,.0f}/s; "
            + self.delivery_cost,
            note=f"csv: {_cpu(self.csv_cpu)}; ndjson: {_cpu(self.ndjson_cpu)}",
        )


def measure_tables(sizes: Sizes, workdir: Path) -> TablesMeasured:
    """`tables_records_per_s`, and a window of typed files delivered with and without its
    payload tables."""
    from infrastructure.bench import typed  # noqa: PLC0415  # sections import lazily
    from infrastructure.tunables import load_tunables  # noqa: PLC0415

    tables = typed.shipped_tables()
    max_json = load_tunables().delivery.max_json_validation_bytes
    rates: dict[str, tuple[float, Timing]] = {}
    for kind in ("csv", "ndjson"):
        progress(f"core: {sizes.table_records:,} {kind} records into their payload table")
        files = typed.typed_files(kind, sizes.table_records // TABLE_FILE_ROWS, TABLE_FILE_ROWS)
        members = [_entry(n, key, len(body)) for n, (key, body) in enumerate(files)]
        bodies = {entry.file_id: body for entry, (_, body) in zip(members, files, strict=True)}

        def write(members: list[WindowEntry] = members, bodies: dict[str, bytes] = bodies) -> None:
            typed.write_tables(
                tables, members, lambda e: io.BytesIO(bodies[e.file_id]), workdir, max_json
            )

        timing = best_of(sizes.repeats, write)
        rates[kind] = (len(files) * TABLE_FILE_ROWS / timing.cpu, timing)
    count = sizes.small_files
    progress(f"core: {count:,} typed files, delivered with then without their tables")
    window = make_window_of(
        workdir / "typed.json.gz",
        typed.typed_files("csv", count // 2, TYPED_CSV_ROWS)
        + typed.typed_files("ndjson", count - count // 2, TYPED_NDJSON_ROWS),
        ref=False,
    )
    # Compared by CPU time, as tables_records_per_s: the ratio is the point, and wall time on a
    # loaded machine says more about the load.
    with_tables = best_of(sizes.repeats, lambda: deliver(window, workdir, tables=tables))
    without = best_of(sizes.repeats, lambda: deliver(window, workdir))
    return TablesMeasured(
        csv_rate=rates["csv"][0],
        ndjson_rate=rates["ndjson"][0],
        csv_cpu=rates["csv"][1],
        ndjson_cpu=rates["ndjson"][1],
        typed_files=count,
        with_tables=count / with_tables.cpu,
        without_tables=count / without.cpu,
    )


def _entry(number: int, key: str, size: int) -> WindowEntry:
    from delivery.window_entries import WindowEntry  # noqa: PLC0415  # sections import lazily
    from transform.envelope import file_id  # noqa: PLC0415

    version = f"v{number:06d}.bench"
    return WindowEntry(
        line_number=number + 1,
        file_id=file_id(_LANDING, key, version),
        bucket=_LANDING,
        key=key,
        version_id=version,
        size=size,
        event_time_ms=_EVENT_MS + number,
        encoding="utf8",
        body_sha256=None,
    )
