"""The forwarder's logic: a batch of SQS messages in, envelopes into Firehose, failures reported.

For one batch (DESIGN §4, §4a):
1. parse every message (malformed ones fail alone; test events and deletes are acknowledged);
2. resolve each created object's exact version and so its file_id, reading with bounded
   concurrency; files over `max_file_bytes` and versions gone for good are quarantined with
   their reason (acknowledged: retrying cannot help, and the reason file keeps them visible)
   and recorded HELD in the index of landed files (the daily report counts them by day);
3. drop repeats of a file_id within the batch, claim each file in the idempotency table (a file
   already COMPLETED is a duplicate event; one IN_PROGRESS elsewhere makes its message retry);
4. build each envelope: inline (utf8/base64) up to the inline limit, else a `ref`;
5. PutRecordBatch through `FirehoseSender`, files spread over the streams by file_id;
6. COMPLETED for what was sent, released for what was not; a message fails if any of its files
   failed, so SQS redelivers it (and after `maxReceiveCount`, the ingest DLQ keeps it).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, NamedTuple, TypeVar

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from infrastructure.tunables import ForwarderTunables
from transform import quarantine
from transform.envelope import Envelope, file_id
from transform.firehose_sender import MAX_RECORD_BYTES, FirehoseSender, OutgoingRecord
from transform.idempotency import Claim, IdempotencyStore, LandedFile
from transform.s3_events import MalformedMessage, ObjectCreated, parse_message
from transform.versions import VersionGone, read_version, resolve_version_id

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = Logger(child=True)

COMPLETION_RESERVE_SECONDS: Final = 3.0
"""Time kept back from the send budget to mark COMPLETED and answer before the timeout."""

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ForwarderDeps:
    s3: S3Client
    store: IdempotencyStore
    sender: FirehoseSender
    staging_bucket: str
    streams: tuple[str, ...]
    tunables: ForwarderTunables
    clock: Callable[[], float] = time.time


@dataclass
class BatchReport:
    failed_message_ids: set[str] = field(default_factory=set)
    counts: Counter[str] = field(default_factory=Counter)
    forwarded: list[str] = field(default_factory=list)
    """Claim keys (the file_id; a replay that is not forced adds `#q<replay_id>`) of the files
    whose records Firehose accepted in this invocation."""


@dataclass
class _File:
    """One landed version, and every message in the batch that announced it."""

    event: ObjectCreated
    file_id: str
    version_id: str
    message_ids: set[str]

    @property
    def claim_key(self) -> str:
        """Its idempotency record. A replay that is not forced keeps the file_id (so delivery's
        ledger keeps a delivered file out) but claims apart, or the record of the first send
        would stop it in the forwarder."""
        event = self.event
        if event.replay_id is not None and not event.force:
            return f"{self.file_id}#q{event.replay_id}"
        return self.file_id

    @property
    def landed(self) -> LandedFile | None:
        """What the ingest index keeps of it; None for a replay (it landed before)."""
        event = self.event
        if event.replay_id is not None:
            return None
        return LandedFile(
            event.key, self.version_id, event.size, event.etag or "", event.event_time_ms
        )


class _Prepared(NamedTuple):
    file: _File
    record: OutgoingRecord | None = None
    claim: Claim | None = None
    error: str | None = None
    """Set when the file's messages must be retried."""
    quarantined: str | None = None
    """The counter of the reason it was quarantined for."""


def stream_for(file_id_: str, streams: Sequence[str]) -> str:
    """Spread files over streams by file_id, so a file and its duplicates share a stream."""
    return streams[int(file_id_[:8], 16) % len(streams)]


def forward_batch(
    messages: Sequence[tuple[str, str]], deps: ForwarderDeps, remaining_ms: int
) -> BatchReport:
    """Forward every object creation in `messages` (message id, body); report what failed."""
    report = BatchReport()
    events = _parse(messages, report)
    started = deps.clock()
    with ThreadPoolExecutor(max_workers=deps.tunables.read_concurrency) as pool:
        files = _resolve(events, deps, pool, report)
        holds_until_ms = int((started * 1000) + remaining_ms)
        prepared = _parallel(pool, lambda f: _prepare(f, deps, holds_until_ms), files)
    to_send: list[OutgoingRecord] = []
    owners: dict[str, _File] = {}
    for item in prepared:
        if item.error is not None:
            report.failed_message_ids |= item.file.message_ids
        elif item.quarantined is not None:
            report.counts[item.quarantined] += 1
        elif item.claim is Claim.COMPLETED:
            report.counts["duplicate_events"] += 1
        elif item.record is not None:
            to_send.append(item.record)
            owners[item.record.token] = item.file
    if to_send:
        _send(to_send, owners, deps, report, remaining_ms - (deps.clock() - started) * 1000)
    return report


def _parse(
    messages: Sequence[tuple[str, str]], report: BatchReport
) -> list[tuple[str, ObjectCreated]]:
    events: list[tuple[str, ObjectCreated]] = []
    for message_id, body in messages:
        try:
            parsed = parse_message(body)
        except MalformedMessage as err:
            logger.error(  # noqa: TRY400  # the reason is in the log; a traceback adds nothing
                "message is not an S3 notification; failing it",
                message_id=message_id,
                reason=str(err),
                body_prefix=body[:200],
            )
            report.failed_message_ids.add(message_id)
            report.counts["malformed_messages"] += 1
            continue
        report.counts["test_events"] += parsed.test_event
        report.counts["ignored_records"] += parsed.ignored
        events.extend((message_id, event) for event in parsed.created)
    return events


def _resolve(
    events: list[tuple[str, ObjectCreated]],
    deps: ForwarderDeps,
    pool: ThreadPoolExecutor,
    report: BatchReport,
) -> list[_File]:
    """Which version each event names; one _File per distinct file_id."""

    def resolve(item: tuple[str, ObjectCreated]) -> tuple[str, ObjectCreated, str | None, str]:
        message_id, event = item
        try:
            try:
                return message_id, event, resolve_version_id(deps.s3, event), ""
            except VersionGone as err:
                version = event.version_id or f"etag:{event.etag}"
                _quarantine_gone(deps, event, version, str(err))
                if event.replay_id is None:
                    _record_held(deps, file_id(event.bucket, event.key, version), event, version)
                return message_id, event, None, "gone"
        except (ClientError, BotoCoreError) as err:
            return message_id, event, None, f"cannot resolve the version: {err}"

    files: dict[str, _File] = {}
    for message_id, event, version_id, problem in _parallel(pool, resolve, events):
        if problem == "gone":
            report.counts["versions_gone"] += 1
            continue
        if version_id is None:
            _log_retry(message_id, event, problem)
            report.failed_message_ids.add(message_id)
            continue
        fid = file_id(event.bucket, event.key, version_id)
        if event.force:
            fid += f"#r{event.replay_id}"
        file = _File(event, fid, version_id, {message_id})
        if file.claim_key in files:
            files[file.claim_key].message_ids.add(message_id)
            report.counts["duplicates_in_batch"] += 1
        else:
            files[file.claim_key] = file
    return list(files.values())


def _prepare(file: _File, deps: ForwarderDeps, holds_until_ms: int) -> _Prepared:
    """Quarantine, or claim and build the record; errors become a retry of the file's messages."""
    event = file.event
    try:
        if event.size > deps.tunables.max_file_bytes:
            _quarantine_too_large(deps, file)
            if file.landed is not None:
                deps.store.record_held(file.file_id, file.landed, "too-large")
            return _Prepared(file, quarantined="too_large")
        claim = deps.store.claim(file.claim_key, holds_until_ms, file.landed)
        if claim is Claim.BUSY:
            return _Prepared(file, claim=claim, error="another invocation is sending this file")
        if claim is Claim.COMPLETED:
            return _Prepared(file, claim=claim)
        try:
            data = _encode(file, deps)
        except VersionGone as err:
            deps.store.release([file.claim_key])
            _quarantine_gone(deps, event, file.version_id, str(err))
            if file.landed is not None:
                deps.store.record_held(file.file_id, file.landed, "version-gone")
            return _Prepared(file, quarantined="versions_gone")
        except Exception:
            deps.store.release([file.claim_key])
            raise
        record = OutgoingRecord(file.claim_key, stream_for(file.file_id, deps.streams), data)
        return _Prepared(file, record=record, claim=claim)
    except Exception as err:  # any failure of one file must fail only its messages
        logger.exception(
            "cannot prepare file; its messages will be retried",
            bucket=event.bucket,
            key=event.key,
            file_id=file.file_id,
        )
        return _Prepared(file, error=str(err))


def _encode(file: _File, deps: ForwarderDeps) -> bytes:
    event = file.event
    common = {
        "file_id": file.file_id,
        "bucket": event.bucket,
        "key": event.key,
        "version_id": file.version_id,
        "size": event.size,
        "etag": event.etag,
        "sequencer": event.sequencer,
        "event_time_ms": event.event_time_ms,
    }
    if event.size <= deps.tunables.inline_limit_bytes:
        data = read_version(deps.s3, event.bucket, event.key, file.version_id)
        if len(data) <= deps.tunables.inline_limit_bytes:
            common["size"] = len(data)
            inline = Envelope.inline(data, forwarded_at_ms=_now_ms(deps), **common).encode()
            # Escaping can grow a text body (quotes, control characters): past Firehose's
            # record limit it travels by reference instead.
            if len(inline) <= MAX_RECORD_BYTES:
                return inline
    return Envelope.ref(forwarded_at_ms=_now_ms(deps), **common).encode()


def _send(
    records: list[OutgoingRecord],
    owners: dict[str, _File],
    deps: ForwarderDeps,
    report: BatchReport,
    remaining_ms: float,
) -> None:
    budget = max(0.0, remaining_ms / 1000 - COMPLETION_RESERVE_SECONDS)
    outcome = deps.sender.send(records, budget_seconds=budget)
    deps.store.complete(outcome.sent, {token: owners[token].landed for token in outcome.sent})
    if outcome.failed:
        deps.store.release(outcome.failed)
    for token, error in outcome.failed.items():
        file = owners[token]
        _log_retry(",".join(sorted(file.message_ids)), file.event, error)
        report.failed_message_ids |= file.message_ids
    report.counts["files_forwarded"] += len(outcome.sent)
    report.counts["send_failures"] += len(outcome.failed)
    report.counts["put_record_batch_calls"] += outcome.calls
    report.forwarded.extend(sorted(outcome.sent))


def _quarantine_too_large(deps: ForwarderDeps, file: _File) -> None:
    event = file.event
    logger.error(
        "file over max_file_bytes quarantined",
        bucket=event.bucket,
        key=event.key,
        version_id=file.version_id,
        size=event.size,
        max_file_bytes=deps.tunables.max_file_bytes,
        file_id=file.file_id,
    )
    quarantine.write(
        deps.s3,
        deps.staging_bucket,
        quarantine.QuarantineEntry(
            file_id=file.file_id,
            reason="too-large",
            detail=f"{event.size} bytes > max_file_bytes {deps.tunables.max_file_bytes}",
            stage="forwarder",
            bucket=event.bucket,
            key=event.key,
            version_id=file.version_id,
            size=event.size,
        ),
    )


def _quarantine_gone(deps: ForwarderDeps, event: ObjectCreated, version: str, detail: str) -> None:
    fid = file_id(event.bucket, event.key, version)
    logger.error(
        "landing version is gone; file cannot be forwarded",
        bucket=event.bucket,
        key=event.key,
        version=version,
        file_id=fid,
    )
    quarantine.write(
        deps.s3,
        deps.staging_bucket,
        quarantine.QuarantineEntry(
            file_id=fid,
            reason="version-gone",
            detail=detail,
            stage="forwarder",
            bucket=event.bucket,
            key=event.key,
            version_id=event.version_id,
            size=event.size,
        ),
    )


def _record_held(deps: ForwarderDeps, fid: str, event: ObjectCreated, version: str) -> None:
    """The ingest index's record of a version gone before it could be resolved."""
    landed = LandedFile(event.key, version, event.size, event.etag or "", event.event_time_ms)
    deps.store.record_held(fid, landed, "version-gone")


def _log_retry(message_ids: str, event: ObjectCreated, reason: str) -> None:
    logger.warning(
        "message will be retried",
        message_ids=message_ids,
        bucket=event.bucket,
        key=event.key,
        reason=reason,
    )


def _now_ms(deps: ForwarderDeps) -> int:
    return int(deps.clock() * 1000)


def _parallel(pool: ThreadPoolExecutor, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    return list(pool.map(fn, items))
