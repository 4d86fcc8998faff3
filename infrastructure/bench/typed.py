"""Payload tables in the core bench: typed files (CSV meter readings, NDJSON orders) and the work
delivery does to write their rows (`delivery.tables`), an S3 stand-in taking the puts for free.

`tables_records_per_s` is records written to a table per CPU second (parse, convert, validate,
format, gzip to the spool), for CSV and NDJSON apart; the core section also delivers a window of
typed files with and without its table rules, so delivery's figure shows what the tables cost.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final, cast

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from delivery.tables import TableCounts, Tables
    from delivery.window_entries import WindowEntry

_READ_AT_MS: Final = 1_764_000_000_000
STAGED_KEY: Final = "buffers/dt=2025-11-24/hour=16/sluice-bench-0-1-2025-11-24-16-00-00-0.json.gz"


def readings_csv(rng: random.Random, rows: int) -> bytes:
    """A meter-readings CSV (readings/, payloads/meter_reading.avsc) of `rows` data rows, with
    the mix a producer sends: epoch and ISO 8601 times, empty optional cells, a quoted note."""
    lines = ["meter_id,read_at,kwh,estimated,note"]
    for n in range(rows):
        read_at = (
            str(_READ_AT_MS + n * 1000)
            if n % 2
            else f"2025-11-24T16:{n // 60 % 60:02d}:{n % 60:02d}.{n % 1000:03d}Z"
        )
        note = '"checked, ok"' if n % 5 == 0 else ""
        estimated = ("true", "false", "")[n % 3]
        lines.append(
            f"M-{rng.randrange(10**6):06d},{read_at},{rng.random() * 50:.3f},{estimated},{note}"
        )
    return ("\r\n".join(lines) + "\r\n").encode()


def orders_ndjson(rng: random.Random, rows: int) -> bytes:
    """An orders NDJSON file (orders/, payloads/order.avsc) of `rows` lines."""
    currencies = ("GBP", "EUR", "USD")
    return b"".join(
        json.dumps(
            {
                "order_id": f"o-{rng.getrandbits(40):010x}",
                "amount_pence": rng.randrange(100, 10**6),
                "currency": currencies[n % 3],
                **({"note": "gift wrap"} if n % 4 == 0 else {}),
            }
        ).encode()
        + b"\n"
        for n in range(rows)
    )


def typed_files(kind: str, files: int, rows: int, seed: int = 11) -> list[tuple[str, bytes]]:
    """`files` files of `rows` records each: `kind` csv (readings/) or ndjson (orders/)."""
    rng = random.Random(seed)  # noqa: S311  # test data, not security
    if kind == "csv":
        return [(f"readings/site-{n:05d}.csv", readings_csv(rng, rows)) for n in range(files)]
    return [(f"orders/batch-{n:05d}.ndjson", orders_ndjson(rng, rows)) for n in range(files)]


def shipped_tables() -> Tables:
    from delivery.tables import load_tables  # noqa: PLC0415  # sections import lazily
    from infrastructure.tunables import load_tunables  # noqa: PLC0415

    return load_tables(load_tunables().processor.payload_schemas)


class _NullS3:
    """put_object answered at no cost: what is timed is Sluice's CPU work, not a network."""

    def put_object(self, **_: Any) -> dict[str, Any]:
        return {}


def write_tables(
    tables: Tables,
    members: Sequence[WindowEntry],
    body: Any,
    workdir: Path,
    max_json_bytes: int,
) -> dict[str, TableCounts]:
    """What delivery does for one part's table objects (`delivering._write_tables`); `body`
    gives an entry's bytes."""
    from delivery.layout import window_name  # noqa: PLC0415
    from delivery.tables import TableWriter  # noqa: PLC0415  # sections import lazily

    @contextmanager
    def open_body(entry: WindowEntry) -> Iterator[BinaryIO]:
        yield body(entry)

    writer = TableWriter(
        tables,
        cast("S3Client", _NullS3()),
        "staging",
        max_json_bytes=max_json_bytes,
        attempts=1,
        backoff_base=0.0,
        backoff_cap=0.0,
    )
    name = window_name(STAGED_KEY, ".json.gz")
    return writer.write_part(name, 1, members, members, open_body, workdir)
