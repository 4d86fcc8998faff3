"""The intake's HTTP API on loopback: each request matched to a route, passed to the intake
function through the local Lambda runtime as an API Gateway payload format 2.0 event, and its
result written back as API Gateway writes it (docs/local-stack.md, "API Gateway").

What API Gateway does itself is answered here the same way: no route, `404 {"message": "Not
Found"}`; a body over Lambda's 6 MB request, `413 {"message": "Request Entity Too Large"}`; a
function that fails, `500 {"message": "Internal Server Error"}`. Stage throttling per route is
not emulated (each producer's own limit is the function's, and runs here as in AWS).
"""

from __future__ import annotations

import base64
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import Message
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from infrastructure.local.loopback import LoopbackServer, Reply

LAMBDA_REQUEST_LIMIT_BYTES: Final = 6 * 1024 * 1024
"""Lambda's synchronous request limit, which the base64-encoded body counts against."""
TEXT_TYPES: Final = re.compile(r"^(text/.*|application/(json|x-ndjson|ndjson|jsonl|xml)|.*\+json)$")
"""Bodies passed as text; any other body is base64-encoded, as API Gateway passes binary."""
API_ID: Final = "local"


@dataclass(frozen=True)
class _RouteTemplate:
    method: str
    pattern: re.Pattern[str]
    key: str

    @classmethod
    def parse(cls, route_key: str) -> _RouteTemplate:
        method, _, path = route_key.partition(" ")
        regex = ""
        for part in re.split(r"(\{[^}]+\})", path):
            if part.startswith("{") and part.endswith("+}"):
                regex += f"(?P<{part[1:-2]}>.+)"
            elif part.startswith("{"):
                regex += f"(?P<{part[1:-1]}>[^/]+)"
            else:
                regex += re.escape(part)
        return cls(method, re.compile(f"^{regex}$"), route_key)


Invoke = Callable[[dict[str, Any]], Any]
"""Synchronous invocation of the intake function: the event in, its result out (raises on a
function error)."""


class IntakeApiServer(LoopbackServer):
    """`routes` (route keys, as Terraform declares them) served by `invoke`."""

    def __init__(self, routes: Sequence[str], invoke: Invoke, *, port: int = 0) -> None:
        super().__init__(self._serve, name="intake-api", port=port, server_version="local-apigw")
        self._routes = [_RouteTemplate.parse(route) for route in routes]
        self._invoke = invoke

    def _serve(self, method: str, target: str, headers: Message, body: bytes) -> Reply:
        parts = urlsplit(target)
        for route in self._routes:
            match = route.pattern.match(parts.path)
            if route.method == method and match is not None:
                break
        else:
            return Reply.json(404, {"message": "Not Found"})
        request = HttpRequest(method, parts.path, parts.query, headers, body)
        event = payload_v2(route.key, request, match.groupdict())
        if len(event["body"] or "") > LAMBDA_REQUEST_LIMIT_BYTES:
            return Reply.json(413, {"message": "Request Entity Too Large"})
        try:
            result = self._invoke(event)
        except Exception:  # noqa: BLE001  # API Gateway answers any integration failure so
            return Reply.json(500, {"message": "Internal Server Error"})
        return _reply(result)


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    query: str
    headers: Message
    body: bytes


def payload_v2(
    route_key: str, request: HttpRequest, path_parameters: dict[str, str]
) -> dict[str, Any]:
    """API Gateway's payload format 2.0 for one request (header names lower-cased, repeated
    headers joined with commas, path parameters decoded)."""
    joined: dict[str, str] = {}
    method, path, body = request.method, request.path, request.body
    for name, value in request.headers.items():
        key = name.lower()
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    content_type = joined.get("content-type", "").split(";", 1)[0].strip().lower()
    binary = bool(body) and not TEXT_TYPES.match(content_type)
    now = time.time()
    return {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": request.query,
        "headers": joined,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": API_ID,
            "domainName": joined.get("host", "127.0.0.1"),
            "domainPrefix": API_ID,
            "http": {
                "method": method,
                "path": unquote(path),
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": joined.get("user-agent", ""),
            },
            "requestId": base64.b64encode(uuid.uuid4().bytes[:10]).decode(),
            "routeKey": route_key,
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "pathParameters": {name: unquote(value) for name, value in path_parameters.items()} or None,
        "body": base64.b64encode(body).decode() if binary else body.decode("utf-8", "replace"),
        "isBase64Encoded": binary,
    }


def _reply(result: Any) -> Reply:
    """The function's result as API Gateway answers it (payload format 2.0 responses)."""
    if not isinstance(result, dict) or "statusCode" not in result:
        return Reply.json(500, {"message": "Internal Server Error"})
    body = result.get("body") or ""
    data = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
    headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
    content_type = headers.pop("Content-Type", headers.pop("content-type", "application/json"))
    return Reply(int(result["statusCode"]), data, headers, content_type)
