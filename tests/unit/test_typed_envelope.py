"""`decode_typed`: the lines `envelope.decode` accepts, with the same values, as a typed record.

`TypedEnvelope` mirrors envelope.avsc; the first test holds the two equal field for field, so a
field added to the schema and not here fails a test rather than sending every line the slow way.
"""

from __future__ import annotations

import typing
from typing import Any

import msgspec
import pytest

from transform import envelope
from transform.envelope import Envelope, EnvelopeError, NewerSchemaVersion
from transform.typed_envelope import TypedEnvelope, decode_typed

FILE = Envelope.inline(
    b'{"a":1}',
    file_id=envelope.file_id("landing", "in/a.json", "v1"),
    bucket="landing",
    key="in/a.json",
    version_id="v1",
    size=7,
    event_time_ms=1_714_521_600_000,
    forwarded_at_ms=1_714_521_601_000,
).to_dict()


def _avro_type(annotation: Any) -> Any:
    """The Avro type a field's annotation says, as envelope.avsc writes it (enum: its symbols)."""
    args = typing.get_args(annotation)
    if type(None) in args:  # T | None
        [inner] = [arg for arg in args if arg is not type(None)]
        return ["null", _avro_type(inner)]
    if typing.get_origin(annotation) is typing.Literal:
        return {"type": "enum", "symbols": list(args)}
    if typing.get_origin(annotation) is typing.Annotated:
        low = typing.get_args(annotation)[1].ge
        return "int" if low == -(2**31) else "long"
    return {str: "string"}[annotation]


def test_the_typed_record_is_the_schemas_fields_types_and_defaults() -> None:
    # GIVEN envelope.avsc's fields, and TypedEnvelope's
    hints = typing.get_type_hints(TypedEnvelope, include_extras=True)
    info = msgspec.structs.fields(TypedEnvelope)

    def avsc_type(avro: Any) -> Any:
        if isinstance(avro, list):
            return ["null", *(avsc_type(branch) for branch in avro if branch != "null")]
        if isinstance(avro, dict):
            return {"type": "enum", "symbols": avro["symbols"]}
        return avro

    # WHEN each is described as Avro names it  THEN they are the same, in the same order,
    # optional exactly where the schema gives a default (null)
    assert [(f.name, _avro_type(hints[f.name]), f.required) for f in info] == [
        (field["name"], avsc_type(field["type"]), "default" not in field)
        for field in envelope.PARSED_SCHEMA["fields"]
    ]
    assert all(f.default is None for f in info if not f.required)


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"sequencer": "0055AED6DCD9", "etag": "abc", "requeue_attempts": 2},
        {"firehose_arrival_ms": 1_714_521_602_000, "content_kind": "json"},
        {"sequencer": None, "etag": None},  # explicit nulls
        {"from_a_later_writer": [1, {"x": 2.5}]},  # an unknown field is ignored
        {"key": "caf\u00e9/\U0001f600.txt"},
    ],
)
def test_a_valid_line_decodes_to_the_same_values(change: dict[str, Any]) -> None:
    # GIVEN a valid envelope line
    line = envelope.encode({**FILE, **change}) + b"\n"
    # WHEN decoded typed, and as a dict  THEN every field the schema names agrees
    typed = decode_typed(line)
    record = envelope.decode(line)
    assert msgspec.structs.asdict(typed) == {
        f.name: record.get(f.name) for f in msgspec.structs.fields(TypedEnvelope)
    }


@pytest.mark.parametrize(
    "line",
    [
        # what msgspec refuses and `envelope.decode` accepts: the slow way, same values
        envelope.encode(FILE)[:-1] + b',"later":NaN}',
        envelope.encode({**FILE, "key": "in/\\ud800.txt"}).replace(b"\\\\ud800", b"\\ud800"),
        b"\xef\xbb\xbf" + envelope.encode(FILE),  # a byte-order mark: json reads past it
    ],
)
def test_what_msgspec_refuses_the_envelope_check_decides(line: bytes) -> None:
    typed = decode_typed(line)
    record = envelope.decode(line)
    assert typed.key == record["key"]
    assert msgspec.structs.asdict(typed)["body"] == record["body"]


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"size": True}, EnvelopeError, "size"),  # a bool is not an Avro long
        ({"size": 1.0}, EnvelopeError, "size"),
        ({"requeue_attempts": 2**31}, EnvelopeError, "requeue_attempts"),
        ({"body_encoding": "gzip"}, EnvelopeError, "body_encoding"),
        ({"key": None}, EnvelopeError, "key"),
        ({"body_sha256": None}, EnvelopeError, "needs body and body_sha256"),
        ({"body_encoding": "ref"}, EnvelopeError, "must not carry a body"),
        ({"schema_version": 2}, NewerSchemaVersion, "newer"),
    ],
)
def test_what_decode_refuses_decode_typed_refuses_alike(
    change: dict[str, Any], error: type[Exception], match: str
) -> None:
    line = envelope.encode({**FILE, **change})
    with pytest.raises(error, match=match):
        envelope.decode(line)
    with pytest.raises(error, match=match):
        decode_typed(line)


@pytest.mark.parametrize("line", [b"", b"not json", b"[1, 2]", b'{"file_id": "x"', b"\xff"])
def test_a_line_that_is_no_envelope_is_an_envelope_error(line: bytes) -> None:
    with pytest.raises(EnvelopeError):
        decode_typed(line)
