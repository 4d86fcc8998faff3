"""`sluice replay`, `sluice quarantine` and `sluice redrive` (--window, --ingest), against moto in
process through the same Deployment they use against AWS.

Lambda cannot run in process: where a command invokes delivery, the test swaps the Invoke call
for a recorder (as tests/unit/test_redrive.py does); the real Invoke path runs in the gamedays
(tests/slow/test_gamedays.py) against the local stack.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from delivery.ledger import Ledger, WindowState
from infrastructure.cli import deployment, main, quarantine, redrive
from infrastructure.cli.deployment import Deployment
from infrastructure.cli.replay import replay
from tests.conftest import REGION
from tests.servers import free_port
from transform import quarantine as reasons
from transform.envelope import file_id
from transform.forwarding import stream_for
from transform.s3_events import parse_message

STAGED = "buffers/dt=2026-11-25/hour=12/unit-0-1-2026-11-25-12-00-00-{}.json.gz"


def drain(target: Deployment, url: str) -> list[str]:
    sqs = target.client("sqs")
    bodies: list[str] = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def replays_on_ingest(target: Deployment) -> list[Any]:
    """The replay events now on the ingest queue (moto also queues the uploads' own events)."""
    found: list[Any] = []
    for body in drain(target, target.ingest_queue_url):
        if "sluiceReplay" in body:
            found.extend(parse_message(body).created)
    return found


# -- replay ----------------------------------------------------------------------------------


@pytest.mark.parametrize("force", [False, True], ids=["plain", "forced"])
def test_replay_announces_every_landed_version_in_range(
    provisioned: Deployment, force: bool
) -> None:
    target = provisioned
    s3 = target.client("s3")
    # GIVEN two versions of one key and a file under another prefix
    v1 = s3.put_object(Bucket=target.landing_bucket, Key="acme/a b.json", Body=b"1")["VersionId"]
    v2 = s3.put_object(Bucket=target.landing_bucket, Key="acme/a b.json", Body=b"22")["VersionId"]
    s3.put_object(Bucket=target.landing_bucket, Key="other/c.json", Body=b"3")
    s3.delete_object(Bucket=target.landing_bucket, Key="acme/a b.json")  # a delete marker
    drain(target, target.ingest_queue_url)
    now = datetime.now(UTC)
    # WHEN the acme/ prefix of the last hour is replayed
    report = replay(
        target,
        since=now - timedelta(hours=1),
        until=now + timedelta(minutes=1),
        prefix="acme/",
        force=force,
        replay_id="r-test",
        dry_run=False,
    )
    # THEN each version (not the delete marker) is announced once, exactly, with the replay id
    assert (report.found, report.sent, report.failed) == (2, 2, [])
    events = replays_on_ingest(target)
    assert sorted((e.key, e.version_id, e.size) for e in events) == sorted(
        [("acme/a b.json", v1, 1), ("acme/a b.json", v2, 2)]
    )
    assert {(e.replay_id, e.force) for e in events} == {("r-test", force)}


def test_replay_dry_run_and_an_empty_range_send_nothing(provisioned: Deployment) -> None:
    target = provisioned
    target.client("s3").put_object(Bucket=target.landing_bucket, Key="acme/x", Body=b"x")
    drain(target, target.ingest_queue_url)
    now = datetime.now(UTC)
    # WHEN a dry run covers the file, and a real run covers a range before it
    dry = replay(
        target,
        since=now - timedelta(hours=1),
        until=now + timedelta(minutes=1),
        prefix="",
        force=False,
        replay_id="dry",
        dry_run=True,
    )
    empty = replay(
        target,
        since=now - timedelta(hours=2),
        until=now - timedelta(hours=1),
        prefix="",
        force=False,
        replay_id="early",
        dry_run=False,
    )
    # THEN the dry run lists the version and neither sends anything
    assert dry.found == 1
    assert dry.versions[0].startswith(f"s3://{target.landing_bucket}/acme/x?versionId=")
    assert (empty.found, empty.sent) == (0, 0)
    assert replays_on_ingest(target) == []


def test_replay_command_rejects_a_bad_time(capsys: pytest.CaptureFixture[str]) -> None:
    # WHEN --since is neither ISO 8601 nor a duration
    with pytest.raises(SystemExit) as exit_:
        main.main(["replay", "--since", "yesterday-ish"])
    # THEN argparse says which value was wrong
    assert exit_.value.code == 2
    assert "yesterday-ish" in capsys.readouterr().err


# -- quarantine -------------------------------------------------------------------------------


@pytest.fixture
def streams(provisioned: Deployment) -> dict[str, str]:
    """moto's Firehose writes each batch straight to S3: one bucket per stream, to read back."""
    firehose = boto3.client("firehose", region_name=REGION)
    s3 = provisioned.client("s3")
    buckets = {}
    for stream in provisioned.streams:
        bucket = f"{stream}-out"
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        firehose.create_delivery_stream(
            DeliveryStreamName=stream,
            ExtendedS3DestinationConfiguration={
                "RoleARN": "arn:aws:iam::123456789012:role/firehose",
                "BucketARN": f"arn:aws:s3:::{bucket}",
            },
        )
        buckets[stream] = bucket
    return buckets


def records_in(target: Deployment, bucket: str) -> list[bytes]:
    s3 = target.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return [s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys]


def held(target: Deployment, entry: reasons.QuarantineEntry) -> str:
    reasons.write(target.client("s3"), target.staging_bucket, entry)
    return entry.file_id


def test_list_show_and_release_of_each_kind(
    provisioned: Deployment, streams: dict[str, str]
) -> None:
    target = provisioned
    s3 = target.client("s3")
    # GIVEN a record the processor held back, a too-large file, and a version gone for good
    record = b'{"file_id":"x","body":"not an order"}\n'
    schema_id = held(
        target,
        reasons.QuarantineEntry(
            file_id="a" * 64,
            reason="payload-schema",
            detail="orders/1.ndjson line 1: 'id' is missing",
            stage="processor",
            record=base64.b64encode(record).decode(),
        ),
    )
    big = s3.put_object(Bucket=target.landing_bucket, Key="acme/big.bin", Body=b"0" * 10)
    big_id = held(
        target,
        reasons.QuarantineEntry(
            file_id=file_id(target.landing_bucket, "acme/big.bin", big["VersionId"]),
            reason="too-large",
            detail="10 bytes > max_file_bytes 5",
            stage="forwarder",
            bucket=target.landing_bucket,
            key="acme/big.bin",
            version_id=big["VersionId"],
            size=10,
        ),
    )
    gone_id = held(
        target,
        reasons.QuarantineEntry(
            file_id="c" * 64, reason="version-gone", detail="NoSuchVersion", stage="forwarder"
        ),
    )
    drain(target, target.ingest_queue_url)
    # WHEN they are listed, one is shown, and each is released
    listed = quarantine.list_entries(target)
    only_schema = quarantine.list_entries(target, reason="payload-schema")
    shown = quarantine.read_entry(target, big_id)
    outcomes = {fid: quarantine.release(target, fid) for fid in (schema_id, big_id, gone_id)}
    # THEN list and show read the reason files
    assert {e["file_id"] for e in listed} == {schema_id, big_id, gone_id}
    assert [e["file_id"] for e in only_schema] == [schema_id]
    assert shown is not None
    assert shown["reason"] == "too-large"
    # ... the held-back record went back into Firehose as it was, on its file_id's stream
    stream = stream_for(schema_id, target.streams)
    assert outcomes[schema_id].released
    assert outcomes[schema_id].stream == stream
    assert records_in(target, streams[stream]) == [record]
    # ... the too-large file was announced again as a replay of its exact version
    assert outcomes[big_id].released
    [event] = replays_on_ingest(target)
    assert (event.key, event.version_id, event.force) == ("acme/big.bin", big["VersionId"], False)
    # ... the version gone for good stays, with the reason why
    assert not outcomes[gone_id].released
    assert "gone for good" in outcomes[gone_id].detail
    assert [e["file_id"] for e in quarantine.list_entries(target)] == [gone_id]
    # ... and released reason files are kept as history
    history = s3.list_objects_v2(Bucket=target.staging_bucket, Prefix="quarantine/released/")
    assert sorted(o["Key"].rsplit("/", 1)[1] for o in history["Contents"]) == sorted(
        [f"{schema_id}.json", f"{big_id}.json"]
    )


def test_release_of_an_unknown_id_fails_and_a_dry_run_changes_nothing(
    provisioned: Deployment, streams: dict[str, str]
) -> None:
    target = provisioned
    fid = held(
        target,
        reasons.QuarantineEntry(
            file_id="d" * 64,
            reason="invalid-envelope",
            detail="size: not a long",
            stage="processor",
            record=base64.b64encode(b"{}").decode(),
        ),
    )
    # WHEN an unknown id is released, and the real one only in a dry run
    unknown = quarantine.release(target, "e" * 64)
    dry = quarantine.release(target, fid, dry_run=True)
    # THEN the unknown one is not released, and the dry run put nothing anywhere
    assert not unknown.released
    assert "no reason file" in unknown.detail
    assert (dry.released, dry.how) == (False, "firehose")
    assert all(records_in(target, bucket) == [] for bucket in streams.values())
    assert [e["file_id"] for e in quarantine.list_entries(target)] == [fid]


# -- redrive --window and --ingest ------------------------------------------------------------


@pytest.fixture
def invoked(provisioned: Deployment, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Delivery's async invocations, recorded instead of made (Lambda cannot run here)."""
    events: list[dict[str, Any]] = []
    real = redrive.redrive_deps

    def recording(target: Deployment) -> Any:
        return dataclasses.replace(real(target), invoke=events.append, minio_healthy=lambda: True)

    monkeypatch.setattr(redrive, "redrive_deps", recording)
    return events


def test_window_release_unparks_and_invokes(
    provisioned: Deployment, invoked: list[dict[str, Any]]
) -> None:
    target = provisioned
    key = STAGED.format("00000001-0000-0000-0000-000000000000")
    window_id = key.rsplit("/", 1)[1].removesuffix(".json.gz")
    ledger = Ledger(target.client("dynamodb"), target.ledger_table, 3600)
    ledger.begin(window_id, key, [])
    ledger.mark_parked(window_id, "redriven 5 times without success")
    # WHEN the operator redrives it by id, after a dry run
    dry = redrive.redrive_window(target, window_id, dry_run=True)
    assert invoked == []
    outcome = redrive.redrive_window(target, window_id, dry_run=False)
    # THEN it is released (CLAIMED again) and delivery invoked for its staged key
    assert (dry.action, dry.released) == ("would-invoke", True)
    assert (outcome.action, outcome.released, outcome.state_before) == ("invoked", True, "PARKED")
    record = ledger.get_window(window_id)
    assert record is not None
    assert record.state is WindowState.CLAIMED
    [event] = invoked
    assert event["Records"][0]["s3"] == {
        "bucket": {"name": target.staging_bucket},
        "object": {"key": key},
    }


def test_parked_windows_are_released_in_bulk_oldest_first(
    provisioned: Deployment,
    invoked: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN three parked windows claimed a minute apart, one claimed window, one delivered
    target = provisioned
    clock = [1_800_000_000.0]
    ledger = Ledger(target.client("dynamodb"), target.ledger_table, 3600, lambda: clock[0])
    keys = [STAGED.format(f"0000000{n}-0000-0000-0000-000000000000") for n in range(5)]
    ids = [key.rsplit("/", 1)[1].removesuffix(".json.gz") for key in keys]
    for window_id, key in zip(ids, keys, strict=True):
        ledger.begin(window_id, key, [])
        clock[0] += 60
    for window_id in ids[:3]:
        ledger.mark_parked(window_id, "redriven 5 times without success")
    ledger.mark_delivered(ids[4], [], file_count=0)
    ledger.set_sweep_low_water(clock[0] + 7200)
    monkeypatch.setattr("infrastructure.cli.deployment.resolve", lambda args, root: provisioned)

    # WHEN the operator releases those claimed in the last two minutes, after a dry run
    assert main.main(["redrive", "--parked", "--since", "2027-01-15T08:01", "--dry-run"]) == 0
    dry_run = capsys.readouterr().out
    assert invoked == []
    assert main.main(["redrive", "--parked", "--since", "2027-01-15T08:01", "--json"]) == 0
    released = json.loads(capsys.readouterr().out)

    # THEN the two newer parked windows are CLAIMED again and delivery invoked for each, oldest
    # first; the older one stays parked, and the sweep will list their hour again
    assert "would release 2 parked window(s)" in dry_run
    assert released["windows"] == keys[1:3]
    assert [e["Records"][0]["s3"]["object"]["key"] for e in invoked] == keys[1:3]
    states = {w: ledger.get_window(w).state for w in ids}  # type: ignore[union-attr]
    assert states == dict(
        zip(ids, ["PARKED", "CLAIMED", "CLAIMED", "CLAIMED", "DELIVERED"], strict=True)
    )
    low_water = ledger.sweep_low_water()
    assert low_water is not None
    assert low_water <= clock[0]


def test_backfill_index_puts_old_open_windows_into_the_index(
    provisioned: Deployment,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a CLAIMED window written before the ledger had its index
    target = provisioned
    target.client("dynamodb").put_item(
        TableName=target.ledger_table,
        Item={
            "pk": {"S": "WIN#old"},
            "state": {"S": "CLAIMED"},
            "staged_key": {"S": STAGED.format("old")},
            "claimed_at_ms": {"N": "1000"},
            "updated_at_ms": {"N": "1000"},
            "redrive_count": {"N": "0"},
            "exclusions": {"L": []},
        },
    )
    monkeypatch.setattr("infrastructure.cli.deployment.resolve", lambda args, root: provisioned)
    # WHEN the operator backfills the index
    assert main.main(["redrive", "--backfill-index", "--json"]) == 0
    captured = capsys.readouterr()
    # THEN the window is in it, and the command said what it scanned as it went
    assert json.loads(captured.out)["indexed"] == 1
    assert "items scanned" in captured.err
    ledger = Ledger(target.client("dynamodb"), target.ledger_table, 3600)
    assert [r.window_id for r in ledger.pending_windows(WindowState.CLAIMED, 10)] == ["old"]


def test_since_without_parked_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["redrive", "--since", "2h"]) != 0
    assert "--since goes with --parked" in capsys.readouterr().err


def test_window_without_a_record_is_found_in_staging_and_unknown_one_fails(
    provisioned: Deployment, invoked: list[dict[str, Any]]
) -> None:
    target = provisioned
    key = STAGED.format("00000002-0000-0000-0000-000000000000")
    target.client("s3").put_object(Bucket=target.staging_bucket, Key=key, Body=b"")
    window_id = key.rsplit("/", 1)[1].removesuffix(".json.gz")
    # WHEN a window whose S3 event was lost is redriven, and one that does not exist
    found = redrive.redrive_window(target, window_id, dry_run=False)
    missing = redrive.redrive_window(target, "no-such-window", dry_run=False)
    # THEN the first is found under buffers/ and invoked; the second says so
    assert (found.action, found.staged_key) == ("invoked", key)
    assert [e["Records"][0]["s3"]["object"]["key"] for e in invoked] == [key]
    assert not missing.ok
    assert "no ledger record and no staged object" in missing.text()


@pytest.mark.parametrize("limit", [None, 3], ids=["all", "limit-3"])
def test_ingest_dlq_messages_move_back_to_the_ingest_queue(
    provisioned: Deployment, limit: int | None
) -> None:
    target = provisioned
    sqs = target.client("sqs")
    # GIVEN five messages in the ingest DLQ (moto lacks StartMessageMoveTask)
    bodies = [json.dumps({"n": n}) for n in range(5)]
    for body in bodies:
        sqs.send_message(QueueUrl=target.ingest_dlq_url, MessageBody=body)
    drain(target, target.ingest_queue_url)
    # WHEN they are moved (after a dry run that moves nothing)
    dry = redrive.move_ingest_dlq(target, limit=None, dry_run=True)
    moved = redrive.move_ingest_dlq(target, limit=limit, dry_run=False)
    # THEN each moved message is on the ingest queue once, and gone from the DLQ
    assert (dry.waiting, dry.moved) == (5, 0)
    assert moved.method == "message-by-message"
    expected = 5 if limit is None else limit
    on_ingest = drain(target, target.ingest_queue_url)
    left = drain(target, target.ingest_dlq_url)
    assert moved.moved == len(on_ingest) == expected
    assert sorted(on_ingest + left) == sorted(bodies)


def test_redrive_command_prints_json(
    provisioned: Deployment,
    invoked: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN the command pointed at the provisioned deployment
    monkeypatch.setattr("infrastructure.cli.deployment.resolve", lambda args, root: provisioned)
    # WHEN the scheduled redrive's work is asked for as JSON, with nothing to do
    status = main.main(["redrive", "--json", "--limit", "5"])
    # THEN it ran healthy and says what it did
    document = json.loads(capsys.readouterr().out)
    assert status == 0
    assert document["report"]["minio_healthy"] is True
    assert document["report"]["dlq_redriven"] == 0
    assert invoked == []


# -- MinIO where nothing answers, and the commands that read it -------------------------------


@pytest.fixture
def minio_closed(provisioned: Deployment, monkeypatch: pytest.MonkeyPatch) -> str:
    """The deployment's MinIO secret names a port where nothing listens; commands run on it."""
    endpoint = f"127.0.0.1:{free_port()}"
    provisioned.client("secretsmanager").put_secret_value(
        SecretId=provisioned.minio_secret,
        SecretString=json.dumps(
            {
                "endpoint": endpoint,
                "access_key": "k",
                "secret_key": "s",
                "bucket": "archive",
                "secure": False,
            }
        ),
    )
    monkeypatch.setattr("infrastructure.cli.deployment.resolve", lambda args, root: provisioned)
    return endpoint


def test_reconcile_while_minio_does_not_answer_says_so_in_one_line(
    provisioned: Deployment, minio_closed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN MinIO down (nothing listening at the endpoint its secret names)
    # WHEN the last five minutes are reconciled
    status = main.main(["reconcile", "--since", "5m"])
    # THEN, as redrive does, one line: MinIO does not answer, nothing done, run again later
    captured = capsys.readouterr()
    assert status == 1
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith(f"sluice reconcile: MinIO does not answer at {minio_closed}")
    assert "nothing reconciled" in line
    assert line.endswith("Run again once MinIO is back.")


def test_trace_of_a_bucket_that_is_not_the_landing_bucket_says_which_is(
    provisioned: Deployment, minio_closed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # WHEN a key in another bucket is traced
    status = main.main(["trace", "s3://wrong-bucket/x"])
    # THEN one line names the landing bucket to trace instead, exit status 1
    assert status == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line == (
        "sluice trace: s3://wrong-bucket is not the landing bucket of deployment unit "
        f"({provisioned.landing_bucket}): trace s3://{provisioned.landing_bucket}/KEY"
    )


def test_trace_against_a_deployment_whose_landing_bucket_is_gone_says_so(
    provisioned: Deployment,
    minio_closed: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a deployment that names a landing bucket S3 does not have
    gone = dataclasses.replace(provisioned, landing_bucket="sluice-gone")
    monkeypatch.setattr("infrastructure.cli.deployment.resolve", lambda args, root: gone)
    # WHEN a key in it is traced THEN one line, not S3's NoSuchBucket, exit status 1
    assert main.main(["trace", "s3://sluice-gone/x"]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert (
        line == "sluice trace: no bucket sluice-gone in deployment unit: trace s3://sluice-gone/KEY"
    )


def test_trace_of_a_quarantined_record_summarises_its_reason_file(
    provisioned: Deployment, minio_closed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = provisioned
    # GIVEN a landed file whose record the processor held back: a 30 kB record, a long detail
    put = target.client("s3").put_object(
        Bucket=target.landing_bucket, Key="orders/1.ndjson", Body=b"{}"
    )
    fid = file_id(target.landing_bucket, "orders/1.ndjson", put["VersionId"])
    record = base64.b64encode(b"r" * 30_000).decode()
    detail = "orders/1.ndjson line 1: " + "the field 'id' is missing from the order " * 10
    held(
        target,
        reasons.QuarantineEntry(
            file_id=fid, reason="payload-schema", detail=detail, stage="processor", record=record
        ),
    )
    # WHEN it is traced
    assert main.main(["trace", f"s3://{target.landing_bucket}/orders/1.ndjson"]) == 0
    out = capsys.readouterr().out
    # THEN the quarantine line is a summary: reason, stage, the detail cut short, the record's
    # size and where to read it whole; never the record itself
    [line] = [line for line in out.splitlines() if line.startswith("  quarantine")]
    assert record[:100] not in out
    assert "reason payload-schema, stage processor" in line
    assert "detail orders/1.ndjson line 1: the field 'id' is missing" in line
    assert "…" in line
    assert len(line) < 400
    assert line.endswith(f"record of 30,000 bytes (whole: `sluice quarantine show {fid}`)")


def test_trace_of_a_claimed_window_says_when_redrive_takes_it_up(
    provisioned: Deployment, minio_closed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = provisioned
    # GIVEN a landed file claimed by a window whose delivery failed into the delivery DLQ
    put = target.client("s3").put_object(Bucket=target.landing_bucket, Key="a.json", Body=b"{}")
    fid = file_id(target.landing_bucket, "a.json", put["VersionId"])
    key = STAGED.format("00000003-0000-0000-0000-000000000000")
    window_id = key.rsplit("/", 1)[1].removesuffix(".json.gz")
    ledger = Ledger(target.client("dynamodb"), target.ledger_table, 3600)
    ledger.begin(window_id, key, [])
    ledger.claim_files(window_id, [fid])
    target.client("sqs").send_message(QueueUrl=target.delivery_dlq_url, MessageBody="{}")
    # WHEN the file is traced
    assert main.main(["trace", f"s3://{target.landing_bucket}/a.json"]) == 0
    [where] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  where")]
    # THEN both ways redrive takes the window up are told, with the schedule's figures: from
    # the DLQ on its next run, or, had delivery stopped mid-way, once the claim is stale
    redrive_tunables = target.tunables().redrive
    assert f"window {window_id} is CLAIMED" in where
    assert "delivery DLQ (1 message(s) there now)" in where
    assert f"every {redrive_tunables.schedule_minutes} min" in where
    assert f"once the failure is {redrive_tunables.min_age_seconds} s old" in where
    assert f"({redrive_tunables.claimed_stale_seconds // 60} min after the claim)" in where
    assert "`sluice redrive` does it now" in where


@pytest.mark.parametrize(
    "argv",
    [["smoke", "--timeout", "1"], ["reconcile", "--since", "5m"], ["trace", "s3://{}/a.json"]],
    ids=["smoke", "reconcile", "trace"],
)
def test_every_minio_client_honours_the_ca_bundle(
    provisioned: Deployment,
    minio_closed: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
) -> None:
    # GIVEN SLUICE_MINIO_CA_BUNDLE naming a file that is not there, and MinIO over TLS
    target = provisioned
    secret = json.loads(
        target.client("secretsmanager").get_secret_value(SecretId=target.minio_secret)[
            "SecretString"
        ]
    )
    target.client("secretsmanager").put_secret_value(
        SecretId=target.minio_secret, SecretString=json.dumps({**secret, "secure": True})
    )
    monkeypatch.setenv("SLUICE_MINIO_CA_BUNDLE", str(tmp_path / "no-ca.pem"))
    # WHEN a command that reads MinIO runs
    status = main.main([a.format(target.landing_bucket) for a in argv])
    # THEN it built its client with the bundle, and says the bundle is not there
    assert status == 1
    [line] = capsys.readouterr().err.splitlines()
    assert "no-ca.pem" in line
    assert "SLUICE_MINIO_CA_BUNDLE" in line


def test_the_minio_client_verifies_tls_against_the_ca_bundle(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN a CA bundle in SLUICE_MINIO_CA_BUNDLE
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("SLUICE_MINIO_CA_BUNDLE", str(bundle))
    # WHEN a command's MinIO client is built
    client = deployment.minio_client(
        "minio.example:9000", access_key="k", secret_key="s", secure=True
    )
    # THEN its connections verify certificates against that bundle
    pool_settings = client._http.connection_pool_kw  # what urllib3 connects with
    assert (pool_settings["cert_reqs"], pool_settings["ca_certs"]) == ("CERT_REQUIRED", str(bundle))


# -- quarantine list, redrive --dry-run: their text -------------------------------------------


def test_quarantine_list_cuts_a_long_detail_at_a_word(provisioned: Deployment) -> None:
    # GIVEN a reason file with a detail far longer than a line
    detail = "orders/1.ndjson line 7: " + "field 'customer_reference' must be a string " * 5
    entry = {"file_id": "a" * 64, "reason": "payload-schema", "detail": detail, "at_ms": 0}
    # WHEN it is listed
    shown = quarantine._line(entry).split("(record only)  ", 1)[1]
    # THEN the detail ends at a whole word, with an ellipsis
    assert shown.endswith("…")
    kept = shown.removesuffix("…")
    assert detail.startswith(kept)
    assert detail[len(kept)] == " "
    assert len(shown) <= quarantine.DETAIL_WIDTH
    # ... and a single word longer than the line is cut within it, still with the ellipsis
    assert quarantine.shorten("x" * 300, 20) == "x" * 19 + "…"
    assert quarantine.shorten("short  enough\n", 20) == "short enough"


def test_redrive_dry_run_with_nothing_to_do_says_so(
    provisioned: Deployment,
    invoked: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("infrastructure.cli.deployment.resolve", lambda args, root: provisioned)
    # WHEN a dry run finds nothing to redrive
    assert main.main(["redrive", "--dry-run"]) == 0
    # THEN it says so, rather than announcing an empty list
    out = capsys.readouterr().out
    assert out == (
        "nothing to redrive: no delivery DLQ message old enough (--min-age) and no staged "
        "window stuck\n"
    )
