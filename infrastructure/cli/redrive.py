"""`sluice redrive`: what the scheduled redrive does, on demand; one window; or the ingest DLQ.

    sluice redrive [--dry-run] [--limit N] [--min-age S]    the delivery DLQ and stuck windows
    sluice redrive --window ID [--dry-run]                   one window, a PARKED one released
    sluice redrive --parked [--since T] [--limit N] [--dry-run]   every PARKED window released
    sluice redrive --backfill-index                          once, after upgrading a deployment
    sluice redrive --ingest [--dry-run] [--limit N]          ingest DLQ -> ingest queue

The first form runs `delivery.redriving.redrive` itself — the same code the schedule runs — with
the operator's limits: it needs MinIO to answer (checked as redrive checks it), invokes
delivery's `live` alias asynchronously, and parks a window redriven `max_redrives` times.
`--window` is the way out of PARKED: the window is released (PARKED -> CLAIMED) and delivery
invoked for it. `--parked` releases every PARKED window (first claimed since T, oldest first),
once MinIO takes writes, and invokes delivery for each; the sweep lists their hours again, so
their hour markers follow once they are delivered. `--ingest` moves the ingest DLQ's messages
back with SQS's StartMessageMoveTask; where that is missing (moto) or a `--limit` is given,
message by message: sent, then deleted. `--backfill-index` puts windows written before the
ledger had its index of windows not yet delivered into it: a one-off Scan of the whole ledger,
with progress, after upgrading a deployment whose ledger holds undelivered windows.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import textwrap
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from botocore.exceptions import ClientError

from delivery.hour_markers import Hour, HourMarkers
from delivery.layout import WindowKeyError, window_name
from delivery.ledger import Ledger, WindowState
from delivery.redrive_log import RedriveLog
from delivery.redriving import RedriveDeps, RedriveReport, redrive, staged_event
from infrastructure.cli import deployment
from infrastructure.cli.deployment import Deployment
from infrastructure.cli.errors import DeploymentError, UsageError
from infrastructure.cli.times import time_argument
from infrastructure.queues import queue_depth
from infrastructure.tunables import load_tunables

SQS_BATCH: Final = 10
DESCRIPTION: Final = """\
Without --window, --parked, --ingest or --backfill-index: what the scheduled redrive (every
{schedule} min) does, now. Once MinIO takes a test write, each delivery that failed past its
retries (a message in the delivery DLQ, at least --min-age old) is tried again, and a window
staged but never delivered (its S3 event lost, or delivery stopped mid-way) is tried again; a
window that keeps failing on its own (not for MinIO or the network) is parked after {redrives}
tries, to be looked at. Hour markers of completed hours are written. With MinIO down nothing is
tried and nothing is lost: run it again once MinIO is back.

  --window ID       one window (its id, or its staged key); a PARKED one is released
  --parked          every PARKED window (first claimed since --since), oldest first
  --ingest          the ingest DLQ's messages back to the ingest queue, to be forwarded again
  --backfill-index  once, after upgrading a deployment: index the windows not yet delivered
                    (reads the whole ledger, with progress)

--dry-run says what would be done and does none of it. Exit status 1 when MinIO does not take
writes, or Lambda refused to start a delivery."""
MOVE_VISIBILITY_SECONDS: Final = 60
"""Long enough to send a batch on and delete it; a message not deleted comes back in the DLQ."""


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "redrive",
        help="replay the delivery DLQ and stuck windows now; release a parked window; "
        "move the ingest DLQ back",
        description=_description(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    deployment.add_arguments(parser)
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--window", metavar="ID", help="one window: its id or staged key")
    what.add_argument("--parked", action="store_true", help="release every PARKED window")
    what.add_argument("--ingest", action="store_true", help="ingest DLQ -> ingest queue")
    what.add_argument(
        "--backfill-index",
        action="store_true",
        help="once after an upgrade: index windows written before the ledger's index (a Scan)",
    )
    parser.add_argument(
        "--since",
        type=time_argument(datetime.now(UTC)),
        metavar="T",
        help="with --parked: only windows first claimed at or after T (2h, 1d, ISO-8601)",
    )
    parser.add_argument("--dry-run", action="store_true", help="say what would be done; do none")
    parser.add_argument("--limit", type=_positive, help="at most this many windows or messages")
    parser.add_argument(
        "--min-age",
        type=_non_negative,
        metavar="SECONDS",
        help="only DLQ messages at least this old (default: the tunables' min_age_seconds)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object instead of text")
    parser.set_defaults(run=run)


def _description() -> str:
    tunables = load_tunables().redrive
    text = DESCRIPTION.format(schedule=tunables.schedule_minutes, redrives=tunables.max_redrives)
    return "\n\n".join(
        part if part.startswith(" ") else textwrap.fill(" ".join(part.split()), 92)
        for part in text.split("\n\n")
    )


def run(args: argparse.Namespace, root: Path) -> int:
    if args.since is not None and not args.parked:
        raise UsageError("--since goes with --parked: `sluice redrive --parked --since T`")
    target = deployment.resolve(args, root)
    if args.backfill_index:
        outcome: Any = backfill_index(target)
    elif args.parked:
        outcome = release_parked(target, since=args.since, limit=args.limit, dry_run=args.dry_run)
    elif args.ingest:
        outcome = move_ingest_dlq(target, limit=args.limit, dry_run=args.dry_run)
    elif args.window:
        outcome = redrive_window(target, args.window, dry_run=args.dry_run)
    else:
        outcome = redrive_now(target, limit=args.limit, min_age=args.min_age, dry_run=args.dry_run)
    if args.json:
        print(json.dumps({"deployment": target.name, **asdict(outcome)}, indent=1))
    else:
        print(outcome.text())
    return 0 if outcome.ok else 1


# -- the scheduled redrive, on demand ------------------------------------------------------


@dataclass
class RedriveOutcome:
    report: RedriveReport
    dry_run: bool

    @property
    def ok(self) -> bool:
        return self.report.minio_healthy and self.report.invoke_failures == 0

    def text(self) -> str:
        r = self.report
        if not r.minio_healthy:
            return (
                "MinIO does not answer: nothing redriven (windows stay staged, the DLQ keeps "
                "its messages). Run again once MinIO is back."
            )
        if self.dry_run:
            if not r.would_redrive:
                return (
                    "nothing to redrive: no delivery DLQ message old enough (--min-age) and no "
                    "staged window stuck"
                )
            lines = [f"would redrive {len(r.would_redrive)} window(s):"]
            lines += [f"  {key}" for key in r.would_redrive]
            return "\n".join(lines)
        return (
            f"redriven from the DLQ {r.dlq_redriven}, already settled {r.dlq_settled}, "
            f"re-invoked unrecorded {r.unrecorded_redriven}, stale {r.stale_redriven}, "
            f"parked {len(r.parked)}{' (' + ', '.join(r.parked) + ')' if r.parked else ''}, "
            f"invocations refused {r.invoke_failures}, hour markers written "
            f"{len(r.hour_markers)}"
        )


def redrive_now(
    target: Deployment, *, limit: int | None, min_age: float | None, dry_run: bool
) -> RedriveOutcome:
    deps = redrive_deps(target)
    overrides: dict[str, Any] = {"jitter_seconds": 0}  # an operator waits for no spread
    if limit is not None:
        overrides["limit_per_run"] = limit
    if min_age is not None:
        overrides["min_age_seconds"] = int(min_age)
    deps = dataclasses.replace(deps, tunables=deps.tunables._replace(**overrides))
    return RedriveOutcome(redrive(deps, dry_run=dry_run), dry_run)


def redrive_deps(target: Deployment) -> RedriveDeps:
    tunables = target.tunables()
    lambda_ = target.client("lambda")
    delivery = target.live("delivery")

    def invoke(event: dict[str, Any]) -> None:
        response = lambda_.invoke(
            FunctionName=delivery, InvocationType="Event", Payload=json.dumps(event).encode()
        )
        if response["StatusCode"] != 202:  # Lambda's "accepted"
            raise DeploymentError(f"{delivery} answered {response['StatusCode']} to an invoke")

    return RedriveDeps(
        s3=target.client("s3"),
        sqs=target.client("sqs"),
        ledger=ledger(target),
        minio_healthy=target.minio_healthy,
        invoke=invoke,
        staging_bucket=target.staging_bucket,
        dlq_url=target.delivery_dlq_url,
        tunables=tunables.redrive,
        destination_buffer_seconds=tunables.firehose.destination_buffer_seconds,
        file_extension=tunables.firehose.file_extension,
        markers=HourMarkers(target.minio_caller(), tunables.delivery.archive_prefix),
        log=RedriveLog(
            target.client("dynamodb"), target.ledger_table, tunables.delivery.ledger_ttl_seconds
        ),
    )


def ledger(target: Deployment) -> Ledger:
    return Ledger(
        target.client("dynamodb"),
        target.ledger_table,
        target.tunables().delivery.ledger_ttl_seconds,
    )


# -- one window ------------------------------------------------------------------------------


@dataclass
class WindowOutcome:
    window_id: str
    staged_key: str | None
    state_before: str | None
    action: str
    """invoked | would-invoke | settled | not-found"""
    released: bool = False

    @property
    def ok(self) -> bool:
        return self.action != "not-found"

    def text(self) -> str:
        if self.action == "not-found":
            return f"window {self.window_id}: no ledger record and no staged object found"
        state = self.state_before or "no ledger record"
        if self.action == "settled":
            return f"window {self.window_id} is {state}: nothing to do"
        verb = "invoked delivery for" if self.action == "invoked" else "would invoke delivery for"
        release = " (released from PARKED)" if self.released else ""
        return f"{verb} {self.staged_key} [{state}]{release}"


def redrive_window(target: Deployment, window: str, *, dry_run: bool) -> WindowOutcome:
    tunables = target.tunables()
    extension = tunables.firehose.file_extension
    window_id, staged_key = _window_of(window, extension)
    book = ledger(target)
    record = book.get_window(window_id)
    if record is not None:
        staged_key = record.staged_key
    if staged_key is None:
        staged_key = _find_staged(target, window_id, extension)
    state = None if record is None else str(record.state)
    if staged_key is None:
        return WindowOutcome(window_id, None, state, "not-found")
    if record is not None and record.state in (WindowState.DELIVERED, WindowState.EMPTY):
        return WindowOutcome(window_id, staged_key, state, "settled")
    parked = record is not None and record.state is WindowState.PARKED
    if dry_run:
        return WindowOutcome(window_id, staged_key, state, "would-invoke", released=parked)
    if parked:
        book.unpark(window_id)
    redrive_deps(target).invoke(staged_event(target.staging_bucket, staged_key))
    return WindowOutcome(window_id, staged_key, state, "invoked", released=parked)


def _window_of(window: str, extension: str) -> tuple[str, str | None]:
    """A window id, or a staged key (then also its key)."""
    if "/" not in window:
        return window.removesuffix(extension), None
    try:
        return window_name(window, extension).window_id, window
    except WindowKeyError as err:
        raise UsageError(f"--window {window!r}: {err}") from err


def _find_staged(target: Deployment, window_id: str, extension: str) -> str | None:
    """The staged key of a window the ledger never saw (its S3 event lost): all of `buffers/`
    is searched, since an operator may name a window of any age."""
    s3 = target.client("s3")
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=target.staging_bucket, Prefix="buffers/"):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith(f"/{window_id}{extension}"):
                return str(obj["Key"])
    return None


# -- the index of windows not yet delivered, after an upgrade ---------------------------------


@dataclass
class IndexBackfill:
    scanned: int
    indexed: int
    ok: bool = True

    def text(self) -> str:
        return (
            f"scanned {self.scanned:,} ledger items; {self.indexed:,} windows not yet delivered "
            "put into the index pending-windows"
        )


def backfill_index(target: Deployment) -> IndexBackfill:
    counts = [0, 0]

    def progress(scanned: int, indexed: int) -> None:
        counts[:] = [scanned, indexed]
        print(f"  … {scanned:,} items scanned, {indexed:,} windows indexed", file=sys.stderr)

    indexed = ledger(target).backfill_pending_index(progress)
    return IndexBackfill(scanned=counts[0], indexed=indexed)


# -- every parked window -----------------------------------------------------------------------

RELEASE_DEFAULT_LIMIT: Final = 10_000


@dataclass
class ParkedRelease:
    minio_healthy: bool
    dry_run: bool
    windows: list[str] = dataclasses.field(default_factory=list)
    """The staged keys released (or, with --dry-run, that would be)."""
    invoke_failures: int = 0

    @property
    def ok(self) -> bool:
        return self.minio_healthy and self.invoke_failures == 0

    def text(self) -> str:
        if not self.minio_healthy:
            return (
                "MinIO does not take writes: no window released (they would park again). "
                "Run again once MinIO is back."
            )
        if not self.windows:
            return "no parked window"
        verb = "would release" if self.dry_run else "released"
        lines = [f"{verb} {len(self.windows)} parked window(s), delivery invoked for each:"]
        lines += [f"  {key}" for key in self.windows]
        if self.invoke_failures:
            lines.append(f"{self.invoke_failures} invocation(s) refused: run again")
        return "\n".join(lines)


def release_parked(
    target: Deployment, *, since: datetime | None, limit: int | None, dry_run: bool
) -> ParkedRelease:
    """Release PARKED windows, oldest first, from the ledger's index (never a scan)."""
    deps = redrive_deps(target)
    outcome = ParkedRelease(minio_healthy=deps.minio_healthy(), dry_run=dry_run)
    if not outcome.minio_healthy:
        return outcome
    since_ms = None if since is None else int(since.timestamp() * 1000)
    parked = deps.ledger.pending_windows(
        WindowState.PARKED, limit or RELEASE_DEFAULT_LIMIT, since_ms=since_ms
    )
    for record in parked:
        outcome.windows.append(record.staged_key)
        if dry_run:
            continue
        deps.ledger.unpark(record.window_id)
        name = window_name(record.staged_key, deps.file_extension)
        deps.ledger.lower_sweep_low_water(Hour(name.dt, name.hour).start.timestamp())
        try:
            deps.invoke(staged_event(target.staging_bucket, record.staged_key))
        except DeploymentError:
            outcome.invoke_failures += 1  # CLAIMED now: the sweep re-invokes it once stale
    return outcome


# -- the ingest DLQ --------------------------------------------------------------------------


@dataclass
class IngestMove:
    waiting: int
    """Messages in the ingest DLQ before the move."""
    method: str
    """StartMessageMoveTask | message-by-message | none (dry run)"""
    moved: int = 0
    task_handle: str | None = None

    ok: bool = True

    def text(self) -> str:
        if self.method == "none":
            return (
                f"ingest DLQ holds {self.waiting} message(s); would move them to the ingest queue"
            )
        if self.task_handle is not None:
            return (
                f"StartMessageMoveTask started for {self.waiting} message(s) "
                f"(task {self.task_handle}); `sluice status` shows the DLQ drain"
            )
        return f"moved {self.moved} of {self.waiting} message(s) to the ingest queue, one by one"


def move_ingest_dlq(target: Deployment, *, limit: int | None, dry_run: bool) -> IngestMove:
    sqs = target.client("sqs")
    waiting = queue_depth(sqs, target.ingest_dlq_url)
    if dry_run:
        return IngestMove(waiting, "none")
    if limit is None:
        try:
            response = sqs.start_message_move_task(
                SourceArn=_arn(sqs, target.ingest_dlq_url),
                DestinationArn=_arn(sqs, target.ingest_queue_url),
            )
            return IngestMove(waiting, "StartMessageMoveTask", task_handle=response["TaskHandle"])
        except NotImplementedError:
            pass  # moto in process
        except ClientError as err:
            # moto server answers an unimplemented action with a bare HTTP 500 (no AWS error
            # code); moving message by message is as correct, only slower, so a real 5xx of
            # SQS's falls back too. Anything else (access denied, a wrong ARN) is raised.
            status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status not in (500, 501):
                raise
    return IngestMove(waiting, "message-by-message", moved=_move_each(target, sqs, limit))


def _move_each(target: Deployment, sqs: Any, limit: int | None) -> int:
    moved = 0
    while limit is None or moved < limit:
        wanted = SQS_BATCH if limit is None else min(SQS_BATCH, limit - moved)
        messages = sqs.receive_message(
            QueueUrl=target.ingest_dlq_url,
            MaxNumberOfMessages=wanted,
            MessageAttributeNames=["All"],
            VisibilityTimeout=MOVE_VISIBILITY_SECONDS,
        ).get("Messages", [])
        if not messages:
            break
        entries = [
            {
                "Id": str(index),
                "MessageBody": message["Body"],
                **(
                    {"MessageAttributes": message["MessageAttributes"]}
                    if message.get("MessageAttributes")
                    else {}
                ),
            }
            for index, message in enumerate(messages)
        ]
        sent = sqs.send_message_batch(QueueUrl=target.ingest_queue_url, Entries=entries)
        done = {int(entry["Id"]) for entry in sent.get("Successful", [])}
        for failure in sent.get("Failed", []):
            print(f"not moved (stays in the DLQ): {failure}", file=sys.stderr)
        if done:
            sqs.delete_message_batch(
                QueueUrl=target.ingest_dlq_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": messages[i]["ReceiptHandle"]} for i in done
                ],
            )
        moved += len(done)
        if len(done) < len(messages):
            break  # SQS refused some: stop rather than spin on them
    return moved


def _arn(sqs: Any, url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(attributes["Attributes"]["QueueArn"])


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value
