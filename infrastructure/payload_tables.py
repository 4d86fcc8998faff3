"""The analysts' payload tables: one per payload type in the tunables, typed from its Avro schema.

This module is the one place that says what a table is — its columns (the schema's fields, then
the source columns), their Glue types, how a value is written, and where its objects live in the
staging bucket. Delivery writes rows with it, Terraform's Glue tables are generated from it, and
`sluice query` reads with it; docs/tables.md describes the layout for analysts.

Rows are JSON lines (gzip) under `tables/<table>/dt=YYYY-MM-DD/hour=HH/<window-id>-<part>.json.gz`,
partitioned by the window's staging hour; one object per window part, so a retry rewrites it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from infrastructure.tunables import PayloadSchemaRule, TunablesError

TABLES_PREFIX = "tables/"

SOURCE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("file_id", "string", "the file's id: sha256 of its bucket, key and version"),
    ("key", "string", "the file's key in the landing bucket"),
    ("version_id", "string", "the file's S3 version"),
    ("record_number", "bigint", "the record's position in its file, from 1 (a CSV row, a line)"),
    ("event_time", "timestamp", "when the file landed (its S3 event), UTC"),
    ("window_id", "string", "the staged window that delivered the file"),
    ("valid", "boolean", "false: the record failed its schema; its fields are null"),
    ("error", "string", "why an invalid record failed, naming the field"),
)
"""Columns every table has after the schema's fields: (name, Glue type, comment)."""

TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
"""Timestamps are written as text Hive's, Athena's and DuckDB's JSON readers all parse
(`2026-12-07 08:00:00.123`, UTC, milliseconds)."""

_PRIMITIVES = {
    "string": "string",
    "boolean": "boolean",
    "int": "int",
    "long": "bigint",
    "float": "float",
    "double": "double",
    "bytes": "string",
}
_LOGICAL = {
    "timestamp-millis": "timestamp",
    "timestamp-micros": "timestamp",
    "date": "date",
}


class PayloadTableError(TunablesError):
    """A payload schema uses an Avro construct the tables cannot type; names the field."""


class Column(NamedTuple):
    name: str
    glue_type: str
    avro: Any
    """The field's Avro type with a nullable union unwrapped; None for a source column."""
    comment: str = ""


class PayloadTable(NamedTuple):
    name: str
    prefix: str
    """The landing key prefix whose files fill the table."""
    format: str
    schema: str
    fields: tuple[Column, ...]
    """The schema's fields, in schema order."""

    @property
    def columns(self) -> tuple[Column, ...]:
        """Every column, in table order: the schema's fields, then the source columns."""
        source = tuple(Column(n, t, None, c) for n, t, c in SOURCE_COLUMNS)
        return self.fields + source

    @property
    def location_prefix(self) -> str:
        return f"{TABLES_PREFIX}{self.name}/"

    def object_key(self, dt: str, hour: str, window_id: str, part: int) -> str:
        """The object holding the rows of one window part's files of this type."""
        return f"{self.location_prefix}dt={dt}/hour={hour}/{window_id}-{part:04d}.json.gz"


def payload_table(rule: PayloadSchemaRule) -> PayloadTable:
    """The table of one payload type; PayloadTableError for a schema it cannot type."""
    try:
        schema = json.loads(rule.schema_path.read_text())
    except (OSError, ValueError) as err:
        raise PayloadTableError(
            f"table {rule.table}: cannot read {rule.schema_path}: {err}"
        ) from err
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise PayloadTableError(f"table {rule.table}: {rule.schema} must be an Avro record")
    named: dict[str, Any] = {}
    fields = tuple(
        Column(
            f["name"],
            glue_type(f["type"], named, where=f"{rule.table}.{f['name']}"),
            _unwrap_nullable(_resolve(f["type"], named)),
            f.get("doc", ""),
        )
        for f in schema["fields"]
    )
    clash = {c.name for c in fields} & {name for name, _, _ in SOURCE_COLUMNS}
    if clash:
        raise PayloadTableError(
            f"table {rule.table}: schema fields {sorted(clash)} clash with the source columns"
        )
    return PayloadTable(rule.table, rule.prefix, rule.format, rule.schema, fields)


def payload_tables(rules: Sequence[PayloadSchemaRule]) -> tuple[PayloadTable, ...]:
    return tuple(payload_table(rule) for rule in rules)


def table_for_key(tables: Sequence[PayloadTable], key: str) -> PayloadTable | None:
    """The table of the payload type with the longest prefix `key` starts with."""
    matching = [t for t in tables if key.startswith(t.prefix)]
    return max(matching, key=lambda t: len(t.prefix)) if matching else None


def glue_type(avro: Any, named: dict[str, Any] | None = None, *, where: str) -> str:  # noqa: PLR0911  # one return per Avro kind
    """The Glue (Hive DDL) type of an Avro type; a nullable union is its non-null branch."""
    named = {} if named is None else named
    avro = _unwrap_nullable(_resolve(avro, named))
    if isinstance(avro, str):
        if avro in _PRIMITIVES:
            return _PRIMITIVES[avro]
        raise PayloadTableError(f"{where}: Avro type {avro!r} has no column type")
    if isinstance(avro, list):
        raise PayloadTableError(f"{where}: a union other than [null, T] has no column type")
    kind = avro.get("type")
    if avro.get("logicalType") in _LOGICAL:
        return _LOGICAL[avro["logicalType"]]
    if avro.get("logicalType") == "decimal":
        return f"decimal({avro['precision']},{avro.get('scale', 0)})"
    if kind == "enum":
        named[avro["name"]] = avro
        return "string"
    if kind == "array":
        return f"array<{glue_type(avro['items'], named, where=where + '[]')}>"
    if kind == "map":
        return f"map<string,{glue_type(avro['values'], named, where=where + '{}')}>"
    if kind == "record":
        named[avro["name"]] = avro
        members = ",".join(
            f"{f['name']}:{glue_type(f['type'], named, where=where + '.' + f['name'])}"
            for f in avro["fields"]
        )
        return f"struct<{members}>"
    if kind == "fixed":
        named[avro["name"]] = avro
        return "string"
    if isinstance(kind, str | list | dict):
        return glue_type(kind, named, where=where)
    raise PayloadTableError(f"{where}: Avro type {avro!r} has no column type")


def table_value(avro: Any, value: Any) -> Any:  # noqa: PLR0911  # one return per Avro kind
    """A valid record's value (as parsed from JSON, or converted from CSV) as the row writes it:
    timestamps and dates as text, bytes as text, records, arrays and maps member by member."""
    if value is None:
        return None
    avro = _unwrap_nullable(avro)
    if isinstance(avro, dict):
        logical = avro.get("logicalType")
        if logical == "timestamp-millis":
            return _timestamp_text(value / 1000)
        if logical == "timestamp-micros":
            return _timestamp_text(value / 1_000_000)
        if logical == "date":
            return datetime.fromtimestamp(value * 86400, UTC).strftime("%Y-%m-%d")
        kind = avro.get("type")
        if kind == "array":
            return [table_value(avro["items"], item) for item in value]
        if kind == "map":
            return {k: table_value(avro["values"], v) for k, v in value.items()}
        if kind == "record":
            return {f["name"]: table_value(f["type"], value.get(f["name"])) for f in avro["fields"]}
    return value


def timestamp_text(epoch_seconds: float) -> str:
    """An instant as the tables write timestamps (also the source column event_time)."""
    return _timestamp_text(epoch_seconds)


def _timestamp_text(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime(TIMESTAMP_FORMAT)[:-3]


def _resolve(avro: Any, named: dict[str, Any]) -> Any:
    """A reference to a named type (a record, enum or fixed defined earlier) → its definition."""
    if isinstance(avro, str) and avro in named:
        return named[avro]
    if isinstance(avro, list):
        return [_resolve(branch, named) for branch in avro]
    return avro


def _unwrap_nullable(avro: Any) -> Any:
    if isinstance(avro, list):
        branches = [branch for branch in avro if branch != "null"]
        if len(branches) == 1:
            return branches[0]
    return avro
