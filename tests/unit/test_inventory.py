"""The daily inventory check (`delivery.inventory`) against moto in process: S3 (landing, staging),
DynamoDB (idempotency table, ledger) and SQS (the ingest queue). moto never writes an inventory
report, so the local stack's stand-in (`infrastructure.local.provision.s3_inventory`) writes it,
in S3's layout; landing times are set through moto's S3 clock (`moto.s3.models.utcnow`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import moto.s3.models as moto_s3_models
import pytest

from delivery.inventory import InventoryDeps, InventoryError, check_inventory, report_prefix
from infrastructure.local.provision import resources
from infrastructure.local.provision.s3_inventory import write_report
from tests.conftest import IDEMPOTENCY_TABLE, LANDING, LEDGER_TABLE, REGION, STAGING
from transform.envelope import file_id
from transform.idempotency import IdempotencyStore
from transform.quarantine import reason_key
from transform.s3_events import parse_message

NOW = datetime.now(UTC).replace(microsecond=0)
REPORT_AT = NOW + timedelta(hours=2)
"""Reports are made two hours after the files land: past the check's one-hour grace."""


@dataclass
class Requests:
    count: int = 0

    def watch(self, *clients: Any) -> None:
        for client in clients:
            client.meta.events.register("before-call", self._count)

    def _count(self, **_: Any) -> None:
        self.count += 1


@pytest.fixture
def deps(aws: None, buckets: dict[str, str], idempotency_table: str) -> InventoryDeps:
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    resources.create_ledger_table(dynamodb, LEDGER_TABLE)
    sqs = boto3.client("sqs", region_name=REGION)
    queue = sqs.create_queue(QueueName="ingest")["QueueUrl"]
    return InventoryDeps(
        s3=boto3.client("s3", region_name=REGION),
        dynamodb=dynamodb,
        sqs=sqs,
        landing_bucket=LANDING,
        staging_bucket=STAGING,
        ledger_table=LEDGER_TABLE,
        idempotency_table=IDEMPOTENCY_TABLE,
        ingest_queue_url=queue,
        files_per_run=4,
        idempotency_ttl_seconds=21 * 86400,
    )


def land(deps: InventoryDeps, key: str, *, at: datetime = NOW, forwarded: bool = True) -> str:
    """A version landed at `at`; `forwarded`: the forwarder claimed and completed it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(moto_s3_models, "utcnow", lambda: at.replace(tzinfo=None))
        version = deps.s3.put_object(Bucket=LANDING, Key=key, Body=b"{}")["VersionId"]
    if forwarded:
        store = IdempotencyStore(deps.dynamodb, IDEMPOTENCY_TABLE, 86400)
        store.complete([file_id(LANDING, key, version)])
    return version


def announced(deps: InventoryDeps) -> list[tuple[str, str, int]]:
    """(key, version, event time in ms) of each notification on the ingest queue."""
    found: list[tuple[str, str, int]] = []
    while True:
        messages = deps.sqs.receive_message(
            QueueUrl=deps.ingest_queue_url, MaxNumberOfMessages=10
        ).get("Messages", [])
        if not messages:
            return sorted(found)
        for message in messages:
            for created in parse_message(message["Body"]).created:
                found.append((created.key, created.version_id or "", created.event_time_ms))
            deps.sqs.delete_message(
                QueueUrl=deps.ingest_queue_url, ReceiptHandle=message["ReceiptHandle"]
            )


def report(deps: InventoryDeps, at: datetime = REPORT_AT, rows_per_file: int = 10_000) -> str:
    return write_report(deps.s3, LANDING, STAGING, now=at, rows_per_file=rows_per_file)


def check(deps: InventoryDeps, at: datetime = REPORT_AT) -> Any:
    return check_inventory(deps, int(at.timestamp() * 1000))


def test_a_version_whose_event_was_lost_is_announced_again(deps: InventoryDeps) -> None:
    # GIVEN two versions the forwarder saw, one whose S3 event was lost (a key with a space and
    # a plus, as S3 Inventory URL-encodes them), and one it quarantined on purpose
    land(deps, "acme/a.json")
    land(deps, "acme/b.json")
    lost = land(deps, "acme/lost one+more.json", forwarded=False)
    held = land(deps, "acme/too-large.bin", forwarded=False)
    deps.s3.put_object(Bucket=STAGING, Key=reason_key(file_id(LANDING, "acme/too-large.bin", held)))
    report(deps)
    # WHEN the check runs
    outcome = check(deps)
    # THEN only the lost one is announced, as S3 would have, with its landing time
    assert announced(deps) == [("acme/lost one+more.json", lost, int(NOW.timestamp() * 1000))]
    assert outcome.versions_checked == 4
    assert outcome.announced == [f"s3://{LANDING}/acme/lost one+more.json?versionId={lost}"]
    assert outcome.lag_seconds == 3600  # checked up to an hour before the report


def test_a_report_is_read_across_runs_and_checked_once(deps: InventoryDeps) -> None:
    # GIVEN a report of seven data files, three of whose versions were never forwarded
    lost = [land(deps, f"k/{n}.json", forwarded=n % 5 == 0) for n in range(14)]
    report(deps, rows_per_file=2)
    deps = replace(deps, files_per_run=3)
    # WHEN redrive runs the check again and again
    reads = [check(deps).data_files_read for _ in range(4)]
    # THEN it reads three data files a run, then nothing: each version announced once
    assert reads == [3, 3, 1, 0]
    assert len(announced(deps)) == len([v for n, v in enumerate(lost) if n % 5 != 0])


def test_the_next_report_checks_only_what_landed_since(deps: InventoryDeps) -> None:
    # GIVEN a report checked, with a version whose event was lost
    land(deps, "day1/lost.json", forwarded=False)
    report(deps)
    check(deps)
    assert len(announced(deps)) == 1
    # ... which the forwarder then took (the announcement worked) ...
    versions = deps.s3.list_object_versions(Bucket=LANDING, Prefix="day1/")["Versions"]
    IdempotencyStore(deps.dynamodb, IDEMPOTENCY_TABLE, 86400).complete(
        [file_id(LANDING, "day1/lost.json", versions[0]["VersionId"])]
    )
    # WHEN a day later another lost event, and the next report
    next_day = NOW + timedelta(days=1)
    second = land(deps, "day2/lost.json", at=next_day, forwarded=False)
    report(deps, at=next_day + timedelta(hours=2))
    outcome = check(deps, at=next_day + timedelta(hours=2))
    # THEN only the new one is announced; the report holds both days
    assert [(k, v) for k, v, _ in announced(deps)] == [("day2/lost.json", second)]
    assert outcome.versions_checked == 1


def test_the_lag_counts_from_the_first_run_until_a_report_is_checked(deps: InventoryDeps) -> None:
    # GIVEN no report has ever arrived (S3 writes the first up to 48 hours after configuring it)
    assert check(deps, at=NOW).lag_seconds == 0
    # THEN the lag the alarm watches grows from the check's first run ...
    assert check(deps, at=NOW + timedelta(hours=30)).lag_seconds == 30 * 3600
    # ... and once a report is checked, from the last landing time it covered
    report(deps, at=NOW + timedelta(hours=31))
    assert check(deps, at=NOW + timedelta(hours=32)).lag_seconds == 2 * 3600


def test_a_report_that_is_not_an_inventory_is_named(deps: InventoryDeps) -> None:
    key = f"{report_prefix(LANDING)}2026-12-01T00-00Z/manifest.json"
    deps.s3.put_object(Bucket=STAGING, Key=key, Body=json.dumps({"fileFormat": "ORC"}).encode())
    with pytest.raises(InventoryError, match=f"s3://{STAGING}/{key}"):
        check(deps)


@pytest.mark.parametrize("history", [1, 100])
def test_inventory_check_cost_is_independent_of_history(deps: InventoryDeps, history: int) -> None:
    # GIVEN the day's 10 versions (2 never forwarded), and 10 x `history` versions of earlier
    # days still retained in the landing bucket, all forwarded
    for n in range(10 * history):
        land(deps, f"old/{n}.json", at=NOW - timedelta(days=2, minutes=n % 1000))
    for n in range(10):
        land(deps, f"today/{n}.json", forwarded=n >= 2)
    report(deps)
    requests = Requests()
    requests.watch(deps.s3, deps.dynamodb, deps.sqs)
    # WHEN the check reads the report
    outcome = check(deps)
    # THEN it judges the day's versions only: the same requests whatever the history
    assert outcome.versions_checked == 10
    assert len(outcome.announced) == 2
    assert requests.count == EXPECTED_REQUESTS


EXPECTED_REQUESTS = 12
"""The cursor read and first written, the report folders listed, the manifest, the cursor set to
the report, the data file, one BatchGetItem, a quarantine HEAD and a SendMessage for each of the 2
never forwarded, the cursor saved after the file: counted, so any change shows."""
