"""Payload files → table rows (`delivery.table_rows`): CSV, NDJSON and JSON bodies, typed by their
Avro schema, invalid records kept as rows that say why, and each row as its table's JSON line;
then a part's rows as the objects `delivery.tables` puts, against a stand-in for S3.

The bodies of the issue's cases are files under tests/events/tables/: a CSV with a BOM, CRLF,
quoted fields (a comma, an embedded newline, doubled quotes), empty values, a row of the wrong
type and a short row; NDJSON with a blank line, a line of the wrong type and one that is not JSON.
"""

from __future__ import annotations

import gzip
import io
import json
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import pytest
from botocore.exceptions import ClientError

from delivery.layout import WindowName
from delivery.table_rows import CellError, Record, RowFormat, RowReader, convert
from delivery.tables import (
    Tables,
    TableStoreUnavailable,
    TableWriteError,
    TableWriter,
    load_tables,
)
from delivery.window_entries import WindowEntry
from infrastructure.payload_tables import SOURCE_COLUMNS
from infrastructure.tunables import PayloadSchemaRule, load_tunables
from tests.conftest import EVENTS, LANDING
from transform import envelope

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

FIXTURES = EVENTS / "tables"
MAX_JSON = 1 << 20


def shipped() -> Tables:
    """The payload types in infrastructure/tunables.json: orders/ (ndjson), readings/ (csv),
    profiles/ (json)."""
    return load_tables(load_tunables().processor.payload_schemas)


def reader_for(key: str, tables: Tables | None = None) -> RowReader:
    found = (tables or shipped()).for_key(key)
    assert found is not None
    return found


def records(reader: RowReader, body: bytes, *, max_json: int = MAX_JSON) -> list[Record]:
    return list(reader.records(io.BytesIO(body), size=len(body), max_json_bytes=max_json))


def valid(found: list[Record]) -> dict[int, dict[str, Any]]:
    return {r.number: r.values for r in found if r.values is not None}


def errors(found: list[Record]) -> dict[int, str | None]:
    return {r.number: r.error for r in found if r.values is None}


class Trickle(io.RawIOBase):
    """A body that hands out at most 7 bytes a read, as a network stream may."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._data.read(min(7, size) if size >= 0 else 7)


# ---------------------------------------------------------------- csv


def test_a_csv_with_a_bom_crlf_quotes_newlines_and_empty_values_becomes_typed_records() -> None:
    # GIVEN the readings/ type (meter_reading.avsc) and a CSV holding the awkward cases
    body = (FIXTURES / "readings.csv").read_bytes()
    assert body.startswith(b"\xef\xbb\xbf")
    assert b"\r\n" in body
    # WHEN it is read into records
    found = records(reader_for("readings/2026/11/25/site.csv"), body)
    # THEN each data row is a record, numbered from 1 after the header
    assert [r.number for r in found] == [1, 2, 3, 4, 5, 6, 7]
    # ... typed from the schema: the BOM is not part of the first column's name, epoch millis
    # and ISO 8601 (Z or an offset) are timestamps, booleans in any case, an empty nullable
    # cell is null, quoted fields keep their comma, newline and quotes, "site" is ignored
    assert valid(found) == {
        1: {
            "meter_id": "M-001",
            "read_at": "2026-11-25 12:00:00.000",
            "kwh": 12.5,
            "estimated": False,
            "note": "plain",
        },
        2: {
            "meter_id": "M-002",
            "read_at": "2026-11-25 12:15:00.000",
            "kwh": 3.0,
            "estimated": True,
            "note": "quoted, with a comma",
        },
        3: {
            "meter_id": "M-003",
            "read_at": "2026-11-25 12:30:00.250",
            "kwh": 0.75,
            "estimated": None,
            "note": 'two\r\nlines and "quotes"',
        },
        6: {
            "meter_id": "M-006",
            "read_at": "2026-11-25 12:25:00.000",
            "kwh": 7.25,
            "estimated": None,
            "note": None,
        },
    }
    # ... and the rows that do not fit are invalid, each saying why and naming the field
    assert errors(found) == {
        4: "kwh is 'not-a-number', expected a finite double",
        5: "kwh is empty, expected double",
        7: "row has 2 cells, the header 6",
    }


def test_a_csv_read_in_small_pieces_gives_the_same_records() -> None:
    # GIVEN the same CSV from a stream that returns a few bytes a read (a network body)
    body = (FIXTURES / "readings.csv").read_bytes()
    reader = reader_for("readings/site.csv")
    # WHEN both are read THEN the records are the same
    trickled = list(
        reader.records(cast("BinaryIO", Trickle(body)), size=len(body), max_json_bytes=MAX_JSON)
    )
    assert trickled == records(reader, body)


def test_a_csv_header_without_a_required_field_makes_every_row_invalid() -> None:
    # GIVEN a CSV whose header lacks kwh (not nullable) and note (nullable: fine alone)
    body = b"meter_id,read_at\nM-1,1795608000000\nM-2,1795608000000\n"
    # WHEN it is read
    found = records(reader_for("readings/x.csv"), body)
    # THEN every row is invalid, naming the missing column
    assert errors(found) == {
        1: "the header has no column kwh (not nullable)",
        2: "the header has no column kwh (not nullable)",
    }


def test_a_csv_type_reads_its_own_delimiter_and_lf_line_ends() -> None:
    # GIVEN a csv type with `csv_delimiter: ";"`, and a file with LF line ends, columns in
    # another order than the schema's, spaces around a number and a blank line
    rule = PayloadSchemaRule(
        prefix="semi/",
        schema="payloads/meter_reading.avsc",
        format="csv",
        table="semi_readings",
        csv_delimiter=";",
    )
    body = b"kwh;meter_id;read_at\n 1.5 ;M-1;1795608000000\n\n2,5;M-2;1795608000000\n"
    # WHEN it is read
    found = records(reader_for("semi/a.csv", load_tables([rule])), body)
    # THEN cells are mapped by header name, and a decimal comma is not a double
    assert valid(found) == {
        1: {
            "meter_id": "M-1",
            "read_at": "2026-11-25 12:00:00.000",
            "kwh": 1.5,
            "estimated": None,
            "note": None,
        }
    }
    assert errors(found) == {2: "kwh is '2,5', expected a finite double"}


def test_a_csv_that_is_not_utf8_keeps_the_rows_before_and_says_where_it_stopped() -> None:
    # GIVEN a CSV whose third row holds a Latin-1 byte, far enough in that the rows before it
    # were decoded first
    rows = b"".join(b"M-%d,1795608000000,1\n" % n for n in range(1, 3))
    body = b"meter_id,read_at,kwh\n" + rows + b"M-3,1795608000000,1,caf\xe9\n"
    # WHEN it is read
    found = records(reader_for("readings/latin1.csv"), body)
    # THEN an invalid record says the file is not UTF-8, and nothing after it is read
    assert found[-1].values is None
    assert found[-1].error is not None
    assert found[-1].error.startswith("file is not UTF-8:")
    assert len(found) <= 3


def test_a_csv_field_over_the_csv_modules_limit_ends_the_files_rows() -> None:
    # GIVEN a CSV whose second row has a quoted field of 200,000 characters (an unclosed quote
    # would swallow the rest of the file the same way)
    body = b'meter_id,read_at,kwh,note\nM-1,1,2,ok\nM-2,1,2,"' + b"x" * 200_000 + b'"\nM-3,1,3,\n'
    # WHEN it is read
    found = records(reader_for("readings/huge.csv"), body)
    # THEN the rows before it are read, and one invalid record says why the rest is not
    assert sorted(valid(found)) == [1]
    assert errors(found) == {
        2: "not CSV: field larger than field limit (131072); the rest is not read"
    }


def test_an_empty_csv_or_one_with_only_a_header_has_no_records() -> None:
    # GIVEN an empty file and a header alone WHEN read THEN there are no records
    reader = reader_for("readings/empty.csv")
    assert records(reader, b"") == []
    assert records(reader, b"\xef\xbb\xbfmeter_id,read_at,kwh\r\n") == []


@pytest.mark.parametrize(
    ("cell", "avro", "expected"),
    [
        ("42", "long", 42),
        (" -7 ", "int", -7),
        ("1e3", "double", 1000.0),
        ("TRUE", "boolean", True),
        ("False", "boolean", False),
        ("1", "boolean", True),
        ("0", "boolean", False),
        ("GBP", {"type": "enum", "name": "Currency", "symbols": ["GBP"]}, "GBP"),
        ("1795608000000", {"type": "long", "logicalType": "timestamp-millis"}, 1795608000000),
        (
            "2026-11-25T12:00:00.5Z",
            {"type": "long", "logicalType": "timestamp-millis"},
            1795608000500,
        ),
        (
            "2026-11-25 14:00:00+02:00",
            {"type": "long", "logicalType": "timestamp-millis"},
            1795608000000,
        ),
        (
            "2026-11-25T12:00:00.000001Z",
            {"type": "long", "logicalType": "timestamp-micros"},
            1795608000000001,
        ),
        ("2026-11-25", {"type": "int", "logicalType": "date"}, 1795608000 // 86400),
        ('["a", "b"]', {"type": "array", "items": "string"}, ["a", "b"]),
    ],
)
def test_cells_convert_to_their_avro_type(cell: str, avro: Any, expected: Any) -> None:
    # GIVEN a CSV cell and its field's Avro type WHEN converted THEN it is the Avro value
    assert convert(cell, avro) == expected


@pytest.mark.parametrize(
    ("cell", "avro", "message"),
    [
        ("1.5", "long", "is '1.5', expected long"),
        ("1_000", "long", "is '1_000', expected long"),
        ("nan", "double", "expected a finite double"),
        ("1e999", "double", "expected a finite double"),
        ("yes", "boolean", "expected boolean (true, false, 1 or 0)"),
        (
            "2026-11-25T12:00:00",
            {"type": "long", "logicalType": "timestamp-millis"},
            "expected epoch milliseconds or ISO 8601 with Z or an offset",
        ),
        ("25/11/2026", {"type": "int", "logicalType": "date"}, "expected a date (YYYY-MM-DD)"),
        ("2026-02-30", {"type": "int", "logicalType": "date"}, "expected a date (YYYY-MM-DD)"),
        ("[1", {"type": "array", "items": "long"}, "expected array as JSON"),
    ],
)
def test_cells_that_do_not_convert_say_why(cell: str, avro: Any, message: str) -> None:
    # GIVEN a cell that is not its field's type WHEN converted THEN CellError says why
    with pytest.raises(CellError, match=message.replace("(", r"\(").replace(")", r"\)")):
        convert(cell, avro)


def test_a_csv_enum_cell_outside_the_symbols_fails_the_schema() -> None:
    # GIVEN a csv type over the order schema (an enum field) and a row with an unknown symbol
    rule = PayloadSchemaRule(
        prefix="order-csv/", schema="payloads/order.avsc", format="csv", table="order_rows"
    )
    body = b"order_id,amount_pence,currency\nO-1,100,GBP\nO-2,100,JPY\n"
    # WHEN it is read
    found = records(reader_for("order-csv/a.csv", load_tables([rule])), body)
    # THEN the known symbol is valid and the other fails the schema, naming the field
    assert valid(found) == {
        1: {"order_id": "O-1", "amount_pence": 100, "currency": "GBP", "note": None}
    }
    assert errors(found) == {
        2: "fails payloads/order.avsc: currency is 'JPY' (str), expected one of "
        "['GBP', 'EUR', 'USD']"
    }


# ---------------------------------------------------------------- ndjson


def test_ndjson_lines_are_records_numbered_by_line_and_a_bad_line_is_an_invalid_one() -> None:
    # GIVEN the orders/ type and an NDJSON file with a blank line, a line of the wrong type,
    # one that is not JSON, and a last line without a newline holding an unknown field
    body = (FIXTURES / "orders.ndjson").read_bytes()
    # WHEN it is read
    found = records(reader_for("orders/2026-11-25.ndjson"), body)
    # THEN each non-blank line is a record numbered by its line; unknown fields are dropped
    assert valid(found) == {
        1: {"order_id": "A-1", "amount_pence": 1250, "currency": "GBP", "note": None},
        2: {"order_id": "A-2", "amount_pence": 999, "currency": "EUR", "note": "gift ✓"},
        6: {"order_id": "A-5", "amount_pence": 500, "currency": "USD", "note": None},
    }
    # ... and the bad lines are invalid records saying why, naming the field
    found_errors = errors(found)
    assert (
        found_errors[4] == "fails payloads/order.avsc: amount_pence is 'lots' (str), expected long"
    )
    assert str(found_errors[5]).startswith("line is not JSON: unexpected end of data")
    assert sorted(found_errors) == [4, 5]


def test_an_ndjson_line_over_the_limit_is_invalid_and_the_next_line_is_read() -> None:
    # GIVEN a line longer than max_json_validation_bytes between two good ones
    good = b'{"order_id": "A", "amount_pence": 1, "currency": "GBP"}\n'
    body = good + b'{"order_id": "' + b"x" * 5000 + b'"}\n' + good
    # WHEN it is read with a 1 KiB limit
    found = records(reader_for("orders/long.ndjson"), body, max_json=1024)
    # THEN the long line is one invalid record, and the lines around it are read
    assert sorted(valid(found)) == [1, 3]
    assert errors(found) == {2: "line is longer than max_json_validation_bytes (1024)"}


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b'{"order_id": "A", "amount_pence": NaN, "currency": "GBP"}', "not JSON: unexpected"),
        (b'{"order_id": "A", "amount_pence": 1e999, "currency": "GBP"}', "number is infinity"),
        (
            b'{"order_id": "A", "amount_pence": 1, "currency": "GBP", "note": "\\ud800"}',
            "surrogate",
        ),
        (
            b'{"order_id": "A", "amount_pence": 123456789012345678901, "currency": "GBP"}',
            "amount_pence is 1.2345678901234568e+20 (float), expected long",
        ),
        (b"[1, 2]", "value is [1, 2] (list), expected sluice.payloads.Order"),
        (b'"just text"', "value is 'just text' (str), expected sluice.payloads.Order"),
    ],
    ids=["nan", "overflow", "lone-surrogate", "over-64-bits", "array", "string"],
)
def test_ndjson_values_a_table_cannot_hold_are_invalid(line: bytes, error: str) -> None:
    # GIVEN a line JSON readers disagree on, or that is not a record
    # WHEN it is read THEN it is an invalid record saying so
    [record] = records(reader_for("orders/odd.ndjson"), line + b"\n")
    assert record.values is None
    assert error in str(record.error)


# ---------------------------------------------------------------- json

PROFILE: dict[str, Any] = {
    "customer_id": "C-1",
    "name": "Ada",
    "balance_pence": 1500,
    "updated_at": 1795608000000,
    "address": {"line1": "1 Road", "city": "Leeds", "postcode": "LS1"},
}
PROFILE_ROW: dict[str, Any] = {
    "customer_id": "C-1",
    "name": "Ada",
    "email": None,
    "balance_pence": 1500,
    "updated_at": "2026-11-25 12:00:00.000",
    "tags": [],
    "address": {"line1": "1 Road", "city": "Leeds", "postcode": "LS1"},
}


def test_a_json_object_is_one_record_with_defaults_and_nested_records() -> None:
    # GIVEN the profiles/ type and one profile without its defaulted fields
    # WHEN it is read
    found = records(reader_for("profiles/c1.json"), json.dumps(PROFILE).encode())
    # THEN it is record 1, defaults filled in, the nested address a struct
    assert found == [Record(1, PROFILE_ROW)]


def test_a_json_array_is_a_record_per_item() -> None:
    # GIVEN an array of a valid profile, an invalid one and another valid one
    body = json.dumps([PROFILE, {"customer_id": "C-2"}, {**PROFILE, "tags": ["vip"]}]).encode()
    # WHEN it is read
    found = records(reader_for("profiles/many.json"), body)
    # THEN each item is a record numbered from 1, the invalid one naming its field
    assert valid(found) == {1: PROFILE_ROW, 3: {**PROFILE_ROW, "tags": ["vip"]}}
    assert errors(found) == {
        2: "fails payloads/customer_profile.avsc: name is missing or null, expected string"
    }
    # AND an empty array has no records
    assert records(reader_for("profiles/none.json"), b"[]") == []


def test_a_json_body_that_is_not_json_or_too_big_is_one_invalid_record() -> None:
    # GIVEN a body that is not JSON, and a valid one over max_json_validation_bytes
    reader = reader_for("profiles/bad.json")
    big = json.dumps(PROFILE).encode()
    # WHEN each is read
    [not_json] = records(reader, b"{oops")
    [too_big] = records(reader, big, max_json=len(big) - 1)
    # THEN each is one invalid record saying why
    assert not_json.values is None
    assert str(not_json.error).startswith("body is not JSON:")
    assert too_big.values is None
    assert too_big.error == (
        f"file is {len(big)} bytes, over max_json_validation_bytes ({len(big) - 1}): a json "
        f"body is parsed whole, so it is not read"
    )


# ---------------------------------------------------------------- lines


def row_format(reader: RowReader) -> RowFormat:
    return RowFormat(
        file_id="f" * 64,
        key="profiles/ünï.json",
        version_id="v1",
        event_time_ms=1_795_608_000_123,
        window_id="sluice-0-1-2026-11-25-12-00-00-w",
        fields=[column.name for column in reader.table.fields],
    )


def lines(reader: RowReader, found: list[Record]) -> Iterator[dict[str, Any]]:
    out = row_format(reader)
    for record in found:
        line = out.line(record)
        assert line.endswith(b"\n")
        yield json.loads(line)


def test_a_row_is_a_json_line_in_the_tables_column_order() -> None:
    # GIVEN a valid and an invalid profile
    reader = reader_for("profiles/a.json")
    found = records(reader, json.dumps([PROFILE, {"customer_id": 5}]).encode())
    # WHEN they are written as rows
    first, second = lines(reader, found)
    # THEN each row has every column of the table, in order: fields, then the source columns
    columns = [column.name for column in reader.table.columns]
    assert list(first) == columns == list(second)
    assert columns[-len(SOURCE_COLUMNS) :] == [name for name, _, _ in SOURCE_COLUMNS]
    source = {
        "file_id": "f" * 64,
        "key": "profiles/ünï.json",
        "version_id": "v1",
        "event_time": "2026-11-25 12:00:00.123",
        "window_id": "sluice-0-1-2026-11-25-12-00-00-w",
    }
    assert first == {**PROFILE_ROW, **source, "record_number": 1, "valid": True, "error": None}
    # ... and an invalid record's fields are all null, with why
    assert second == {
        **dict.fromkeys(PROFILE_ROW),
        **source,
        "record_number": 2,
        "valid": False,
        "error": "fails payloads/customer_profile.avsc: customer_id is 5 (int), expected string",
    }


# ---------------------------------------------------------------- objects


class FakeS3:
    """put_object into a dict, failing first with the given errors (botocore ClientErrors)."""

    def __init__(self, *failures: str) -> None:
        self.failures = list(failures)
        self.objects: dict[tuple[str, str], bytes] = {}
        self.calls = 0

    def put_object(  # boto3's parameter names
        self, *, Bucket: str, Key: str, Body: BinaryIO, **_: Any
    ) -> dict[str, Any]:
        self.calls += 1
        if self.failures:
            code = self.failures.pop(0)
            raise ClientError({"Error": {"Code": code, "Message": code}}, "PutObject")
        self.objects[(Bucket, Key)] = Body.read()
        return {}


def entry(key: str, body: bytes, line_number: int) -> WindowEntry:
    return WindowEntry(
        line_number=line_number,
        file_id=envelope.file_id(LANDING, key, "v1"),
        bucket=LANDING,
        key=key,
        version_id="v1",
        size=len(body),
        event_time_ms=1_795_608_000_000,
        encoding="utf8",
        body_sha256=None,
    )


NAME = WindowName("sluice-0-1-2026-11-25-12-00-00-w", "2026-11-25", "12")


def write(
    s3: FakeS3, planned: list[tuple[str, bytes]], delivered: int, tmp_path: Path
) -> dict[str, Any]:
    """Part 3 of NAME, its files `planned`, the first `delivered` of them delivered."""
    entries = [entry(key, body, n) for n, (key, body) in enumerate(planned, start=1)]
    bodies = dict(planned)

    @contextmanager
    def open_body(member: WindowEntry) -> Iterator[BinaryIO]:
        yield io.BytesIO(bodies[member.key])

    writer = TableWriter(
        shipped(),
        cast("S3Client", s3),
        "staging",
        max_json_bytes=MAX_JSON,
        attempts=3,
        backoff_base=0.0,
        backoff_cap=0.0,
        sleep=lambda _: None,
    )
    return writer.write_part(NAME, 3, entries, entries[:delivered], open_body, tmp_path)


def test_a_parts_rows_are_one_gzip_object_per_table_the_same_bytes_every_time(
    tmp_path: Path,
) -> None:
    # GIVEN a part with two orders files, a readings file and an untyped file
    planned = [
        ("orders/a.ndjson", (FIXTURES / "orders.ndjson").read_bytes()),
        ("acme/x.txt", b"untyped"),
        ("readings/r.csv", (FIXTURES / "readings.csv").read_bytes()),
        ("orders/b.ndjson", b'{"order_id": "B", "amount_pence": 2, "currency": "USD"}\n'),
    ]
    # WHEN its tables are written twice (an attempt, then its retry)
    first, second = FakeS3(), FakeS3()
    counts = write(first, planned, 4, tmp_path)
    write(second, planned, 4, tmp_path)
    # THEN there is one object per table, at the table's key for the window part
    prefix = "dt=2026-11-25/hour=12/sluice-0-1-2026-11-25-12-00-00-w-0003.json.gz"
    assert sorted(first.objects) == [
        ("staging", f"tables/meter_readings/{prefix}"),
        ("staging", f"tables/orders/{prefix}"),
    ]
    # ... byte for byte the same on the retry, and its rows in window order
    assert first.objects == second.objects
    orders = gzip.decompress(first.objects[("staging", f"tables/orders/{prefix}")])
    assert [json.loads(line)["key"] for line in orders.splitlines()] == [
        *["orders/a.ndjson"] * 5,
        "orders/b.ndjson",
    ]
    # ... counted per table, valid and invalid
    assert {t: (c.rows, c.invalid) for t, c in counts.items()} == {
        "meter_readings": (7, 3),
        "orders": (6, 2),
    }
    assert counts["orders"].first_error == (
        "orders/a.ndjson record 4: fails payloads/order.avsc: amount_pence is 'lots' (str), "
        "expected long"
    )
    # ... and the spools are gone
    assert list(tmp_path.iterdir()) == []


def test_a_table_whose_files_are_all_excluded_gets_an_empty_object(tmp_path: Path) -> None:
    # GIVEN a part planned with one orders file that it no longer delivers (excluded)
    s3 = FakeS3()
    # WHEN its tables are written
    counts = write(s3, [("orders/gone.ndjson", b"{}\n")], 0, tmp_path)
    # THEN the orders object is there, without rows, replacing what an earlier attempt wrote
    [(_, body)] = s3.objects.items()
    assert gzip.decompress(body) == b""
    assert counts["orders"].rows == 0
    # AND a part with no typed file writes nothing
    assert write(s3, [("acme/x.txt", b"x")], 1, tmp_path) == {}
    assert s3.calls == 1


def test_a_transient_s3_error_is_retried_and_another_names_the_bucket_and_key(
    tmp_path: Path,
) -> None:
    # GIVEN S3 throttling twice, then taking the object
    planned = [("orders/a.ndjson", b'{"order_id": "A", "amount_pence": 1, "currency": "GBP"}\n')]
    s3 = FakeS3("SlowDown", "InternalError")
    # WHEN the part's tables are written THEN the third attempt puts it
    write(s3, planned, 1, tmp_path)
    assert (s3.calls, len(s3.objects)) == (3, 1)
    # GIVEN S3 refusing for good, or throttling past the attempts
    # WHEN written THEN the error names the object, and says whether waiting may help
    with pytest.raises(
        TableWriteError, match=r"s3://staging/tables/orders/dt=2026-11-25/.*AccessDenied"
    ) as denied:
        write(FakeS3("AccessDenied"), planned, 1, tmp_path)
    assert not isinstance(denied.value, TableStoreUnavailable)
    with pytest.raises(TableStoreUnavailable, match="not written after 3 attempts"):
        write(FakeS3("SlowDown", "SlowDown", "SlowDown"), planned, 1, tmp_path)
    assert list(tmp_path.iterdir()) == []


class GeneratedBody(io.RawIOBase):
    """`count` lines of `line`, made as they are read, a block at a time (reads may be short,
    as a network body's are): the body never exists whole."""

    def __init__(self, header: bytes, line: bytes, count: int) -> None:
        self._pending = header
        self._line = line
        self._left = count

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if not self._pending and self._left:
            batch = min(self._left, 1024)
            self._pending = self._line * batch
            self._left -= batch
        size = len(self._pending) if size < 0 else size
        out, self._pending = self._pending[:size], self._pending[size:]
        return out


class DrainingS3:
    """put_object reading the body in chunks and keeping nothing."""

    def put_object(self, *, Body: BinaryIO, **_: Any) -> dict[str, Any]:  # boto3's name
        while Body.read(64 * 1024):
            pass
        return {}


@pytest.mark.parametrize("kind", ["csv", "ndjson"])
def test_a_large_body_is_written_with_bounded_memory(kind: str, tmp_path: Path) -> None:
    # GIVEN a body of 2.5 MB of small records (some 15 MB of rows), read as a stream (a ref
    # read from S3 again)
    if kind == "csv":
        body = GeneratedBody(b"meter_id,read_at,kwh\r\n", b"M-1,1795608000000,1.5\r\n", 100_000)
        member = entry("readings/big.csv", b"", 1)
    else:
        line = b'{"order_id": "A-1", "amount_pence": 1250, "currency": "GBP"}\n'
        body = GeneratedBody(b"", line, 40_000)
        member = entry("orders/big.ndjson", b"", 1)

    @contextmanager
    def open_body(_: WindowEntry) -> Iterator[BinaryIO]:
        yield cast("BinaryIO", body)

    writer = TableWriter(
        shipped(),
        cast("S3Client", DrainingS3()),
        "staging",
        max_json_bytes=MAX_JSON,
        attempts=1,
        backoff_base=0.0,
        backoff_cap=0.0,
    )
    # WHEN its rows are written, with Python's allocations traced
    tracemalloc.start()
    try:
        counts = writer.write_part(NAME, 1, [member], [member], open_body, tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # THEN every record is a row, and memory held a buffer, not the body or its rows
    [found] = counts.values()
    assert (found.rows, found.invalid) == (100_000 if kind == "csv" else 40_000, 0)
    assert peak < 2 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"
