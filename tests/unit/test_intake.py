"""The HTTPS intake's handler (transform/intake) on moto in process: what a producer's request
lands, what it is answered, and what it is refused. Events are API Gateway HTTP API payload
format 2.0 (tests/events/apigw_v2_post_file.json); over real HTTP the local stack serves them."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters

from delivery.ledger import Ledger, PartRecord
from infrastructure import environment
from infrastructure.local.provision.resources import create_ledger_table
from infrastructure.tunables import TUNABLES_FILE, load_tunables
from tests.conftest import LANDING, LEDGER_TABLE, REGION, load_event
from tests.support import SerializedClient
from transform import clients
from transform.envelope import file_id
from transform.intake import handler, producers, requests
from transform.intake.health import PROBE_KEY

IDEMPOTENCY_TABLE = "sluice-idempotency-test"
PRODUCERS_SECRET = "sluice/test/producers"
ACME_KEY = "sk_acme_" + "a" * 43
GLOBEX_KEY = "sk_globex_" + "g" * 43


@dataclass
class Context:
    """What Powertools reads of a Lambda context."""

    function_name: str = "intake"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:eu-west-2:123456789012:function:intake:live"
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e812345678"

    def get_remaining_time_in_millis(self) -> int:
        return 20_000


@pytest.fixture
def tunables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Override intake tunables (and add payload rules) for one test."""

    def apply(rules: list[dict[str, str]] | None = None, **intake: Any) -> None:
        document = json.loads(TUNABLES_FILE.read_text())
        document["intake"].update(intake)
        document["processor"]["payload_schemas"] += rules or []
        path = tmp_path / "tunables.json"
        path.write_text(json.dumps(document))
        monkeypatch.setenv(environment.TUNABLES_PATH, str(path))
        load_tunables.cache_clear()
        handler.dependencies.cache_clear()

    return apply


@pytest.fixture
def intake(aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A versioned landing bucket, the idempotency table and the producers secret (acme, globex)."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=LANDING, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_versioning(Bucket=LANDING, VersioningConfiguration={"Status": "Enabled"})
    boto3.client("dynamodb", region_name=REGION).create_table(
        TableName=IDEMPOTENCY_TABLE,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    create_ledger_table(boto3.client("dynamodb", region_name=REGION), LEDGER_TABLE)
    secret = None
    for name, key in (("acme", ACME_KEY), ("globex", GLOBEX_KEY)):
        secret = producers.with_key(secret, name, producers.key_sha256(key))
    boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name=PRODUCERS_SECRET, SecretString=secret or ""
    )
    monkeypatch.setenv(environment.LANDING_BUCKET, LANDING)
    monkeypatch.setenv(environment.IDEMPOTENCY_TABLE, IDEMPOTENCY_TABLE)
    monkeypatch.setenv(environment.PRODUCERS_SECRET, PRODUCERS_SECRET)
    monkeypatch.setenv(environment.LEDGER_TABLE, LEDGER_TABLE)
    # DynamoDB's one-call-at-a-time guarantee (a conditional write is atomic), which moto in
    # process lacks: requests racing on one Idempotency-Key must meet DynamoDB, not moto's gaps.
    serialized = SerializedClient(boto3.client("dynamodb", region_name=REGION))
    monkeypatch.setattr(clients, "dynamodb", lambda: serialized)
    parameters.clear_caches()
    handler.dependencies.cache_clear()
    yield s3
    handler.dependencies.cache_clear()
    parameters.clear_caches()


def request(
    route: str = "POST /v1/files/{name+}",
    *,
    name: str | None = "reports/daily.json",
    body: bytes = b'{"report": "daily"}\n',
    key: str | None = ACME_KEY,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
    binary: bool = False,
    request_id: str = "JKJaXmPLvHcESHA=",
) -> dict[str, Any]:
    """The fixture event, changed into the request described."""
    event = copy.deepcopy(load_event("apigw_v2_post_file.json"))
    event["routeKey"] = event["requestContext"]["routeKey"] = route
    method, _, path = route.partition(" ")
    event["requestContext"]["http"]["method"] = method
    event["requestContext"]["requestId"] = request_id
    if name is not None and "{name+}" in path:
        event["pathParameters"] = {"name": name}
        event["rawPath"] = path.replace("{name+}", name)
    else:
        event.pop("pathParameters", None)
        event["rawPath"] = path
    event["headers"] = {"content-type": content_type, **(headers or {})}
    if key is not None:
        event["headers"]["authorization"] = f"Bearer {key}"
    event["isBase64Encoded"] = binary
    event["body"] = base64.b64encode(body).decode() if binary else body.decode()
    return event


def call(event: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    response = handler.lambda_handler(event, Context())
    return response["statusCode"], response["headers"], json.loads(response["body"])


def versions(s3: Any, prefix: str = "") -> list[dict[str, Any]]:
    return s3.list_object_versions(Bucket=LANDING, Prefix=prefix).get("Versions", [])


def test_a_file_lands_under_the_producers_prefix_and_the_answer_follows_it(intake: Any) -> None:
    # GIVEN a binary file posted by acme
    body = bytes(range(256)) * 4
    # WHEN it is posted
    status, headers, answer = call(
        request(name="reports/2026/pixel.png", body=body, binary=True, content_type="image/png")
    )
    # THEN it lands byte for byte under acme/api/files/<today>/, and the answer says where
    assert status == 201
    key = answer["key"]
    assert key.startswith("acme/api/files/")
    assert key.endswith("/reports/2026/pixel.png")
    stored = intake.get_object(Bucket=LANDING, Key=key, VersionId=answer["version_id"])
    assert stored["Body"].read() == body
    assert stored["ContentType"] == "image/png"
    assert answer == {
        "file_id": file_id(LANDING, key, answer["version_id"]),
        "bucket": LANDING,
        "key": key,
        "version_id": answer["version_id"],
        "sha256": hashlib.sha256(body).hexdigest(),
        "size": len(body),
    }
    assert headers["Location"] == f"/v1/files/{answer['file_id']}"


@pytest.mark.parametrize(
    ("key", "detail"),
    [(None, "Authorization: Bearer"), ("sk_acme_wrong", "not known"), ("", "Bearer <key>")],
)
def test_a_request_without_a_known_key_is_401_and_lands_nothing(
    intake: Any, key: str | None, detail: str
) -> None:
    event = request(key=key)
    if key == "":
        event["headers"]["authorization"] = "Basic abc"
    # WHEN a request comes without a key, with an unknown one, or another scheme
    status, headers, problem = call(event)
    # THEN it is a 401 problem document and nothing lands
    assert status == 401
    assert headers["Content-Type"] == "application/problem+json"
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert problem["status"] == 401
    assert problem["type"].endswith("/unauthorized")
    assert detail in problem["detail"]
    assert problem["instance"] == "JKJaXmPLvHcESHA="
    assert versions(intake) == []


def test_a_producer_cannot_write_under_another_producers_prefix(intake: Any) -> None:
    # GIVEN globex naming a file as if it were acme's, and one climbing out of its prefix
    status, _, answer = call(request(key=GLOBEX_KEY, name="acme/api/files/x.json"))
    climbing, _, problem = call(request(key=GLOBEX_KEY, name="../../acme/x.json"))
    # THEN the first lands under globex/ whatever its name says, the second is refused
    assert status == 201
    assert answer["key"].startswith("globex/api/files/")
    assert climbing == 400
    assert problem["type"].endswith("/invalid-name")
    assert versions(intake, "acme/") == []


def test_a_bad_name_is_400_listing_every_fault(intake: Any) -> None:
    status, _, problem = call(request(name="a//b\\c/../\x01d"))
    assert status == 400
    assert sorted(error["error"] for error in problem["errors"]) == sorted(
        [
            "the name holds a control character",
            "the name holds a backslash; use / between folders",
            "the name has an empty folder (a leading, trailing or double /)",
            "the name has a . or .. folder",
        ]
    )
    assert versions(intake) == []


def test_a_body_one_byte_over_the_limit_is_413(intake: Any, tunables: Any) -> None:
    # GIVEN a limit of 1,000 bytes
    tunables(max_body_bytes=1000)
    # WHEN a body of exactly the limit, and one a byte over, are posted
    at_limit, _, _ = call(request(name="a.bin", body=b"x" * 1000, binary=True))
    over, headers, problem = call(request(name="b.bin", body=b"x" * 1001, binary=True))
    # THEN the first lands and the second is a 413 naming both sizes
    assert at_limit == 201
    assert over == 413
    assert headers["Content-Type"] == "application/problem+json"
    assert "1001 bytes" in problem["detail"]
    assert "1000 bytes" in problem["detail"]
    assert [v["Key"].rsplit("/", 1)[1] for v in versions(intake)] == ["a.bin"]


def order(n: int) -> dict[str, Any]:
    return {"order_id": f"o-{n}", "amount_pence": n, "currency": "GBP", "note": None}


def test_ten_thousand_events_land_as_one_ndjson_file(intake: Any, tunables: Any) -> None:
    # GIVEN acme's events checked against the order schema
    tunables(
        rules=[
            {
                "prefix": "acme/api/events/",
                "schema": "payloads/order.avsc",
                "format": "ndjson",
                "table": "api_events",
            }
        ]
    )
    body = b"\n".join(json.dumps(order(n), indent=None).encode() for n in range(10_000))
    # WHEN 10,000 events are posted as NDJSON
    status, _, answer = call(
        request("POST /v1/events", body=body, content_type="application/x-ndjson")
    )
    # THEN one NDJSON file lands with every event, one compact object a line, in order
    assert status == 201
    assert answer["key"].startswith("acme/api/events/")
    assert answer["key"].endswith("/JKJaXmPLvHcESHA=.ndjson")
    stored = intake.get_object(Bucket=LANDING, Key=answer["key"])["Body"].read()
    lines = stored.decode().splitlines()
    assert len(lines) == 10_000
    assert [json.loads(line) for line in lines[:2]] == [order(0), order(1)]
    assert answer["sha256"] == hashlib.sha256(stored).hexdigest()


def test_invalid_events_are_400_listing_every_fault_and_nothing_lands(
    intake: Any, tunables: Any
) -> None:
    # GIVEN the order schema, and a batch with three faulty events among good ones
    tunables(
        rules=[
            {
                "prefix": "acme/api/events/",
                "schema": "payloads/order.avsc",
                "format": "ndjson",
                "table": "api_events",
            }
        ],
        max_errors_reported=2,
    )
    lines = [json.dumps(order(1)), "{not json", json.dumps({**order(2), "currency": "XXX"}), "[1]"]
    # WHEN they are posted
    status, _, problem = call(
        request(
            "POST /v1/events",
            body="\n".join(lines).encode(),
            content_type="application/x-ndjson",
        )
    )
    # THEN a 400 counts all three, lists the first two with where they are, and nothing lands
    assert status == 400
    assert problem["detail"].startswith("3 of 4 events are invalid (the first 2 listed)")
    assert [error["where"] for error in problem["errors"]] == ["event 2", "event 3"]
    assert "not JSON" in problem["errors"][0]["error"]
    assert "currency" in problem["errors"][1]["error"]
    assert versions(intake) == []


def test_events_in_another_media_type_are_415(intake: Any) -> None:
    status, _, problem = call(request("POST /v1/events", content_type="text/csv", body=b"a,b\n"))
    assert status == 415
    assert "text/csv" in problem["detail"]


def test_a_retried_request_with_the_same_idempotency_key_lands_once_and_answers_the_same(
    intake: Any,
) -> None:
    # GIVEN a request with an Idempotency-Key
    event = request(headers={"idempotency-key": "retry-1"})
    # WHEN it is sent twice (the first answer lost on the way, say)
    first_status, first_headers, first = call(event)
    again_status, again_headers, again = call(copy.deepcopy(event))
    # THEN one version lands, and the retry is answered what the first was, marked replayed
    assert (first_status, again_status) == (201, 201)
    assert again == first
    assert "Idempotent-Replayed" not in first_headers
    assert again_headers["Idempotent-Replayed"] == "true"
    assert len(versions(intake)) == 1


def test_the_same_idempotency_key_for_another_request_is_422(intake: Any) -> None:
    call(request(headers={"idempotency-key": "k"}, body=b"one"))
    status, _, problem = call(request(headers={"idempotency-key": "k"}, body=b"two"))
    assert status == 422
    assert problem["type"].endswith("/idempotency-key-reused")
    assert len(versions(intake)) == 1


def test_idempotency_keys_are_per_producer(intake: Any) -> None:
    call(request(headers={"idempotency-key": "k"}))
    status, _, answer = call(request(headers={"idempotency-key": "k"}, key=GLOBEX_KEY))
    assert status == 201
    assert answer["key"].startswith("globex/")
    assert len(versions(intake)) == 2


def test_two_requests_with_one_idempotency_key_at_once_land_once(intake: Any) -> None:
    # GIVEN two identical requests with one Idempotency-Key, sent at the same moment
    event = request(headers={"idempotency-key": "race"})
    answers: list[tuple[int, dict[str, str], Any]] = []
    start = threading.Barrier(2)

    def send() -> None:
        start.wait()
        answers.append(call(copy.deepcopy(event)))

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # THEN one version lands; every 201 names it, and a loser still running is told to retry
    assert len(versions(intake)) == 1
    landed = [answer for status, _, answer in answers if status == 201]
    assert landed
    assert len({answer["version_id"] for answer in landed}) == 1
    for status, headers, _ in answers:
        assert status in {201, 409}
        if status == 409:
            assert headers["Retry-After"] == "1"


def test_a_producer_over_its_rate_is_429_with_retry_after(
    intake: Any, tunables: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN two file requests a second for each producer, and a clock that stands still
    tunables(producer_requests_per_second={"files": 2, "events": 2, "status": 2})
    monkeypatch.setattr("transform.intake.throttle.time.time", lambda: 1_796_592_600.5)
    # WHEN acme sends three in that second, and globex one
    statuses = [call(request(name=f"f{n}.json"))[0] for n in range(3)]
    other, _, _ = call(request(name="g.json", key=GLOBEX_KEY))
    # THEN acme's third is refused with Retry-After, and globex is not held back by it
    assert statuses[:2] == [201, 201]
    status, headers, problem = call(request(name="f4.json"))
    assert (statuses[2], status) == (429, 429)
    assert headers["Retry-After"] == "1"
    assert problem["type"].endswith("/throttled")
    assert other == 201


def test_health_is_200_when_a_file_can_land_and_writes_nothing(intake: Any) -> None:
    status, _, health = call(request("GET /v1/health", name=None, key=None, body=b""))
    assert status == 200
    assert health == {"status": "ok", "checks": {"landing": "ok", "keys": "ok"}}
    assert versions(intake, PROBE_KEY) == []


def test_health_is_503_naming_what_is_wrong(intake: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a landing bucket that is gone, and a producers secret that cannot be found
    monkeypatch.setenv(environment.LANDING_BUCKET, "sluice-landing-gone")
    monkeypatch.setenv(environment.PRODUCERS_SECRET, "sluice/test/nobody")
    handler.dependencies.cache_clear()
    # WHEN health is asked
    status, _, health = call(request("GET /v1/health", name=None, key=None, body=b""))
    # THEN it is 503, and each check says what is wrong
    assert status == 503
    assert health["status"] == "unavailable"
    assert health["checks"]["landing"] == "s3://sluice-landing-gone refuses writes: NoSuchBucket"
    assert "cannot be read" in health["checks"]["keys"]


def test_an_unknown_route_is_404(intake: Any) -> None:
    status, _, problem = call(request("DELETE /v1/files/{name+}"))
    assert status == 404
    assert problem["type"].endswith("/no-such-route")


def test_a_malformed_producers_secret_is_refused_when_loaded() -> None:
    with pytest.raises(producers.RegistryError, match="share a key"):
        producers.Producers.parse(
            json.dumps(
                {"producers": {"a": {"key_sha256": ["0" * 64]}, "b": {"key_sha256": ["0" * 64]}}}
            )
        )
    with pytest.raises(producers.RegistryError, match="must match"):
        producers.Producers.parse(json.dumps({"producers": {"Bad Name": {"key_sha256": []}}}))


def test_a_new_key_identifies_its_producer() -> None:
    key, digest = producers.new_key("initech")
    registry = producers.Producers.parse(producers.with_key(None, "initech", digest))
    assert registry.identify(f"Bearer {key}") == "initech"
    assert key.startswith("sk_initech_")


OPENAPI = Path(__file__).resolve().parents[2] / "docs" / "intake-openapi.json"


def test_the_openapi_document_names_every_route_the_handler_serves() -> None:
    document = json.loads(OPENAPI.read_text())
    documented = {
        operation["x-route-key"]
        for path in document["paths"].values()
        for operation in path.values()
    }
    assert documented == set(requests.ROUTES)


def test_an_answer_matches_the_openapi_schema(intake: Any) -> None:
    # GIVEN the document's schemas for a landed file and a problem
    schemas = json.loads(OPENAPI.read_text())["components"]["schemas"]
    # WHEN a file lands and a request is refused
    _, _, landed = call(request())
    _, _, problem = call(request(name="../x"))
    # THEN each answer has the fields its schema requires, and no others where it is closed
    assert set(landed) == set(schemas["Landed"]["required"])
    assert (
        set(schemas["Problem"]["required"]) <= set(problem) <= set(schemas["Problem"]["properties"])
    )


def status(file_id: str, key: str = ACME_KEY) -> tuple[int, Any]:
    event = request("GET /v1/files/{file_id}", name=None, key=key, body=b"")
    event["pathParameters"] = {"file_id": file_id}
    event["rawPath"] = f"/v1/files/{file_id}"
    code, _, answer = call(event)
    return code, answer


def test_a_file_is_followed_from_landed_to_delivered(intake: Any) -> None:
    # GIVEN a file acme posted
    _, _, landed = call(request(name="follow.json"))
    file_id = landed["file_id"]
    # THEN at once it is known as landed, with its key and version
    code, answer = status(file_id)
    assert code == 200
    assert (answer["stage"], answer["key"], answer["version_id"]) == (
        "landed",
        landed["key"],
        landed["version_id"],
    )
    # WHEN the forwarder has sent it (its idempotency record COMPLETED) and a window claims it
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    dynamodb.put_item(
        TableName=IDEMPOTENCY_TABLE,
        Item={
            "id": {"S": file_id},
            "status": {"S": "COMPLETED"},
            "object_key": {"S": landed["key"]},
            "version_id": {"S": landed["version_id"]},
        },
    )
    assert status(file_id)[1]["stage"] == "forwarded"
    ledger = Ledger(dynamodb, LEDGER_TABLE, 3600)
    window = "sluice-0-1-2026-12-06-21-30-00-abc"
    staged_key = f"buffers/dt=2026-12-06/hour=21/{window}.json.gz"
    ledger.claim_files(window, [file_id])
    ledger.begin(window, staged_key, [])
    claimed = status(file_id)[1]
    assert (claimed["stage"], claimed["window"]) == ("claimed", {"id": window, "state": "CLAIMED"})
    # ... and delivers it
    key = f"sluice/dt=2026-12-06/hour=21/{window}.tar.gz"
    part = PartRecord(1, key, "v1", "0" * 64, "etag", 10, 8 * 1024 * 1024, 1, "sha256")
    ledger.mark_delivered(window, [part], 1)
    delivered = status(file_id)[1]
    assert delivered["stage"] == "delivered"
    assert delivered["manifest"] == f"sluice/dt=2026-12-06/hour=21/{window}.manifest.json"


def test_another_producers_file_is_unknown(intake: Any) -> None:
    _, _, landed = call(request(name="mine.json"))
    code, problem = status(landed["file_id"], key=GLOBEX_KEY)
    assert code == 404
    assert problem["type"].endswith("/no-such-file")
    assert status("0" * 64)[0] == 404
