"""The envelope: one Firehose record per landed file (DESIGN §3).

Defined once, as `infrastructure/schemas/envelope.avsc`; this module validates parsed JSON
against it with fastavro, adds the rules Avro cannot say (an inline body has its sha256, a ref
has no body), and encodes/decodes the wire form: compact UTF-8 JSON, one object per line.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import operator
import re
from collections.abc import Callable
from typing import Any, Final, Literal, NamedTuple

import fastavro
import orjson
from fastavro.validation import ValidationError, validate

from infrastructure.tunables import SCHEMAS_DIR

SCHEMA_VERSION: Final = 1
SCHEMA_FILE: Final = SCHEMAS_DIR / "envelope.avsc"
PARSED_SCHEMA: Final[dict[str, Any]] = fastavro.parse_schema(  # type: ignore[assignment]  # a record schema parses to a dict
    json.loads(SCHEMA_FILE.read_text())
)
REQUIRED_FIELDS: Final = tuple(
    field["name"] for field in PARSED_SCHEMA["fields"] if "default" not in field
)
FILE_ID_PATTERN: Final = re.compile(r"[0-9a-f]{64}(#r[A-Za-z0-9_.:-]{1,128})?")
"""A well-formed file_id (a forced replay's `#r<replay_id>` included): only such an id may name
a reason file or an exclusion, since a broken record's "file_id" could be any string."""
ENRICHMENT_FIELDS: Final = ("firehose_arrival_ms", "content_kind")
"""Fields only the processor writes; the forwarder never sets them."""

BodyEncoding = Literal["utf8", "base64", "ref"]
INLINE_ENCODINGS: Final = frozenset({"utf8", "base64"})


class EnvelopeError(ValueError):
    """A record is not a valid envelope; the message says which field and why."""


class NewerSchemaVersion(EnvelopeError):
    """An envelope written by a newer Sluice than this reader: not bad, only early (a forwarder
    deployed ahead of delivery). Delivery retries its window rather than exclude it."""


def file_id(bucket: str, key: str, version_id: str) -> str:
    """sha256(bucket NUL key NUL version_id), hex (DESIGN §4a). NUL cannot occur in any of them."""
    return hashlib.sha256(f"{bucket}\0{key}\0{version_id}".encode()).hexdigest()


class Envelope(NamedTuple):
    """What the forwarder sends for one file. Times are epoch milliseconds."""

    file_id: str
    bucket: str
    key: str
    version_id: str
    size: int
    event_time_ms: int
    forwarded_at_ms: int
    body_encoding: BodyEncoding
    body: str | None = None
    body_sha256: str | None = None
    sequencer: str | None = None
    etag: str | None = None
    requeue_attempts: int | None = None
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def inline(cls, data: bytes, **fields: Any) -> Envelope:
        """An envelope carrying `data`: as text when it is valid UTF-8, else as base64."""
        try:
            body, encoding = data.decode("utf-8"), "utf8"
        except UnicodeDecodeError:
            body, encoding = base64.b64encode(data).decode("ascii"), "base64"
        return cls(
            body=body,
            body_encoding=encoding,  # type: ignore[arg-type]  # one of the two literals above
            body_sha256=hashlib.sha256(data).hexdigest(),
            **fields,
        )

    @classmethod
    def ref(cls, **fields: Any) -> Envelope:
        """A claim check: the body stays in the landing bucket at this exact version."""
        return cls(body_encoding="ref", **fields)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, omitting optional fields that are unset (Avro defaults them to null)."""
        return {name: value for name, value in self._asdict().items() if value is not None}

    def encode(self) -> bytes:
        """The wire form: compact UTF-8 JSON, no trailing newline (the processor appends it)."""
        return encode(self.to_dict())


def encode(record: dict[str, Any]) -> bytes:
    # ensure_ascii=False keeps non-ASCII bodies at their UTF-8 size instead of 6-byte escapes,
    # which is what lets a 3 MB processor batch stay under the 6 MB response limit.
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def check(record: Any) -> dict[str, Any]:
    """Validate a parsed envelope; return it unchanged or raise EnvelopeError naming the fault."""
    if not isinstance(record, dict):
        raise EnvelopeError(f"envelope must be a JSON object, got {type(record).__name__}")
    missing = [name for name in REQUIRED_FIELDS if name not in record]
    if missing:
        raise EnvelopeError(f"envelope is missing required fields: {', '.join(missing)}")
    # fastavro's validate costs ~10 us a record, most of the processor's and delivery's
    # per-record work; `_plainly_valid` accepts a subset of what it accepts (the shapes our
    # own writers produce) in a fraction of that, and anything else still goes to fastavro.
    # Its raising mode builds an error for every union branch it rejects, so it runs only to
    # explain a failure.
    if not _plainly_valid(record) and not validate(record, PARSED_SCHEMA, raise_errors=False):
        _explain(record)
    return _checked(record)


def _checked(record: dict[str, Any]) -> dict[str, Any]:
    """`check`'s rules past the schema, for a record the schema accepts."""
    check_rules(
        record["body_encoding"],
        record.get("body"),
        record.get("body_sha256"),
        record["schema_version"],
    )
    return record


def check_rules(
    encoding: str, body: str | None, body_sha256: str | None, schema_version: int
) -> None:
    """The rules Avro cannot say, for the fields of a record the schema accepts: an inline
    body has its sha256, a ref has no body, the version is one this reader knows."""
    if encoding in INLINE_ENCODINGS:
        if body is None or body_sha256 is None:
            raise EnvelopeError(f"inline ({encoding}) envelope needs body and body_sha256")
    elif body is not None:
        raise EnvelopeError("ref envelope must not carry a body")
    if schema_version > SCHEMA_VERSION:
        raise NewerSchemaVersion(
            f"envelope schema_version {schema_version} is newer than this reader's {SCHEMA_VERSION}"
        )


class _FieldRule(NamedTuple):
    """What fastavro's `validate` accepts for one field, in the shapes this module checks
    itself: exactly `kind` (so no bool for an int), within `bounds` or among `symbols`."""

    name: str
    kind: Any  # a type; Any, so that `type(v) is kind` leaves `v` typed as it was
    nullable: bool
    optional: bool
    bounds: tuple[int, int] | None = None
    symbols: frozenset[str] | None = None


def _field_rule(name: str, avro_type: Any, optional: bool) -> _FieldRule | None:
    """The rule of a field of `avro_type`; None for a type this does not cover."""
    nullable = isinstance(avro_type, list)
    if nullable:
        branches = [branch for branch in avro_type if branch != "null"]
        if "null" not in avro_type or len(branches) != 1:
            return None
        avro_type = branches[0]
    if avro_type == "string":
        return _FieldRule(name, str, nullable, optional)
    if isinstance(avro_type, str) and avro_type in _INT_RANGES:
        return _FieldRule(name, int, nullable, optional, _INT_RANGES[avro_type])
    if isinstance(avro_type, dict) and avro_type.get("type") == "enum":
        return _FieldRule(name, str, nullable, optional, symbols=frozenset(avro_type["symbols"]))
    return None


_INT_RANGES: Final = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
_FIELD_NAMES: Final = frozenset(field["name"] for field in PARSED_SCHEMA["fields"])
_ABSENT: Final[Any] = object()


def _field_rules() -> tuple[_FieldRule, ...] | None:
    """Every field's rule, or None when a field's type is not covered (fastavro decides)."""
    rules = [
        _field_rule(field["name"], field["type"], "default" in field)
        for field in PARSED_SCHEMA["fields"]
    ]
    covered = [rule for rule in rules if rule is not None]
    return tuple(covered) if len(covered) == len(rules) else None


_FIELD_RULES: Final = _field_rules()


def _plainly_valid(record: dict[str, Any]) -> bool:
    """True only when fastavro's `validate` would be too: every field of a covered type and
    well-typed, optional ones absent or valid, no field the schema does not name. False means
    "ask fastavro", not "invalid". It runs for every line, so the usual record (no null) is
    checked by its key order's `_Shape`: its values and their types taken at once, in C."""
    shape = _shape(tuple(record))
    if shape is None:
        return False
    values = shape.values(record)
    if tuple(map(type, values)) != shape.types:  # a null, or a wrong type: field by field
        return _each_field_plainly_valid(record)
    for position, low, high in shape.bounded:
        if not low <= values[position] <= high:
            return False
    for position, symbols in shape.enumerated:  # noqa: SIM110  # all() costs a generator a line
        if values[position] not in symbols:
            return False
    return True


class _Shape(NamedTuple):
    """How `_plainly_valid` checks a record whose keys come in one order."""

    values: Callable[[dict[str, Any]], tuple[Any, ...]]
    """The record's values in that order (an `itemgetter`)."""
    types: tuple[type, ...]
    """Each value's exact type, when it is not null."""
    bounded: tuple[tuple[int, int, int], ...]
    """(position, low, high) of each int field."""
    enumerated: tuple[tuple[int, frozenset[str]], ...]
    """(position, symbols) of each enum field."""


@functools.lru_cache(maxsize=64)  # a window's lines come in one or two key orders
def _shape(keys: tuple[str, ...]) -> _Shape | None:
    """The check of records with these keys, in this order; None when none can be plainly
    valid (a type not covered, a field the schema does not name, a required one missing)."""
    if _FIELD_RULES is None or len(keys) < 2:  # fewer than two: no itemgetter tuple, and
        return None  # the schema requires more
    rules = {rule.name: rule for rule in _FIELD_RULES}
    if not rules.keys() >= set(keys) or any(
        not rule.optional and rule.name not in keys for rule in _FIELD_RULES
    ):
        return None
    in_order = [rules[key] for key in keys]
    return _Shape(
        values=operator.itemgetter(*keys),
        types=tuple(rule.kind for rule in in_order),
        bounded=tuple(
            (position, *rule.bounds)
            for position, rule in enumerate(in_order)
            if rule.bounds is not None
        ),
        enumerated=tuple(
            (position, rule.symbols)
            for position, rule in enumerate(in_order)
            if rule.symbols is not None
        ),
    )


def _each_field_plainly_valid(record: dict[str, Any]) -> bool:
    """`_plainly_valid`, one field at a time (nulls included)."""
    if _FIELD_RULES is None or not record.keys() <= _FIELD_NAMES:
        return False
    for rule in _FIELD_RULES:
        value: Any = record.get(rule.name, _ABSENT)
        if value is _ABSENT:
            holds = rule.optional
        elif value is None:
            holds = rule.nullable
        else:
            holds = (
                type(value) is rule.kind
                and (rule.bounds is None or rule.bounds[0] <= value <= rule.bounds[1])
                and (rule.symbols is None or value in rule.symbols)
            )
        if not holds:
            return False
    return True


def _explain(record: dict[str, Any]) -> None:
    try:
        validate(record, PARSED_SCHEMA, raise_errors=True)
    except ValidationError as err:
        reasons = "; ".join(str(error) for error in err.errors)
        raise EnvelopeError(f"envelope fails envelope.avsc: {reasons}") from err
    raise EnvelopeError("envelope fails envelope.avsc")


def loads(data: bytes | str) -> Any:
    """`json.loads`, with the same result and the same errors, ~4x faster on envelope lines.

    orjson parses what both accept to the same objects, except that it reads an integer past
    64 bits as a float; and it refuses what `json` tolerates (NaN, lone surrogates, a BOM,
    UTF-16). So a document orjson refuses, or one holding any float, is parsed by `json`.
    """
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
    return value if _no_float(value) else json.loads(data)


def _no_float(value: Any) -> bool:
    kind = type(value)
    if kind is dict:
        values: Any = value.values()
    elif kind is list:
        values = value
    else:
        return kind is not float
    for item in values:
        kind = type(item)
        if kind is float or ((kind is dict or kind is list) and not _no_float(item)):
            return False
    return True


def decode(line: bytes | str) -> dict[str, Any]:
    """Parse and validate one wire-form envelope (a trailing newline is allowed)."""
    try:
        fast = orjson.loads(line)
    except orjson.JSONDecodeError:
        fast = None
    # A plainly valid record holds only strings, ints and nulls: no float for `loads` to
    # re-read, so the common line skips that walk.
    if type(fast) is dict and _plainly_valid(fast):
        return _checked(fast)
    try:
        record = loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise EnvelopeError(f"envelope is not JSON: {err}") from err
    return check(record)


def body_bytes(record: dict[str, Any]) -> bytes:
    """The inline body's bytes; EnvelopeError for a ref or a body that does not match its sha256."""
    return checked_body_of(
        record["body_encoding"], record.get("body"), record.get("body_sha256"), record["file_id"]
    )


def checked_body_of(
    encoding: str, body: str | None, body_sha256: str | None, file_id: str
) -> bytes:
    """`body_bytes` of these fields (a record `check` accepted)."""
    data = body_of(encoding, body, file_id)
    if hashlib.sha256(data).hexdigest() != body_sha256:
        raise EnvelopeError(f"body of {file_id} does not match its body_sha256")
    return data


def decode_body(record: dict[str, Any]) -> bytes:
    """The inline body's bytes, not checked against body_sha256 (for a reader that checks them
    itself, as the archive writer does); EnvelopeError for a ref or an undecodable body."""
    return body_of(record["body_encoding"], record.get("body"), record["file_id"])


def body_of(encoding: str, body: str | None, file_id: str) -> bytes:
    """`decode_body` of these fields (a record `check` accepted)."""
    if body is None:
        raise EnvelopeError(f"{file_id} is a ref: its body is in the landing bucket")
    if encoding == "utf8":
        try:
            data: bytes = body.encode("utf-8")
        except UnicodeEncodeError as err:  # JSON can carry lone surrogates; UTF-8 cannot
            raise EnvelopeError(f"utf8 body of {file_id} is not encodable: {err}") from err
        return data
    if encoding == "base64":
        try:
            return base64.b64decode(body, validate=True)
        except ValueError as err:
            raise EnvelopeError(f"base64 body of {file_id} is not base64") from err
    raise EnvelopeError(f"{file_id} is a ref: its body is in the landing bucket")
