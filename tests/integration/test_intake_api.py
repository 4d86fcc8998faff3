"""The intake over real HTTP on loopback: the local API Gateway stand-in
(infrastructure/local/apigateway) in front of the intake handler, moto in process behind it.
Requests are made with real clients (requests, curl), as a producer would make them."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from infrastructure.local.apigateway.server import IntakeApiServer
from tests.unit.test_intake import (
    ACME_KEY,
    GLOBEX_KEY,
    Context,
    intake,  # noqa: F401  # a fixture these tests use
    order,
    tunables,  # noqa: F401  # a fixture these tests use
    versions,
)
from transform.intake import handler
from transform.intake.requests import ROUTES


@pytest.fixture
def api(intake: Any) -> Iterator[str]:  # noqa: F811  # the fixture imported above
    server = IntakeApiServer(ROUTES, lambda event: handler.lambda_handler(event, Context()))
    server.start()
    try:
        yield server.endpoint
    finally:
        server.stop()


def auth(key: str = ACME_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_file_posted_with_curl_lands_byte_for_byte(api: str, intake: Any) -> None:  # noqa: F811
    # GIVEN binary bytes, and a name with a space and folders
    body = bytes(range(256)) * 64
    # WHEN curl posts them as a producer would
    done = subprocess.run(  # noqa: S603  # curl on loopback, fixed arguments
        [
            "/usr/bin/curl",
            "--silent",
            "--show-error",
            "--fail-with-body",
            "-X",
            "POST",
            f"{api}/v1/files/reports/2026/daily%20pixels.bin",
            "-H",
            f"Authorization: Bearer {ACME_KEY}",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            "@-",
        ],
        input=body,
        capture_output=True,
        check=False,
        timeout=60,
    )
    # THEN it is answered 201 with where the file is, and S3 holds exactly those bytes
    assert done.returncode == 0, done.stderr + done.stdout
    answer = json.loads(done.stdout)
    assert answer["key"].endswith("/reports/2026/daily pixels.bin")
    stored = intake.get_object(
        Bucket=answer["bucket"], Key=answer["key"], VersionId=answer["version_id"]
    )
    assert stored["Body"].read() == body


def test_every_status_a_producer_can_meet(api: str, intake: Any, tunables: Any) -> None:  # noqa: F811
    tunables(
        max_body_bytes=1000, producer_requests_per_second={"files": 1000, "events": 3, "status": 3}
    )
    post = requests.post
    # 201, 400, 401, 413 (the intake's), 415, 422, 404 (API Gateway's), 200 (health)
    assert post(f"{api}/v1/files/a.txt", data=b"a", headers=auth(), timeout=30).status_code == 201
    bad = post(f"{api}/v1/files/a/%2E%2E/b", data=b"a", headers=auth(), timeout=30)
    assert (bad.status_code, bad.headers["Content-Type"]) == (400, "application/problem+json")
    assert post(f"{api}/v1/files/a.txt", data=b"a", timeout=30).status_code == 401
    big = post(f"{api}/v1/files/big.bin", data=b"x" * 1001, headers=auth(), timeout=30)
    assert (big.status_code, big.json()["type"].rsplit("/", 1)[1]) == (413, "body-too-large")
    csv = post(
        f"{api}/v1/events", data=b"a,b", headers={**auth(), "Content-Type": "text/csv"}, timeout=30
    )
    assert csv.status_code == 415
    once = {**auth(), "Idempotency-Key": "k1"}
    assert post(f"{api}/v1/files/i.txt", data=b"1", headers=once, timeout=30).status_code == 201
    assert post(f"{api}/v1/files/i.txt", data=b"2", headers=once, timeout=30).status_code == 422
    missing = requests.get(f"{api}/v2/nothing", timeout=30)
    assert (missing.status_code, missing.json()) == (404, {"message": "Not Found"})
    assert requests.get(f"{api}/v1/health", timeout=30).status_code == 200
    # 429 with Retry-After, once acme is over 3 event requests in a second (20 in a row would
    # need over 6 s not to meet it)
    statuses = [
        post(f"{api}/v1/events", json={"n": n}, headers=auth(), timeout=30) for n in range(20)
    ]
    throttled = [r for r in statuses if r.status_code == 429]
    assert throttled
    assert throttled[0].headers["Retry-After"] == "1"


def test_a_body_over_lambdas_request_limit_is_api_gateways_413(api: str) -> None:
    # WHEN a body that base64-encoded is over Lambda's 6 MB is posted
    response = requests.post(
        f"{api}/v1/files/huge.bin",
        data=b"\x00" * (5 * 1024 * 1024),
        headers={**auth(), "Content-Type": "application/octet-stream"},
        timeout=60,
    )
    # THEN API Gateway itself refuses it, with its own body
    assert (response.status_code, response.json()) == (413, {"message": "Request Entity Too Large"})


def test_ten_thousand_ndjson_events_over_http(api: str, intake: Any) -> None:  # noqa: F811
    body = "\n".join(json.dumps(order(n)) for n in range(10_000)).encode()
    response = requests.post(
        f"{api}/v1/events",
        data=body,
        headers={**auth(GLOBEX_KEY), "Content-Type": "application/x-ndjson"},
        timeout=60,
    )
    assert response.status_code == 201, response.text
    landed = intake.get_object(Bucket=response.json()["bucket"], Key=response.json()["key"])
    assert len(landed["Body"].read().splitlines()) == 10_000


def test_two_posts_with_one_idempotency_key_at_once_land_once(api: str, intake: Any) -> None:  # noqa: F811
    answers: list[requests.Response] = []
    start = threading.Barrier(4)

    def send() -> None:
        start.wait()
        answers.append(
            requests.post(
                f"{api}/v1/files/race.txt",
                data=b"race",
                headers={**auth(), "Idempotency-Key": "race-1"},
                timeout=30,
            )
        )

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(versions(intake)) == 1
    assert {r.status_code for r in answers} <= {201, 409}
    assert len({r.json()["version_id"] for r in answers if r.status_code == 201}) == 1
