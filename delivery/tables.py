"""Delivery writes the payload tables: a window part's typed files → rows in the staging bucket.

For each part it builds, before the part's archive goes to MinIO, delivery writes one object per
payload table that has a file planned in the part (infrastructure/payload_tables.py,
`PayloadTable.object_key`): gzip JSON lines, one row per record of each file the part delivers
(`delivery.table_rows`), files in window order. The ledger decides which window owns a file, and
a part holds the same files on every attempt, so a retry rewrites the same objects with the same
bytes (gzip without a timestamp): each file's rows are written once, whatever the attempts. A
table whose planned files were all excluded still gets its object, empty, replacing any rows an
earlier attempt wrote before the exclusion was found. Rows are spooled to local storage and put
from there, so memory holds one line (or a json body) at a time.
"""

from __future__ import annotations

import gzip
import json
import random
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Final, NamedTuple

from aws_lambda_powertools import Logger
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from delivery.layout import WindowName
from delivery.table_rows import RowFormat, RowReader
from delivery.window_entries import WindowEntry
from infrastructure.payload_tables import PayloadTable, payload_table, table_for_key
from infrastructure.tunables import PayloadSchemaRule

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = Logger(child=True)

GZIP_LEVEL: Final = 6
"""Fixed, so an attempt's object is byte for byte the one an earlier attempt wrote."""
FLUSH_BYTES: Final = 256 * 1024
"""Rows are handed to gzip this many bytes at a time: one call per row costs more than the row."""
TRANSIENT_CODES: Final = frozenset(
    {
        "InternalError",  # 500: S3 asks clients to retry
        "ServiceUnavailable",  # 503
        "SlowDown",  # 503: throttling
        "RequestTimeout",  # 400: the socket idled mid-body; a new request goes through
        "OperationAborted",  # 409: a conflicting operation on the key is in progress
    }
)
"""S3 error codes worth another attempt (after botocore's own retries); anything else
(AccessDenied, NoSuchBucket, ...) needs a fix, not a wait, and raises at once."""
TRANSIENT_TRANSPORT: Final = (
    EndpointConnectionError,
    ConnectionClosedError,
    ConnectTimeoutError,
    ReadTimeoutError,
)

OpenBody = Callable[[WindowEntry], AbstractContextManager[BinaryIO]]
"""A member's bytes: its inline body, its ref's local copy, or the ref read from S3."""


class TableWriteError(RuntimeError):
    """A table object could not be written to the staging bucket; names bucket and key."""


class TableStoreUnavailable(TableWriteError):
    """The staging bucket kept answering with transient errors: the environment, not the window."""


class Tables(NamedTuple):
    """The payload types' tables and their readers, built once per cold start."""

    readers: tuple[RowReader, ...] = ()

    @property
    def tables(self) -> tuple[PayloadTable, ...]:
        return tuple(reader.table for reader in self.readers)

    def for_key(self, key: str) -> RowReader | None:
        table = table_for_key(self.tables, key)
        if table is None:
            return None
        return next(reader for reader in self.readers if reader.table is table)


def load_tables(rules: Sequence[PayloadSchemaRule]) -> Tables:
    """Every payload type's table (PayloadTableError, a TunablesError, for a schema it cannot
    type: the cold start fails, loudly)."""
    readers = []
    for rule in rules:
        table = payload_table(rule)
        schema = json.loads(rule.schema_path.read_text())  # payload_table read it already
        readers.append(RowReader(table, schema, rule.csv_delimiter))
    return Tables(tuple(readers))


@dataclass
class TableCounts:
    """What one attempt wrote to one table."""

    rows: int = 0
    """Rows written, valid and invalid."""
    invalid: int = 0
    first_error: str | None = None
    """The first invalid row's file, record number and error: where to start looking."""

    def add(self, other: TableCounts) -> None:
        self.rows += other.rows
        self.invalid += other.invalid
        self.first_error = self.first_error or other.first_error


class TableWriter(NamedTuple):
    """Where a window's table objects go, and how hard to try."""

    tables: Tables
    s3: S3Client
    bucket: str
    max_json_bytes: int
    """A json-format body is parsed whole: one larger is one invalid row, not read."""
    attempts: int
    backoff_base: float
    backoff_cap: float
    sleep: Callable[[float], None] = time.sleep

    def write_part(  # noqa: PLR0917  # one part's whole context
        self,
        name: WindowName,
        part: int,
        planned: Sequence[WindowEntry],
        members: Sequence[WindowEntry],
        open_body: OpenBody,
        workdir: Path,
        check: Callable[[], None] = lambda: None,
    ) -> dict[str, TableCounts]:
        """Write the table objects of part `part`: one per table with a file in `planned`
        (the part's files as planned), holding the rows of `members` (those it delivers,
        in window order). `check` runs before each put (the window's lease). Returns each
        table's counts."""
        if not self.tables.readers:  # no payload tables: not a pass over the files
            return {}
        present = {
            reader.table.name for entry in planned if (reader := self.tables.for_key(entry.key))
        }
        if not present:
            return {}
        spools = {
            table.name: _Spool(workdir / f"table-{part}-{index}.json.gz")
            for index, table in enumerate(self.tables.tables)
            if table.name in present
        }
        counts = {table: TableCounts() for table in spools}
        try:
            for entry in members:
                reader = self.tables.for_key(entry.key)
                if reader is not None:
                    counts[reader.table.name].add(
                        self._write_file(reader, entry, name, open_body, spools[reader.table.name])
                    )
            for table, spool in spools.items():
                spool.close()
                check()
                key = self._table(table).object_key(name.dt, name.hour, name.window_id, part)
                self._put(spool.path, key)
                logger.info(
                    "payload table rows written",
                    table=table,
                    key=key,
                    rows=counts[table].rows,
                    invalid=counts[table].invalid,
                )
        finally:
            for spool in spools.values():
                spool.discard()
        return counts

    def _table(self, name: str) -> PayloadTable:
        return next(table for table in self.tables.tables if table.name == name)

    def _write_file(
        self,
        reader: RowReader,
        entry: WindowEntry,
        name: WindowName,
        open_body: OpenBody,
        spool: _Spool,
    ) -> TableCounts:
        counts = TableCounts()
        rows = RowFormat(
            file_id=entry.file_id,
            key=entry.key,
            version_id=entry.version_id,
            event_time_ms=entry.event_time_ms,
            window_id=name.window_id,
            fields=[column.name for column in reader.table.fields],
        )
        with open_body(entry) as body:
            for record in reader.records(body, size=entry.size, max_json_bytes=self.max_json_bytes):
                spool.write(rows.line(record))
                counts.rows += 1
                if record.values is None:
                    counts.invalid += 1
                    if counts.first_error is None:
                        counts.first_error = f"{entry.key} record {record.number}: {record.error}"
        return counts

    def _put(self, path: Path, key: str) -> None:
        """PutObject from the spool, retrying TRANSIENT_CODES and transport errors with
        full-jitter backoff; TableWriteError (naming bucket and key) when it cannot."""
        for attempt in range(1, self.attempts + 1):
            try:
                with path.open("rb") as body:
                    self.s3.put_object(
                        Bucket=self.bucket, Key=key, Body=body, ContentType="application/gzip"
                    )
            except (ClientError, *TRANSIENT_TRANSPORT) as err:
                where = f"payload table object s3://{self.bucket}/{key}"
                if not _transient(err):
                    raise TableWriteError(f"{where} not written: {err}") from err
                if attempt == self.attempts:
                    raise TableStoreUnavailable(
                        f"{where} not written after {attempt} attempts: {err}"
                    ) from err
                delay = min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))
                self.sleep(delay * random.random())  # noqa: S311  # jitter, not security
            else:
                return


def _transient(err: Exception) -> bool:
    if isinstance(err, ClientError):
        return err.response.get("Error", {}).get("Code", "") in TRANSIENT_CODES
    return True  # one of TRANSIENT_TRANSPORT


def total(counts: Iterable[dict[str, TableCounts]]) -> dict[str, TableCounts]:
    """Per-table counts of several parts, added up."""
    summed: dict[str, TableCounts] = {}
    for part in counts:
        for table, found in part.items():
            summed.setdefault(table, TableCounts()).add(found)
    return summed


class _Spool:
    """One table object being written: gzip (no name, no timestamp) to a local file, rows
    handed over FLUSH_BYTES at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = path.open("wb")
        self._gzip = gzip.GzipFile(
            filename="", mode="wb", fileobj=self._file, compresslevel=GZIP_LEVEL, mtime=0
        )
        self._pending: list[bytes] = []
        self._size = 0
        self._closed = False

    def write(self, line: bytes) -> None:
        self._pending.append(line)
        self._size += len(line)
        if self._size >= FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        self._gzip.write(b"".join(self._pending))
        self._pending, self._size = [], 0

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._flush()
            self._gzip.close()
            self._file.close()

    def discard(self) -> None:
        if not self._closed:
            self._closed = True
            self._gzip.close()
            self._file.close()
        self.path.unlink(missing_ok=True)
