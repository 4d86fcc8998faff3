"""The requeue function: records of failed processor invocations go back into Firehose.

Pipeline in process as in test_forwarder: moto for S3/DynamoDB, the window-assembly library
for Firehose (Firehose's processor retries and error output cannot run here), the real
forwarder, processor and requeue handlers. A processor invocation failing as a whole is chaos
in the stand-in's processor wiring, never in handler code.
"""

from __future__ import annotations

import base64
import copy
import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest

from infrastructure import environment
from infrastructure.local.firehose.window_assembly import InProcessFirehose, WindowAssembler
from infrastructure.local.lambdas.context import LocalLambdaContext
from infrastructure.tunables import TUNABLES_FILE, load_tunables
from tests.conftest import LANDING, REGION, STAGING, STREAMS, load_event
from tests.support import notification, put_and_notify, sqs_event
from transform import clients, forwarder, processor, requeue
from transform.envelope import body_bytes, decode, encode, file_id
from transform.requeuing import RequeueFailed


class FailingFirst:
    """Wraps the real processor; its first `failures` invocations raise (a crashed invocation)."""

    def __init__(self, failures: int) -> None:
        self.failures = failures

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("Task timed out after 60.00 seconds")
        return processor.lambda_handler(event, context)


@pytest.fixture
def pipeline(
    buckets: dict[str, str],
    idempotency_table: str,
    function_env: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[[int], InProcessFirehose]:
    """Build the in-process pipeline whose processor fails its first N invocations."""
    document = json.loads(TUNABLES_FILE.read_text())
    document["forwarder"].update(put_backoff_base_seconds=0.001, put_backoff_cap_seconds=0.005)
    document["firehose"]["processor_retries"] = 1
    path = tmp_path / "tunables.json"
    path.write_text(json.dumps(document))
    monkeypatch.setenv(environment.TUNABLES_PATH, str(path))
    load_tunables.cache_clear()
    for function in ("processor", "requeue", "forwarder"):
        function_env(function)
    s3 = boto3.client("s3", region_name=REGION)

    def build(failures: int) -> InProcessFirehose:
        stand_in = InProcessFirehose(
            {
                name: WindowAssembler(
                    stream_name=name,
                    staging_bucket=STAGING,
                    s3=s3,
                    processor=FailingFirst(failures),  # each stream's processor fails alike
                    tunables=load_tunables().firehose,
                )
                for name in STREAMS
            }
        )
        monkeypatch.setattr(clients, "firehose", lambda: stand_in)
        forwarder.dependencies.cache_clear()
        requeue.dependencies.cache_clear()
        return stand_in

    return build


def objects(s3: Any, prefix: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=STAGING, Prefix=prefix).get("Contents", [])]


def staged_envelopes(s3: Any) -> list[dict[str, Any]]:
    lines: list[bytes] = []
    for key in objects(s3, "buffers/"):
        lines += gzip.decompress(s3.get_object(Bucket=STAGING, Key=key)["Body"].read()).splitlines()
    return [decode(line) for line in lines]


def error_lines(s3: Any, key: str) -> list[dict[str, Any]]:
    data = gzip.decompress(s3.get_object(Bucket=STAGING, Key=key)["Body"].read())
    return [json.loads(line) for line in data.splitlines()]


def errors_event(key: str) -> dict[str, Any]:
    """The S3 notification staging sends the requeue function for a new errors/ object."""
    event = copy.deepcopy(load_event("s3_staging_errors_created.json"))
    event["Records"][0]["s3"]["bucket"]["name"] = STAGING
    event["Records"][0]["s3"]["object"]["key"] = quote_plus(key, safe="/")
    return event


def run_requeue(key: str) -> dict[str, Any]:
    return requeue.lambda_handler(errors_event(key), LocalLambdaContext("requeue", 120))


def put_error_object(s3: Any, key: str, lines: list[bytes]) -> None:
    s3.put_object(Bucket=STAGING, Key=key, Body=gzip.compress(b"".join(lines), mtime=0))


def error_line(raw: bytes, code: str = "Lambda.FunctionError") -> bytes:
    record = {
        "attemptsMade": 4,
        "arrivalTimestamp": 1795608000000,
        "errorCode": code,
        "errorMessage": "The Lambda function was invoked but returned an error result.",
        "attemptEndingTimestamp": 1795608060000,
        "rawData": base64.b64encode(raw).decode(),
        "lambdaArn": "arn:aws:lambda:eu-west-2:123456789012:function:sluice-processor:live",
    }
    return json.dumps(record).encode() + b"\n"


def test_failed_invocation_is_requeued_and_nothing_is_lost(pipeline: Any, s3: Any) -> None:
    # GIVEN a processor whose invocations fail as a whole until Firehose gives up on the batch
    firehose = pipeline(failures=2)  # first attempt + processor_retries = 1
    uploads = {f"acme/r{i}.json": json.dumps({"i": i}).encode() for i in range(5)}
    records = [put_and_notify(s3, LANDING, key, body) for key, body in uploads.items()]
    forwarder.lambda_handler(sqs_event(notification(*records)), LocalLambdaContext("forwarder"))
    firehose.flush()
    error_keys = objects(s3, "errors/processing-failed/")
    assert error_keys, "Firehose wrote the failed batch under errors/"
    assert staged_envelopes(s3) == []
    # WHEN the requeue function handles each errors/ object
    for key in error_keys:
        run_requeue(key)
    firehose.flush()
    # THEN every file is staged once, byte-exact, marked as requeued once
    envelopes = staged_envelopes(s3)
    assert {e["key"]: body_bytes(e) for e in envelopes} == uploads
    assert len(envelopes) == len(uploads)
    assert {e["requeue_attempts"] for e in envelopes} == {1}
    # ... and the processor's enrichment was applied afresh (no duplicate fields)
    assert all("firehose_arrival_ms" in e for e in envelopes)


def test_records_the_processor_failed_stay_quarantined(pipeline: Any, s3: Any) -> None:
    # GIVEN an orders file failing its payload schema, beside a valid one
    firehose = pipeline(failures=0)
    bad = put_and_notify(s3, LANDING, "orders/bad.ndjson", b'{"order_id": 1}\n')
    good = put_and_notify(s3, LANDING, "acme/good.json", b"{}")
    forwarder.lambda_handler(sqs_event(notification(bad, good)), LocalLambdaContext("forwarder"))
    firehose.flush()
    [error_key] = objects(s3, "errors/processing-failed/")
    assert [line["errorCode"] for line in error_lines(s3, error_key)] == ["Lambda.ProcessingFailed"]
    # WHEN the requeue function sees that errors/ object
    counts = run_requeue(error_key)
    firehose.flush()
    # THEN it leaves the record where it is: its reason file says why
    assert counts == {"records_left_quarantined": 1}
    assert [e["key"] for e in staged_envelopes(s3)] == ["acme/good.json"]
    fid = file_id(LANDING, "orders/bad.ndjson", bad["s3"]["object"]["versionId"])
    reason = json.loads(
        s3.get_object(Bucket=STAGING, Key=f"quarantine/reasons/{fid}.json")["Body"].read()
    )
    assert reason["reason"] == "payload-schema"


def test_requeue_attempts_are_bounded(pipeline: Any, s3: Any) -> None:
    # GIVEN an errors/ object holding a record already requeued max_attempts times
    firehose = pipeline(failures=0)
    max_attempts = load_tunables().requeue.max_attempts
    fid = file_id(LANDING, "acme/stuck.json", "v1")
    stuck = {
        "schema_version": 1,
        "file_id": fid,
        "bucket": LANDING,
        "key": "acme/stuck.json",
        "version_id": "v1",
        "size": 2,
        "event_time_ms": 1795608000000,
        "forwarded_at_ms": 1795608001000,
        "body_encoding": "ref",
        "requeue_attempts": max_attempts,
    }
    key = "errors/processing-failed/dt=2026-11-25/sluice-test-0-1-2026-11-25-12-00-00-x.json.gz"
    put_error_object(s3, key, [error_line(encode(stuck))])
    # WHEN the requeue function handles it
    counts = run_requeue(key)
    firehose.flush()
    # THEN the record is not put back again: it stays in errors/ with a reason, and is counted
    assert counts == {"requeue_exhausted": 1, "held_requeue_exhausted": 1}
    assert staged_envelopes(s3) == []
    reason = json.loads(
        s3.get_object(Bucket=STAGING, Key=f"quarantine/reasons/{fid}.json")["Body"].read()
    )
    assert reason["reason"] == "requeue-exhausted"
    assert decode(base64.b64decode(reason["record"]))["file_id"] == fid
    assert key in objects(s3, "errors/")


def test_unreadable_lines_are_held_and_the_rest_requeued(pipeline: Any, s3: Any) -> None:
    # GIVEN an errors/ object with a broken line, a non-envelope record and a valid one
    firehose = pipeline(failures=0)
    record = put_and_notify(s3, LANDING, "acme/fine.json", b'{"ok":true}')
    obj = record["s3"]["object"]
    valid = {
        "schema_version": 1,
        "file_id": file_id(LANDING, "acme/fine.json", obj["versionId"]),
        "bucket": LANDING,
        "key": "acme/fine.json",
        "version_id": obj["versionId"],
        "size": obj["size"],
        "event_time_ms": 1795608000000,
        "forwarded_at_ms": 1795608001000,
        "body_encoding": "utf8",
        "body": '{"ok":true}',
        "body_sha256": "4062edaf750fb8074e7e83e0c9028c94e32468a8b6f1614774328ef045150f93",
    }
    key = "errors/processing-failed/dt=2026-11-25/sluice-test-1-1-2026-11-25-12-00-00-y.json.gz"
    put_error_object(
        s3,
        key,
        [b"{not json\n", error_line(b"\x00binary, not an envelope"), error_line(encode(valid))],
    )
    # WHEN the requeue function handles it
    counts = run_requeue(key)
    firehose.flush()
    # THEN the valid record is delivered and each broken one has a reason file
    assert counts == {
        "held_unreadable_error_record": 1,
        "held_invalid_envelope": 1,
        "records_requeued": 1,
    }
    assert [body_bytes(e) for e in staged_envelopes(s3)] == [b'{"ok":true}']
    reasons = objects(s3, "quarantine/reasons/")
    assert len(reasons) == 2


def test_firehose_refusing_makes_the_invocation_fail_for_a_retry(pipeline: Any, s3: Any) -> None:
    # GIVEN Firehose throttling every call
    firehose = pipeline(failures=0)
    record = put_and_notify(s3, LANDING, "acme/later.json", b"{}")
    obj = record["s3"]["object"]
    envelope_ = {
        "schema_version": 1,
        "file_id": file_id(LANDING, "acme/later.json", obj["versionId"]),
        "bucket": LANDING,
        "key": "acme/later.json",
        "version_id": obj["versionId"],
        "size": 2,
        "event_time_ms": 1795608000000,
        "forwarded_at_ms": 1795608001000,
        "body_encoding": "ref",
    }
    key = "errors/processing-failed/dt=2026-11-25/sluice-test-0-1-2026-11-25-12-00-00-z.json.gz"
    put_error_object(s3, key, [error_line(encode(envelope_))])
    firehose.throttle_next_calls = 1_000
    # WHEN the requeue function runs THEN it raises, naming the object, so Lambda retries it
    with pytest.raises(RequeueFailed, match=key):
        run_requeue(key)
    # AND the retry after Firehose recovers puts the record back
    firehose.throttle_next_calls = 0
    assert run_requeue(key) == {"records_requeued": 1}
    firehose.flush()
    assert [e["key"] for e in staged_envelopes(s3)] == ["acme/later.json"]


def test_objects_outside_processing_failed_are_left_alone(pipeline: Any, s3: Any) -> None:
    # GIVEN an errors/ object of another error output type
    pipeline(failures=0)
    key = "errors/some-other-failure/dt=2026-11-25/x.json.gz"
    put_error_object(s3, key, [error_line(b"{}")])
    # WHEN the requeue function sees it THEN it ignores it and keeps it
    assert run_requeue(key) == {"objects_ignored": 1}
    assert key in objects(s3, "errors/")
