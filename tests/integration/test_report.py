"""The daily report (delivery.reporting, .report_store, .report, infrastructure.cli.report): moto
in process for AWS, the session's SeaweedFS as MinIO.

Windows are delivered for real by delivery.delivering.deliver_window on a clock the test sets, so
the manifests, the ledger's records and their latency histograms are the ones delivery writes;
every figure is checked against what the test landed and did, worked out here by hand.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import fastjsonschema
import pytest

from delivery import report
from delivery.ledger import Ledger
from delivery.reconciling import IngestIndex
from delivery.redrive_log import RedriveLog
from delivery.report_cloudwatch import CloudWatchOperations
from delivery.report_store import REPORTS_PREFIX
from delivery.reporting import ReportSettings, ReportSources, build_report, fates
from infrastructure import environment
from infrastructure.cli import report as report_command
from infrastructure.local.lambdas.context import LocalLambdaContext
from infrastructure.tunables import load_tunables
from tests.conftest import REGION
from tests.integration.test_reconcile import (
    CountedMinio,
    World,
    counted_aws,
    entry,
    world,  # noqa: F401  # a fixture, used by name
)
from transform import quarantine
from transform.envelope import file_id
from transform.idempotency import IdempotencyStore, LandedFile

pytestmark = pytest.mark.slow  # SeaweedFS is a server

SCHEMA = Path(__file__).parents[2] / "docs" / "report.schema.json"
DAY = date(2026, 11, 25)
MIDNIGHT = datetime(2026, 11, 25, tzinfo=UTC)


def at(hours: int, minutes: int = 0, seconds: int = 0, day: int = 0) -> datetime:
    return MIDNIGHT + timedelta(days=day, hours=hours, minutes=minutes, seconds=seconds)


@pytest.fixture(scope="module")
def validate() -> Any:
    return fastjsonschema.compile(json.loads(SCHEMA.read_text()))


class Clock:
    """The time delivery and the ledger see: set by the test."""

    def __init__(self, moment: datetime) -> None:
        self.now = moment.timestamp()

    def set(self, moment: datetime) -> None:
        self.now = moment.timestamp()

    def __call__(self) -> float:
        return self.now


@dataclasses.dataclass
class Day:
    """The world, with delivery and the ledger on the test's clock."""

    world: World
    clock: Clock

    @property
    def ledger(self) -> Ledger:
        target = self.world.target
        return Ledger(target.client("dynamodb"), target.ledger_table, 86_400, clock=self.clock)

    def land(self, key: str, body: bytes, when: datetime, **options: Any) -> dict[str, Any]:
        return self.world.land(key, body, at=when, **options)

    def hold(self, key: str, when: datetime, reason: str) -> None:
        """Landed, and held back by the forwarder unclaimed (too large, version gone)."""
        envelope = self.land(key, b"held", when, forwarded=False)
        target = self.world.target
        store = IdempotencyStore(target.client("dynamodb"), target.idempotency_table, 3600)
        landed = LandedFile(key, envelope["version_id"], 4, "etag", int(when.timestamp() * 1000))
        store.record_held(envelope["file_id"], landed, reason)
        self.reason(envelope["file_id"], reason)

    def reason(self, fid: str, reason: Any) -> None:
        quarantine.write(
            self.world.s3,
            self.world.target.staging_bucket,
            quarantine.QuarantineEntry(
                file_id=fid, reason=reason, detail="held", stage="forwarder"
            ),
        )

    def deliver(self, envelopes: list[dict[str, Any]], staged: datetime, done: datetime) -> Any:
        key = self.world.stage(envelopes, staged)
        self.clock.set(done)
        deps = dataclasses.replace(self.world.deps, clock=self.clock, ledger=self.ledger)
        from delivery.delivering import deliver_window  # noqa: PLC0415  # beside its use

        return deliver_window(self.world.target.staging_bucket, key, deps)

    def window_of(self, envelopes: list[dict[str, Any]], staged: datetime) -> str:
        """Staged, never delivered: its window id."""
        key = self.world.stage(envelopes, staged)
        return key.rsplit("/", 1)[-1].removesuffix(".json.gz")


def sources(place: World, **changes: Any) -> ReportSources:
    target = place.target
    dynamodb = target.client("dynamodb")
    minio, settings = target.minio()
    dlqs = {
        "ingest": target.ingest_dlq_url,
        "delivery": target.delivery_dlq_url,
        "requeue": target.requeue_dlq_url,
    }
    fields: dict[str, Any] = {
        "ingest": IngestIndex(dynamodb, target.idempotency_table),
        "landing_bucket": target.landing_bucket,
        "staging": place.s3,
        "staging_bucket": target.staging_bucket,
        "ledger": Ledger(dynamodb, target.ledger_table, 86_400),
        "redrives": RedriveLog(dynamodb, target.ledger_table, 86_400),
        "minio": minio,
        "archive_bucket": settings.bucket,
        "sqs": target.client("sqs"),
        "dlqs": dlqs,
        "operations": CloudWatchOperations(
            boto3.client("cloudwatch", region_name=REGION),
            deployment="unit",
            namespace="Sluice",
            streams=target.streams,
            queues={name: url.rsplit("/", 1)[-1] for name, url in dlqs.items()},
        ),
    }
    return ReportSources(**(fields | changes))


SETTINGS = ReportSettings(
    deployment="unit",
    slo_p95_seconds=85,
    slo_p999_seconds=180,
    top_producers=1,
    archive_prefix="sluice",
    buffers_prefix="buffers/",
    file_extension=".json.gz",
)


@pytest.fixture
def day(world: World) -> Day:  # noqa: F811  # the fixture imported above
    return Day(world, Clock(at(9)))


def a_known_day(day: Day) -> dict[str, Any]:
    """The day every figure is worked out for below; returns the test's own bookkeeping."""
    body = b'{"n": 1}'
    # a file of the day before, staged just after midnight: its window counts, the file not
    early = day.land("acme/yesterday.json", body, at(-1, 59, 50))
    day.deliver([early], staged=at(0, 0, 30), done=at(0, 0, 40))
    # four files delivered 80-90 s after landing, one excluded by delivery (its sha256 is wrong)
    good = [day.land(f"acme/a-{n}.json", body, at(9, 59, 30)) for n in range(3)]
    api = day.land("beta/api/files/2026-11-25/x.json", b'{"api": true}', at(9, 59, 40))
    bad = day.land("acme/bad.json", body, at(9, 59, 30)) | {"body_sha256": "0" * 64}
    delivered = day.deliver([*good, api, bad], staged=at(10), done=at(10, 1))
    # ... and a second copy of one of them (a Firehose duplicate): an EMPTY window
    assert day.deliver([good[0]], staged=at(10, 0, 5), done=at(10, 1, 5)).outcome == "empty"
    # a file claimed by a window not yet delivered; one by a window parked after two redrives
    pending = day.land("acme/pending.json", body, at(10, 59))
    waiting = day.window_of([pending], at(11))
    day.ledger.claim_files(waiting, [pending["file_id"]])
    day.ledger.begin(waiting, f"buffers/{waiting}.json.gz", [])
    parked = day.land("acme/parked.json", body, at(11, 59))
    stuck = day.window_of([parked], at(12))
    day.ledger.claim_files(stuck, [parked["file_id"]])
    day.ledger.begin(stuck, f"buffers/{stuck}.json.gz", [])
    for _ in range(2):
        day.ledger.record_redrive(stuck, f"buffers/{stuck}.json.gz")
    day.ledger.mark_parked(stuck, "redriven too often")
    # lost on the way; quarantined by the processor; too large; its version gone
    day.land("acme/lost.json", body, at(13))
    odd = day.land("acme/odd.json", body, at(14))
    day.reason(odd["file_id"], "payload-schema")
    day.hold("acme/huge.bin", at(14, 10), "too-large")
    day.hold("acme/gone.json", at(14, 20), "version-gone")
    # delivered, and listed again in another window's manifest: delivered twice
    twice = day.land("acme/twice.json", body, at(15))
    day.deliver([twice], staged=at(15, 1), done=at(15, 1, 30))
    day.world.window_manifest("w-copy", [entry(twice)], at(15, 2))
    # landed a moment before midnight, staged and delivered the next day: delivered
    late = day.land("acme/late.json", body, at(23, 59, 30))
    day.deliver([late], staged=at(0, 0, 50, day=1), done=at(0, 1, day=1))
    # redrive's probes: MinIO found unavailable at 09:05 and 09:10
    log = RedriveLog(
        day.world.target.client("dynamodb"), day.world.target.ledger_table, 86_400, day.clock
    )
    for minute, healthy in ((0, True), (5, False), (10, False), (15, True)):
        day.clock.set(at(9, minute))
        log.record_probe(healthy, max_interval_ms=600_000)
    # ... and its runs: three windows from the DLQ (two for the environment), one re-invoked
    log.record_run({"dlq_redriven": 3, "environment_redriven": 2})
    log.record_run({"reinvoked": 1})
    # a failed processor invocation's batch: two records requeued, one the processor failed
    lines = [{"errorCode": "Lambda.FunctionError"}] * 2 + [{"errorCode": "Lambda.ProcessingFailed"}]
    day.world.s3.put_object(
        Bucket=day.world.target.staging_bucket,
        Key="errors/processing-failed/dt=2026-11-25/sluice-0-1-x",
        Body=gzip.compress(b"".join(json.dumps(line).encode() + b"\n" for line in lines)),
    )
    return {"delivered": delivered, "sizes": {"body": len(body), "api": 13, "held": 4}}


def test_every_figure_of_a_known_day(day: Day, validate: Any) -> None:
    # GIVEN a day with files delivered, excluded, quarantined, too large, gone, pending,
    # parked, lost, delivered twice and late, a duplicate window, an outage and requeues
    known = a_known_day(day)
    # WHEN its report is made the next morning
    document = build_report(sources(day.world), SETTINGS, DAY, at(8, day=1))
    # THEN it is valid against the published schema
    validate(document)
    # ... each file landed that day has one fate, and they add up
    files = document["files"]
    assert (files["landed"], files["landed_by_s3"], files["landed_by_api"]) == (13, 12, 1)
    assert files["forwarded"] == 11  # all but the two the forwarder held back
    assert fates(document) == {
        "delivered": 5,
        "excluded": 1,
        "quarantined": 1,
        "too_large": 1,
        "versions_gone": 1,
        "pending": 1,
        "parked": 1,
        "missing": 1,
        "delivered_twice": 1,
        "checksum_mismatch": 0,
    }
    assert sum(fates(document).values()) == files["landed"]
    assert files["excluded"]["by_reason"] == {"checksum-mismatch": 1}
    assert files["quarantined"]["by_reason"] == {"payload-schema": 1}
    # ... the verdict says what is wrong, first; pending counts, the day being settled
    verdict = document["verdict"]
    assert verdict["status"] == "not_ok"
    assert verdict["sentence"] == (
        "NOT OK: 4 of 13 files landed on 2026-11-25 are neither delivered nor accounted for "
        "(1 missing, 1 delivered twice, 1 parked, 1 still pending)."
    )
    assert verdict["subject"].startswith("Sluice unit 2026-11-25: NOT OK, 4 of 13 files")
    assert "latency p95 90 s is over its 85 s objective" in verdict["attention"]
    assert "MinIO was unavailable for about 10 minutes" in verdict["attention"]
    # ... windows staged that day: 00:00 and 10:00 and 15:01 delivered, a duplicate, one
    # waiting, one parked (the next day's late window and a hand-written copy are not)
    windows = document["windows"]
    assert {k: windows[k] for k in ("staged", "delivered", "empty", "parked", "waiting")} == {
        "staged": 6,
        "delivered": 3,
        "empty": 1,
        "parked": 1,
        "waiting": 1,
    }
    assert (windows["windows_redriven"], windows["redrives"]) == (1, 2)
    assert windows["archive_parts"] == 3
    assert windows["files_archived"] == 1 + 4 + 1
    # ... bytes: what landed, what of it arrived, and the archives of the day's windows
    sizes = known["sizes"]
    assert document["bytes"]["landed"] == 10 * sizes["body"] + sizes["api"] + 2 * sizes["held"]
    assert document["bytes"]["delivered"] == 4 * sizes["body"] + sizes["api"]
    assert windows["archive_bytes"] == document["bytes"]["archives"] > 0
    assert windows["archived_file_bytes"] == 5 * sizes["body"] + sizes["api"]
    assert windows["compression_ratio"] == round(
        windows["archived_file_bytes"] / windows["archive_bytes"], 2
    )
    # ... latency of the day's windows' files: 50 s, 80 s and four of 90 s
    latency = document["latency"]
    assert (latency["files"], latency["p50_seconds"], latency["p95_seconds"]) == (6, 90, 90)
    assert (latency["p999_seconds"], latency["max_seconds"]) == (90, 90)
    objective = latency["objective"]
    assert (objective["p95_met"], objective["p999_met"]) == (False, True)
    assert objective["share_within_p95"] == pytest.approx(2 / 6)
    assert objective["share_within_p999"] == 1
    assert latency["slowest_hour"] == {"hour": "10", "p95_seconds": 90, "files": 4}
    # ... producers: the top one by name, the rest summed
    producers = document["producers"]
    assert producers["count"] == 2
    assert producers["top"] == [
        {
            "producer": "acme",
            "files": 12,
            "bytes": 10 * sizes["body"] + 2 * sizes["held"],
            "rejected": 4,
            "not_delivered": 4,
        }
    ]
    assert producers["others"] == {
        "producers": 1,
        "files": 1,
        "bytes": sizes["api"],
        "rejected": 0,
        "not_delivered": 0,
    }
    # ... hours: files by landing hour, latency by the hour their window was staged
    hours = {h["hour"]: h for h in document["hours"]}
    assert len(hours) == 24
    assert {h: v["files"] for h, v in hours.items() if v["files"]} == {
        "09": 5,
        "10": 1,
        "11": 1,
        "13": 1,
        "14": 3,
        "15": 1,
        "23": 1,
    }
    assert {h: v["latency_p95_seconds"] for h, v in hours.items() if v["latency_p95_seconds"]} == {
        "00": 50,
        "10": 90,
        "15": 90,
    }
    # ... operations: what Sluice keeps is known, what only CloudWatch holds is unknown here
    operations = document["operations"]
    assert operations["minio_unavailable_minutes"] == {
        "value": 10.0,
        "probes": 4,
        "failed_probes": 2,
    }
    assert operations["requeued_records"] == {"value": 2, "error_objects": 1}
    assert operations["busiest_minute"] == {"minute": "09:59", "files": 5, "bytes": 4 * 8 + 13}
    assert operations["redrives"] == {
        "value": {"from_dlq": 3, "of_which_environment": 2, "reinvoked": 1, "parked": 0}
    }
    assert operations["duplicates_absorbed"]["empty_windows"] == 1
    # ... the second copy of good[0], recorded by the window that dropped it
    assert operations["duplicates_absorbed"]["firehose_duplicates"] == {"value": 1}
    for name in ("alarms_fired", "firehose_quota_headroom"):
        assert operations[name]["value"] is None
        assert operations[name]["unknown"]
    assert operations["dlq_depths"]["at"] == "2026-11-26T00:00:00Z"
    assert operations["dlq_depths"]["depths"]["value"] is None
    assert operations["duplicates_absorbed"]["sqs_redeliveries"]["value"] is None


def test_the_day_so_far(day: Day, validate: Any) -> None:
    # GIVEN a file delivered this morning and one landed a minute ago, not yet claimed
    body = b"{}"
    first = day.land("acme/early.json", body, at(9))
    day.deliver([first], staged=at(9, 0, 50), done=at(9, 1))
    day.land("acme/now.json", body, at(9, 59))
    # WHEN the report is made at 10:00 that day
    document = build_report(sources(day.world), SETTINGS, DAY, at(10))
    validate(document)
    # THEN it covers 00:00-10:00, the recent file is on its way, and the verdict says so far
    assert document["period"] == {
        "start": "2026-11-25T00:00:00Z",
        "end": "2026-11-25T10:00:00Z",
        "complete": False,
        "settled": False,
    }
    assert (document["files"]["delivered"], document["files"]["pending"]) == (1, 1)
    assert document["verdict"]["status"] == "ok"
    assert document["verdict"]["sentence"] == (
        "OK: all 2 files landed on 2026-11-25 up to 10:00 UTC are delivered (1) or on their "
        "way (1)."
    )
    assert len(document["hours"]) == 10
    # ... and the DLQs are read now, from SQS itself
    assert document["operations"]["dlq_depths"] == {
        "at": "2026-11-25T10:00:00Z",
        "depths": {"value": {"ingest": 0, "delivery": 0, "requeue": 0}},
    }


def test_a_day_not_begun_is_refused(day: Day) -> None:
    # WHEN a report is asked for a day not yet begun
    # THEN it is refused, naming the day
    with pytest.raises(ValueError, match="2026-11-25 has not begun"):
        build_report(sources(day.world), SETTINGS, DAY, at(-1))


# ---------------------------------------------------------------- cost at production scale


def history(day: Day, around: datetime, files: int) -> None:
    """`files` landed, forwarded, staged and delivered on the days before and after `around`
    (a window manifest, a staged window and a ledger window per 10), and reason files."""
    target = day.world.target
    store = IdempotencyStore(target.client("dynamodb"), target.idempotency_table, 3600)
    landed: dict[str, LandedFile] = {}
    batch: list[dict[str, Any]] = []
    for n in range(files):
        when = around + timedelta(days=-1 if n % 2 else 2, hours=n % 20, minutes=n % 50)
        key = f"history/{around:%d}/{n}.json"
        version = day.world.s3.put_object(Bucket=target.landing_bucket, Key=key, Body=b"h")
        fid = file_id(target.landing_bucket, key, version["VersionId"])
        landed[fid] = LandedFile(key, version["VersionId"], 1, "e", int(when.timestamp() * 1000))
        envelope = {"key": key, "version_id": version["VersionId"], "file_id": fid, "body": "h"}
        batch.append(entry(envelope | {"event_time_ms": landed[fid].landed_at_ms}))
        if n % 7 == 0:
            day.reason(fid, "payload-schema")
        if len(batch) == 10 or n == files - 1:
            window = f"history-{around:%d}-{n}"
            day.world.window_manifest(window, batch, when)
            day.world.stage([], when)
            day.ledger.claim_files(window, [e["file_id"] for e in batch])
            batch = []
    assert store.complete(list(landed), landed) == []


def day_cost(day: Day, around: datetime, history_files: int) -> tuple[dict[str, int], int]:
    """Requests and items read of the report of `around`'s day over `history_files` of history
    and the same day's work: 3 files landed, 2 delivered and 1 lost."""
    history(day, around, history_files)
    kept = [
        day.land(f"day/{around:%d}/kept-{n}.json", b"{}", around + timedelta(hours=12))
        for n in range(2)
    ]
    day.land(f"day/{around:%d}/lost.json", b"{}", around + timedelta(hours=12))
    day.deliver(
        kept,
        staged=around + timedelta(hours=12, minutes=1),
        done=around + timedelta(hours=12, minutes=2),
    )
    s3, dynamodb, counts = counted_aws(day.world.target)
    minio = CountedMinio(day.world.minio)
    counted = sources(
        day.world,
        ingest=IngestIndex(dynamodb, day.world.target.idempotency_table),
        staging=s3,
        ledger=Ledger(dynamodb, day.world.target.ledger_table, 3600),
        redrives=RedriveLog(dynamodb, day.world.target.ledger_table, 3600),
        minio=minio,
    )
    document = build_report(counted, SETTINGS, around.date(), around + timedelta(days=1, hours=8))
    assert (document["files"]["landed"], document["files"]["missing"]) == (3, 1)
    return counts, minio.requests + minio.items_read


def test_report_cost_is_independent_of_history(day: Day) -> None:
    # GIVEN the same day's work over 10 files of history around it, then over 100x as many
    small, small_minio = day_cost(day, datetime(2026, 11, 10, tzinfo=UTC), history_files=10)
    large, large_minio = day_cost(day, datetime(2026, 11, 20, tzinfo=UTC), history_files=1000)
    # WHEN the report's requests and items read are counted
    # THEN they are the same: it reads the day, never the history
    assert large == small, (small, large)
    assert large_minio == small_minio, (small_minio, large_minio)


# ---------------------------------------------------------------- the function


@pytest.fixture
def function(
    day: Day, function_env: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    """The report function's environment on the world, and a queue subscribed to its topic."""
    target = day.world.target
    function_env("report")
    sns = boto3.client("sns", region_name=REGION)
    topic = sns.create_topic(Name="unit-reports")["TopicArn"]
    sqs = boto3.client("sqs", region_name=REGION)
    inbox = sqs.create_queue(QueueName="unit-report-inbox")["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn["Attributes"]["QueueArn"])
    for name, value in {
        environment.PROFILE: "local",  # SeaweedFS answers plain HTTP, which the aws profile refuses
        environment.DEPLOYMENT: "unit",
        environment.LANDING_BUCKET: target.landing_bucket,
        environment.STAGING_BUCKET: target.staging_bucket,
        environment.IDEMPOTENCY_TABLE: target.idempotency_table,
        environment.LEDGER_TABLE: target.ledger_table,
        environment.MINIO_SECRET: target.minio_secret,
        environment.FIREHOSE_STREAMS: ",".join(target.streams),
        environment.INGEST_DLQ_URL: target.ingest_dlq_url,
        environment.DELIVERY_DLQ_URL: target.delivery_dlq_url,
        environment.REQUEUE_DLQ_URL: target.requeue_dlq_url,
        environment.REPORT_TOPIC_ARN: topic,
    }.items():
        monkeypatch.setenv(name, value)
    load_tunables.cache_clear()
    report.dependencies.cache_clear()
    yield {"sqs": sqs, "inbox": inbox}
    report.dependencies.cache_clear()


def invoke(event: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = report.lambda_handler(event, LocalLambdaContext("report", 900))
    return result


def test_the_function_stores_and_publishes_a_report_once(
    day: Day, function: dict[str, Any]
) -> None:
    # GIVEN a day with a file delivered
    body = b"{}"
    first = day.land("acme/one.json", body, at(9))
    day.deliver([first], staged=at(9, 1), done=at(9, 1, 30))
    # WHEN the schedule's event of the next morning invokes the function, twice (a retry)
    event = {"scheduled_time": "2026-11-26T08:00:00Z", "days_back": 1}
    first_run, second_run = invoke(event), invoke(event)
    # THEN the day before is reported, stored as JSON, text and HTML, and mailed once
    assert first_run["day"] == "2026-11-25"
    assert first_run["published"] is True
    assert second_run["published"] is False
    staging = day.world.target.staging_bucket
    stored = {
        key: day.world.s3.get_object(Bucket=staging, Key=key)["Body"].read()
        for key in first_run["keys"]
    }
    assert set(stored) == {f"{REPORTS_PREFIX}2026-11-25.{ext}" for ext in ("txt", "html", "json")}
    document = json.loads(stored[f"{REPORTS_PREFIX}2026-11-25.json"])
    assert document["files"]["delivered"] == 1
    assert (
        stored[f"{REPORTS_PREFIX}2026-11-25.txt"]
        .decode()
        .startswith(document["verdict"]["sentence"][:40])
    )
    messages = (
        function["sqs"]
        .receive_message(QueueUrl=function["inbox"], MaxNumberOfMessages=10)
        .get("Messages", [])
    )
    assert len(messages) == 1
    notification = json.loads(messages[0]["Body"])
    assert notification["Subject"] == document["verdict"]["subject"]
    assert notification["Message"].startswith(document["verdict"]["sentence"][:40])
    # ... and a rerun for that date, by name, gives the same report
    assert invoke({"date": "2026-11-25"})["published"] is False


def test_an_event_naming_no_day_fails_saying_why(function: dict[str, Any]) -> None:
    # WHEN the function is invoked with a date it cannot read
    # THEN it fails, naming the field
    with pytest.raises(report.ReportEventError, match="'date' must be YYYY-MM-DD"):
        invoke({"date": "25/11/2026"})


# ---------------------------------------------------------------- sluice report


@pytest.fixture
def cli(
    day: Day, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> Any:
    """Run `sluice report …` against the world: (exit status, stdout, stderr)."""
    from infrastructure.cli import deployment, main  # noqa: PLC0415  # beside its use

    monkeypatch.setattr(deployment, "resolve", lambda args, root: day.world.target)
    monkeypatch.setenv(environment.ROOT, str(tmp_path))

    def run(*argv: str) -> tuple[int, str, str]:
        status = main.main(["report", *argv])
        out, err = capsys.readouterr()
        return status, out, err

    return run


def test_sluice_report_prints_and_writes_each_format(
    day: Day, cli: Any, validate: Any, tmp_path: Path
) -> None:
    # GIVEN a day with a file delivered
    first = day.land("acme/one.json", b"{}", at(9))
    day.deliver([first], staged=at(9, 1), done=at(9, 1, 30))
    # WHEN the operator asks for it as text, JSON and into a file as HTML
    status, text, err = cli("--date", "2026-11-25")
    json_status, as_json, _ = cli("--date", "2026-11-25", "--format", "json")
    out = tmp_path / "pages"
    out.mkdir()
    html_status, printed, html_err = cli(
        "--date", "2026-11-25", "--format", "html", "--out", str(out)
    )
    # THEN the text starts with the verdict and fits 80 columns; the HTML page is written too
    assert status == json_status == html_status == 0
    assert text.startswith("OK: the 1 file landed on 2026-11-25 is delivered (1).")
    assert max(len(line) for line in text.splitlines()) <= 80
    page = tmp_path / "build" / "reports" / "unit-2026-11-25.html"
    assert f"HTML report: {page}" in err
    assert page.read_text().startswith("<!DOCTYPE html>")
    # ... the JSON is the schema's; --out writes the chosen format there, printing nothing
    validate(json.loads(as_json))
    assert printed == ""
    assert (out / "2026-11-25.html").read_text().startswith("<!DOCTYPE html>")
    assert "report written to" in html_err


def test_sluice_report_refuses_a_day_not_begun(cli: Any) -> None:
    # WHEN the operator asks for tomorrow
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    status, out, err = cli("--date", tomorrow)
    # THEN it is a usage error in one line
    assert status == 2
    assert out == ""
    assert err.strip() == (
        f"sluice report: --date {tomorrow} has not begun yet (it is "
        f"{datetime.now(UTC):%Y-%m-%d} UTC)"
    )


def test_the_tunables_name_the_report_function() -> None:
    # GIVEN the shipped tunables
    spec = load_tunables().functions["report"]
    # THEN the report function's handler is this module's, and it is bound what it reads
    assert spec.handler == "delivery.report.lambda_handler"
    assert environment.REPORT_TOPIC_ARN in spec.resource_environment
    assert report_command.FORMATS == ("txt", "json", "html")
