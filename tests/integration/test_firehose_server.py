"""The local Firehose server: Firehose's JSON API on a real loopback socket, through real boto3.

Each test starts a `FirehoseServer` on 127.0.0.1 around window assemblers that stage into moto's
in-process S3 (calls serialized: the server's ticker threads and the test both use it), and
talks to it with boto3 clients pointed at `server.endpoint` — or, like the forwarder, through
`AWS_ENDPOINT_URL_FIREHOSE`. What the window-assembly library does on its own (processor
contract, error records, key names) is tested in tests/unit/test_window_assembly.py; these tests
cover what the server adds: the wire protocol, AWS's error codes, quotas, the ticker that flushes
both buffers by size and by (scaled) interval, stopping, and thread safety.

No test asserts a duration: waits poll with generous deadlines, and intervals are scaled so that
an unscaled (or missing) flush could not meet them. Quota tests use tiny refill rates with a long
burst, so that "the bucket is empty" does not depend on how fast the machine is.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from infrastructure.local.firehose.server import FirehoseServer, Quotas
from infrastructure.local.firehose.window_assembly import WindowAssembler
from infrastructure.tunables import FirehoseTunables, load_tunables
from tests.conftest import REGION, STAGING, STREAMS
from tests.support import SerializedClient
from transform import clients
from transform.firehose_sender import FirehoseSender, OutgoingRecord, RetryPolicy

pytestmark = pytest.mark.slow

STREAM = STREAMS[0]
DEADLINE_SECONDS = 60.0
SLOW_DOWN = {"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "Slow down."}
PROCESSOR_ARN = "arn:aws:lambda:eu-west-2:123456789012:function:sluice-processor:live"
KEY = re.compile(
    rf"buffers/dt=\d{{4}}-\d{{2}}-\d{{2}}/hour=\d{{2}}/{STREAM}-1-\d{{4}}(-\d{{2}}){{5}}-"
    r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}\.json\.gz"
)


# ---------------------------------------------------------------- harness


class Processor:
    """A processor stand-in: every record Ok, data unchanged; remembers each batch it was given."""

    def __init__(self) -> None:
        self.batches: list[list[bytes]] = []
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any], _context: Any) -> dict[str, Any]:
        records = event["records"]
        with self._lock:
            self.batches.append([base64.b64decode(record["data"]) for record in records])
        return {
            "records": [
                {"recordId": record["recordId"], "result": "Ok", "data": record["data"]}
                for record in records
            ]
        }

    @property
    def records(self) -> list[bytes]:
        with self._lock:
            return [data for batch in self.batches for data in batch]


def tunables(**overrides: Any) -> FirehoseTunables:
    """The repository's Firehose tunables (real prefixes and extension) with quiet buffers:
    nothing is written by size or interval unless a test says so."""
    quiet: dict[str, Any] = {
        "processor_buffer_bytes": 1_000_000,
        "processor_buffer_seconds": 900,
        "processor_retries": 1,
        "destination_buffer_bytes": 10_000_000,
        "destination_buffer_seconds": 900,
    }
    return load_tunables().firehose._replace(**(quiet | overrides))


@pytest.fixture
def staging(buckets: dict[str, str], s3: Any) -> SerializedClient:
    """moto's S3, one call at a time: ticker threads write while the test reads."""
    return SerializedClient(s3)


Serve = Callable[..., FirehoseServer]


@pytest.fixture
def serve(staging: SerializedClient) -> Iterator[Serve]:
    """Start a server for STREAMS; every server started is stopped when the test ends."""
    servers: list[FirehoseServer] = []

    def start(
        *,
        processor: Processor | None = None,
        time_scale: float = 1.0,
        quotas: Quotas | None = None,
        **overrides: Any,
    ) -> FirehoseServer:
        assemblers = {
            name: WindowAssembler(
                stream_name=name,
                staging_bucket=STAGING,
                s3=staging,
                processor=processor,
                tunables=tunables(**overrides),
                processor_arn=PROCESSOR_ARN,
            )
            for name in STREAMS
        }
        server = FirehoseServer(assemblers, time_scale=time_scale, quotas=quotas or Quotas())
        servers.append(server.start())
        return server

    yield start
    for server in servers:
        server.stop(flush=False)


def firehose(server: FirehoseServer, *, retries: bool = False, **config: Any) -> Any:
    """A boto3 Firehose client for the server; without retries the first answer is raised."""
    retry = {"mode": "standard", "max_attempts": 3} if retries else {"total_max_attempts": 1}
    return boto3.client(
        "firehose",
        endpoint_url=server.endpoint,
        region_name=config.pop("region_name", REGION),
        config=Config(retries=retry, **config),
    )


def staged(s3: Any, prefix: str = "buffers/") -> dict[str, bytes]:
    """Every staged object under `prefix`, gunzipped."""
    listing = s3.list_objects_v2(Bucket=STAGING, Prefix=prefix).get("Contents", [])
    return {
        item["Key"]: gzip.decompress(s3.get_object(Bucket=STAGING, Key=item["Key"])["Body"].read())
        for item in listing
    }


def wait_for(condition: Callable[[], Any], what: str) -> Any:
    """Poll until `condition()` is truthy; fail (not hang) after a generous deadline."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not (result := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)
    return result


def error_of(caught: pytest.ExceptionInfo[ClientError]) -> tuple[str, str, int]:
    response = caught.value.response
    return (
        response["Error"]["Code"],
        response["Error"]["Message"],
        response["ResponseMetadata"]["HTTPStatusCode"],
    )


def records(*payloads: bytes) -> list[dict[str, bytes]]:
    return [{"Data": payload} for payload in payloads]


# ---------------------------------------------------------------- the API through boto3


def test_put_record_batch_and_put_record_round_trip_through_boto3(
    serve: Serve, staging: Any
) -> None:
    """PutRecordBatch answers one entry per record, in order, each with a RecordId;
    PutRecord answers a RecordId; what was accepted lands as one GZIP object named as
    Firehose names objects.
    https://docs.aws.amazon.com/firehose/latest/APIReference/API_PutRecordBatch.html
    https://docs.aws.amazon.com/firehose/latest/APIReference/API_PutRecord.html
    https://docs.aws.amazon.com/firehose/latest/dev/s3-object-name.html
    """
    # GIVEN a running server and a boto3 client pointed at it
    server = serve()
    client = firehose(server)
    # WHEN a batch of two records and a single record are put
    batch = client.put_record_batch(
        DeliveryStreamName=STREAM, Records=records(b"alpha\n", b"beta\n")
    )
    single = client.put_record(DeliveryStreamName=STREAM, Record={"Data": b"gamma\n"})
    # THEN boto3 parses AWS's response shapes
    assert batch["FailedPutCount"] == 0
    assert batch["Encrypted"] is False
    entries = batch["RequestResponses"]
    assert [set(entry) for entry in entries] == [{"RecordId"}, {"RecordId"}]
    assert single["Encrypted"] is False
    ids = [entry["RecordId"] for entry in entries] + [single["RecordId"]]
    assert len(set(ids)) == 3
    # ... and after stop, the records are one GZIP object under the data prefix, as AWS names it
    server.stop()
    ((key, body),) = staged(staging).items()
    assert KEY.fullmatch(key), key
    assert body == b"alpha\nbeta\ngamma\n"


def test_the_forwarders_client_reaches_it_through_aws_endpoint_url_firehose(
    serve: Serve, staging: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The local stack points the functions' unchanged boto3 client at the server with boto3's
    service-specific endpoint variable.
    https://docs.aws.amazon.com/sdkref/latest/guide/feature-ss-endpoints.html
    """
    # GIVEN the functions' Firehose client, configured only through the environment
    server = serve()
    monkeypatch.setenv("AWS_ENDPOINT_URL_FIREHOSE", server.endpoint)
    clients.reset()
    # WHEN it puts a record
    response = clients.firehose().put_record_batch(
        DeliveryStreamName=STREAM, Records=[{"Data": b"via-env\n"}]
    )
    # THEN the local server accepted it
    assert response["FailedPutCount"] == 0
    server.stop()
    assert list(staged(staging).values()) == [b"via-env\n"]


def test_describe_delivery_stream_reports_the_configuration(serve: Serve) -> None:
    """DescribeDeliveryStream describes a Direct PUT stream to extended S3: GZIP, the prefixes,
    the configured buffering hints and the Lambda processor with its parameters.
    https://docs.aws.amazon.com/firehose/latest/APIReference/API_DescribeDeliveryStream.html
    https://docs.aws.amazon.com/firehose/latest/APIReference/API_ProcessorParameter.html
    """
    # GIVEN a server with a processor, running ten times faster than real time
    hints: dict[str, Any] = {
        "processor_buffer_bytes": 1024 * 1024,
        "processor_buffer_seconds": 10,
        "processor_retries": 3,
        "destination_buffer_bytes": 64 * 1024 * 1024,
        "destination_buffer_seconds": 60,
    }
    configured = tunables(**hints)
    server = serve(processor=Processor(), time_scale=10, **hints)
    # WHEN a stream is described
    description = firehose(server).describe_delivery_stream(DeliveryStreamName=STREAM)[
        "DeliveryStreamDescription"
    ]
    # THEN boto3 parses a description of the stream as configured (intervals unscaled)
    assert description["DeliveryStreamName"] == STREAM
    assert description["DeliveryStreamARN"] == (
        f"arn:aws:firehose:{REGION}:123456789012:deliverystream/{STREAM}"
    )
    assert description["DeliveryStreamStatus"] == "ACTIVE"
    assert description["DeliveryStreamType"] == "DirectPut"
    assert description["VersionId"] == "1"
    assert description["CreateTimestamp"].year >= 2025
    assert description["HasMoreDestinations"] is False
    (destination,) = description["Destinations"]
    s3 = destination["ExtendedS3DestinationDescription"]
    assert s3["BucketARN"] == f"arn:aws:s3:::{STAGING}"
    assert s3["CompressionFormat"] == "GZIP"
    assert s3["Prefix"] == configured.buffers_prefix
    assert s3["ErrorOutputPrefix"] == configured.errors_prefix
    assert s3["FileExtension"] == configured.file_extension
    assert s3["BufferingHints"] == {"SizeInMBs": 64, "IntervalInSeconds": 60}
    processing = s3["ProcessingConfiguration"]
    assert processing["Enabled"] is True
    (lambda_,) = processing["Processors"]
    assert lambda_["Type"] == "Lambda"
    assert {p["ParameterName"]: p["ParameterValue"] for p in lambda_["Parameters"]} == {
        "LambdaArn": PROCESSOR_ARN,
        "NumberOfRetries": "3",
        "BufferSizeInMBs": "1",
        "BufferIntervalInSeconds": "10",
    }


@pytest.mark.parametrize(
    ("call", "code"),
    [
        pytest.param(
            lambda c: c.put_record_batch(DeliveryStreamName=STREAM, Records=records(b"x") * 501),
            "ValidationException",
            id="501 records",
        ),
        pytest.param(
            lambda c: c.put_record_batch(
                DeliveryStreamName=STREAM, Records=records(b"x" * (1_000 * 1024 + 1))
            ),
            "ValidationException",
            id="record over 1,000 KiB",
        ),
        pytest.param(
            lambda c: c.put_record_batch(
                DeliveryStreamName=STREAM, Records=records(b"x" * 600_000) * 7 + records(b"y")
            ),
            "InvalidArgumentException",
            id="call over 4 MiB",
        ),
        pytest.param(
            lambda c: c.put_record(
                DeliveryStreamName=STREAM, Record={"Data": b"x" * (1_000 * 1024 + 1)}
            ),
            "ValidationException",
            id="PutRecord over 1,000 KiB",
        ),
        pytest.param(
            lambda c: c.put_record_batch(DeliveryStreamName="no spaces!", Records=records(b"x")),
            "ValidationException",
            id="stream name pattern",
        ),
    ],
)
def test_calls_outside_firehoses_limits_fail_with_its_codes(
    serve: Serve, call: Callable[[Any], Any], code: str
) -> None:
    """Limits of PutRecordBatch/PutRecord (500 records, 1,000 KiB a record, 4 MiB a call, the
    stream-name pattern): ValidationException for model constraints, InvalidArgumentException
    for the call size; nothing is accepted.
    https://docs.aws.amazon.com/firehose/latest/APIReference/API_PutRecordBatch.html
    https://docs.aws.amazon.com/firehose/latest/dev/limits.html
    """
    # GIVEN a running server
    server = serve()
    # WHEN a call breaks a limit
    with pytest.raises(ClientError) as caught:
        call(firehose(server))
    # THEN boto3 raises AWS's code, and no record entered a buffer
    assert error_of(caught)[0] == code
    assert error_of(caught)[2] == 400
    assert all(a.stats.records_in == 0 for a in server.assemblers.values())


def test_an_unknown_stream_is_resource_not_found(serve: Serve) -> None:
    """A stream that does not exist: ResourceNotFoundException, for puts and for describe.
    https://docs.aws.amazon.com/firehose/latest/APIReference/API_PutRecordBatch.html
    https://docs.aws.amazon.com/firehose/latest/APIReference/API_DescribeDeliveryStream.html
    """
    # GIVEN a running server
    client = firehose(serve())
    # WHEN a stream it does not have is named, THEN each call fails as AWS's does
    for call in (
        lambda: client.put_record_batch(DeliveryStreamName="nope", Records=records(b"x")),
        lambda: client.put_record(DeliveryStreamName="nope", Record={"Data": b"x"}),
        lambda: client.describe_delivery_stream(DeliveryStreamName="nope"),
    ):
        with pytest.raises(ClientError) as caught:
            call()
        assert error_of(caught) == (
            "ResourceNotFoundException",
            "Firehose nope under account 123456789012 not found.",
            400,
        )


def test_other_operations_are_unknown(serve: Serve) -> None:
    """Only the operations Sluice calls are served; others are refused as an unknown target.
    https://docs.aws.amazon.com/firehose/latest/APIReference/CommonErrors.html
    """
    # GIVEN a running server, WHEN an operation it does not serve is called
    with pytest.raises(ClientError) as caught:
        firehose(serve()).list_delivery_streams()
    # THEN boto3 raises UnknownOperationException
    assert error_of(caught)[0] == "UnknownOperationException"


def test_requests_must_be_sigv4_signed_for_firehose_in_the_streams_region(serve: Serve) -> None:
    """AWS refuses unsigned requests and credentials scoped to another service or region;
    the stand-in checks the scope but not the signature, and accepts any key.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-troubleshooting.html
    """
    # GIVEN a running server
    server = serve()
    cases = [
        (firehose(server, signature_version=UNSIGNED), "MissingAuthenticationTokenException"),
        (firehose(server, region_name="us-east-1"), "InvalidSignatureException"),
    ]
    # WHEN an unsigned client and a client of another region put, THEN AWS's codes come back
    for client, code in cases:
        with pytest.raises(ClientError) as caught:
            client.put_record_batch(DeliveryStreamName=STREAM, Records=records(b"x"))
        assert error_of(caught)[0] == code
    # ... while a client signing for firehose in the streams' region, with any key, gets in
    anyone = boto3.client(
        "firehose",
        endpoint_url=server.endpoint,
        region_name=REGION,
        aws_access_key_id="AKIDANYONE",
        aws_secret_access_key="any-secret",  # not verified: any key is accepted
    )
    assert (
        anyone.put_record_batch(DeliveryStreamName=STREAM, Records=records(b"x"))["FailedPutCount"]
        == 0
    )


def raw_post(server: FirehoseServer, headers: dict[str, str], body: bytes) -> tuple[int, Any, Any]:
    """POST / with exactly these headers: (status, parsed body, x-amzn-ErrorType)."""
    address = urlsplit(server.endpoint)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=10)
    try:
        connection.request("POST", "/", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read()), response.getheader("x-amzn-ErrorType")
    finally:
        connection.close()


def signed(service: str = "firehose", region: str = REGION) -> str:
    return (
        f"AWS4-HMAC-SHA256 Credential=AKID/20260101/{region}/{service}/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-target, Signature=00"
    )


@pytest.mark.parametrize(
    ("authorization", "target", "body", "code"),
    [
        (None, "PutRecordBatch", b"{}", "MissingAuthenticationTokenException"),
        (signed(service="s3"), "PutRecordBatch", b"{}", "InvalidSignatureException"),
        ("Bearer token", "PutRecordBatch", b"{}", "IncompleteSignatureException"),
        (signed(), "CreateDeliveryStream", b"{}", "UnknownOperationException"),
        (signed(), "PutRecordBatch", b"{not json", "SerializationException"),
        (
            signed(),
            "PutRecordBatch",
            json.dumps(
                {"DeliveryStreamName": STREAM, "Records": [{"Data": "not base64!"}]}
            ).encode(),
            "SerializationException",
        ),
        (signed(), "PutRecordBatch", json.dumps({"Records": []}).encode(), "ValidationException"),
        (
            signed(),
            "PutRecordBatch",
            json.dumps({"DeliveryStreamName": STREAM, "Records": []}).encode(),
            "ValidationException",
        ),
    ],
    ids=[
        "unsigned",
        "scoped to s3",
        "not SigV4",
        "unknown target",
        "not JSON",
        "Data not base64",
        "no stream name",
        "no records",
    ],
)
def test_malformed_requests_get_aws_json_errors(
    serve: Serve, authorization: str | None, target: str, body: bytes, code: str
) -> None:
    """Requests boto3 would not send still get JSON 1.1 errors: HTTP 400,
    `{"__type": code, "message": ...}` and the `x-amzn-ErrorType` header.
    https://smithy.io/2.0/aws/protocols/aws-json-1_1-protocol.html
    https://docs.aws.amazon.com/firehose/latest/APIReference/CommonErrors.html
    """
    # GIVEN a running server
    server = serve()
    headers = {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": f"Firehose_20150804.{target}",
    }
    if authorization is not None:
        headers["Authorization"] = authorization
    # WHEN the request is posted
    status, answer, error_type = raw_post(server, headers, body)
    # THEN the answer is an AWS JSON error with the code botocore would parse
    assert status == 400
    assert answer["__type"] == code
    assert answer["message"]
    assert error_type == code


# ---------------------------------------------------------------- quotas


@pytest.mark.parametrize("time_scale", [1, 1000])
def test_calls_over_the_request_quota_fail_whole_and_accept_nothing(
    serve: Serve, staging: Any, time_scale: float
) -> None:
    """Direct PUT requests/second quota, per stream, PutRecord and PutRecordBatch combined: a call
    over it fails with ServiceUnavailableException (HTTP 500) and accepts nothing; other streams
    are unaffected; scaled time does not refill quotas faster.
    https://docs.aws.amazon.com/firehose/latest/dev/limits.html
    https://docs.aws.amazon.com/firehose/latest/APIReference/API_PutRecordBatch.html
    """
    # GIVEN streams allowed two requests, refilled one per 100 s (however fast time runs)
    server = serve(
        time_scale=time_scale, quotas=Quotas(requests_per_second=0.01, burst_seconds=200)
    )
    client = firehose(server)
    # WHEN three calls are made to one stream
    client.put_record_batch(DeliveryStreamName=STREAM, Records=records(b"one\n"))
    client.put_record(DeliveryStreamName=STREAM, Record={"Data": b"two\n"})
    with pytest.raises(ClientError) as caught:
        client.put_record_batch(DeliveryStreamName=STREAM, Records=records(b"three\n"))
    # THEN the third fails whole, as AWS throttles (botocore would retry this 500 itself)
    assert error_of(caught) == ("ServiceUnavailableException", "Slow down.", 500)
    # ... while the other stream still has its own quota
    other = client.put_record_batch(DeliveryStreamName=STREAMS[1], Records=records(b"other\n"))
    assert other["FailedPutCount"] == 0
    # ... and nothing of the refused call was accepted
    server.stop()
    assert sorted(staged(staging).values()) == [b"one\ntwo\n", b"other\n"]
    assert server.stats()[STREAM]["throttled_calls"] == 1


def test_records_over_the_byte_quota_fail_one_by_one(serve: Serve, staging: Any) -> None:
    """Direct PUT MiB/second quota: records beyond it get per-record ServiceUnavailableException
    "Slow down." entries counted in FailedPutCount (what Firehose answers when throughput is
    exceeded, boto/boto3#2804); "a single record failure does not stop the processing of
    subsequent records", so a later, smaller record that still fits is accepted.
    https://docs.aws.amazon.com/firehose/latest/dev/limits.html
    https://docs.aws.amazon.com/firehose/latest/APIReference/API_PutRecordBatch.html
    """
    # GIVEN a stream allowed 1,000 bytes, refilled at 1 byte/s
    server = serve(quotas=Quotas(bytes_per_second=1, burst_seconds=1000))
    # WHEN nine records of 100 bytes, one of 200, one of 100 and one of 50 are put in one call
    payloads = [bytes([65 + i]) * 100 for i in range(9)] + [b"L" * 200, b"M" * 100, b"S" * 50]
    response = firehose(server).put_record_batch(
        DeliveryStreamName=STREAM, Records=records(*payloads)
    )
    # THEN the 200-byte and the 50-byte records are refused, the 100-byte one between accepted
    entries = response["RequestResponses"]
    assert response["FailedPutCount"] == 2
    assert [i for i, entry in enumerate(entries) if entry == SLOW_DOWN] == [9, 11]
    assert all(set(entry) == {"RecordId"} for i, entry in enumerate(entries) if i not in (9, 11))
    # ... and exactly the accepted records are delivered, in order
    server.stop()
    assert list(staged(staging).values()) == [b"".join(payloads[:9]) + payloads[10]]


def test_records_over_the_record_quota_fail_and_put_record_fails_whole(
    serve: Serve, staging: Any
) -> None:
    """Direct PUT records/second quota: entries beyond it fail with FailedPutCount; PutRecord,
    which has no per-entry answer, raises ServiceUnavailableException.
    https://docs.aws.amazon.com/firehose/latest/dev/limits.html
    https://docs.aws.amazon.com/firehose/latest/APIReference/API_PutRecord.html
    """
    # GIVEN a stream allowed five records, refilled one per 100 s
    server = serve(quotas=Quotas(records_per_second=0.01, burst_seconds=500))
    client = firehose(server)
    # WHEN eight records are put in one call, then one more on its own
    response = client.put_record_batch(
        DeliveryStreamName=STREAM, Records=records(*(f"r{i};".encode() for i in range(8)))
    )
    with pytest.raises(ClientError) as caught:
        client.put_record(DeliveryStreamName=STREAM, Record={"Data": b"late;"})
    # THEN the last three entries of the batch failed, and the single put failed whole
    assert response["FailedPutCount"] == 3
    assert response["RequestResponses"][5:] == [SLOW_DOWN] * 3
    assert error_of(caught) == ("ServiceUnavailableException", "Slow down.", 500)
    server.stop()
    assert list(staged(staging).values()) == [b"r0;r1;r2;r3;r4;"]


def test_describe_has_its_own_per_account_rate_limit(serve: Serve) -> None:
    """DescribeDeliveryStream: a hard limit of five calls per second, answered with
    LimitExceededException (here with a tiny rate so that the test does not race the clock).
    https://docs.aws.amazon.com/firehose/latest/dev/limits.html
    """
    # GIVEN an account allowed three describes, refilled one per 100 s
    server = serve(quotas=Quotas(describe_per_second=0.01, burst_seconds=300))
    client = firehose(server)
    # WHEN four describes are made, across both streams
    for name in (STREAMS[0], STREAMS[1], STREAMS[0]):
        client.describe_delivery_stream(DeliveryStreamName=name)
    with pytest.raises(ClientError) as caught:
        client.describe_delivery_stream(DeliveryStreamName=STREAMS[1])
    # THEN the fourth is refused, whichever stream it names
    assert error_of(caught)[0] == "LimitExceededException"
    # ... and puts, which have their own quotas, still go through
    assert client.put_record(DeliveryStreamName=STREAM, Record={"Data": b"x"})["RecordId"]


def test_chaos_switches_throttle_calls_and_entries(serve: Serve, staging: Any) -> None:
    """The throttling switches of DESIGN §6 answer as AWS's throttling does: whole calls with
    ServiceUnavailableException, entries with "Slow down."; nothing refused is delivered.
    https://docs.aws.amazon.com/firehose/latest/APIReference/API_PutRecordBatch.html
    """
    # GIVEN a running server
    server = serve()
    client = firehose(server)
    # WHEN the next call is throttled, THEN it fails whole
    server.throttle_next_calls = 1
    with pytest.raises(ClientError) as caught:
        client.put_record_batch(DeliveryStreamName=STREAM, Records=records(b"lost;"))
    assert error_of(caught)[0] == "ServiceUnavailableException"
    # WHEN the next two entries are failed, THEN the first two of the next call fail
    server.fail_next_entries = 2
    response = client.put_record_batch(
        DeliveryStreamName=STREAM, Records=records(b"f1;", b"f2;", b"kept1;")
    )
    assert response["FailedPutCount"] == 2
    assert response["RequestResponses"][:2] == [SLOW_DOWN] * 2
    # WHEN every record is refused for a while, THEN all entries fail; and afterwards none
    server.throttle_for(100, 600)
    response = client.put_record_batch(DeliveryStreamName=STREAM, Records=records(b"t1;", b"t2;"))
    assert response["RequestResponses"] == [SLOW_DOWN] * 2
    server.throttle_for(0, 0)
    response = client.put_record_batch(DeliveryStreamName=STREAM, Records=records(b"kept2;"))
    assert response["FailedPutCount"] == 0
    # ... and only the accepted records are delivered
    server.stop()
    assert list(staged(staging).values()) == [b"kept1;kept2;"]


def test_the_forwarders_sender_gets_every_record_through_throttling(
    serve: Serve, staging: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The forwarder's FirehoseSender, with the functions' boto3 client, against a stream whose
    record quota is much smaller than what it sends: per-record throttling, a throttled call
    and failed entries are retried (only what failed) until every record is in, exactly once.
    https://docs.aws.amazon.com/firehose/latest/APIReference/API_PutRecordBatch.html
    https://docs.aws.amazon.com/firehose/latest/dev/limits.html
    """
    # GIVEN streams taking 20 records per second each, and chaos on top
    server = serve(quotas=Quotas(records_per_second=20))
    server.throttle_next_calls = 1
    server.fail_next_entries = 3
    monkeypatch.setenv("AWS_ENDPOINT_URL_FIREHOSE", server.endpoint)
    clients.reset()
    sender = FirehoseSender(
        clients.firehose(),
        RetryPolicy(
            max_attempts=100, budget_seconds=120, backoff_base_seconds=0.05, backoff_cap_seconds=0.3
        ),
    )
    outgoing = [OutgoingRecord(f"t{i}", STREAMS[i % 2], f"rec-{i};".encode()) for i in range(120)]
    # WHEN it sends 120 records, 60 to each stream
    outcome = sender.send(outgoing)
    # THEN all were sent, after retries the quota forced
    assert outcome.failed == {}
    assert outcome.sent == {record.token for record in outgoing}
    assert outcome.calls > 2
    assert sum(stream["records_throttled"] for stream in server.stats().values()) >= 40 + 3
    # ... and each record was delivered exactly once
    server.stop()
    delivered = Counter(
        item for body in staged(staging).values() for item in body.decode().split(";")[:-1]
    )
    assert delivered == Counter(f"rec-{i}" for i in range(120))


# ---------------------------------------------------------------- buffers


def test_both_buffers_are_flushed_by_their_scaled_intervals(serve: Serve, staging: Any) -> None:
    """Records wait in the processor buffer until its interval from the oldest record, then the
    processor's output waits in the destination buffer until that buffer's interval; neither
    needs a call to move on. At time_scale 200, 600 s intervals take 3 real seconds each
    (unscaled, the deadline could not be met).
    https://docs.aws.amazon.com/firehose/latest/dev/data-transformation.html
    https://docs.aws.amazon.com/firehose/latest/dev/basic-deliver.html
    """
    # GIVEN a processor, both intervals 600 s (3 s real), and size hints never reached
    processor = Processor()
    server = serve(
        processor=processor,
        time_scale=200,
        processor_buffer_seconds=600,
        destination_buffer_seconds=600,
    )
    # WHEN one record is put, and nothing else is done
    firehose(server).put_record(DeliveryStreamName=STREAM, Record={"Data": b"waits\n"})
    # THEN the processor is invoked once the processor buffer's interval is up
    wait_for(lambda: processor.records, "the processor buffer's interval")
    assert processor.records == [b"waits\n"]
    # ... its output then waits in the destination buffer
    assert staged(staging) == {}
    # ... and is written once the destination buffer's interval is up
    objects = wait_for(lambda: staged(staging), "the destination buffer's interval")
    assert list(objects.values()) == [b"waits\n"]


def test_a_new_time_scale_applies_to_the_buffers_under_way(serve: Serve, staging: Any) -> None:
    """`set_time_scale` rescales both intervals of a running server, buffers already filling
    included: a gameday builds a backlog at one scale and drains it at another."""
    # GIVEN a server in real time, both intervals 900 s, and a record in its buffers
    server = serve(
        processor=Processor(), processor_buffer_seconds=900, destination_buffer_seconds=900
    )
    firehose(server).put_record(DeliveryStreamName=STREAM, Record={"Data": b"sped up\n"})
    # WHEN time is made to run 1,000 times faster (900 s become 0.9 s)
    server.set_time_scale(1000)
    # THEN the record is staged long before the first deadline (900 real seconds) would pass
    objects = wait_for(lambda: staged(staging), "the rescaled intervals")
    assert list(objects.values()) == [b"sped up\n"]
    # ... and a scale that is not positive is refused
    with pytest.raises(ValueError, match="time_scale must be positive, not 0"):
        server.set_time_scale(0)


def test_both_buffers_are_flushed_by_their_size_hints(serve: Serve, staging: Any) -> None:
    """The processor is invoked when its buffer reaches its size hint, and an object is written
    when the destination buffer reaches its own, long before either interval (900 s here).
    https://docs.aws.amazon.com/firehose/latest/dev/data-transformation.html
    https://docs.aws.amazon.com/firehose/latest/dev/basic-deliver.html
    """
    # GIVEN a processor buffer of 1,000 bytes and a destination buffer of 2,000
    processor = Processor()
    server = serve(
        processor=processor, processor_buffer_bytes=1_000, destination_buffer_bytes=2_000
    )
    client = firehose(server)
    first = [bytes([65 + i]) * 100 for i in range(10)]
    second = [bytes([97 + i]) * 100 for i in range(10)]
    # WHEN 1,000 bytes are put
    client.put_record_batch(DeliveryStreamName=STREAM, Records=records(*first))
    # THEN the processor is invoked with them, and nothing is written yet (1,000 < 2,000)
    wait_for(lambda: processor.batches, "the processor buffer's size hint")
    assert processor.batches == [first]
    assert staged(staging) == {}
    # WHEN 1,000 bytes more are put
    client.put_record_batch(DeliveryStreamName=STREAM, Records=records(*second))
    # THEN the destination buffer reaches 2,000 bytes and becomes one object
    objects = wait_for(lambda: staged(staging), "the destination buffer's size hint")
    assert list(objects.values()) == [b"".join(first + second)]
    assert processor.batches == [first, second]


def test_stop_writes_what_is_buffered_and_only_when_asked(serve: Serve, staging: Any) -> None:
    """Shutting the local stack down must not lose accepted records: `stop()` writes both buffers
    (through the processor); `stop(flush=False)` leaves them in the assemblers.
    https://docs.aws.amazon.com/firehose/latest/dev/basic-deliver.html
    """
    # GIVEN two servers holding records in their buffers (intervals and sizes never reached)
    flushed = serve(processor=Processor())
    kept = serve(processor=Processor())
    for server, payload in ((flushed, b"flushed\n"), (kept, b"kept\n")):
        firehose(server).put_record(DeliveryStreamName=STREAM, Record={"Data": payload})
    # WHEN one is stopped without flushing and the other with
    kept.stop(flush=False)
    flushed.stop()
    # THEN only the flushed server's record is written, and the other's is still buffered
    assert list(staged(staging).values()) == [b"flushed\n"]
    assert kept.assemblers[STREAM].buffered_records == 1


def test_nothing_is_lost_under_concurrent_puts_and_flushes(serve: Serve, staging: Any) -> None:
    """Every accepted record is written once, while eight clients put concurrently to both streams
    and the ticker writes objects by size in parallel.
    https://docs.aws.amazon.com/firehose/latest/APIReference/API_PutRecordBatch.html
    """
    # GIVEN a small destination buffer, so that objects are written while puts go on
    server = serve(destination_buffer_bytes=5_000)
    accepted: list[bytes] = []
    lock = threading.Lock()
    errors: list[Exception] = []

    def producer(worker: int) -> None:
        try:
            client = firehose(server, retries=True)
            for call in range(25):
                batch = [f"w{worker}-c{call}-r{i}\n".encode() for i in range(20)]
                response = client.put_record_batch(
                    DeliveryStreamName=STREAMS[call % 2], Records=records(*batch)
                )
                assert response["FailedPutCount"] == 0
                with lock:
                    accepted.extend(batch)
        except Exception as err:  # noqa: BLE001  # reported in the test's thread
            errors.append(err)

    # WHEN 8 clients put 25 calls of 20 records each
    threads = [threading.Thread(target=producer, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    # THEN objects were written by size while the server ran
    wait_for(lambda: staged(staging), "objects written by size while running")
    server.stop()
    # ... and after stop the 4,000 records are in buffers/, each exactly once
    objects = staged(staging)
    lines = [line for body in objects.values() for line in body.splitlines(keepends=True)]
    assert len(accepted) == 4_000
    assert Counter(lines) == Counter(accepted)
    assert len(objects) > 2


def test_stop_leaves_no_thread_and_no_listener(serve: Serve) -> None:
    """`stop` ends the HTTP server, the connection threads (including idle keep-alive
    connections a client still holds) and the tickers, and closes the port."""
    # GIVEN a server with two clients holding keep-alive connections
    before = set(threading.enumerate())
    server = serve()
    port = urlsplit(server.endpoint).port
    held = [firehose(server), firehose(server)]
    for client in held:
        client.put_record(DeliveryStreamName=STREAM, Record={"Data": b"x"})
    assert set(threading.enumerate()) - before
    # WHEN it stops
    server.stop()
    # THEN every thread it started has ended, and nothing listens on its port
    assert set(threading.enumerate()) - before == set()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port or 0)):
        pass
