"""Redrive's logic (`delivery.redriving`, DESIGN §4 and §4a rule 6) against moto, in process.

S3 (the staging bucket), SQS (the delivery DLQ) and DynamoDB (the ledger) are moto's. What cannot
run here stands in as plain callables the tests control and inspect:

- `invoke`: Lambda's asynchronous invoke of delivery (InvocationType Event). moto cannot run a
  Lambda function in process, so the stand-in records each event, or refuses it as Lambda would
  (`InvokeRefused`, what `delivery.invocation.invoke_delivery` raises on a non-202).
- `minio_healthy`: MinIO's health check, answered by the test.
- `clock`, `sleep`, `jitter`: a clock the test sets (shared with the ledger, as `time.time` is in
  Lambda), sleeps recorded and never slept, jitter fixed.

Ages come from two places moto fills in with real time: a DLQ message's SentTimestamp (moto sets
it to now), and a staged object's LastModified. The clock is therefore set relative to real time
(an hour ahead, so every DLQ message is old enough), and each staged object is written with moto's
S3 clock pointed at `clock - age` (`moto.s3.models.utcnow`, which stamps LastModified), so a
window's age is exactly the one the test asks for.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
import moto.s3.models as moto_s3_models
import pytest
from moto import mock_aws

from delivery.hour_markers import HourMarkers
from delivery.invocation import InvokeRefused
from delivery.layout import window_name
from delivery.ledger import Ledger, PartRecord, WindowState
from delivery.redriving import RedriveDeps, RedriveReport, redrive, staged_event
from infrastructure.local.provision import resources
from infrastructure.tunables import RedriveTunables
from tests.conftest import DELIVERY_DLQ_NAME, LEDGER_TABLE, REGION, STAGING, STREAMS
from tests.support import ENVIRONMENT_ERROR, on_failure_record

EXTENSION = ".json.gz"
LEDGER_TTL_SECONDS = 3_456_000
DESTINATION_BUFFER_SECONDS = 60
TUNABLES = RedriveTunables(
    limit_per_run=50,
    min_age_seconds=120,
    jitter_seconds=30,
    max_redrives=5,
    unrecorded_grace_seconds=600,
    claimed_stale_seconds=1800,
    lookback_hours=12,  # the shipped 48 walks 49 partitions a run: slow in moto, same logic
    schedule_minutes=5,
)
UNRECORDED_AFTER = DESTINATION_BUFFER_SECONDS + TUNABLES.unrecorded_grace_seconds
HOUR = 3600


class Clock:
    """Epoch seconds, set by the test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Redrive:
    """Everything a redrive run touches, with the stand-ins' records."""

    s3: Any
    sqs: Any
    ledger: Ledger
    clock: Clock
    dlq_url: str
    monkeypatch: pytest.MonkeyPatch
    healthy: bool = True
    refuse_invocations: bool = False
    invoked: list[dict[str, Any]] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)
    tunables: RedriveTunables = TUNABLES
    markers: HourMarkers | None = None

    def invoke(self, event: dict[str, Any]) -> None:
        if self.refuse_invocations:
            raise InvokeRefused("sluice-delivery-test:live answered 429 to an async invoke")
        self.invoked.append(copy.deepcopy(event))

    def deps(self) -> RedriveDeps:
        return RedriveDeps(
            s3=self.s3,
            sqs=self.sqs,
            ledger=self.ledger,
            minio_healthy=lambda: self.healthy,
            invoke=self.invoke,
            staging_bucket=STAGING,
            dlq_url=self.dlq_url,
            tunables=self.tunables,
            destination_buffer_seconds=DESTINATION_BUFFER_SECONDS,
            file_extension=EXTENSION,
            clock=self.clock,
            sleep=self.sleeps.append,
            jitter=lambda: 1.0,
            markers=self.markers,
        )

    def run(self, *, dry_run: bool = False) -> RedriveReport:
        return redrive(self.deps(), dry_run=dry_run)

    # -- staged windows ----------------------------------------------------------------

    def stage(self, age_seconds: int, stream: str = STREAMS[0]) -> str:
        """A staged window whose LastModified is `age_seconds` before the clock; its key."""
        written = datetime.fromtimestamp(self.clock.now - age_seconds, UTC)
        key = (
            f"buffers/dt={written:%Y-%m-%d}/hour={written:%H}/"
            f"{stream}-1-{written:%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}{EXTENSION}"
        )
        with self.monkeypatch.context() as patch:
            patch.setattr(moto_s3_models, "utcnow", lambda: written.replace(tzinfo=None))
            self.s3.put_object(Bucket=STAGING, Key=key, Body=b"content irrelevant here")
        return key

    # -- the delivery DLQ --------------------------------------------------------------

    def fail(self, staged_key: str) -> dict[str, Any]:
        """Put Lambda's on-failure record for a delivery of `staged_key` in the DLQ."""
        record = on_failure_record(staged_key)
        self.sqs.send_message(QueueUrl=self.dlq_url, MessageBody=json.dumps(record))
        return record

    def dlq_count(self, *, visible_only: bool = False) -> int:
        names = ["ApproximateNumberOfMessages"]
        if not visible_only:
            names += ["ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"]
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.dlq_url, AttributeNames=names)[
            "Attributes"
        ]
        return sum(int(attributes.get(name, "0")) for name in names)

    # -- the ledger --------------------------------------------------------------------

    def claimed(self, staged_key: str, *, seconds_ago: float) -> str:
        """Record the window CLAIMED `seconds_ago` (its last update then); its id."""
        window_id = wid(staged_key)
        now = self.clock.now
        self.clock.now = now - seconds_ago
        try:
            self.ledger.begin(window_id, staged_key, [])
        finally:
            self.clock.now = now
        return window_id

    def settle(self, staged_key: str, state: WindowState) -> str:
        """Put the window in DELIVERED, EMPTY or PARKED, as delivery or redrive would; its id."""
        window_id = wid(staged_key)
        if state is WindowState.EMPTY:
            self.ledger.mark_empty(window_id, staged_key)
            return window_id
        self.ledger.begin(window_id, staged_key, [])
        if state is WindowState.DELIVERED:
            self.ledger.mark_delivered(window_id, [part_record(window_id)], file_count=1)
        elif state is WindowState.PARKED:
            self.ledger.mark_parked(window_id, "parked by the test")
        return window_id


def wid(staged_key: str) -> str:
    return window_name(staged_key, EXTENSION).window_id


def part_record(window_id: str) -> PartRecord:
    return PartRecord(
        part=1,
        minio_key=f"sluice/{window_id}.tar.gz",
        minio_version=None,
        sha256="0" * 64,
        etag="d41d8cd98f00b204e9800998ecf8427e",
        size=10240,
        part_size=8 << 20,
        file_count=1,
        check="etag-md5",
    )


def hour_ago_key(clock: Clock, n: int) -> str:
    """A well-formed staged key that is never written to the bucket (DLQ-only windows)."""
    at = datetime.fromtimestamp(clock.now - HOUR, UTC)
    return f"buffers/dt={at:%Y-%m-%d}/hour={at:%H}/{STREAMS[1]}-1-dlq-{n}-{uuid.uuid4()}{EXTENSION}"


def without_event_time(event: dict[str, Any]) -> dict[str, Any]:
    """A staged_event minus its eventTime (the time of invocation, not of the window)."""
    stripped = copy.deepcopy(event)
    for record in stripped["Records"]:
        del record["eventTime"]
    return stripped


def staged_keys_invoked(invoked: list[dict[str, Any]]) -> list[str]:
    return [record["s3"]["object"]["key"] for event in invoked for record in event["Records"]]


def new_redrive(monkeypatch: pytest.MonkeyPatch) -> Redrive:
    """A Redrive over moto in process (the buckets must exist)."""
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    resources.create_ledger_table(dynamodb, LEDGER_TABLE)
    sqs = boto3.client("sqs", region_name=REGION)
    dlq_url = sqs.create_queue(QueueName=DELIVERY_DLQ_NAME)["QueueUrl"]
    # An hour ahead of real time: every DLQ message moto stamps now is older than min_age.
    clock = Clock(float(int(time.time()) + HOUR))
    return Redrive(
        s3=boto3.client("s3", region_name=REGION),
        sqs=sqs,
        ledger=Ledger(dynamodb, LEDGER_TABLE, LEDGER_TTL_SECONDS, clock, sleep=lambda _: None),
        clock=clock,
        dlq_url=dlq_url,
        monkeypatch=monkeypatch,
    )


@pytest.fixture
def rd(buckets: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Redrive:
    return new_redrive(monkeypatch)


# -- MinIO down ----------------------------------------------------------------------------


def test_minio_down_leaves_the_dlq_and_the_ledger_alone_but_reports_the_oldest_age(
    rd: Redrive,
) -> None:
    # GIVEN a failed delivery in the DLQ and an old unrecorded staged window
    rd.fail(hour_ago_key(rd.clock, 1))
    staged = rd.stage(age_seconds=2 * HOUR)
    # AND MinIO does not answer
    rd.healthy = False

    # WHEN redrive runs
    report = rd.run()

    # THEN nothing is invoked and the DLQ message is still there, never even received
    assert rd.invoked == []
    assert rd.dlq_count(visible_only=True) == 1
    assert report.minio_healthy is False
    assert (report.dlq_redriven, report.unrecorded_redriven, report.stale_redriven) == (0, 0, 0)
    # AND no redrive was counted against the window
    assert rd.ledger.get_window(wid(staged)) is None
    # AND the oldest undelivered window's age is still reported
    assert report.oldest_undelivered_age_seconds == 2 * HOUR


# -- the delivery DLQ -----------------------------------------------------------------------


def test_each_dlq_message_is_reinvoked_with_its_request_payload_then_deleted(rd: Redrive) -> None:
    # GIVEN two failed deliveries in the DLQ, both older than min_age
    keys = [hour_ago_key(rd.clock, n) for n in range(2)]
    records = [rd.fail(key) for key in keys]

    # WHEN redrive runs with MinIO healthy
    report = rd.run()

    # THEN delivery is invoked once per message, with the original event exactly
    expected = [record["requestPayload"] for record in records]
    assert sorted(rd.invoked, key=json.dumps) == sorted(expected, key=json.dumps)
    assert report.dlq_redriven == 2
    # AND the messages are gone
    assert rd.dlq_count() == 0
    # AND each window's redrive is counted once (its key decoded from the event's)
    for key in keys:
        window = rd.ledger.get_window(wid(key))
        assert window is not None
        assert window.redrive_count == 1
        assert window.state is WindowState.CLAIMED


def test_a_message_younger_than_min_age_is_left_alone(rd: Redrive) -> None:
    # GIVEN a failed delivery that just arrived in the DLQ (the clock at real now)
    key = hour_ago_key(rd.clock, 1)
    rd.fail(key)
    rd.clock.now = time.time()

    # WHEN redrive runs
    report = rd.run()

    # THEN it is neither invoked nor deleted nor counted
    assert rd.invoked == []
    assert report.dlq_redriven == 0
    assert rd.dlq_count() == 1
    assert rd.ledger.get_window(wid(key)) is None
    # ... nor hidden: a run that takes it (`sluice redrive --min-age 0`) sees it at once
    assert rd.dlq_count(visible_only=True) == 1


@pytest.mark.parametrize("state", [WindowState.DELIVERED, WindowState.EMPTY])
def test_a_message_for_a_settled_window_is_not_invoked(rd: Redrive, state: WindowState) -> None:
    # GIVEN a DLQ message for a window that has since been delivered (or found empty)
    key = hour_ago_key(rd.clock, 1)
    window_id = rd.settle(key, state)
    rd.fail(key)

    # WHEN redrive runs
    report = rd.run()

    # THEN delivery is not invoked and the message counts as settled
    assert rd.invoked == []
    assert report.dlq_settled == 1
    assert report.dlq_redriven == 0
    # AND the window is untouched: same state, no redrive counted
    window = rd.ledger.get_window(window_id)
    assert window is not None
    assert (window.state, window.redrive_count) == (state, 0)


@pytest.mark.parametrize("state", [WindowState.DELIVERED, WindowState.EMPTY])
def test_a_message_for_a_settled_window_is_deleted(rd: Redrive, state: WindowState) -> None:
    # GIVEN a DLQ message for a window that has since been delivered (or found empty)
    key = hour_ago_key(rd.clock, 1)
    rd.settle(key, state)
    rd.fail(key)

    # WHEN redrive runs
    rd.run()

    # THEN the message is deleted: it needs nothing more, and left in the DLQ it would come back
    # every run (using up the run's limit) until its retention ends
    assert rd.dlq_count() == 0


def test_redrives_are_counted_and_past_max_redrives_the_window_is_parked(rd: Redrive) -> None:
    # GIVEN a window whose deliveries keep failing, with at most 2 redrives allowed
    rd.tunables = TUNABLES._replace(max_redrives=2)
    key = hour_ago_key(rd.clock, 1)
    window_id = wid(key)

    # WHEN its failure lands in the DLQ and redrive runs, twice
    for expected_count in (1, 2):
        rd.fail(key)
        report = rd.run()
        # THEN each run invokes delivery and counts one more redrive
        assert report.dlq_redriven == 1
        window = rd.ledger.get_window(window_id)
        assert window is not None
        assert (window.state, window.redrive_count) == (WindowState.CLAIMED, expected_count)
    assert len(rd.invoked) == 2

    # WHEN it fails a third time
    rd.fail(key)
    report = rd.run()

    # THEN the window is PARKED and reported, and delivery is not invoked again
    assert report.parked == [window_id]
    assert report.dlq_redriven == 0
    assert len(rd.invoked) == 2
    window = rd.ledger.get_window(window_id)
    assert window is not None
    assert window.state is WindowState.PARKED
    assert window.parked_reason == "redriven 2 times without success"


@pytest.mark.parametrize(
    "error",
    [
        ENVIRONMENT_ERROR,
        {"errorType": "UploadError", "errorMessage": "PUT sluice/x.tar.gz: 503 SlowDown"},
        {
            "errorType": "ClientError",
            "errorMessage": "An error occurred (ProvisionedThroughputExceededException) when "
            "calling the TransactWriteItems operation",
        },
    ],
    ids=["minio-unreachable", "minio-refuses", "dynamodb-throttled"],
)
def test_failures_of_the_environment_never_count_toward_parking(
    rd: Redrive, error: dict[str, str]
) -> None:
    # GIVEN a window failing for the environment, again and again, past max_redrives
    rd.tunables = TUNABLES._replace(max_redrives=2)
    key = hour_ago_key(rd.clock, 1)
    for _ in range(4):
        rd.sqs.send_message(
            QueueUrl=rd.dlq_url, MessageBody=json.dumps(on_failure_record(key, error))
        )
        # WHEN redrive runs each time
        report = rd.run()
        # THEN delivery is invoked again, and nothing is counted against the window
        assert (report.dlq_redriven, report.environment_redriven, report.parked) == (1, 1, [])
    assert len(rd.invoked) == 4
    window = rd.ledger.get_window(wid(key))
    assert window is None or (window.state, window.redrive_count) == (WindowState.CLAIMED, 0)


def test_an_event_that_expired_before_delivery_ran_never_counts_toward_parking(
    rd: Redrive,
) -> None:
    # GIVEN a window whose events keep expiring in Lambda's queue behind a backlog: on-failure
    # records with no response (delivery never ran them), past max_redrives
    rd.tunables = TUNABLES._replace(max_redrives=2)
    key = hour_ago_key(rd.clock, 1)
    for _ in range(4):
        record = on_failure_record(key)
        record["requestContext"].update(condition="EventAgeExceeded", approximateInvokeCount=0)
        del record["responseContext"], record["responsePayload"]
        rd.sqs.send_message(QueueUrl=rd.dlq_url, MessageBody=json.dumps(record))
        # WHEN redrive runs each time
        report = rd.run()
        # THEN delivery is invoked again, counted as the environment's, never against the window
        assert (report.dlq_redriven, report.environment_redriven, report.parked) == (1, 1, [])
    window = rd.ledger.get_window(wid(key))
    assert window is None or (window.state, window.redrive_count) == (WindowState.CLAIMED, 0)


def test_the_message_of_a_window_parked_by_redrive_is_deleted(rd: Redrive) -> None:
    # GIVEN a window already redriven max_redrives times, and its next failure in the DLQ
    rd.tunables = TUNABLES._replace(max_redrives=1)
    key = hour_ago_key(rd.clock, 1)
    rd.ledger.record_redrive(wid(key), key)
    rd.fail(key)

    # WHEN redrive runs and parks the window
    report = rd.run()
    assert report.parked == [wid(key)]

    # THEN the message is gone (the window waits for `sluice redrive --window`, not the DLQ)
    assert rd.dlq_count() == 0
    assert rd.invoked == []


def test_an_unreadable_dlq_message_stays_in_the_queue(rd: Redrive) -> None:
    # GIVEN DLQ messages that are not on-failure records: not JSON, and JSON without a payload
    rd.sqs.send_message(QueueUrl=rd.dlq_url, MessageBody="this is not json")
    rd.sqs.send_message(QueueUrl=rd.dlq_url, MessageBody=json.dumps({"requestContext": {}}))
    # AND a readable one
    record = rd.fail(hour_ago_key(rd.clock, 1))

    # WHEN redrive runs
    report = rd.run()

    # THEN it does not crash; only the readable one is invoked and deleted
    assert rd.invoked == [record["requestPayload"]]
    assert report.dlq_redriven == 1
    # AND the unreadable ones are left for a person
    assert rd.dlq_count() == 2


def test_a_refused_invocation_keeps_the_message_and_counts_no_redrive(rd: Redrive) -> None:
    # GIVEN a failed delivery in the DLQ, and Lambda refusing async invocations
    key = hour_ago_key(rd.clock, 1)
    rd.fail(key)
    rd.refuse_invocations = True

    # WHEN redrive runs
    report = rd.run()

    # THEN the run goes on and reports the refusal ...
    assert report.invoke_failures == 1
    assert report.dlq_redriven == 0
    # AND the message is not lost: it is still in the DLQ for the next run
    assert rd.dlq_count() == 1
    # AND the refusal did not count towards parking the window
    record = rd.ledger.get_window(key.rsplit("/", 1)[1].removesuffix(".json.gz"))
    assert record is None or record.redrive_count == 0


def test_a_window_redriven_from_the_dlq_is_not_invoked_again_by_the_sweep(rd: Redrive) -> None:
    # GIVEN an old staged window with no ledger record, whose failed delivery is in the DLQ
    key = rd.stage(age_seconds=2 * HOUR)
    record = rd.fail(key)

    # WHEN redrive runs
    report = rd.run()

    # THEN delivery is invoked once for it, from the DLQ
    assert rd.invoked == [record["requestPayload"]]
    assert (report.dlq_redriven, report.unrecorded_redriven, report.stale_redriven) == (1, 0, 0)


# -- the staging sweep ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "invoked"), [(UNRECORDED_AFTER - 1, False), (UNRECORDED_AFTER, True), (5 * HOUR, True)]
)
def test_an_unrecorded_staged_window_is_invoked_once_past_buffer_plus_grace(
    rd: Redrive, age: int, invoked: bool
) -> None:
    # GIVEN a staged window no delivery ever recorded, `age` seconds old
    key = rd.stage(age_seconds=age)

    # WHEN redrive runs
    report = rd.run()

    # THEN delivery is invoked with the S3 event for that window once it is older than the
    # destination buffer interval + the grace, and not before
    if invoked:
        assert [without_event_time(event) for event in rd.invoked] == [
            without_event_time(staged_event(STAGING, key))
        ]
        assert report.unrecorded_redriven == 1
        window = rd.ledger.get_window(wid(key))
        assert window is not None
        # ... recorded, but not counted toward PARKED: no attempt ever began on it
        assert (window.redrive_count, window.redriven_at_ms) == (0, rd.clock.now * 1000)
        # AND the invocation was spread by jitter, within jitter_seconds
        assert len(rd.sleeps) == 1
        assert 0 < rd.sleeps[0] <= TUNABLES.jitter_seconds
    else:
        assert rd.invoked == []
        assert report.unrecorded_redriven == 0
        assert rd.ledger.get_window(wid(key)) is None
    # AND either way it is undelivered, and its age is reported
    assert report.oldest_undelivered_age_seconds == age


def test_the_staged_event_names_the_staging_bucket_and_key() -> None:
    # GIVEN a staged key
    key = "buffers/dt=2026-03-14/hour=09/sluice-test-0-1-2026-03-14-09-12-00-abc.json.gz"

    # WHEN the event delivery is invoked with is built
    event = staged_event(STAGING, key)

    # THEN it is one ObjectCreated record for that object, with an ISO UTC event time
    (record,) = event["Records"]
    assert record["eventSource"] == "aws:s3"
    assert record["eventName"] == "ObjectCreated:Put"
    assert record["s3"] == {"bucket": {"name": STAGING}, "object": {"key": key}}
    assert record["eventTime"].endswith("Z")
    datetime.fromisoformat(record["eventTime"])


@pytest.mark.parametrize(
    ("claimed_ago", "invoked"),
    [(TUNABLES.claimed_stale_seconds - 1, False), (TUNABLES.claimed_stale_seconds, True)],
)
def test_a_window_claimed_too_long_is_invoked(rd: Redrive, claimed_ago: int, invoked: bool) -> None:
    # GIVEN a staged window CLAIMED `claimed_ago` seconds ago and not updated since
    key = rd.stage(age_seconds=3 * HOUR)
    window_id = rd.claimed(key, seconds_ago=claimed_ago)

    # WHEN redrive runs
    report = rd.run()

    # THEN delivery is invoked for it only once the claim is claimed_stale_seconds old
    if invoked:
        assert [without_event_time(event) for event in rd.invoked] == [
            without_event_time(staged_event(STAGING, key))
        ]
        assert report.stale_redriven == 1
        window = rd.ledger.get_window(window_id)
        assert window is not None
        assert window.redrive_count == 1
    else:
        assert rd.invoked == []
        assert report.stale_redriven == 0
    assert report.unrecorded_redriven == 0


def test_a_stale_window_past_max_redrives_is_parked_by_the_sweep(rd: Redrive) -> None:
    # GIVEN a window CLAIMED long ago that redrive already re-invoked max_redrives times
    rd.tunables = TUNABLES._replace(max_redrives=1)
    key = rd.stage(age_seconds=3 * HOUR)
    window_id = rd.claimed(key, seconds_ago=2 * HOUR)
    rd.clock.now -= 2 * HOUR  # redriven back then: the claim has not been touched since
    rd.ledger.record_redrive(window_id, key)
    rd.clock.now += 2 * HOUR

    # WHEN redrive runs
    report = rd.run()

    # THEN the window is parked instead of invoked
    assert rd.invoked == []
    assert report.parked == [window_id]
    window = rd.ledger.get_window(window_id)
    assert window is not None
    assert window.state is WindowState.PARKED


def test_a_window_waiting_behind_a_backlog_is_invoked_again_but_never_parked(rd: Redrive) -> None:
    # GIVEN a staged window no delivery attempt has begun on (its invocations wait in Lambda's
    # queue behind an outage's backlog), and parking after one counted redrive
    rd.tunables = TUNABLES._replace(max_redrives=1)
    key = rd.stage(age_seconds=3 * HOUR)
    # WHEN redrive runs three times, the window going stale between runs
    for _ in range(3):
        rd.run()
        rd.clock.now += TUNABLES.claimed_stale_seconds
    # THEN delivery is invoked each time, and nothing counts toward PARKED
    assert len(rd.invoked) == 3
    window = rd.ledger.get_window(wid(key))
    assert window is not None
    assert (window.state, window.redrive_count) == (WindowState.CLAIMED, 0)
    # WHEN an attempt then begins, and the window is still stuck once stale again
    rd.ledger.begin(wid(key), key, [])
    rd.clock.now += TUNABLES.claimed_stale_seconds
    report = rd.run()
    # THEN that redrive counts (the window's own trouble), and the next stale run parks it
    window = rd.ledger.get_window(wid(key))
    assert window is not None
    assert (report.stale_redriven, window.redrive_count) == (1, 1)
    rd.ledger.begin(wid(key), key, [])
    rd.clock.now += TUNABLES.claimed_stale_seconds
    assert rd.run().parked == [wid(key)]


@pytest.mark.parametrize("state", [WindowState.DELIVERED, WindowState.EMPTY])
def test_delivered_and_empty_windows_are_never_invoked(rd: Redrive, state: WindowState) -> None:
    # GIVEN an old staged window that is DELIVERED (or EMPTY)
    key = rd.stage(age_seconds=11 * HOUR)
    rd.settle(key, state)

    # WHEN redrive runs
    report = rd.run()

    # THEN it is not invoked, and nothing is undelivered
    assert rd.invoked == []
    assert report.oldest_undelivered_age_seconds is None
    window = rd.ledger.get_window(wid(key))
    assert window is not None
    assert (window.state, window.redrive_count) == (state, 0)


def test_a_parked_window_is_not_invoked_but_counts_as_undelivered(rd: Redrive) -> None:
    # GIVEN an old staged window that redrive parked
    key = rd.stage(age_seconds=10 * HOUR)
    rd.settle(key, WindowState.PARKED)

    # WHEN redrive runs
    report = rd.run()

    # THEN it waits for a person: not invoked, but its age is reported
    assert rd.invoked == []
    assert report.oldest_undelivered_age_seconds == 10 * HOUR


def batch_get_items_read(client: Any) -> list[int]:
    """Items each BatchGetItem through `client` returned, appended as they come."""
    read: list[int] = []

    def count(model: Any, parsed: dict[str, Any], **_: Any) -> None:
        if model.name == "BatchGetItem":
            read.append(sum(len(items) for items in parsed.get("Responses", {}).values()))

    client.meta.events.register("after-call", count)
    return read


def test_a_warm_sweep_reads_only_the_records_of_windows_not_yet_settled(rd: Redrive) -> None:
    # GIVEN the current hour with 20 DELIVERED windows and 2 CLAIMED ones still being delivered
    rd.clock.now = mid_hour_clock().now
    for n in range(20):
        rd.settle(rd.stage(age_seconds=60 + n), WindowState.DELIVERED)
    claimed = [rd.stage(age_seconds=100 + n) for n in range(2)]
    for key in claimed:
        rd.claimed(key, seconds_ago=30)
    deps = rd.deps()  # one container: its deps are built once, at cold start
    read = batch_get_items_read(rd.ledger._dynamodb)

    # WHEN its sweep runs, then runs again; one of the two is delivered; then a third run
    redrive(deps)
    redrive(deps)
    rd.ledger.mark_delivered(wid(claimed[0]), [part_record(wid(claimed[0]))], file_count=1)
    redrive(deps)

    # THEN the first run reads every record of the hour, later ones only those not yet final
    assert read == [22, 2, 2]
    redrive(deps)
    assert read[-1] == 1
    # ... and a new container reads the hour once more, whatever the last one knew
    redrive(rd.deps())
    assert read[-1] == 22
    assert rd.invoked == []


# -- limits, dry run, the oldest age --------------------------------------------------------


def test_limit_per_run_bounds_invocations_across_dlq_and_sweep(rd: Redrive) -> None:
    # GIVEN a limit of 3, two failed deliveries in the DLQ and three old unrecorded windows
    rd.tunables = TUNABLES._replace(limit_per_run=3)
    failed = [rd.fail(hour_ago_key(rd.clock, n)) for n in range(2)]
    staged = [rd.stage(age_seconds=age) for age in (1 * HOUR, 2 * HOUR, 3 * HOUR)]

    # WHEN redrive runs
    report = rd.run()

    # THEN three invocations: the DLQ first, then the oldest staged window
    assert len(rd.invoked) == 3
    assert (report.dlq_redriven, report.unrecorded_redriven) == (2, 1)
    assert sorted(map(json.dumps, rd.invoked[:2])) == sorted(
        json.dumps(record["requestPayload"]) for record in failed
    )
    assert staged_keys_invoked(rd.invoked[2:]) == [staged[2]]
    # AND the windows over the limit are left for a later run, untouched
    assert rd.ledger.get_window(wid(staged[0])) is None
    assert rd.ledger.get_window(wid(staged[1])) is None
    # AND still measured
    assert report.oldest_undelivered_age_seconds == 3 * HOUR


def test_limit_per_run_bounds_the_dlq_drain(rd: Redrive) -> None:
    # GIVEN a limit of 3 and four failed deliveries in the DLQ
    rd.tunables = TUNABLES._replace(limit_per_run=3)
    for n in range(4):
        rd.fail(hour_ago_key(rd.clock, n))

    # WHEN redrive runs
    report = rd.run()

    # THEN three are redriven and one stays for the next run
    assert len(rd.invoked) == 3
    assert report.dlq_redriven == 3
    assert rd.dlq_count() == 1


def test_dry_run_invokes_and_deletes_nothing_but_lists_what_it_would_redrive(
    rd: Redrive,
) -> None:
    # GIVEN a failed delivery in the DLQ, an old unrecorded window and a stale claimed window
    failed_key = hour_ago_key(rd.clock, 1)
    rd.fail(failed_key)
    stale_key = rd.stage(age_seconds=3 * HOUR)
    stale_id = rd.claimed(stale_key, seconds_ago=2 * HOUR)
    unrecorded_key = rd.stage(age_seconds=1 * HOUR)

    # WHEN redrive runs dry
    report = rd.run(dry_run=True)

    # THEN it lists all three: the DLQ first, then staged windows oldest first
    assert report.would_redrive == [failed_key, stale_key, unrecorded_key]
    # AND invokes nothing, sleeps not, deletes nothing, hides nothing
    assert rd.invoked == []
    assert rd.sleeps == []
    assert rd.dlq_count() == 1
    assert rd.dlq_count(visible_only=True) == 1
    # AND writes nothing to the ledger
    assert rd.ledger.get_window(wid(failed_key)) is None
    assert rd.ledger.get_window(wid(unrecorded_key)) is None
    stale = rd.ledger.get_window(stale_id)
    assert stale is not None
    assert (stale.state, stale.redrive_count) == (WindowState.CLAIMED, 0)
    assert (report.dlq_redriven, report.unrecorded_redriven, report.stale_redriven) == (0, 0, 0)


def test_oldest_undelivered_age_is_that_of_the_oldest_window_not_delivered(rd: Redrive) -> None:
    # GIVEN an older window DELIVERED, an older one EMPTY, and undelivered ones of various ages
    rd.settle(rd.stage(age_seconds=11 * HOUR), WindowState.DELIVERED)
    rd.settle(rd.stage(age_seconds=9 * HOUR), WindowState.EMPTY)
    rd.claimed(rd.stage(age_seconds=5 * HOUR), seconds_ago=60)
    rd.settle(rd.stage(age_seconds=3 * HOUR), WindowState.PARKED)
    rd.stage(age_seconds=100)
    # AND an unrecorded window beyond lookback_hours, which redrive does not read
    rd.stage(age_seconds=(TUNABLES.lookback_hours + 2) * HOUR)

    # WHEN redrive runs
    report = rd.run()

    # THEN the oldest undelivered age is the CLAIMED window's
    assert report.oldest_undelivered_age_seconds == 5 * HOUR


def test_oldest_undelivered_age_is_none_when_everything_is_delivered(rd: Redrive) -> None:
    # GIVEN only delivered and empty windows
    rd.settle(rd.stage(age_seconds=2 * HOUR), WindowState.DELIVERED)
    rd.settle(rd.stage(age_seconds=1 * HOUR), WindowState.EMPTY)

    # WHEN redrive runs
    report = rd.run()

    # THEN there is no undelivered age
    assert report.oldest_undelivered_age_seconds is None
    assert rd.invoked == []


def test_oldest_undelivered_age_is_none_with_nothing_staged(rd: Redrive) -> None:
    # GIVEN an empty staging bucket and DLQ
    # WHEN redrive runs
    report = rd.run()

    # THEN it reports MinIO healthy, did nothing, and has no age to report
    assert report == RedriveReport(minio_healthy=True)
    assert rd.invoked == []


def test_oldest_undelivered_age_counts_windows_older_than_the_lookback(rd: Redrive) -> None:
    # GIVEN a window CLAIMED long before the hours the sweep lists (its partition aged out)
    key = hour_ago_key(rd.clock, 1)
    age = (rd.tunables.lookback_hours + 24) * HOUR
    rd.claimed(key, seconds_ago=age)

    # WHEN redrive runs
    report = rd.run()

    # THEN its age still drives the oldest-undelivered figure, so the alarm cannot clear itself
    assert report.oldest_undelivered_age_seconds is not None
    assert report.oldest_undelivered_age_seconds >= age


# -- cost at production scale ----------------------------------------------------------------


@dataclass
class Cost:
    """Requests made and items read through the clients a redrive run uses."""

    requests: dict[str, int] = field(default_factory=dict)
    items_read: int = 0

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def watch(self, *clients: Any) -> None:
        for client in clients:
            client.meta.events.register("before-call", self._request)
            client.meta.events.register("after-call", self._response)

    def _request(self, model: Any, **_: Any) -> None:
        name = f"{model.service_model.service_name}.{model.name}"
        self.requests[name] = self.requests.get(name, 0) + 1

    def _response(self, model: Any, parsed: dict[str, Any], **_: Any) -> None:
        if model.name in ("Query", "Scan"):
            self.items_read += int(parsed.get("ScannedCount", parsed.get("Count", 0)))
        elif model.name == "BatchGetItem":
            self.items_read += sum(len(items) for items in parsed.get("Responses", {}).values())
        elif model.name == "GetItem":
            self.items_read += int("Item" in parsed)
        elif model.name == "ListObjectsV2":
            self.items_read += int(parsed.get("KeyCount", 0))


def mid_hour_clock() -> Clock:
    """Half past an hour, at least an hour ahead of real time (DLQ messages count as old)."""
    ahead = int(time.time()) + 2 * HOUR
    return Clock(float(ahead // HOUR * HOUR + HOUR // 2))


def delivered_history(rd: Redrive, windows: int) -> None:
    """`windows` staged and DELIVERED windows spread over the 10 hours before the last two, each
    with the claims of 4 files: what weeks of traffic leave behind. The first window is settled
    through the ledger; the rest are copies of its items, written 25 at a time (moto is slow at
    the real path's transactions, and the items are the same)."""
    keys = [
        rd.stage(age_seconds=2 * HOUR + (n * 10 * HOUR) // windows + 60) for n in range(windows)
    ]
    rd.settle(keys[0], WindowState.DELIVERED)
    rd.ledger.claim_files(wid(keys[0]), [f"{wid(keys[0])}-file-{f}" for f in range(4)])
    client = rd.ledger._dynamodb  # history written straight into the table
    window = client.get_item(TableName=LEDGER_TABLE, Key={"pk": {"S": f"WIN#{wid(keys[0])}"}})
    claim = client.get_item(
        TableName=LEDGER_TABLE, Key={"pk": {"S": f"FILE#{wid(keys[0])}-file-0"}}
    )
    items = []
    for key in keys[1:]:
        window_id = wid(key)
        items.append({**window["Item"], "pk": {"S": f"WIN#{window_id}"}, "staged_key": {"S": key}})
        items += [
            {**claim["Item"], "pk": {"S": f"FILE#{window_id}-file-{f}"}, "owner": {"S": window_id}}
            for f in range(4)
        ]
    for start in range(0, len(items), 25):
        batch = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
        client.batch_write_item(RequestItems={LEDGER_TABLE: batch})


def pending_work(rd: Redrive) -> None:
    """The same work in both runs: unrecorded, stale, parked windows and DLQ records."""
    for _ in range(3):
        rd.stage(age_seconds=UNRECORDED_AFTER + 60)
    for _ in range(2):
        rd.claimed(rd.stage(age_seconds=UNRECORDED_AFTER + 120), seconds_ago=2 * HOUR)
    rd.settle(rd.stage(age_seconds=UNRECORDED_AFTER + 180), WindowState.PARKED)
    for n in range(2):
        rd.fail(hour_ago_key(rd.clock, n))


def redrive_cost(monkeypatch: pytest.MonkeyPatch, history_windows: int) -> tuple[Cost, int]:
    """The cost of one steady-state redrive run over `history_windows` of delivered history and
    the same pending work, in an AWS of its own; and how many windows it invoked delivery for."""
    with mock_aws(), monkeypatch.context() as patch:
        resources.create_bucket(
            boto3.client("s3", region_name=REGION), STAGING, REGION, versioned=True
        )
        rd = new_redrive(patch)
        rd.clock.now = mid_hour_clock().now
        delivered_history(rd, history_windows)
        rd.run()  # the first run ever: walks `lookback_hours` once and sets the low-water mark
        pending_work(rd)
        rd.invoked.clear()
        cost = Cost()
        cost.watch(rd.s3, rd.sqs, rd.ledger._dynamodb)  # the ledger's own client
        rd.run()
        return cost, len(rd.invoked)


def test_redrive_cost_is_independent_of_history(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the same pending work over 10 windows of delivered history, and over 100x as many
    # (with their file claims, which share the ledger table)
    small, small_invoked = redrive_cost(monkeypatch, history_windows=10)
    large, large_invoked = redrive_cost(monkeypatch, history_windows=1000)

    # WHEN a steady-state redrive run is measured in requests and items read
    # THEN it does the same work ...
    assert small_invoked == large_invoked == 3 + 2 + 2
    # ... with the same requests and items read, within 10 %: nothing scans history
    assert large.total_requests <= 1.1 * small.total_requests, (small.requests, large.requests)
    assert large.items_read <= 1.1 * small.items_read, (small.items_read, large.items_read)
    assert "dynamodb.Scan" not in large.requests
