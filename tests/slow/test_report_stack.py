"""The daily report of a known day on the local stack (issue 18): every figure checked against
what the test itself landed and what is in MinIO.

A workload with files delivered (by S3 and by the HTTPS intake), quarantined by the processor,
too large, whose version is gone before the forwarder reads it, excluded by delivery (a `ref`
whose version goes away before delivery reads it), every S3 event duplicated for a while, and a
MinIO outage that makes files late until redrive delivers them. The report is made by the
report function (invoked as the schedule does) and by `sluice report`; the truth it is checked
against is worked out here from the test's own bookkeeping and MinIO's manifests and archives,
never from the ledger or the index the report reads. The objective is tightened for the stack
(p95 30 s, p99.9 45 s) so that the outage's files are late and the others are not.
"""

from __future__ import annotations

import gzip
import json
import math
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest

from infrastructure.cli import deployment, main
from infrastructure.cli.deployment import Deployment
from infrastructure.local.stack.local_stack import LocalStack, StackOptions
from infrastructure.queues import queue_depth
from infrastructure.tunables import read_tunables_document
from tests.integration.runtime_support import wait_until
from tests.slow.least_privilege import OPERATIONS_FILE, call_shape, recorded_operations
from tests.slow.test_gamedays import SETTLE_SECONDS, idempotency_status
from tests.slow.test_local_stack import TIME_SCALE
from transform.envelope import file_id

pytestmark = pytest.mark.slow

SCHEMA = Path(__file__).parents[2] / "docs" / "report.schema.json"
P95_OBJECTIVE = 30
P999_OBJECTIVE = 45
MAX_FILE_BYTES = 150_000
OUTAGE_SECONDS = 60
MARGIN_SECONDS = 3
"""How far a latency the test measures (a manifest's time in MinIO, to the second) may be from
the one delivery recorded (its clock at DELIVERED, in whole-second buckets)."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A stack of its own: a tighter objective, a small max_file_bytes (a too-large file is
    cheap), and a redrive that takes DLQ records two seconds old (it drains after the outage)."""
    document = read_tunables_document()
    document["report"].update(slo_p95_seconds=P95_OBJECTIVE, slo_p999_seconds=P999_OBJECTIVE)
    document["forwarder"]["max_file_bytes"] = MAX_FILE_BYTES
    document["redrive"].update(min_age_seconds=2, jitter_seconds=1)
    tunables = tmp_path_factory.mktemp("tunables") / "tunables.json"
    tunables.write_text(json.dumps(document))
    root = tmp_path_factory.mktemp("report")
    (root / "sdk").mkdir()
    options = StackOptions(
        root=root, time_scale=TIME_SCALE, tunables_file=tunables, sdk_calls_dir=root / "sdk"
    )
    started = LocalStack(options).start()
    try:
        yield started
    finally:
        started.stop(flush=False)


@dataclass
class Landed:
    key: str
    version_id: str
    body: bytes
    at: datetime
    """Just before it was put: its S3 event's time is at or after this, within the request."""
    fate: str = "delivered"
    """delivered, quarantined, too_large, version_gone or excluded."""

    @property
    def producer(self) -> str:
        return self.key.split("/", 1)[0]


MINUTE_EDGE_SECONDS = 2.0


def clear_of_a_minute_edge() -> datetime:
    """Now, once at least 2 s from the next minute: the test counts a file in the minute it
    sent it, the report in the minute S3 received it, and those must be the same minute."""
    now = datetime.now(UTC)
    to_next_minute = 60 - now.second - now.microsecond / 1e6
    if to_next_minute < MINUTE_EDGE_SECONDS:
        time.sleep(to_next_minute + 0.1)
        now = datetime.now(UTC)
    return now


@dataclass
class Workload:
    stack: LocalStack
    capsys: pytest.CaptureFixture[str]
    landed: list[Landed] = field(default_factory=list)
    dlq_seen: int = 0

    @property
    def target(self) -> Deployment:
        assert self.stack.file is not None
        return deployment.from_stack(self.stack.file)

    def sluice(self, *argv: str, expect: int | None = 0) -> str:
        status = main.main(list(argv))
        captured = self.capsys.readouterr()
        if expect is not None:
            assert status == expect, f"sluice {' '.join(argv)}: {captured.out}{captured.err}"
        return captured.out

    def put(self, key: str, body: bytes, fate: str = "delivered") -> Landed:
        at = clear_of_a_minute_edge()
        answer = self.target.client("s3").put_object(
            Bucket=self.target.landing_bucket, Key=key, Body=body
        )
        landed = Landed(key, answer["VersionId"], body, at, fate)
        self.landed.append(landed)
        return landed

    def post(self, name: str, body: bytes) -> Landed:
        """Through the HTTPS intake, as the producer demo."""
        stack = self.stack.file
        assert stack is not None
        assert stack.intake_endpoint is not None
        assert stack.demo_producer_key is not None
        at = clear_of_a_minute_edge()
        request = urllib.request.Request(  # noqa: S310  # the stack's own loopback endpoint
            f"{stack.intake_endpoint}/v1/files/{urllib.parse.quote(name)}",
            data=body,
            method="POST",
            headers={
                "Authorization": f"Bearer {stack.demo_producer_key}",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310  # as above
            answer = json.loads(response.read())
        landed = Landed(answer["key"], answer["version_id"], body, at)
        self.landed.append(landed)
        return landed

    def forget_version(self, landed: Landed) -> None:
        self.target.client("s3").delete_object(
            Bucket=self.target.landing_bucket, Key=landed.key, VersionId=landed.version_id
        )


def body(n: int, size: int = 0) -> bytes:
    text = json.dumps({"n": n, "pad": "x" * (n * 53 % 700)})
    return (text + " " * max(0, size - len(text))).encode()


def run_workload(work: Workload) -> None:
    target = work.target
    # files delivered: three producers by S3, one by the HTTPS intake
    for n in range(12):
        work.put(f"{('acme', 'beta', 'gamma')[n % 3]}/2026/file-{n}.json", body(n))
    for n in range(2):
        work.post(f"api-{n}.json", body(100 + n))
    # quarantined by the processor: orders that fail their payload schema
    for n in range(2):
        work.put(f"orders/bad-{n}.ndjson", b'{"order_id": 7, "currency": "XYZ"}\n', "quarantined")
    # too large to forward
    work.put("acme/huge.bin", b"h" * (MAX_FILE_BYTES + 1), "too_large")
    # its version gone before the forwarder reads it
    work.sluice("pause", "forwarder")
    work.forget_version(work.put("beta/gone.json", body(7), "version_gone"))
    work.sluice("resume", "forwarder")
    # a `ref` whose version goes away after it is forwarded, before delivery reads it
    work.sluice("pause", "delivery")
    ref = work.put("gamma/big-ref.bin", b"r" * 100_000, "excluded")
    wait_until(
        lambda: idempotency_status(target, ref.key) == "COMPLETED",
        what="the ref forwarded",
        timeout=SETTLE_SECONDS,
    )
    work.forget_version(ref)
    work.sluice("resume", "delivery")
    # every S3 event and ingest message twice, for a while
    work.sluice("chaos", "duplicate-events", "--seconds", "10")
    for n in range(6):
        work.put(f"delta/dup-{n}.json", body(200 + n))
        time.sleep(0.5)
    # MinIO cut: files landed now are late, delivered once redrive finds MinIO back
    work.sluice("chaos", "minio-down", "--seconds", str(OUTAGE_SECONDS))
    for n in range(6):
        work.put(f"acme/late-{n}.json", body(300 + n))
    work.dlq_seen = wait_until(
        lambda: queue_depth(target.client("sqs"), target.delivery_dlq_url),
        what="failed deliveries in the delivery DLQ",
        timeout=SETTLE_SECONDS,
    )
    wait_until(
        lambda: not json.loads(work.sluice("chaos", "status", "--json"))["minio_down"]["armed"],
        what="MinIO back",
        timeout=SETTLE_SECONDS,
    )


@dataclass
class MinioTruth:
    """What MinIO holds, read by the test: window manifests and archive objects."""

    manifests: dict[str, dict[str, Any]]
    """Window id -> its manifest."""
    modified: dict[str, datetime]
    """Window id -> when its manifest was written."""
    archives: dict[str, int]
    """Archive key -> size."""

    @classmethod
    def read(cls, target: Deployment) -> MinioTruth:
        minio, settings = target.minio()
        manifests, modified, archives = {}, {}, {}
        for obj in minio.list_objects(settings.bucket, recursive=True):
            name = str(obj.object_name)
            if "/_incoming/" in name:
                continue
            if name.endswith(".tar.gz"):
                archives[name] = int(obj.size or 0)
            elif name.endswith(".manifest.json"):
                document = json.loads(minio.get_object(settings.bucket, name).read())
                manifests[document["window_id"]] = document
                assert obj.last_modified is not None
                modified[document["window_id"]] = obj.last_modified
        return cls(manifests, modified, archives)

    def placed(self) -> Counter[str]:
        """file_id -> the number of window manifests listing it."""
        return Counter(f["file_id"] for m in self.manifests.values() for f in m["files"])

    def excluded(self) -> dict[str, str]:
        return {x["file_id"]: x["reason"] for m in self.manifests.values() for x in m["excluded"]}


def file_id_of(target: Deployment, landed: Landed) -> str:
    return file_id(target.landing_bucket, landed.key, landed.version_id)


def all_arrived(work: Workload) -> MinioTruth | None:
    truth = MinioTruth.read(work.target)
    placed, excluded = truth.placed(), truth.excluded()
    for landed in work.landed:
        fid = file_id_of(work.target, landed)
        if landed.fate == "delivered" and fid not in placed:
            return None
        if landed.fate == "excluded" and fid not in excluded:
            return None
    return truth


def staged_windows(target: Deployment, day: date) -> dict[str, list[str]]:
    """Window id -> the file_ids of its envelopes, for the windows staged on `day`."""
    s3 = target.client("s3")
    found: dict[str, list[str]] = {}
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=target.staging_bucket, Prefix=f"buffers/dt={day}/"):
        for obj in page.get("Contents", []):
            data = s3.get_object(Bucket=target.staging_bucket, Key=obj["Key"])["Body"].read()
            lines = gzip.decompress(data).splitlines()
            window = obj["Key"].rsplit("/", 1)[-1].removesuffix(".json.gz")
            found[window] = [json.loads(line)["file_id"] for line in lines if line.strip()]
    return found


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(fraction * len(ordered)) - 1]


def test_a_known_day_reported_figure_by_figure(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stack.options.tunables_file is not None
    monkeypatch.setenv("SLUICE_ROOT", str(stack.options.root))
    monkeypatch.setenv("SLUICE_TUNABLES_PATH", str(stack.options.tunables_file))
    work = Workload(stack, capsys)
    target = work.target
    validate = fastjsonschema.compile(json.loads(SCHEMA.read_text()))
    # GIVEN the day's workload, and everything that can arrive arrived
    run_workload(work)
    truth = wait_until(
        lambda: all_arrived(work), what="every file in MinIO", timeout=SETTLE_SECONDS, every=3
    )
    day = work.landed[0].at.date()
    landed = [item for item in work.landed if item.at.date() == day]
    # ... and a subscriber to the report topic
    sqs, sns = target.client("sqs"), target.client("sns")
    inbox = sqs.create_queue(QueueName="report-inbox")["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])
    assert stack.file is not None
    assert stack.file.report_topic_arn
    sns.subscribe(
        TopicArn=stack.file.report_topic_arn,
        Protocol="sqs",
        Endpoint=inbox_arn["Attributes"]["QueueArn"],
    )
    # WHEN the report function runs as its schedule invokes it locally (the day so far), and
    # the operator asks `sluice report` for the same day
    event = {"scheduled_time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "days_back": 0}
    answer = target.client("lambda").invoke(FunctionName="report", Payload=json.dumps(event))
    assert "FunctionError" not in answer, answer["Payload"].read()
    result = json.loads(answer["Payload"].read())
    stored = target.client("s3").get_object(
        Bucket=target.staging_bucket, Key=f"reports/daily/{day}.json"
    )
    document = json.loads(stored["Body"].read())
    printed = work.sluice("report", "--date", day.isoformat(), "--format", "json", expect=None)
    from_cli = json.loads(printed)
    # THEN both are valid reports of that day, with the same figures
    validate(document)
    validate(from_cli)
    assert result["day"] == document["day"] == from_cli["day"] == day.isoformat()
    for section in ("files", "bytes", "windows", "producers"):
        assert from_cli[section] == document[section], section
    # ... files: each landed file has its fate, as the test made it
    fates = Counter(item.fate for item in landed)
    files = document["files"]
    assert files["landed"] == len(landed)
    assert files["landed_by_api"] == sum(item.producer == "demo" for item in landed)
    assert files["forwarded"] == len(landed) - fates["too_large"] - fates["version_gone"]
    assert files["delivered"] == fates["delivered"]
    assert files["quarantined"] == {"total": 2, "by_reason": {"payload-schema": 2}}
    assert files["excluded"] == {"total": 1, "by_reason": {"version-gone": 1}}
    assert (files["too_large"], files["versions_gone"]) == (1, 1)
    for wrong in ("pending", "parked", "missing", "delivered_twice", "checksum_mismatch"):
        assert files[wrong] == 0, (wrong, files)
    # ... and MinIO agrees: each file to deliver is in exactly one archive, the excluded one in
    # a manifest's exclusions (the duplicated events made no second copy)
    placed = truth.placed()
    for item in landed:
        fid = file_id_of(target, item)
        assert placed[fid] == (1 if item.fate == "delivered" else 0), item.key
    assert truth.excluded()[
        file_id_of(target, next(i for i in landed if i.fate == "excluded"))
    ] == ("version-gone")
    # ... bytes: landed, delivered, and the archives of the windows staged that day
    staged = staged_windows(target, day)
    delivered_windows = {w: truth.manifests[w] for w in staged if w in truth.manifests}
    archive_bytes = {
        key: size
        for key, size in truth.archives.items()
        if key.rsplit("/", 1)[-1].split(".")[0] in delivered_windows
    }
    file_bytes = sum(f["size"] for m in delivered_windows.values() for f in m["files"])
    assert document["bytes"]["landed"] == sum(len(item.body) for item in landed)
    assert document["bytes"]["delivered"] == sum(
        len(item.body) for item in landed if item.fate == "delivered"
    )
    assert document["bytes"]["archives"] == sum(archive_bytes.values())
    assert document["bytes"]["compression_ratio"] == round(
        file_bytes / sum(archive_bytes.values()), 2
    )
    # ... windows: delivered ones have a manifest; the others own nothing (duplicates only)
    placed_anywhere = set(placed) | set(truth.excluded())
    empty = [
        w for w, ids in staged.items() if w not in truth.manifests and set(ids) <= placed_anywhere
    ]
    windows = document["windows"]
    assert windows["staged"] == len(staged)
    assert windows["delivered"] == len(delivered_windows)
    assert windows["empty"] == len(empty)
    assert windows["staged"] == windows["delivered"] + windows["empty"]
    assert (windows["parked"], windows["waiting"]) == (0, 0)
    assert windows["archive_parts"] == len(archive_bytes)
    assert windows["files_archived"] == sum(len(m["files"]) for m in delivered_windows.values())
    assert windows["archived_file_bytes"] == file_bytes
    assert document["operations"]["duplicates_absorbed"]["empty_windows"] == len(empty)
    # ... Firehose's duplicates: each window's lines less the files its manifest placed
    placed_by = {w: len(m["files"]) + len(m["excluded"]) for w, m in truth.manifests.items()}
    duplicates = sum(len(ids) - placed_by.get(w, 0) for w, ids in staged.items())
    assert document["operations"]["duplicates_absorbed"]["firehose_duplicates"] == {
        "value": duplicates
    }
    # ... latency: from each manifest's time in MinIO and its files' S3 event times
    latencies = [
        truth.modified[w].timestamp() - f["event_time_ms"] / 1000
        for w, m in delivered_windows.items()
        for f in m["files"]
    ]
    latency = document["latency"]
    assert latency["files"] == len(latencies)
    for name, fraction in (("p50_seconds", 0.5), ("p95_seconds", 0.95), ("p999_seconds", 0.999)):
        expected = percentile(latencies, fraction)
        assert expected - MARGIN_SECONDS <= latency[name] <= expected + MARGIN_SECONDS, name
    objective = latency["objective"]
    for limit, share in (
        (P95_OBJECTIVE, "share_within_p95"),
        (P999_OBJECTIVE, "share_within_p999"),
    ):
        near = sum(abs(value - limit) <= MARGIN_SECONDS for value in latencies)
        within = sum(value <= limit for value in latencies)
        # The share is a count of files over their number: compare the count, not the float
        # (15 / 26 * 26 is 15 plus 2e-15).
        assert abs(round(objective[share] * len(latencies)) - within) <= near, share
    late = [value for value in latencies if value > P999_OBJECTIVE]
    assert len(late) >= 6, latencies  # the outage's files, at least
    assert (objective["p95_met"], objective["p999_met"]) == (False, False)
    # ... producers, by what each landed (the top ten: there are six)
    by_producer: dict[str, dict[str, int]] = {}
    for item in landed:
        row = by_producer.setdefault(
            item.producer, {"files": 0, "bytes": 0, "rejected": 0, "not_delivered": 0}
        )
        row["files"] += 1
        row["bytes"] += len(item.body)
        row["rejected"] += item.fate != "delivered"
    reported = {p.pop("producer"): p for p in document["producers"]["top"]}
    assert reported == by_producer
    assert document["producers"]["others"]["producers"] == 0
    # ... hours and the busiest minute, by when the test landed each file
    hours = Counter(f"{item.at:%H}" for item in landed)
    assert {h["hour"]: h["files"] for h in document["hours"] if h["files"]} == dict(hours)
    minutes = Counter(f"{item.at:%H:%M}" for item in landed)
    busiest = document["operations"]["busiest_minute"]
    assert busiest["files"] == max(minutes.values())
    assert minutes[busiest["minute"]] == busiest["files"]
    # ... operations: the outage, its redrives, the DLQs now, and what only CloudWatch knows
    operations = document["operations"]
    # (as fine as redrive's probes: one period, 15 s here, either way at each end)
    minio = operations["minio_unavailable_minutes"]
    period = stack.tunables.redrive.schedule_minutes * 60 / TIME_SCALE
    assert OUTAGE_SECONDS - 2 * period <= minio["value"] * 60 <= OUTAGE_SECONDS + 2 * period, minio
    assert minio["failed_probes"] >= 2
    # (every DLQ record was redriven, the DLQ being empty now: at least as many as it was seen
    # holding at once; a window can fail into it more than once, once per S3 notification)
    redrives = operations["redrives"]["value"]
    assert work.dlq_seen >= 1
    assert redrives["from_dlq"] >= work.dlq_seen
    assert redrives["of_which_environment"] == redrives["from_dlq"]  # MinIO's, every one
    assert redrives["parked"] == 0
    dlqs = {
        "ingest": target.ingest_dlq_url,
        "delivery": target.delivery_dlq_url,
        "requeue": target.requeue_dlq_url,
    }
    assert operations["dlq_depths"]["depths"]["value"] == {
        name: queue_depth(sqs, url) for name, url in dlqs.items()
    }
    # (no processor invocation failed as a whole: Firehose's error output holds only the records
    # the processor failed itself, the bad orders, which stay quarantined, never requeued)
    errors = target.client("s3").list_objects_v2(
        Bucket=target.staging_bucket, Prefix=f"errors/processing-failed/dt={day}/"
    )
    assert operations["requeued_records"] == {"value": 0, "error_objects": errors["KeyCount"]}
    for name in ("alarms_fired", "firehose_quota_headroom"):
        assert operations[name]["value"] is None
        assert "the local stack" in operations[name]["unknown"]
    assert "the local stack" in operations["duplicates_absorbed"]["sqs_redeliveries"]["unknown"]
    # ... the verdict: every file delivered or accounted for, but the day was late
    verdict = document["verdict"]
    held = len(landed) - fates["delivered"]
    assert verdict["status"] == "attention"
    assert verdict["sentence"].startswith(
        f"ATTENTION: all {len(landed)} files landed on {day} up to "
    )
    assert (
        f"are delivered ({fates['delivered']}) or held back with a reason ({held}); but"
        in (verdict["sentence"])
    )
    assert any(item.startswith("MinIO was unavailable") for item in verdict["attention"])
    # ... and it was mailed: the verdict as the subject, the text report as the body
    messages = sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10, WaitTimeSeconds=5)
    [mail] = [json.loads(m["Body"]) for m in messages.get("Messages", [])]
    assert mail["Subject"] == verdict["subject"]
    assert mail["Message"].startswith(verdict["sentence"][:60])
    text = (
        target.client("s3")
        .get_object(Bucket=target.staging_bucket, Key=f"reports/daily/{day}.txt")["Body"]
        .read()
        .decode()
    )
    assert max(len(line) for line in text.splitlines()) <= 80
    # ... and every SDK call the function made is one its IAM policy is checked against
    assert stack.options.sdk_calls_dir is not None
    made = recorded_operations(stack.options.sdk_calls_dir)["report"]
    listed = {json.dumps(call_shape(c)) for c in json.loads(OPERATIONS_FILE.read_text())["report"]}
    assert [c for c in made if json.dumps(call_shape(c)) not in listed] == []


def test_a_past_day_is_reported_once_however_often_it_is_run(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLUICE_ROOT", str(stack.options.root))
    target = Workload(stack, capsys).target
    # GIVEN the day before, complete (nothing landed on it)
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    # WHEN the report function is asked for it twice (a rerun, or the schedule's retry)
    answers = [
        json.loads(
            target.client("lambda")
            .invoke(FunctionName="report", Payload=json.dumps({"date": yesterday}))["Payload"]
            .read()
        )
        for _ in range(2)
    ]
    # THEN the same report is stored once and published once
    assert [a["published"] for a in answers] == [True, False]
    assert answers[0]["verdict"] == f"OK: no file landed on {yesterday}."
    assert answers[0]["keys"] == answers[1]["keys"]
