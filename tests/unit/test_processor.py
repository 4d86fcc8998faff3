"""The Firehose processor through its Lambda entry point: moto S3, real fastavro, real base64.

Every test checks that nothing was lost: each input recordId answered exactly once, never
`Dropped`, and each Ok record decodes to its original envelope plus the two enrichment fields.
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infrastructure import environment
from infrastructure.local.lambdas.context import LocalLambdaContext
from infrastructure.tunables import TUNABLES_FILE, TunablesError, load_tunables
from tests.conftest import LANDING, STAGING, load_event
from transform import envelope, processing, processor, quarantine
from transform.envelope import Envelope

ARRIVAL_MS = 1_717_171_800_123
STREAM_ARN = "arn:aws:firehose:eu-west-2:123456789012:deliverystream/sluice-test-0"
VALID_ORDER = b'{"order_id": "o-1", "amount_pence": 1250, "currency": "GBP"}'


@pytest.fixture(autouse=True)
def processor_env(function_env: Any, buckets: dict[str, str]) -> Iterator[None]:
    """The processor's environment and buckets; each test is a cold start."""
    function_env("processor")
    processor.dependencies.cache_clear()
    yield
    processor.dependencies.cache_clear()


# --- helpers ---------------------------------------------------------------------------------


def make_envelope(
    key: str = "acme/notes.txt", body: bytes | None = b"hello", **extra: Any
) -> dict[str, Any]:
    """An envelope as a dict: inline `body`, or a ref when body is None."""
    version = "v-" + key
    fields: dict[str, Any] = {
        "file_id": envelope.file_id(LANDING, key, version),
        "bucket": LANDING,
        "key": key,
        "version_id": version,
        "size": len(body) if body is not None else 10_000_000,
        "event_time_ms": 1_717_171_700_000,
        "forwarded_at_ms": 1_717_171_700_500,
    }
    made = Envelope.ref(**fields) if body is None else Envelope.inline(body, **fields)
    return {**made.to_dict(), **extra}


def wire(record: Any) -> bytes:
    return envelope.encode(record) if isinstance(record, dict) else json.dumps(record).encode()


def firehose_event(datas: list[bytes]) -> dict[str, Any]:
    return {
        "invocationId": "00540a87-5050-496a-84e4-e7d92bbaf5e2",
        "deliveryStreamArn": STREAM_ARN,
        "region": "eu-west-2",
        "records": [
            {
                "recordId": f"4954698668313554428650745793632162567570019247115678{n:04d}",
                "approximateArrivalTimestamp": ARRIVAL_MS + n,
                "data": base64.b64encode(data).decode("ascii"),
            }
            for n, data in enumerate(datas)
        ],
    }


def invoke(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    response: dict[str, Any] = processor.lambda_handler(
        event, context or LocalLambdaContext("processor", timeout_seconds=60)
    )
    return response


def answers(event: dict[str, Any], response: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each input recordId answered exactly once, Ok or ProcessingFailed, never Dropped."""
    asked = [record["recordId"] for record in event["records"]]
    answered = [record["recordId"] for record in response["records"]]
    assert sorted(answered) == sorted(asked)
    assert len(set(answered)) == len(answered)
    assert {record["result"] for record in response["records"]} <= {"Ok", "ProcessingFailed"}
    return {record["recordId"]: record for record in response["records"]}


def results(event: dict[str, Any], response: dict[str, Any]) -> list[str]:
    by_id = answers(event, response)
    return [by_id[record["recordId"]]["result"] for record in event["records"]]


def assert_enriched(event_record: dict[str, Any], answer: dict[str, Any], kind: str) -> None:
    """The Ok output is the input's bytes plus the enrichment fields and a newline."""
    assert answer["result"] == "Ok"
    before = base64.b64decode(event_record["data"])
    after = base64.b64decode(answer["data"])
    assert after.endswith(b"}\n")
    assert after.count(b"\n") == 1
    assert len(after) <= len(before) + processing.MAX_GROWTH_BYTES
    assert after.startswith(before.rstrip()[:-1])  # the body was not re-encoded
    expected = {
        **json.loads(before),
        "firehose_arrival_ms": event_record["approximateArrivalTimestamp"],
        "content_kind": kind,
    }
    assert json.loads(after, object_pairs_hook=_no_duplicate_keys) == expected
    envelope.check(json.loads(after))  # still a valid envelope


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [name for name, _ in pairs]
    assert len(keys) == len(set(keys)), f"duplicate keys: {keys}"
    return dict(pairs)


def reason_file(s3: Any, file_id: str) -> dict[str, Any]:
    body = s3.get_object(Bucket=STAGING, Key=quarantine.reason_key(file_id))["Body"].read()
    parsed: dict[str, Any] = json.loads(body)
    return parsed


def reason_keys(s3: Any) -> list[str]:
    listing = s3.list_objects_v2(Bucket=STAGING, Prefix=quarantine.REASONS_PREFIX)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def assert_failed_with_reason(
    s3: Any,
    event: dict[str, Any],
    response: dict[str, Any],
    *,
    index: int,
    file_id: str,
    reason: str,
) -> dict[str, Any]:
    """The record failed, kept its bytes, and its reason file holds it for release."""
    event_record = event["records"][index]
    answer = answers(event, response)[event_record["recordId"]]
    assert answer["result"] == "ProcessingFailed"
    assert answer["data"] == event_record["data"]
    entry = reason_file(s3, file_id)
    assert entry["reason"] == reason
    assert entry["stage"] == "processor"
    assert entry["record"] == event_record["data"]
    assert entry["file_id"] == file_id
    return entry


# --- valid records ---------------------------------------------------------------------------


def test_real_shaped_event_is_answered_ok(s3: Any) -> None:
    # GIVEN the fixture event: a utf8 .json body, a base64 .png body and a ref .csv
    event = load_event("firehose_processor_event.json")
    # WHEN the processor runs
    response = invoke(event)
    # THEN every record is Ok and enriched, and no reason file is written
    by_id = answers(event, response)
    for event_record, kind in zip(event["records"], ["json", "binary", "csv"], strict=True):
        assert_enriched(event_record, by_id[event_record["recordId"]], kind)
    assert reason_keys(s3) == []


@pytest.mark.parametrize(
    ("key", "body", "kind"),
    [
        ("acme/a.json", b'{"a": 1}', "json"),
        ("acme/a.ndjson", b'{"a": 1}\n{"a": 2}\n', "ndjson"),
        ("acme/a.JSONL", b'{"a": 1}\n', "ndjson"),
        ("acme/a.csv", b"a,b\n1,2\n", "csv"),
        ("acme/readme", "naïve café 東京 🎉".encode(), "text"),
        ("acme/a.json", b"\xff\xfe not utf-8", "binary"),
        ("acme/big.csv", None, "csv"),
        ("acme/big.bin", None, "binary"),
        ("acme/v1.0/blob", None, "binary"),
    ],
)
def test_valid_envelope_is_enriched(key: str, body: bytes | None, kind: str) -> None:
    # GIVEN one valid envelope (utf8, base64 or ref)
    event = firehose_event([wire(make_envelope(key, body))])
    # WHEN the processor runs
    response = invoke(event)
    # THEN it is Ok: the input bytes plus arrival time and content kind, newline-terminated
    assert results(event, response) == ["Ok"]
    assert_enriched(event["records"][0], response["records"][0], kind)


def test_trailing_whitespace_is_tolerated() -> None:
    # GIVEN an envelope followed by whitespace (valid JSON; the forwarder sends none)
    event = firehose_event([wire(make_envelope()) + b" \r\n\t"])
    # WHEN the processor runs
    response = invoke(event)
    # THEN the enrichment still goes inside the object, with exactly one newline after it
    assert_enriched(event["records"][0], response["records"][0], "text")


def test_present_enrichment_fields_are_overwritten_not_duplicated() -> None:
    # GIVEN an envelope that already carries both enrichment fields (requeue should strip them)
    record = make_envelope(firehose_arrival_ms=1, content_kind="csv")
    event = firehose_event([wire(record)])
    # WHEN the processor runs
    response = invoke(event)
    # THEN the output has each field once, with the processor's values
    assert results(event, response) == ["Ok"]
    out = base64.b64decode(response["records"][0]["data"])
    assert out.endswith(b"}\n")
    parsed = json.loads(out, object_pairs_hook=_no_duplicate_keys)
    assert parsed == {**record, "firehose_arrival_ms": ARRIVAL_MS, "content_kind": "text"}


def test_non_ascii_bodies_fill_3_mb_within_the_response_limit(s3: Any) -> None:
    # GIVEN ~3 MB of envelopes whose utf8 bodies are CJK and emoji (3-4 bytes per character)
    text = "東京の天気は晴れ🌞, données façade ✓ — 漢字かな交じり文🚀\n"
    datas = []
    total = 0
    n = 0
    while total < 3_000_000:
        data = wire(make_envelope(f"acme/日本/{n}.txt", (text * 40).encode()))
        datas.append(data)
        total += len(data)
        n += 1
    event = firehose_event(datas)
    # WHEN the processor runs
    response = invoke(event)
    # THEN every record is Ok and the response, serialised as Lambda would, is under 6 MB
    assert set(results(event, response)) == {"Ok"}
    assert len(json.dumps(response).encode()) < 6_000_000
    by_id = answers(event, response)
    for event_record in event["records"][:5]:
        assert_enriched(event_record, by_id[event_record["recordId"]], "text")
    assert reason_keys(s3) == []


# --- invalid envelopes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"not json at all",
        b'{"file_id": "abc", ',
        b"",
        b"\xff\xfe{}",
        '{"a": "x"}'.encode("utf-16"),
        b"[" * 100_000,
    ],
    ids=["text", "truncated", "empty", "not-utf8", "utf16", "deep"],
)
def test_record_that_is_not_json_fails_under_a_raw_id(s3: Any, data: bytes) -> None:
    # GIVEN a record that is not UTF-8 JSON at all
    event = firehose_event([data])
    # WHEN the processor runs
    response = invoke(event)
    # THEN it fails alone, its reason filed under the sha256 of its bytes
    entry = assert_failed_with_reason(
        s3,
        event,
        response,
        index=0,
        file_id=quarantine.raw_record_id(data),
        reason="invalid-envelope",
    )
    assert entry["detail"]
    assert "key" not in entry


@pytest.mark.parametrize("value", [[1, 2], 42, "a string", None, True])
def test_json_that_is_not_an_object_fails(s3: Any, value: Any) -> None:
    # GIVEN a record that is JSON but not an object
    data = json.dumps(value).encode()
    event = firehose_event([data])
    # WHEN the processor runs
    response = invoke(event)
    # THEN it fails, and the detail says an object was expected
    entry = assert_failed_with_reason(
        s3,
        event,
        response,
        index=0,
        file_id=quarantine.raw_record_id(data),
        reason="invalid-envelope",
    )
    assert "JSON object" in entry["detail"]


def test_envelope_missing_fields_fails_naming_them(s3: Any) -> None:
    # GIVEN an envelope without size and body_encoding
    record = make_envelope("acme/missing.txt")
    del record["size"], record["body_encoding"]
    event = firehose_event([wire(record)])
    # WHEN the processor runs
    response = invoke(event)
    # THEN it fails under its own file_id, the detail naming both fields
    entry = assert_failed_with_reason(
        s3, event, response, index=0, file_id=record["file_id"], reason="invalid-envelope"
    )
    assert "size" in entry["detail"]
    assert "body_encoding" in entry["detail"]
    assert (entry["bucket"], entry["key"], entry["version_id"]) == (
        LANDING,
        "acme/missing.txt",
        record["version_id"],
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("size", "12"),
        ("event_time_ms", 1.5),
        ("body_encoding", "gzip"),
        ("sequencer", 7),
        ("schema_version", 99),
    ],
)
def test_envelope_with_wrong_type_fails_naming_the_field(s3: Any, field: str, value: Any) -> None:
    # GIVEN an envelope with one field of the wrong type (or an unknown symbol / newer version)
    record = make_envelope("acme/typed.txt", **{field: value})
    event = firehose_event([wire(record)])
    # WHEN the processor runs
    response = invoke(event)
    # THEN it fails, the detail naming the field
    entry = assert_failed_with_reason(
        s3, event, response, index=0, file_id=record["file_id"], reason="invalid-envelope"
    )
    assert field in entry["detail"]


@pytest.mark.parametrize(
    "change",
    [
        {"body": "hellO"},
        {"body_sha256": "0" * 64},
        {"body_encoding": "base64", "body": "not base64!"},
        {"body": None},
        {"body_encoding": "ref"},
    ],
    ids=["body-changed", "sha-changed", "bad-base64", "no-body", "ref-with-body"],
)
def test_inline_body_inconsistent_with_its_envelope_fails(s3: Any, change: dict[str, Any]) -> None:
    # GIVEN an inline envelope whose body does not match its sha256 (or its encoding)
    record = {**make_envelope("acme/sha.txt", b"hello"), **change}
    event = firehose_event([wire(record)])
    # WHEN the processor runs
    response = invoke(event)
    # THEN it fails as an invalid envelope
    assert_failed_with_reason(
        s3, event, response, index=0, file_id=record["file_id"], reason="invalid-envelope"
    )


def test_malformed_file_id_does_not_name_the_reason_file(s3: Any) -> None:
    # GIVEN a broken envelope whose file_id is a path-like string, not a sha256
    record = {**make_envelope(), "file_id": "../../buffers/evil", "size": "x"}
    data = wire(record)
    event = firehose_event([data])
    # WHEN the processor runs
    response = invoke(event)
    # THEN its reason is filed under the raw record id instead
    assert_failed_with_reason(
        s3,
        event,
        response,
        index=0,
        file_id=quarantine.raw_record_id(data),
        reason="invalid-envelope",
    )
    assert reason_keys(s3) == [quarantine.reason_key(quarantine.raw_record_id(data))]


def test_replayed_file_id_names_the_reason_file(s3: Any) -> None:
    # GIVEN a broken envelope of a forced replay (file_id with #r<replay_id>)
    record = make_envelope()
    record["file_id"] += "#r20240601-1"
    record["size"] = -0.5
    event = firehose_event([wire(record)])
    # WHEN the processor runs
    response = invoke(event)
    # THEN the reason file is named by that file_id
    assert_failed_with_reason(
        s3, event, response, index=0, file_id=record["file_id"], reason="invalid-envelope"
    )


# --- payload schemas -------------------------------------------------------------------------


@pytest.fixture
def json_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tunables with an extra, longer rule: orders/single/ bodies are one JSON order each."""
    document = json.loads(TUNABLES_FILE.read_text())
    document["processor"]["payload_schemas"].append(
        {
            "prefix": "orders/single/",
            "schema": "payloads/order.avsc",
            "format": "json",
            "table": "single_orders",
        }
    )
    shutil.copy(TUNABLES_FILE.with_name("tunables.schema.json"), tmp_path)
    path = tmp_path / "tunables.json"
    path.write_text(json.dumps(document))
    monkeypatch.setenv(environment.TUNABLES_PATH, str(path))
    load_tunables.cache_clear()  # function_env already loaded the packaged file
    processor.dependencies.cache_clear()


def test_ndjson_payload_failing_its_schema_names_the_line(s3: Any) -> None:
    # GIVEN an NDJSON body under orders/ whose third line has a string amount
    body = VALID_ORDER + b"\n\n" + b'{"order_id": "o-2", "amount_pence": "12", "currency": "GBP"}\n'
    record = make_envelope("orders/2024/day.ndjson", body)
    event = firehose_event([wire(record)])
    # WHEN the processor runs
    response = invoke(event)
    # THEN it fails with reason payload-schema, the detail naming line 3 and the field
    entry = assert_failed_with_reason(
        s3, event, response, index=0, file_id=record["file_id"], reason="payload-schema"
    )
    assert "line 3" in entry["detail"]
    assert "amount_pence" in entry["detail"]
    assert entry["key"] == "orders/2024/day.ndjson"


def test_ndjson_payload_with_a_line_that_is_not_json(s3: Any) -> None:
    # GIVEN an NDJSON body under orders/ whose second line is not JSON
    record = make_envelope("orders/x.ndjson", VALID_ORDER + b"\n{oops\n")
    event = firehose_event([wire(record)])
    # WHEN the processor runs
    response = invoke(event)
    # THEN it fails naming line 2
    entry = assert_failed_with_reason(
        s3, event, response, index=0, file_id=record["file_id"], reason="payload-schema"
    )
    assert "line 2 is not JSON" in entry["detail"]


@pytest.mark.usefixtures("json_rule")
def test_json_payload_failing_its_schema_names_the_field(s3: Any) -> None:
    # GIVEN a JSON body under orders/single/ (longest prefix: json format) with a bad currency
    record = make_envelope(
        "orders/single/o-1.json", b'{"order_id": "o-1", "amount_pence": 5, "currency": "JPY"}'
    )
    event = firehose_event([wire(record)])
    # WHEN the processor runs
    response = invoke(event)
    # THEN it fails with reason payload-schema naming the field
    entry = assert_failed_with_reason(
        s3, event, response, index=0, file_id=record["file_id"], reason="payload-schema"
    )
    assert "currency" in entry["detail"]
    assert "body fails" in entry["detail"]


@pytest.mark.usefixtures("json_rule")
def test_json_rule_rejects_ndjson_with_two_values(s3: Any) -> None:
    # GIVEN two orders under orders/single/, where the body must be one JSON value
    record = make_envelope("orders/single/two.json", VALID_ORDER + b"\n" + VALID_ORDER)
    event = firehose_event([wire(record)])
    # WHEN the processor runs
    response = invoke(event)
    # THEN it fails its payload schema
    assert_failed_with_reason(
        s3, event, response, index=0, file_id=record["file_id"], reason="payload-schema"
    )


@pytest.mark.usefixtures("json_rule")
@pytest.mark.parametrize(
    ("key", "body", "kind"),
    [
        ("orders/a.ndjson", VALID_ORDER + b"\r\n" + VALID_ORDER + b"\n\n", "ndjson"),
        ("orders/empty.ndjson", b"", "ndjson"),
        ("orders/single/o.json", VALID_ORDER, "json"),
        (
            "orders/single/o.json",
            b'{"order_id":"x","amount_pence":1,"currency":"EUR","note":"n"}',
            "json",
        ),
    ],
)
def test_payload_passing_its_schema_is_ok(s3: Any, key: str, body: bytes, kind: str) -> None:
    # GIVEN a body that satisfies the schema of its longest matching prefix
    event = firehose_event([wire(make_envelope(key, body))])
    # WHEN the processor runs
    response = invoke(event)
    # THEN it is Ok and enriched, and nothing is quarantined
    assert_enriched(event["records"][0], response["records"][0], kind)
    assert reason_keys(s3) == []


@pytest.mark.parametrize(
    ("key", "body"),
    [
        ("other/orders/a.ndjson", b"this is not an order\n"),
        ("Orders/a.ndjson", b"{}\n"),
        ("orders/huge.ndjson", None),
    ],
    ids=["outside-prefix", "prefix-is-case-sensitive", "ref-checked-by-delivery"],
)
def test_bodies_outside_any_rule_are_not_checked(s3: Any, key: str, body: bytes | None) -> None:
    # GIVEN a body that would fail the order schema, under no rule's prefix (or a ref)
    event = firehose_event([wire(make_envelope(key, body))])
    # WHEN the processor runs
    response = invoke(event)
    # THEN it is Ok
    assert results(event, response) == ["Ok"]
    assert reason_keys(s3) == []


def test_binary_body_under_a_rule_fails_its_schema(s3: Any) -> None:
    # GIVEN a non-UTF-8 (base64) body under orders/
    record = make_envelope("orders/a.ndjson", b"\xff\xfe\x00binary")
    assert record["body_encoding"] == "base64"
    event = firehose_event([wire(record)])
    # WHEN the processor runs
    response = invoke(event)
    # THEN it fails its payload schema: it cannot be NDJSON
    entry = assert_failed_with_reason(
        s3, event, response, index=0, file_id=record["file_id"], reason="payload-schema"
    )
    assert "UTF-8" in entry["detail"]


# --- batches ---------------------------------------------------------------------------------


def test_mixed_batch_fails_only_the_bad_records(
    s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a batch of good and bad records, interleaved
    good_text = make_envelope("acme/1.txt")
    bad_type = make_envelope("acme/2.txt", size="big")
    good_order = make_envelope("orders/3.ndjson", VALID_ORDER + b"\n")
    bad_order = make_envelope("orders/4.ndjson", b'{"order_id": 4}\n')
    good_ref = make_envelope("acme/5.csv", None)
    datas = [wire(good_text), wire(bad_type), wire(good_order), b"garbage", wire(bad_order)]
    datas.append(wire(good_ref))
    event = firehose_event(datas)
    # WHEN the processor runs
    response = invoke(event)
    # THEN only the bad ones failed, each with its reason file, and the metrics count both
    failed = "ProcessingFailed"
    assert results(event, response) == ["Ok", failed, "Ok", failed, failed, "Ok"]
    by_id = answers(event, response)
    for index, kind in [(0, "text"), (2, "ndjson"), (5, "csv")]:
        event_record = event["records"][index]
        assert_enriched(event_record, by_id[event_record["recordId"]], kind)
    assert_failed_with_reason(
        s3, event, response, index=1, file_id=bad_type["file_id"], reason="invalid-envelope"
    )
    assert_failed_with_reason(
        s3,
        event,
        response,
        index=3,
        file_id=quarantine.raw_record_id(b"garbage"),
        reason="invalid-envelope",
    )
    assert_failed_with_reason(
        s3, event, response, index=4, file_id=bad_order["file_id"], reason="payload-schema"
    )
    assert len(reason_keys(s3)) == 3
    emitted = _metrics(capsys.readouterr().out)
    assert emitted["RecordsOk"] == 3
    assert emitted["RecordsFailed"] == 3
    assert emitted["RecordsFailedInvalidEnvelope"] == 2
    assert emitted["RecordsFailedPayloadSchema"] == 1
    assert emitted["ReasonWritesFailed"] == 0


def _metrics(stdout: str) -> dict[str, Any]:
    """The values of Powertools' EMF blob among the stdout lines."""
    for line in stdout.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            blob = json.loads(line)
            names = blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            values = {metric["Name"]: blob[metric["Name"]] for metric in names}
            # Powertools writes a metric added once as a one-element list
            return {name: v[0] if isinstance(v, list) else v for name, v in values.items()}
    raise AssertionError("no EMF metrics printed")


def test_reason_write_failure_still_answers_processing_failed(
    s3: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a staging bucket that does not exist, and a batch with one bad record
    monkeypatch.setenv(environment.STAGING_BUCKET, "sluice-staging-gone")
    bad = make_envelope(size="x")
    event = firehose_event([wire(make_envelope()), wire(bad)])
    # WHEN the processor runs
    response = invoke(event)
    # THEN it does not raise: the bad record is ProcessingFailed, the good one Ok, and an error
    # naming the file_id is logged and counted
    assert results(event, response) == ["Ok", "ProcessingFailed"]
    assert response["records"][1]["data"] == event["records"][1]["data"]
    errors = [r for r in caplog.records if r.getMessage() == "reason file not written"]
    assert [(r.levelname, r.__dict__["file_id"]) for r in errors] == [("ERROR", bad["file_id"])]
    assert _metrics(capsys.readouterr().out)["ReasonWritesFailed"] == 1
    assert reason_keys(s3) == []


def test_out_of_time_skips_reason_files_but_answers(s3: Any) -> None:
    # GIVEN an invocation with no time left, and a bad record
    event = firehose_event([b"nope"])
    # WHEN the processor runs
    response = invoke(event, LocalLambdaContext("processor", timeout_seconds=0))
    # THEN the record is still answered ProcessingFailed, without a reason file
    assert results(event, response) == ["ProcessingFailed"]
    assert reason_keys(s3) == []


@pytest.mark.filterwarnings("ignore:No application metrics")  # it fails before counting
def test_missing_staging_bucket_variable_fails_the_invocation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN the processor without its resource variable (a deployment fault, not a record's)
    monkeypatch.delenv(environment.STAGING_BUCKET)
    # WHEN it is invoked THEN the invocation fails, so Firehose retries and keeps the batch
    with pytest.raises(TunablesError, match=environment.STAGING_BUCKET):
        invoke(firehose_event([wire(make_envelope())]))


def test_many_failures_are_all_filed(s3: Any) -> None:
    # GIVEN a batch of 60 bad records (more than the parallel reason writers)
    records = [make_envelope(f"acme/{n}.txt", size=str(n)) for n in range(60)]
    event = firehose_event([wire(record) for record in records])
    # WHEN the processor runs
    response = invoke(event)
    # THEN every record failed and has its own reason file
    assert set(results(event, response)) == {"ProcessingFailed"}
    assert reason_keys(s3) == sorted(quarantine.reason_key(r["file_id"]) for r in records)
