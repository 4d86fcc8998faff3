"""The Glue tables a query can name, as `sluice query` reads them without Athena: columns and
their Glue types, the JSON key each column is read from, the key layout of the partitions.

The same tables as infrastructure/terraform/glue_athena.tf: `buffers` (staged windows, columns
from infrastructure/schemas/envelope.avsc as locals.tf maps them), `errors` (Firehose's error
output) and one per payload type (infrastructure/payload_tables.py). tests/unit/
test_query_translate.py holds the operational columns to the Terraform.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from infrastructure.payload_tables import PayloadTable, glue_type, payload_tables
from infrastructure.tunables import SCHEMAS_DIR, load_tunables

BUFFERS: Final = "buffers"
ERRORS: Final = "errors"


class TableTypeError(ValueError):
    """A Glue type `sluice query` cannot read locally; names the table and column."""


@dataclass(frozen=True, slots=True)
class TableColumn:
    name: str
    """The Glue column: lower case, as Glue stores it."""
    glue_type: str
    key: str
    """The JSON key a line holds the value under. Athena's JSON SerDes match keys to columns
    ignoring case; Firehose's error output spells them in camelCase."""


@dataclass(frozen=True, slots=True)
class QueryTable:
    name: str
    location: str
    """Key prefix of the table's objects in the staging bucket, ending in `/`."""
    columns: tuple[TableColumn, ...]
    partitions: tuple[str, ...]
    """Partition columns (strings), one a key segment below `location`, in order: the segment is
    `name=value` (Hive style) or the bare value (errors' error_output_type)."""
    skip_malformed: bool
    """The OpenX SerDe's `ignore.malformed.json`: a line that does not parse reads as no row.
    Without it (the payload tables' Hive SerDe) such a line fails the query."""

    @property
    def column_names(self) -> tuple[str, ...]:
        """What `SELECT *` gives, in Athena's order: the columns, then the partitions."""
        return tuple(c.name for c in self.columns) + self.partitions


ERRORS_COLUMNS: Final = (
    TableColumn("attemptsmade", "int", "attemptsMade"),
    TableColumn("arrivaltimestamp", "bigint", "arrivalTimestamp"),
    TableColumn("errorcode", "string", "errorCode"),
    TableColumn("errormessage", "string", "errorMessage"),
    TableColumn("attemptendingtimestamp", "bigint", "attemptEndingTimestamp"),
    TableColumn("rawdata", "string", "rawData"),
    TableColumn("lambdaarn", "string", "lambdaArn"),
)
"""Firehose's error output record (`errors_columns` in locals.tf)."""


def buffers_table() -> QueryTable:
    envelope = json.loads((SCHEMAS_DIR / "envelope.avsc").read_text())
    columns = tuple(
        TableColumn(
            f["name"].lower(), glue_type(f["type"], where=f"envelope.{f['name']}"), f["name"]
        )
        for f in envelope["fields"]
    )
    return QueryTable(BUFFERS, "buffers/", columns, ("dt", "hour"), skip_malformed=True)


def errors_table() -> QueryTable:
    return QueryTable(
        ERRORS, "errors/", ERRORS_COLUMNS, ("error_output_type", "dt"), skip_malformed=True
    )


def payload_query_table(table: PayloadTable) -> QueryTable:
    columns = tuple(TableColumn(c.name.lower(), c.glue_type, c.name) for c in table.columns)
    return QueryTable(
        table.name, table.location_prefix, columns, ("dt", "hour"), skip_malformed=False
    )


def all_tables(payload: Sequence[PayloadTable] | None = None) -> dict[str, QueryTable]:
    """Every Glue table by name: the operational ones, then one per payload type (the
    tunables' types unless `payload` is given)."""
    if payload is None:
        payload = payload_tables(load_tunables().processor.payload_schemas)
    tables = [buffers_table(), errors_table(), *(payload_query_table(t) for t in payload)]
    return {table.name: table for table in tables}


# --- Glue (Hive DDL) types as DuckDB types --------------------------------------------------

_SCALARS: Final = {
    "string": "VARCHAR",
    "varchar": "VARCHAR",
    "char": "VARCHAR",
    "boolean": "BOOLEAN",
    "tinyint": "TINYINT",
    "smallint": "SMALLINT",
    "int": "INTEGER",
    "integer": "INTEGER",
    "bigint": "BIGINT",
    "float": "FLOAT",
    "double": "DOUBLE",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "binary": "BLOB",
}
_TOKEN: Final = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*|\(\s*\d+\s*(?:,\s*\d+\s*)?\)|[<>,:])")


def duckdb_type(glue: str, *, where: str = "column") -> str:
    """The DuckDB type reading a Glue type from JSON: `array<string>` -> `VARCHAR[]`,
    `struct<a:int>` -> `STRUCT("a" INTEGER)`, `map<string,bigint>` -> `MAP(VARCHAR, BIGINT)`."""
    tokens = [t.replace(" ", "") for t in _tokens(glue, where)]
    parsed, rest = _parse(tokens, where, glue)
    if rest:
        raise TableTypeError(f"{where}: cannot read Glue type {glue!r} (stray {''.join(rest)!r})")
    return parsed


def _tokens(glue: str, where: str) -> list[str]:
    tokens: list[str] = []
    at = 0
    while at < len(glue.rstrip()):
        match = _TOKEN.match(glue, at)
        if match is None:
            raise TableTypeError(f"{where}: cannot read Glue type {glue!r} at {glue[at:]!r}")
        tokens.append(match.group(1))
        at = match.end()
    return tokens


def _parse(tokens: list[str], where: str, glue: str) -> tuple[str, list[str]]:  # noqa: PLR0911  # one return per kind of type
    if not tokens:
        raise TableTypeError(f"{where}: Glue type {glue!r} ends early")
    head, rest = tokens[0].lower(), tokens[1:]
    if head == "decimal":
        if rest and rest[0].startswith("("):
            return f"DECIMAL{rest[0]}", rest[1:]
        return "DECIMAL(10,0)", rest
    if head in ("varchar", "char") and rest and rest[0].startswith("("):
        return "VARCHAR", rest[1:]
    if head in _SCALARS:
        return _SCALARS[head], rest
    if head == "array":
        item, rest = _parse(_expect(rest, "<", where, glue), where, glue)
        return f"{item}[]", _expect(rest, ">", where, glue)
    if head == "map":
        key, rest = _parse(_expect(rest, "<", where, glue), where, glue)
        value, rest = _parse(_expect(rest, ",", where, glue), where, glue)
        return f"MAP({key}, {value})", _expect(rest, ">", where, glue)
    if head == "struct":
        rest = _expect(rest, "<", where, glue)
        members = []
        while True:
            if not rest:
                raise TableTypeError(f"{where}: Glue type {glue!r} ends early")
            name, rest = rest[0], _expect(rest[1:], ":", where, glue)
            member, rest = _parse(rest, where, glue)
            members.append(f'"{name}" {member}')
            if rest and rest[0] == ",":
                rest = rest[1:]
                continue
            return f"STRUCT({', '.join(members)})", _expect(rest, ">", where, glue)
    raise TableTypeError(f"{where}: Glue type {glue!r}: {head!r} has no DuckDB type here")


def _expect(tokens: list[str], token: str, where: str, glue: str) -> list[str]:
    if not tokens or tokens[0] != token:
        raise TableTypeError(f"{where}: cannot read Glue type {glue!r} (expected {token!r})")
    return tokens[1:]
