"""Put the records of failed processor invocations back into Firehose (DESIGN §4).

When a processor invocation fails as a whole (timeout, crash, oversized or malformed response),
Firehose retries it and then writes every record of the batch, valid ones too, under
`errors/processing-failed/` with an error code other than `Lambda.ProcessingFailed`. Those
records did nothing wrong: they go back into Firehose, each at most `max_attempts` times (counted
in the envelope's `requeue_attempts`), then they stay in errors/ with a `requeue-exhausted`
reason and an alarm. Records the processor itself failed (`Lambda.ProcessingFailed`) already
have their reason file and stay quarantined until released.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from transform import envelope, quarantine
from transform.firehose_sender import FirehoseSender, OutgoingRecord
from transform.forwarding import stream_for
from transform.quarantine import PROCESSING_FAILED_PREFIX, RECORD_FAILED_CODE

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = Logger(child=True)


class RequeueFailed(RuntimeError):
    """Records could not be put back; raising lets Lambda's async retries run again."""


@dataclass(frozen=True)
class RequeueDeps:
    s3: S3Client
    sender: FirehoseSender
    staging_bucket: str
    streams: tuple[str, ...]
    max_attempts: int


@dataclass
class RequeueReport:
    counts: Counter[str] = field(default_factory=Counter)


def requeue_object(bucket: str, key: str, deps: RequeueDeps) -> RequeueReport:
    """Requeue the eligible records of one errors/ object; raise RequeueFailed if some stay out."""
    report = RequeueReport()
    if not key.startswith(PROCESSING_FAILED_PREFIX):
        logger.warning("not a processing-failed object; left as it is", key=key)
        report.counts["objects_ignored"] += 1
        return report
    body = deps.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    if body[:2] == b"\x1f\x8b":  # Firehose compresses error output like the data it delivers
        body = gzip.decompress(body)
    outgoing: list[OutgoingRecord] = []
    for line_number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        record = _requeue_record(line, f"s3://{bucket}/{key}#{line_number}", deps, report)
        if record is not None:
            outgoing.append(record)
    if outgoing:
        outcome = deps.sender.send(outgoing)
        report.counts["records_requeued"] += len(outcome.sent)
        if outcome.failed:
            raise RequeueFailed(
                f"{len(outcome.failed)} of {len(outgoing)} records of s3://{bucket}/{key} could "
                f"not be put back into Firehose; first error: {next(iter(outcome.failed.values()))}"
            )
    return report


def _requeue_record(
    line: bytes, where: str, deps: RequeueDeps, report: RequeueReport
) -> OutgoingRecord | None:
    try:
        error_record = json.loads(line)
        raw = base64.b64decode(error_record["rawData"], validate=True)
        code = str(error_record.get("errorCode", ""))
    except (json.JSONDecodeError, KeyError, TypeError, binascii.Error) as err:
        _hold(
            deps,
            report,
            file_id=quarantine.raw_record_id(line),
            reason="unreadable-error-record",
            detail=str(err),
            raw=line,
        )
        return None
    if code == RECORD_FAILED_CODE:
        report.counts["records_left_quarantined"] += 1
        return None
    try:
        record: dict[str, Any] = envelope.decode(raw)
    except envelope.EnvelopeError as err:
        # It would only fail validation again; the processor's reason file may not exist, since
        # its invocation failed as a whole, so write one here.
        _hold(
            deps,
            report,
            file_id=quarantine.raw_record_id(raw),
            reason="invalid-envelope",
            detail=str(err),
            raw=raw,
        )
        return None
    attempts = record.get("requeue_attempts") or 0
    if attempts >= deps.max_attempts:
        logger.error(
            "record of a failed processor invocation requeued too often; left in errors/",
            alarm="RequeueExhausted",
            file_id=record["file_id"],
            attempts=attempts,
            where=where,
            error_code=code,
        )
        _hold(
            deps,
            report,
            file_id=record["file_id"],
            reason="requeue-exhausted",
            detail=f"{code} after {attempts} requeues",
            raw=raw,
        )
        report.counts["requeue_exhausted"] += 1
        return None
    for name in envelope.ENRICHMENT_FIELDS:
        record.pop(name, None)  # the processor adds them again; duplicates would break the JSON
    record["requeue_attempts"] = attempts + 1
    return OutgoingRecord(
        token=where,
        stream=stream_for(record["file_id"], deps.streams),
        data=envelope.encode(record),
    )


def _hold(
    deps: RequeueDeps,
    report: RequeueReport,
    *,
    file_id: str,
    reason: quarantine.Reason,
    detail: str,
    raw: bytes,
) -> None:
    quarantine.write(
        deps.s3,
        deps.staging_bucket,
        quarantine.QuarantineEntry(
            file_id=file_id,
            reason=reason,
            detail=detail,
            stage="requeue",
            record=base64.b64encode(raw).decode("ascii"),
        ),
    )
    report.counts[f"held_{reason.replace('-', '_')}"] += 1
