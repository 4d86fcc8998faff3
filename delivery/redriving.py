"""Redrive's logic: nothing staged stays undelivered unnoticed (DESIGN §4, §4a rule 6).

Each run first measures what must be reported even if the rest cannot run (`check_health`: MinIO
takes a write, the oldest window not yet delivered, from the ledger's index); then, once MinIO is
healthy:
1. takes on-failure records from the delivery DLQ (older than `min_age_seconds`) and invokes
   delivery again, asynchronously, with the original event; the message is deleted once Lambda
   accepted the invocation. A window redriven more than `max_redrives` times is PARKED instead,
   and alarmed: it needs a person (`sluice redrive --window` releases it). Only the window's own
   failures count: a record whose error is the environment's (`ENVIRONMENT_ERRORS`: MinIO, the
   network, throttling of DynamoDB or KMS) is redriven without counting, so an outage never parks
   windows en masse.
2. re-invokes delivery for staged windows that have no ledger record after the destination
   buffer interval + `unrecorded_grace_seconds` (a lost S3 event, a crash between claims), and
   for windows CLAIMED longer than `claimed_stale_seconds` (a crash after claiming). Such a
   re-invocation counts toward PARKED only when a delivery attempt began since the previous
   one: a window whose invocation still waits in Lambda's queue (a drain, throttling) is
   invoked again but never parked for waiting.
3. reports the age of the oldest undelivered window (alarmed above 24 h);
4. writes the hour marker of each closed hour whose windows are all delivered
   (delivery.hour_markers).
At most `limit_per_run` windows a run, spread over up to `jitter_seconds`, oldest hour first.
A warm container remembers which windows it saw DELIVERED or EMPTY (`SettledWindows`; final states
never change), so each run reads the records of the windows still open, not of the whole hour.

What a run reads is bounded by the work pending, never by history: windows not yet final come
from the ledger's sparse index (delivery.ledger), and the sweep lists staged windows only from its
low-water mark, the oldest hour not yet done (closed, every window delivered, empty or parked, its
marker written), which it moves forward as hours are done. Before the first mark it starts
`lookback_hours` back. An hour whose parked window is released goes back under the mark.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, NamedTuple
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from delivery.hour_markers import Hour, HourMarkers, is_closed
from delivery.layout import WindowKeyError, window_name
from delivery.ledger import Ledger, WindowRecord, WindowState
from delivery.redrive_log import RedriveLog
from infrastructure.tunables import RedriveTunables

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

logger = Logger(child=True)

ENVIRONMENT_ERRORS: Final = frozenset(
    {
        # MinIO or the network between (urllib3, minio-py, delivery.upload, delivery.minio_access)
        "MaxRetryError",
        "ProtocolError",
        "NewConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ConnectionError",
        "TimeoutError",
        "UploadError",
        "MinioAuthError",
        "ServerError",
        # AWS throttling and service-side errors (botocore raises them by their code)
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "TransactionConflictException",
        "LedgerRetriesExhausted",
        # An envelope newer than this delivery reads: it waits for a deploy, never parks
        "NewerSchemaVersion",
        "InternalServerError",
        "ServiceUnavailable",
        "KMSInternalException",
        "KMSThrottlingException",
        "EndpointConnectionError",
        "SlowDown",
        # The staging bucket kept refusing a payload table's rows (delivery.tables)
        "TableStoreUnavailable",
        # Another invocation of the window held its lease (delivery.lease)
        "WindowBusy",
        "LeaseLost",
    }
)
"""Error types of delivery failures that say nothing about the window itself. A generic
botocore `ClientError` counts when its message names one of them (`An error occurred (X)`)."""

Invoker = Callable[[dict[str, Any]], None]
"""Invoke delivery asynchronously with this event; raise if Lambda did not accept it."""


class SettledWindows:
    """Window ids the sweep found DELIVERED or EMPTY, by the start of their hour: final states
    never change, so a warm container reads a window's record until it settles, not on every run
    of its hour (an outage's drain leaves thousands of windows in the hours being swept). Hours
    below the sweep's low-water mark are forgotten; a cold start reads everything once."""

    def __init__(self) -> None:
        self._by_hour: dict[float, set[str]] = {}

    def of(self, hour_start: float) -> set[str]:
        return self._by_hour.setdefault(hour_start, set())

    def forget_before(self, hour_start: float) -> None:
        for start in [h for h in self._by_hour if h < hour_start]:
            del self._by_hour[start]


@dataclass(frozen=True)
class RedriveDeps:
    s3: S3Client
    sqs: SQSClient
    ledger: Ledger
    minio_healthy: Callable[[], bool]
    invoke: Invoker
    staging_bucket: str
    dlq_url: str
    tunables: RedriveTunables
    destination_buffer_seconds: int
    file_extension: str
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    jitter: Callable[[], float] = random.random
    markers: HourMarkers | None = None
    """None: no hour markers (tests of the rest)."""
    log: RedriveLog | None = None
    """Where each run's redrives are added up by day, for the daily report; None: nowhere."""
    settled: SettledWindows = field(default_factory=SettledWindows)
    """Kept for the life of the deps: one per container when built once per cold start."""


@dataclass
class RedriveReport:
    minio_healthy: bool = False
    dlq_redriven: int = 0
    environment_redriven: int = 0
    """Of those, failed for the environment (MinIO, network, throttling): not counted."""
    parked: list[str] = field(default_factory=list)
    dlq_settled: int = 0
    """DLQ messages for windows already delivered or empty: deleted without an invocation."""
    unrecorded_redriven: int = 0
    stale_redriven: int = 0
    oldest_undelivered_age_seconds: float | None = None
    invoke_failures: int = 0
    """Invocations Lambda refused; their windows are tried again on a later run."""
    would_redrive: list[str] = field(default_factory=list)
    """With dry_run: the staged keys a run would redrive."""
    hour_markers: list[str] = field(default_factory=list)
    """Hour markers written (or rewritten) in MinIO."""
    hour_marker_failures: int = 0


def staged_event(bucket: str, key: str) -> dict[str, Any]:
    """The S3 notification delivery is invoked with for one staged window."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "eventTime": datetime.now(UTC)
                .isoformat(timespec="milliseconds")
                .replace("+00:00", "Z"),
                "s3": {"bucket": {"name": bucket}, "object": {"key": key}},
            }
        ]
    }


class Health(NamedTuple):
    """What a run measures before its work, to be published even if the work never ends."""

    minio_healthy: bool
    oldest_undelivered_age_seconds: float | None


def check_health(deps: RedriveDeps) -> Health:
    """MinIO's write probe and the oldest window not yet delivered: three requests at most."""
    return Health(deps.minio_healthy(), _oldest_in_ledger(deps, deps.clock()))


def redrive(
    deps: RedriveDeps, *, dry_run: bool = False, health: Health | None = None
) -> RedriveReport:
    health = health or check_health(deps)
    report = RedriveReport(
        minio_healthy=health.minio_healthy,
        oldest_undelivered_age_seconds=health.oldest_undelivered_age_seconds,
    )
    budget = deps.tunables.limit_per_run
    if report.minio_healthy:
        budget -= _drain_dlq(deps, report, budget, dry_run)
    else:
        logger.warning("MinIO does not take writes; DLQ left for the next run")
    _sweep_staging(deps, report, budget if report.minio_healthy else 0, dry_run)
    if not dry_run and deps.log is not None:
        _log_run(deps.log, report)
    return report


def _log_run(log: RedriveLog, report: RedriveReport) -> None:
    """The run's redrives into the day's log; the redrives are done whether or not it is."""
    try:
        log.record_run(
            {
                "dlq_redriven": report.dlq_redriven,
                "environment_redriven": report.environment_redriven,
                "reinvoked": report.unrecorded_redriven + report.stale_redriven,
                "parked": len(report.parked),
            }
        )
    except (ClientError, BotoCoreError):
        logger.exception("redrives not logged; the daily report will count fewer")


def _drain_dlq(deps: RedriveDeps, report: RedriveReport, budget: int, dry_run: bool) -> int:
    used = 0
    min_age_ms = deps.tunables.min_age_seconds * 1000
    looked_at: list[dict[str, str]] = []
    """Received but left in the DLQ (too young, or a dry run): visible again once the run is
    done, so that neither the next run nor an operator's `sluice redrive` waits for them."""
    while used < budget:
        response = deps.sqs.receive_message(
            QueueUrl=deps.dlq_url,
            MaxNumberOfMessages=min(10, budget - used),
            AttributeNames=["SentTimestamp"],
            VisibilityTimeout=60,
        )
        messages = response.get("Messages", [])
        if not messages:
            break
        for message in messages:
            sent_ms = int(message.get("Attributes", {}).get("SentTimestamp", "0"))
            if deps.clock() * 1000 - sent_ms < min_age_ms:
                looked_at.append(_handle(message))
                continue
            used += _redrive_message(deps, report, message, dry_run)
            if dry_run:
                looked_at.append(_handle(message))
    _make_visible(deps, looked_at)
    return used


def _handle(message: Any) -> dict[str, str]:
    return {"Id": message["MessageId"], "ReceiptHandle": message["ReceiptHandle"]}


def _make_visible(deps: RedriveDeps, messages: list[dict[str, str]]) -> None:
    for start in range(0, len(messages), 10):
        deps.sqs.change_message_visibility_batch(
            QueueUrl=deps.dlq_url,
            Entries=[
                {"Id": m["Id"], "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for m in messages[start : start + 10]
            ],
        )


def _redrive_message(deps: RedriveDeps, report: RedriveReport, message: Any, dry_run: bool) -> int:
    try:
        payload = json.loads(message["Body"])["requestPayload"]
        keys = [(r["s3"]["bucket"]["name"], r["s3"]["object"]["key"]) for r in payload["Records"]]
    except (ValueError, KeyError, TypeError):
        logger.error(  # noqa: TRY400  # the body is logged; a traceback adds nothing
            "delivery DLQ message is not an on-failure record; left in the DLQ",
            alarm="DeliveryDlqUnreadable",
            body=message["Body"][:500],
        )
        return 0
    windows = [(bucket, unquote_plus(key)) for bucket, key in keys]  # keys arrive URL-encoded
    if dry_run:
        report.would_redrive += [key for _, key in windows]
        return 1
    # A record without a response is of an event that expired before delivery ever ran it
    # (EventAgeExceeded behind a backlog, throttling): the environment's, like those errors.
    response = json.loads(message["Body"]).get("responsePayload")
    environment = response is None or environment_failure(response)
    needed = [(b, k) for b, k in windows if _needs_redrive(deps, report, b, k)]
    if needed:  # delivery returns at once for the windows of the event already settled
        try:
            deps.invoke(payload)
        except Exception as err:  # noqa: BLE001  # the message stays; a later run retries it
            _invoke_failed(report, [k for _, k in needed], err)
            return 1
        if environment:
            report.environment_redriven += 1
        else:
            for _, key in needed:
                _count_redrive(deps, key)
        report.dlq_redriven += 1
    # Parked or settled windows need no invocation, and their message goes all the same: parked
    # ones are released by `sluice redrive --window`, which invokes delivery itself.
    deps.sqs.delete_message(QueueUrl=deps.dlq_url, ReceiptHandle=message["ReceiptHandle"])
    return 1


def environment_failure(response: Any) -> bool:
    """Whether an on-failure record's `responsePayload` is an error of the environment."""
    if not isinstance(response, dict):
        return False
    error_type = str(response.get("errorType", ""))
    if error_type in ENVIRONMENT_ERRORS:
        return True
    message = str(response.get("errorMessage", ""))
    return error_type == "ClientError" and any(
        f"({code})" in message for code in ENVIRONMENT_ERRORS
    )


def _invoke_failed(report: RedriveReport, keys: list[str], err: Exception) -> None:
    logger.error(
        "delivery could not be invoked; left for the next run",
        staged_keys=keys,
        error=f"{type(err).__name__}: {err}",
    )
    report.invoke_failures += 1


def _count_redrive(deps: RedriveDeps, key: str, *, counted: bool = True) -> None:
    """Recorded once Lambda accepted the invocation, so refusals never park a window."""
    window_id = window_name(key, deps.file_extension).window_id
    deps.ledger.record_redrive(window_id, key, counted=counted)


def _needs_redrive(deps: RedriveDeps, report: RedriveReport, bucket: str, key: str) -> bool:
    """Whether to invoke delivery for the window; parks it once redriven `max_redrives` times."""
    try:
        window_id = window_name(key, deps.file_extension).window_id
    except WindowKeyError:
        logger.error(  # noqa: TRY400  # the key says it all; a traceback adds nothing
            "DLQ record names no staged window", bucket=bucket, key=key
        )
        return False
    record = deps.ledger.get_window(window_id)
    if record is not None and record.state in (
        WindowState.DELIVERED,
        WindowState.EMPTY,
        WindowState.PARKED,
    ):
        report.dlq_settled += 1
        return False
    if record is not None and record.redrive_count >= deps.tunables.max_redrives:
        deps.ledger.mark_parked(window_id, f"redriven {record.redrive_count} times without success")
        logger.error(
            "window parked after too many redrives",
            alarm="WindowsParked",
            window_id=window_id,
            staged_key=key,
        )
        report.parked.append(window_id)
        return False
    return True


def _oldest_in_ledger(deps: RedriveDeps, now: float) -> float | None:
    """Age of the oldest CLAIMED or PARKED window the ledger knows, whatever its hour (the
    sweep lists only from its low-water mark): one Query of the index per state."""
    oldest: float | None = None
    for state in (WindowState.CLAIMED, WindowState.PARKED):
        for record in deps.ledger.pending_windows(state, limit=1):
            started_ms = record.claimed_at_ms or record.updated_at_ms
            age = now - started_ms / 1000
            oldest = age if oldest is None else max(oldest, age)
    return oldest


def _sweep_staging(deps: RedriveDeps, report: RedriveReport, budget: int, dry_run: bool) -> None:
    now = deps.clock()
    unrecorded_after = deps.destination_buffer_seconds + deps.tunables.unrecorded_grace_seconds
    sweep = _Sweep(deps, report, budget, dry_run, now, unrecorded_after)
    low_water = deps.ledger.sweep_low_water()
    start = _hour_start(
        now - deps.tunables.lookback_hours * 3600 if low_water is None else low_water
    )
    new_low_water = start
    advancing = True
    for hour_start in _hours(start, now):
        hour = Hour(*_hour_prefix_parts(hour_start))
        done = sweep.hour(hour, _staged_in_hour(deps, hour), deps.settled.of(hour_start))
        if advancing and done:
            new_low_water = hour_start + 3600
        else:
            advancing = False
    if not dry_run and new_low_water != low_water:
        deps.ledger.set_sweep_low_water(new_low_water)
    deps.settled.forget_before(new_low_water)


@dataclass
class _Sweep:
    """One run's walk over staged windows, hour by hour, oldest first."""

    deps: RedriveDeps
    report: RedriveReport
    budget: int
    dry_run: bool
    now: float
    unrecorded_after: float
    invocations: int = 0

    def hour(self, hour: Hour, staged: list[tuple[str, float]], settled: set[str]) -> bool:
        """Redrive what is stuck in `hour`; whether the hour is done (see the module doc).
        `settled`: the hour's windows already seen final, added to as more are."""
        deps = self.deps
        names = {}
        for key, modified in staged:
            try:
                names[key] = (window_name(key, deps.file_extension).window_id, modified)
            except WindowKeyError:
                continue
        records = deps.ledger.get_windows(
            [window_id for window_id, _ in names.values() if window_id not in settled],
            summary=True,
        )
        open_windows = parked = 0
        for key, (window_id, modified) in names.items():
            if window_id in settled:
                continue
            record = records.get(window_id)
            if record is not None and record.state in (WindowState.DELIVERED, WindowState.EMPTY):
                settled.add(window_id)
                continue
            if record is not None and record.state is WindowState.PARKED:
                parked += 1
            else:
                open_windows += 1
            age = self.now - modified
            oldest = self.report.oldest_undelivered_age_seconds
            self.report.oldest_undelivered_age_seconds = max(oldest or 0.0, age)
            stuck = _stuck(deps, record, age, self.now, self.unrecorded_after)
            self._redrive_if_stuck(key, record, stuck)
        if open_windows or not is_closed(hour, self.now, self.unrecorded_after):
            return False
        if parked:
            return True  # parked windows lower the mark when released
        return self._mark(hour, [w for w, _ in names.values() if w in settled])

    def _redrive_if_stuck(self, key: str, record: WindowRecord | None, kind: str | None) -> None:
        deps = self.deps
        if kind is None or self.invocations >= self.budget:
            return  # still measured for the oldest age; redriven on a later run
        self.invocations += 1
        if self.dry_run:
            self.report.would_redrive.append(key)
            return
        if not _needs_redrive(deps, self.report, deps.staging_bucket, key):
            return
        deps.sleep(deps.jitter() * deps.tunables.jitter_seconds / max(1, self.budget))
        try:
            deps.invoke(staged_event(deps.staging_bucket, key))
        except Exception as err:  # noqa: BLE001  # one refusal must not stop the sweep
            _invoke_failed(self.report, [key], err)
            return
        # Counted toward PARKED only when an attempt began since the last redrive and the
        # window is stuck all the same: one whose invocation still waits behind a backlog
        # (an outage's drain, throttling) is invoked again but never parked for waiting.
        _count_redrive(deps, key, counted=record is not None and record.attempted_since_redrive)
        if kind == "unrecorded":
            self.report.unrecorded_redriven += 1
        else:
            self.report.stale_redriven += 1

    def _mark(self, hour: Hour, settled: list[str]) -> bool:
        """Write the marker of a closed hour whose windows are all final; whether it is done."""
        deps = self.deps
        if not settled or deps.markers is None:
            return True  # no windows, no marker
        if self.dry_run or not self.report.minio_healthy:
            return False
        try:
            # The sweep read summaries, with no parts: the marker lists each window's archives.
            whole = deps.ledger.get_windows(settled)
            written = deps.markers.settle(hour, list(whole.values()), self.now)
        except Exception as err:  # noqa: BLE001  # a marker must not stop redrive; next run retries
            logger.warning(
                "hour marker not written",
                dt=hour.dt,
                hour=hour.hour,
                error=f"{type(err).__name__}: {err}",
            )
            self.report.hour_marker_failures += 1
            return False
        if written is not None:
            self.report.hour_markers.append(written)
        return True


def _stuck(
    deps: RedriveDeps, record: WindowRecord | None, age: float, now: float, unrecorded_after: float
) -> str | None:
    """`unrecorded` or `stale` when an undelivered window needs delivery invoked again."""
    if record is None:
        return "unrecorded" if age >= unrecorded_after else None
    stale_ms = deps.tunables.claimed_stale_seconds * 1000
    if record.state is WindowState.CLAIMED and now * 1000 - record.updated_at_ms >= stale_ms:
        return "stale"
    return None


def _hour_start(epoch: float) -> float:
    return float(int(epoch) // 3600 * 3600)


def _hours(start: float, now: float) -> Iterator[float]:
    """The start of every hour from `start` to the current one, oldest first."""
    hour_start = start
    while hour_start <= now:
        yield hour_start
        hour_start += 3600


def _hour_prefix_parts(hour_start: float) -> tuple[str, str]:
    moment = datetime.fromtimestamp(hour_start, UTC)
    return f"{moment:%Y-%m-%d}", f"{moment:%H}"


def _staged_in_hour(deps: RedriveDeps, hour: Hour) -> list[tuple[str, float]]:
    """(key, last-modified epoch seconds) of the hour's staged windows: its partition of the
    `buffers_prefix` in tunables.json (`buffers/dt=yyyy-MM-dd/hour=HH/`)."""
    prefix = f"buffers/dt={hour.dt}/hour={hour.hour}/"
    paginator = deps.s3.get_paginator("list_objects_v2")
    return [
        (obj["Key"], obj["LastModified"].timestamp())
        for page in paginator.paginate(Bucket=deps.staging_bucket, Prefix=prefix)
        for obj in page.get("Contents", [])
    ]
