"""The loopback HTTP plumbing the local stand-ins share: a request in, a `Reply` out.

The local Firehose, the Lambda API and the chaos control API each answer HTTP/1.1 on 127.0.0.1;
they differ in protocol (awsJson1_1, rest-json, plain JSON), not in plumbing. `LoopbackServer`
reads each request's body, hands it to its `route` and writes the `Reply`; `ApiError` is an AWS
error answer, `credential_scope` the SigV4 scope the AWS stand-ins check (docs/local-stack.md).
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

logger = logging.getLogger(__name__)

JSON: Final = "application/json"
AWS_JSON_1_1: Final = "application/x-amz-json-1.1"
ALL_METHODS: Final = frozenset({"GET", "POST", "PUT", "DELETE", "HEAD"})
POLL_SECONDS: Final = 0.1
"""How often a serving thread looks for `shutdown`."""

_CREDENTIAL = re.compile(r"Credential=[^/\s,]+/\d{8}/(?P<region>[^/\s,]+)/(?P<service>[^/\s,]+)/")


@dataclass(frozen=True, slots=True)
class Reply:
    """One HTTP answer: Content-Type and Content-Length are added from these fields."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = JSON

    @classmethod
    def json(
        cls,
        status: int,
        document: Any,
        headers: Mapping[str, str] | None = None,
        *,
        content_type: str = JSON,
        compact: bool = False,
    ) -> Reply:
        separators = (",", ":") if compact else None
        body = json.dumps(document, separators=separators).encode()
        return cls(status, body, dict(headers or {}), content_type)


Route = Callable[[str, str, Message, bytes], Reply]
"""(method, path with its query, headers, body) -> the reply."""


class ApiError(Exception):
    """An AWS error answer: HTTP `status`, the `code` botocore's ClientError carries, `message`,
    and Lambda's `Reason` where it gives one. Each protocol renders it its own way."""

    def __init__(self, status: int, code: str, message: str, *, reason: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.reason = reason

    def json_1_1(self) -> Reply:
        """As an awsJson1_1 service answers (Firehose): the code in `__type`."""
        return Reply.json(
            self.status,
            {"__type": self.code, "message": self.message},
            {"x-amzn-ErrorType": self.code},
            content_type=AWS_JSON_1_1,
            compact=True,
        )

    def rest_json(self) -> Reply:
        """As a rest-json service answers (Lambda): the code in `x-amzn-ErrorType`."""
        error: dict[str, str] = {"Type": "User", "message": self.message}
        if self.reason is not None:
            error["Reason"] = self.reason
        return Reply.json(self.status, error, {"x-amzn-ErrorType": self.code})


@dataclass(frozen=True, slots=True)
class CredentialScope:
    region: str
    service: str


def credential_scope(authorization: str) -> CredentialScope | None:
    """The region and service the credential of a SigV4 `Authorization` header is scoped to;
    None when it names no credential. The signature itself is never checked."""
    match = _CREDENTIAL.search(authorization)
    return None if match is None else CredentialScope(match["region"], match["service"])


class LoopbackServer(ThreadingHTTPServer):
    """HTTP/1.1 with keep-alive on `host:port` (port 0: a free one), bound at once; `start`
    serves `route` from a daemon thread named `name`. Methods outside `methods` are answered
    501, as `BaseHTTPRequestHandler` answers a method it has no `do_` for.

    A server that tracks its connections (the local Firehose's) overrides `begin` and `end` and
    sets `closing`: a request `begin` refuses is dropped unanswered, and once `closing` every
    answer closes its connection.
    """

    def __init__(
        self,
        route: Route,
        *,
        name: str,
        host: str = "127.0.0.1",
        port: int = 0,
        methods: frozenset[str] = ALL_METHODS,
        server_version: str | None = None,
    ) -> None:
        super().__init__((host, port), _Handler)
        self.route = route
        self.name = name
        self.methods = methods
        self.server_version = server_version
        """The `Server` header; None: `BaseHTTPRequestHandler`'s."""
        self.closing = False
        self._serving: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        if self._serving is not None:
            raise RuntimeError(f"{self.name} is already serving")
        self._serving = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": POLL_SECONDS},
            name=self.name,
            daemon=True,
        )
        self._serving.start()

    def stop_serving(self) -> None:
        """Accept nothing more (connections already accepted go on); the socket stays bound."""
        if self._serving is not None:
            self.shutdown()
            self._serving.join()
            self._serving = None

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        self.stop_serving()
        self.server_close()

    def begin(self, connection: socket.socket) -> bool:
        """A request on `connection` is about to be served; False refuses it."""
        return True

    def end(self, connection: socket.socket) -> None:
        """The request `begin` admitted is answered."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects
    # Headers and body go out in two writes: with Nagle's algorithm the body waits for the
    # client's delayed ACK of the headers, about 40 ms a request on a kept-alive connection.
    disable_nagle_algorithm = True
    server: LoopbackServer

    def version_string(self) -> str:
        return self.server.server_version or super().version_string()

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_GET

    def _serve(self) -> None:
        server = self.server
        if self.command not in server.methods:
            self.send_error(HTTPStatus.NOT_IMPLEMENTED, f"Unsupported method ({self.command!r})")
            return
        if not server.begin(self.connection):
            self.close_connection = True  # closing: refused without an answer
            return
        try:
            body = self._read_body()
            if body is not None:
                self._send(server.route(self.command, self.path, self.headers, body))
        finally:
            server.end(self.connection)
            if server.closing:
                self.close_connection = True

    def _read_body(self) -> bytes | None:
        """The request's body; None when the connection is gone (the client left, or a stop
        cut it while idle)."""
        length = int(self.headers.get("Content-Length") or 0)
        try:
            return self.rfile.read(length) if length > 0 else b""
        except OSError:
            self.close_connection = True
            return None

    def _send(self, reply: Reply) -> None:
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            if self.server.closing:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body)
        except OSError:  # the client went away
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s " + format, self.server.name, self.address_string(), *args)
