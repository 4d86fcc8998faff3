"""The daily report in process: its figures (delivery.reporting) on moto with MinIO in memory,
its formats (delivery.report_render) and schema, storing and publishing it once
(delivery.report_store), the CloudWatch figures (delivery.report_cloudwatch), redrive's probe
log (delivery.redrive_log) and the day an event asks for (delivery.report).

The figures against real deliveries and SeaweedFS, and the cost against history, are in
tests/integration/test_report.py; the page in a real browser in tests/slow/test_report_browser.py.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import fastjsonschema
import pytest

from delivery import report_render
from delivery.redrive_log import RedriveLog
from delivery.report import ReportEventError, day_of
from delivery.report_cloudwatch import CloudWatchOperations
from delivery.report_store import REPORTS_PREFIX, encode, store_and_publish
from delivery.reporting import build_report, fates
from infrastructure.cli.deployment import Deployment
from tests.conftest import REGION
from tests.report_support import (
    InMemoryMinio,
    InProcessDay,
    NoCloudWatch,
    busy_document,
    settings,
)

SCHEMA = Path(__file__).parents[2] / "docs" / "report.schema.json"


@pytest.fixture(scope="module")
def validate() -> Any:
    return fastjsonschema.compile(json.loads(SCHEMA.read_text()))


@pytest.fixture
def busy(provisioned: Deployment) -> dict[str, Any]:
    return busy_document(provisioned)


# ---------------------------------------------------------------- figures


def test_a_busy_day_in_process(busy: dict[str, Any], validate: Any) -> None:
    # GIVEN a day of 14 producers' files, one hour of it late, two files held back
    document = busy
    # THEN the document is the schema's, and every landed file has one fate
    validate(document)
    landed = sum(3 + hour % 5 for hour in range(24)) + 24 + 2
    assert document["files"]["landed"] == landed
    assert sum(fates(document).values()) == landed
    assert fates(document)["delivered"] == landed - 2
    assert (fates(document)["quarantined"], fates(document)["too_large"]) == (1, 1)
    # ... the late hour is the slowest, and the objective is missed for the day
    latency = document["latency"]
    assert latency["slowest_hour"]["hour"] == "14"
    assert latency["slowest_hour"]["p95_seconds"] == 240
    assert latency["objective"]["share_within_p95"] == pytest.approx(
        1 - (3 + 14 % 5) / (landed - 2)
    )
    # ... every file is accounted for, but latency needs a look
    assert document["verdict"]["status"] == "attention"
    assert document["verdict"]["sentence"].startswith(
        "ATTENTION: all 144 files landed on 2026-11-25 are delivered (142) or held back with a "
        "reason (2); but latency p"
    )
    # ... ten producers by name, the other four summed
    assert len(document["producers"]["top"]) == 10
    assert document["producers"]["others"]["producers"] == 4
    assert (
        sum(p["files"] for p in document["producers"]["top"])
        + document["producers"]["others"]["files"]
        == landed
    )


def test_a_day_with_nothing_landed(provisioned: Deployment, validate: Any) -> None:
    # GIVEN a day on which nothing landed and nothing was staged
    day = InProcessDay(provisioned, InMemoryMinio(), date(2026, 11, 25))
    # WHEN its report is made
    document = build_report(
        day.sources(NoCloudWatch()), settings(), day.day, day.midnight + timedelta(days=2)
    )
    # THEN it says so, with empty figures rather than errors
    validate(document)
    assert document["verdict"]["sentence"] == "OK: no file landed on 2026-11-25."
    assert document["latency"]["p95_seconds"] is None
    assert document["operations"]["busiest_minute"] is None
    assert "unknown" in document["operations"]["minio_unavailable_minutes"]


def test_replays_copies_and_wrong_sizes(provisioned: Deployment, validate: Any) -> None:
    # GIVEN files delivered, one also replayed by force, one delivered only by a replay, one in
    # two archives, one whose manifest says another size than landed
    day = InProcessDay(provisioned, InMemoryMinio(), date(2026, 11, 25))
    noon = day.midnight + timedelta(hours=12)
    keys = ["acme/again.json", "acme/only-replayed.json", "acme/twice.json", "acme/size.json"]
    fids = [day.land(key, 10, noon) for key in keys]
    again, replayed_only, twice, wrong = zip(fids, keys, strict=True)
    day.deliver([(*again, 10), (*twice, 10), (wrong[0], wrong[1], 11)], noon, [30_000] * 3)
    day.deliver(
        [(f"{again[0]}#r1", again[1], 10), (f"{replayed_only[0]}#r1", replayed_only[1], 10)],
        noon + timedelta(minutes=5),
        [30_000] * 2,
    )
    day.deliver([(*twice, 10)], noon + timedelta(minutes=6), [30_000])
    # WHEN the day is reported
    document = build_report(
        day.sources(NoCloudWatch()), settings(), day.day, day.midnight + timedelta(days=2)
    )
    # THEN the replays are deliveries (intended, never "twice"), the copy and the size are not
    validate(document)
    files = document["files"]
    assert (files["delivered"], files["redelivered"]) == (2, 2)
    assert (files["delivered_twice"], files["checksum_mismatch"]) == (1, 1)
    assert document["verdict"]["status"] == "not_ok"


def test_the_schema_can_refuse(busy: dict[str, Any], validate: Any) -> None:
    # GIVEN the busy day's document with a figure missing, and one of the wrong type
    missing = json.loads(json.dumps(busy))
    del missing["files"]["landed"]
    wrong = json.loads(json.dumps(busy))
    wrong["operations"]["alarms_fired"] = {"value": None}
    # THEN the schema refuses both (an unknown figure must say why)
    for bad in (missing, wrong):
        with pytest.raises(fastjsonschema.JsonSchemaValueException):
            validate(bad)


# ---------------------------------------------------------------- text


def test_the_text_report_starts_with_the_verdict_and_fits_80_columns(
    busy: dict[str, Any],
) -> None:
    # WHEN the busy day is rendered as text
    text = report_render.text(busy)
    lines = text.splitlines()
    # THEN its first line starts the verdict, and no line passes 80 columns
    assert lines[0].startswith("ATTENTION: all 144 files landed on 2026-11-25")
    assert max(len(line) for line in lines) <= 80
    # ... every section is there, unknown figures say why, and the hours are a chart
    for heading in ("Files", "Bytes", "Windows", "Latency", "Operations", "Hours (UTC)"):
        assert heading in lines
    assert any(line.startswith("  Firehose headroom   unknown: the local stack") for line in lines)
    assert any(re.match(r"  14 +\d+  #+ +240 s$", line) for line in lines), lines
    # ... a long producer name is cut, not wrapped
    assert any("  a-producer-whose-name-goes-on-an~ " in line for line in lines)
    # ... and the same document renders to the same bytes
    assert report_render.text(busy) == text


# ---------------------------------------------------------------- HTML


def test_the_html_report_is_one_page_with_its_charts(busy: dict[str, Any]) -> None:
    # WHEN the busy day is rendered as HTML
    page = report_render.page(busy)
    # THEN it is one self-contained page: no script, nothing fetched from elsewhere
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    # ... with its charts inline: files and latency per hour (24 slots), the objective shares
    assert page.count("<svg") == 3
    assert page.count('class="bar"') >= 24 + 24 + 2
    assert "objective 120 s" in page
    # ... the verdict first, and names escaped, never markup
    assert page.index('id="verdict"') < page.index("<svg")
    assert "&lt;b&gt;&amp;amp;" in page
    assert "<b>&amp;" not in page


# ---------------------------------------------------------------- storing and publishing


@pytest.fixture
def topic(aws: None) -> dict[str, Any]:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="staging", CreateBucketConfiguration={"LocationConstraint": REGION})
    sns = boto3.client("sns", region_name=REGION)
    arn = sns.create_topic(Name="reports")["TopicArn"]
    sqs = boto3.client("sqs", region_name=REGION)
    inbox = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=inbox_arn["Attributes"]["QueueArn"])
    return {"s3": s3, "sns": sns, "arn": arn, "sqs": sqs, "inbox": inbox}


def mails(topic: dict[str, Any]) -> list[dict[str, Any]]:
    got = topic["sqs"].receive_message(QueueUrl=topic["inbox"], MaxNumberOfMessages=10)
    return [json.loads(m["Body"]) for m in got.get("Messages", [])]


def test_a_report_is_stored_and_mailed_once_then_again_when_it_changes(
    topic: dict[str, Any], provisioned: Deployment
) -> None:
    document = busy_document(provisioned)
    store = {"s3": topic["s3"], "bucket": "staging", "sns": topic["sns"], "topic_arn": topic["arn"]}
    # WHEN the report is stored twice, then once more with a figure changed
    first = store_and_publish(document, **store)
    again = store_and_publish(json.loads(encode(document)), **store)
    changed = json.loads(encode(document)) | {"deployment": "sluice-other"}
    third = store_and_publish(changed, **store)
    # THEN the first and the changed one are written and mailed, the repeat is not
    assert (first.published, again.published, third.published) == (True, False, True)
    assert first.keys == tuple(f"{REPORTS_PREFIX}2026-11-25.{e}" for e in ("txt", "html", "json"))
    sent = mails(topic)
    assert [m["Subject"] for m in sent] == [
        document["verdict"]["subject"],
        changed["verdict"]["subject"],
    ]
    assert sent[0]["Message"].startswith(report_render.text(document))
    assert "s3://staging/reports/daily/2026-11-25.html" in sent[0]["Message"]
    stored = topic["s3"].get_object(Bucket="staging", Key=f"{REPORTS_PREFIX}2026-11-25.json")
    assert json.loads(stored["Body"].read())["deployment"] == "sluice-other"


def test_the_subject_fits_sns(busy: dict[str, Any]) -> None:
    # THEN SNS takes the subject: ASCII, at most 100 characters, one line
    subject = busy["verdict"]["subject"]
    assert subject.isascii()
    assert len(subject) <= 100
    assert "\n" not in subject


# ---------------------------------------------------------------- CloudWatch's figures


@pytest.fixture
def cloudwatch(aws: None) -> Any:
    return boto3.client("cloudwatch", region_name=REGION)


def operations(client: Any) -> CloudWatchOperations:
    return CloudWatchOperations(
        client,
        deployment="sluice-prod",
        namespace="Sluice",
        streams=("sluice-prod-0", "sluice-prod-1"),
        queues={"ingest": "sluice-prod-ingest-dlq", "delivery": "sluice-prod-delivery-dlq"},
    )


DAY_START = datetime(2026, 11, 25, tzinfo=UTC)


def test_with_no_metrics_every_cloudwatch_figure_is_unknown_and_says_why(cloudwatch: Any) -> None:
    # GIVEN a CloudWatch with no alarms and no metrics (the local stack's)
    reader = operations(cloudwatch)
    end = DAY_START + timedelta(days=1)
    # THEN each figure is unknown, with its reason, never zero
    assert (
        "no CloudWatch alarm is named sluice-prod-*"
        in reader.alarms_fired(DAY_START, end)["unknown"]
    )
    for found in (
        reader.duplicate_events(DAY_START, end),
        reader.firehose_headroom(DAY_START, end),
        reader.dlq_depths_at(end),
    ):
        assert found["value"] is None
        assert "the local stack publishes no CloudWatch metrics" in found["unknown"]


def put(
    client: Any, namespace: str, name: str, dimensions: dict[str, str], value: float, when: datetime
) -> None:
    client.put_metric_data(
        Namespace=namespace,
        MetricData=[
            {
                "MetricName": name,
                "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
                "Value": value,
                "Timestamp": when,
            }
        ],
    )


def test_firehose_headroom_is_the_least_at_the_busiest_minute(cloudwatch: Any) -> None:
    # GIVEN a stream's quotas (1 MiB/s, 1,000 requests/s) and its busiest minute at 14:03:
    # 30 MiB, and a quieter one at 09:00
    stream = {"DeliveryStreamName": "sluice-prod-1"}
    for when in (DAY_START + timedelta(hours=9), DAY_START + timedelta(hours=14, minutes=3)):
        put(cloudwatch, "AWS/Firehose", "BytesPerSecondLimit", stream, 1024 * 1024, when)
        put(cloudwatch, "AWS/Firehose", "PutRequestsPerSecondLimit", stream, 1000, when)
        put(cloudwatch, "AWS/Firehose", "IncomingPutRequests", stream, 600, when)
    put(
        cloudwatch,
        "AWS/Firehose",
        "IncomingBytes",
        stream,
        6 * 1024 * 1024,
        DAY_START + timedelta(hours=9),
    )
    put(
        cloudwatch,
        "AWS/Firehose",
        "IncomingBytes",
        stream,
        30 * 1024 * 1024,
        DAY_START + timedelta(hours=14, minutes=3),
    )
    # WHEN the day's headroom is read
    found = operations(cloudwatch).firehose_headroom(DAY_START, DAY_START + timedelta(days=1))
    # THEN it is 1 - 30 MiB / 60 s / 1 MiB/s = 0.5, for bytes, at 14:03
    assert found == {"value": 0.5, "stream": "sluice-prod-1", "quota": "bytes", "minute": "14:03"}


def test_duplicates_absorbed_are_the_forwarders_counts(cloudwatch: Any) -> None:
    # GIVEN the forwarder's metrics of the day: messages received, and duplicates found
    forwarder = {"service": "forwarder"}
    noon = DAY_START + timedelta(hours=12)
    put(cloudwatch, "Sluice", "MessagesReceived", forwarder, 100, noon)
    put(cloudwatch, "Sluice", "DuplicateEvents", forwarder, 7, noon)
    put(cloudwatch, "Sluice", "DuplicatesInBatch", forwarder, 2, noon + timedelta(hours=1))
    # WHEN the day's duplicates are read
    found = operations(cloudwatch).duplicate_events(DAY_START, DAY_START + timedelta(days=1))
    # THEN they are the sum of both
    assert found == {"value": 9}


def test_dlq_depths_at_the_days_end(cloudwatch: Any) -> None:
    # GIVEN a DLQ holding 3 messages a minute before midnight
    end = DAY_START + timedelta(days=1)
    queue = {"QueueName": "sluice-prod-delivery-dlq"}
    put(
        cloudwatch,
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        queue,
        3,
        end - timedelta(minutes=1),
    )
    # WHEN the depths at the day's end are read
    found = operations(cloudwatch).dlq_depths_at(end)
    # THEN the delivery DLQ holds 3, the ingest DLQ (no datapoint) 0
    assert found == {"value": {"ingest": 0, "delivery": 3}}


class AlarmHistory:
    """CloudWatch's alarm calls (moto has no DescribeAlarmHistory): two alarms, a history."""

    def __init__(self, history: list[dict[str, Any]]) -> None:
        self.history = history

    def get_paginator(self, operation: str) -> Any:
        history = self.history

        class Pages:
            def paginate(self, **arguments: Any) -> list[dict[str, Any]]:
                if operation == "describe_alarms":
                    assert arguments == {"AlarmNamePrefix": "sluice-prod-"}
                    return [
                        {
                            "MetricAlarms": [
                                {"AlarmName": "sluice-prod-minio-unwritable"},
                                {"AlarmName": "sluice-prod-files-missing"},
                            ]
                        }
                    ]
                assert arguments["HistoryItemType"] == "StateUpdate"
                mine = [h for h in history if h["AlarmName"] == arguments["AlarmName"]]
                return [{"AlarmHistoryItems": mine}]

        return Pages()


def transition(name: str, state: str) -> dict[str, Any]:
    return {
        "AlarmName": name,
        "HistoryItemType": "StateUpdate",
        "HistorySummary": f"Alarm updated from OK to {state}",
        "HistoryData": json.dumps({"newState": {"stateValue": state}}),
    }


def test_alarms_fired_are_counted_by_name() -> None:
    # GIVEN MinIO's alarm into ALARM twice (and back once), another account's alarm, and no
    # other transition into ALARM
    history = [
        transition("sluice-prod-minio-unwritable", "ALARM"),
        transition("sluice-prod-minio-unwritable", "OK"),
        transition("sluice-prod-minio-unwritable", "ALARM"),
        transition("someone-elses-alarm", "ALARM"),
    ]
    # WHEN the day's alarms are read
    found = operations(AlarmHistory(history)).alarms_fired(DAY_START, DAY_START + timedelta(days=1))
    # THEN the deployment's alarm is listed with its count, named without the prefix
    assert found == {"value": [{"alarm": "minio-unwritable", "times": 2}]}


# ---------------------------------------------------------------- redrive's probe log


class Clock:
    def __init__(self, moment: datetime) -> None:
        self.now = moment.timestamp()

    def __call__(self) -> float:
        return self.now


def test_redrive_log_counts_the_time_since_the_last_probe_when_one_fails(
    provisioned: Deployment,
) -> None:
    clock = Clock(DAY_START + timedelta(hours=3))
    log = RedriveLog(provisioned.client("dynamodb"), provisioned.ledger_table, 3600, clock)
    # GIVEN the first probe ever failing at 03:00 (nothing to count from), then healthy, then
    # failing 5 and (after a long gap) 90 minutes later, then just after midnight
    counted = [log.record_probe(False, max_interval_ms=600_000)]
    for minutes, healthy in ((5, True), (10, False), (100, False), (21 * 60 + 2, False)):
        clock.now = (DAY_START + timedelta(hours=3, minutes=minutes)).timestamp()
        counted.append(log.record_probe(healthy, max_interval_ms=600_000))
    clock.now = (DAY_START + timedelta(hours=3)).timestamp()
    # ... and two runs' redrives, and a run that redrove nothing
    log.record_run({"dlq_redriven": 4, "environment_redriven": 4, "parked": 1})
    log.record_run({"dlq_redriven": 1, "reinvoked": 2})
    log.record_run({})
    # THEN each failure counts the time since the probe before it, at most the cap, on the
    # probe's own day
    assert counted == [0, 0, 300_000, 600_000, 600_000]
    day = log.day(DAY_START.date())
    assert day is not None
    assert (day.probes, day.failed, day.unavailable_ms) == (4, 3, 900_000)
    next_day = log.day(DAY_START.date() + timedelta(days=1))
    assert next_day is not None
    assert (next_day.probes, next_day.failed, next_day.unavailable_ms) == (1, 1, 600_000)
    # ... and the redrives add up
    assert (day.dlq_redriven, day.environment_redriven, day.reinvoked, day.parked) == (5, 4, 2, 1)
    # ... and a day with no run has no log
    assert log.day(date(2026, 11, 24)) is None


# ---------------------------------------------------------------- which day


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"scheduled_time": "2026-11-26T08:00:00Z"}, date(2026, 11, 25)),
        ({"scheduled_time": "2026-11-26T08:00:00Z", "days_back": 0}, date(2026, 11, 26)),
        ({"time": "2026-11-26T08:00:05Z"}, date(2026, 11, 25)),
        ({"date": "2026-10-01"}, date(2026, 10, 1)),
        ({}, date(2026, 12, 6)),
    ],
)
def test_the_day_an_event_asks_for(event: dict[str, Any], expected: date) -> None:
    # WHEN the event is read at 2026-12-07 01:00 with the tunables' days_back (1)
    # THEN the day is the one it names, else days_back before its schedule's time, else now's
    assert day_of(event, 1, datetime(2026, 12, 7, 1, tzinfo=UTC)) == expected


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"date": "yesterday"}, "'date' must be YYYY-MM-DD"),
        ({"scheduled_time": "08:00"}, "'scheduled_time' is not ISO 8601"),
        ({"days_back": -1}, "'days_back' must be a whole number of days >= 0"),
    ],
)
def test_an_event_that_names_no_day_fails_saying_why(event: dict[str, Any], message: str) -> None:
    with pytest.raises(ReportEventError, match=message):
        day_of(event, 1, datetime(2026, 12, 7, tzinfo=UTC))


def test_the_readme_shows_a_text_report_that_fits_80_columns() -> None:
    # GIVEN the README's sample of the text report (pasted from `sluice report`'s output)
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("### The daily report", 1)[1]
    sample = section.split("```text\n", 1)[1].split("```", 1)[0]
    lines = sample.splitlines()
    # THEN it is a report as the renderer writes it: the verdict, the title, every section
    assert re.match(r"(OK|ATTENTION|NOT OK): ", lines[0])
    assert lines[1].startswith("Sluice daily report, ")
    for heading in ("Files", "Bytes", "Windows", "Latency", "Operations", "Hours (UTC)"):
        assert heading in lines
    assert max(len(line) for line in lines) <= 80
