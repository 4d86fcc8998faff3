"""PutRecordBatch with AWS's limits, retrying only what failed, within a bounded budget.

Records are grouped per stream into calls of at most 500 records and 4 MiB. After each call,
only the entries Firehose rejected (`FailedPutCount > 0`) and the entries of calls that failed
with a transient error are sent again, with full-jitter exponential backoff, until they succeed,
`max_attempts` is reached, or the time budget would be overrun. What is left is returned as
failed, with its last error, for the caller to report (the forwarder: as SQS batch item failures).
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple, Protocol

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError

from infrastructure.tunables import ForwarderTunables

logger = Logger(child=True)

MAX_RECORDS_PER_CALL: Final = 500
MAX_BYTES_PER_CALL: Final = 4 * 1024 * 1024
MAX_RECORD_BYTES: Final = 1_000 * 1024

# Call-level errors worth another try. Anything else (ResourceNotFoundException,
# InvalidArgumentException, AccessDenied, ...) will not heal by waiting.
TRANSIENT_ERROR_CODES: Final = frozenset(
    {
        "ServiceUnavailableException",
        "ThrottlingException",
        "LimitExceededException",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "RequestTimeout",
    }
)
# The transport errors botocore's standard retry mode treats as transient (read timeouts and
# connections closed mid-request are HTTPClientErrors).
TRANSIENT_TRANSPORT_ERRORS: Final = (ConnectionError, HTTPClientError)


class PutRecordBatchClient(Protocol):
    """The one call we need: a boto3 Firehose client, or the in-process stand-in."""

    def put_record_batch(
        self, *, DeliveryStreamName: str, Records: Any
    ) -> Any: ...  # boto3's parameter names


class OutgoingRecord(NamedTuple):
    token: str
    """The caller's name for the record (the forwarder uses the file_id)."""
    stream: str
    data: bytes


@dataclass
class SendOutcome:
    sent: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)
    """token -> the last error seen for it."""
    calls: int = 0


class RetryPolicy(NamedTuple):
    max_attempts: int
    budget_seconds: float
    backoff_base_seconds: float
    backoff_cap_seconds: float


def retry_policy(tunables: ForwarderTunables) -> RetryPolicy:
    """The PutRecordBatch retry policy both senders (forwarder, requeue) use."""
    return RetryPolicy(
        max_attempts=tunables.put_max_attempts,
        budget_seconds=tunables.put_retry_budget_seconds,
        backoff_base_seconds=tunables.put_backoff_base_seconds,
        backoff_cap_seconds=tunables.put_backoff_cap_seconds,
    )


class FirehoseSender:
    def __init__(
        self,
        client: PutRecordBatchClient,
        policy: RetryPolicy,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._client = client
        self._policy = policy
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter

    def send(
        self, records: Sequence[OutgoingRecord], *, budget_seconds: float | None = None
    ) -> SendOutcome:
        """Send every record; `budget_seconds` may shorten the policy's budget (time left)."""
        outcome = SendOutcome()
        budget = self._policy.budget_seconds
        if budget_seconds is not None:
            budget = min(budget, budget_seconds)
        deadline = self._clock() + budget
        pending: list[OutgoingRecord] = []
        for record in records:
            if len(record.data) > MAX_RECORD_BYTES:
                outcome.failed[record.token] = (
                    f"record of {len(record.data)} bytes exceeds Firehose's {MAX_RECORD_BYTES}"
                )
            else:
                pending.append(record)
        attempt = 0
        while pending:
            attempt += 1
            last_errors: dict[str, str] = {}
            retry: list[OutgoingRecord] = []
            for stream, chunk in _chunks(pending):
                outcome.calls += 1
                for record, error, transient in self._put(stream, chunk):
                    if error is None:
                        outcome.sent.add(record.token)
                    elif transient:
                        retry.append(record)
                        last_errors[record.token] = error
                    else:
                        outcome.failed[record.token] = error
            pending = retry
            if not pending:
                break
            delay = self._backoff(attempt)
            if attempt >= self._policy.max_attempts or self._clock() + delay > deadline:
                logger.warning(
                    "PutRecordBatch retries exhausted",
                    attempts=attempt,
                    still_failing=len(pending),
                )
                outcome.failed.update(last_errors)
                break
            logger.info(
                "retrying failed PutRecordBatch entries",
                attempt=attempt,
                entries=len(pending),
                delay_s=round(delay, 3),
            )
            self._sleep(delay)
        return outcome

    def _backoff(self, attempt: int) -> float:
        ceiling: float = min(
            self._policy.backoff_cap_seconds,
            self._policy.backoff_base_seconds * 2 ** (attempt - 1),
        )
        return ceiling * float(self._jitter())

    def _put(
        self, stream: str, chunk: list[OutgoingRecord]
    ) -> Iterator[tuple[OutgoingRecord, str | None, bool]]:
        """Yield (record, error or None, whether the error is transient) for each record."""
        try:
            response = self._client.put_record_batch(
                DeliveryStreamName=stream, Records=[{"Data": record.data} for record in chunk]
            )
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "Unknown")
            message = f"PutRecordBatch to {stream} failed: {code}: {err}"
            for record in chunk:
                yield record, message, code in TRANSIENT_ERROR_CODES
            return
        except TRANSIENT_TRANSPORT_ERRORS as err:
            for record in chunk:
                yield record, f"PutRecordBatch to {stream} failed: {err}", True
            return
        except BotoCoreError as err:
            for record in chunk:
                yield record, f"PutRecordBatch to {stream} failed: {err}", False
            return
        entries = response["RequestResponses"]
        if len(entries) != len(chunk):
            # Cannot tell which entry is which: treat the whole call as failed, retryable.
            for record in chunk:
                yield record, f"PutRecordBatch to {stream} answered {len(entries)} entries", True
            return
        for record, entry in zip(chunk, entries, strict=True):
            if "ErrorCode" in entry:
                error = f"{stream}: {entry['ErrorCode']}: {entry.get('ErrorMessage', '')}"
                # Entry errors are ServiceUnavailableException or InternalFailure per the API
                # reference: both are worth another try.
                yield record, error, True
            else:
                yield record, None, False


def _chunks(records: Sequence[OutgoingRecord]) -> Iterator[tuple[str, list[OutgoingRecord]]]:
    by_stream: dict[str, list[OutgoingRecord]] = defaultdict(list)
    for record in records:
        by_stream[record.stream].append(record)
    for stream, stream_records in by_stream.items():
        chunk: list[OutgoingRecord] = []
        size = 0
        for record in stream_records:
            if chunk and (
                len(chunk) == MAX_RECORDS_PER_CALL or size + len(record.data) > MAX_BYTES_PER_CALL
            ):
                yield stream, chunk
                chunk, size = [], 0
            chunk.append(record)
            size += len(record.data)
        if chunk:
            yield stream, chunk
