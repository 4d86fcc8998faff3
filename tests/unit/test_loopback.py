"""The loopback HTTP plumbing the local stand-ins share (infrastructure.local.loopback), over a
real socket: a route's reply written as given, methods outside the server's answered 501, error
answers in both AWS protocols, the SigV4 credential scope read from an Authorization header."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from email.message import Message

import pytest

from infrastructure.local.loopback import (
    AWS_JSON_1_1,
    ApiError,
    CredentialScope,
    LoopbackServer,
    Reply,
    credential_scope,
)

SEEN: list[tuple[str, str, bytes]] = []


def echo(method: str, path: str, headers: Message, body: bytes) -> Reply:
    SEEN.append((method, path, body))
    return Reply.json(201, {"path": path, "length": len(body)}, {"x-test": headers["x-test"]})


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    SEEN.clear()
    server = LoopbackServer(echo, name="test-loopback", methods=frozenset({"GET", "POST"}))
    server.start()
    yield server
    server.stop()


def request(
    server: LoopbackServer, method: str, path: str, body: bytes = b""
) -> http.client.HTTPResponse:
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(str(host), port, timeout=5)
    connection.request(method, path, body=body, headers={"x-test": "yes"})
    return connection.getresponse()


def test_the_route_is_given_the_request_and_its_reply_is_written(server: LoopbackServer) -> None:
    answer = request(server, "POST", "/a?b=c", b"hello")
    assert answer.status == 201
    assert answer.getheader("Content-Type") == "application/json"
    assert answer.getheader("x-test") == "yes"
    assert json.loads(answer.read()) == {"path": "/a?b=c", "length": 5}
    assert SEEN == [("POST", "/a?b=c", b"hello")]


def test_a_method_the_server_does_not_take_is_answered_501_unrouted(
    server: LoopbackServer,
) -> None:
    answer = request(server, "PUT", "/a")
    assert answer.status == 501
    assert SEEN == []


def test_api_errors_in_both_protocols() -> None:
    error = ApiError(429, "TooManyRequestsException", "Rate Exceeded.", reason="Why")
    rest = error.rest_json()
    assert (rest.status, rest.headers["x-amzn-ErrorType"]) == (429, "TooManyRequestsException")
    assert json.loads(rest.body) == {"Type": "User", "message": "Rate Exceeded.", "Reason": "Why"}
    aws = ApiError(400, "ValidationException", "no").json_1_1()
    assert (aws.status, aws.content_type) == (400, AWS_JSON_1_1)
    assert aws.body == b'{"__type":"ValidationException","message":"no"}'


@pytest.mark.parametrize(
    ("authorization", "scope"),
    [
        (
            "AWS4-HMAC-SHA256 Credential=AKID/20260101/eu-west-2/firehose/aws4_request, "
            "SignedHeaders=host, Signature=abc",
            CredentialScope("eu-west-2", "firehose"),
        ),
        ("AWS4-HMAC-SHA256 SignedHeaders=host, Signature=abc", None),
        ("", None),
    ],
)
def test_the_credential_scope_of_a_sigv4_header(
    authorization: str, scope: CredentialScope | None
) -> None:
    assert credential_scope(authorization) == scope
