"""`sluice reconcile` and `sluice trace` (delivery.reconciling, infrastructure.cli.reconcile and
.trace): moto in process for AWS, the session's SeaweedFS as MinIO.

Windows are delivered for real by delivery.delivering.deliver_window, so the manifests, the
ledger and the archives are the ones delivery writes; only the shapes delivery never produces on
purpose (a file in two archives, a forced replay, a manifest that disagrees with the landing
bytes) are written as window manifests by hand.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from minio import Minio

from delivery.delivering import DeliveryDeps, DeliveryReport, deliver_window
from delivery.hourly_reconcile import reconcile_hour
from delivery.ledger import Ledger
from delivery.minio_access import MinioAccess
from delivery.reconciling import (
    FileStatus,
    IngestIndex,
    ReconcileReport,
    ReconcileSources,
    partition_prefixes,
    reconcile,
)
from infrastructure.cli import deployment, main
from infrastructure.cli.deployment import Deployment
from infrastructure.cli.reconcile import sources_of
from infrastructure.cli.trace import trace
from infrastructure.tunables import load_tunables
from transform import payload_schemas, quarantine
from transform.envelope import Envelope, file_id
from transform.idempotency import IdempotencyStore, LandedFile

pytestmark = pytest.mark.slow  # SeaweedFS is a server

ARCHIVE_PREFIX = "sluice"


@dataclass
class World:
    """A provisioned deployment whose MinIO is SeaweedFS, and delivery's dependencies on it."""

    target: Deployment
    s3: Any
    minio: Minio
    bucket: str
    deps: DeliveryDeps
    sources: ReconcileSources

    def land(
        self, key: str, body: bytes, *, at: datetime | None = None, forwarded: bool = True
    ) -> dict[str, Any]:
        """Upload to landing; the envelope the forwarder would send for it. If `forwarded`, the
        forwarder's record of it too (the ingest index reconcile reads)."""
        version = self.s3.put_object(Bucket=self.target.landing_bucket, Key=key, Body=body)
        landed_ms = int((at or datetime.now(UTC)).timestamp() * 1000)
        fid = file_id(self.target.landing_bucket, key, version["VersionId"])
        if forwarded:
            store = IdempotencyStore(
                self.target.client("dynamodb"), self.target.idempotency_table, 3600
            )
            landed = LandedFile(key, version["VersionId"], len(body), version["ETag"], landed_ms)
            assert store.complete([fid], {fid: landed}) == []
        return Envelope.inline(
            body,
            file_id=fid,
            bucket=self.target.landing_bucket,
            key=key,
            version_id=version["VersionId"],
            size=len(body),
            event_time_ms=landed_ms,
            forwarded_at_ms=int(datetime.now(UTC).timestamp() * 1000),
        ).to_dict()

    def stage(self, envelopes: list[dict[str, Any]], at: datetime | None = None) -> str:
        """A staged window as Firehose writes it, named by `at` (default now); returns its key."""
        at = at or datetime.now(UTC)
        name = f"sluice-0-1-{at:%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}"
        key = f"buffers/dt={at:%Y-%m-%d}/hour={at:%H}/{name}.json.gz"
        data = b"".join(json.dumps(e).encode() + b"\n" for e in envelopes)
        self.s3.put_object(Bucket=self.target.staging_bucket, Key=key, Body=gzip.compress(data))
        return key

    def deliver(self, staged_key: str) -> DeliveryReport:
        return deliver_window(self.target.staging_bucket, staged_key, self.deps)

    def window_manifest(self, window_id: str, files: list[dict[str, Any]], at: datetime) -> str:
        """A window manifest written by hand (no archive, no ledger record)."""
        partition = partition_prefixes(ARCHIVE_PREFIX, at, at)[0]
        key = f"{partition}{window_id}.manifest.json"
        document = {
            "format_version": 2,
            "window_id": window_id,
            "staged_key": f"buffers/{window_id}.json.gz",
            "parts": [
                {
                    "part": 1,
                    "key": f"{partition}{window_id}.tar.gz",
                    "sha256": "0" * 64,
                    "size": 0,
                    "file_count": len(files),
                }
            ],
            "files": [{**file, "part": 1} for file in files],
            "excluded": [],
        }
        data = json.dumps(document).encode()
        self.minio.put_object(self.bucket, key, io.BytesIO(data), len(data))
        return key

    def reconcile(self, **options: Any) -> ReconcileReport:
        """Everything landed in the last hour, judged a while from now (past the grace)."""
        now = datetime.now(UTC)
        options.setdefault("now", now + timedelta(minutes=10))
        return reconcile(
            self.sources, now - timedelta(hours=1), now + timedelta(seconds=5), **options
        )


def entry(envelope: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The manifest entry delivery would write for an envelope."""
    body = envelope["body"].encode()
    return {
        "member_name": envelope["key"],
        "key": envelope["key"],
        "version_id": envelope["version_id"],
        "file_id": envelope["file_id"],
        "size": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "event_time_ms": envelope["event_time_ms"],
        "check": "envelope-sha256",
        **changes,
    }


def statuses(report: ReconcileReport) -> dict[str, FileStatus]:
    return {file.key: file.status for file in report.files}


@pytest.fixture
def world(provisioned: Deployment, seaweedfs: Any, tmp_path: Path) -> World:
    target = provisioned
    target.client("secretsmanager").put_secret_value(
        SecretId=target.minio_secret,
        SecretString=json.dumps(
            {
                "endpoint": seaweedfs.endpoint,
                "access_key": seaweedfs.access_key,
                "secret_key": seaweedfs.secret_key,
                "bucket": seaweedfs.bucket,
                "secure": False,
            }
        ),
    )
    tunables = load_tunables()
    assert tunables.delivery.archive_prefix == ARCHIVE_PREFIX
    s3 = target.client("s3")
    deps = DeliveryDeps(
        s3=s3,
        ledger=Ledger(target.client("dynamodb"), target.ledger_table, 3600),
        minio=MinioAccess(target.minio_secret, max_age_seconds=300),
        schemas=payload_schemas.load(tunables.processor.payload_schemas),
        tunables=tunables.delivery,
        file_extension=tunables.firehose.file_extension,
        spool_dir=tmp_path,
    )
    minio, _ = target.minio()
    return World(target, s3, minio, seaweedfs.bucket, deps, sources_of(target))


@pytest.fixture
def cli(world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """Run `sluice …` against the world: (exit status, stdout, stderr)."""
    monkeypatch.setattr(deployment, "resolve", lambda args, root: world.target)

    def run(*argv: str) -> tuple[int, str, str]:
        status = main.main(list(argv))
        out, err = capsys.readouterr()
        return status, out, err

    return run


# ---------------------------------------------------------------- reconcile


def test_a_delivered_window_and_files_held_back_reconcile_ok(world: World) -> None:
    # GIVEN two files delivered for real, one excluded by delivery (its body does not match its
    # sha256), one quarantined by the processor and one too large to forward
    good = [world.land(f"acme/ok-{n}.json", b'{"n": %d}' % n) for n in range(2)]
    bad = world.land("acme/bad.json", b'{"bad": true}') | {"body_sha256": "0" * 64}
    report = world.deliver(world.stage([*good, bad]))
    assert report.outcome == "delivered"
    for key, reason in (("acme/odd.json", "payload-schema"), ("acme/huge.bin", "too-large")):
        held = world.land(key, b"x")
        quarantine.write(
            world.s3,
            world.target.staging_bucket,
            quarantine.QuarantineEntry(
                file_id=held["file_id"], reason=reason, detail=f"{key} held", stage="processor"
            ),
        )
    # WHEN the last hour is reconciled
    found = world.reconcile()
    # THEN each file has its status, and nothing is wrong
    assert statuses(found) == {
        "acme/bad.json": FileStatus.EXCLUDED,
        "acme/huge.bin": FileStatus.TOO_LARGE,
        "acme/odd.json": FileStatus.QUARANTINED,
        "acme/ok-0.json": FileStatus.DELIVERED,
        "acme/ok-1.json": FileStatus.DELIVERED,
    }
    assert found.ok
    delivered = next(f for f in found.files if f.key == "acme/ok-0.json")
    assert delivered.member_name == "acme/ok-0.json"
    assert delivered.archive == report.parts[0].minio_key
    excluded = next(f for f in found.files if f.key == "acme/bad.json")
    assert (excluded.reason, excluded.window_id) == ("checksum-mismatch", report.window_id)
    quarantined = next(f for f in found.files if f.key == "acme/odd.json")
    assert (quarantined.reason, quarantined.detail) == ("payload-schema", "acme/odd.json held")
    # ... problems are what did not arrive, in key order
    assert [f.key for f in found.problems] == ["acme/bad.json", "acme/huge.bin", "acme/odd.json"]
    # ... and a prefix narrows what is reconciled
    assert set(statuses(world.reconcile(prefix="acme/ok-"))) == {"acme/ok-0.json", "acme/ok-1.json"}


def test_claimed_parked_unclaimed_and_recent_files(world: World) -> None:
    # GIVEN a file claimed by a window still CLAIMED, one by a PARKED window, one never claimed
    claimed, parked, _ = (world.land(f"acme/{name}.csv", b"a,b\n") for name in "cpl")
    ledger = world.deps.ledger
    ledger.claim_files("w-claimed", [claimed["file_id"]])
    ledger.begin("w-claimed", "buffers/w-claimed.json.gz", [])
    ledger.claim_files("w-parked", [parked["file_id"]])
    ledger.begin("w-parked", "buffers/w-parked.json.gz", [])
    ledger.mark_parked("w-parked", "redriven 5 times")
    # WHEN reconciled well after they landed
    found = world.reconcile()
    # THEN claimed is pending, parked is parked (with why), the unclaimed one is missing
    assert statuses(found) == {
        "acme/c.csv": FileStatus.PENDING,
        "acme/l.csv": FileStatus.MISSING,
        "acme/p.csv": FileStatus.PARKED,
    }
    assert next(f for f in found.files if f.key == "acme/p.csv").reason == "redriven 5 times"
    assert next(f for f in found.files if f.key == "acme/c.csv").window_id == "w-claimed"
    assert not found.ok
    assert found.counts()[FileStatus.MISSING] == 1
    # WHEN reconciled right away THEN the unclaimed file may still be on its way: pending
    assert statuses(world.reconcile(now=datetime.now(UTC)))["acme/l.csv"] is FileStatus.PENDING


def test_a_file_in_two_archives_is_delivered_twice_and_a_forced_replay_is_not(
    world: World,
) -> None:
    # GIVEN one file listed by two windows' manifests, and another listed once under its own id
    # and once under a forced replay's id
    now = datetime.now(UTC)
    twice, replayed = world.land("acme/twice.json", b"{}"), world.land("acme/replayed.json", b"[]")
    world.window_manifest("w-one", [entry(twice), entry(replayed)], now)
    world.window_manifest("w-two", [entry(twice)], now + timedelta(hours=1))
    world.window_manifest(
        "w-replay", [entry(replayed, file_id=replayed["file_id"] + "#rops-42")], now
    )
    # WHEN reconciled
    found = world.reconcile()
    # THEN the double delivery is a violation; the replay is not
    assert statuses(found) == {
        "acme/replayed.json": FileStatus.REDELIVERED,
        "acme/twice.json": FileStatus.DELIVERED_TWICE,
    }
    assert "w-one" in next(f for f in found.files if f.status is FileStatus.DELIVERED_TWICE).detail
    assert not found.ok


def test_a_changed_archive_or_a_wrong_checksum_is_a_mismatch(world: World) -> None:
    # GIVEN a window delivered for real whose archive is then overwritten in MinIO
    delivered = world.land("acme/a.json", b'{"a": 1}')
    report = world.deliver(world.stage([delivered]))
    archive = report.parts[0].minio_key
    world.minio.put_object(world.bucket, archive, io.BytesIO(b"not the archive"), 15)
    # ... and a manifest by hand whose sha256 is not the landing bytes', another whose size is off
    hashed, sized = world.land("acme/h.json", b"{}"), world.land("acme/s.json", b"{}")
    world.window_manifest(
        "w-hand", [entry(hashed, sha256="f" * 64), entry(sized, size=99)], datetime.now(UTC)
    )
    # WHEN reconciled without reading landing bytes
    found = world.reconcile()
    # THEN the changed archive and the size are mismatches; the sha256 is not looked at
    assert statuses(found) == {
        "acme/a.json": FileStatus.CHECKSUM_MISMATCH,
        "acme/h.json": FileStatus.DELIVERED,
        "acme/s.json": FileStatus.CHECKSUM_MISMATCH,
    }
    assert "changed in MinIO" in next(f for f in found.files if f.key == "acme/a.json").detail
    # WHEN reconciled with --verify-bytes THEN the sha256 mismatch is found too
    verified = world.reconcile(verify_bytes=True)
    assert statuses(verified)["acme/h.json"] is FileStatus.CHECKSUM_MISMATCH
    assert not verified.ok
    # WHEN the archive is removed THEN it is reported missing from MinIO
    world.minio.remove_object(world.bucket, archive)
    gone = next(f for f in world.reconcile().files if f.key == "acme/a.json")
    assert "missing from MinIO" in gone.detail


def test_a_window_named_outside_the_hours_read_is_found_through_the_ledger(world: World) -> None:
    # GIVEN a file whose window Firehose named five hours after it landed (beyond the slack)
    late = world.land("acme/late.json", b'"late"')
    report = world.deliver(world.stage([late], at=datetime.now(UTC) + timedelta(hours=5)))
    # WHEN reconciled THEN its owner's parts lead to its manifest: delivered, not missing
    found = world.reconcile()
    assert statuses(found) == {"acme/late.json": FileStatus.DELIVERED}
    assert found.files[0].archive == report.parts[0].minio_key


def test_cli_json_shape_and_exit_status(world: World, cli: Any) -> None:
    # GIVEN one file delivered for real and one in two archives
    world.deliver(world.stage([world.land("acme/one.json", b"1")]))
    twice = world.land("acme/two.json", b"2")
    world.window_manifest("w-a", [entry(twice)], datetime.now(UTC))
    world.window_manifest("w-b", [entry(twice)], datetime.now(UTC))
    # WHEN `sluice reconcile --json --all` runs
    status, out, _ = cli("reconcile", "--json", "--all", "--since", "10m")
    # THEN it exits 1 and says why, in one JSON object
    assert status == 1
    document = json.loads(out)
    assert set(document) == {
        "since",
        "until",
        "summary",
        "landed_by_api",
        "ok",
        "unreadable_manifests",
        "files",
    }
    assert document["landed_by_api"] == 0
    assert document["ok"] is False
    assert document["summary"]["delivered"] == 1
    assert document["summary"]["delivered-twice"] == 1
    assert set(document["summary"]) == {s.value for s in FileStatus}
    assert [f["key"] for f in document["files"]] == ["acme/one.json", "acme/two.json"]
    assert set(document["files"][0]) >= {"key", "version_id", "file_id", "status", "member_name"}
    # WHEN the text form runs THEN only the problem is listed, then the summary line
    status, out, _ = cli("reconcile", "--since", "10m")
    lines = out.strip().splitlines()
    assert status == 1
    assert lines[0].startswith("delivered-twice   acme/two.json")
    assert lines[-1].startswith("reconciled 2 files landed ")
    assert ": 1 delivered, 0 redelivered, 1 delivered twice, 0 checksum mismatch" in lines[-1]
    assert lines[-1].endswith("0 pending, 0 parked, 0 missing")
    # WHEN the range holds nothing wrong THEN it exits 0
    status, out, _ = cli("reconcile", "--prefix", "acme/one")
    assert (status, len(out.strip().splitlines())) == (0, 1)


def test_cli_refuses_an_empty_range(cli: Any) -> None:
    # GIVEN --since after --until WHEN reconciling THEN usage error, naming both
    status, _, err = cli("reconcile", "--since", "1h", "--until", "2h")
    assert status == 2
    assert "is not before --until" in err


# ---------------------------------------------------------------- trace


def test_trace_of_a_delivered_file_names_its_archive_member(world: World, cli: Any) -> None:
    # GIVEN a key landed twice; the first version delivered for real
    first = world.land("acme/path/report.json", b'{"v": 1}')
    report = world.deliver(world.stage([first]))
    second = world.land("acme/path/report.json", b'{"v": 2}', forwarded=False)
    # WHEN traced without a version
    stories = trace(world.target, world.sources, world.target.landing_bucket, first["key"])
    # THEN both versions, newest first: the second not forwarded yet, the first in its archive
    assert [s.version_id for s in stories] == [second["version_id"], first["version_id"]]
    assert stories[0].owner_window is None
    assert "not forwarded yet" in stories[0].where
    delivered = stories[1]
    assert delivered.file_id == first["file_id"]
    assert delivered.owner_window == report.window_id
    assert delivered.window is not None
    assert delivered.window["state"] == "DELIVERED"
    assert delivered.archive is not None
    assert delivered.archive["member_name"] == "acme/path/report.json"
    assert delivered.archive["minio_key"] == report.parts[0].minio_key
    assert delivered.archive["sha256"] == hashlib.sha256(b'{"v": 1}').hexdigest()
    assert delivered.where.startswith("delivered: ")
    # WHEN the CLI traces one version as JSON THEN that version alone
    uri = (
        f"s3://{world.target.landing_bucket}/acme/path/report.json?versionId={first['version_id']}"
    )
    status, out, _ = cli("trace", uri, "--json")
    assert status == 0
    [story] = json.loads(out)
    assert story["archive"]["member_name"] == "acme/path/report.json"


def test_trace_of_a_quarantined_file_shows_its_reason(world: World, cli: Any) -> None:
    # GIVEN a file too large to forward, quarantined by the forwarder
    held = world.land("acme/huge.bin", b"x" * 10)
    quarantine.write(
        world.s3,
        world.target.staging_bucket,
        quarantine.QuarantineEntry(
            file_id=held["file_id"], reason="too-large", detail="10 bytes > 5", stage="forwarder"
        ),
    )
    # WHEN traced in text
    status, out, _ = cli("trace", f"s3://{world.target.landing_bucket}/acme/huge.bin")
    # THEN the story stops at the quarantine, with the reason file's content
    assert status == 0
    assert "quarantine   " in out
    assert "reason too-large" in out
    assert "quarantined (too-large)" in out


def test_trace_of_an_unknown_key_or_version_fails_clearly(world: World, cli: Any) -> None:
    # GIVEN a landing bucket without the key, and a key without the version
    world.land("acme/there.json", b"{}")
    landing = world.target.landing_bucket
    # WHEN traced THEN exit 1 and the error names what was not found
    status, _, err = cli("trace", f"s3://{landing}/acme/nowhere.json")
    assert status == 1
    assert f"no s3://{landing}/acme/nowhere.json" in err
    status, _, err = cli("trace", f"s3://{landing}/acme/there.json?versionId=nope")
    assert status == 1
    assert "no version nope of" in err
    # ... and an address that is not s3://BUCKET/KEY is a usage error
    status, _, err = cli("trace", "landing/acme/there.json")
    assert (status, "is not s3://BUCKET/KEY" in err) == (2, True)


# ---------------------------------------------------------------- the hourly reconcile


def land_at(
    world: World, key: str, body: bytes, at: datetime, *, forwarded: bool = True
) -> dict[str, Any]:
    """Upload to landing with moto's clock at `at` (its LastModified) and its event then."""
    import moto.s3.models as moto_s3_models  # noqa: PLC0415  # only this helper patches it

    original = moto_s3_models.utcnow
    moto_s3_models.utcnow = lambda: at.replace(tzinfo=None)
    try:
        return world.land(key, body, at=at, forwarded=forwarded)
    finally:
        moto_s3_models.utcnow = original


def test_hourly_reconcile_finds_a_lost_file_once_and_keeps_its_result(world: World) -> None:
    # GIVEN at 14:20 two files landed during 12:00-13:00 and forwarded: one delivered, one lost
    # on the way (a Firehose drop, an expired DLQ message), and one landed since
    now = datetime(2026, 11, 25, 14, 20, tzinfo=UTC)
    delivered = land_at(world, "acme/kept.json", b"{}", now - timedelta(hours=2))
    land_at(world, "acme/lost.json", b"{}", now - timedelta(hours=1, minutes=50))
    land_at(world, "acme/later.json", b"{}", now - timedelta(minutes=30))
    world.deliver(world.stage([delivered]))
    # WHEN the hourly reconcile runs, and runs again in the same hour
    first = reconcile_hour(world.sources, now, max_listed=1000)
    again = reconcile_hour(world.sources, now + timedelta(minutes=5), max_listed=1000)
    # THEN the hour 12:00 was checked once: one file missing, the later one not looked at
    assert first.hour_start == datetime(2026, 11, 25, 12, tzinfo=UTC)
    assert (first.ran, first.files, first.missing, first.violations) == (True, 2, 1, 1)
    assert not again.ran
    # ... and its result names the lost file for the operator
    result = json.loads(
        world.s3.get_object(Bucket=world.target.staging_bucket, Key=first.result_key)["Body"].read()
    )
    assert first.result_key == "reconcile/dt=2026-11-25/hour=12.json"
    assert (result["ok"], result["summary"]["missing"]) == (False, 1)
    assert [p["key"] for p in result["problems"]] == ["acme/lost.json"]


def test_a_file_whose_s3_event_was_lost_is_found_by_listing_the_landing_bucket(
    world: World, cli: Any
) -> None:
    # GIVEN a file forwarded and delivered, and one whose S3 event never reached the forwarder
    world.deliver(world.stage([world.land("acme/seen.json", b"1")]))
    twenty_minutes_ago = datetime.now(UTC) - timedelta(minutes=20)  # past reconcile's grace
    land_at(world, "acme/unseen.json", b"2", twenty_minutes_ago, forwarded=False)
    # WHEN reconciled from the forwarder's index, then from a listing of the landing bucket
    indexed_status, indexed, _ = cli("reconcile", "--json", "--all", "--since", "1h")
    listed_status, listed, _ = cli(
        "reconcile", "--json", "--all", "--since", "1h", "--list-landing"
    )
    # THEN the index knows only what the forwarder saw; the listing finds the lost event's file
    assert indexed_status == 0
    assert [f["key"] for f in json.loads(indexed)["files"]] == ["acme/seen.json"]
    assert listed_status == 1
    files = {f["key"]: f["status"] for f in json.loads(listed)["files"]}
    assert files == {"acme/seen.json": "delivered", "acme/unseen.json": "missing"}


def test_hourly_reconcile_skips_a_bucket_too_large_to_list(world: World) -> None:
    # GIVEN more landing versions than a run may list, reconciled from the landing bucket
    now = datetime(2026, 11, 25, 14, 20, tzinfo=UTC)
    for n in range(3):
        land_at(world, f"acme/{n}.json", b"{}", now - timedelta(hours=2))
    # WHEN the hourly reconcile runs with room for two
    outcome = reconcile_hour(world.sources._replace(ingest=None), now, max_listed=2)
    # THEN it says so instead of judging from a partial listing, and does not count missing
    assert outcome.skipped is not None
    assert "more than 2 versions" in outcome.skipped
    assert outcome.missing == 0


# ---------------------------------------------------------------- cost at production scale


class CountedMinio:
    """The MinIO client, counting requests and objects listed or read."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.requests = 0
        self.items_read = 0

    def list_objects(self, *args: Any, **kwargs: Any) -> list[Any]:
        self.requests += 1
        found = list(self._client.list_objects(*args, **kwargs))
        self.items_read += len(found)
        return found

    def get_object(self, *args: Any, **kwargs: Any) -> Any:
        self.requests += 1
        self.items_read += 1
        return self._client.get_object(*args, **kwargs)

    def stat_object(self, *args: Any, **kwargs: Any) -> Any:
        self.requests += 1
        return self._client.stat_object(*args, **kwargs)


def counted_aws(target: Deployment) -> tuple[Any, Any, dict[str, int]]:
    """New S3 and DynamoDB clients whose requests and items read are counted."""
    counts = {"requests": 0, "items_read": 0}

    def request(**_: Any) -> None:
        counts["requests"] += 1

    def response(model: Any, parsed: dict[str, Any], **_: Any) -> None:
        counts["items_read"] += int(parsed.get("Count", 0)) + int(parsed.get("KeyCount", 0))
        counts["items_read"] += len(parsed.get("Versions", []))
        counts["items_read"] += sum(len(v) for v in parsed.get("Responses", {}).values())

    clients = (target.client("s3"), target.client("dynamodb"))
    for client in clients:
        client.meta.events.register("before-call", request)
        client.meta.events.register("after-call", response)
    return clients[0], clients[1], counts


def history(world: World, day: datetime, files: int) -> None:
    """`files` landed, forwarded and delivered (a window manifest per 10) in the 10 hours
    before `day`."""
    store = IdempotencyStore(world.target.client("dynamodb"), world.target.idempotency_table, 3600)
    batch: list[dict[str, Any]] = []
    landed: dict[str, LandedFile] = {}
    for n in range(files):
        at = day - timedelta(hours=1 + n % 10, minutes=n % 50)
        key = f"history/{day:%d}/{n}.json"
        version = world.s3.put_object(Bucket=world.target.landing_bucket, Key=key, Body=b"h")
        fid = file_id(world.target.landing_bucket, key, version["VersionId"])
        landed[fid] = LandedFile(
            key, version["VersionId"], 1, version["ETag"], int(at.timestamp() * 1000)
        )
        envelope = {"key": key, "version_id": version["VersionId"], "file_id": fid, "body": "h"}
        batch.append(entry(envelope | {"event_time_ms": landed[fid].landed_at_ms}))
        if len(batch) == 10 or n == files - 1:
            world.window_manifest(f"history-{day:%d}-{n}", batch, at)
            batch = []
    assert store.complete(list(landed), landed) == []


def hour_cost(world: World, day: datetime, history_files: int) -> tuple[dict[str, int], int]:
    """The requests and items read of the hourly reconcile of `day` 12:00 over `history_files`
    of history and the same work: 3 files landed in that hour, 2 delivered and 1 lost."""
    history(world, day.replace(hour=12), history_files)
    hour = day.replace(hour=12, minute=10)
    kept = [land_at(world, f"hour/{day:%d}/kept-{n}.json", b"{}", hour) for n in range(2)]
    land_at(world, f"hour/{day:%d}/lost.json", b"{}", hour)
    world.window_manifest(f"w-{day:%d}", [entry(k) for k in kept], hour)
    s3, dynamodb, counts = counted_aws(world.target)
    minio = CountedMinio(world.minio)
    sources = world.sources._replace(
        ingest=IngestIndex(dynamodb, world.target.idempotency_table),
        landing=s3,
        staging=s3,
        ledger=Ledger(dynamodb, world.target.ledger_table, 3600),
        minio=minio,  # type: ignore[arg-type]  # the same calls, counted
    )
    outcome = reconcile_hour(sources, day.replace(hour=14, minute=20), max_listed=1000)
    assert (outcome.files, outcome.missing) == (3, 1)
    return counts, minio.requests + minio.items_read


def test_reconcile_cost_is_independent_of_history(world: World) -> None:
    # GIVEN the same hour's work over 10 files of history, then over 100x as many
    small, small_minio = hour_cost(world, datetime(2026, 11, 24, tzinfo=UTC), history_files=10)
    large, large_minio = hour_cost(world, datetime(2026, 11, 26, tzinfo=UTC), history_files=1000)
    # WHEN the hourly reconcile's requests and items read are counted
    # THEN they are the same within 10 %: it reads the hour, never the history
    assert large["requests"] <= 1.1 * small["requests"], (small, large)
    assert large["items_read"] <= 1.1 * small["items_read"], (small, large)
    assert large_minio <= 1.1 * small_minio, (small_minio, large_minio)
