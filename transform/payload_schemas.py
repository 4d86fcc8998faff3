"""Payload schemas: Avro schemas that hold back JSON / NDJSON bodies failing them.

`tunables.json` lists payload types (`processor.payload_schemas`): a key prefix, an `.avsc` under
`infrastructure/schemas/`, a format and a table. A file's type is the one with the longest prefix
its key starts with; keys outside every prefix are not checked, nor are types whose invalid
records are only reported (`invalid: report`, every csv type): those files are delivered, and
their failing records become invalid rows of the type's table. As for the envelope, values are
checked with fastavro against the parsed JSON (untagged unions, not Avro's JSON encoding). The
processor checks inline bodies; delivery checks `ref` bodies line by line with `check_lines`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, Literal, NamedTuple

import fastavro
from fastavro.schema import SchemaParseException
from fastavro.validation import ValidationError, validate

from infrastructure.tunables import PayloadSchemaRule, TunablesError

PayloadFormat = Literal["json", "ndjson", "csv"]
FORMATS: frozenset[str] = frozenset({"json", "ndjson", "csv"})
MAX_REASONS = 5
MAX_SHOWN_CHARS = 80


class PayloadSchemaError(ValueError):
    """A body fails its payload schema; the message names the schema, line and field."""


class PayloadSchema(NamedTuple):
    prefix: str
    schema: str
    """The schema's path under infrastructure/schemas/, as tunables.json names it."""
    format: PayloadFormat
    parsed: Any
    """fastavro's parsed schema: a dict for a record, a list or str for other top-level types."""
    holds_back: bool = True
    """False for a type whose invalid records are reported, not held back (see the module)."""

    def check(self, body: bytes | str) -> None:
        """Validate a whole body in this rule's format; PayloadSchemaError on the first fault."""
        if isinstance(body, bytes):
            try:
                body = body.decode("utf-8")
            except UnicodeDecodeError as err:
                raise PayloadSchemaError(
                    f"body under {self.prefix!r} must be UTF-8 {self.format} for "
                    f"{self.schema}: {err}"
                ) from err
        if self.format == "json":
            try:
                value = json.loads(body)
            except json.JSONDecodeError as err:
                raise PayloadSchemaError(f"{self.schema}: body is not JSON: {err}") from err
            if isinstance(value, list):  # an array of records
                for number, item in enumerate(value, start=1):
                    self.check_parsed(item, where=f"item {number}")
            else:
                self.check_parsed(value, where="body")
        else:
            self.check_lines(body.split("\n"))

    def check_lines(self, lines: Iterable[bytes | str]) -> int:
        """Validate NDJSON lines (numbered from 1); blank lines are allowed. Returns values seen.

        Stops at the first failing line: its number and field are what an operator needs, and a
        bad file may have millions of bad lines.
        """
        values = 0
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            self.check_value(line, where=f"line {number}")
            values += 1
        return values

    def check_value(self, text: bytes | str, *, where: str) -> None:
        """Parse one JSON value and validate it against the schema."""
        try:
            value = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise PayloadSchemaError(f"{self.schema}: {where} is not JSON: {err}") from err
        self.check_parsed(value, where=where)

    def check_parsed(self, value: Any, *, where: str) -> None:
        """Validate one value already parsed from JSON against the schema."""
        # raise_errors=False first: fastavro's raising path formats an exception for every union
        # branch it rejects (about 3x slower); only a failing value pays for the message.
        if validate(value, self.parsed, raise_errors=False):
            return
        try:
            validate(value, self.parsed, raise_errors=True)
        except ValidationError as err:
            reasons = "; ".join(describe(error) for error in err.errors[:MAX_REASONS])
            raise PayloadSchemaError(f"{self.schema}: {where} fails: {reasons}") from err
        raise PayloadSchemaError(f"{self.schema}: {where} fails")  # pragma: no cover - see above


def describe(error: Any) -> str:
    """One fastavro ValidationErrorData, short: fastavro's own text embeds the whole parsed
    schema and the whole value, which would make a reason file of kilobytes per field."""
    field = error.field or "value"
    if error.datum is None:
        return f"{field} is missing or null, expected {_expected(error.schema)}"
    shown = repr(error.datum)
    if len(shown) > MAX_SHOWN_CHARS:
        shown = shown[:MAX_SHOWN_CHARS] + "..."
    return f"{field} is {shown} ({type(error.datum).__name__}), expected {_expected(error.schema)}"


def _expected(schema: Any) -> str:
    if isinstance(schema, list):
        return " | ".join(_expected(branch) for branch in schema)
    if isinstance(schema, dict):
        if schema.get("type") == "enum":
            return f"one of {schema['symbols']}"
        return str(schema.get("name") or schema.get("type"))
    return str(schema)


class PayloadSchemas(NamedTuple):
    rules: tuple[PayloadSchema, ...] = ()
    """Longest prefix first, so the first match is the longest."""

    def for_key(self, key: str) -> PayloadSchema | None:
        """The schema that holds back a body under `key` failing it, or None: no type, or a
        type that only reports invalid records."""
        for rule in self.rules:
            if key.startswith(rule.prefix):
                return rule if rule.holds_back else None
        return None


def load(rules: Sequence[PayloadSchemaRule]) -> PayloadSchemas:
    """Parse every rule's schema (once per cold start); TunablesError for a bad rule."""
    seen: set[str] = set()
    loaded = []
    for rule in rules:
        if rule.prefix in seen:
            # Two schemas for one prefix: which one applies would depend on list order.
            raise TunablesError(f"processor.payload_schemas lists prefix {rule.prefix!r} twice")
        seen.add(rule.prefix)
        if rule.format not in FORMATS:
            raise TunablesError(
                f"processor.payload_schemas prefix {rule.prefix!r}: format {rule.format!r} "
                f"is not one of {sorted(FORMATS)}"
            )
        if rule.format == "csv" and rule.holds_back_invalid:
            raise TunablesError(
                f"processor.payload_schemas prefix {rule.prefix!r}: a csv type reports invalid "
                f"rows (invalid: report); quarantine is for json and ndjson types"
            )
        try:
            # A fresh named-types table per schema, so two payload schemas may reuse a name.
            parsed = fastavro.parse_schema(json.loads(rule.schema_path.read_text()))
        except (OSError, ValueError, SchemaParseException) as err:
            raise TunablesError(
                f"processor.payload_schemas prefix {rule.prefix!r}: cannot load "
                f"{rule.schema_path}: {err}"
            ) from err
        loaded.append(
            PayloadSchema(
                prefix=rule.prefix,
                schema=rule.schema,
                format=rule.format,  # type: ignore[arg-type]  # checked against FORMATS above
                parsed=parsed,
                holds_back=rule.holds_back_invalid,
            )
        )
    loaded.sort(key=lambda rule: len(rule.prefix), reverse=True)
    return PayloadSchemas(tuple(loaded))
