"""A payload file's body → the records of its table (infrastructure/payload_tables.py), streamed.

One `RowReader` per payload type, built once per cold start, turns a body in the type's format
into numbered records: ndjson — each non-blank line (numbered by line); json — one object, or an
array of them (numbered by item); csv — each data row after the header (numbered from 1), its
cells converted per the schema's Avro types. Every record is checked with fastavro against the
schema (as transform/payload_schemas.py checks bodies); one that fails, or cannot be parsed or
converted, is an invalid record: no field values, and why, naming the field.
`RowFormat.line` writes a record as its table's JSON line, the source columns after the fields.
Memory holds one line or row at a time (a json-format body whole, up to `max_json_bytes`).
"""

from __future__ import annotations

import csv
import functools
import io
import math
import re
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, BinaryIO, Final, NamedTuple, cast

import fastavro
import orjson
from fastavro.validation import ValidationError, validate

from infrastructure.payload_tables import Column, PayloadTable, table_value, timestamp_text
from transform.payload_schemas import MAX_REASONS, MAX_SHOWN_CHARS, describe

READ_BUFFER: Final = 1 << 20
"""Bytes read from a body at a time (its lines and CSV rows are cut from this buffer)."""

_INTEGER: Final = re.compile(r"[+-]?\d+")
_DECIMAL: Final = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DAY: Final = date(1970, 1, 1)
_TRUE: Final = frozenset({"true", "1"})
_FALSE: Final = frozenset({"false", "0"})


class Record(NamedTuple):
    number: int
    """The record's position in its file, from 1 (a line, an array item, a CSV data row)."""
    values: dict[str, Any] | None
    """The schema's fields as the row writes them (table_value); None for an invalid record."""
    error: str | None = None
    """Why the record is invalid, naming the field; None for a valid one."""


class CellError(ValueError):
    """A CSV cell that does not convert to its field's type; the message names both."""


class RowReader:
    """The records of one payload type's files."""

    def __init__(
        self, table: PayloadTable, schema: dict[str, Any], csv_delimiter: str = ","
    ) -> None:
        self.table = table
        self.delimiter = csv_delimiter
        # A record schema parses to a dict (fastavro types it as any schema).
        self._parsed = cast("dict[str, Any]", fastavro.parse_schema(schema))
        self._record_name = f"{self._parsed['name']}."
        fields: dict[str, dict[str, Any]] = {f["name"]: f for f in self._parsed["fields"]}
        self._defaults = {name: f.get("default") for name, f in fields.items()}
        self._nullable = {
            name: isinstance(f["type"], list) and "null" in f["type"] for name, f in fields.items()
        }
        self._required = {
            name for name, f in fields.items() if not self._nullable[name] and "default" not in f
        }
        # How each field's value is written: as it is for most types (no call per value), or
        # by table_value (timestamps and dates as text, records, arrays and maps member-wise).
        self._writers: list[tuple[str, Any, Callable[[Any], Any] | None]] = [
            (
                column.name,
                self._defaults[column.name],
                None
                if _written_as_is(column.avro)
                else functools.partial(table_value, column.avro),
            )
            for column in table.fields
        ]

    def records(self, body: BinaryIO, *, size: int, max_json_bytes: int) -> Iterator[Record]:
        """The body's records, in file order. `size` is the file's size (a json body larger
        than `max_json_bytes` is not parsed: one invalid record says so)."""
        # A file or BytesIO reads lines as it is; a network body gets a buffer for them.
        stream = (
            body
            if isinstance(body, io.BufferedIOBase)
            else io.BufferedReader(_Raw(body), buffer_size=READ_BUFFER)
        )
        if self.table.format == "json":
            return self._json_records(stream, size, max_json_bytes)
        if self.table.format == "csv":
            return self._csv_records(stream)
        return self._ndjson_records(stream, max_json_bytes)

    # --- json and ndjson ---------------------------------------------------------------------

    def _json_records(self, stream: BinaryIO, size: int, max_json_bytes: int) -> Iterator[Record]:
        if size > max_json_bytes:
            yield Record(
                1,
                None,
                f"file is {size} bytes, over max_json_validation_bytes ({max_json_bytes}): a "
                f"json body is parsed whole, so it is not read",
            )
            return
        try:
            value = _loads(stream.read(max_json_bytes + 1))
        except (ValueError, RecursionError) as err:
            yield Record(1, None, f"body is not JSON: {err}")
            return
        if isinstance(value, list):
            for number, item in enumerate(value, start=1):
                yield self.record(number, item)
        else:
            yield self.record(1, value)

    def _ndjson_records(self, stream: BinaryIO, max_line_bytes: int) -> Iterator[Record]:
        number = 0
        while True:
            line = stream.readline(max_line_bytes + 1)
            if not line:
                return
            number += 1
            if len(line) > max_line_bytes and not line.endswith(b"\n"):
                _skip_line(stream)
                yield Record(
                    number,
                    None,
                    f"line is longer than max_json_validation_bytes ({max_line_bytes})",
                )
                continue
            if not line.strip():
                continue
            try:
                value = _loads(line)
            except (ValueError, RecursionError) as err:
                yield Record(number, None, f"line is not JSON: {err}")
                continue
            yield self.record(number, value)

    def record(self, number: int, value: Any) -> Record:
        """One value parsed from JSON (or converted from a CSV row), checked against the schema."""
        # raise_errors=False first, as transform.payload_schemas does: fastavro's raising path
        # formats an exception for every union branch it rejects; only a failing value pays.
        if not validate(value, self._parsed, raise_errors=False):
            return Record(number, None, self._why(value))
        values = {}
        for name, default, write in self._writers:
            found = value.get(name, default)
            values[name] = found if write is None or found is None else write(found)
        return Record(number, values)

    def _why(self, value: Any) -> str:
        try:
            validate(value, self._parsed, raise_errors=True)
        except ValidationError as err:
            reasons = "; ".join(
                describe(error).removeprefix(self._record_name)
                for error in err.errors[:MAX_REASONS]
            )
            return f"fails {self.table.schema}: {reasons}"
        return f"fails {self.table.schema}"  # pragma: no cover - validate said it fails

    # --- csv -----------------------------------------------------------------------------------

    def _csv_records(self, stream: BinaryIO) -> Iterator[Record]:
        # utf-8-sig drops a leading BOM; newline="" hands CRLF and quoted newlines to csv as is.
        text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
        rows = csv.reader(text, delimiter=self.delimiter)
        number = 0
        header: list[str] | None = None
        columns: list[tuple[int, Column]] = []
        missing: str | None = None
        try:
            for cells in rows:
                if not cells or cells == [""]:
                    continue  # a blank line: no row
                if header is None:
                    header = [name.strip() for name in cells]
                    columns, missing = self._header(header)
                    continue
                number += 1
                if missing:
                    yield Record(number, None, missing)
                elif len(cells) != len(header):
                    yield Record(
                        number,
                        None,
                        f"row has {len(cells)} cells, the header {len(header)}",
                    )
                else:
                    yield self._csv_record(number, cells, columns)
        except UnicodeDecodeError as err:
            yield Record(number + 1, None, f"file is not UTF-8: {err}; the rest is not read")
        except csv.Error as err:
            yield Record(number + 1, None, f"not CSV: {err}; the rest is not read")
        finally:
            text.detach()  # the body is the caller's to close

    def _header(self, header: Sequence[str]) -> tuple[list[tuple[int, Column]], str | None]:
        """(cell index, field) of each schema field the header names (the first of a name
        twice), and why every row is invalid when a required field has no column."""
        position: dict[str, int] = {}
        for index, name in enumerate(header):
            position.setdefault(name, index)
        columns = [(position[c.name], c) for c in self.table.fields if c.name in position]
        absent = [c.name for c in self.table.fields if c.name not in position]
        required = [name for name in absent if name in self._required]
        if required:
            return columns, f"the header has no column {', '.join(required)} (not nullable)"
        return columns, None

    def _csv_record(
        self, number: int, cells: Sequence[str], columns: Sequence[tuple[int, Column]]
    ) -> Record:
        value: dict[str, Any] = {}
        for index, column in columns:
            cell = cells[index]
            if cell == "":
                if not self._nullable[column.name]:
                    expected = _type_name(column.avro)
                    return Record(number, None, f"{column.name} is empty, expected {expected}")
                value[column.name] = None
                continue
            try:
                value[column.name] = convert(cell, column.avro)
            except CellError as err:
                return Record(number, None, f"{column.name} {err}")
        return self.record(number, value)


class RowFormat:
    """One file's rows as JSON lines: the schema's fields, then the source columns."""

    def __init__(
        self,
        *,
        file_id: str,
        key: str,
        version_id: str,
        event_time_ms: int,
        window_id: str,
        fields: Sequence[str],
    ) -> None:
        # The source columns are the same on every row of a file: formatted once. The line is
        # one JSON object, its keys in the table's column order.
        head = _dumps({"file_id": file_id, "key": key, "version_id": version_id})
        tail = _dumps({"event_time": timestamp_text(event_time_ms / 1000), "window_id": window_id})
        self._head = (b"," if fields else b"") + head[1:-1] + b',"record_number":'
        self._tail = b"," + tail[1:-1] + b","
        self._nulls = _dumps(dict.fromkeys(fields))[1:-1]

    def line(self, record: Record) -> bytes:
        if record.values is None:
            fields = self._nulls
            status = b'"valid":false,"error":' + _dumps(record.error) + b"}\n"
        else:
            fields = _dumps(record.values)[1:-1]
            status = b'"valid":true,"error":null}\n'
        return b"".join((b"{", fields, self._head, str(record.number).encode(), self._tail, status))


def convert(cell: str, avro: Any) -> Any:  # noqa: PLR0911, PLR0912  # one branch per Avro kind
    """A non-empty CSV cell as its Avro type's value (what fastavro validates); CellError if not.
    Cells of other than string types may have spaces around them; complex types (record, array,
    map) are JSON in their cell."""
    if isinstance(avro, str):
        if avro in {"string", "bytes"}:
            return cell if avro == "string" else cell.encode()
        text = cell.strip()
        if avro in {"int", "long"}:
            if not _INTEGER.fullmatch(text):
                raise CellError(f"is {_shown(cell)}, expected {avro}")
            return int(text)
        if avro in {"float", "double"}:
            number = float(text) if _DECIMAL.fullmatch(text) else math.nan
            if not math.isfinite(number):
                raise CellError(f"is {_shown(cell)}, expected a finite {avro}")
            return number
        if avro == "boolean":
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise CellError(f"is {_shown(cell)}, expected boolean (true, false, 1 or 0)")
    if isinstance(avro, dict):
        logical = avro.get("logicalType")
        if logical in {"timestamp-millis", "timestamp-micros"}:
            return _timestamp(cell.strip(), 1000 if logical == "timestamp-millis" else 1_000_000)
        if logical == "date":
            return _date(cell)
        if avro.get("type") in {"enum", "fixed"}:
            return cell
        if avro.get("type") in {"record", "array", "map"}:
            try:
                return _loads(cell.encode())
            except (ValueError, RecursionError):
                raise CellError(f"is {_shown(cell)}, expected {avro['type']} as JSON") from None
        if isinstance(avro.get("type"), str):  # a primitive, maybe with a logical type
            return convert(cell, avro["type"])
    raise CellError(f"is {_shown(cell)}: no CSV conversion to {_type_name(avro)}")


def _timestamp(text: str, per_second: int) -> int:
    """Integer epoch units, or ISO 8601 with Z or an offset → epoch units."""
    if _INTEGER.fullmatch(text):
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        unit = "milliseconds" if per_second == 1000 else "microseconds"
        raise CellError(f"is {_shown(text)}, expected epoch {unit} or ISO 8601 with Z or an offset")
    return (moment - _EPOCH) // timedelta(microseconds=1_000_000 // per_second)


def _date(cell: str) -> int:
    """YYYY-MM-DD → days since 1970-01-01 (Avro's date)."""
    text = cell.strip()
    try:
        day = date.fromisoformat(text) if _DATE.fullmatch(text) else None
    except ValueError:
        day = None
    if day is None:
        raise CellError(f"is {_shown(cell)}, expected a date (YYYY-MM-DD)")
    return (day - _EPOCH_DAY).days


def _type_name(avro: Any) -> str:
    if isinstance(avro, dict):
        return str(avro.get("logicalType") or avro.get("type"))
    return str(avro)


def _shown(cell: str) -> str:
    shown = repr(cell)
    return shown if len(shown) <= MAX_SHOWN_CHARS else shown[:MAX_SHOWN_CHARS] + "..."


def _loads(data: bytes) -> Any:
    """Strict JSON (orjson): NaN, Infinity, numbers overflowing a double and lone surrogates
    are refused (Python's json accepts them, and a row could not hold them as UTF-8 JSON)."""
    return orjson.loads(data)


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_bytes_text)


def _written_as_is(avro: Any) -> bool:
    """Whether table_value returns a value of this (non-null) Avro type unchanged."""
    if isinstance(avro, str):
        return True
    return avro.get("logicalType") not in {
        "timestamp-millis",
        "timestamp-micros",
        "date",
    } and avro.get("type") not in {"record", "array", "map"}


def _bytes_text(value: Any) -> str:
    """bytes (a CSV cell of an Avro bytes field) as the text it came from."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _skip_line(stream: BinaryIO) -> None:
    """Read past the rest of an overlong line, a buffer at a time."""
    while True:
        piece = stream.readline(READ_BUFFER)
        if not piece or piece.endswith(b"\n"):
            return


class _Raw(io.RawIOBase):
    """Any binary stream with `read` (a file, BytesIO, botocore's StreamingBody) as a raw
    stream, so io.BufferedReader gives it `readline` with a limit and TextIOWrapper can read it."""

    def __init__(self, body: BinaryIO) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
