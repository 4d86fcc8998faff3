"""Redrive's logic: nothing staged stays undelivered unnoticed (DESIGN §4, §4a rule 6).

Each run, once MinIO answers its health check:
1. takes on-failure records from the delivery DLQ (older than `min_age_seconds`) and invokes
   delivery again, asynchronously, with the original event; the message is deleted once Lambda
   accepted the invocation. A window redriven more than `max_redrives` times is PARKED instead,
   and alarmed: it needs a person (`sluice redrive --window` releases it).
2. re-invokes delivery for staged windows that have no ledger record after the destination
   buffer interval + `unrecorded_grace_seconds` (a lost S3 event, a crash between claims), and
   for windows CLAIMED longer than `claimed_stale_seconds` (a crash after claiming).
3. reports the age of the oldest undelivered window (alarmed above 24 h);
4. writes the hour marker of each closed hour whose windows are all delivered
   (delivery.hour_markers).
At most `limit_per_run` windows a run, spread over up to `jitter_seconds`.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger

from delivery.hour_markers import Hour, HourMarkers, is_closed
from delivery.ledger import Ledger, WindowRecord, WindowState
from delivery.window import WindowKeyError, window_name
from infrastructure.tunables import RedriveTunables

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

logger = Logger(child=True)

Invoker = Callable[[dict[str, Any]], None]
"""Invoke delivery asynchronously with this event; raise if Lambda did not accept it."""


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


@dataclass
class RedriveReport:
    minio_healthy: bool = False
    dlq_redriven: int = 0
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


def redrive(deps: RedriveDeps, *, dry_run: bool = False) -> RedriveReport:
    report = RedriveReport()
    budget = deps.tunables.limit_per_run
    report.minio_healthy = deps.minio_healthy()
    if report.minio_healthy:
        budget -= _drain_dlq(deps, report, budget, dry_run)
    else:
        logger.warning("MinIO does not answer; DLQ left for the next run")
    _sweep_staging(deps, report, budget if report.minio_healthy else 0, dry_run)
    return report


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
            extra={"alarm": "DeliveryDlqUnreadable", "body": message["Body"][:500]},
        )
        return 0
    windows = [(bucket, unquote_plus(key)) for bucket, key in keys]  # keys arrive URL-encoded
    if dry_run:
        report.would_redrive += [key for _, key in windows]
        return 1
    needed = [(b, k) for b, k in windows if _needs_redrive(deps, report, b, k)]
    if needed:  # delivery returns at once for the windows of the event already settled
        try:
            deps.invoke(payload)
        except Exception as err:  # noqa: BLE001  # the message stays; a later run retries it
            _invoke_failed(report, [k for _, k in needed], err)
            return 1
        for _, key in needed:
            _count_redrive(deps, key)
        report.dlq_redriven += 1
    # Parked or settled windows need no invocation, and their message goes all the same: parked
    # ones are released by `sluice redrive --window`, which invokes delivery itself.
    deps.sqs.delete_message(QueueUrl=deps.dlq_url, ReceiptHandle=message["ReceiptHandle"])
    return 1


def _invoke_failed(report: RedriveReport, keys: list[str], err: Exception) -> None:
    logger.error(
        "delivery could not be invoked; left for the next run",
        extra={"staged_keys": keys, "error": f"{type(err).__name__}: {err}"},
    )
    report.invoke_failures += 1


def _count_redrive(deps: RedriveDeps, key: str) -> None:
    """Counted once Lambda accepted the invocation, so refusals never park a window."""
    deps.ledger.record_redrive(window_name(key, deps.file_extension).window_id, key)


def _needs_redrive(deps: RedriveDeps, report: RedriveReport, bucket: str, key: str) -> bool:
    """Whether to invoke delivery for the window; parks it once redriven `max_redrives` times."""
    try:
        window_id = window_name(key, deps.file_extension).window_id
    except WindowKeyError:
        logger.error(  # noqa: TRY400  # the key says it all; a traceback adds nothing
            "DLQ record names no staged window", extra={"bucket": bucket, "key": key}
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
            extra={"alarm": "WindowsParked", "window_id": window_id, "staged_key": key},
        )
        report.parked.append(window_id)
        return False
    return True


def _oldest_in_ledger(deps: RedriveDeps, now: float) -> float | None:
    """Age of the oldest CLAIMED or PARKED window the ledger knows, whatever its hour: the
    sweep only lists `lookback_hours`, and an alarm must not clear by a window ageing out."""
    oldest: float | None = None
    for state in (WindowState.CLAIMED, WindowState.PARKED):
        for record in deps.ledger.windows_in_state(state, limit=1000):
            started_ms = record.claimed_at_ms or record.updated_at_ms
            age = now - started_ms / 1000
            oldest = age if oldest is None else max(oldest, age)
    return oldest


def _sweep_staging(deps: RedriveDeps, report: RedriveReport, budget: int, dry_run: bool) -> None:
    now = deps.clock()
    report.oldest_undelivered_age_seconds = _oldest_in_ledger(deps, now)
    unrecorded_after = deps.destination_buffer_seconds + deps.tunables.unrecorded_grace_seconds
    invocations: list[str] = []
    hours: dict[Hour, list[WindowRecord | None]] = {}
    for key, modified in _staged_windows(deps, now):
        age = now - modified
        try:
            name = window_name(key, deps.file_extension)
        except WindowKeyError:
            continue
        window_id = name.window_id
        record = deps.ledger.get_window(window_id)
        hours.setdefault(Hour(name.dt, name.hour), []).append(record)
        if record is not None and record.state in (WindowState.DELIVERED, WindowState.EMPTY):
            continue
        oldest = report.oldest_undelivered_age_seconds
        report.oldest_undelivered_age_seconds = max(oldest or 0.0, age)
        kind = _stuck(deps, record, age, now, unrecorded_after)
        if kind is None:
            continue
        if len(invocations) >= budget:
            continue  # still measured for the oldest age; redriven on a later run
        invocations.append(key)
        if dry_run:
            report.would_redrive.append(key)
            continue
        if not _needs_redrive(deps, report, deps.staging_bucket, key):
            continue
        deps.sleep(deps.jitter() * deps.tunables.jitter_seconds / max(1, budget))
        try:
            deps.invoke(staged_event(deps.staging_bucket, key))
        except Exception as err:  # noqa: BLE001  # one refusal must not stop the sweep
            _invoke_failed(report, [key], err)
            continue
        _count_redrive(deps, key)
        if kind == "unrecorded":
            report.unrecorded_redriven += 1
        else:
            report.stale_redriven += 1
    if report.minio_healthy and not dry_run:
        _mark_hours(deps, report, hours, now, close_after=unrecorded_after)


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


def _mark_hours(
    deps: RedriveDeps,
    report: RedriveReport,
    hours: dict[Hour, list[WindowRecord | None]],
    now: float,
    close_after: float,
) -> None:
    if deps.markers is None:
        return
    settled = (WindowState.DELIVERED, WindowState.EMPTY)
    for hour, records in sorted(hours.items(), key=lambda item: item[0].end):
        if not is_closed(hour, now, close_after):
            continue
        windows = [r for r in records if r is not None and r.state in settled]
        if len(windows) < len(records):
            continue  # written once the last window is delivered
        try:
            written = deps.markers.settle(hour, windows, now)
        except Exception as err:  # noqa: BLE001  # a marker must not stop redrive; next run retries
            logger.warning(
                "hour marker not written",
                extra={"dt": hour.dt, "hour": hour.hour, "error": f"{type(err).__name__}: {err}"},
            )
            report.hour_marker_failures += 1
            continue
        if written is not None:
            report.hour_markers.append(written)


def _staged_windows(deps: RedriveDeps, now: float) -> Iterator[tuple[str, float]]:
    """(key, last-modified epoch seconds) of staged windows of the last `lookback_hours`.

    Walks the hourly partitions of the `buffers_prefix` in tunables.json
    (`buffers/dt=yyyy-MM-dd/hour=HH/`), so a run reads only the recent ones.
    """
    start = datetime.fromtimestamp(now, UTC).replace(minute=0, second=0, microsecond=0)
    paginator = deps.s3.get_paginator("list_objects_v2")
    for hours_back in range(deps.tunables.lookback_hours, -1, -1):
        hour = start - timedelta(hours=hours_back)
        prefix = f"buffers/dt={hour:%Y-%m-%d}/hour={hour:%H}/"
        for page in paginator.paginate(Bucket=deps.staging_bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                yield obj["Key"], obj["LastModified"].timestamp()
