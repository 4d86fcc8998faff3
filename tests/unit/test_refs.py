"""Claim-check bodies (`delivery.refs`) read from moto's versioned landing bucket, in process.

`digest_ref` reads a ref once at its exact version: sha256 while streaming, size against the
envelope, S3's stored full-object SHA-256 where S3 keeps one, and the payload schema where a rule
applies. moto 5 keeps and returns a ChecksumSHA256 for an object uploaded with
`ChecksumAlgorithm="SHA256"` (full-object, without a ChecksumType), and a composite
`<base64>-<parts>` with `ChecksumType: COMPOSITE` for a multipart upload; both cases run against
moto here, and `_full_object_checksum` is also tested directly on response dicts.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
from typing import Any

import fastavro
import pytest
from botocore.exceptions import ClientError

from delivery.archive import Exclusion
from delivery.refs import RefDigest, _full_object_checksum, digest_ref, open_ref
from delivery.window_entries import WindowEntry
from infrastructure.tunables import load_tunables
from tests.conftest import LANDING
from transform import envelope, payload_schemas
from transform.payload_schemas import PayloadSchema, PayloadSchemas

CHUNK = 1 << 20
MAX_JSON = 16 << 20
NO_RULES = PayloadSchemas()


def shipped_rules() -> PayloadSchemas:
    """The payload rules in infrastructure/tunables.json (orders/ → payloads/order.avsc, ndjson)."""
    return payload_schemas.load(load_tunables().processor.payload_schemas)


EVENT_SCHEMA = PayloadSchema(
    prefix="events/",
    schema="test/event.avsc",
    format="json",
    parsed=fastavro.parse_schema(
        {
            "type": "record",
            "name": "Event",
            "namespace": "sluice.test",
            "fields": [
                {"name": "id", "type": "string"},
                {"name": "tags", "type": {"type": "array", "items": "string"}},
            ],
        }
    ),
)
JSON_RULES = PayloadSchemas((EVENT_SCHEMA,))


def entry_for(key: str, version_id: str, size: int) -> WindowEntry:
    return WindowEntry(
        line_number=1,
        file_id=envelope.file_id(LANDING, key, version_id),
        bucket=LANDING,
        key=key,
        version_id=version_id,
        size=size,
        event_time_ms=1_773_479_520_000,
        encoding="ref",
        body_sha256=None,
    )


def put(s3: Any, key: str, body: bytes, **extra: Any) -> WindowEntry:
    """Upload to the landing bucket; the ref entry the forwarder would have written for it."""
    response = s3.put_object(Bucket=LANDING, Key=key, Body=body, **extra)
    return entry_for(key, response["VersionId"], len(body))


def digest(
    s3: Any,
    entry: WindowEntry,
    schemas: PayloadSchemas = NO_RULES,
    *,
    chunk_bytes: int = CHUNK,
    max_json_bytes: int = MAX_JSON,
) -> RefDigest | Exclusion:
    return digest_ref(s3, entry, schemas, chunk_bytes=chunk_bytes, max_json_bytes=max_json_bytes)


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def order(n: int, **changes: Any) -> bytes:
    value: dict[str, Any] = {"order_id": f"o-{n}", "amount_pence": 100 * n, "currency": "GBP"}
    value.update(changes)
    return json.dumps(value, ensure_ascii=False).encode()  # non-ASCII as multi-byte UTF-8


def excluded(result: RefDigest | Exclusion, entry: WindowEntry, reason: str) -> Exclusion:
    """Assert `result` is an exclusion of `entry` for `reason`; return it."""
    assert isinstance(result, Exclusion), result
    assert (result.file_id, result.key, result.version_id, result.reason) == (
        entry.file_id,
        entry.key,
        entry.version_id,
        reason,
    )
    return result


class AlteredChecksum:
    """The S3 client, but GetObject reports another stored SHA-256 (S3 never does, for a sound
    object; this is what a checksum mismatch would look like)."""

    def __init__(self, s3: Any, checksum: str) -> None:
        self._s3 = s3
        self._checksum = checksum

    def get_object(self, **kwargs: Any) -> Any:
        response = self._s3.get_object(**kwargs)
        response["ChecksumSHA256"] = self._checksum
        return response


# -- sha256 and which check ran -------------------------------------------------------------


def test_a_plain_upload_is_hashed_while_streaming(s3: Any, buckets: dict[str, str]) -> None:
    # GIVEN a ref uploaded without a SHA-256 checksum (S3 keeps none to compare with)
    body = bytes(range(256)) * 1000
    entry = put(s3, "in/plain.bin", body)

    # WHEN it is digested in small chunks
    result = digest(s3, entry, chunk_bytes=4096)

    # THEN its sha256 is hashlib's, established by the streamed hash alone
    assert result == RefDigest(sha256=hashlib.sha256(body).hexdigest(), check="streamed-sha256")


def test_an_upload_with_a_sha256_checksum_is_checked_against_it(
    s3: Any, buckets: dict[str, str]
) -> None:
    # GIVEN a ref uploaded with ChecksumAlgorithm SHA256 (S3 keeps the full-object checksum)
    body = b"checksummed body\n" * 100
    entry = put(s3, "in/checked.txt", body, ChecksumAlgorithm="SHA256")
    stored = s3.get_object(
        Bucket=LANDING, Key=entry.key, VersionId=entry.version_id, ChecksumMode="ENABLED"
    )
    assert stored["ChecksumSHA256"] == sha256_b64(body)  # what moto keeps, as S3 does

    # WHEN it is digested
    result = digest(s3, entry)

    # THEN the streamed sha256 matched S3's stored one, and the manifest will say so
    assert result == RefDigest(sha256=hashlib.sha256(body).hexdigest(), check="s3-checksum-sha256")


def test_a_stored_checksum_that_differs_is_a_checksum_mismatch(
    s3: Any, buckets: dict[str, str]
) -> None:
    # GIVEN a ref whose stored SHA-256 is not the one of the bytes read
    entry = put(s3, "in/altered.txt", b"the bytes", ChecksumAlgorithm="SHA256")
    altered = AlteredChecksum(s3, sha256_b64(b"other bytes"))

    # WHEN it is digested
    result = digest(altered, entry)

    # THEN it is excluded as a checksum mismatch
    assert "differs" in excluded(result, entry, "checksum-mismatch").detail


def test_a_multipart_upload_with_a_composite_checksum_is_hashed_while_streaming(
    s3: Any, buckets: dict[str, str]
) -> None:
    # GIVEN a ref uploaded in two parts with SHA256: S3 keeps a checksum of the part checksums
    key = "in/multipart.bin"
    parts_data = [b"a" * (5 << 20), b"b" * 10]
    upload = s3.create_multipart_upload(Bucket=LANDING, Key=key, ChecksumAlgorithm="SHA256")
    parts = []
    for number, data in enumerate(parts_data, start=1):
        part = s3.upload_part(
            Bucket=LANDING,
            Key=key,
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=data,
            ChecksumAlgorithm="SHA256",
        )
        parts.append(
            {"PartNumber": number, "ETag": part["ETag"], "ChecksumSHA256": part["ChecksumSHA256"]}
        )
    done = s3.complete_multipart_upload(
        Bucket=LANDING, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
    )
    body = b"".join(parts_data)
    entry = entry_for(key, done["VersionId"], len(body))

    # WHEN it is digested
    result = digest(s3, entry)

    # THEN the composite checksum is not compared (it is not the object's SHA-256): streamed
    assert result == RefDigest(sha256=hashlib.sha256(body).hexdigest(), check="streamed-sha256")


SUM = sha256_b64(b"stored")


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ({"ChecksumSHA256": SUM}, SUM),
        ({"ChecksumSHA256": SUM, "ChecksumType": "FULL_OBJECT"}, SUM),
        ({"ChecksumSHA256": SUM + "-3"}, None),
        ({"ChecksumSHA256": SUM + "-3", "ChecksumType": "COMPOSITE"}, None),
        ({"ChecksumSHA256": SUM, "ChecksumType": "COMPOSITE"}, None),
        ({"ChecksumSHA256": ""}, None),
        ({"ChecksumCRC32": "GSBizw==", "ChecksumType": "FULL_OBJECT"}, None),
        ({}, None),
    ],
)
def test_only_a_full_object_sha256_counts_as_stored(
    response: dict[str, str], expected: str | None
) -> None:
    # GIVEN a GetObject response with (or without) a stored checksum
    # WHEN S3's full-object SHA-256 is looked for
    # THEN only a full-object SHA-256 is returned: not a composite, not another algorithm
    assert _full_object_checksum(response) == expected


# -- what cannot be delivered ---------------------------------------------------------------


def test_a_version_deleted_for_good_is_version_gone(s3: Any, buckets: dict[str, str]) -> None:
    # GIVEN a ref whose version was deleted for good (a newer version of the key remains)
    entry = put(s3, "in/gone.txt", b"first")
    put(s3, "in/gone.txt", b"second")
    s3.delete_object(Bucket=LANDING, Key=entry.key, VersionId=entry.version_id)

    # WHEN it is digested
    result = digest(s3, entry)

    # THEN it is excluded as version-gone, naming S3's answer
    assert "NoSuchVersion" in excluded(result, entry, "version-gone").detail


def test_a_version_that_never_existed_is_version_gone(s3: Any, buckets: dict[str, str]) -> None:
    # GIVEN a ref naming a version of a key that no longer exists at all
    entry = put(s3, "in/never.txt", b"only")
    s3.delete_object(Bucket=LANDING, Key=entry.key, VersionId=entry.version_id)

    # WHEN it is digested
    result = digest(s3, entry)

    # THEN version-gone
    excluded(result, entry, "version-gone")


def test_an_upload_followed_by_a_delete_is_still_read(s3: Any, buckets: dict[str, str]) -> None:
    # GIVEN a ref whose key was deleted after upload (a delete marker; the version remains)
    body = b"delivered even though deleted"
    entry = put(s3, "in/deleted.txt", body)
    s3.delete_object(Bucket=LANDING, Key=entry.key)

    # WHEN it is digested
    result = digest(s3, entry)

    # THEN the version is read
    assert result == RefDigest(sha256=hashlib.sha256(body).hexdigest(), check="streamed-sha256")


def test_the_exact_version_is_digested_after_an_overwrite(s3: Any, buckets: dict[str, str]) -> None:
    # GIVEN a ref whose key a producer overwrote seconds later
    entry = put(s3, "in/overwritten.txt", b"version one")
    put(s3, "in/overwritten.txt", b"version two, longer")

    # WHEN the first version is digested
    result = digest(s3, entry)

    # THEN its own bytes are hashed
    assert result == RefDigest(
        sha256=hashlib.sha256(b"version one").hexdigest(), check="streamed-sha256"
    )


@pytest.mark.parametrize("delta", [1, -1, 1000])
def test_a_size_other_than_the_envelopes_is_a_size_mismatch(
    s3: Any, buckets: dict[str, str], delta: int
) -> None:
    # GIVEN a ref whose envelope says another size than the stored object's
    body = b"0123456789" * 10
    uploaded = put(s3, "in/sized.txt", body)
    entry = entry_for(uploaded.key, uploaded.version_id, len(body) + delta)

    # WHEN it is digested
    result = digest(s3, entry, chunk_bytes=7)

    # THEN size-mismatch, with both sizes
    detail = excluded(result, entry, "size-mismatch").detail
    assert detail == f"read {len(body)} bytes, the envelope says {len(body) + delta}"


def test_another_s3_error_raises(s3: Any, buckets: dict[str, str]) -> None:
    # GIVEN a ref in a bucket that does not exist (not a version gone: something is wrong)
    entry = entry_for("in/x.txt", "v1", 1)._replace(bucket="no-such-bucket-here")

    # WHEN it is digested
    # THEN the error propagates, so the whole attempt is retried
    with pytest.raises(ClientError) as raised:
        digest(s3, entry)
    assert raised.value.response["Error"]["Code"] == "NoSuchBucket"


# -- payload schemas (ndjson, the shipped orders/ rule) -------------------------------------


@pytest.mark.parametrize("chunk_bytes", [1, 7, CHUNK])
def test_a_valid_ndjson_ref_passes_its_payload_rule(
    s3: Any, buckets: dict[str, str], chunk_bytes: int
) -> None:
    # GIVEN an orders/ ref of valid orders: blank lines, CRLF, non-ASCII, no final newline
    body = b"\n".join(
        [
            order(1),
            b"",
            order(2, note="caf\u00e9 \u2603"),
            order(3) + b"\r",
            order(4, note=None),
        ]
    )
    entry = put(s3, "orders/2026/valid.ndjson", body)

    # WHEN it is digested with its rule, `chunk_bytes` at a time (1 and 7 split every line)
    result = digest(s3, entry, shipped_rules(), chunk_bytes=chunk_bytes)

    # THEN it passes
    assert result == RefDigest(sha256=hashlib.sha256(body).hexdigest(), check="streamed-sha256")


@pytest.mark.parametrize("chunk_bytes", [1, 7, CHUNK])
@pytest.mark.parametrize(
    ("bad_line", "fault"),
    [
        (order(3, currency="JPY"), "currency"),
        (order(3, amount_pence="100"), "amount_pence"),
        (b'{"order_id": "o-3", "currency": "GBP"}', "amount_pence"),
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
    ],
)
def test_an_invalid_ndjson_line_is_a_payload_schema_exclusion_naming_the_line(
    s3: Any, buckets: dict[str, str], chunk_bytes: int, bad_line: bytes, fault: str
) -> None:
    # GIVEN an orders/ ref whose third line fails the order schema
    body = b"\n".join([order(1), order(2), bad_line, order(4)]) + b"\n"
    entry = put(s3, "orders/bad.ndjson", body)

    # WHEN it is digested, lines split across chunks or not
    result = digest(s3, entry, shipped_rules(), chunk_bytes=chunk_bytes)

    # THEN it is excluded for its payload schema, naming line 3 and the fault
    detail = excluded(result, entry, "payload-schema").detail
    assert "payloads/order.avsc" in detail
    assert "line 3" in detail
    assert fault in detail


@pytest.mark.parametrize("chunk_bytes", [1, 7, CHUNK])
def test_an_invalid_last_line_without_a_newline_is_found(
    s3: Any, buckets: dict[str, str], chunk_bytes: int
) -> None:
    # GIVEN an orders/ ref whose last line, with no newline after it, is invalid
    body = b"\n".join([order(1), b"", order(3, currency="XXX")])
    entry = put(s3, "orders/last.ndjson", body)

    # WHEN it is digested
    result = digest(s3, entry, shipped_rules(), chunk_bytes=chunk_bytes)

    # THEN line 3 is named
    assert "line 3" in excluded(result, entry, "payload-schema").detail


def test_streamed_validation_names_the_same_line_as_the_whole_body_check(
    s3: Any, buckets: dict[str, str]
) -> None:
    # GIVEN orders/ refs with one invalid line at a random place (seeded: same cases every run)
    rng = random.Random(7)
    rule = shipped_rules().for_key("orders/")
    assert rule is not None
    for case in range(20):
        lines = [order(n) if rng.random() < 0.8 else b"" for n in range(rng.randint(1, 30))]
        lines[rng.randrange(len(lines))] = order(0, currency="CHF")
        body = b"\n".join(lines) + (b"\n" if rng.random() < 0.5 else b"")
        entry = put(s3, f"orders/random-{case}.ndjson", body)

        # WHEN it is digested in random small chunks
        result = digest(s3, entry, shipped_rules(), chunk_bytes=rng.randint(1, 40))

        # THEN the exclusion names the line the processor's whole-body check names
        with pytest.raises(payload_schemas.PayloadSchemaError) as whole:
            rule.check(body)
        assert excluded(result, entry, "payload-schema").detail == str(whole.value)


def test_a_ref_outside_every_rule_prefix_is_not_schema_checked(
    s3: Any, buckets: dict[str, str]
) -> None:
    # GIVEN a ref that is not an order, under a key no rule covers
    body = b"not json at all\n{\n"
    entry = put(s3, "invoices/orders/x.ndjson", body)

    # WHEN it is digested with the shipped rules
    result = digest(s3, entry, shipped_rules(), chunk_bytes=7)

    # THEN it passes
    assert result == RefDigest(sha256=hashlib.sha256(body).hexdigest(), check="streamed-sha256")


# -- payload schemas (a json rule) ----------------------------------------------------------


@pytest.mark.parametrize("chunk_bytes", [7, CHUNK])
def test_a_valid_json_ref_passes_its_payload_rule(
    s3: Any, buckets: dict[str, str], chunk_bytes: int
) -> None:
    # GIVEN an events/ ref holding one valid event, spread over lines
    body = json.dumps({"id": "e-1", "tags": ["a", "b"]}, indent=2).encode()
    entry = put(s3, "events/e-1.json", body)

    # WHEN it is digested with a json rule for events/
    result = digest(s3, entry, JSON_RULES, chunk_bytes=chunk_bytes, max_json_bytes=len(body))

    # THEN it passes (exactly at max_json_bytes is still validated)
    assert result == RefDigest(sha256=hashlib.sha256(body).hexdigest(), check="streamed-sha256")


@pytest.mark.parametrize(
    ("body", "fault"),
    [
        (b'{"id": "e-1", "tags": "a"}', "tags"),
        (b'{"id": 1, "tags": []}', "id"),
        (b'{"id": "e-1", "tags": []}\n{"id": "e-2", "tags": []}', "not JSON"),
    ],
)
def test_an_invalid_json_ref_is_a_payload_schema_exclusion(
    s3: Any, buckets: dict[str, str], body: bytes, fault: str
) -> None:
    # GIVEN an events/ ref that fails the event schema (or holds two values)
    entry = put(s3, "events/bad.json", body)

    # WHEN it is digested with a json rule for events/
    result = digest(s3, entry, JSON_RULES, chunk_bytes=7)

    # THEN it is excluded for its payload schema
    detail = excluded(result, entry, "payload-schema").detail
    assert "test/event.avsc" in detail
    assert fault in detail


def test_a_json_ref_over_max_json_bytes_is_a_payload_schema_exclusion(
    s3: Any, buckets: dict[str, str]
) -> None:
    # GIVEN a valid events/ ref one byte over max_json_bytes (a whole-body check would have to
    # hold it in memory)
    body = json.dumps({"id": "e-1", "tags": ["x"] * 50}).encode()
    entry = put(s3, "events/big.json", body)

    # WHEN it is digested with a json rule
    result = digest(s3, entry, JSON_RULES, max_json_bytes=len(body) - 1)

    # THEN it is excluded for its payload schema, saying why
    detail = excluded(result, entry, "payload-schema").detail
    assert str(len(body)) in detail
    assert str(len(body) - 1) in detail
    assert "max_json_validation_bytes" in detail


# -- open_ref ------------------------------------------------------------------------------


def test_open_ref_streams_the_exact_version_after_an_overwrite(
    s3: Any, buckets: dict[str, str]
) -> None:
    # GIVEN a ref whose key was overwritten, and then deleted
    first = put(s3, "in/streamed.bin", b"\x00first version\xff" * 1000)
    second = put(s3, "in/streamed.bin", b"second")
    s3.delete_object(Bucket=LANDING, Key=first.key)

    # WHEN each version is opened
    with open_ref(s3, first) as stream:
        first_bytes = b"".join(iter(lambda: stream.read(999), b""))
    with open_ref(s3, second) as stream:
        second_bytes = stream.read()

    # THEN each yields its own version's bytes
    assert first_bytes == b"\x00first version\xff" * 1000
    assert second_bytes == b"second"


@pytest.mark.parametrize("chunk_bytes", [7, CHUNK])
def test_an_ndjson_line_longer_than_the_limit_is_excluded_not_held(
    s3: Any, buckets: dict[str, str], chunk_bytes: int
) -> None:
    # GIVEN an orders/ ref whose second line is longer than max_json_bytes (no newline for long)
    body = order(1) + b"\n" + b"x" * 300 + b"\n" + order(3) + b"\n"
    entry = put(s3, "orders/long-line.ndjson", body)

    # WHEN it is digested with a 200-byte line limit
    result = digest(s3, entry, shipped_rules(), chunk_bytes=chunk_bytes, max_json_bytes=200)

    # THEN it is excluded for its payload schema, naming line 2 and the limit
    detail = excluded(result, entry, "payload-schema").detail
    assert "line 2 is longer than max_json_validation_bytes (200)" in detail
