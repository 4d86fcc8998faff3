"""transform/envelope.py: file_id, building envelopes, the wire form, validation and bodies."""

from __future__ import annotations

import base64
import hashlib
import json
import random
from typing import Any

import pytest

from transform.envelope import (
    ENRICHMENT_FIELDS,
    REQUIRED_FIELDS,
    SCHEMA_VERSION,
    Envelope,
    EnvelopeError,
    body_bytes,
    check,
    decode,
    encode,
    file_id,
)

BUCKET = "sluice-landing"
KEY = "acme/orders/2024-05-01 ü.json"
VERSION = "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nr8X8gdRQBpUMLUo"


def fields(**overrides: Any) -> dict[str, Any]:
    """The identity and timing fields every envelope needs, as the forwarder fills them."""
    base: dict[str, Any] = {
        "file_id": file_id(BUCKET, KEY, VERSION),
        "bucket": BUCKET,
        "key": KEY,
        "version_id": VERSION,
        "size": 0,
        "event_time_ms": 1_714_521_600_123,
        "forwarded_at_ms": 1_714_521_601_456,
    }
    base.update(overrides)
    return base


def inline(data: bytes, **overrides: Any) -> Envelope:
    return Envelope.inline(data, **fields(size=len(data), **overrides))


def valid_inline_dict(**overrides: Any) -> dict[str, Any]:
    record = inline(b'{"order_id": "o-1"}\n').to_dict()
    record.update(overrides)
    return record


def valid_ref_dict(**overrides: Any) -> dict[str, Any]:
    record = Envelope.ref(**fields(size=5_000_000)).to_dict()
    record.update(overrides)
    return record


# --------------------------------------------------------------------------- file_id


def test_file_id_is_sha256_of_bucket_key_version_joined_by_nul() -> None:
    # GIVEN a bucket, a non-ASCII key and a version
    expected = hashlib.sha256(
        BUCKET.encode("utf-8") + b"\0" + KEY.encode("utf-8") + b"\0" + VERSION.encode("utf-8")
    ).hexdigest()

    # WHEN its file_id is computed THEN it is that digest, lowercase hex
    assert file_id(BUCKET, KEY, VERSION) == expected
    assert len(expected) == 64


def test_file_id_for_unversioned_bucket_uses_literal_null() -> None:
    expected = hashlib.sha256(b"b\0k\0null").hexdigest()
    assert file_id("b", "k", "null") == expected


@pytest.mark.parametrize(
    "other",
    [
        ("other-bucket", KEY, VERSION),
        (BUCKET, KEY + "x", VERSION),
        (BUCKET, KEY, VERSION[:-1]),
        (BUCKET, KEY.upper(), VERSION),
    ],
    ids=["bucket", "key", "version", "key-case"],
)
def test_file_id_changes_when_any_part_changes(other: tuple[str, str, str]) -> None:
    assert file_id(*other) != file_id(BUCKET, KEY, VERSION)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (("ab", "c", "v"), ("a", "bc", "v")),
        (("a", "bc", "v"), ("a", "b", "cv")),
        (("a", "", "bv"), ("a", "b", "v")),
        (("", "a", "v"), ("a", "", "v")),
    ],
)
def test_file_id_separates_the_parts(
    left: tuple[str, str, str], right: tuple[str, str, str]
) -> None:
    # GIVEN two triples whose plain concatenation is the same WHEN hashed THEN they differ
    assert "".join(left) == "".join(right)
    assert file_id(*left) != file_id(*right)


# --------------------------------------------------------------------------- building


@pytest.mark.parametrize(
    "data",
    [b"hello, world\n", "grüße, 東京, 🚀".encode(), b"", b"\x00\x01 nul and controls", b"a\r\nb"],
    ids=["ascii", "non-ascii", "empty", "control-chars", "crlf"],
)
def test_inline_valid_utf8_travels_as_text(data: bytes) -> None:
    # GIVEN a body that is valid UTF-8 WHEN enveloped
    env = inline(data)

    # THEN it travels as the text itself, with the sha256 of the original bytes
    assert env.body_encoding == "utf8"
    assert env.body == data.decode("utf-8")
    assert env.body_sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00",
        b"\xff\xfe\x00a",
        b"caf\xe9",  # Latin-1, not UTF-8
        b"ok \xc3\x28",  # invalid continuation byte
        b"\xe2\x82",  # truncated sequence
        b"\xed\xa0\x80",  # an encoded surrogate, which UTF-8 forbids
        b"\xc0\xaf",  # overlong encoding of '/'
        bytes(range(256)),
    ],
    ids=[
        "png",
        "utf16-bom",
        "latin1",
        "bad-continuation",
        "truncated",
        "surrogate",
        "overlong",
        "all",
    ],
)
def test_inline_invalid_utf8_travels_as_base64(data: bytes) -> None:
    env = inline(data)
    assert env.body_encoding == "base64"
    assert env.body == base64.b64encode(data).decode("ascii")
    assert env.body_sha256 == hashlib.sha256(data).hexdigest()


def test_empty_body_is_an_empty_utf8_string_that_survives_the_wire() -> None:
    # GIVEN a 0-byte file
    env = inline(b"")

    # WHEN sent and read back
    record = decode(env.encode())

    # THEN it is an empty utf8 body (present, not null) with the sha256 of nothing
    assert record["body_encoding"] == "utf8"
    assert record["body"] == ""
    assert record["body_sha256"] == hashlib.sha256(b"").hexdigest()
    assert body_bytes(record) == b""


def test_ref_has_no_body() -> None:
    # GIVEN a file too big to travel inline
    env = Envelope.ref(**fields(size=10_000_000, etag="abc-3", sequencer="0055AED6DCD90281E5"))

    # THEN the envelope is a claim check: encoding ref, no body, no body hash
    assert env.body_encoding == "ref"
    assert env.body is None
    assert env.body_sha256 is None
    record = env.to_dict()
    assert "body" not in record
    assert "body_sha256" not in record
    assert check(record) is record


def test_to_dict_omits_unset_optionals_and_keeps_set_ones() -> None:
    # GIVEN an inline envelope without sequencer/etag, and one with them
    bare = inline(b"x").to_dict()
    full = inline(b"x", sequencer="0A", etag="9dd4e461268c8034f5c8564e155c67a6").to_dict()

    # THEN unset optionals are absent (Avro defaults them), set ones present
    for name in ("sequencer", "etag", "requeue_attempts", *ENRICHMENT_FIELDS):
        assert name not in bare
    assert full["sequencer"] == "0A"
    assert full["etag"] == "9dd4e461268c8034f5c8564e155c67a6"
    # AND the required fields are all there, at the current schema version
    assert set(REQUIRED_FIELDS) <= set(bare)
    assert bare["schema_version"] == SCHEMA_VERSION == 1


def test_required_fields_are_those_the_design_lists() -> None:
    assert set(REQUIRED_FIELDS) == {
        "schema_version",
        "file_id",
        "bucket",
        "key",
        "version_id",
        "size",
        "event_time_ms",
        "forwarded_at_ms",
        "body_encoding",
    }


# --------------------------------------------------------------------------- wire form


@pytest.mark.parametrize(
    "env",
    [
        inline(b"plain text"),
        inline(b"\xff\x00binary"),
        inline("ü\n€".encode(), sequencer="0055AED6DCD90281E5", etag="e", requeue_attempts=2),
        Envelope.ref(**fields(size=9_999_999, etag="abc-2")),
    ],
    ids=["utf8", "base64", "all-optionals", "ref"],
)
def test_encode_decode_round_trip_equals_to_dict(env: Envelope) -> None:
    assert decode(env.encode()) == env.to_dict()


def test_encoded_form_is_compact_utf8_json() -> None:
    # GIVEN a non-ASCII body and key
    env = inline("naïve→東京".encode())

    # WHEN encoded
    wire = env.encode()

    # THEN non-ASCII characters are raw UTF-8, not \u escapes, and there is no padding whitespace
    assert "naïve→東京".encode() in wire
    assert KEY.encode() in wire
    assert b"\\u" not in wire
    assert b", " not in wire
    assert b": " not in wire
    assert b'{"file_id":"' in wire
    # AND it is exactly the module-level encoder applied to the dict
    assert wire == encode(env.to_dict())


@pytest.mark.parametrize(
    "text",
    ["line1\nline2\n", "crlf\r\nend\r", "\n", "sep\u2028para\u2029nel\x85", "tab\tff\x0cvt\x0b"],
    ids=["lf", "crlf", "only-newline", "unicode-separators", "other-whitespace"],
)
def test_encoded_form_is_one_line_whatever_the_body(text: str) -> None:
    # GIVEN a body with line breaks of every kind
    wire = inline(text.encode()).encode()

    # THEN the wire form holds no LF or CR byte (windows are split on b"\n"), and has no
    # trailing newline (the processor appends it)
    assert b"\n" not in wire
    assert b"\r" not in wire
    assert decode(wire + b"\n")["body"] == text


@pytest.mark.parametrize("suffix", [b"\n", b"\r\n"])
def test_decode_accepts_a_trailing_newline(suffix: bytes) -> None:
    env = inline(b"x")
    assert decode(env.encode() + suffix) == env.to_dict()
    assert decode((env.encode() + suffix).decode()) == env.to_dict()


def test_decode_accepts_str_as_well_as_bytes() -> None:
    env = inline("ü".encode())
    assert decode(env.encode().decode("utf-8")) == env.to_dict()


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "line",
    [b"{", b"", b"not json", b'{"a":1} {"b":2}', b"\xff\xfe{}", b'{"body":"\xff"}'],
    ids=["truncated", "empty", "text", "two-objects", "utf16ish", "invalid-utf8"],
)
def test_decode_not_json(line: bytes) -> None:
    with pytest.raises(EnvelopeError, match="not JSON"):
        decode(line)


@pytest.mark.parametrize(
    ("line", "kind"),
    [(b"[]", "list"), (b"5", "int"), (b'"text"', "str"), (b"null", "NoneType")],
)
def test_decode_not_an_object(line: bytes, kind: str) -> None:
    with pytest.raises(EnvelopeError, match=f"must be a JSON object, got {kind}"):
        decode(line)


def test_check_lists_every_missing_required_field() -> None:
    # GIVEN an envelope missing two required fields
    record = valid_inline_dict()
    del record["file_id"]
    del record["size"]

    # THEN both are named, and no field that is present
    with pytest.raises(EnvelopeError, match="missing required fields") as caught:
        check(record)
    message = str(caught.value)
    assert "file_id" in message
    assert "size" in message
    assert "bucket" not in message


def test_check_empty_object_lists_all_required_fields() -> None:
    with pytest.raises(EnvelopeError) as caught:
        check({})
    for name in REQUIRED_FIELDS:
        assert name in str(caught.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("size", "19"),
        ("size", 19.0),
        ("size", True),
        ("size", None),
        ("schema_version", "1"),
        ("key", 7),
        ("key", None),
        ("event_time_ms", 1.5),
        ("etag", 5),
        ("requeue_attempts", "1"),
        ("requeue_attempts", 2**31),
        ("firehose_arrival_ms", "now"),
        ("body", 42),
    ],
)
def test_check_wrong_type_names_the_field(name: str, value: Any) -> None:
    record = valid_inline_dict(**{name: value})
    with pytest.raises(EnvelopeError, match=rf"\b{name}\b"):
        check(record)


@pytest.mark.parametrize(
    ("name", "value"),
    [("body_encoding", "gzip"), ("body_encoding", "UTF8"), ("content_kind", "xml")],
)
def test_check_bad_enum_names_the_field(name: str, value: str) -> None:
    with pytest.raises(EnvelopeError, match=rf"{name}.*{value}"):
        check(valid_inline_dict(**{name: value}))


def test_check_accepts_the_processors_enrichment_fields() -> None:
    record = valid_inline_dict(firehose_arrival_ms=1_714_521_602_000, content_kind="ndjson")
    assert check(record) is record


@pytest.mark.parametrize("encoding", ["utf8", "base64"])
@pytest.mark.parametrize("drop", ["body", "body_sha256"])
def test_check_inline_needs_body_and_sha(encoding: str, drop: str) -> None:
    # GIVEN an inline envelope lacking its body or its hash (absent or explicitly null)
    absent = valid_inline_dict(body_encoding=encoding)
    del absent[drop]
    null = valid_inline_dict(body_encoding=encoding, **{drop: None})

    # THEN both are refused, naming the encoding and what an inline body needs
    for record in (absent, null):
        with pytest.raises(EnvelopeError, match=rf"inline \({encoding}\).*body and body_sha256"):
            check(record)


def test_check_ref_with_body_is_refused() -> None:
    with pytest.raises(EnvelopeError, match="ref envelope must not carry a body"):
        check(valid_ref_dict(body="sneaky"))


def test_check_ref_with_empty_body_is_refused() -> None:
    with pytest.raises(EnvelopeError, match="ref envelope must not carry a body"):
        check(valid_ref_dict(body=""))


def test_check_ref_with_explicit_null_body_is_accepted() -> None:
    record = valid_ref_dict(body=None)
    assert check(record) is record


def test_check_newer_schema_version_is_refused() -> None:
    with pytest.raises(EnvelopeError, match=r"schema_version 2 is newer than this reader's 1"):
        check(valid_inline_dict(schema_version=SCHEMA_VERSION + 1))


def test_check_tolerates_unknown_fields_from_a_later_writer() -> None:
    # GIVEN an envelope carrying fields this reader does not know (additive schema evolution)
    record = valid_inline_dict(producer_region="eu-west-1", future={"nested": [1, 2]})

    # WHEN decoded from the wire THEN it is accepted and the extra fields are kept
    decoded = decode(encode(record))
    assert decoded == record
    assert decoded["future"] == {"nested": [1, 2]}


def test_decode_refuses_what_check_refuses() -> None:
    with pytest.raises(EnvelopeError, match="ref envelope must not carry a body"):
        decode(encode(valid_ref_dict(body="x")))


# --------------------------------------------------------------------------- bodies


@pytest.mark.parametrize(
    "data", [b"text body\n", "ünïcödé".encode(), b"\xff\xd8\xff\xe0 jpeg", b""]
)
def test_body_bytes_round_trips(data: bytes) -> None:
    assert body_bytes(decode(inline(data).encode())) == data


def test_body_bytes_refuses_a_ref() -> None:
    record = valid_ref_dict()
    with pytest.raises(EnvelopeError, match="is a ref") as caught:
        body_bytes(record)
    assert record["file_id"] in str(caught.value)


@pytest.mark.parametrize(
    "record",
    [
        valid_inline_dict(body="tampered"),
        valid_inline_dict(body_sha256="0" * 64),
        inline(b"\xff\x00").to_dict() | {"body": base64.b64encode(b"\xff\x01").decode()},
    ],
    ids=["utf8-body-changed", "sha-changed", "base64-body-changed"],
)
def test_body_bytes_detects_a_sha256_mismatch(record: dict[str, Any]) -> None:
    with pytest.raises(EnvelopeError, match="does not match its body_sha256") as caught:
        body_bytes(record)
    assert record["file_id"] in str(caught.value)


@pytest.mark.parametrize(
    "body",
    ["not base64!", "AAA", "AA==AA==", "ü+8=", "QUJD\nREVG"],
    ids=["punctuation", "bad-padding", "padding-inside", "non-ascii", "embedded-newline"],
)
def test_body_bytes_invalid_base64_is_an_envelope_error(body: str) -> None:
    record = inline(b"\xff").to_dict() | {"body": body}
    with pytest.raises(EnvelopeError, match="is not base64"):
        body_bytes(record)


def test_body_bytes_of_a_utf8_body_that_is_not_encodable_is_an_envelope_error() -> None:
    # GIVEN a line whose utf8 body is a lone surrogate, written as a JSON escape: valid JSON,
    # valid against envelope.avsc (a string), but not text any file could have held
    record = valid_inline_dict()
    line = encode(record).replace(
        json.dumps(record["body"], ensure_ascii=False).encode(), b'"\\ud800"'
    )
    assert json.loads(line)["body"] == "\ud800"

    # WHEN it is decoded and its bytes asked for THEN the record is refused as a bad envelope
    # (by decode or by body_bytes, so the processor can fail that one record), not with a bare
    # UnicodeEncodeError
    with pytest.raises(EnvelopeError):
        body_bytes(decode(line))


# --------------------------------------------------------------------------- property loop


def _random_body(rng: random.Random) -> bytes:
    """Random bytes, random text, or text with a few random bytes spliced in."""
    length = rng.choice([0, 1, 2, 3, 7, 64, rng.randrange(0, 4096)])
    kind = rng.randrange(3)
    if kind == 0:
        return rng.randbytes(length)
    alphabet = [chr(rng.randrange(0x0, 0x2FFFF)) for _ in range(32)]
    text = "".join(
        c for c in (rng.choice(alphabet) for _ in range(length)) if not 0xD800 <= ord(c) <= 0xDFFF
    ).encode("utf-8")
    if kind == 1 or not text:
        return text
    spliced = bytearray(text)
    for _ in range(rng.randrange(1, 4)):
        spliced.insert(rng.randrange(len(spliced) + 1), rng.randrange(256))
    return bytes(spliced)


def test_random_bodies_round_trip_through_the_wire() -> None:
    # GIVEN many random bodies, reproducibly
    rng = random.Random(20240501)
    seen = set()
    for _ in range(500):
        data = _random_body(rng)

        # WHEN each is enveloped, encoded, decoded and its bytes recovered
        env = inline(data, key=f"k/{rng.random()}")
        wire = env.encode()
        record = decode(wire + b"\n")

        # THEN the bytes are exactly the original, in the encoding its validity dictates,
        # on one line
        try:
            data.decode("utf-8")
            expected = "utf8"
        except UnicodeDecodeError:
            expected = "base64"
        assert record["body_encoding"] == expected, data
        assert body_bytes(record) == data
        assert record == env.to_dict()
        assert b"\n" not in wire
        seen.add(expected)

    # AND both encodings were exercised
    assert seen == {"utf8", "base64"}


def _plain_record(**overrides: Any) -> dict[str, Any]:
    record = Envelope.inline(b'{"a":1}', **fields()).to_dict()
    record.update(firehose_arrival_ms=1_714_521_602_000, content_kind="json", requeue_attempts=1)
    record.update(overrides)
    return record


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({}, True),
        ({"sequencer": None, "etag": None}, True),
        ({"size": True}, False),  # a bool is an int to Python, not to Avro
        ({"size": 1.0}, False),
        ({"requeue_attempts": 2**31}, False),  # past Avro's int
        ({"event_time_ms": 2**63}, False),  # past Avro's long
        ({"body_encoding": "gzip"}, False),
        ({"content_kind": "xml"}, False),
        ({"key": None}, False),  # required, not nullable
        ({"key": b"k"}, False),
        ({"surplus": 1}, False),
        ({"requeue_attempts": -(2**31) - 1}, False),
        ({"sequencer": None, "size": True}, False),  # a null sends it field by field
        ({"sequencer": None, "content_kind": "xml"}, False),
    ],
)
def test_the_fast_check_accepts_only_what_fastavro_accepts(
    change: dict[str, Any], expected: bool
) -> None:
    # GIVEN an envelope as the processor enriches it, with one field changed
    from fastavro.validation import validate  # noqa: PLC0415  # the oracle, this test only

    from transform.envelope import PARSED_SCHEMA, _plainly_valid  # noqa: PLC0415

    record = _plain_record(**change)
    # WHEN the fast check judges it THEN it agrees with fastavro, and a record it accepts is
    # one fastavro accepts: the fast path never lets through what the schema refuses
    assert _plainly_valid(record) is expected
    # ... whatever the order of its keys (each order is checked by its own shape)
    assert _plainly_valid(dict(reversed(record.items()))) is expected
    if expected:
        assert validate(record, PARSED_SCHEMA, raise_errors=False)
    # ... and a required field missing is never plainly valid
    del record["bucket"]
    assert not _plainly_valid(record)
