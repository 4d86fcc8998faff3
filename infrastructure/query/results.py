"""A query's result, the same whichever engine ran it, and how `sluice query` prints it.

Athena returns every value as text with the column's type; DuckDB returns Python values. Both
become one shape: integers, floats, decimals, booleans and strings as such, NULL as None, and
every other value as the text Athena shows for it (timestamps `2026-12-07 08:00:00.123`, with
` UTC` when the type has a time zone, dates `2026-12-07`, arrays `[a, b]`, rows and maps
`{a=1, b=2}`). So a named query prints the same locally and on Athena.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any, Final

Value = str | int | float | bool | Decimal | None

_INTEGERS: Final = frozenset({"tinyint", "smallint", "integer", "int", "bigint"})
_FLOATS: Final = frozenset({"double", "real", "float"})


@dataclass(frozen=True, slots=True)
class Result:
    columns: tuple[str, ...]
    types: tuple[str, ...]
    """Athena's type names (`varchar`, `bigint`, `timestamp`, …)."""
    rows: list[tuple[Value, ...]] = field(default_factory=list)

    def records(self) -> list[dict[str, Value]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


# --- From Athena's text ------------------------------------------------------------------------


def from_athena_text(text: str | None, athena_type: str) -> Value:  # noqa: PLR0911  # one return per kind of type
    """A value of GetQueryResults (text, None for NULL) as its column's type."""
    if text is None:
        return None
    kind = athena_type.lower().split("(")[0].strip()
    try:
        if kind in _INTEGERS:
            return int(text)
        if kind in _FLOATS:
            return float(text)
        if kind == "decimal":
            return Decimal(text)
    except (ValueError, InvalidOperation):
        return text  # NaN, Infinity and the like stay as Athena wrote them
    if kind == "boolean":
        return text == "true"
    return text


# --- From DuckDB's Python values ---------------------------------------------------------------

_DUCKDB_TYPES: Final = {
    "VARCHAR": "varchar",
    "BOOLEAN": "boolean",
    "TINYINT": "tinyint",
    "SMALLINT": "smallint",
    "INTEGER": "integer",
    "BIGINT": "bigint",
    "HUGEINT": "bigint",
    "UTINYINT": "smallint",
    "USMALLINT": "integer",
    "UINTEGER": "bigint",
    "UBIGINT": "bigint",
    "FLOAT": "real",
    "DOUBLE": "double",
    "DATE": "date",
    "TIMESTAMP": "timestamp",
    "TIMESTAMP_MS": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamp with time zone",
    "TIME": "time",
    "INTERVAL": "interval",
    "BLOB": "varbinary",
    "UUID": "uuid",
}


def athena_type_of(duckdb_type: str) -> str:
    """The Athena type name closest to a DuckDB result type (`DECIMAL(10,2)` -> `decimal`)."""
    text = duckdb_type.upper()
    if text.endswith("[]"):
        return "array"
    for prefix, name in (("DECIMAL", "decimal"), ("STRUCT", "row"), ("MAP", "map")):
        if text.startswith(prefix):
            return name
    return _DUCKDB_TYPES.get(text, text.lower())


def from_duckdb(value: Any) -> Value:
    """A DuckDB value as the result holds it (see the module)."""
    if value is None or isinstance(value, bool | int | float | Decimal | str):
        return value
    return athena_text(value)


def athena_text(value: Any) -> str:  # noqa: PLR0911  # one return per kind of value
    """A value as Athena's results print it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            return _timestamp(value.astimezone(UTC)) + " UTC"
        return _timestamp(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return value.strftime("%H:%M:%S.%f")[:-3]
    if isinstance(value, list | tuple):
        return "[" + ", ".join(athena_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{athena_text(k)}={athena_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex(" ")
    return str(value)


def _timestamp(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


# --- Printing ----------------------------------------------------------------------------------

NULL: Final = "NULL"


def _cell(value: Value) -> str:
    if value is None:
        return NULL
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def text_table(result: Result) -> str:
    """An aligned table: the header, a rule, the rows (numbers to the right), then `N rows`."""
    cells = [[_cell(v) for v in row] for row in result.rows]
    widths = [
        max([len(name), *(len(row[i]) for row in cells)]) for i, name in enumerate(result.columns)
    ]
    numeric = [t.split("(")[0] in _INTEGERS | _FLOATS | {"decimal"} for t in result.types]

    def line(values: Sequence[str], *, header: bool = False) -> str:
        return "  ".join(
            v.rjust(w) if numeric[i] and not header else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    lines = [line(result.columns, header=True), "  ".join("-" * w for w in widths)]
    lines += [line(row) for row in cells]
    count = len(result.rows)
    lines.append(f"{count} row" if count == 1 else f"{count} rows")
    return "\n".join(lines)


def json_text(result: Result) -> str:
    """A JSON list of objects, one per row (decimals as strings, to keep their digits)."""
    return json.dumps(result.records(), ensure_ascii=False, default=str)


def csv_text(result: Result) -> str:
    """CSV with a header row; NULL as an empty field, as Athena's result files have it."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(result.columns)
    for row in result.rows:
        writer.writerow(["" if v is None else _cell(v) for v in row])
    return out.getvalue().rstrip("\n")
