"""The forwarder, in process: moto for S3 and DynamoDB, the window-assembly library for Firehose.

Firehose's buffering and processor call cannot run here and moto writes batches straight
through, so Firehose is Sluice's own window-assembly stand-in (`InProcessFirehose`), wrapping
the real processor. Every test ends by reading the staged windows back: what was uploaded must
be there exactly as uploaded (nothing lost), once per version (nothing duplicated), or held back
with a reason file.
"""

from __future__ import annotations

import gzip
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from infrastructure import environment
from infrastructure.local.firehose.window_assembly import InProcessFirehose
from infrastructure.local.lambdas.context import LocalLambdaContext
from infrastructure.local.provision import resources
from infrastructure.tunables import TUNABLES_FILE, load_tunables
from tests.conftest import IDEMPOTENCY_TABLE, LANDING, REGION, STAGING, STREAMS, load_event
from tests.support import (
    created_record,
    notification,
    put_and_notify,
    removed_record,
    sqs_event,
)
from transform import clients, forwarder, processor
from transform.envelope import body_bytes, decode, file_id
from transform.forwarding import stream_for
from transform.idempotency import LANDED_INDEX, LandedFile, landed_hour
from transform.s3_events import replay_notification

MAX_FILE_BYTES = 200_000  # small, so a "too large" file is cheap to upload here


@pytest.fixture
def tunables_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shipped tunables with fast retries (tests don't wait) and a small max_file_bytes."""
    document = json.loads(TUNABLES_FILE.read_text())
    document["forwarder"].update(
        put_backoff_base_seconds=0.001,
        put_backoff_cap_seconds=0.005,
        max_file_bytes=MAX_FILE_BYTES,
    )
    path = tmp_path / "tunables.json"
    path.write_text(json.dumps(document))
    monkeypatch.setenv(environment.TUNABLES_PATH, str(path))
    load_tunables.cache_clear()
    return path


@pytest.fixture
def firehose(
    buckets: dict[str, str],
    idempotency_table: str,
    function_env: Any,
    tunables_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> InProcessFirehose:
    function_env("processor")
    function_env("forwarder")
    stand_in = InProcessFirehose.for_streams(
        STREAMS,
        staging_bucket=STAGING,
        s3=boto3.client("s3", region_name=REGION),
        processor=processor.lambda_handler,
        tunables=load_tunables().firehose,
    )
    monkeypatch.setattr(clients, "firehose", lambda: stand_in)
    forwarder.dependencies.cache_clear()
    yield stand_in
    forwarder.dependencies.cache_clear()


def invoke(event: dict[str, Any], timeout_seconds: float = 30) -> dict[str, Any]:
    return forwarder.lambda_handler(event, LocalLambdaContext("forwarder", timeout_seconds))


def failed_ids(response: dict[str, Any]) -> set[str]:
    return {item["itemIdentifier"] for item in response["batchItemFailures"]}


def message_ids(event: dict[str, Any]) -> list[str]:
    return [record["messageId"] for record in event["Records"]]


def staged(firehose: InProcessFirehose, s3: Any) -> list[dict[str, Any]]:
    """Flush Firehose and read every envelope staged under buffers/, in key order."""
    firehose.flush()
    envelopes = []
    listing = s3.list_objects_v2(Bucket=STAGING, Prefix="buffers/")
    for obj in listing.get("Contents", []):
        data = gzip.decompress(s3.get_object(Bucket=STAGING, Key=obj["Key"])["Body"].read())
        assert data.endswith(b"\n"), "every envelope is newline-terminated"
        envelopes.extend(decode(line) for line in data.splitlines())
    return envelopes


def reason(s3: Any, fid: str) -> dict[str, Any]:
    body = s3.get_object(Bucket=STAGING, Key=f"quarantine/reasons/{fid}.json")["Body"].read()
    return json.loads(body)


def idempotency_status(fid: str) -> str | None:
    item = boto3.client("dynamodb", region_name=REGION).get_item(
        TableName=IDEMPOTENCY_TABLE, Key={"id": {"S": fid}}
    )
    return item.get("Item", {}).get("status", {}).get("S")


def test_test_event_is_acknowledged_and_forwards_nothing(
    firehose: InProcessFirehose, s3: Any
) -> None:
    # GIVEN the s3:TestEvent S3 sends when the notification is configured
    event = sqs_event(json.dumps(load_event("s3_test_event.json")))
    # WHEN the forwarder receives it
    response = invoke(event)
    # THEN it is acknowledged and nothing reaches Firehose
    assert response == {"batchItemFailures": []}
    assert staged(firehose, s3) == []


@pytest.mark.parametrize(
    "bad_body",
    ["not json at all", json.dumps({"Message": "an SNS envelope"}), "[]", '{"Records": []}'],
)
def test_malformed_message_fails_alone(firehose: InProcessFirehose, s3: Any, bad_body: str) -> None:
    # GIVEN a batch with one message that is not an S3 notification between two good ones
    first = put_and_notify(s3, LANDING, "acme/a.json", b'{"a":1}')
    second = put_and_notify(s3, LANDING, "acme/b.json", b'{"b":2}')
    event = sqs_event(notification(first), bad_body, notification(second))
    # WHEN it is forwarded
    response = invoke(event)
    # THEN only the bad message fails (SQS retries it, then the DLQ keeps it) ...
    assert failed_ids(response) == {message_ids(event)[1]}
    # ... and both good files are staged
    assert sorted(e["key"] for e in staged(firehose, s3)) == ["acme/a.json", "acme/b.json"]


def test_every_record_of_a_message_is_forwarded(firehose: InProcessFirehose, s3: Any) -> None:
    # GIVEN one message carrying three records
    records = [put_and_notify(s3, LANDING, f"acme/{i}.csv", f"n,{i}\n".encode()) for i in range(3)]
    # WHEN it is forwarded
    response = invoke(sqs_event(notification(*records)))
    # THEN all three files are staged with their bodies
    assert failed_ids(response) == set()
    bodies = {e["key"]: body_bytes(e) for e in staged(firehose, s3)}
    assert bodies == {f"acme/{i}.csv": f"n,{i}\n".encode() for i in range(3)}


AWKWARD_KEYS = [
    "acme/with space/and more spaces.json",
    "acme/plus+sign+file.json",
    "acme/percent%20not-an-escape%.json",
    "acme/ünïcødé/日本語/emoji-🚀.json",
    "acme/" + "k" * 1019,  # 1,024 bytes, S3's maximum
    "acme//double//slashes/./dots/../file",
]


def test_awkward_keys_are_decoded_exactly(firehose: InProcessFirehose, s3: Any) -> None:
    # GIVEN files whose keys need URL-decoding, sent as S3 encodes them (+ for space)
    records = [put_and_notify(s3, LANDING, key, key.encode()) for key in AWKWARD_KEYS]
    assert len(AWKWARD_KEYS[4].encode()) == 1024
    # WHEN they are forwarded
    response = invoke(sqs_event(*(notification(r) for r in records)))
    # THEN each envelope carries the original key and body
    assert failed_ids(response) == set()
    bodies = {e["key"]: body_bytes(e) for e in staged(firehose, s3)}
    assert bodies == {key: key.encode() for key in AWKWARD_KEYS}


def test_moto_encoded_slashes_and_missing_version_id(firehose: InProcessFirehose, s3: Any) -> None:
    # GIVEN an event as moto sends it: '/' encoded as %2F and no versionId
    s3.put_object(Bucket=LANDING, Key="acme/x y/z.txt", Body=b"zzz")
    etag = s3.head_object(Bucket=LANDING, Key="acme/x y/z.txt")["ETag"].strip('"')
    record = created_record(
        LANDING, "acme/x y/z.txt", 3, etag, None, encoded_key="acme%2Fx+y%2Fz.txt"
    )
    # WHEN it is forwarded
    response = invoke(sqs_event(notification(record)))
    # THEN the version is found by its ETag and the file forwarded under its real key
    assert failed_ids(response) == set()
    [envelope] = staged(firehose, s3)
    version = s3.head_object(Bucket=LANDING, Key="acme/x y/z.txt")["VersionId"]
    assert (envelope["key"], envelope["version_id"]) == ("acme/x y/z.txt", version)
    assert envelope["file_id"] == file_id(LANDING, "acme/x y/z.txt", version)


def test_zero_byte_and_binary_files(firehose: InProcessFirehose, s3: Any) -> None:
    # GIVEN an empty file and a file that is not UTF-8
    binary = bytes(range(256)) * 4
    empty = put_and_notify(s3, LANDING, "acme/empty", b"")
    blob = put_and_notify(s3, LANDING, "acme/blob.bin", binary)
    # WHEN they are forwarded
    invoke(sqs_event(notification(empty), notification(blob)))
    # THEN the empty one travels as empty text, the binary one as base64, both byte-exact
    envelopes = {e["key"]: e for e in staged(firehose, s3)}
    assert envelopes["acme/empty"]["body_encoding"] == "utf8"
    assert body_bytes(envelopes["acme/empty"]) == b""
    assert envelopes["acme/blob.bin"]["body_encoding"] == "base64"
    assert body_bytes(envelopes["acme/blob.bin"]) == binary
    assert envelopes["acme/blob.bin"]["content_kind"] == "binary"


def test_inline_limit_is_inclusive(firehose: InProcessFirehose, s3: Any) -> None:
    # GIVEN one file exactly at the inline limit and one a byte over
    limit = load_tunables().forwarder.inline_limit_bytes
    at = put_and_notify(s3, LANDING, "acme/at", b"a" * limit)
    over = put_and_notify(s3, LANDING, "acme/over", b"o" * (limit + 1))
    # WHEN they are forwarded
    invoke(sqs_event(notification(at, over)))
    # THEN the first travels inline and the second by reference to its exact version
    envelopes = {e["key"]: e for e in staged(firehose, s3)}
    assert body_bytes(envelopes["acme/at"]) == b"a" * limit
    ref = envelopes["acme/over"]
    assert ref["body_encoding"] == "ref"
    assert "body" not in ref
    assert ref["size"] == limit + 1
    assert ref["version_id"] == over["s3"]["object"]["versionId"]


def test_file_over_max_file_bytes_is_quarantined(firehose: InProcessFirehose, s3: Any) -> None:
    # GIVEN a file one byte over max_file_bytes
    big = put_and_notify(s3, LANDING, "acme/huge.bin", b"x" * (MAX_FILE_BYTES + 1))
    event = sqs_event(notification(big))
    # WHEN it is forwarded
    response = invoke(event)
    # THEN it is acknowledged but not sent, and the reason file names it and its version
    assert failed_ids(response) == set()
    assert staged(firehose, s3) == []
    version = big["s3"]["object"]["versionId"]
    entry = reason(s3, file_id(LANDING, "acme/huge.bin", version))
    assert entry["reason"] == "too-large"
    assert (entry["bucket"], entry["key"], entry["version_id"]) == (
        LANDING,
        "acme/huge.bin",
        version,
    )
    assert entry["size"] == MAX_FILE_BYTES + 1
    # ... and the file is still in the landing bucket, untouched
    assert s3.head_object(Bucket=LANDING, Key="acme/huge.bin", VersionId=version)["ContentLength"]


def test_same_event_twice_sends_one_record(firehose: InProcessFirehose, s3: Any) -> None:
    # GIVEN the same S3 event delivered twice in one batch, and once more later
    record = put_and_notify(s3, LANDING, "acme/dup.json", b"{}")
    first = invoke(sqs_event(notification(record), notification(record)))
    # WHEN it arrives again in a later batch
    second = invoke(sqs_event(notification(record)))
    # THEN every message succeeds, one record was sent, and its idempotency record is COMPLETED
    assert failed_ids(first) == failed_ids(second) == set()
    envelopes = staged(firehose, s3)
    assert [e["key"] for e in envelopes] == ["acme/dup.json"]
    assert idempotency_status(envelopes[0]["file_id"]) == "COMPLETED"


def replay_of(record: dict[str, Any], replay_id: str, *, force: bool) -> str:
    obj = record["s3"]["object"]
    return json.dumps(
        replay_notification(
            bucket=record["s3"]["bucket"]["name"],
            key=obj["key"],
            version_id=obj["versionId"],
            size=obj["size"],
            etag=obj["eTag"],
            replay_id=replay_id,
            force=force,
        )
    )


def test_replay_passes_the_forwarder_under_the_same_file_id(
    firehose: InProcessFirehose, s3: Any
) -> None:
    # GIVEN a file forwarded once (its idempotency record COMPLETED)
    record = put_and_notify(s3, LANDING, "acme/again.json", b'{"n":1}')
    assert failed_ids(invoke(sqs_event(notification(record)))) == set()
    # WHEN it is replayed (not forced), twice in one batch, and the same replay again later
    replay = replay_of(record, "r1", force=False)
    first = invoke(sqs_event(replay, replay))
    second = invoke(sqs_event(replay))
    # THEN the replay is sent once more, under the original file_id (delivery's ledger decides),
    # and its own idempotency record keeps the replay's repeats out
    assert failed_ids(first) == failed_ids(second) == set()
    original = file_id(LANDING, "acme/again.json", record["s3"]["object"]["versionId"])
    assert [e["file_id"] for e in staged(firehose, s3)] == [original, original]
    assert idempotency_status(f"{original}#qr1") == "COMPLETED"


def test_landed_files_are_indexed_by_hour_and_replays_are_not(
    firehose: InProcessFirehose, s3: Any
) -> None:
    # GIVEN two files forwarded, and one of them replayed
    records = [put_and_notify(s3, LANDING, f"acme/hour-{n}.json", b'{"n":1}') for n in range(2)]
    assert failed_ids(invoke(sqs_event(*(notification(r) for r in records)))) == set()
    assert failed_ids(invoke(sqs_event(replay_of(records[0], "r9", force=False)))) == set()
    # WHEN the index of landed files is read for the hour of their S3 events
    event_time = records[0]["eventTime"]
    hour = landed_hour(datetime.fromisoformat(event_time.replace("Z", "+00:00")).timestamp())
    items = boto3.client("dynamodb", region_name=REGION).query(
        TableName=IDEMPOTENCY_TABLE,
        IndexName=LANDED_INDEX,
        KeyConditionExpression="landed_hour = :h",
        ExpressionAttributeValues={":h": {"S": hour}},
    )["Items"]
    # THEN it holds each landed version once, with its key, version and size; the replay's
    # record is not in it (the file landed once)
    indexed = sorted((i["object_key"]["S"], i["version_id"]["S"], i["size"]["N"]) for i in items)
    assert indexed == sorted(
        (r["s3"]["object"]["key"], r["s3"]["object"]["versionId"], "7") for r in records
    )
    assert all(i["status"]["S"] == "COMPLETED" for i in items)


def indexed_item(record: dict[str, Any]) -> dict[str, Any]:
    """The index of landed files' item for the hour of `record`'s S3 event, by its key."""
    event_time = record["eventTime"]
    hour = landed_hour(datetime.fromisoformat(event_time.replace("Z", "+00:00")).timestamp())
    items = boto3.client("dynamodb", region_name=REGION).query(
        TableName=IDEMPOTENCY_TABLE,
        IndexName=LANDED_INDEX,
        KeyConditionExpression="landed_hour = :h",
        ExpressionAttributeValues={":h": {"S": hour}},
    )["Items"]
    [item] = [i for i in items if i["object_key"]["S"] == record["s3"]["object"]["key"]]
    return item


def test_files_held_back_unclaimed_are_indexed_as_held(
    firehose: InProcessFirehose, s3: Any
) -> None:
    # GIVEN a file over max_file_bytes and a version deleted for good before it was forwarded
    big = put_and_notify(s3, LANDING, "acme/held-big.bin", b"x" * (MAX_FILE_BYTES + 1))
    gone = put_and_notify(s3, LANDING, "acme/held-gone.json", b"{}")
    s3.delete_object(
        Bucket=LANDING, Key="acme/held-gone.json", VersionId=gone["s3"]["object"]["versionId"]
    )
    # WHEN they are forwarded
    assert failed_ids(invoke(sqs_event(notification(big), notification(gone)))) == set()
    # THEN the index of landed files lists both, HELD with the reason (the daily report counts
    # them by the day they landed), though neither was claimed nor sent
    held = {r["s3"]["object"]["key"]: indexed_item(r) for r in (big, gone)}
    assert {key: item["status"]["S"] for key, item in held.items()} == {
        "acme/held-big.bin": "HELD",
        "acme/held-gone.json": "HELD",
    }
    assert held["acme/held-big.bin"]["held_reason"]["S"] == "too-large"
    assert held["acme/held-gone.json"]["held_reason"]["S"] == "version-gone"
    assert held["acme/held-big.bin"]["size"]["N"] == str(MAX_FILE_BYTES + 1)
    assert staged(firehose, s3) == []


def test_a_held_record_is_no_claim(firehose: InProcessFirehose, s3: Any) -> None:
    # GIVEN a HELD record for a file (as if an earlier event found its version gone)
    record = put_and_notify(s3, LANDING, "acme/held-then-sent.json", b'{"n":3}')
    version = record["s3"]["object"]["versionId"]
    fid = file_id(LANDING, "acme/held-then-sent.json", version)
    store = forwarder.dependencies().store
    store.record_held(fid, LandedFile("acme/held-then-sent.json", version, 7, "", 0), "too-large")
    assert idempotency_status(fid) == "HELD"
    # WHEN an event for it is forwarded
    assert failed_ids(invoke(sqs_event(notification(record)))) == set()
    # THEN it is claimed and sent like any other: HELD never blocks a claim
    assert [e["file_id"] for e in staged(firehose, s3)] == [fid]
    assert idempotency_status(fid) == "COMPLETED"


def test_forced_replay_gets_a_file_id_of_its_own(firehose: InProcessFirehose, s3: Any) -> None:
    # GIVEN a file forwarded once
    record = put_and_notify(s3, LANDING, "acme/force.json", b'{"n":2}')
    assert failed_ids(invoke(sqs_event(notification(record)))) == set()
    # WHEN it is replayed with force
    response = invoke(sqs_event(replay_of(record, "2026-11-25T17.00Z", force=True)))
    # THEN it is sent again as `<file_id>#r<replay_id>`, with the same bytes
    assert failed_ids(response) == set()
    original = file_id(LANDING, "acme/force.json", record["s3"]["object"]["versionId"])
    envelopes = staged(firehose, s3)
    assert [e["file_id"] for e in envelopes] == [original, f"{original}#r2026-11-25T17.00Z"]
    assert {body_bytes(e) for e in envelopes} == {b'{"n":2}'}


@pytest.mark.parametrize(
    "replay",
    [{"replayId": "has space", "force": False}, {"replayId": "ok", "force": "yes"}, "r1"],
    ids=["bad-id", "bad-force", "not-an-object"],
)
def test_malformed_replay_fails_its_message(
    firehose: InProcessFirehose, s3: Any, replay: Any
) -> None:
    # GIVEN a replay event whose sluiceReplay member is malformed
    record = put_and_notify(s3, LANDING, "acme/bad-replay.json", b"{}")
    record["sluiceReplay"] = replay
    event = sqs_event(notification(record))
    # WHEN it is forwarded
    response = invoke(event)
    # THEN its message fails (to be retried, then kept by the ingest DLQ) and nothing is sent
    assert failed_ids(response) == set(message_ids(event))
    assert staged(firehose, s3) == []


@pytest.mark.parametrize("with_version_ids", [True, False], ids=["versionId", "etag-only"])
def test_overwritten_key_sends_both_versions(
    firehose: InProcessFirehose, s3: Any, with_version_ids: bool
) -> None:
    # GIVEN two uploads to one key before the forwarder runs
    first = put_and_notify(s3, LANDING, "acme/same-key.json", b'{"v":1}')
    second = put_and_notify(s3, LANDING, "acme/same-key.json", b'{"v":2}')
    if not with_version_ids:
        for record in (first, second):
            del record["s3"]["object"]["versionId"]
    # WHEN both events are forwarded
    response = invoke(sqs_event(notification(first), notification(second)))
    # THEN both versions are sent, each with its own bytes and version id
    assert failed_ids(response) == set()
    envelopes = sorted(staged(firehose, s3), key=body_bytes)
    assert [body_bytes(e) for e in envelopes] == [b'{"v":1}', b'{"v":2}']
    versions = s3.list_object_versions(Bucket=LANDING, Prefix="acme/same-key.json")["Versions"]
    assert {e["version_id"] for e in envelopes} == {v["VersionId"] for v in versions}


def test_upload_then_delete_is_still_sent(firehose: InProcessFirehose, s3: Any) -> None:
    # GIVEN an upload followed by a delete of the key (a delete marker in a versioned bucket)
    created = put_and_notify(s3, LANDING, "acme/short-lived.json", b'{"here":"briefly"}')
    s3.delete_object(Bucket=LANDING, Key="acme/short-lived.json")
    # WHEN both events are forwarded
    response = invoke(
        sqs_event(
            notification(created), notification(removed_record(LANDING, "acme/short-lived.json"))
        )
    )
    # THEN the created version is still sent and the delete is ignored
    assert failed_ids(response) == set()
    [envelope] = staged(firehose, s3)
    assert body_bytes(envelope) == b'{"here":"briefly"}'


def test_version_deleted_for_good_is_reported_not_retried(
    firehose: InProcessFirehose, s3: Any
) -> None:
    # GIVEN a version permanently deleted before the forwarder ran, beside a healthy file
    gone = put_and_notify(s3, LANDING, "acme/gone.json", b"{}")
    version = gone["s3"]["object"]["versionId"]
    s3.delete_object(Bucket=LANDING, Key="acme/gone.json", VersionId=version)
    healthy = put_and_notify(s3, LANDING, "acme/healthy.json", b"{}")
    # WHEN both are forwarded
    response = invoke(sqs_event(notification(gone), notification(healthy)))
    # THEN the message is acknowledged (retrying cannot bring the version back) ...
    assert failed_ids(response) == set()
    # ... the loss is recorded with its reason, and the healthy file went through
    assert reason(s3, file_id(LANDING, "acme/gone.json", version))["reason"] == "version-gone"
    assert [e["key"] for e in staged(firehose, s3)] == ["acme/healthy.json"]


def test_failed_entries_are_retried_alone(firehose: InProcessFirehose, s3: Any) -> None:
    # GIVEN Firehose rejecting the first two entries of the first call (FailedPutCount = 2)
    records = [put_and_notify(s3, LANDING, f"acme/f{i}", f"{i}".encode()) for i in range(6)]
    firehose.fail_next_entries = 2
    # WHEN six files are forwarded
    response = invoke(sqs_event(*(notification(r) for r in records)))
    # THEN every file is sent exactly once: the rejected ones again, the accepted ones not
    assert failed_ids(response) == set()
    assert sorted(e["key"] for e in staged(firehose, s3)) == [f"acme/f{i}" for i in range(6)]


def test_entries_failing_past_the_budget_are_reported(firehose: InProcessFirehose, s3: Any) -> None:
    # GIVEN Firehose rejecting entries for longer than the retry attempts last
    records = [put_and_notify(s3, LANDING, f"acme/g{i}", f"{i}".encode()) for i in range(4)]
    event = sqs_event(*(notification(r) for r in records))
    # (every attempt resends all 4 until the last, when 2 of them get through)
    firehose.fail_next_entries = 4 * load_tunables().forwarder.put_max_attempts - 2
    # WHEN they are forwarded
    response = invoke(event)
    # THEN the messages whose files never got through are reported, and only those
    sent = {e["key"] for e in staged(firehose, s3)}
    failed_keys = {
        f"acme/g{i}" for i, mid in enumerate(message_ids(event)) if mid in failed_ids(response)
    }
    assert len(failed_keys) == 2
    assert sent | failed_keys == {f"acme/g{i}" for i in range(4)}
    assert sent.isdisjoint(failed_keys)
    # ... their idempotency records are released, so the redelivery sends them
    for record in records:
        fid = file_id(LANDING, record["s3"]["object"]["key"], record["s3"]["object"]["versionId"])
        key = record["s3"]["object"]["key"]
        assert idempotency_status(fid) == (None if key in failed_keys else "COMPLETED")
    retry = invoke(sqs_event(*(notification(r) for r in records)))
    assert failed_ids(retry) == set()
    assert sorted(e["key"] for e in staged(firehose, s3)) == sorted(sent | failed_keys)


def test_throttled_calls_are_retried(firehose: InProcessFirehose, s3: Any) -> None:
    # GIVEN Firehose throttling the first two calls
    records = [put_and_notify(s3, LANDING, f"acme/t{i}", b"t") for i in range(3)]
    firehose.throttle_next_calls = 2
    # WHEN the files are forwarded
    response = invoke(sqs_event(notification(*records)))
    # THEN they get through on a later attempt, once each
    assert failed_ids(response) == set()
    assert sorted(e["key"] for e in staged(firehose, s3)) == [f"acme/t{i}" for i in range(3)]


def test_throttling_past_the_budget_fails_every_message(
    firehose: InProcessFirehose, s3: Any
) -> None:
    # GIVEN Firehose throttling every call
    records = [put_and_notify(s3, LANDING, f"acme/u{i}", b"u") for i in range(3)]
    event = sqs_event(*(notification(r) for r in records))
    firehose.throttle_next_calls = 1_000
    # WHEN the files are forwarded
    response = invoke(event)
    # THEN every message is reported for redelivery and nothing was half-sent
    assert failed_ids(response) == set(message_ids(event))
    assert staged(firehose, s3) == []
    # AND once Firehose recovers, the redelivery sends each file once
    firehose.throttle_next_calls = 0
    assert failed_ids(invoke(event)) == set()
    assert sorted(e["key"] for e in staged(firehose, s3)) == [f"acme/u{i}" for i in range(3)]


def test_crash_after_send_before_completed_loses_nothing(
    firehose: InProcessFirehose, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an invocation that dies after PutRecordBatch succeeded but before COMPLETED
    records = [put_and_notify(s3, LANDING, f"acme/c{i}", b"c") for i in range(3)]
    event = sqs_event(notification(*records))
    store = forwarder.dependencies().store

    def crash(file_ids: object, landed: object = None) -> list[str]:
        raise RuntimeError("worker killed")

    with monkeypatch.context() as patch:
        patch.setattr(store, "complete", crash)
        with pytest.raises(RuntimeError, match="worker killed"):
            invoke(event, timeout_seconds=0)  # its IN_PROGRESS records expire at once
    time.sleep(0.002)  # past the dead invocation's millisecond deadline (not a timing assert)
    # WHEN SQS redelivers the batch (the invocation failed as a whole)
    forwarder.dependencies.cache_clear()
    response = invoke(event)
    # THEN every file is in Firehose: twice, which delivery's per-window dedupe drops; never lost
    assert failed_ids(response) == set()
    keys = [e["key"] for e in staged(firehose, s3)]
    assert sorted(set(keys)) == [f"acme/c{i}" for i in range(3)]
    assert len(keys) == 6


def test_file_in_progress_elsewhere_is_retried_later(firehose: InProcessFirehose, s3: Any) -> None:
    # GIVEN another live invocation holding the file's claim
    record = put_and_notify(s3, LANDING, "acme/busy", b"b")
    fid = file_id(LANDING, "acme/busy", record["s3"]["object"]["versionId"])
    boto3.client("dynamodb", region_name=REGION).put_item(
        TableName=IDEMPOTENCY_TABLE,
        Item={
            "id": {"S": fid},
            "status": {"S": "IN_PROGRESS"},
            "expiration": {"N": str(int(time.time()) + 3600)},
            "in_progress_expiration": {"N": str(int(time.time() * 1000) + 600_000)},
        },
    )
    event = sqs_event(notification(record))
    # WHEN the forwarder sees the event
    response = invoke(event)
    # THEN it does not send it but asks SQS to redeliver the message
    assert failed_ids(response) == set(message_ids(event))
    assert staged(firehose, s3) == []


def test_files_are_spread_over_streams_by_file_id(firehose: InProcessFirehose, s3: Any) -> None:
    # GIVEN enough files that both streams are used
    records = [put_and_notify(s3, LANDING, f"acme/s{i}", b"s") for i in range(20)]
    # WHEN they are forwarded
    invoke(sqs_event(*(notification(r) for r in records)))
    firehose.flush()
    # THEN each staged object belongs to the stream its files' ids choose, and both are used
    listing = s3.list_objects_v2(Bucket=STAGING, Prefix="buffers/")["Contents"]
    streams_used = set()
    for obj in listing:
        stream = next(
            name for name in STREAMS if obj["Key"].rsplit("/", 1)[1].startswith(name + "-")
        )
        streams_used.add(stream)
        data = gzip.decompress(s3.get_object(Bucket=STAGING, Key=obj["Key"])["Body"].read())
        for line in data.splitlines():
            assert stream_for(decode(line)["file_id"], STREAMS) == stream
    assert streams_used == set(STREAMS)


def test_events_from_moto_notifications(firehose: InProcessFirehose, s3: Any) -> None:
    # GIVEN the landing bucket notifying a queue, as S3 does (moto generates these events)
    sqs = boto3.client("sqs", region_name=REGION)
    queue_url = resources.create_ingest_queue(sqs, s3, "ingest", LANDING)
    uploads = {"acme/moto one.json": b'{"m":1}', "acme/sub/moto+two.csv": b"a,b\n"}
    for key, body in uploads.items():
        s3.put_object(Bucket=LANDING, Key=key, Body=body)
    messages = resources.drain_queue(sqs, queue_url)
    # WHEN the messages (test event included) are forwarded
    response = invoke(sqs_event(*(m["Body"] for m in messages)))
    # THEN each uploaded file is staged once, byte-exact
    assert failed_ids(response) == set()
    assert {e["key"]: body_bytes(e) for e in staged(firehose, s3)} == uploads


def test_missing_resource_variable_fails_the_cold_start(
    firehose: InProcessFirehose, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a deployment that forgot to bind the idempotency table
    monkeypatch.delenv(environment.IDEMPOTENCY_TABLE)
    forwarder.dependencies.cache_clear()
    # WHEN the function starts THEN it fails loudly, naming the variable
    with pytest.raises(ValueError, match=environment.IDEMPOTENCY_TABLE):
        invoke(sqs_event(json.dumps(load_event("s3_test_event.json"))))
