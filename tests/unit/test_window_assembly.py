"""The window-assembly library: Firehose's buffers, processor contract, keys and API facade.

Processor stand-ins here are plain Python functions written for these tests (the real
`transform.processor` is tested on its own). Time is a fake clock the tests advance: no sleeps.
S3 is moto in process; objects are read back and gunzipped for real.

Each test of an emulated AWS behaviour cites, in its docstring, the AWS page that documents it;
where it checks a choice of the stand-in that AWS does not document, the docstring says so.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from infrastructure.local.firehose.prefixes import PrefixError
from infrastructure.local.firehose.window_assembly import (
    InProcessFirehose,
    WindowAssembler,
)
from infrastructure.local.lambdas.context import LocalLambdaContext
from infrastructure.tunables import FirehoseTunables, load_tunables
from tests.conftest import STAGING, STREAMS
from transform.firehose_sender import FirehoseSender, OutgoingRecord, RetryPolicy

STREAM = STREAMS[0]
START = datetime(2025, 3, 14, 10, 59, 50, tzinfo=UTC).timestamp()
PROCESSOR_ARN = "arn:aws:lambda:eu-west-2:123456789012:function:sluice-processor:live"
ERROR_FIELDS = {
    "attemptsMade",
    "arrivalTimestamp",
    "errorCode",
    "errorMessage",
    "attemptEndingTimestamp",
    "rawData",
    "lambdaArn",
}
Handler = Callable[[dict[str, Any], Any], Any]


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Recording:
    """Wraps a processor stand-in and remembers every invocation (event, context)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.calls: list[tuple[dict[str, Any], Any]] = []

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        self.calls.append((event, context))
        return self.handler(event, context)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def per_record(decide: Callable[[bytes], tuple[str, bytes]]) -> Recording:
    """A processor stand-in (plain function) applying `decide(data) -> (result, output)`."""

    def handler(event: dict[str, Any], _context: Any) -> dict[str, Any]:
        out = []
        for record in event["records"]:
            result, data = decide(base64.b64decode(record["data"]))
            out.append({"recordId": record["recordId"], "result": result, "data": _b64(data)})
        return {"records": out}

    return Recording(handler)


def newline_ok(data: bytes) -> tuple[str, bytes]:
    """Like Sluice's processor: Ok, with the newline Firehose does not add."""
    return "Ok", data + b"\n"


def by_content(data: bytes) -> tuple[str, bytes]:
    if data.startswith(b"fail"):
        return "ProcessingFailed", data
    if data.startswith(b"drop"):
        return "Dropped", b""
    return "Ok", data.upper() + b"\n"


def firehose_tunables(**overrides: Any) -> FirehoseTunables:
    """The repository's Firehose tunables (real prefixes), with small buffers for tests."""
    small: dict[str, Any] = {
        "processor_buffer_bytes": 1_000,
        "processor_buffer_seconds": 10,
        "processor_retries": 3,
        "destination_buffer_bytes": 10_000,
        "destination_buffer_seconds": 60,
    }
    return load_tunables().firehose._replace(**(small | overrides))


def assembler(
    s3: Any, processor: Handler | None, clock: FakeClock, **overrides: Any
) -> WindowAssembler:
    return WindowAssembler(
        stream_name=STREAM,
        staging_bucket=STAGING,
        s3=s3,
        processor=processor,
        tunables=firehose_tunables(**overrides),
        clock=clock,
    )


def staged(s3: Any, prefix: str) -> dict[str, bytes]:
    """Every object under `prefix`, gunzipped."""
    listing = s3.list_objects_v2(Bucket=STAGING, Prefix=prefix).get("Contents", [])
    return {
        item["Key"]: gzip.decompress(s3.get_object(Bucket=STAGING, Key=item["Key"])["Body"].read())
        for item in listing
    }


def error_lines(s3: Any) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for body in staged(s3, "errors/").values():
        assert body.endswith(b"\n")
        lines.extend(json.loads(line) for line in body.decode().splitlines())
    return lines


# -- the processor buffer ---------------------------------------------------------------------


def test_nothing_is_processed_or_written_before_size_or_interval(
    buckets: dict[str, str], s3: Any
) -> None:
    """With transformation enabled Firehose buffers incoming data and invokes the processor with
    each buffered batch once the processor buffer's size or interval hint is reached, not before.
    https://docs.aws.amazon.com/firehose/latest/dev/data-transformation.html
    """
    # GIVEN records well under the processor buffer's size
    processor = per_record(newline_ok)
    fh = assembler(s3, processor, clock := FakeClock())
    fh.put([b"a" * 100, b"b" * 100])
    # WHEN ticks come before the oldest record is processor_buffer_seconds old
    clock.advance(9.999)
    written = fh.tick()
    # THEN the processor was not invoked and nothing is staged
    assert written == []
    assert processor.calls == []
    assert staged(s3, "") == {}
    assert fh.buffered_records == 2


def test_processor_invoked_when_its_buffer_reaches_the_size_hint(
    buckets: dict[str, str], s3: Any
) -> None:
    """The processor buffer is released when it reaches its size hint (BufferSizeInMBs), before its
    interval. Cutting a batch at most at the hint is the stand-in's choice (AWS: hints are hints).
    https://docs.aws.amazon.com/firehose/latest/dev/data-transformation.html
    """
    # GIVEN 1,200 bytes of input against a 1,000-byte processor buffer
    processor = per_record(newline_ok)
    fh = assembler(s3, processor, clock := FakeClock())
    fh.put([b"x" * 300] * 4)
    # WHEN the assembler ticks at once
    fh.tick()
    # THEN one batch of at most the hint (three records) was processed; the fourth waits
    assert [len(event["records"]) for event, _ in processor.calls] == [3]
    # ... until its interval is up
    clock.advance(10)
    fh.tick()
    assert [len(event["records"]) for event, _ in processor.calls] == [3, 1]


def test_processor_invoked_when_the_oldest_record_reaches_the_interval(
    buckets: dict[str, str], s3: Any
) -> None:
    """The processor buffer is released when its interval hint (IntervalInSeconds) is reached;
    that the interval runs from the oldest buffered record is the stand-in's reading of the page.
    https://docs.aws.amazon.com/firehose/latest/dev/data-transformation.html
    """
    # GIVEN one record, and another five seconds later
    processor = per_record(newline_ok)
    fh = assembler(s3, processor, clock := FakeClock())
    fh.put([b"first"])
    clock.advance(5)
    fh.put([b"second"])
    clock.advance(4.9)
    fh.tick()
    assert processor.calls == []
    # WHEN the first is processor_buffer_seconds old
    clock.advance(0.1)
    fh.tick()
    # THEN both go to the processor in one invocation
    assert len(processor.calls) == 1
    assert [base64.b64decode(r["data"]) for r in processor.calls[0][0]["records"]] == [
        b"first",
        b"second",
    ]


def test_invocation_event_and_context_have_lambdas_shape(buckets: dict[str, str], s3: Any) -> None:
    """Firehose invokes the processor with {invocationId, deliveryStreamArn, region, records:
    [{recordId, approximateArrivalTimestamp (epoch ms), data (base64)}]} (a Direct PUT source).
    https://docs.aws.amazon.com/lambda/latest/dg/services-kinesisfirehose.html
    """
    # GIVEN a record accepted at START
    processor = per_record(newline_ok)
    fh = assembler(s3, processor, FakeClock())
    (record_id,) = fh.put([b"payload"])
    # WHEN it is processed
    fh.flush()
    # THEN the event carries what Firehose sends, and the context is a Lambda context
    event, context = processor.calls[0]
    assert set(event) == {"invocationId", "deliveryStreamArn", "region", "records"}
    assert event["deliveryStreamArn"] == (
        f"arn:aws:firehose:eu-west-2:123456789012:deliverystream/{STREAM}"
    )
    assert event["region"] == "eu-west-2"
    assert event["records"] == [
        {
            "recordId": record_id,
            "approximateArrivalTimestamp": int(START * 1000),
            "data": _b64(b"payload"),
        }
    ]
    assert isinstance(context, LocalLambdaContext)
    assert context.function_name == "sluice-processor"


def test_context_factory_is_used_when_given(buckets: dict[str, str], s3: Any) -> None:
    processor = per_record(newline_ok)
    sentinel = object()
    fh = WindowAssembler(
        stream_name=STREAM,
        staging_bucket=STAGING,
        s3=s3,
        processor=processor,
        tunables=firehose_tunables(),
        clock=FakeClock(),
        context_factory=lambda: sentinel,
    )
    fh.put([b"x"])
    fh.flush()
    assert processor.calls[0][1] is sentinel


# -- the destination buffer -------------------------------------------------------------------


def test_destination_written_when_its_interval_is_up(buckets: dict[str, str], s3: Any) -> None:
    """Transformed data goes to the destination when the destination buffer's size or interval
    hint is reached; that the interval runs from when the output entered that buffer is the
    stand-in's reading (DESIGN §4: both buffers count toward latency).
    https://docs.aws.amazon.com/firehose/latest/dev/data-transformation.html
    https://docs.aws.amazon.com/firehose/latest/dev/buffering-hints.html
    """
    # GIVEN a record processed when its processor interval ran out (START + 10 s)
    fh = assembler(s3, per_record(newline_ok), clock := FakeClock())
    fh.put([b"only"])
    clock.advance(10)
    fh.tick()
    assert staged(s3, "buffers/") == {}
    # WHEN the destination interval has not yet run from the moment it entered that buffer
    clock.advance(59.9)
    # THEN nothing is written (both buffers count toward latency)
    assert fh.tick() == []
    # ... and at 60 s it is
    clock.advance(0.1)
    (key,) = fh.tick()
    assert staged(s3, "buffers/") == {key: b"only\n"}


def test_destination_written_when_its_buffer_reaches_the_size_hint(
    buckets: dict[str, str], s3: Any
) -> None:
    """The first buffer condition met (here the size hint, counted before compression) triggers
    delivery. Cutting an object at most at the hint is the stand-in's choice (AWS: hints are hints).
    https://docs.aws.amazon.com/firehose/latest/dev/buffering-hints.html
    https://docs.aws.amazon.com/firehose/latest/dev/limits.html
    """
    # GIVEN no processor and 1,200 bytes against a 1,000-byte destination buffer
    fh = assembler(s3, None, FakeClock(), destination_buffer_bytes=1_000)
    fh.put([b"a" * 400, b"b" * 400, b"c" * 400])
    # WHEN it ticks at once
    keys = fh.tick()
    # THEN one object of at most the hint is written, and the rest waits
    assert len(keys) == 1
    assert staged(s3, "buffers/") == {keys[0]: b"a" * 400 + b"b" * 400}
    assert fh.buffered_records == 1


def test_object_is_gzip_of_the_data_concatenated_as_given(buckets: dict[str, str], s3: Any) -> None:
    """Firehose concatenates records into one S3 object without any delimiter, GZIP-compressed
    when the destination says GZIP. The zero GZIP mtime (byte-stable objects) is the stand-in's.
    https://docs.aws.amazon.com/firehose/latest/dev/basic-deliver.html
    https://docs.aws.amazon.com/firehose/latest/dev/create-destination.html
    """
    # GIVEN a processor that returns data without newlines
    fh = assembler(s3, per_record(lambda data: ("Ok", data)), FakeClock())
    fh.put([b"one", b"two", b'{"three": 3}'])
    # WHEN everything is flushed
    (key,) = fh.flush()
    # THEN the object is exactly gzip(mtime=0) of the concatenation: Firehose adds no delimiter
    raw = s3.get_object(Bucket=STAGING, Key=key)["Body"].read()
    assert raw == gzip.compress(b'onetwo{"three": 3}', mtime=0)
    assert raw[4:8] == b"\0\0\0\0"


def test_key_and_partition_come_from_the_oldest_records_arrival(
    buckets: dict[str, str], s3: Any
) -> None:
    """Prefix timestamps are the UTC approximate arrival time of the oldest record in the object;
    the name is <stream>-<version>-<yyyy-MM-dd-HH-mm-ss>-<uuid><ext>. AWS does not say which
    instant the name's timestamp is: the same one is the stand-in's choice.
    https://docs.aws.amazon.com/firehose/latest/dev/s3-prefixes.html
    https://docs.aws.amazon.com/firehose/latest/dev/s3-object-name.html
    """
    # GIVEN records on both sides of 11:00 UTC
    fh = assembler(s3, per_record(newline_ok), clock := FakeClock())
    fh.put([b"at 10:59:50"])
    clock.advance(20)
    fh.put([b"at 11:00:10"])
    # WHEN they are flushed into one object
    (key,) = fh.flush()
    # THEN its dt/hour and its name's timestamp are the oldest record's arrival, 10:59:50
    assert re.fullmatch(
        rf"buffers/dt=2025-03-14/hour=10/{STREAM}-1-2025-03-14-10-59-50-"
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}\.json\.gz",
        key,
    )
    assert staged(s3, "buffers/")[key] == b"at 10:59:50\nat 11:00:10\n"


def test_no_processor_means_records_go_straight_to_the_destination(
    buckets: dict[str, str], s3: Any
) -> None:
    """Without transformation, records are buffered for the destination and concatenated as sent.
    https://docs.aws.amazon.com/firehose/latest/dev/basic-deliver.html
    """
    fh = assembler(s3, None, FakeClock())
    fh.put([b"raw-1", b"raw-2"])
    (key,) = fh.flush()
    assert staged(s3, "buffers/") == {key: b"raw-1raw-2"}
    assert fh.stats.invocations == 0


# -- per-record results -----------------------------------------------------------------------


def test_dropped_records_are_discarded(buckets: dict[str, str], s3: Any) -> None:
    """result Dropped: dropped intentionally by the processor and counted as successfully
    processed, so it is neither delivered nor written as an error.
    https://docs.aws.amazon.com/firehose/latest/dev/data-transformation-status-model.html
    """
    # GIVEN a processor that drops one of three records
    fh = assembler(s3, per_record(by_content), FakeClock())
    fh.put([b"keep-1", b"drop-me", b"keep-2"])
    # WHEN flushed
    fh.flush()
    # THEN the dropped record is nowhere, and no error is written for it
    assert list(staged(s3, "buffers/").values()) == [b"KEEP-1\nKEEP-2\n"]
    assert staged(s3, "errors/") == {}
    assert fh.stats.records_dropped == 1


def test_processing_failed_record_goes_to_errors_with_its_original_data(
    buckets: dict[str, str], s3: Any
) -> None:
    """A ProcessingFailed record is unsuccessfully processed: it goes to the processing-failed
    output with exactly attemptsMade, arrivalTimestamp, errorCode, errorMessage,
    attemptEndingTimestamp, rawData (base64) and lambdaArn; Ok records go on. Not documented, so
    the stand-in's: the code Lambda.ProcessingFailed, epoch-ms numbers, GZIP, writing at once.
    https://docs.aws.amazon.com/firehose/latest/dev/data-transformation-failure-handling.html
    https://docs.aws.amazon.com/firehose/latest/dev/data-transformation-status-model.html
    """
    # GIVEN a processor that fails one record of three (and transforms the others)
    fh = assembler(s3, per_record(by_content), clock := FakeClock())
    fh.put([b"ok-1", b"fail: bad schema", b"ok-2"])
    clock.advance(10)
    # WHEN the batch is processed
    keys = fh.tick()
    # THEN the failed record is written at once under errors/processing-failed/, in gzip
    (error_key,) = keys
    assert re.fullmatch(
        rf"errors/processing-failed/dt=2025-03-14/{STREAM}-1-2025-03-14-10-59-50-[0-9a-f-]{{36}}"
        r"\.json\.gz",
        error_key,
    )
    (line,) = error_lines(s3)
    assert set(line) == ERROR_FIELDS
    assert line == {
        "attemptsMade": 1,
        "arrivalTimestamp": int(START * 1000),
        "errorCode": "Lambda.ProcessingFailed",
        "errorMessage": "The Lambda function returned ProcessingFailed for this record.",
        "attemptEndingTimestamp": int((START + 10) * 1000),
        "rawData": _b64(b"fail: bad schema"),
        "lambdaArn": PROCESSOR_ARN,
    }
    # ... and the others go on to the destination
    fh.flush()
    assert list(staged(s3, "buffers/").values()) == [b"OK-1\nOK-2\n"]


# -- whole-invocation failures ----------------------------------------------------------------


def test_raising_processor_is_retried_then_the_whole_batch_goes_to_errors(
    buckets: dict[str, str], s3: Any
) -> None:
    """A failed invocation is retried (three times by default, ProcessorParameter NumberOfRetries);
    then the whole batch is skipped and every record goes to processing-failed. The stand-in's:
    retrying a handler error too (the page names timeouts and limits), a new invocationId each time.
    https://docs.aws.amazon.com/firehose/latest/dev/data-transformation-failure-handling.html
    https://docs.aws.amazon.com/firehose/latest/APIReference/API_ProcessorParameter.html
    """

    # GIVEN a processor that always raises, and processor_retries = 3
    def crash(event: dict[str, Any], context: Any) -> Any:
        raise RuntimeError("boom")

    processor = Recording(crash)
    fh = assembler(s3, processor, FakeClock(), processor_retries=3)
    fh.put([b"valid-1", b"valid-2"])
    # WHEN the batch is processed
    fh.flush()
    # THEN it was attempted 1 + 3 times, each with a new invocationId and the same records
    assert len(processor.calls) == 4
    assert len({event["invocationId"] for event, _ in processor.calls}) == 4
    assert len({json.dumps(event["records"]) for event, _ in processor.calls}) == 1
    # ... and then every record of it, valid ones too, is in errors/ with the attempts made
    lines = error_lines(s3)
    assert [base64.b64decode(line["rawData"]) for line in lines] == [b"valid-1", b"valid-2"]
    assert {line["errorCode"] for line in lines} == {"Lambda.FunctionError"}
    assert {line["attemptsMade"] for line in lines} == {4}
    assert "RuntimeError: boom" in lines[0]["errorMessage"]
    assert staged(s3, "buffers/") == {}
    assert fh.stats.invocations == 4
    assert fh.stats.failed_invocations == 4
    assert fh.stats.failed_batches == 1


def test_processor_recovering_within_its_retries_delivers_the_batch(
    buckets: dict[str, str], s3: Any
) -> None:
    """A failed invocation is retried; a retry that succeeds delivers the batch, and nothing is an
    error.
    https://docs.aws.amazon.com/firehose/latest/dev/data-transformation-failure-handling.html
    """
    # GIVEN a processor that raises twice and then answers
    attempts: list[int] = []

    def flaky(event: dict[str, Any], context: Any) -> Any:
        attempts.append(1)
        if len(attempts) <= 2:
            raise TimeoutError("cold")
        return per_record(newline_ok)(event, context)

    fh = assembler(s3, flaky, FakeClock(), processor_retries=3)
    fh.put([b"r"])
    # WHEN flushed
    fh.flush()
    # THEN the third attempt's output is delivered and nothing is in errors/
    assert len(attempts) == 3
    assert list(staged(s3, "buffers/").values()) == [b"r\n"]
    assert staged(s3, "errors/") == {}


def _respond(build: Callable[[list[dict[str, Any]]], Any]) -> Recording:
    """A processor stand-in whose whole response is built from the event's records."""
    return Recording(lambda event, _context: build(event["records"]))


def _ok(record: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {"recordId": record["recordId"], "result": "Ok", "data": record["data"]} | changes


BROKEN_RESPONSES: list[tuple[str, Callable[[list[dict[str, Any]]], Any], str]] = [
    ("missing recordId", lambda rs: {"records": [_ok(rs[0])]}, "Lambda.MissingRecordId"),
    (
        "recordId replaced",
        lambda rs: {"records": [_ok(rs[0]), _ok(rs[1], recordId="other")]},
        "Lambda.MissingRecordId",
    ),
    (
        "duplicated recordId",
        lambda rs: {"records": [_ok(rs[0]), _ok(rs[1]), _ok(rs[1])]},
        "Lambda.DuplicatedRecordId",
    ),
    (
        "bad base64",
        lambda rs: {"records": [_ok(rs[0]), _ok(rs[1], data="not base64!")]},
        "Lambda.JsonProcessingException",
    ),
    (
        "data missing",
        lambda rs: {"records": [_ok(rs[0]), {"recordId": rs[1]["recordId"], "result": "Ok"}]},
        "Lambda.JsonProcessingException",
    ),
    (
        "unknown result",
        lambda rs: {"records": [_ok(rs[0]), _ok(rs[1], result="Retry")]},
        "Lambda.JsonProcessingException",
    ),
    ("no records list", lambda rs: {"batchItemFailures": []}, "Lambda.JsonProcessingException"),
    ("not an object", lambda rs: None, "Lambda.JsonProcessingException"),
    (
        "unserialisable",
        lambda rs: {"records": [_ok(r, data=b"bytes") for r in rs]},
        "Lambda.FunctionError",
    ),
    (
        "over 6 MB",
        lambda rs: {"records": [_ok(rs[0]), _ok(rs[1], data=_b64(b"x" * 4_500_000))]},
        "Lambda.ResponseSizeExceeded",
    ),
]


@pytest.mark.parametrize(
    ("build", "code"),
    [pytest.param(build, code, id=name) for name, build, code in BROKEN_RESPONSES],
)
def test_a_response_breaking_the_contract_fails_the_whole_batch(
    buckets: dict[str, str], s3: Any, build: Callable[[list[dict[str, Any]]], Any], code: str
) -> None:
    """Each returned record needs recordId (every input id, once), result Ok | Dropped |
    ProcessingFailed and base64 data, else it is a transformation failure, logged as
    Lambda.MissingRecordId / DuplicatedRecordId / JsonProcessingException; responses over 6 MB are
    not allowed (data-transformation.html). Failing the whole batch for any breach, and the codes
    Lambda.ResponseSizeExceeded and Lambda.FunctionError (unserialisable), are the stand-in's.
    https://docs.aws.amazon.com/firehose/latest/dev/data-transformation-status-model.html
    https://docs.aws.amazon.com/firehose/latest/dev/monitoring-with-cloudwatch-logs.html
    https://docs.aws.amazon.com/firehose/latest/dev/data-transformation.html
    """
    # GIVEN a processor whose response breaks Firehose's status model, and one retry
    processor = _respond(build)
    fh = assembler(s3, processor, FakeClock(), processor_retries=1)
    fh.put([b"first", b"second"])
    # WHEN the batch is processed
    fh.flush()
    # THEN the invocation was retried once, and both records are in errors/ with the code
    assert len(processor.calls) == 2
    lines = error_lines(s3)
    assert [base64.b64decode(line["rawData"]) for line in lines] == [b"first", b"second"]
    assert {line["errorCode"] for line in lines} == {code}
    assert {line["attemptsMade"] for line in lines} == {2}
    assert staged(s3, "buffers/") == {}


def test_record_ids_that_were_never_sent_are_ignored(buckets: dict[str, str], s3: Any) -> None:
    """Not documented by AWS: ignoring a returned recordId that was never sent is what Firehose was
    observed to do (docs/local-stack.md, `firehose/window_assembly.py`), so a stand-in decision.
    """
    # GIVEN a processor that answers every record and adds one it invented
    processor = _respond(lambda rs: {"records": [*map(_ok, rs), _ok(rs[0], recordId="invented")]})
    fh = assembler(s3, processor, FakeClock())
    fh.put([b"a", b"b"])
    # WHEN flushed
    fh.flush()
    # THEN the real records are delivered (as Firehose was seen to do) and nothing failed
    assert list(staged(s3, "buffers/").values()) == [b"ab"]
    assert staged(s3, "errors/") == {}


# -- prefixes at construction -----------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"buffers_prefix": "buffers/!{partitionKeyFromLambda:x}/"},
        {"buffers_prefix": "buffers/!{firehose:error-output-type}/"},
        {"errors_prefix": "errors/!{timestamp:yyyy-QQ}/"},
    ],
)
def test_a_bad_prefix_fails_at_construction(s3: Any, overrides: dict[str, str]) -> None:
    """Documented: Prefix can't contain !{firehose:error-output-type} (s3-prefixes.html, semantic
    rules). The stand-in's: rejecting partitionKeyFromLambda and Java letters outside its subset
    (QQ), which AWS accepts, and failing when the assembler is built.
    https://docs.aws.amazon.com/firehose/latest/dev/s3-prefixes.html
    """
    with pytest.raises(PrefixError):
        assembler(s3, None, FakeClock(), **overrides)


# -- S3 write failures ------------------------------------------------------------------------


class FlakyS3:
    """An S3 stand-in whose first `failures` PUTs fail as S3 would when unavailable."""

    def __init__(self, s3: Any, failures: int) -> None:
        self.s3 = s3
        self.failures = failures
        self.attempted: list[str] = []

    def put_object(self, *, Bucket: str, Key: str, Body: bytes) -> Any:  # boto3's names
        self.attempted.append(Key)
        if self.failures > 0:
            self.failures -= 1
            raise ClientError(
                {"Error": {"Code": "ServiceUnavailable", "Message": "down"}}, "PutObject"
            )
        return self.s3.put_object(Bucket=Bucket, Key=Key, Body=Body)


def test_a_failed_staging_write_is_retried_with_the_same_key(
    buckets: dict[str, str], s3: Any
) -> None:
    """When delivery to S3 fails, Firehose keeps retrying (for up to 24 hours) until it succeeds.
    Keeping the sealed object's key, so that a retry replaces rather than duplicates, is the
    stand-in's choice.
    https://docs.aws.amazon.com/firehose/latest/dev/retry.html
    """
    # GIVEN S3 failing the first write
    flaky = FlakyS3(s3, failures=1)
    fh = assembler(flaky, None, clock := FakeClock())
    fh.put([b"data"])
    clock.advance(60)
    # WHEN the object is due
    assert fh.tick() == []
    # THEN it is kept, and the next tick writes it under the key first tried
    assert fh.pending_objects == 1
    assert fh.next_due() == clock.now
    assert fh.tick() == [flaky.attempted[0]]
    assert flaky.attempted[0] == flaky.attempted[1]
    assert fh.stats.write_failures == 1
    assert fh.stats.objects_written == 1


def test_flush_raises_when_objects_cannot_be_written(buckets: dict[str, str], s3: Any) -> None:
    """The stand-in's shutdown contract (flush), with no AWS counterpart."""
    # GIVEN S3 failing every write
    fh = assembler(FlakyS3(s3, failures=99), None, FakeClock())
    fh.put([b"data"])
    # WHEN flushing at shutdown
    # THEN the error is raised rather than the object silently left behind
    with pytest.raises(ClientError):
        fh.flush()
    assert fh.pending_objects == 1


def test_next_due_is_the_earliest_interval_deadline(s3: Any) -> None:
    fh = assembler(s3, per_record(newline_ok), clock := FakeClock())
    assert fh.next_due() is None
    fh.put([b"x"])
    clock.advance(3)
    assert fh.next_due() == START + 10


# -- InProcessFirehose ------------------------------------------------------------------------


def facade(s3: Any, clock: FakeClock, processor: Handler | None = None) -> InProcessFirehose:
    return InProcessFirehose({STREAM: assembler(s3, processor, clock)})


@pytest.mark.parametrize(
    ("records", "code"),
    [
        pytest.param([{"Data": b"x"}] * 501, "ValidationException", id="501 records"),
        pytest.param([], "ValidationException", id="no records"),
        pytest.param(
            [{"Data": b"x" * (1_000 * 1024 + 1)}], "ValidationException", id="record over 1000 KiB"
        ),
        pytest.param(
            [{"Data": b"x" * 600_000}] * 7 + [{"Data": b"y"}],
            "InvalidArgumentException",
            id="over 4 MiB",
        ),
    ],
)
def test_put_record_batch_enforces_firehose_limits(
    buckets: dict[str, str], s3: Any, records: list[dict[str, Any]], code: str
) -> None:
    """PutRecordBatch takes 1 to 500 records of at most 1,000 KiB each (before base64) and at most
    4 MiB per call; nothing of a refused call is accepted. The codes (ValidationException for model
    constraints, InvalidArgumentException for the call size) are as seen from the real service.
    https://docs.aws.amazon.com/firehose/latest/APIReference/API_PutRecordBatch.html
    https://docs.aws.amazon.com/firehose/latest/dev/limits.html
    """
    # GIVEN a call outside PutRecordBatch's limits
    firehose = facade(s3, FakeClock())
    # WHEN it is made
    with pytest.raises(ClientError) as caught:
        firehose.put_record_batch(DeliveryStreamName=STREAM, Records=records)
    # THEN it fails with AWS's error code and nothing is accepted
    assert caught.value.response["Error"]["Code"] == code
    assert firehose.assemblers[STREAM].stats.records_in == 0


def test_limits_are_inclusive(buckets: dict[str, str], s3: Any) -> None:
    """The limits are maxima: 500 records, and four records of 1,000 KiB (4,096,000 bytes, within
    4 MiB), are accepted.
    https://docs.aws.amazon.com/firehose/latest/dev/limits.html
    """
    firehose = facade(s3, FakeClock())
    response = firehose.put_record_batch(
        DeliveryStreamName=STREAM, Records=[{"Data": b"x" * (1_000 * 1024)}] * 4
    )
    assert response["FailedPutCount"] == 0
    response = firehose.put_record_batch(DeliveryStreamName=STREAM, Records=[{"Data": b""}] * 500)
    assert response["FailedPutCount"] == 0


def test_unknown_stream_is_resource_not_found(buckets: dict[str, str], s3: Any) -> None:
    """A stream that does not exist: ResourceNotFoundException.
    https://docs.aws.amazon.com/firehose/latest/APIReference/API_PutRecordBatch.html
    """
    firehose = facade(s3, FakeClock())
    with pytest.raises(ClientError) as caught:
        firehose.put_record_batch(DeliveryStreamName="nope", Records=[{"Data": b"x"}])
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_put_record_batch_answers_like_aws(buckets: dict[str, str], s3: Any) -> None:
    """The response has FailedPutCount, Encrypted and RequestResponses, one entry per record in
    request order, each accepted one with a RecordId; accepted records are delivered.
    https://docs.aws.amazon.com/firehose/latest/APIReference/API_PutRecordBatch.html
    """
    firehose = facade(s3, FakeClock())
    response = firehose.put_record_batch(
        DeliveryStreamName=STREAM, Records=[{"Data": b"a"}, {"Data": "b"}]
    )
    assert response["FailedPutCount"] == 0
    assert response["Encrypted"] is False
    assert [set(entry) for entry in response["RequestResponses"]] == [{"RecordId"}, {"RecordId"}]
    firehose.flush()
    assert list(staged(s3, "buffers/").values()) == [b"ab"]


def test_throttled_calls_raise_and_accept_nothing(buckets: dict[str, str], s3: Any) -> None:
    """A call can fail as a whole with ServiceUnavailableException (back off and retry), accepting
    nothing. The message "Slow down." is as seen from the service; the switch is the stand-in's.
    https://docs.aws.amazon.com/firehose/latest/APIReference/API_PutRecordBatch.html
    """
    # GIVEN the stand-in set to throttle the next two calls
    firehose = facade(s3, FakeClock())
    firehose.throttle_next_calls = 2
    # WHEN three calls are made
    for _ in range(2):
        with pytest.raises(ClientError) as caught:
            firehose.put_record_batch(DeliveryStreamName=STREAM, Records=[{"Data": b"lost?"}])
        # THEN the first two fail as Firehose's throttling does
        assert caught.value.response["Error"] == {
            "Code": "ServiceUnavailableException",
            "Message": "Slow down.",
        }
    firehose.put_record_batch(DeliveryStreamName=STREAM, Records=[{"Data": b"kept"}])
    # ... and only the third call's record is assembled
    firehose.flush()
    assert list(staged(s3, "buffers/").values()) == [b"kept"]
    assert firehose.throttle_next_calls == 0


def test_failed_entries_are_reported_and_not_assembled(buckets: dict[str, str], s3: Any) -> None:
    """A successful call can have FailedPutCount > 0: entry i answers record i, and a failed one has
    ErrorCode (ServiceUnavailableException or InternalFailure) and ErrorMessage instead of RecordId.
    https://docs.aws.amazon.com/firehose/latest/APIReference/API_PutRecordBatch.html
    """
    # GIVEN the stand-in set to fail the next three entries
    firehose = facade(s3, FakeClock())
    firehose.fail_next_entries = 3
    # WHEN two calls of two records are made
    first = firehose.put_record_batch(
        DeliveryStreamName=STREAM, Records=[{"Data": b"f1"}, {"Data": b"f2"}]
    )
    second = firehose.put_record_batch(
        DeliveryStreamName=STREAM, Records=[{"Data": b"f3"}, {"Data": b"ok"}]
    )
    # THEN the responses say which entries failed, as AWS's do
    failed = {"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "Slow down."}
    assert first["FailedPutCount"] == 2
    assert first["RequestResponses"] == [failed, failed]
    assert second["FailedPutCount"] == 1
    assert second["RequestResponses"][0] == failed
    assert set(second["RequestResponses"][1]) == {"RecordId"}
    # ... and only the accepted entry is assembled
    firehose.flush()
    assert list(staged(s3, "buffers/").values()) == [b"ok"]


def test_put_record(buckets: dict[str, str], s3: Any) -> None:
    """PutRecord answers RecordId and Encrypted; with no per-entry answer, it fails as a whole
    (ServiceUnavailableException) and the record is not accepted.
    https://docs.aws.amazon.com/firehose/latest/APIReference/API_PutRecord.html
    """
    firehose = facade(s3, FakeClock())
    firehose.fail_next_entries = 1
    with pytest.raises(ClientError) as caught:
        firehose.put_record(DeliveryStreamName=STREAM, Record={"Data": b"no"})
    assert caught.value.response["Error"]["Code"] == "ServiceUnavailableException"
    response = firehose.put_record(DeliveryStreamName=STREAM, Record={"Data": b"yes"})
    assert set(response) >= {"RecordId", "Encrypted"}
    firehose.flush()
    assert list(staged(s3, "buffers/").values()) == [b"yes"]


def test_the_forwarders_sender_gets_everything_through_the_chaos(
    buckets: dict[str, str], s3: Any
) -> None:
    # GIVEN the forwarder's sender in front of a stand-in that throttles and fails entries
    firehose = facade(s3, FakeClock())
    firehose.throttle_next_calls = 1
    firehose.fail_next_entries = 4
    sender = FirehoseSender(
        firehose,
        RetryPolicy(
            max_attempts=5, budget_seconds=10, backoff_base_seconds=0.1, backoff_cap_seconds=1
        ),
        sleep=lambda _: None,
        clock=FakeClock(0),
        jitter=lambda: 0.0,
    )
    records = [OutgoingRecord(f"t{i}", STREAM, f"rec-{i};".encode()) for i in range(10)]
    # WHEN it sends ten records
    outcome = sender.send(records)
    # THEN all are sent, and each is assembled exactly once
    assert outcome.sent == {f"t{i}" for i in range(10)}
    assert outcome.failed == {}
    firehose.flush()
    (body,) = staged(s3, "buffers/").values()
    assert sorted(body.decode().split(";")[:-1]) == sorted(f"rec-{i}" for i in range(10))


# -- nothing lost ------------------------------------------------------------------------------


def test_every_accepted_record_lands_exactly_once(buckets: dict[str, str], s3: Any) -> None:
    # GIVEN a processor that fails records marked "fail" and crashes on batches holding "boom"
    def handler(event: dict[str, Any], context: Any) -> Any:
        if any(base64.b64decode(r["data"]).startswith(b"boom") for r in event["records"]):
            raise ValueError("poison batch")
        return per_record(by_content)(event, context)

    clock = FakeClock()
    firehose = InProcessFirehose(
        {
            name: assembler(s3, handler, clock, processor_buffer_bytes=200, processor_retries=1)
            for name in STREAMS
        }
    )
    firehose.fail_next_entries = 5
    accepted: list[bytes] = []
    # WHEN calls arrive over two minutes, with ticks between them, some entries refused
    for call in range(24):
        batch = [f"{kind}-{call}-{i}".encode() for i, kind in enumerate(["ok", "fail", "ok"])]
        if call == 7:
            batch.append(f"boom-{call}".encode())
        response = firehose.put_record_batch(
            DeliveryStreamName=STREAMS[call % 2], Records=[{"Data": data} for data in batch]
        )
        accepted += [
            data
            for data, entry in zip(batch, response["RequestResponses"], strict=True)
            if "RecordId" in entry
        ]
        clock.advance(5)
        firehose.tick()
    firehose.flush()
    # THEN every accepted record is in buffers/ (transformed) or errors/ (raw), exactly once
    delivered = [
        line.lower().encode()
        for body in staged(s3, "buffers/").values()
        for line in body.decode().splitlines()
    ]
    failed = [base64.b64decode(line["rawData"]) for line in error_lines(s3)]
    assert Counter(delivered + failed) == Counter(accepted)
    assert any(data.startswith(b"boom") for data in failed)
    assert any(data.startswith(b"ok") for data in failed)  # the poison batch's valid records
    stats = [a.stats for a in firehose.assemblers.values()]
    assert sum(s.records_in for s in stats) == len(accepted)
    assert sum(s.records_ok + s.records_failed for s in stats) == len(accepted)
