"""What Amazon Data Firehose does between PutRecordBatch and the staging bucket, as a library.

Both buffers, the processor contract, GZIP, key namespaces and error records, as pure logic over an
injected clock (`WindowAssembler`); `InProcessFirehose` is a boto3-shaped facade over it for tests
and the demo. Spec: docs/local-stack.md, `firehose/window_assembly.py`.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Final, Generic, Protocol, TypeVar

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from infrastructure.local.firehose.prefixes import KeyPrefix, object_name
from infrastructure.local.lambdas.context import LocalLambdaContext
from infrastructure.names import LIVE_ALIAS
from infrastructure.tunables import FirehoseTunables

logger = logging.getLogger(__name__)

MAX_RECORDS_PER_CALL: Final = 500
MAX_BYTES_PER_CALL: Final = 4 * 1024 * 1024
MAX_RECORD_BYTES: Final = 1_000 * 1024
MAX_RESPONSE_BYTES: Final = 6_000_000  # Lambda's synchronous invocation payload limit
PROCESSING_FAILED: Final = "processing-failed"
RESULTS: Final = frozenset({"Ok", "Dropped", "ProcessingFailed"})
DEFAULT_PROCESSOR_ARN: Final = (
    f"arn:aws:lambda:eu-west-2:123456789012:function:sluice-processor:{LIVE_ALIAS}"
)

FUNCTION_ERROR: Final = "Lambda.FunctionError"
MISSING_RECORD_ID: Final = "Lambda.MissingRecordId"
DUPLICATED_RECORD_ID: Final = "Lambda.DuplicatedRecordId"
JSON_PROCESSING: Final = "Lambda.JsonProcessingException"
RESPONSE_SIZE_EXCEEDED: Final = "Lambda.ResponseSizeExceeded"
RECORD_PROCESSING_FAILED: Final = "Lambda.ProcessingFailed"
_MESSAGES: Final = {
    FUNCTION_ERROR: "The Lambda function was successfully invoked but it returned an error result.",
    MISSING_RECORD_ID: "One or more record Ids were not returned. Ensure that the Lambda "
    "function returns all received record Ids.",
    DUPLICATED_RECORD_ID: "Multiple records were returned with the same record Id. Ensure that "
    "the Lambda function returns a unique record Id for each record.",
    JSON_PROCESSING: "There was an error parsing returned records from the Lambda function. "
    "Ensure that the returned records follow the status model required by Firehose.",
    RESPONSE_SIZE_EXCEEDED: f"The Lambda function's response exceeded {MAX_RESPONSE_BYTES} "
    "bytes, Lambda's synchronous payload limit.",
    RECORD_PROCESSING_FAILED: "The Lambda function returned ProcessingFailed for this record.",
}


class ObjectWriter(Protocol):
    """The one S3 call the assembler makes: a boto3 S3 client satisfies it."""

    def put_object(self, *, Bucket: str, Key: str, Body: bytes) -> Any: ...  # boto3's names


Processor = Callable[[dict[str, Any], Any], Any]


@dataclass(slots=True)
class AssemblerStats:
    """Counters for the demo and the status line; invocations count every attempt."""

    records_in: int = 0
    invocations: int = 0
    failed_invocations: int = 0
    failed_batches: int = 0
    records_ok: int = 0
    records_dropped: int = 0
    records_failed: int = 0
    objects_written: int = 0
    error_objects_written: int = 0
    write_failures: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class _Record:
    record_id: str
    data: bytes
    arrival: float  # epoch seconds: Firehose's approximate arrival time

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True, slots=True)
class _Output:
    """Ok data waiting in the destination buffer."""

    data: bytes
    arrival: float  # of the input record: names the object
    buffered_at: float  # when it entered the destination buffer: ages the buffer

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True, slots=True)
class _Failure:
    code: str
    detail: str = ""

    @property
    def message(self) -> str:
        base = _MESSAGES[self.code]
        return f"{base} ({self.detail})" if self.detail else base


@dataclass(frozen=True, slots=True)
class _Sealed:
    key: str
    body: bytes
    is_error: bool


_Item = TypeVar("_Item", _Record, _Output)


class _Buffer(Generic[_Item]):
    """A FIFO of records with its byte count, released in chunks of at most a size hint."""

    def __init__(self) -> None:
        self._items: deque[_Item] = deque()
        self.size = 0

    def __len__(self) -> int:
        return len(self._items)

    def extend(self, items: Iterable[_Item]) -> None:
        for item in items:
            self._items.append(item)
            self.size += item.size

    def oldest(self) -> _Item:
        return self._items[0]

    def due(self, limit: int, aged: Callable[[_Item], bool], force: bool) -> Iterator[list[_Item]]:
        """Chunks to release: full ones while the buffer reaches `limit`, then the rest if aged."""
        while self._items and self.size >= limit:
            yield self._cut(limit)
        while self._items and (force or aged(self._items[0])):
            yield self._cut(limit)

    def _cut(self, limit: int) -> list[_Item]:
        """The longest head within `limit` bytes, and at least one item."""
        taken = [self._items.popleft()]
        total = taken[0].size
        while self._items and total + self._items[0].size <= limit:
            total += self._items[0].size
            taken.append(self._items.popleft())
        self.size -= total
        return taken


def _epoch_ms(seconds: float) -> int:
    return int(seconds * 1000)


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def _function_name(arn: str) -> str:
    """`arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]` -> name."""
    parts = arn.split(":")
    return parts[6] if len(parts) >= 7 else arn


class WindowAssembler:
    """One delivery stream: processor buffer, processor contract, destination buffer, keys."""

    def __init__(
        self,
        *,
        stream_name: str,
        staging_bucket: str,
        s3: ObjectWriter,
        processor: Processor | None,
        tunables: FirehoseTunables,
        clock: Callable[[], float] = time.time,
        stream_version: int = 1,
        processor_arn: str = DEFAULT_PROCESSOR_ARN,
        region: str = "eu-west-2",
        account_id: str = "123456789012",
        context_factory: Callable[[], Any] | None = None,
    ) -> None:
        self.stream_name = stream_name
        self.stream_arn = f"arn:aws:firehose:{region}:{account_id}:deliverystream/{stream_name}"
        self.stats = AssemblerStats()
        self._bucket = staging_bucket
        self._s3 = s3
        self._processor = processor
        self.tunables = tunables
        """Buffers, retries, prefixes; the local Firehose swaps in scaled intervals."""
        self.clock = clock
        self._version = stream_version
        self._processor_arn = processor_arn
        self.region = region
        self._context_factory = context_factory or (
            lambda: LocalLambdaContext(
                function_name=_function_name(processor_arn), region=region, account_id=account_id
            )
        )
        # Parsed now so that a bad template fails at start-up, not at the first window.
        self._data_prefix = KeyPrefix(tunables.buffers_prefix)
        self._error_prefix = KeyPrefix(tunables.errors_prefix, error_prefix=True)
        self._incoming: _Buffer[_Record] = _Buffer()
        self._outgoing: _Buffer[_Output] = _Buffer()
        self._sealed: deque[_Sealed] = deque()

    # -- the three verbs ---------------------------------------------------------------------

    def put(self, records: Sequence[bytes]) -> list[str]:
        """Accept already-validated records; their arrival time is `clock()` now."""
        now = self.clock()
        accepted = [_Record(f"{uuid.uuid4().int:056d}", bytes(data), now) for data in records]
        self.stats.records_in += len(accepted)
        if self._processor is None:  # no transformation: every record is delivered as is
            self.stats.records_ok += len(accepted)
            self._outgoing.extend(_Output(r.data, r.arrival, now) for r in accepted)
        else:
            self._incoming.extend(accepted)
        return [record.record_id for record in accepted]

    def tick(self) -> list[str]:
        """Do what is due at `clock()`; return the staging keys written (data and errors)."""
        return self._run(force=False)

    def flush(self) -> list[str]:
        """Process and write everything buffered now (shutdown, tests, demo).

        An S3 error is raised here rather than left for a later tick: at shutdown there is none,
        and the caller must see that objects are still unwritten (they stay sealed, keys kept).
        """
        return self._run(force=True)

    # -- introspection for the status line and the server loop ----------------------------------

    @property
    def buffered_records(self) -> int:
        return len(self._incoming) + len(self._outgoing)

    @property
    def pending_objects(self) -> int:
        return len(self._sealed)

    def next_due(self) -> float | None:
        """The clock time at which `tick` next has something to do by age (None: nothing)."""
        if self._sealed:
            return self.clock()
        times = []
        if self._incoming:
            times.append(self._incoming.oldest().arrival + self.tunables.processor_buffer_seconds)
        if self._outgoing:
            times.append(
                self._outgoing.oldest().buffered_at + self.tunables.destination_buffer_seconds
            )
        return min(times, default=None)

    # -- buffers -------------------------------------------------------------------------------

    def _run(self, *, force: bool) -> list[str]:
        now = self.clock()
        t = self.tunables
        for batch in self._incoming.due(
            t.processor_buffer_bytes,
            lambda r: now - r.arrival >= t.processor_buffer_seconds,
            force,
        ):
            self._process(batch, self._processor)
        for chunk in self._outgoing.due(
            t.destination_buffer_bytes,
            lambda o: now - o.buffered_at >= t.destination_buffer_seconds,
            force,
        ):
            self._seal_data(chunk)
        return self._write_sealed(raise_errors=force)

    def _seal_data(self, chunk: list[_Output]) -> None:
        oldest = _utc(min(item.arrival for item in chunk))
        key = self._data_prefix.render(oldest) + self._name(oldest)
        body = gzip.compress(b"".join(item.data for item in chunk), mtime=0)
        self._sealed.append(_Sealed(key, body, is_error=False))

    def _seal_errors(self, lines: list[tuple[_Record, dict[str, Any]]]) -> None:
        oldest = _utc(min(record.arrival for record, _ in lines))
        prefix = self._error_prefix.render(oldest, error_output_type=PROCESSING_FAILED)
        text = "".join(json.dumps(line, separators=(",", ":")) + "\n" for _, line in lines)
        body = gzip.compress(text.encode(), mtime=0)
        self._sealed.append(_Sealed(prefix + self._name(oldest), body, is_error=True))

    def _name(self, oldest: datetime) -> str:
        return object_name(
            self.stream_name, self._version, oldest, self.tunables.file_extension, uuid.uuid4()
        )

    def _write_sealed(self, *, raise_errors: bool) -> list[str]:
        """Write sealed objects in order; on an S3 error keep them (and their keys) for later."""
        written: list[str] = []
        while self._sealed:
            sealed = self._sealed[0]
            try:
                self._s3.put_object(Bucket=self._bucket, Key=sealed.key, Body=sealed.body)
            except (ClientError, BotoCoreError, OSError) as err:
                self.stats.write_failures += 1
                logger.warning("staging write failed, kept for retry: %s: %s", sealed.key, err)
                if raise_errors:
                    raise
                break
            self._sealed.popleft()
            written.append(sealed.key)
            self._count_written(sealed)
        return written

    def _count_written(self, sealed: _Sealed) -> None:
        if sealed.is_error:
            self.stats.error_objects_written += 1
        else:
            self.stats.objects_written += 1

    # -- the processor contract -------------------------------------------------------------

    def _process(self, batch: list[_Record], processor: Processor | None) -> None:
        """Invoke the processor for one batch, with retries, and route what it returns."""
        if processor is None:  # unreachable: without a processor nothing enters _incoming
            raise RuntimeError(f"{self.stream_name}: a processor batch but no processor")
        attempts = 1 + self.tunables.processor_retries
        failure = _Failure(FUNCTION_ERROR)
        for attempt in range(1, attempts + 1):
            self.stats.invocations += 1
            outcome = self._invoke(batch, processor)
            if isinstance(outcome, dict):
                self._apply(batch, outcome, attempt)
                return
            failure = outcome
            self.stats.failed_invocations += 1
            logger.warning(
                "processor invocation failed (attempt %d of %d): %s %s",
                attempt,
                attempts,
                failure.code,
                failure.detail,
            )
        self.stats.failed_batches += 1
        self.stats.records_failed += len(batch)
        self._seal_errors([(r, self._error_line(r, failure, attempts)) for r in batch])

    def _invoke(
        self, batch: list[_Record], processor: Processor
    ) -> dict[str, tuple[str, bytes]] | _Failure:
        """One synchronous invocation: the results by record id, or why it failed as a whole."""
        event = {
            "invocationId": str(uuid.uuid4()),
            "deliveryStreamArn": self.stream_arn,
            "region": self.region,
            "records": [
                {
                    "recordId": r.record_id,
                    "approximateArrivalTimestamp": _epoch_ms(r.arrival),
                    "data": base64.b64encode(r.data).decode("ascii"),
                }
                for r in batch
            ],
        }
        try:
            response = processor(event, self._context_factory())
        except Exception as err:  # noqa: BLE001  # any handler error is Lambda.FunctionError
            return _Failure(FUNCTION_ERROR, f"{type(err).__name__}: {err}")
        try:
            payload = json.dumps(response)  # what Lambda would send back over the wire
        except (TypeError, ValueError) as err:
            return _Failure(FUNCTION_ERROR, f"Runtime.MarshalError: {err}")
        if len(payload.encode()) > MAX_RESPONSE_BYTES:
            return _Failure(RESPONSE_SIZE_EXCEEDED, f"{len(payload.encode())} bytes")
        return _parse_response(json.loads(payload), batch)

    def _apply(
        self, batch: list[_Record], results: dict[str, tuple[str, bytes]], attempt: int
    ) -> None:
        now = self.clock()
        failed: list[tuple[_Record, dict[str, Any]]] = []
        for record in batch:
            result, data = results[record.record_id]
            if result == "Ok":
                self.stats.records_ok += 1
                self._outgoing.extend([_Output(data, record.arrival, now)])
            elif result == "Dropped":
                self.stats.records_dropped += 1
            else:
                self.stats.records_failed += 1
                failed.append(
                    (record, self._error_line(record, _Failure(RECORD_PROCESSING_FAILED), attempt))
                )
        if failed:
            self._seal_errors(failed)

    def _error_line(self, record: _Record, failure: _Failure, attempts: int) -> dict[str, Any]:
        return {
            "attemptsMade": attempts,
            "arrivalTimestamp": _epoch_ms(record.arrival),
            "errorCode": failure.code,
            "errorMessage": failure.message,
            "attemptEndingTimestamp": _epoch_ms(self.clock()),
            "rawData": base64.b64encode(record.data).decode("ascii"),
            "lambdaArn": self._processor_arn,
        }


def _parse_response(response: Any, batch: list[_Record]) -> dict[str, tuple[str, bytes]] | _Failure:
    """Check a processor response against the status model; decode the data of each record."""
    entries = response.get("records") if isinstance(response, dict) else None
    if not isinstance(entries, list):
        return _Failure(JSON_PROCESSING, "the response has no 'records' list")
    expected = {record.record_id for record in batch}
    results: dict[str, tuple[str, bytes]] = {}
    for entry in entries:
        parsed = _parse_entry(entry)
        if isinstance(parsed, _Failure):
            return parsed
        record_id, result, data = parsed
        if record_id in results:
            return _Failure(DUPLICATED_RECORD_ID, f"recordId {record_id}")
        if record_id not in expected:
            logger.warning("processor returned unknown recordId %s: ignored", record_id)
            continue
        results[record_id] = (result, data)
    missing = expected - results.keys()
    if missing:
        return _Failure(MISSING_RECORD_ID, f"{len(missing)} of {len(expected)} missing")
    return results


def _parse_entry(entry: Any) -> tuple[str, str, bytes] | _Failure:
    if not isinstance(entry, dict) or not isinstance(entry.get("recordId"), str):
        return _Failure(JSON_PROCESSING, "an entry without a string 'recordId'")
    result, data = entry.get("result"), entry.get("data")
    if result not in RESULTS:
        return _Failure(JSON_PROCESSING, f"result {result!r} is not one of {sorted(RESULTS)}")
    if not isinstance(data, str):
        return _Failure(JSON_PROCESSING, f"recordId {entry['recordId']}: 'data' is not a string")
    try:
        decoded = base64.b64decode(data, validate=True)
    except binascii.Error:
        return _Failure(JSON_PROCESSING, f"recordId {entry['recordId']}: 'data' is not base64")
    return entry["recordId"], result, decoded


# -- the boto3-shaped facade -------------------------------------------------------------------


def _client_error(code: str, message: str, operation: str, status: int = 400) -> ClientError:
    response: Any = {  # botocore's shape; its TypedDict wants transport fields we do not have
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, operation)


def _record_bytes(records: Iterable[Any]) -> list[bytes]:
    """Records' `Data` as bytes, as botocore would serialise them (str is UTF-8 encoded)."""
    out: list[bytes] = []
    for index, record in enumerate(records):
        data = record.get("Data") if isinstance(record, dict) else None
        if isinstance(data, str):
            data = data.encode()
        if not isinstance(data, bytes | bytearray):
            raise ParamValidationError(
                report=f'Missing or invalid required parameter in Records[{index}]: "Data"'
            )
        out.append(bytes(data))
    return out


def validate_records(records: Sequence[bytes], operation: str = "PutRecordBatch") -> None:
    """Firehose's request limits, raised with the codes and messages AWS returns for them.

    Count and per-record size are model constraints (ValidationException, "1 validation error
    detected: ..."); the 4 MiB total is a service check (InvalidArgumentException, "Records size
    exceeds 4 MB limit"). Both messages as seen from the real service (osquery issue #3568).
    https://docs.aws.amazon.com/firehose/latest/APIReference/API_PutRecordBatch.html
    """
    if not 1 <= len(records) <= MAX_RECORDS_PER_CALL:
        bound = (
            "greater than or equal to 1"
            if not records
            else f"less than or equal to {MAX_RECORDS_PER_CALL}"
        )
        raise _client_error(
            "ValidationException",
            f"1 validation error detected: Value at 'records' failed to satisfy constraint: "
            f"Member must have length {bound}",
            operation,
        )
    for index, data in enumerate(records, start=1):
        if len(data) > MAX_RECORD_BYTES:
            raise _client_error(
                "ValidationException",
                f"1 validation error detected: Value at 'records.{index}.member.data' failed to "
                f"satisfy constraint: Member must have length less than or equal to "
                f"{MAX_RECORD_BYTES}",
                operation,
            )
    if sum(len(data) for data in records) > MAX_BYTES_PER_CALL:
        raise _client_error(
            "InvalidArgumentException", "Records size exceeds 4 MB limit", operation
        )


class InProcessFirehose:
    """A boto3-Firehose-shaped client over assemblers: tests and the demo use it in place of AWS.

    Chaos switches (they live here, in the stand-in, never in handler code):
    `throttle_next_calls` — the next N calls raise ServiceUnavailableException ("Slow down.") and
    accept nothing; `fail_next_entries` — the next N entries are answered with ErrorCode
    ServiceUnavailableException and not accepted, the others are (PutRecord, which has no
    per-entry answer, raises instead).
    """

    def __init__(self, assemblers: dict[str, WindowAssembler]) -> None:
        self.assemblers = assemblers
        self.throttle_next_calls = 0
        self.fail_next_entries = 0

    @classmethod
    def for_streams(
        cls,
        streams: Iterable[str],
        *,
        staging_bucket: str,
        s3: ObjectWriter,
        processor: Processor | None,
        tunables: FirehoseTunables,
    ) -> InProcessFirehose:
        """One assembler per stream, all writing to `staging_bucket` through `processor`."""
        return cls(
            {
                name: WindowAssembler(
                    stream_name=name,
                    staging_bucket=staging_bucket,
                    s3=s3,
                    processor=processor,
                    tunables=tunables,
                )
                for name in streams
            }
        )

    # Keyword names are boto3's, so that this stands in for a boto3 Firehose client.
    def put_record_batch(
        self, *, DeliveryStreamName: str, Records: list[dict[str, Any]]
    ) -> dict[str, Any]:
        data = _record_bytes(Records)
        assembler = self._admit("PutRecordBatch", DeliveryStreamName, data)
        failing = min(self.fail_next_entries, len(data))
        self.fail_next_entries -= failing
        refused = [
            {"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "Slow down."}
            for _ in range(failing)
        ]
        accepted = [{"RecordId": record_id} for record_id in assembler.put(data[failing:])]
        return {
            "FailedPutCount": failing,
            "Encrypted": False,
            "RequestResponses": refused + accepted,
            "ResponseMetadata": {"HTTPStatusCode": 200, "RequestId": str(uuid.uuid4())},
        }

    def put_record(self, *, DeliveryStreamName: str, Record: dict[str, Any]) -> dict[str, Any]:
        data = _record_bytes([Record])
        assembler = self._admit("PutRecord", DeliveryStreamName, data)
        if self.fail_next_entries > 0:
            self.fail_next_entries -= 1
            raise _client_error("ServiceUnavailableException", "Slow down.", "PutRecord", 503)
        (record_id,) = assembler.put(data)
        return {
            "RecordId": record_id,
            "Encrypted": False,
            "ResponseMetadata": {"HTTPStatusCode": 200, "RequestId": str(uuid.uuid4())},
        }

    def tick(self) -> list[str]:
        return [key for assembler in self.assemblers.values() for key in assembler.tick()]

    def flush(self) -> list[str]:
        return [key for assembler in self.assemblers.values() for key in assembler.flush()]

    def _admit(self, operation: str, stream: str, data: Sequence[bytes]) -> WindowAssembler:
        """Validate, find the stream, apply the throttle switch: the checks AWS makes, in order."""
        validate_records(data, operation)
        assembler = self.assemblers.get(stream)
        if assembler is None:
            raise _client_error(
                "ResourceNotFoundException", f"Firehose {stream} not found.", operation
            )
        if self.throttle_next_calls > 0:
            self.throttle_next_calls -= 1
            raise _client_error("ServiceUnavailableException", "Slow down.", operation, 503)
        return assembler
