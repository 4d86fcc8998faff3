"""Envelope lines decoded straight into a typed record (msgspec): delivery's per-line parse.

`decode_typed` accepts exactly the lines `envelope.decode` accepts, with the same values. The
usual line is validated against `TypedEnvelope` in C, for two thirds of the cost of orjson's
dict and the envelope's own check; a line msgspec refuses (a null where a string goes, a lone
surrogate, NaN in a field nobody reads ...) is judged by `envelope.decode` and converted.
`TypedEnvelope` mirrors envelope.avsc field for field (tests/unit/test_typed_envelope.py holds
the two equal), so a valid line never takes the slow path for want of a field.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

from transform import envelope

Int = Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)]
"""Avro's int."""
Long = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
"""Avro's long."""


class TypedEnvelope(msgspec.Struct, kw_only=True, gc=False):
    """One envelope, as envelope.avsc declares it (same names, types, nulls and defaults).
    `gc=False`: it holds only strings, ints and None, so the cycle collector can skip it."""

    schema_version: Int
    file_id: str
    bucket: str
    key: str
    version_id: str
    sequencer: str | None = None
    etag: str | None = None
    size: Long
    event_time_ms: Long
    forwarded_at_ms: Long
    body_encoding: Literal["utf8", "base64", "ref"]
    body: str | None = None
    body_sha256: str | None = None
    requeue_attempts: Int | None = None
    firehose_arrival_ms: Long | None = None
    content_kind: Literal["json", "ndjson", "csv", "text", "binary"] | None = None


_DECODER: Final = msgspec.json.Decoder(TypedEnvelope)


def decode_typed(line: bytes) -> TypedEnvelope:
    """Parse and validate one wire-form envelope, as `envelope.decode` (EnvelopeError naming
    the fault, NewerSchemaVersion for a later writer's)."""
    try:
        typed = _DECODER.decode(line)
    except msgspec.MsgspecError:  # not the usual shape: the envelope's own check decides
        record = envelope.decode(line)
        try:
            return msgspec.convert(record, TypedEnvelope)
        except msgspec.ValidationError as err:  # pragma: no cover  # the two schemas disagree
            raise envelope.EnvelopeError(f"envelope fails TypedEnvelope: {err}") from err
    envelope.check_rules(typed.body_encoding, typed.body, typed.body_sha256, typed.schema_version)
    return typed
