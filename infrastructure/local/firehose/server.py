"""The local Firehose: Amazon Data Firehose's JSON API (awsJson1_1) on loopback, around the
window-assembly core, with Direct PUT quotas, SigV4 scope checks and chaos switches.

The forwarder and requeue reach it through boto3 (`AWS_ENDPOINT_URL_FIREHOSE`); `sluice up` starts
it. Spec: docs/local-stack.md, `firehose/server.py`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import json
import logging
import math
import random
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from types import TracebackType
from typing import Any, Final

from botocore.exceptions import ClientError

from infrastructure.local.firehose.window_assembly import (
    MAX_RECORD_BYTES,
    WindowAssembler,
    validate_records,
)
from infrastructure.local.loopback import (
    AWS_JSON_1_1,
    ApiError,
    LoopbackServer,
    Reply,
    Route,
    credential_scope,
)
from infrastructure.tunables import FirehoseTunables

logger = logging.getLogger(__name__)

TARGET_PREFIX: Final = "Firehose_20150804."
SERVICE: Final = "firehose"
MIB: Final = 1024 * 1024
SLOW_DOWN: Final = "Slow down."
THROTTLED: Final = "ServiceUnavailableException"
STREAM_NAME_PATTERN: Final = "[a-zA-Z0-9_.-]+"
STREAM_NAME_MAX: Final = 64
S3_RETRY_SECONDS: Final = 1.0
"""Real seconds between attempts to write objects S3 refused (divided by `time_scale`)."""
MIN_WAIT_SECONDS: Final = 0.05
TICK_SLACK_SECONDS: Final = 0.001
STOP_TIMEOUT_SECONDS: Final = 30.0

_NAME = re.compile(rf"{STREAM_NAME_PATTERN}\Z")


# -- quotas ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Quotas:
    """Direct PUT quotas per stream, and DescribeDeliveryStream's per account (limits.html).

    Each bucket holds `burst_seconds` of its rate (at least one request or record): AWS states
    the quotas per second; one second of burst is the nearest continuous equivalent. Tests use
    small rates with a long burst to make "the bucket is empty" deterministic. A record larger
    than the byte bucket can never pass (the default holds 1 MiB, above the 1,000 KiB maximum).
    """

    bytes_per_second: float = 1 * MIB
    requests_per_second: float = 1_000
    records_per_second: float = 100_000
    describe_per_second: float = 5
    burst_seconds: float = 1.0

    def __post_init__(self) -> None:
        for name in (
            "bytes_per_second",
            "requests_per_second",
            "records_per_second",
            "describe_per_second",
            "burst_seconds",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"Quotas.{name} must be positive, not {getattr(self, name)!r}")


class _TokenBucket:
    """Continuously refilled at `rate` per second up to `capacity`; not thread-safe."""

    def __init__(self, rate: float, capacity: float, clock: Callable[[], float]) -> None:
        self._rate = rate
        self._capacity = capacity
        self._clock = clock
        self._tokens = capacity
        self._stamp = clock()

    def available(self) -> float:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        return self._tokens

    def take(self, amount: float) -> bool:
        if self.available() < amount:
            return False
        self._tokens -= amount
        return True


# -- errors and replies ------------------------------------------------------------------------


def _validation(message: str) -> ApiError:
    return ApiError(400, "ValidationException", f"1 validation error detected: {message}")


def _serialization(message: str) -> ApiError:
    return ApiError(400, "SerializationException", message)


def _throttled() -> ApiError:
    return ApiError(500, THROTTLED, SLOW_DOWN)


# -- per-stream state --------------------------------------------------------------------------


@dataclass(slots=True)
class StreamCounters:
    """What the API did for one stream (the assembler's own stats cover the rest)."""

    calls: int = 0
    throttled_calls: int = 0
    records_accepted: int = 0
    records_throttled: int = 0


@dataclass(slots=True)
class _Stream:
    assembler: WindowAssembler
    tunables: FirehoseTunables  # as configured: unscaled
    requests: _TokenBucket
    records: _TokenBucket
    bytes: _TokenBucket
    lock: threading.Lock = field(default_factory=threading.Lock)  # the assembler's
    quota_lock: threading.Lock = field(default_factory=threading.Lock)
    wake: threading.Event = field(default_factory=threading.Event)
    counters: StreamCounters = field(default_factory=StreamCounters)
    ticker: threading.Thread | None = None


def _scaled(tunables: FirehoseTunables, time_scale: float) -> FirehoseTunables:
    """The tunables with both buffer intervals divided by `time_scale` (float seconds)."""
    if time_scale == 1:
        return tunables
    changes: dict[str, Any] = {
        "processor_buffer_seconds": tunables.processor_buffer_seconds / time_scale,
        "destination_buffer_seconds": tunables.destination_buffer_seconds / time_scale,
    }
    return tunables._replace(**changes)


# -- the server --------------------------------------------------------------------------------


class FirehoseServer:
    """Firehose's API for `streams` (name -> assembler) on `host:port` (0: a free port)."""

    def __init__(
        self,
        streams: Mapping[str, WindowAssembler],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        time_scale: float = 1.0,
        quotas: Quotas = Quotas(),  # frozen: one shared default is safe
        rng: random.Random | None = None,
    ) -> None:
        if not time_scale > 0:
            raise ValueError(f"time_scale must be positive, not {time_scale!r}")
        regions = {assembler.region for assembler in streams.values()}
        if len(regions) > 1:
            raise ValueError(f"all streams must be in one region, not {sorted(regions)}")
        for name, assembler in streams.items():
            if assembler.stream_name != name:
                raise ValueError(
                    f"stream {name!r} is given an assembler for {assembler.stream_name!r}"
                )
        self.region = regions.pop() if regions else "eu-west-2"
        arns = [assembler.stream_arn for assembler in streams.values()]
        self.account_id = _account(arns[0]) if arns else "123456789012"
        self.time_scale = time_scale
        self.quotas = quotas
        self._host = host
        self._port = port
        self._rng = rng or random.Random()  # noqa: S311  # chaos, not security
        self._created = time.time()

        def bucket(rate: float, unit: float = 1.0) -> _TokenBucket:
            return _TokenBucket(rate, max(rate * quotas.burst_seconds, unit), time.monotonic)

        self._streams = {
            name: _Stream(
                assembler=assembler,
                tunables=assembler.tunables,
                requests=bucket(quotas.requests_per_second),
                records=bucket(quotas.records_per_second),
                bytes=bucket(quotas.bytes_per_second, 0.0),
            )
            for name, assembler in streams.items()
        }
        self._describe = bucket(quotas.describe_per_second)
        self._describe_lock = threading.Lock()
        self._operations: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "PutRecordBatch": self._put_record_batch,
            "PutRecord": self._put_record,
            "DescribeDeliveryStream": self._describe_delivery_stream,
        }
        # Chaos switches: see docs/local-stack.md.
        self.throttle_next_calls = 0
        self.fail_next_entries = 0
        self.throttle_percent = 0.0
        self._throttle_until = 0.0
        self._chaos_lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._stopping = threading.Event()
        self._stopped = False

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> FirehoseServer:
        """Listen, serve in a background thread, and start one ticker thread per stream."""
        if self._httpd is not None or self._stopped:
            raise RuntimeError("a FirehoseServer starts once")
        self._httpd = _HTTPServer(self._route, self._host, self._port)  # binds: may fail
        for stream in self._streams.values():
            stream.assembler.tunables = _scaled(stream.tunables, self.time_scale)
        self._httpd.start()
        for name, stream in self._streams.items():
            stream.ticker = threading.Thread(
                target=self._tick_loop,
                args=(name, stream),
                name=f"firehose-tick-{name}",
                daemon=True,
            )
            stream.ticker.start()
        logger.info("local Firehose on %s for %s", self.endpoint, ", ".join(self._streams))
        return self

    @property
    def endpoint(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the server is not started")
        return self._httpd.endpoint

    @property
    def assemblers(self) -> dict[str, WindowAssembler]:
        return {name: stream.assembler for name, stream in self._streams.items()}

    def stop(self, *, flush: bool = True) -> None:
        """Accept nothing more, finish requests under way, stop every thread; then, with `flush`,
        write both buffers of every stream (each under its lock, in this thread).

        Connections idle in keep-alive are closed; a request that has not begun is refused (the
        client sees the connection close). If a staging write fails during the flush, the other
        streams are still flushed and a RuntimeError is raised at the end: the objects stay sealed
        in their assemblers, keys kept.
        """
        if self._httpd is None or self._stopped:
            self._stopped = True
            return
        self._stopped = True
        httpd = self._httpd
        httpd.stop_serving()  # the accept loop ends; every accepted connection is tracked by now
        httpd.close_connections()
        httpd.join_handlers(STOP_TIMEOUT_SECONDS)
        httpd.server_close()
        self._stopping.set()
        for stream in self._streams.values():
            stream.wake.set()
        for stream in self._streams.values():
            if stream.ticker is not None:
                stream.ticker.join(STOP_TIMEOUT_SECONDS)
                if stream.ticker.is_alive():
                    logger.warning("ticker of %s still running", stream.assembler.stream_name)
        failures: list[tuple[str, Exception]] = []
        for name, stream in self._streams.items():
            if flush:
                with stream.lock:
                    try:
                        stream.assembler.flush()
                    except Exception as err:  # noqa: BLE001  # reported below, after the others
                        failures.append((name, err))
            stream.assembler.tunables = stream.tunables
        if failures:
            names = ", ".join(name for name, _ in failures)
            raise RuntimeError(f"could not write the buffers of {names}") from failures[0][1]

    def __enter__(self) -> FirehoseServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def set_time_scale(self, time_scale: float) -> None:
        """Scale both buffer intervals and the wait between refused writes anew. Buffers under
        way are due at their start plus the new interval: each ticker wakes to look again."""
        if not time_scale > 0:
            raise ValueError(f"time_scale must be positive, not {time_scale!r}")
        self.time_scale = time_scale
        if self._httpd is None or self._stopped:
            return  # `start` scales them; `stop` restores them
        for stream in self._streams.values():
            with stream.lock:
                stream.assembler.tunables = _scaled(stream.tunables, time_scale)
            stream.wake.set()

    # -- chaos and introspection ---------------------------------------------------------------

    def throttle_for(self, percent: float, seconds: float) -> None:
        """Refuse `percent` % of records (at random) for the next `seconds` real seconds."""
        if not 0 <= percent <= 100:
            raise ValueError(f"percent must be within 0..100, not {percent!r}")
        with self._chaos_lock:
            self.throttle_percent = percent
            self._throttle_until = time.monotonic() + seconds

    def throttle_state(self) -> tuple[float, float]:
        """(percent, seconds left) of the `throttle_for` under way; seconds 0 when none is."""
        with self._chaos_lock:
            return self.throttle_percent, max(0.0, self._throttle_until - time.monotonic())

    def stats(self) -> dict[str, dict[str, int]]:
        """Per stream: the assembler's counters and the API's, for the status line."""
        out: dict[str, dict[str, int]] = {}
        for name, stream in self._streams.items():
            with stream.lock:
                assembled = stream.assembler.stats.as_dict()
                buffered = stream.assembler.buffered_records
                pending = stream.assembler.pending_objects
            with stream.quota_lock:
                api = dataclasses.asdict(stream.counters)
            out[name] = {
                **assembled,
                **api,
                "buffered_records": buffered,
                "pending_objects": pending,
            }
        return out

    # -- the ticker ----------------------------------------------------------------------------

    def _tick_loop(self, name: str, stream: _Stream) -> None:
        """Run `tick` when the assembler says something is due, or when a put woke us."""
        assembler = stream.assembler
        clock = assembler.clock
        while not self._stopping.is_set():
            stream.wake.clear()
            failed = False
            with stream.lock:
                try:
                    assembler.tick()
                except (
                    Exception
                ):  # a bug, not a processor or S3 failure (the assembler keeps those)
                    logger.exception("tick failed for stream %s", name)
                    failed = True
                due = assembler.next_due()
                pending = assembler.pending_objects
                now = clock()
            if failed or pending:
                timeout: float | None = max(S3_RETRY_SECONDS / self.time_scale, MIN_WAIT_SECONDS)
            elif due is None:
                timeout = None  # nothing buffered: sleep until a put (or stop) wakes us
            else:
                timeout = max(due - now, 0.0) + TICK_SLACK_SECONDS
            stream.wake.wait(timeout)

    # -- requests ------------------------------------------------------------------------------

    def _route(self, method: str, path: str, headers: Message, body: bytes) -> Reply:
        reply = self._handle(method, path, headers, body)
        return dataclasses.replace(
            reply, headers={**reply.headers, "x-amzn-RequestId": str(uuid.uuid4())}
        )

    def _handle(self, method: str, path: str, headers: Message, body: bytes) -> Reply:
        if method != "POST":
            return ApiError(400, "UnknownOperationException", f"{method} /").json_1_1()
        try:
            self._authenticate(headers.get("Authorization"))
            operation = self._operation(path, headers.get("X-Amz-Target") or "")
            return Reply.json(
                200, operation(_json_object(body)), content_type=AWS_JSON_1_1, compact=True
            )
        except ApiError as err:
            return err.json_1_1()
        except ClientError as err:  # validate_records speaks botocore's exception
            error = err.response.get("Error", {})
            code, message = error.get("Code", "ValidationException"), error.get("Message", "")
            return ApiError(400, code, message).json_1_1()
        except Exception as err:
            logger.exception("local Firehose failed a request")
            return ApiError(500, "InternalFailure", str(err)).json_1_1()

    def _operation(self, path: str, target: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
        operation = self._operations.get(target.removeprefix(TARGET_PREFIX))
        if path != "/" or not target.startswith(TARGET_PREFIX) or operation is None:
            raise ApiError(
                400, "UnknownOperationException", f"Unknown operation {target!r} at {path}"
            )
        return operation

    def _authenticate(self, authorization: str | None) -> None:
        if not authorization:
            raise ApiError(
                400, "MissingAuthenticationTokenException", "Missing Authentication Token"
            )
        credential = credential_scope(authorization)
        if not authorization.startswith("AWS4-HMAC-SHA256 ") or credential is None:
            raise ApiError(
                400,
                "IncompleteSignatureException",
                "Authorization header requires a SigV4 'Credential' parameter.",
            )
        if credential.service != SERVICE:
            raise ApiError(
                400,
                "InvalidSignatureException",
                f"Credential should be scoped to correct service: '{SERVICE}'. ",
            )
        if credential.region != self.region:
            raise ApiError(
                400,
                "InvalidSignatureException",
                f"Credential should be scoped to a valid region, not '{credential.region}'. ",
            )

    def _stream(self, name: str) -> _Stream:
        stream = self._streams.get(name)
        if stream is None:
            raise ApiError(
                400,
                "ResourceNotFoundException",
                f"Firehose {name} under account {self.account_id} not found.",
            )
        return stream

    def _put_record_batch(self, request: dict[str, Any]) -> dict[str, Any]:
        name = _stream_name(request)
        entries = request.get("Records")
        if entries is None:
            raise _validation(
                "Value null at 'records' failed to satisfy constraint: Member must not be null"
            )
        if not isinstance(entries, list):
            raise _serialization("'Records' is not a list")
        data = [_data(entry, f"records.{index}.member") for index, entry in enumerate(entries, 1)]
        validate_records(data, "PutRecordBatch")
        stream = self._stream(name)
        self._admit_call(stream)
        verdicts = self._admit_records(stream, data)
        ids = iter(self._put(stream, [d for d, ok in zip(data, verdicts, strict=True) if ok]))
        responses = [
            {"RecordId": next(ids)} if ok else {"ErrorCode": THROTTLED, "ErrorMessage": SLOW_DOWN}
            for ok in verdicts
        ]
        return {
            "FailedPutCount": verdicts.count(False),
            "Encrypted": False,
            "RequestResponses": responses,
        }

    def _put_record(self, request: dict[str, Any]) -> dict[str, Any]:
        name = _stream_name(request)
        data = _data(request.get("Record"), "record")
        if len(data) > MAX_RECORD_BYTES:
            raise _validation(
                "Value at 'record.data' failed to satisfy constraint: Member must have length "
                f"less than or equal to {MAX_RECORD_BYTES}"
            )
        stream = self._stream(name)
        self._admit_call(stream)
        if not self._admit_records(stream, [data])[0]:
            raise _throttled()  # PutRecord has no per-entry answer
        (record_id,) = self._put(stream, [data])
        return {"RecordId": record_id, "Encrypted": False}

    def _describe_delivery_stream(self, request: dict[str, Any]) -> dict[str, Any]:
        name = _stream_name(request)
        with self._describe_lock:
            allowed = self._describe.take(1)
        if not allowed:
            raise ApiError(
                400, "LimitExceededException", "Rate exceeded for DescribeDeliveryStream."
            )
        stream = self._stream(name)
        return {"DeliveryStreamDescription": self._description(stream)}

    def _admit_call(self, stream: _Stream) -> None:
        """The request quota (and the call-level chaos switch): all of the call or none of it."""
        with self._chaos_lock:
            chaos = self.throttle_next_calls > 0
            if chaos:
                self.throttle_next_calls -= 1
        with stream.quota_lock:
            stream.counters.calls += 1
            if chaos or not stream.requests.take(1):
                stream.counters.throttled_calls += 1
                raise _throttled()

    def _admit_records(self, stream: _Stream, data: list[bytes]) -> list[bool]:
        """Per record, in order: entry chaos, then the record and byte quotas."""
        verdicts: list[bool] = []
        with self._chaos_lock:
            refused = min(self.fail_next_entries, len(data))
            self.fail_next_entries -= refused
            percent = self.throttle_percent if time.monotonic() < self._throttle_until else 0.0
        with stream.quota_lock:
            for index, record in enumerate(data):
                if index < refused or (percent and self._rng.random() * 100 < percent):
                    ok = False
                else:
                    ok = (
                        stream.records.available() >= 1
                        and stream.bytes.available() >= len(record)
                        and stream.records.take(1)
                        and stream.bytes.take(len(record))
                    )
                verdicts.append(ok)
            stream.counters.records_accepted += verdicts.count(True)
            stream.counters.records_throttled += verdicts.count(False)
        return verdicts

    def _put(self, stream: _Stream, data: list[bytes]) -> list[str]:
        if not data:
            return []
        with stream.lock:
            record_ids = stream.assembler.put(data)
        stream.wake.set()  # a size hint may be reached: let the ticker look now
        return record_ids

    def _description(self, stream: _Stream) -> dict[str, Any]:
        """What DescribeDeliveryStream returns for a Direct PUT stream to extended S3."""
        assembler = stream.assembler
        t = stream.tunables
        account = _account(assembler.stream_arn)
        destination: dict[str, Any] = {
            "RoleARN": f"arn:aws:iam::{account}:role/{assembler.stream_name}-delivery",
            "BucketARN": f"arn:aws:s3:::{assembler._bucket}",
            "Prefix": t.buffers_prefix,
            "ErrorOutputPrefix": t.errors_prefix,
            "BufferingHints": {
                "SizeInMBs": max(1, math.ceil(t.destination_buffer_bytes / MIB)),
                "IntervalInSeconds": t.destination_buffer_seconds,
            },
            "CompressionFormat": "GZIP",
            "EncryptionConfiguration": {"NoEncryptionConfig": "NoEncryption"},
            "ProcessingConfiguration": {"Enabled": False},
            "S3BackupMode": "Disabled",
            "FileExtension": t.file_extension,
        }
        if assembler._processor is not None:
            parameters = {
                "LambdaArn": assembler._processor_arn,
                "NumberOfRetries": str(t.processor_retries),
                "BufferSizeInMBs": f"{t.processor_buffer_bytes / MIB:g}",
                "BufferIntervalInSeconds": str(t.processor_buffer_seconds),
            }
            destination["ProcessingConfiguration"] = {
                "Enabled": True,
                "Processors": [
                    {
                        "Type": "Lambda",
                        "Parameters": [
                            {"ParameterName": key, "ParameterValue": value}
                            for key, value in parameters.items()
                        ],
                    }
                ],
            }
        return {
            "DeliveryStreamName": assembler.stream_name,
            "DeliveryStreamARN": assembler.stream_arn,
            "DeliveryStreamStatus": "ACTIVE",
            "DeliveryStreamEncryptionConfiguration": {"Status": "DISABLED"},
            "DeliveryStreamType": "DirectPut",
            "VersionId": str(assembler._version),
            "CreateTimestamp": self._created,
            "Destinations": [
                {
                    "DestinationId": "destinationId-000000000001",
                    "ExtendedS3DestinationDescription": destination,
                }
            ],
            "HasMoreDestinations": False,
        }


# -- request parsing ---------------------------------------------------------------------------


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        request = json.loads(body or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _serialization(f"The request body is not JSON: {err}") from None
    if not isinstance(request, dict):
        raise _serialization("The request body is not a JSON object")
    return request


def _stream_name(request: dict[str, Any]) -> str:
    name = request.get("DeliveryStreamName")
    where = "at 'deliveryStreamName' failed to satisfy constraint: Member must"
    if name is None:
        raise _validation(f"Value null {where} not be null")
    if not isinstance(name, str):
        raise _serialization("'DeliveryStreamName' is not a string")
    if not 1 <= len(name) <= STREAM_NAME_MAX:
        raise _validation(f"Value '{name}' {where} have length between 1 and {STREAM_NAME_MAX}")
    if not _NAME.match(name):
        raise _validation(
            f"Value '{name}' {where} satisfy regular expression pattern: {STREAM_NAME_PATTERN}"
        )
    return name


def _data(entry: Any, where: str) -> bytes:
    """A record's `Data`, base64-decoded, as botocore serialised it."""
    if entry is None:
        raise _validation(
            f"Value null at '{where}' failed to satisfy constraint: Member must not be null"
        )
    if not isinstance(entry, dict):
        raise _serialization(f"'{where}' is not a JSON object")
    data = entry.get("Data")
    if data is None:
        raise _validation(
            f"Value null at '{where}.data' failed to satisfy constraint: Member must not be null"
        )
    if not isinstance(data, str):
        raise _serialization(f"'{where}.data' is not a base64 string")
    try:
        return base64.b64decode(data, validate=True)
    except binascii.Error:
        raise _serialization(f"'{where}.data' is not valid base64") from None


def _account(arn: str) -> str:
    """`arn:aws:firehose:<region>:<account>:deliverystream/<name>` -> account."""
    parts = arn.split(":")
    return parts[4] if len(parts) > 4 else "123456789012"


# -- HTTP --------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Connection:
    thread: threading.Thread
    busy: bool = False


class _HTTPServer(LoopbackServer):
    """A thread per connection (keep-alive), each tracked so that `stop` can end them all."""

    daemon_threads = True  # a safety net only: FirehoseServer.stop joins them
    block_on_close = False

    def __init__(self, route: Route, host: str, port: int) -> None:
        super().__init__(
            route, name="firehose-http", host=host, port=port, server_version="SluiceFirehose"
        )
        self._connections: dict[socket.socket, _Connection] = {}
        self._connections_lock = threading.Lock()
        self._count = 0

    def process_request(self, request: Any, client_address: Any) -> None:
        self._count += 1
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"firehose-conn-{self._count}",
            daemon=True,
        )
        with self._connections_lock:
            self._connections[request] = _Connection(thread)
        thread.start()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.pop(request, None)

    def begin(self, connection: socket.socket) -> bool:
        """Mark a request under way; False once the server is closing (refuse it)."""
        with self._connections_lock:
            tracked = self._connections.get(connection)
            if self.closing or tracked is None:
                return False
            tracked.busy = True
            return True

    def end(self, connection: socket.socket) -> None:
        with self._connections_lock:
            tracked = self._connections.get(connection)
            if tracked is not None:
                tracked.busy = False

    def close_connections(self) -> None:
        """Refuse new requests from now on; end idle connections (busy ones after replying)."""
        with self._connections_lock:
            self.closing = True
            idle = [sock for sock, tracked in self._connections.items() if not tracked.busy]
        for sock in idle:
            with contextlib.suppress(OSError):  # already closed by the client
                sock.shutdown(socket.SHUT_RDWR)  # wakes its thread, reading the next request

    def join_handlers(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with self._connections_lock:
                threads = [tracked.thread for tracked in self._connections.values()]
                idle = [sock for sock, tracked in self._connections.items() if not tracked.busy]
            if not threads:
                return
            for sock in idle:  # a connection whose reply was sent since close_connections
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                logger.warning("%d connection threads still running at stop", len(threads))
                return
            threads[0].join(min(remaining, 0.1))
